/*
 * ngx_torrix_module: per-worker read access to the snapshot.
 *
 * Each worker opens the LMDB environment in init_process (an MDB_env must not
 * cross a fork), read-only and without thread-local reader slots, and keeps
 * one read transaction.  The first lookup of an event-loop iteration renews
 * it and posts an event that resets it once the iteration's events are
 * handled, so every request handled in that iteration reads through the same
 * transaction (one renew and one reset per iteration, not per lookup), and
 * none pins old pages across iterations.  A
 * timer retries a snapshot that is not there yet, reopens one whose data.mdb
 * was replaced (an edge receiving a shipped file) and clears stale reader
 * slots left by crashed processes.
 */

#include "ngx_http_torrix_module.h"

#include <sys/stat.h>


#define NGX_HTTP_TORRIX_SNAPSHOT_TICK 1000


typedef struct {
    MDB_env         *env;
    MDB_txn         *txn;
    unsigned         active : 1;
    MDB_dbi          dbi[NGX_HTTP_TORRIX_DB_N];
    unsigned         has[NGX_HTTP_TORRIX_DB_N];
    ino_t            ino;
    ngx_event_t      timer;
    ngx_connection_t dumb; /* timer data, for ngx_event_ident() */
    ngx_event_t      end;  /* posted: resets txn at the iteration's end */
    ngx_str_t        path;
    ngx_uint_t       max_readers;
    ngx_log_t       *log;
    ngx_uint_t       warned;
} ngx_http_torrix_snapshot_t;


static ngx_int_t ngx_http_torrix_snapshot_open(ngx_log_t *log);
static void      ngx_http_torrix_snapshot_close(void);
static void      ngx_http_torrix_snapshot_tick(ngx_event_t *ev);
static void      ngx_http_torrix_snapshot_end(void);
static void      ngx_http_torrix_snapshot_end_handler(ngx_event_t *ev);
static ino_t     ngx_http_torrix_snapshot_ino(void);


static ngx_http_torrix_snapshot_t ngx_http_torrix_snap;

/* clang-format off */
static const char  *ngx_http_torrix_db_names[NGX_HTTP_TORRIX_DB_N] = {
    TX_SNAP_DB_META,
    TX_SNAP_DB_KHASH,
    TX_SNAP_DB_KEYS,
    TX_SNAP_DB_PROVIDERS,
    TX_SNAP_DB_SETTINGS,
    TX_SNAP_DB_PROJECTS,
    TX_SNAP_DB_ORGS,
    TX_SNAP_DB_USERS,
    TX_SNAP_DB_PRICES,
    TX_SNAP_DB_SPEND,
    TX_SNAP_DB_ROUTES,
    TX_SNAP_DB_FALLBACKS,
    TX_SNAP_DB_AGENTS
};
/* clang-format on */


ngx_int_t
ngx_http_torrix_snapshot_init_process(ngx_cycle_t *cycle)
{
    ngx_http_torrix_main_conf_t *tmcf;
    ngx_http_torrix_snapshot_t  *s;

    s = &ngx_http_torrix_snap;

    tmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_torrix_module);
    if (tmcf == NULL || tmcf->snapshot_path.len == 0) {
        return NGX_OK;
    }

    s->path.len = tmcf->snapshot_path.len;
    s->path.data = ngx_pnalloc(cycle->pool, s->path.len + sizeof("/data.mdb"));
    if (s->path.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->path.data, tmcf->snapshot_path.data, s->path.len);
    s->path.data[s->path.len] = '\0';

    s->max_readers = tmcf->max_readers;
    s->log = cycle->log;

    (void) ngx_http_torrix_snapshot_open(cycle->log);

    s->timer.handler = ngx_http_torrix_snapshot_tick;
    s->timer.log = cycle->log;
    s->timer.data = &s->dumb;
    s->dumb.fd = (ngx_socket_t) -1;
    s->timer.cancelable = 1;

    s->end.handler = ngx_http_torrix_snapshot_end_handler;
    s->end.log = cycle->log;
    s->end.data = &s->dumb;

    ngx_add_timer(&s->timer, NGX_HTTP_TORRIX_SNAPSHOT_TICK);

    return NGX_OK;
}


void
ngx_http_torrix_snapshot_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_torrix_snapshot_close();
}


static ngx_int_t
ngx_http_torrix_snapshot_open(ngx_log_t *log)
{
    int                         rc;
    uint64_t                    schema;
    MDB_val                     k, v;
    ngx_uint_t                  i;
    ngx_http_torrix_snapshot_t *s;

    s = &ngx_http_torrix_snap;

    rc = mdb_env_create(&s->env);
    if (rc != MDB_SUCCESS) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "torrix: mdb_env_create() failed: %s", mdb_strerror(rc));
        s->env = NULL;
        return NGX_ERROR;
    }

    (void) mdb_env_set_maxdbs(s->env, TX_SNAP_MAX_DBS);
    (void) mdb_env_set_maxreaders(s->env, s->max_readers);

    s->ino = ngx_http_torrix_snapshot_ino();

    rc = mdb_env_open(s->env, (char *) s->path.data,
                      MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD, 0);
    if (rc != MDB_SUCCESS) {
        if (s->warned++ % 60 == 0) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "torrix: snapshot \"%s\" not available: %s",
                          s->path.data, mdb_strerror(rc));
        }

        goto failed;
    }

    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->txn);
    if (rc != MDB_SUCCESS) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "torrix: mdb_txn_begin() failed: %s",
                      mdb_strerror(rc));
        goto failed;
    }

    for (i = 0; i < NGX_HTTP_TORRIX_DB_N; i++) {
        rc = mdb_dbi_open(s->txn, ngx_http_torrix_db_names[i], 0, &s->dbi[i]);
        s->has[i] = (rc == MDB_SUCCESS);

        if (rc == MDB_NOTFOUND && i >= NGX_HTTP_TORRIX_DB_PRICES) {
            /* optional tables: an older snapshot simply lacks them */
            continue;
        }

        if (rc != MDB_SUCCESS) {
            if (s->warned++ % 60 == 0) {
                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "torrix: snapshot has no \"%s\" table: %s",
                              ngx_http_torrix_db_names[i], mdb_strerror(rc));
            }

            goto failed;
        }
    }

    k.mv_size = sizeof(TX_SNAP_META_SCHEMA) - 1;
    k.mv_data = TX_SNAP_META_SCHEMA;

    rc = mdb_get(s->txn, s->dbi[NGX_HTTP_TORRIX_DB_META], &k, &v);
    if (rc != MDB_SUCCESS || v.mv_size != 8) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "torrix: snapshot has no schema");
        goto failed;
    }

    ngx_memcpy(&schema, v.mv_data, 8);

    if (schema != TX_SNAP_SCHEMA) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "torrix: snapshot schema %uL, this module reads %d",
                      schema, TX_SNAP_SCHEMA);
        goto failed;
    }

    /* a commit, not a reset, keeps the database handles opened in it */
    rc = mdb_txn_commit(s->txn);
    s->txn = NULL;

    if (rc != MDB_SUCCESS) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "torrix: mdb_txn_commit() failed: %s", mdb_strerror(rc));
        goto failed;
    }

    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->txn);
    if (rc != MDB_SUCCESS) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "torrix: mdb_txn_begin() failed: %s",
                      mdb_strerror(rc));
        goto failed;
    }

    mdb_txn_reset(s->txn);
    s->active = 0;

    ngx_log_error(NGX_LOG_INFO, log, 0, "torrix: snapshot \"%s\" opened",
                  s->path.data);

    s->warned = 0;

    return NGX_OK;

failed:

    ngx_http_torrix_snapshot_close();

    return NGX_ERROR;
}


static void
ngx_http_torrix_snapshot_close(void)
{
    ngx_http_torrix_snapshot_t *s;

    s = &ngx_http_torrix_snap;

    ngx_http_torrix_snapshot_end();

    if (s->txn) {
        mdb_txn_abort(s->txn);
        s->txn = NULL;
    }

    if (s->env) {
        mdb_env_close(s->env);
        s->env = NULL;
    }

    s->active = 0;

    ngx_http_torrix_cache_drop();
}


static ino_t
ngx_http_torrix_snapshot_ino(void)
{
    u_char                     *p;
    struct stat                 st;
    ngx_http_torrix_snapshot_t *s;

    s = &ngx_http_torrix_snap;

    p = ngx_cpymem(s->path.data + s->path.len, "/data.mdb",
                   sizeof("/data.mdb"));
    (void) p;

    if (stat((char *) s->path.data, &st) == -1) {
        s->path.data[s->path.len] = '\0';
        return 0;
    }

    s->path.data[s->path.len] = '\0';

    return st.st_ino;
}


static void
ngx_http_torrix_snapshot_tick(ngx_event_t *ev)
{
    int                         dead;
    ino_t                       ino;
    ngx_http_torrix_snapshot_t *s;

    s = &ngx_http_torrix_snap;

    if (ngx_exiting) {
        return;
    }

    ngx_http_torrix_clock_update();

    /* requests of this iteration so far are done with the transaction */
    ngx_http_torrix_snapshot_end();

    if (s->env == NULL) {
        (void) ngx_http_torrix_snapshot_open(ev->log);

    } else {
        ino = ngx_http_torrix_snapshot_ino();

        if (ino != 0 && ino != s->ino) {
            ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                          "torrix: snapshot file replaced, reopening");
            ngx_http_torrix_snapshot_close();
            (void) ngx_http_torrix_snapshot_open(ev->log);

        } else {
            dead = 0;
            (void) mdb_reader_check(s->env, &dead);
        }
    }

    ngx_add_timer(ev, NGX_HTTP_TORRIX_SNAPSHOT_TICK);
}


MDB_txn *
ngx_http_torrix_snapshot_begin(ngx_log_t *log)
{
    int                         rc, retried;
    ngx_http_torrix_snapshot_t *s;

    s = &ngx_http_torrix_snap;

    if (s->env == NULL) {
        return NULL;
    }

    if (s->active) {
        return s->txn;
    }

    for (retried = 0; /* void */; retried++) {
        rc = mdb_txn_renew(s->txn);

        if (rc == MDB_SUCCESS) {
            s->active = 1;

            if (!s->end.posted) {
                ngx_post_event(&s->end, &ngx_posted_events);
            }

            if (ngx_http_torrix_cache_sync(s->txn, log) != NGX_OK) {
                ngx_http_torrix_snapshot_end();
                return NULL;
            }

            return s->txn;
        }

        if (rc == MDB_MAP_RESIZED && !retried) {
            /* the writer grew the map: adopt its size and try again */
            rc = mdb_env_set_mapsize(s->env, 0);
            if (rc == MDB_SUCCESS) {
                continue;
            }
        }

        ngx_log_error(NGX_LOG_ERR, log, 0, "torrix: mdb_txn_renew() failed: %s",
                      mdb_strerror(rc));
        return NULL;
    }
}


static void
ngx_http_torrix_snapshot_end(void)
{
    ngx_http_torrix_snapshot_t *s;

    s = &ngx_http_torrix_snap;

    if (s->end.posted) {
        ngx_delete_posted_event(&s->end);
    }

    if (s->active) {
        mdb_txn_reset(s->txn);
        s->active = 0;
    }
}


static void
ngx_http_torrix_snapshot_end_handler(ngx_event_t *ev)
{
    ngx_http_torrix_snapshot_end();
}


int
ngx_http_torrix_snapshot_get(MDB_txn *txn, ngx_http_torrix_db_e db,
                             const void *key, size_t klen, tx_str_t *val)
{
    int     rc;
    MDB_val k, v;

    if (!ngx_http_torrix_snap.has[db]) {
        return TX_DECLINED;
    }

    k.mv_size = klen;
    k.mv_data = (void *) key;

    rc = mdb_get(txn, ngx_http_torrix_snap.dbi[db], &k, &v);
    if (rc != MDB_SUCCESS) {
        return TX_DECLINED;
    }

    val->len = v.mv_size;
    val->data = v.mv_data;

    return TX_OK;
}


int
ngx_http_torrix_snapshot_next(MDB_txn *txn, ngx_http_torrix_db_e db,
                              void **cursor, tx_str_t *key, tx_str_t *val)
{
    int         rc;
    MDB_val     k, v;
    MDB_cursor *cur;

    cur = *cursor;

    if (cur == NULL) {
        if (!ngx_http_torrix_snap.has[db]) {
            return TX_DECLINED;
        }

        if (mdb_cursor_open(txn, ngx_http_torrix_snap.dbi[db], &cur)
            != MDB_SUCCESS) {
            return TX_DECLINED;
        }

        *cursor = cur;
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);

    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }

    if (rc != MDB_SUCCESS) {
        mdb_cursor_close(cur);
        *cursor = NULL;
        return TX_DONE;
    }

    key->data = k.mv_data;
    key->len = k.mv_size;
    val->data = v.mv_data;
    val->len = v.mv_size;

    return TX_OK;
}


void
ngx_http_torrix_snapshot_close_cursor(void *cursor)
{
    if (cursor) {
        mdb_cursor_close(cursor);
    }
}

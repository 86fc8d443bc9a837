/*
 * torrix-cp store (see txcp_store.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "txcp.h"
#include "txcp_run.h"
#include "txcp_store.h"
#include "txcp_audit.h"
#include "txcp_vault.h"


static const char *const txcp_db_names[TXCP_DB_N] =
    {"meta",     "orgs",    "users",     "projects",     "keys",
     "admins",   "audit",   "runs",      "spool_cursor", "providers",
     "settings", "slugs",   "timers",    "prices",       "spend",
     "rollups",  "runs_ix", "webhooks",  "alerts",       "alert_marks",
     "outbox",   "routes",  "fallbacks", "agents"};


static int txcp_store_bootstrap(MDB_txn *txn, char *secret, int *created);
static int txcp_store_compact(int create);
static int txcp_store_write_admin_key(const char *secret, char *path,
                                      size_t len);


const char *
txcp_store_db_name(int db)
{
    return db >= 0 && db < TXCP_DB_N ? txcp_db_names[db] : "?";
}


int
txcp_store_begin(int rdonly, MDB_txn **txn)
{
    int rc;

    rc = mdb_txn_begin(txcp.store, NULL, rdonly ? MDB_RDONLY : 0, txn);

    if (rc != 0) {
        txcp_log(TXCP_LOG_ERROR, "store txn begin failed", "err=\"%s\"",
                 mdb_strerror(rc));
    }

    return rc;
}


int
txcp_store_commit(MDB_txn *txn)
{
    int rc;

    rc = mdb_txn_commit(txn);

    if (rc != 0) {
        txcp_log(TXCP_LOG_ERROR, "store commit failed", "err=\"%s\"",
                 mdb_strerror(rc));
    }

    return rc;
}


int
txcp_store_open(int create)
{
    int         rc, i, created, compact;
    char        path[4096], keypath[4096];
    char       *secret;
    uint64_t    schema;
    uint8_t     buf[8];
    MDB_txn    *txn;
    MDB_val     k, v;
    struct stat st;

    txn = NULL;
    secret = NULL;
    created = 0;
    compact = 0;

    snprintf(path, sizeof(path), "%s/store", txcp.conf.data_dir);

    if (stat(path, &st) != 0) {
        if (!create) {
            txcp_log(TXCP_LOG_ERROR, "no store", "path=%s", path);
            return TX_ERROR;
        }

        if (mkdir(path, 0700) != 0) {
            txcp_log(TXCP_LOG_ERROR, "mkdir failed", "path=%s err=\"%s\"", path,
                     strerror(errno));
            return TX_ERROR;
        }
    }

    rc = mdb_env_create(&txcp.store);
    if (rc != 0) {
        goto failed;
    }

    mdb_env_set_maxdbs(txcp.store, TXCP_DB_N + 4);
    mdb_env_set_mapsize(txcp.store, txcp.conf.store_mapsize);

    rc = mdb_env_open(txcp.store, path, 0, 0600);
    if (rc != 0) {
        goto failed;
    }

    rc = mdb_txn_begin(txcp.store, NULL, 0, &txn);
    if (rc != 0) {
        goto failed;
    }

    for (i = 0; i < TXCP_DB_N; i++) {
        rc = mdb_dbi_open(txn, txcp_db_names[i], MDB_CREATE, &txcp.db[i]);
        if (rc != 0) {
            goto failed;
        }
    }

    k.mv_data = "schema";
    k.mv_size = 6;

    rc = mdb_get(txn, txcp.db[TXCP_DB_META], &k, &v);

    if (rc == MDB_NOTFOUND) {
        schema = 0;

    } else if (rc != 0) {
        goto failed;

    } else if (v.mv_size != 8) {
        txcp_log(TXCP_LOG_ERROR, "store meta schema corrupt", NULL);
        goto failed_txn;

    } else {
        schema = txcp_get_le64(v.mv_data);
    }

    if (schema > TXCP_STORE_SCHEMA) {
        txcp_log(TXCP_LOG_ERROR, "store schema is newer than this binary",
                 "schema=%llu known=%d", (unsigned long long) schema,
                 TXCP_STORE_SCHEMA);
        goto failed_txn;
    }

    /* the check value first: nothing is sealed under a wrong key */

    if (txcp_vault_loaded() && txcp_vault_store_open(txn) != TX_OK) {
        goto failed_txn;
    }

    if (schema < TXCP_STORE_SCHEMA) {
        if (txcp_store_migrate(txn, schema, TXCP_STORE_SCHEMA) != TX_OK) {
            goto failed_txn;
        }

        /*
         * the steps to schemas 4 and 5 sealed plaintext provider credentials
         * and webhook secrets: drop their old pages
         */
        compact = schema > 0 && schema < 5;

        txcp_put_le64(buf, TXCP_STORE_SCHEMA);
        v.mv_data = buf;
        v.mv_size = 8;

        rc = mdb_put(txn, txcp.db[TXCP_DB_META], &k, &v, 0);
        if (rc != 0) {
            goto failed;
        }
    }

    if (create) {
        secret = sodium_malloc(TX_KEY_SECRET_LEN + 1);
        if (secret == NULL) {
            goto failed_txn;
        }

        if (txcp_store_bootstrap(txn, secret, &created) != TX_OK) {
            goto failed_txn;
        }

        if (created) {
            if (txcp_store_write_admin_key(secret, keypath, sizeof(keypath))
                != TX_OK) {
                goto failed_txn;
            }
        }

    } else {
        txcp.hash_key = sodium_malloc(TX_KEY_HASHKEY_LEN);

        k.mv_data = "hash_key";
        k.mv_size = 8;

        if (txcp.hash_key == NULL
            || mdb_get(txn, txcp.db[TXCP_DB_META], &k, &v) != 0
            || v.mv_size != TX_KEY_HASHKEY_LEN)
        {
            txcp_log(TXCP_LOG_ERROR, "store has no hash key", NULL);
            goto failed_txn;
        }

        memcpy(txcp.hash_key, v.mv_data, TX_KEY_HASHKEY_LEN);
    }

    rc = mdb_txn_commit(txn);
    txn = NULL;

    if (rc != 0) {
        goto failed;
    }

    if (created) {
        printf("torrix-cp: admin key created: %s (saved to %s)\n", secret,
               keypath);
        fflush(stdout);
        txcp_log(TXCP_LOG_INFO, "admin key created", "path=%s", keypath);
    }

    if (secret) {
        sodium_memzero(secret, TX_KEY_SECRET_LEN + 1);
        sodium_free(secret);
    }

    if (compact) {
        return txcp_store_compact(create);
    }

    return TX_OK;

failed:

    txcp_log(TXCP_LOG_ERROR, "store open failed", "path=%s err=\"%s\"", path,
             mdb_strerror(rc));

failed_txn:

    if (txn) {
        mdb_txn_abort(txn);
    }

    if (secret) {
        sodium_memzero(secret, TX_KEY_SECRET_LEN + 1);
        sodium_free(secret);
    }

    if (txcp.store) {
        mdb_env_close(txcp.store);
        txcp.store = NULL;
    }

    return TX_ERROR;
}


/*
 * Creates the hash key when missing and the first admin when there is none.
 * *created tells the caller to save and print `secret`.
 */
static int
txcp_store_bootstrap(MDB_txn *txn, char *secret, int *created)
{
    int      rc;
    char     id[TX_ID_MAX_LEN], ts[40];
    uint8_t  hash[TX_KEY_HASH_LEN];
    cJSON   *rec, *diff;
    char    *text;
    MDB_val  k, v;
    MDB_stat st;

    txcp.hash_key = sodium_malloc(TX_KEY_HASHKEY_LEN);
    if (txcp.hash_key == NULL) {
        return TX_ERROR;
    }

    k.mv_data = "hash_key";
    k.mv_size = 8;

    rc = mdb_get(txn, txcp.db[TXCP_DB_META], &k, &v);

    if (rc == 0 && v.mv_size == TX_KEY_HASHKEY_LEN) {
        memcpy(txcp.hash_key, v.mv_data, TX_KEY_HASHKEY_LEN);

    } else if (rc == MDB_NOTFOUND) {
        randombytes_buf(txcp.hash_key, TX_KEY_HASHKEY_LEN);
        v.mv_data = txcp.hash_key;
        v.mv_size = TX_KEY_HASHKEY_LEN;

        rc = mdb_put(txn, txcp.db[TXCP_DB_META], &k, &v, 0);
        if (rc != 0) {
            txcp_log(TXCP_LOG_ERROR, "store put failed", "err=\"%s\"",
                     mdb_strerror(rc));
            return TX_ERROR;
        }

    } else {
        txcp_log(TXCP_LOG_ERROR, "store hash key corrupt", NULL);
        return TX_ERROR;
    }

    rc = mdb_stat(txn, txcp.db[TXCP_DB_ADMINS], &st);
    if (rc != 0) {
        return TX_ERROR;
    }

    if (st.ms_entries > 0) {
        return TX_OK;
    }

    tx_key_generate(secret);

    if (tx_key_hash(txcp.hash_key, (const uint8_t *) secret, TX_KEY_SECRET_LEN,
                    hash)
        != TX_OK)
    {
        return TX_ERROR;
    }

    tx_id_generate("adm_", id);
    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));

    rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "id", id);
    cJSON_AddStringToObject(rec, "name", "admin");
    cJSON_AddStringToObject(rec, "role", "super-admin");
    cJSON_AddStringToObject(rec, "created_at", ts);

    text = cJSON_PrintUnformatted(rec);
    cJSON_Delete(rec);

    if (text == NULL) {
        return TX_ERROR;
    }

    k.mv_data = hash;
    k.mv_size = TX_KEY_HASH_LEN;
    v.mv_data = text;
    v.mv_size = strlen(text);

    rc = mdb_put(txn, txcp.db[TXCP_DB_ADMINS], &k, &v, 0);
    free(text);

    if (rc != 0) {
        txcp_log(TXCP_LOG_ERROR, "store put failed", "err=\"%s\"",
                 mdb_strerror(rc));
        return TX_ERROR;
    }

    diff = cJSON_CreateObject();
    txcp_audit_diff(diff, "role", NULL, cJSON_CreateString("super-admin"));

    rc = txcp_audit_append(txn, "system", "create", "admin", id, diff);
    cJSON_Delete(diff);

    if (rc != TX_OK) {
        return TX_ERROR;
    }

    *created = 1;

    return TX_OK;
}


static int
txcp_store_write_admin_key(const char *secret, char *path, size_t len)
{
    int     fd;
    size_t  n;
    ssize_t w;
    char    tmp[4096];

    snprintf(path, len, "%s/admin.key", txcp.conf.data_dir);
    snprintf(tmp, sizeof(tmp), "%s/admin.key.tmp", txcp.conf.data_dir);

    (void) unlink(tmp);

    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        txcp_log(TXCP_LOG_ERROR, "cannot write admin key", "path=%s err=\"%s\"",
                 tmp, strerror(errno));
        return TX_ERROR;
    }

    n = strlen(secret);
    w = write(fd, secret, n);

    if (w != (ssize_t) n || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        txcp_log(TXCP_LOG_ERROR, "cannot write admin key", "path=%s err=\"%s\"",
                 tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return TX_ERROR;
    }

    close(fd);

    if (rename(tmp, path) != 0) {
        txcp_log(TXCP_LOG_ERROR, "cannot write admin key", "path=%s err=\"%s\"",
                 path, strerror(errno));
        unlink(tmp);
        return TX_ERROR;
    }

    return TX_OK;
}


/* (Re)builds runs_ix from the stored runs, in run id order. */
static int
txcp_store_index_runs(MDB_txn *txn)
{
    int             rc;
    txcp_run_t      run;
    MDB_val         k, v;
    MDB_cursor     *cur;
    txcp_runs_cur_t ic;

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_RUNS], &cur);
    if (rc != 0) {
        return TX_ERROR;
    }

    memset(&ic, 0, sizeof(ic));
    txcp_runs_cur_begin(&ic);

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (txcp_run_decode(v.mv_data, v.mv_size, &run) != TX_OK) {
            continue;
        }

        rc = txcp_runs_index(txn, &ic, &run, 0);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(cur);

    if (rc == MDB_NOTFOUND) {
        rc = txcp_runs_cur_flush(txn, &ic);
    }

    txcp_runs_cur_free(&ic);

    if (rc != 0) {
        txcp_log(TXCP_LOG_ERROR, "run index rebuild failed", "err=\"%s\"",
                 mdb_strerror(rc));
        return TX_ERROR;
    }

    return TX_OK;
}


/* Drops the named database name if the store has it. */
static int
txcp_store_drop(MDB_txn *txn, const char *name)
{
    int     rc;
    MDB_dbi dbi;

    rc = mdb_dbi_open(txn, name, 0, &dbi);

    if (rc == 0) {
        rc = mdb_drop(txn, dbi, 1);
    }

    if (rc != 0 && rc != MDB_NOTFOUND) {
        txcp_log(TXCP_LOG_ERROR, "cannot drop database", "db=%s err=\"%s\"",
                 name, mdb_strerror(rc));
        return TX_ERROR;
    }

    return TX_OK;
}


/*
 * Rewrites store/data.mdb with its live pages only (MDB_CP_COMPACT) and
 * reopens the store: the plaintext a migration sealed would otherwise
 * survive in the file's free pages until reused.
 */
static int
txcp_store_compact(int create)
{
    int  rc;
    char dir[4096], from[4200], to[4200];

    snprintf(dir, sizeof(dir), "%s/store.compact", txcp.conf.data_dir);
    snprintf(from, sizeof(from), "%s/data.mdb", dir);
    snprintf(to, sizeof(to), "%s/store/data.mdb", txcp.conf.data_dir);

    (void) unlink(from);

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        txcp_log(TXCP_LOG_ERROR, "mkdir failed", "path=%s err=\"%s\"", dir,
                 strerror(errno));
        txcp_store_close();
        return TX_ERROR;
    }

    rc = mdb_env_copy2(txcp.store, dir, MDB_CP_COMPACT);

    txcp_store_close();

    if (rc != 0 || chmod(from, 0600) != 0 || rename(from, to) != 0) {
        txcp_log(TXCP_LOG_ERROR, "store compaction failed",
                 "path=%s err=\"%s\"", dir,
                 rc ? mdb_strerror(rc) : strerror(errno));
        (void) unlink(from);
        (void) rmdir(dir);
        return TX_ERROR;
    }

    (void) rmdir(dir);

    txcp_log(TXCP_LOG_INFO, "store compacted", "path=%s", to);

    return txcp_store_open(create);
}


int
txcp_store_migrate(MDB_txn *txn, uint64_t from, uint64_t to)
{
    /*
     * Schema 0 is an empty store; 1 is the first layout.  Later versions
     * add a case per step (from -> from + 1) here.
     */

    while (from < to) {
        switch (from) {
        case 0:
            break;

        case 1:
            /*
             * prices, spend, rollups and the run index are new databases
             * (rollups start empty: they are never rebuilt from raw runs;
             * the runs already stored are indexed by the step to 6)
             */
            break;

        case 2:
            /* webhooks, alerts, alert_marks, outbox: new, empty */
            break;

        case 3:
            /*
             * provider credentials are sealed (txcp_vault.h): a plaintext
             * "api_key" becomes "api_key_sealed"; meta gains "vault_check"
             * (written by txcp_vault_store_open() before this step)
             */
            if (txcp_vault_migrate(txn) != TX_OK) {
                return TX_ERROR;
            }
            break;

        case 4:
            /*
             * webhook signing secrets are sealed too: a plaintext "secret"
             * becomes "secret_sealed" (AD = the webhook id)
             */
            if (txcp_vault_migrate(txn) != TX_OK) {
                return TX_ERROR;
            }
            break;

        case 5:
            /*
             * the run index moves from runs_idx (a row per run and index
             * key) to runs_ix (rows of up to 64 run ids, txcp_runidx.h):
             * rebuilt from the runs, the old one dropped
             */
            if (txcp_store_index_runs(txn) != TX_OK
                || txcp_store_drop(txn, "runs_idx") != TX_OK)
            {
                return TX_ERROR;
            }
            break;

        default:
            txcp_log(TXCP_LOG_ERROR, "no migration", "from=%llu",
                     (unsigned long long) from);
            return TX_ERROR;
        }

        from++;
        txcp_log(TXCP_LOG_INFO, "store migrated", "schema=%llu",
                 (unsigned long long) from);
    }

    return TX_OK;
}


void
txcp_store_close(void)
{
    if (txcp.store) {
        mdb_env_close(txcp.store);
        txcp.store = NULL;
    }

    if (txcp.hash_key) {
        sodium_free(txcp.hash_key);
        txcp.hash_key = NULL;
    }
}


cJSON *
txcp_store_get(MDB_txn *txn, int db, const char *id)
{
    int     rc;
    cJSON  *rec;
    MDB_val k, v;

    k.mv_data = (void *) id;
    k.mv_size = strlen(id);

    if (k.mv_size == 0 || k.mv_size > 511) {
        return NULL;
    }

    rc = mdb_get(txn, txcp.db[db], &k, &v);
    if (rc != 0) {
        if (rc != MDB_NOTFOUND) {
            txcp_log(TXCP_LOG_ERROR, "store get failed", "db=%s err=\"%s\"",
                     txcp_db_names[db], mdb_strerror(rc));
        }

        return NULL;
    }

    rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);

    if (rec == NULL) {
        txcp_log(TXCP_LOG_ERROR, "store record corrupt", "db=%s id=%s",
                 txcp_db_names[db], id);
    }

    return rec;
}


int
txcp_store_put(MDB_txn *txn, int db, const char *id, const cJSON *rec)
{
    int     rc;
    char   *text;
    MDB_val k, v;

    text = cJSON_PrintUnformatted(rec);
    if (text == NULL) {
        return TX_ERROR;
    }

    k.mv_data = (void *) id;
    k.mv_size = strlen(id);
    v.mv_data = text;
    v.mv_size = strlen(text);

    rc = mdb_put(txn, txcp.db[db], &k, &v, 0);
    free(text);

    if (rc != 0) {
        txcp_log(TXCP_LOG_ERROR, "store put failed", "db=%s err=\"%s\"",
                 txcp_db_names[db], mdb_strerror(rc));
        return TX_ERROR;
    }

    return TX_OK;
}


int
txcp_store_del(MDB_txn *txn, int db, const char *id)
{
    int     rc;
    MDB_val k;

    k.mv_data = (void *) id;
    k.mv_size = strlen(id);

    rc = mdb_del(txn, txcp.db[db], &k, NULL);

    if (rc == MDB_NOTFOUND) {
        return TX_DECLINED;
    }

    if (rc != 0) {
        txcp_log(TXCP_LOG_ERROR, "store del failed", "db=%s err=\"%s\"",
                 txcp_db_names[db], mdb_strerror(rc));
        return TX_ERROR;
    }

    return TX_OK;
}


int
txcp_store_exists(MDB_txn *txn, int db, const char *id)
{
    MDB_val k, v;

    k.mv_data = (void *) id;
    k.mv_size = strlen(id);

    if (k.mv_size == 0 || k.mv_size > 511) {
        return 0;
    }

    return mdb_get(txn, txcp.db[db], &k, &v) == 0;
}


int
txcp_store_ref_used(MDB_txn *txn, int db, const char *field, const char *id)
{
    int         rc, found;
    cJSON      *rec, *f;
    MDB_val     k, v;
    MDB_cursor *cur;

    if (mdb_cursor_open(txn, txcp.db[db], &cur) != 0) {
        return 1;
    }

    found = 0;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !found;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (rec == NULL) {
            continue;
        }

        f = cJSON_GetObjectItemCaseSensitive(rec, "status");

        if (cJSON_IsString(f) && strcmp(f->valuestring, "revoked") == 0) {
            cJSON_Delete(rec);
            continue;
        }

        f = cJSON_GetObjectItemCaseSensitive(rec, field);

        if (cJSON_IsString(f) && strcmp(f->valuestring, id) == 0) {
            found = 1;
        }

        cJSON_Delete(rec);
    }

    mdb_cursor_close(cur);

    return found;
}


static size_t
txcp_timer_key(uint8_t *buf, int64_t at, int kind, const char *key_id)
{
    size_t n;

    n = strlen(key_id);
    if (n > TX_ID_MAX_LEN) {
        n = TX_ID_MAX_LEN;
    }

    txcp_put_be64(buf, (uint64_t) at);
    buf[8] = (uint8_t) kind;
    memcpy(buf + 9, key_id, n);

    return 9 + n;
}


int
txcp_store_timer_add(MDB_txn *txn, int64_t at, int kind, const char *key_id)
{
    int     rc;
    uint8_t buf[9 + TX_ID_MAX_LEN];
    MDB_val k, v;

    k.mv_data = buf;
    k.mv_size = txcp_timer_key(buf, at, kind, key_id);
    v.mv_data = "";
    v.mv_size = 0;

    rc = mdb_put(txn, txcp.db[TXCP_DB_TIMERS], &k, &v, 0);

    return rc == 0 ? TX_OK : TX_ERROR;
}


int
txcp_store_timer_del(MDB_txn *txn, int64_t at, int kind, const char *key_id)
{
    int     rc;
    uint8_t buf[9 + TX_ID_MAX_LEN];
    MDB_val k;

    k.mv_data = buf;
    k.mv_size = txcp_timer_key(buf, at, kind, key_id);

    rc = mdb_del(txn, txcp.db[TXCP_DB_TIMERS], &k, NULL);

    return rc == 0 || rc == MDB_NOTFOUND ? TX_OK : TX_ERROR;
}


/*
 * The pid of a process that has the store env open, 0 when none, -1 when
 * unknown.  Every LMDB process holds a read lock on byte 0 of lock.mdb
 * while the env is open (that is how LMDB finds out it is alone).
 */
long
txcp_store_user(void)
{
    int          fd;
    char         path[4096];
    struct flock fl;

    snprintf(path, sizeof(path), "%s/store/lock.mdb", txcp.conf.data_dir);

    fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd == -1) {
        return errno == ENOENT ? 0 : -1;
    }

    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;

    if (fcntl(fd, F_GETLK, &fl) != 0) {
        close(fd);
        return -1;
    }

    close(fd);

    return fl.l_type == F_UNLCK ? 0 : (long) fl.l_pid;
}

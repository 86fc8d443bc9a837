/*
 * torrix-cp spool ingest (see txcp_ingest.h).
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tx_pii.h"
#include "tx_record.h"
#include "tx_spool.h"
#include "tx_window.h"

#include "txcp.h"
#include "txcp_alert.h"
#include "txcp_api.h"
#include "txcp_ingest.h"
#include "txcp_json.h"
#include "txcp_rollup.h"
#include "txcp_run.h"
#include "txcp_store.h"
#include "txcp_webhook.h"


#define TXCP_SPOOL_NAME_MAX 200
#define TXCP_SPOOL_PASS_MAX 64 /* files a pass opens (oldest first) */
#define TXCP_INGEST_CHUNK   64 /* frames read from one file in a row */
#define TXCP_SPOOL_FREE_MAX 4 /* finished files kept in spool/free/ for reuse */
#define TXCP_SPOOL_JUNK_AGE                                                    \
    10 /* seconds before a headerless file is
                                        considered abandoned */


#define TXCP_WATERMARK_IDLE_US 1000000 /* watermark-only publishes */
#define TXCP_CACHE_SLOTS       256
#define TXCP_TAGS_BUF          (TXCP_RUN_TAGS_MAX * 520)


/* A spool file of one ingest pass. */
typedef struct {
    char     name[TXCP_SPOOL_NAME_MAX + 1];
    int      fd;       /* -1: not open (done with, or nothing in it) */
    int      locked;   /* we hold the writer's flock: it is gone */
    int      finished; /* read to its end, the writer gone */
    int      idle;     /* nothing more to read in this pass */
    int      moved;    /* the open txn advanced its cursor */
    int      turn;     /* the open txn reads it */
    long     writer;   /* the worker's pid, from the name */
    uint8_t *base;
    size_t   fsize;
    off_t    size;
    size_t   start;    /* the committed cursor the open txn read from */
    size_t   off;      /* where the open txn's reading ended */
    uint8_t  last[16]; /* the id of the last run it gave, or zeros */
    uint64_t ingested, dups, torn; /* of the open txn */
} txcp_ingest_src_t;


/* Per-pass cache of what enrichment reads from the store, by id. */
typedef struct txcp_cache_ent_s txcp_cache_ent_t;

struct txcp_cache_ent_s {
    txcp_cache_ent_t *next;
    char             *meta; /* keys: '\n'-joined metadata k=v, or NULL */
    int               pii;  /* orgs, projects: pii_masking */
    char              id[1];
};


/* State of the ingest passes (one loop thread). */
typedef struct {
    txcp_acc_t        rollup;  /* deltas of the open txn */
    txcp_acc_t        spend;   /* deltas of the open txn */
    txcp_pend_t       pend;    /* runs of one shape in a row, not yet in
                                  rollup and spend */
    txcp_acc_t        changed; /* spend keys committed this pass */
    txcp_runs_cur_t   cur;     /* of the open txn */
    txcp_cache_ent_t *cache[TXCP_CACHE_SLOTS];
    txcp_settings_t   settings;
    tx_pii_t         *pii;
    char             *pii_sig; /* the rules pii was built from */
    uint8_t          *buf;     /* rewritten record */
    size_t            cap;
    char              tags[TXCP_TAGS_BUF];
    int               alerts;       /* fired in the open txn */
    int64_t           now;          /* unix seconds, at pass start */
    int64_t           published_us; /* last watermark publish */
} txcp_ingest_ctx_t;


static txcp_ingest_ctx_t txcp_ictx;


static void txcp_ingest_close(txcp_ingest_src_t *src);


static int
txcp_spool_path(char *buf, size_t len, const char *name)
{
    int n;

    n = snprintf(buf, len, "%s/spool/%s", txcp.conf.data_dir, name);

    return n > 0 && (size_t) n < len ? TX_OK : TX_ERROR;
}


/*
 * spool/free/: finished files the workers take instead of creating new ones
 * (tx_spool.h).  It gets the spool directory's owner and mode, since the
 * workers rename files out of it.  Without it workers just create files.
 */
static void
txcp_ingest_free_dir(const char *spool)
{
    char        path[4096];
    struct stat st, sst;

    if (stat(spool, &sst) != 0
        || txcp_spool_path(path, sizeof(path), "free") != TX_OK)
    {
        return;
    }

    if (stat(path, &st) != 0) {
        if (mkdir(path, sst.st_mode & 07777) != 0) {
            txcp_log(TXCP_LOG_WARN, "mkdir failed", "path=%s err=\"%s\"", path,
                     strerror(errno));
            return;
        }

        (void) chmod(path, sst.st_mode & 07777);
        (void) chown(path, sst.st_uid, sst.st_gid);
    }
}


/*
 * A finished file: into spool/free/ while it holds fewer than
 * TXCP_SPOOL_FREE_MAX files, else deleted (0, or -1 with errno).
 */
static int
txcp_ingest_retire(const char *path, const char *name, off_t size)
{
    int            n;
    DIR           *dir;
    char           free_dir[4096], to[4096];
    struct dirent *de;

    if (txcp_spool_path(free_dir, sizeof(free_dir), "free") != TX_OK) {
        return unlink(path);
    }

    dir = opendir(free_dir);

    if (dir != NULL) {
        n = 0;

        while ((de = readdir(dir)) != NULL) {
            n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
        }

        (void) closedir(dir);

        if (n < TXCP_SPOOL_FREE_MAX && size > 0
            && (size_t) snprintf(to, sizeof(to), "%s/%s", free_dir, name)
                   < sizeof(to)
            && rename(path, to) == 0)
        {
            return 0;
        }
    }

    return unlink(path);
}


/*
 * Deletes the files that waited in spool/free/ longer than spool_free_age_s
 * since their last record: a recycled file keeps the records it carried
 * (sampled bodies included) until a worker writes over it, and an idle
 * gateway must not keep them on disk.  At most once a second.  A file a
 * worker is taking at that moment is safe to delete: the worker's rename to
 * its live name then fails and it creates a fresh file instead.
 */
static void
txcp_ingest_free_sweep(void)
{
    int            fd;
    DIR           *dir;
    char           path[4096];
    time_t         now;
    struct stat    st;
    struct dirent *de;

    static time_t last;

    now = time(NULL);

    if (now == last) {
        return;
    }

    last = now;

    if (txcp_spool_path(path, sizeof(path), "free") != TX_OK) {
        return;
    }

    dir = opendir(path);
    if (dir == NULL) {
        return;
    }

    fd = dirfd(dir);

    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0
            || fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        {
            continue;
        }

        if (now - st.st_mtime >= txcp.conf.spool_free_age_s
            && unlinkat(fd, de->d_name, 0) != 0 && errno != ENOENT)
        {
            txcp_log(TXCP_LOG_WARN, "spool free file not removed",
                     "file=%s err=\"%s\"", de->d_name, strerror(errno));
        }
    }

    (void) closedir(dir);
}


int
txcp_ingest_init(void)
{
    int         rc;
    char        path[4096], name[TXCP_SPOOL_NAME_MAX + 1];
    MDB_txn    *txn;
    MDB_val     k, v;
    MDB_cursor *cur;
    struct stat st;

    snprintf(path, sizeof(path), "%s/spool", txcp.conf.data_dir);

    if (stat(path, &st) != 0 && mkdir(path, 0750) != 0) {
        txcp_log(TXCP_LOG_ERROR, "mkdir failed", "path=%s err=\"%s\"", path,
                 strerror(errno));
        return TX_ERROR;
    }

    txcp_ingest_free_dir(path);

    if (txcp_store_begin(0, &txn) != 0) {
        return TX_ERROR;
    }

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_SPOOL_CURSOR], &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return TX_ERROR;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size > 0 && k.mv_size <= TXCP_SPOOL_NAME_MAX) {
            memcpy(name, k.mv_data, k.mv_size);
            name[k.mv_size] = '\0';

            if (txcp_spool_path(path, sizeof(path), name) == TX_OK
                && (stat(path, &st) == 0 || errno != ENOENT))
            {
                continue;
            }
        }

        txcp_log(TXCP_LOG_INFO, "spool cursor dropped", "file=%.*s",
                 (int) k.mv_size, (char *) k.mv_data);

        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(cur);

    if (rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return TX_ERROR;
    }

    return txcp_store_commit(txn) == 0 ? TX_OK : TX_ERROR;
}


static int
txcp_spool_cmp(const void *a, const void *b)
{
    return strcmp(((const txcp_ingest_src_t *) a)->name,
                  ((const txcp_ingest_src_t *) b)->name);
}


static int
txcp_ingest_cursor_del(const char *name)
{
    MDB_txn *txn;

    if (txcp_store_begin(0, &txn) != 0) {
        return TX_ERROR;
    }

    if (txcp_store_del(txn, TXCP_DB_SPOOL_CURSOR, name) == TX_ERROR) {
        mdb_txn_abort(txn);
        return TX_ERROR;
    }

    return txcp_store_commit(txn) == 0 ? TX_OK : TX_ERROR;
}


/* Takes the writer's flock if the writer is gone: 1 taken, 0 not. */
static int
txcp_ingest_lock(int fd, int *locked)
{
    if (!*locked && flock(fd, LOCK_EX | LOCK_NB) == 0) {
        *locked = 1;
    }

    return *locked;
}


static void
txcp_cache_reset(void)
{
    int               i;
    txcp_cache_ent_t *e, *next;

    for (i = 0; i < TXCP_CACHE_SLOTS; i++) {
        for (e = txcp_ictx.cache[i]; e; e = next) {
            next = e->next;
            free(e->meta);
            free(e);
        }

        txcp_ictx.cache[i] = NULL;
    }
}


/* The cache entry of (db, id), read from the store on first use. */
static txcp_cache_ent_t *
txcp_cache_get(MDB_txn *txn, int db, const tx_str_t *id)
{
    size_t            i, n;
    uint32_t          h;
    char              sid[TX_ID_MAX_LEN + 2];
    cJSON            *rec, *md, *it;
    txcp_cache_ent_t *e;

    if (id->len == 0 || id->len > TX_ID_MAX_LEN) {
        return NULL;
    }

    sid[0] = (char) ('0' + db);
    memcpy(sid + 1, id->data, id->len);
    sid[id->len + 1] = '\0';

    h = 2166136261u;

    for (i = 0; sid[i]; i++) {
        h = (h ^ (uint8_t) sid[i]) * 16777619u;
    }

    for (e = txcp_ictx.cache[h % TXCP_CACHE_SLOTS]; e; e = e->next) {
        if (strcmp(e->id, sid) == 0) {
            return e;
        }
    }

    e = calloc(1, sizeof(txcp_cache_ent_t) + id->len + 1);
    if (e == NULL) {
        return NULL;
    }

    memcpy(e->id, sid, id->len + 2);

    rec = txcp_store_get(txn, db, sid + 1);

    if (db == TXCP_DB_KEYS) {
        md = cJSON_GetObjectItemCaseSensitive(rec, "metadata");
        n = 0;

        cJSON_ArrayForEach(it, md)
        {
            if (cJSON_IsString(it)) {
                n += strlen(it->string) + strlen(it->valuestring) + 2;
            }
        }

        if (n && (e->meta = malloc(n + 1)) != NULL) {
            e->meta[0] = '\0';
            n = 0;

            cJSON_ArrayForEach(it, md)
            {
                if (cJSON_IsString(it)) {
                    n += sprintf(e->meta + n, "%s%s=%s", n ? "\n" : "",
                                 it->string, it->valuestring);
                }
            }
        }

    } else {
        e->pii = txcp_json_bool(rec, "pii_masking", 0);
    }

    cJSON_Delete(rec);

    e->next = txcp_ictx.cache[h % TXCP_CACHE_SLOTS];
    txcp_ictx.cache[h % TXCP_CACHE_SLOTS] = e;

    return e;
}


static int
txcp_is_space(uint8_t c)
{
    return c == ' ' || c == '\t';
}


/* Appends "k=v" unless k is already in out[0..*len); 1 added, 0 not. */
static int
txcp_tags_append(char *out, size_t *len, int *count, const uint8_t *k,
                 size_t klen, const uint8_t *v, size_t vlen)
{
    size_t      i;
    const char *p, *end, *nl;

    while (klen && txcp_is_space(*k)) {
        k++;
        klen--;
    }

    while (klen && txcp_is_space(k[klen - 1])) {
        klen--;
    }

    while (vlen && txcp_is_space(*v)) {
        v++;
        vlen--;
    }

    while (vlen && txcp_is_space(v[vlen - 1])) {
        vlen--;
    }

    if (klen == 0 || klen > 255 || vlen > 255 || *count >= TXCP_RUN_TAGS_MAX) {
        return 0;
    }

    for (i = 0; i < klen; i++) {
        if (k[i] < 0x20 || k[i] == 0x7f) {
            return 0;
        }
    }

    for (i = 0; i < vlen; i++) {
        if (v[i] < 0x20 || v[i] == 0x7f) {
            return 0;
        }
    }

    p = out;
    end = out + *len;

    while (p < end) {
        nl = memchr(p, '\n', end - p);
        nl = nl ? nl : end;

        if ((size_t) (nl - p) > klen && p[klen] == '='
            && memcmp(p, k, klen) == 0) {
            return 0;
        }

        p = nl + 1;
    }

    if (*len) {
        out[(*len)++] = '\n';
    }

    memcpy(out + *len, k, klen);
    *len += klen;
    out[(*len)++] = '=';
    memcpy(out + *len, v, vlen);
    *len += vlen;

    (*count)++;

    return 1;
}


/*
 * Merged tags of a run into txcp_ictx.tags: the x-torrix-tags header
 * ("k=v,k=v", or already '\n'-separated) first, then the key's metadata.
 */
static size_t
txcp_ingest_tags(MDB_txn *txn, const txcp_run_t *run)
{
    int               count;
    size_t            len;
    const uint8_t    *p, *end, *sep, *eq;
    txcp_cache_ent_t *ke;

    len = 0;
    count = 0;

    for (p = run->tags.data, end = p + run->tags.len; p < end; p = sep + 1) {
        for (sep = p; sep < end && *sep != ',' && *sep != '\n'; sep++) {
            /* void */
        }

        eq = memchr(p, '=', sep - p);

        if (eq) {
            txcp_tags_append(txcp_ictx.tags, &len, &count, p, eq - p, eq + 1,
                             sep - eq - 1);
        }
    }

    ke = txcp_cache_get(txn, TXCP_DB_KEYS, &run->key);

    if (ke && ke->meta) {
        p = (const uint8_t *) ke->meta;
        end = p + strlen(ke->meta);

        for (/* void */; p < end; p = sep + 1) {
            sep = memchr(p, '\n', end - p);
            sep = sep ? sep : end;
            eq = memchr(p, '=', sep - p);

            if (eq) {
                txcp_tags_append(txcp_ictx.tags, &len, &count, p, eq - p,
                                 eq + 1, sep - eq - 1);
            }
        }
    }

    return len;
}


static int
txcp_ingest_pii_on(MDB_txn *txn, const txcp_run_t *run)
{
    txcp_cache_ent_t *e;

    if (txcp_ictx.settings.pii_masking) {
        return 1;
    }

    e = txcp_cache_get(txn, TXCP_DB_PROJECTS, &run->project);

    if (e && e->pii) {
        return 1;
    }

    e = txcp_cache_get(txn, TXCP_DB_ORGS, &run->org);

    return e && e->pii;
}


static int
txcp_ingest_reserve(size_t need)
{
    uint8_t *p;

    if (need <= txcp_ictx.cap) {
        return TX_OK;
    }

    p = realloc(txcp_ictx.buf, need);
    if (p == NULL) {
        return TX_ERROR;
    }

    txcp_ictx.buf = p;
    txcp_ictx.cap = need;

    return TX_OK;
}


/*
 * The record to store: the spooled one with the merged tags, masked bodies
 * and, for free models, cost 0 without the unpriced flag.  *out is either
 * payload or txcp_ictx.buf.  TX_OK or TX_ERROR.
 */
static int
txcp_ingest_rewrite(const uint8_t *payload, size_t plen, txcp_run_t *run,
                    const tx_str_t *tags, const tx_str_t *req,
                    const tx_str_t *resp, int zero_cost, const char *etype,
                    const char *emsg, const uint8_t **out, size_t *olen)
{
    uint16_t      tag;
    tx_str_t      v;
    tx_wbuf_t     wb;
    tx_rec_iter_t it;

    if (txcp_ingest_reserve(plen + tags->len + 64 + (req ? req->len : 0)
                            + (resp ? resp->len : 0)
                            + (etype ? strlen(etype) + 8 : 0)
                            + (emsg ? strlen(emsg) + 8 : 0))
        != TX_OK)
    {
        return TX_ERROR;
    }

    /* in the form it came in (tx_record.h) */
    if (tx_rec_compact(payload, plen)) {
        tx_wbuf_init_compact(&wb, txcp_ictx.buf, txcp_ictx.cap);

    } else {
        tx_wbuf_init(&wb, txcp_ictx.buf, txcp_ictx.cap);
    }

    tx_rec_iter_init(&it, payload, plen);

    while (tx_rec_next(&it, &tag, &v) == TX_OK) {
        if (tag == TX_RUN_TAGS || (req && tag == TX_RUN_REQ_BODY)
            || (resp && tag == TX_RUN_RESP_BODY)
            || (zero_cost && (tag == TX_RUN_COST || tag == TX_RUN_FLAGS)))
        {
            continue;
        }

        tx_rec_put_bytes(&wb, tag, v.data, v.len);
    }

    if (tags->len) {
        tx_rec_put_bytes(&wb, TX_RUN_TAGS, tags->data, tags->len);
    }

    if (req) {
        tx_rec_put_bytes(&wb, TX_RUN_REQ_BODY, req->data, req->len);
    }

    if (resp) {
        tx_rec_put_bytes(&wb, TX_RUN_RESP_BODY, resp->data, resp->len);
    }

    if (etype) {
        tx_rec_put_cstr(&wb, TX_RUN_ERROR_TYPE, etype);
    }

    if (emsg) {
        tx_rec_put_cstr(&wb, TX_RUN_ERROR, emsg);
    }

    if (zero_cost) {
        run->cost = 0;
        run->flags &= ~(uint64_t) TX_RUNF_UNPRICED;
        tx_rec_put_i64(&wb, TX_RUN_COST, 0);
        tx_rec_put_u64(&wb, TX_RUN_FLAGS, run->flags);
    }

    if (wb.overflow) {
        return TX_ERROR;
    }

    *out = wb.start;
    *olen = wb.pos - wb.start;

    return TX_OK;
}


static int
txcp_ingest_free_model(const txcp_run_t *run)
{
    const tx_str_t *m;

    m = txcp_run_model(run);

    return tx_str_eq(&run->provider, "ollama")
           || (m->len > 7 && memcmp(m->data, "ollama/", 7) == 0);
}


/*
 * The provider's own error type and message from a failed run's response
 * body: OpenAI {"error":{"type","message"}} and Anthropic
 * {"type":"error","error":{"type","message"}}.  Returns 1 when found.
 */
static int
txcp_ingest_provider_error(const tx_str_t *body, char *type, size_t tlen,
                           char *msg, size_t mlen)
{
    int         found;
    cJSON      *root, *err, *t, *m;
    const char *end;

    found = 0;
    type[0] = '\0';
    msg[0] = '\0';

    if (body->len == 0 || body->len > 256 * 1024) {
        return 0;
    }

    root = cJSON_ParseWithLengthOpts((const char *) body->data, body->len, &end,
                                     0);
    if (root == NULL) {
        return 0;
    }

    err = cJSON_GetObjectItemCaseSensitive(root, "error");

    if (cJSON_IsObject(err)) {
        t = cJSON_GetObjectItemCaseSensitive(err, "type");
        m = cJSON_GetObjectItemCaseSensitive(err, "message");

        if (cJSON_IsString(t)) {
            snprintf(type, tlen, "%s", t->valuestring);
            found = 1;
        }

        if (cJSON_IsString(m)) {
            snprintf(msg, mlen, "%s", m->valuestring);
            found = 1;
        }

    } else if (cJSON_IsString(err)) {
        snprintf(msg, mlen, "%s", err->valuestring);
        found = 1;
    }

    cJSON_Delete(root);

    return found;
}


/*
 * Enriches and inserts one spooled run, with its index rows, rollups and
 * spend deltas; its id (16 bytes) goes to id once decoded.  Returns 0
 * inserted, 1 duplicate, 2 not a run record (id untouched), or -1 on a store
 * error (the txn must be aborted).
 */
static int
txcp_ingest_one(MDB_txn *txn, const char *name, const uint8_t *payload,
                size_t plen, uint8_t *id)
{
    int             rc, zero, perr;
    size_t          olen;
    const uint8_t  *rec;
    char            err[128], etype[64], emsg[512];
    tx_str_t        tags, mreq, mresp, *preq, *presp;
    txcp_run_t      run;
    tx_pii_result_t rq, rs;

    if (txcp_run_decode(payload, plen, &run) != TX_OK || run.id == NULL) {
        return 2;
    }

    memcpy(id, run.id, 16);

    tags.data = (const uint8_t *) txcp_ictx.tags;
    tags.len = txcp_ingest_tags(txn, &run);

    zero = txcp_ingest_free_model(&run)
           && (run.cost != 0 || (run.flags & TX_RUNF_UNPRICED));

    preq = NULL;
    presp = NULL;
    memset(&rq, 0, sizeof(rq));
    memset(&rs, 0, sizeof(rs));

    if ((run.req_body.len || run.resp_body.len) && txcp_ictx.pii
        && txcp_ingest_pii_on(txn, &run))
    {
        if (run.req_body.len
            && tx_pii_mask(txcp_ictx.pii, run.req_body.data, run.req_body.len,
                           &rq, err, sizeof(err))
                   == TX_OK)
        {
            mreq.data = rq.data;
            mreq.len = rq.len;
            preq = &mreq;
        }

        if (run.resp_body.len
            && tx_pii_mask(txcp_ictx.pii, run.resp_body.data, run.resp_body.len,
                           &rs, err, sizeof(err))
                   == TX_OK)
        {
            mresp.data = rs.data;
            mresp.len = rs.len;
            presp = &mresp;
        }

        if ((run.req_body.len && preq == NULL)
            || (run.resp_body.len && presp == NULL)) {
            /* never store a body that should have been masked */
            txcp_log(TXCP_LOG_ERROR, "pii masking failed, bodies dropped",
                     "file=%s err=\"%s\"", name, err);
            mreq.len = 0;
            mresp.len = 0;
            preq = run.req_body.len ? &mreq : NULL;
            presp = run.resp_body.len ? &mresp : NULL;
        }
    }

    /* a provider error's type and message, from the (masked) body */
    perr = run.status >= 400 && run.error_type.len == 0
           && !(run.flags & TX_RUNF_REJECTED)
           && txcp_ingest_provider_error(presp ? presp : &run.resp_body, etype,
                                         sizeof(etype), emsg, sizeof(emsg));

    rec = payload;
    olen = plen;

    if ((tags.len || run.tags.len || zero || preq || presp || perr)
        && txcp_ingest_rewrite(payload, plen, &run, &tags, preq, presp, zero,
                               perr && etype[0] ? etype : NULL,
                               perr && emsg[0] ? emsg : NULL, &rec, &olen)
               != TX_OK)
    {
        tx_pii_result_free(&rq);
        tx_pii_result_free(&rs);
        return 2;
    }

    tx_pii_result_free(&rq);
    tx_pii_result_free(&rs);

    run.tags = tags;

    /* a record not rewritten is read from the file's mapping at the flush */
    rc = txcp_runs_put(txn, &txcp_ictx.cur, &run, rec, olen, rec == payload);

    if (rc == MDB_KEYEXIST) {
        return 1;
    }

    /* the budget that refused it, as decoded from the spooled record */
    if (rc == 0 && run.limit.data != NULL) {
        rc = txcp_alert_refused(txn, run.limit.data, run.limit.len,
                                txcp_now_us(), &txcp_ictx.alerts);
    }

    if (rc != 0) {
        txcp_log(TXCP_LOG_ERROR, "run insert failed", "file=%s err=\"%s\"",
                 name, mdb_strerror(rc));
        return -1;
    }

    if (txcp_pend_add(&txcp_ictx.pend, &txcp_ictx.rollup, &txcp_ictx.spend,
                      &run, txcp_ictx.now)
        != TX_OK)
    {
        txcp_log(TXCP_LOG_ERROR, "rollup accumulation failed", "file=%s", name);
        return -1;
    }

    return 0;
}


/* Adds the batch's rollup and spend deltas to the store before commit. */
static int
txcp_ingest_flush(MDB_txn *txn)
{
    int rc;

    /* the batch's runs and index rows, in run id order */

    rc = txcp_runs_cur_flush(txn, &txcp_ictx.cur);
    if (rc != 0) {
        txcp_log(TXCP_LOG_ERROR, "run write failed", "err=\"%s\"",
                 mdb_strerror(rc));
        return rc;
    }

    if (txcp_pend_flush(&txcp_ictx.pend, &txcp_ictx.rollup, &txcp_ictx.spend)
        != TX_OK)
    {
        txcp_log(TXCP_LOG_ERROR, "rollup accumulation failed", NULL);
        return ENOMEM;
    }

    rc = txcp_acc_flush(txn, TXCP_DB_ROLLUPS, &txcp_ictx.rollup, TXCP_RV_N);

    if (rc == 0) {
        rc = txcp_acc_flush(txn, TXCP_DB_SPEND, &txcp_ictx.spend, 1);
    }

    /* alerts see the batch's spend and commit (or vanish) with it */

    if (rc == 0) {
        rc = txcp_alert_check(txn, &txcp_ictx.spend, txcp_now_us(),
                              &txcp_ictx.alerts);
    }

    if (rc != 0) {
        txcp_log(TXCP_LOG_ERROR, "rollup write failed", "err=\"%s\"",
                 mdb_strerror(rc));
    }

    return rc;
}


/* After a commit: the batch's spend keys join the pass's changed set. */
static void
txcp_ingest_committed(void)
{
    size_t          i;
    int64_t         zero;
    txcp_acc_ent_t *e;

    zero = 0;

    for (i = 0; i < txcp_ictx.spend.cap; i++) {
        e = &txcp_ictx.spend.ents[i];

        if (e->used) {
            (void) txcp_acc_add(&txcp_ictx.changed, e->key, e->klen, &zero, 1);
        }
    }

    txcp_acc_reset(&txcp_ictx.rollup);
    txcp_acc_reset(&txcp_ictx.spend);

    if (txcp_ictx.alerts) {
        txcp_webhook_kick();
        txcp_ictx.alerts = 0;
    }
}


static void
txcp_ingest_aborted(void)
{
    txcp_ictx.pend.used = 0;
    txcp_acc_reset(&txcp_ictx.rollup);
    txcp_acc_reset(&txcp_ictx.spend);
    txcp_ictx.alerts = 0;
}


/*
 * Opens and maps one spool file for the pass.  Returns 1 when it is ready to
 * read, 0 when there is nothing to read in it (gone, or a file without a
 * valid header: removed once abandoned), -1 on error.
 */
static int
txcp_ingest_open(txcp_ingest_src_t *src)
{
    int         locked;
    char        path[4096], *dash;
    struct stat st;

    if (txcp_spool_path(path, sizeof(path), src->name) != TX_OK) {
        return -1;
    }

    src->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (src->fd < 0) {
        return errno == ENOENT ? 0 : -1;
    }

    if (fstat(src->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        goto failed;
    }

    src->size = st.st_size;
    dash = strrchr(src->name, '-');
    src->writer = dash ? strtol(dash + 1, NULL, 10) : -1;

    if (st.st_size >= TX_SPOOL_HDR_LEN + TX_SPOOL_FRAME_HDR) {
        src->fsize = (size_t) st.st_size;
        src->base = mmap(NULL, src->fsize, PROT_READ, MAP_SHARED, src->fd, 0);

        if (src->base == MAP_FAILED) {
            src->base = NULL;
            goto failed;
        }

        if (tx_spool_hdr_check(src->base, src->fsize) == TX_OK) {
            return 1;
        }
    }

    /*
     * No valid header.  A writer creates the file, takes its flock, then
     * sizes it and writes the header: only a file that old and unlocked is
     * abandoned.
     */

    locked = 0;

    if (time(NULL) - st.st_mtime >= TXCP_SPOOL_JUNK_AGE
        && txcp_ingest_lock(src->fd, &locked))
    {
        txcp_log(TXCP_LOG_WARN, "spool file without a valid header removed",
                 "file=%s size=%lld", src->name, (long long) st.st_size);

        if (unlink(path) == 0) {
            txcp_ingest_cursor_del(src->name);
        }
    }

    txcp_ingest_close(src);

    return 0;

failed:

    txcp_ingest_close(src);

    return -1;
}


/* Unmaps and closes a file of the pass (its lock goes with it). */
static void
txcp_ingest_close(txcp_ingest_src_t *src)
{
    if (src->base) {
        munmap(src->base, src->fsize);
        src->base = NULL;
    }

    if (src->fd >= 0) {
        close(src->fd);
        src->fd = -1;
    }
}


/*
 * After the commit that covered the end of a finished file: it goes to
 * free/ (or away) and its cursor row after it.  Our lock goes before a
 * worker may take it from free/.
 */
static int
txcp_ingest_finish(txcp_ingest_src_t *src)
{
    char path[4096];

    txcp_ingest_close(src);

    if (txcp_spool_path(path, sizeof(path), src->name) != TX_OK) {
        return -1;
    }

    if (txcp_ingest_retire(path, src->name, src->size) != 0 && errno != ENOENT)
    {
        txcp_log(TXCP_LOG_ERROR, "spool unlink failed", "file=%s err=\"%s\"",
                 src->name, strerror(errno));
        return -1;
    }

    txcp.ingest.files_done++;
    txcp_log(TXCP_LOG_INFO, "spool file done", "file=%s", src->name);

    return txcp_ingest_cursor_del(src->name) == TX_OK ? 0 : -1;
}


/*
 * The committed cursor of a file, where the open transaction starts reading
 * it.  Returns 0, or -1 when it is out of range.
 */
static int
txcp_ingest_cursor(MDB_txn *txn, txcp_ingest_src_t *src)
{
    int     rc;
    size_t  off;
    MDB_val k, v;

    k.mv_data = (void *) src->name;
    k.mv_size = strlen(src->name);
    off = TX_SPOOL_HDR_LEN;

    rc = mdb_get(txn, txcp.db[TXCP_DB_SPOOL_CURSOR], &k, &v);

    if (rc == 0 && v.mv_size == 8) {
        off = (size_t) txcp_get_le64(v.mv_data);
    }

    if (off < TX_SPOOL_HDR_LEN || off > src->fsize || (off & 7) != 0) {
        txcp_log(TXCP_LOG_ERROR, "spool cursor out of range", "file=%s off=%zu",
                 src->name, off);
        return -1;
    }

    src->start = off;
    src->off = off;
    src->ingested = 0;
    src->dups = 0;
    src->torn = 0;
    memset(src->last, 0, sizeof(src->last));

    return 0;
}


/*
 * Reads frames of one file into the open transaction, from src->off, up to
 * `limit` of them (the caller checks the deadline between such chunks);
 * *n counts the transaction's frames over all its files.  Sets src->idle
 * when the file has nothing more to give now, src->finished when it never
 * will.  Returns 0, or -1 when the transaction must be aborted.
 */
static int
txcp_ingest_read(MDB_txn *txn, txcp_ingest_src_t *src, size_t limit, size_t *n)
{
    int            rc, retried;
    size_t         off, prev, plen, end;
    const uint8_t *payload;

    off = src->off;
    retried = 0;
    end = *n + limit;

    while (*n < end) {
        if ((*n & 255) == 255) {
            /*
             * a pass runs for up to its budget: let a gateway worker (or
             * anything else) that woke on this CPU run now rather than
             * wait out our time slice
             */
            (void) sched_yield();
        }

        prev = off;
        rc = tx_spool_read(src->base, src->fsize, &off, &payload, &plen);

        if (rc == TX_OK) {
            (*n)++;

            rc = txcp_ingest_one(txn, src->name, payload, plen, src->last);

            if (rc < 0) {
                return -1;
            }

            src->ingested += rc == 0;
            src->dups += rc == 1;
            src->torn += rc == 2;

            continue;
        }

        if (rc == TX_DONE) {
            src->finished = 1;
            break;
        }

        if (rc == TX_ERROR) {
            if (off != prev) {
                /* a torn frame (bad crc) skipped */
                (*n)++;
                src->torn++;
                continue;
            }

            /* the rest is unreadable: give up once the writer is gone */

            if (txcp_ingest_lock(src->fd, &src->locked)) {
                txcp_log(TXCP_LOG_WARN, "spool file unreadable after",
                         "file=%s off=%zu", src->name, off);
                src->torn++;
                src->finished = 1;
            }

            src->idle = 1;
            break;
        }

        /*
         * TX_AGAIN: nothing more yet.  If the writer is gone, read once more
         * under its lock (a frame may have landed just before it exited);
         * still nothing means the file is finished.
         */

        if (!retried && txcp_ingest_lock(src->fd, &src->locked)) {
            retried = 1;
            continue;
        }

        if (src->locked) {
            src->finished = 1;
        }

        src->idle = 1;
        break;
    }

    src->off = off;
    src->idle |= src->finished;

    return 0;
}


/*
 * One transaction of up to ingest_batch runs over the files of the pass,
 * read in id order (see below), so the runs of workers writing side by
 * side, whose ids interleave, are queued together and go into the store in
 * id order, appended (the run queue sorts them) rather than put one by one
 * between earlier ones.  Then the cursors of the files that moved, in the
 * same transaction.  Returns 1 when a file has more to give, 0 when none
 * has, -1 on error (the
 * transaction aborted: the next pass reads again from the cursors).
 */
static int
txcp_ingest_batch(txcp_ingest_src_t *srcs, size_t nsrc, int64_t deadline_us)
{
    size_t             i, j, left, moved, n, batch, chunk;
    uint8_t            ob[8];
    MDB_val            k, v;
    MDB_txn           *txn;
    txcp_ingest_src_t *src;

    /*
     * a worker writes its files one after the other: only the oldest of
     * each worker's files with something to read takes a turn, so the
     * files read together are those written side by side
     */

    left = 0;

    for (i = 0; i < nsrc; i++) {
        src = &srcs[i];
        src->turn = src->fd >= 0 && !src->idle;

        for (j = 0; src->turn && j < i; j++) {
            src->turn = !(srcs[j].turn && srcs[j].writer == src->writer);
        }

        left += src->turn;
    }

    if (left == 0) {
        return 0;
    }

    if (txcp_store_begin(0, &txn) != 0) {
        return -1;
    }

    txcp_runs_cur_begin(&txcp_ictx.cur);

    batch = (size_t) txcp.conf.ingest_batch;
    n = 0;

    for (i = 0; i < nsrc; i++) {
        if (srcs[i].turn && txcp_ingest_cursor(txn, &srcs[i]) != 0) {
            goto failed;
        }
    }

    /*
     * in id (time) order: a chunk at a time from the file whose last run
     * is the earliest, so files that fell behind (a pass cut short by its
     * deadline) catch up rather than have each run put between later ones
     */

    while (n < batch && txcp_now_us() < deadline_us) {
        src = NULL;

        for (i = 0; i < nsrc; i++) {
            if (srcs[i].turn && !srcs[i].idle
                && (src == NULL || memcmp(srcs[i].last, src->last, 16) < 0))
            {
                src = &srcs[i];
            }
        }

        if (src == NULL) {
            break;
        }

        chunk = batch - n < TXCP_INGEST_CHUNK ? batch - n : TXCP_INGEST_CHUNK;

        if (txcp_ingest_read(txn, src, chunk, &n) != 0) {
            goto failed;
        }
    }

    moved = 0;

    for (i = 0; i < nsrc; i++) {
        src = &srcs[i];
        src->moved = src->turn && (src->off != src->start || src->finished);
        moved += src->moved;
    }

    if (moved == 0) {
        /*
         * nothing new: no write txn (and no fsync); the next file of a
         * worker whose file went idle takes its turn
         */
        mdb_txn_abort(txn);
        goto next;
    }

    if (txcp_ingest_flush(txn) != 0) {
        goto failed;
    }

    for (i = 0; i < nsrc; i++) {
        src = &srcs[i];

        if (!src->moved) {
            continue;
        }

        txcp_put_le64(ob, src->off);
        k.mv_data = (void *) src->name;
        k.mv_size = strlen(src->name);
        v.mv_data = ob;
        v.mv_size = 8;

        if (mdb_put(txn, txcp.db[TXCP_DB_SPOOL_CURSOR], &k, &v, 0) != 0) {
            txcp_log(TXCP_LOG_ERROR, "spool cursor put failed", "file=%s",
                     src->name);
            goto failed;
        }
    }

    if (txcp_store_commit(txn) != 0) {
        txcp_ingest_aborted();
        return -1;
    }

    txcp_ingest_committed();

    for (i = 0; i < nsrc; i++) {
        src = &srcs[i];

        if (!src->moved) {
            continue;
        }

        txcp.ingest.ingested += src->ingested;
        txcp.ingest.duplicates += src->dups;
        txcp.ingest.torn += src->torn;

        if (src->torn) {
            txcp_log(TXCP_LOG_WARN, "spool frames skipped (bad crc or record)",
                     "file=%s count=%llu", src->name,
                     (unsigned long long) src->torn);
        }

        if (src->ingested || src->dups || src->torn) {
            txcp_log(TXCP_LOG_DEBUG, "ingested",
                     "file=%s runs=%llu duplicates=%llu torn=%llu off=%zu",
                     src->name, (unsigned long long) src->ingested,
                     (unsigned long long) src->dups,
                     (unsigned long long) src->torn, src->off);
        }

        if (src->finished && txcp_ingest_finish(src) != 0) {
            txcp_log(TXCP_LOG_WARN, "spool file not retired", "file=%s",
                     src->name);
        }
    }

next:

    for (i = 0; i < nsrc; i++) {
        if (srcs[i].fd >= 0 && !srcs[i].idle) {
            return 1;
        }
    }

    return 0;

failed:

    mdb_txn_abort(txn);
    txcp_ingest_aborted();

    return -1;
}


/* Settings and the PII detector for this pass. */
static void
txcp_ingest_pass_init(void)
{
    char     *sig, err[256];
    cJSON    *rec, *rules, *it;
    MDB_txn  *txn;
    tx_pii_t *pii;

    txcp_cache_reset();
    txcp_ictx.now = txcp_now_us() / 1000000;

    if (txcp_store_begin(1, &txn) != 0) {
        return;
    }

    txcp_settings_read(txn, &txcp_ictx.settings);

    rec = txcp_store_get(txn, TXCP_DB_SETTINGS, "settings");
    mdb_txn_abort(txn);

    rules = cJSON_GetObjectItemCaseSensitive(rec, "pii_rules");
    sig = cJSON_IsObject(rules) ? cJSON_PrintUnformatted(rules) : strdup("");

    if (sig && txcp_ictx.pii && txcp_ictx.pii_sig
        && strcmp(sig, txcp_ictx.pii_sig) == 0)
    {
        free(sig);
        cJSON_Delete(rec);
        return;
    }

    pii = NULL;

    if (sig == NULL
        || tx_pii_create(&pii, TX_PII_ALL, err, sizeof(err)) != TX_OK) {
        txcp_log(TXCP_LOG_ERROR, "pii detector not built", NULL);
        free(sig);
        cJSON_Delete(rec);
        return;
    }

    cJSON_ArrayForEach(it, rules)
    {
        if (cJSON_IsString(it)
            && tx_pii_add_rule(pii, it->string, it->valuestring, err,
                               sizeof(err))
                   != TX_OK)
        {
            txcp_log(TXCP_LOG_WARN, "pii rule ignored", "name=%s err=\"%s\"",
                     it->string, err);
        }
    }

    tx_pii_free(txcp_ictx.pii);
    free(txcp_ictx.pii_sig);
    txcp_ictx.pii = pii;
    txcp_ictx.pii_sig = sig;

    cJSON_Delete(rec);
}


int
txcp_ingest_run(long budget_ms)
{
    DIR               *dir;
    struct dirent     *de;
    txcp_ingest_src_t *names, *p;
    size_t             n, cap, i, len, sfx;
    int64_t            deadline, pass_start, wm;
    int                complete, rc, more;
    char               path[4096];

    more = 0;
    pass_start = txcp_now_us();
    complete = 1;

    snprintf(path, sizeof(path), "%s/spool", txcp.conf.data_dir);

    dir = opendir(path);
    if (dir == NULL) {
        return 0;
    }

    txcp_ingest_pass_init();
    txcp_ingest_free_sweep();

    names = NULL;
    n = 0;
    cap = 0;
    sfx = strlen(TX_SPOOL_SUFFIX);

    while ((de = readdir(dir)) != NULL) {
        len = strlen(de->d_name);

        if (de->d_name[0] == '.' || len <= sfx || len > TXCP_SPOOL_NAME_MAX
            || strcmp(de->d_name + len - sfx, TX_SPOOL_SUFFIX) != 0)
        {
            continue;
        }

        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            p = realloc(names, cap * sizeof(txcp_ingest_src_t));

            if (p == NULL) {
                complete = 0;
                break;
            }

            names = p;
        }

        memset(&names[n], 0, sizeof(txcp_ingest_src_t));
        memcpy(names[n].name, de->d_name, len + 1);
        names[n].fd = -1;
        n++;
    }

    closedir(dir);

    if (n) {
        qsort(names, n, sizeof(txcp_ingest_src_t), txcp_spool_cmp);
    }

    deadline = txcp_now_us() + budget_ms * 1000;

    if (n > TXCP_SPOOL_PASS_MAX) {
        /* a backlog: the oldest now, the rest in the passes after */
        n = TXCP_SPOOL_PASS_MAX;
        complete = 0;
        more = 1;
    }

    for (i = 0; i < n; i++) {
        rc = txcp_ingest_open(&names[i]);

        if (rc < 0) {
            complete = 0;
            txcp_log(TXCP_LOG_WARN, "spool file not ingested", "file=%s",
                     names[i].name);
        }
    }

    for (;;) {
        rc = txcp_ingest_batch(names, n, deadline);

        if (rc < 0) {
            complete = 0;
            txcp_log(TXCP_LOG_WARN, "spool files not ingested", NULL);
            break;
        }

        if (rc == 0) {
            break;
        }

        if (txcp_now_us() >= deadline) {
            complete = 0;
            more = 1;
            break;
        }
    }

    for (i = 0; i < n; i++) {
        txcp_ingest_close(&names[i]);
    }

    free(names);

    /*
     * Spend and the watermark go out together; a pass that stopped early
     * publishes the spend it committed but keeps the old watermark (an edge
     * then counts some runs twice for a moment, never zero times).  An
     * idle instance advances the watermark once a second.
     */

    wm = complete ? pass_start : -1;

    if (txcp_ictx.changed.n == 0
        && (wm < 0
            || pass_start - txcp_ictx.published_us < TXCP_WATERMARK_IDLE_US))
    {
        return more;
    }

    if (txcp_spend_publish(&txcp_ictx.changed, wm) == TX_OK) {
        txcp_acc_reset(&txcp_ictx.changed);

        if (wm >= 0) {
            txcp_ictx.published_us = pass_start;
        }
    }

    return more;
}


void
txcp_ingest_free(void)
{
    txcp_cache_reset();
    txcp_runs_cur_free(&txcp_ictx.cur);
    txcp_acc_free(&txcp_ictx.rollup);
    txcp_acc_free(&txcp_ictx.spend);
    txcp_acc_free(&txcp_ictx.changed);
    tx_pii_free(txcp_ictx.pii);
    free(txcp_ictx.pii_sig);
    free(txcp_ictx.buf);
    memset(&txcp_ictx, 0, sizeof(txcp_ictx));
}

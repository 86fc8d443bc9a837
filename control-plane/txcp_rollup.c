/*
 * torrix-cp rollups and spend (see txcp_rollup.h).
 */

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "tx_snapshot.h"
#include "tx_spool.h"
#include "tx_window.h"

#include "txcp.h"
#include "txcp_publish.h"
#include "txcp_rollup.h"
#include "txcp_store.h"


static const int txcp_spend_kinds[] = {TX_WIN_DAY, TX_WIN_WEEK, TX_WIN_MONTH};


/* CRC-32C, eight bytes an instruction: an ingested run adds some thirty
 * keys, and a byte-at-a-time hash was a sixth of ingest's CPU */
static uint32_t
txcp_acc_hash(const uint8_t *p, size_t n)
{
    uint32_t h;

    h = tx_crc32(0, p, n);

    return h ? h : 1;
}


static int
txcp_acc_grow(txcp_acc_t *acc)
{
    size_t          cap, i, j;
    txcp_acc_ent_t *ents, *e;

    cap = acc->cap ? acc->cap * 2 : 1024;

    ents = calloc(cap, sizeof(txcp_acc_ent_t));
    if (ents == NULL) {
        return TX_ERROR;
    }

    for (i = 0; i < acc->cap; i++) {
        e = &acc->ents[i];

        if (!e->used) {
            continue;
        }

        for (j = e->hash & (cap - 1); ents[j].used; j = (j + 1) & (cap - 1)) {
            /* void */
        }

        ents[j] = *e;
    }

    free(acc->ents);
    acc->ents = ents;
    acc->cap = cap;

    return TX_OK;
}


int
txcp_acc_add(txcp_acc_t *acc, const uint8_t *key, size_t klen, const int64_t *v,
             size_t nv)
{
    size_t          i, j;
    uint32_t        h;
    txcp_acc_ent_t *e;

    if (klen == 0 || klen > TXCP_ACC_KEY_MAX || nv > TXCP_RV_N) {
        return TX_ERROR;
    }

    if ((acc->n + 1) * 2 > acc->cap && txcp_acc_grow(acc) != TX_OK) {
        return TX_ERROR;
    }

    h = txcp_acc_hash(key, klen);

    for (i = h & (acc->cap - 1);; i = (i + 1) & (acc->cap - 1)) {
        e = &acc->ents[i];

        if (!e->used) {
            e->used = 1;
            e->hash = h;
            e->klen = (uint16_t) klen;
            memcpy(e->key, key, klen);
            memset(e->v, 0, sizeof(e->v));
            acc->n++;
            break;
        }

        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) {
            break;
        }
    }

    for (j = 0; j < nv; j++) {
        e->v[j] += v[j];
    }

    return TX_OK;
}


void
txcp_acc_reset(txcp_acc_t *acc)
{
    size_t i;

    if (acc->n == 0) {
        return;
    }

    for (i = 0; i < acc->cap; i++) {
        acc->ents[i].used = 0;
    }

    acc->n = 0;
}


void
txcp_acc_free(txcp_acc_t *acc)
{
    free(acc->ents);
    acc->ents = NULL;
    acc->cap = 0;
    acc->n = 0;
}


int
txcp_acc_flush(MDB_txn *txn, int db, const txcp_acc_t *acc, size_t nv)
{
    int                   rc;
    size_t                i, j;
    uint8_t               buf[TXCP_RV_N * 8];
    const txcp_acc_ent_t *e;
    MDB_val               k, v;

    for (i = 0; i < acc->cap; i++) {
        e = &acc->ents[i];

        if (!e->used) {
            continue;
        }

        k.mv_data = (void *) e->key;
        k.mv_size = e->klen;

        rc = mdb_get(txn, txcp.db[db], &k, &v);

        if (rc == 0 && v.mv_size == nv * 8) {
            memcpy(buf, v.mv_data, nv * 8);

        } else if (rc == 0 || rc == MDB_NOTFOUND) {
            memset(buf, 0, nv * 8);

        } else {
            return rc;
        }

        for (j = 0; j < nv; j++) {
            txcp_put_le64(buf + j * 8,
                          txcp_get_le64(buf + j * 8) + (uint64_t) e->v[j]);
        }

        v.mv_data = buf;
        v.mv_size = nv * 8;

        rc = mdb_put(txn, txcp.db[db], &k, &v, 0);
        if (rc != 0) {
            return rc;
        }
    }

    return 0;
}


size_t
txcp_rollup_key(uint8_t *out, int dim, const uint8_t *id, size_t idlen,
                int bucket, int64_t start)
{
    if (idlen > TXCP_ROLLUP_ID_MAX) {
        idlen = TXCP_ROLLUP_ID_MAX;
    }

    out[0] = (uint8_t) dim;
    out[1] = (uint8_t) idlen;

    if (idlen) {
        memcpy(out + 2, id, idlen);
    }

    out[2 + idlen] = (uint8_t) bucket;
    txcp_put_be64(out + 3 + idlen, (uint64_t) start);

    return 11 + idlen;
}


static int
txcp_rollup_add_dim(txcp_acc_t *acc, int dim, const uint8_t *id, size_t idlen,
                    int64_t start_s, const int64_t *v)
{
    size_t  n;
    uint8_t key[TXCP_ACC_KEY_MAX];

    n = txcp_rollup_key(key, dim, id, idlen, TXCP_BUCKET_HOUR,
                        start_s - start_s % 3600);

    if (txcp_acc_add(acc, key, n, v, TXCP_RV_N) != TX_OK) {
        return TX_ERROR;
    }

    n = txcp_rollup_key(key, dim, id, idlen, TXCP_BUCKET_DAY,
                        start_s - start_s % 86400);

    return txcp_acc_add(acc, key, n, v, TXCP_RV_N);
}


/* the run's deltas into v[TXCP_RV_N] */
static void
txcp_rollup_values(const txcp_run_t *run, int64_t *v)
{
    v[TXCP_RV_REQUESTS] = 1;
    v[TXCP_RV_ERRORS] = txcp_run_is_error(run);
    v[TXCP_RV_TOKENS_IN] = (int64_t) run->tokens_in;
    v[TXCP_RV_TOKENS_OUT] = (int64_t) run->tokens_out;
    v[TXCP_RV_CACHE_READ] = (int64_t) run->cache_read;
    v[TXCP_RV_CACHE_WRITE] = (int64_t) run->cache_write;
    v[TXCP_RV_REASONING] = (int64_t) run->reasoning;
    v[TXCP_RV_COST] = run->cost;
    v[TXCP_RV_LATENCY_US] = (int64_t) run->latency_us;
}


/* v added to every dimension of run, in the hour and day of start_s */
static int
txcp_rollup_dims(txcp_acc_t *acc, const txcp_run_t *run, int64_t s,
                 const int64_t *v)
{
    int             i, rc;
    const uint8_t  *p, *end, *nl;
    const tx_str_t *model;

    static const struct {
        int    dim;
        size_t off;
    } dims[] = {
        {TXCP_DIM_KEY, offsetof(txcp_run_t, key)},
        {TXCP_DIM_PROJECT, offsetof(txcp_run_t, project)},
        {TXCP_DIM_USER, offsetof(txcp_run_t, user)},
        {TXCP_DIM_ORG, offsetof(txcp_run_t, org)},
        {TXCP_DIM_PROVIDER, offsetof(txcp_run_t, provider)},
    };

    rc = txcp_rollup_add_dim(acc, TXCP_DIM_INSTANCE, NULL, 0, s, v);

    for (i = 0; rc == TX_OK && i < (int) (sizeof(dims) / sizeof(dims[0])); i++)
    {
        const tx_str_t *id =
            (const tx_str_t *) ((const char *) run + dims[i].off);

        if (id->len) {
            rc = txcp_rollup_add_dim(acc, dims[i].dim, id->data, id->len, s, v);
        }
    }

    model = txcp_run_model(run);

    if (rc == TX_OK && model->len) {
        rc = txcp_rollup_add_dim(acc, TXCP_DIM_MODEL, model->data, model->len,
                                 s, v);
    }

    p = run->tags.data;
    end = p + run->tags.len;

    while (rc == TX_OK && p < end) {
        nl = memchr(p, '\n', end - p);
        nl = nl ? nl : end;

        if (nl > p) {
            rc = txcp_rollup_add_dim(acc, TXCP_DIM_TAG, p, nl - p, s, v);
        }

        p = nl + 1;
    }

    return rc;
}


/* cost v added to every scope of run, in the windows of start_s */
static int
txcp_spend_dims(txcp_acc_t *acc, const txcp_run_t *run, int64_t s, int64_t v,
                int64_t now)
{
    int             i, j;
    size_t          n;
    uint32_t        idx, cur;
    uint8_t         key[TX_SPEND_KEY_MAX];
    const tx_str_t *id;

    const struct {
        int             scope;
        const tx_str_t *id;
    } scopes[] = {
        {TX_SCOPE_INSTANCE, NULL},         {TX_SCOPE_ORG, &run->org},
        {TX_SCOPE_PROJECT, &run->project}, {TX_SCOPE_USER, &run->user},
        {TX_SCOPE_KEY, &run->key},
    };

    if (v == 0) {
        return TX_OK;
    }

    for (j = 0; j < 3; j++) {
        idx = tx_window_index(txcp_spend_kinds[j], s);
        cur = tx_window_index(txcp_spend_kinds[j], now);

        if (idx + 1 < cur) {
            continue;
        }

        for (i = 0; i < 5; i++) {
            id = scopes[i].id;

            if (id && id->len == 0) {
                continue;
            }

            n = tx_spend_key(key, scopes[i].scope, txcp_spend_kinds[j], idx,
                             id ? id->data : NULL, id ? id->len : 0);

            if (txcp_acc_add(acc, key, n, &v, 1) != TX_OK) {
                return TX_ERROR;
            }
        }
    }

    return TX_OK;
}


/* the dimensions a pending sum is kept by, in the order they are copied */
static const size_t txcp_pend_fields[] = {
    offsetof(txcp_run_t, key),      offsetof(txcp_run_t, project),
    offsetof(txcp_run_t, user),     offsetof(txcp_run_t, org),
    offsetof(txcp_run_t, provider), offsetof(txcp_run_t, model),
    offsetof(txcp_run_t, tags),
};

#define txcp_pend_field(run, i)                                                \
    ((tx_str_t *) ((char *) (run) + txcp_pend_fields[i]))


/* the field of run that pending field i stands for (model: served, else
 * requested) */
static const tx_str_t *
txcp_pend_src(const txcp_run_t *run, size_t i)
{
    return txcp_pend_fields[i] == offsetof(txcp_run_t, model)
               ? txcp_run_model(run)
               : txcp_pend_field(run, i);
}


int
txcp_pend_flush(txcp_pend_t *p, txcp_acc_t *rollup, txcp_acc_t *spend)
{
    int64_t s;

    if (!p->used) {
        return TX_OK;
    }

    p->used = 0;
    s = p->run.start_us / 1000000;

    if (txcp_rollup_dims(rollup, &p->run, s, p->v) != TX_OK
        || txcp_spend_dims(spend, &p->run, s, p->v[TXCP_RV_COST], p->now)
               != TX_OK)
    {
        return TX_ERROR;
    }

    return TX_OK;
}


int
txcp_pend_add(txcp_pend_t *p, txcp_acc_t *rollup, txcp_acc_t *spend,
              const txcp_run_t *run, int64_t now)
{
    size_t          i, n;
    int64_t         s, hour, v[TXCP_RV_N];
    uint8_t        *b;
    tx_str_t       *f;
    const tx_str_t *src;

    s = run->start_us > 0 ? run->start_us / 1000000 : 0;
    hour = s - s % 3600;

    txcp_rollup_values(run, v);

    if (p->used && p->run.start_us == hour * 1000000 && p->now == now) {
        for (i = 0; i < sizeof(txcp_pend_fields) / sizeof(size_t); i++) {
            f = txcp_pend_field(&p->run, i);
            src = txcp_pend_src(run, i);

            if (f->len != src->len
                || (f->len && memcmp(f->data, src->data, f->len) != 0)) {
                break;
            }
        }

        if (i == sizeof(txcp_pend_fields) / sizeof(size_t)) {
            for (i = 0; i < TXCP_RV_N; i++) {
                p->v[i] += v[i];
            }

            return TX_OK;
        }
    }

    if (txcp_pend_flush(p, rollup, spend) != TX_OK) {
        return TX_ERROR;
    }

    n = 0;

    for (i = 0; i < sizeof(txcp_pend_fields) / sizeof(size_t); i++) {
        n += txcp_pend_src(run, i)->len;
    }

    if (n > sizeof(p->buf)) {
        /* too long to keep: straight to the accumulators */
        return txcp_rollup_dims(rollup, run, s, v) == TX_OK
                       && txcp_spend_dims(spend, run, s, run->cost, now)
                              == TX_OK
                   ? TX_OK
                   : TX_ERROR;
    }

    memset(&p->run, 0, sizeof(txcp_run_t));
    b = p->buf;

    for (i = 0; i < sizeof(txcp_pend_fields) / sizeof(size_t); i++) {
        src = txcp_pend_src(run, i);
        f = txcp_pend_field(&p->run, i);

        if (src->len) {
            memcpy(b, src->data, src->len);
        }

        f->data = b;
        f->len = src->len;
        b += src->len;
    }

    p->run.start_us = hour * 1000000;
    p->now = now;
    p->used = 1;
    memcpy(p->v, v, sizeof(v));

    return TX_OK;
}


int
txcp_spend_publish(const txcp_acc_t *changed, int64_t watermark_us)
{
    int                   rc;
    size_t                i;
    uint8_t               wm[8];
    const txcp_acc_ent_t *e;
    MDB_txn              *rtxn, *txn;
    MDB_val               k, v;

    rtxn = NULL;
    txn = NULL;

    rc = txcp_publish_begin(&rtxn, &txn);
    if (rc != 0) {
        goto failed;
    }

    for (i = 0; i < changed->cap; i++) {
        e = &changed->ents[i];

        if (!e->used) {
            continue;
        }

        k.mv_data = (void *) e->key;
        k.mv_size = e->klen;

        rc = mdb_get(rtxn, txcp.db[TXCP_DB_SPEND], &k, &v);

        if (rc == MDB_NOTFOUND) {
            rc = txcp_snap_del(txn, TXCP_SDB_SPEND, e->key, e->klen);

        } else if (rc == 0) {
            rc = txcp_snap_put(txn, TXCP_SDB_SPEND, e->key, e->klen, v.mv_data,
                               v.mv_size);
        }

        if (rc != 0) {
            goto failed;
        }
    }

    if (watermark_us >= 0) {
        txcp_put_le64(wm, (uint64_t) watermark_us);

        rc = txcp_snap_put(txn, TXCP_SDB_META, TX_SNAP_META_WATERMARK,
                           strlen(TX_SNAP_META_WATERMARK), wm, 8);
        if (rc != 0) {
            goto failed;
        }
    }

    rc = txcp_publish_commit(txn);
    txn = NULL;

    if (rc != 0) {
        goto failed;
    }

    mdb_txn_abort(rtxn);

    return TX_OK;

failed:

    txcp_log(TXCP_LOG_ERROR, "spend publish failed", "err=\"%s\"",
             mdb_strerror(rc));

    if (txn) {
        mdb_txn_abort(txn);
    }

    if (rtxn) {
        mdb_txn_abort(rtxn);
    }

    txcp.resync_needed = 1;

    return TX_ERROR;
}


/* Deletes the windows older than the previous one from dbi. */
static int
txcp_spend_prune_db(MDB_txn *txn, MDB_dbi dbi, int64_t now, size_t *deleted)
{
    int            rc, scope, j;
    uint32_t       cur, idx;
    uint8_t        from[6];
    const uint8_t *kp;
    MDB_val        k, v;
    MDB_cursor    *c;

    rc = mdb_cursor_open(txn, dbi, &c);
    if (rc != 0) {
        return rc;
    }

    for (scope = TX_SCOPE_INSTANCE; scope <= TX_SCOPE_KEY; scope++) {
        for (j = 0; j < 3; j++) {
            cur = tx_window_index(txcp_spend_kinds[j], now);

            if (cur < 2) {
                continue;
            }

            tx_spend_key(from, scope, txcp_spend_kinds[j], 0, NULL, 0);

            for (;;) {
                k.mv_data = from;
                k.mv_size = 6;

                rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
                if (rc != 0) {
                    break;
                }

                kp = k.mv_data;

                if (k.mv_size < 6 || kp[0] != scope
                    || kp[1] != txcp_spend_kinds[j]) {
                    break;
                }

                idx = (uint32_t) kp[2] << 24 | (uint32_t) kp[3] << 16
                      | (uint32_t) kp[4] << 8 | kp[5];

                if (idx + 1 >= cur) {
                    break;
                }

                rc = mdb_cursor_del(c, 0);
                if (rc != 0) {
                    break;
                }

                (*deleted)++;
            }

            if (rc != 0 && rc != MDB_NOTFOUND) {
                mdb_cursor_close(c);
                return rc;
            }
        }
    }

    mdb_cursor_close(c);

    return 0;
}


int
txcp_spend_prune(int64_t now)
{
    int      rc;
    size_t   n, ns;
    MDB_txn *txn;

    n = 0;
    ns = 0;

    rc = mdb_txn_begin(txcp.store, NULL, 0, &txn);
    if (rc != 0) {
        goto failed;
    }

    rc = txcp_spend_prune_db(txn, txcp.db[TXCP_DB_SPEND], now, &n);

    if (rc != 0 || (rc = mdb_txn_commit(txn)) != 0) {
        if (rc != 0 && txn) {
            mdb_txn_abort(txn);
        }

        goto failed;
    }

    rc = mdb_txn_begin(txcp.snap, NULL, 0, &txn);
    if (rc != 0) {
        goto failed;
    }

    rc = txcp_spend_prune_db(txn, txcp.sdb[TXCP_SDB_SPEND], now, &ns);

    if (rc != 0) {
        mdb_txn_abort(txn);
        goto failed;
    }

    rc = ns ? txcp_publish_commit(txn) : mdb_txn_commit(txn);
    if (rc != 0) {
        goto failed;
    }

    if (n || ns) {
        txcp_log(TXCP_LOG_INFO, "spend windows pruned",
                 "store=%zu snapshot=%zu", n, ns);
    }

    return TX_OK;

failed:

    txcp_log(TXCP_LOG_ERROR, "spend prune failed", "err=\"%s\"",
             mdb_strerror(rc));

    return TX_ERROR;
}


int
txcp_spend_resync(MDB_txn *rtxn, MDB_txn *txn)
{
    int         rc;
    MDB_val     k, v, sv;
    MDB_cursor *c;

    rc = mdb_cursor_open(rtxn, txcp.db[TXCP_DB_SPEND], &c);
    if (rc != 0) {
        return rc;
    }

    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    {
        rc = txcp_snap_put(txn, TXCP_SDB_SPEND, k.mv_data, k.mv_size, v.mv_data,
                           v.mv_size);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(c);

    if (rc != MDB_NOTFOUND) {
        return rc;
    }

    rc = mdb_cursor_open(txn, txcp.sdb[TXCP_SDB_SPEND], &c);
    if (rc != 0) {
        return rc;
    }

    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    {
        if (mdb_get(rtxn, txcp.db[TXCP_DB_SPEND], &k, &sv) == 0) {
            continue;
        }

        rc = mdb_cursor_del(c, 0);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(c);

    return rc == MDB_NOTFOUND ? 0 : rc;
}


/* Adds the buckets of kind `bucket` with start in [from, to) to v. */
static int
txcp_rollup_scan(MDB_cursor *cur, int dim, const uint8_t *id, size_t idlen,
                 int bucket, int64_t from, int64_t to, int64_t *v)
{
    int     rc, j;
    size_t  n;
    uint8_t key[TXCP_ACC_KEY_MAX];
    int64_t start;
    MDB_val k, d;

    if (from >= to) {
        return 0;
    }

    n = txcp_rollup_key(key, dim, id, idlen, bucket, from);
    k.mv_data = key;
    k.mv_size = n;

    for (rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT))
    {
        if (k.mv_size != n || memcmp(k.mv_data, key, n - 8) != 0) {
            break;
        }

        start = (int64_t) txcp_get_be64((uint8_t *) k.mv_data + n - 8);

        if (start >= to) {
            break;
        }

        if (d.mv_size != TXCP_RV_N * 8) {
            continue;
        }

        for (j = 0; j < TXCP_RV_N; j++) {
            v[j] += (int64_t) txcp_get_le64((uint8_t *) d.mv_data + j * 8);
        }
    }

    return rc == MDB_NOTFOUND ? 0 : rc;
}


int
txcp_rollup_sum(MDB_cursor *cur, int dim, const uint8_t *id, size_t idlen,
                int64_t since, int64_t until, int64_t *v)
{
    int     rc;
    int64_t h0, h1, d0, d1;

    memset(v, 0, TXCP_RV_N * sizeof(int64_t));

    if (idlen > TXCP_ROLLUP_ID_MAX) {
        idlen = TXCP_ROLLUP_ID_MAX;
    }

    h0 = since - since % 3600;
    h1 = until % 3600 ? until - until % 3600 + 3600 : until;
    d0 = h0 % 86400 ? h0 - h0 % 86400 + 86400 : h0;
    d1 = h1 - h1 % 86400;

    if (d0 >= d1) {
        return txcp_rollup_scan(cur, dim, id, idlen, TXCP_BUCKET_HOUR, h0, h1,
                                v);
    }

    rc = txcp_rollup_scan(cur, dim, id, idlen, TXCP_BUCKET_DAY, d0, d1, v);

    if (rc == 0) {
        rc = txcp_rollup_scan(cur, dim, id, idlen, TXCP_BUCKET_HOUR, h0, d0, v);
    }

    if (rc == 0) {
        rc = txcp_rollup_scan(cur, dim, id, idlen, TXCP_BUCKET_HOUR, d1, h1, v);
    }

    return rc;
}


int
txcp_rollup_series(MDB_cursor *cur, int dim, const uint8_t *id, size_t idlen,
                   int64_t today, int n, int64_t *series)
{
    int     rc, i;
    size_t  kn;
    uint8_t key[TXCP_ACC_KEY_MAX];
    int64_t first, start;
    MDB_val k, d;

    memset(series, 0, n * sizeof(int64_t));

    if (idlen > TXCP_ROLLUP_ID_MAX) {
        idlen = TXCP_ROLLUP_ID_MAX;
    }

    first = today - today % 86400 - (int64_t) (n - 1) * 86400;

    kn = txcp_rollup_key(key, dim, id, idlen, TXCP_BUCKET_DAY, first);
    k.mv_data = key;
    k.mv_size = kn;

    for (rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT))
    {
        if (k.mv_size != kn || memcmp(k.mv_data, key, kn - 8) != 0) {
            break;
        }

        start = (int64_t) txcp_get_be64((uint8_t *) k.mv_data + kn - 8);
        i = (int) ((start - first) / 86400);

        if (i >= n) {
            break;
        }

        if (i >= 0 && d.mv_size == TXCP_RV_N * 8) {
            series[i] += (int64_t) txcp_get_le64((uint8_t *) d.mv_data
                                                 + TXCP_RV_COST * 8);
        }
    }

    return rc == MDB_NOTFOUND ? 0 : rc;
}

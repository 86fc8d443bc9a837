/*
 * torrix-cp run records (see txcp_run.h).
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tx_record.h"

#include "txcp_run.h"


int
txcp_run_decode(const void *rec, size_t len, txcp_run_t *run)
{
    int           rc;
    uint16_t      tag;
    uint64_t      u;
    int64_t       i;
    tx_str_t      v;
    tx_rec_iter_t it;

    memset(run, 0, sizeof(txcp_run_t));

    tx_rec_iter_init(&it, rec, len);

    while ((rc = tx_rec_next(&it, &tag, &v)) == TX_OK) {
        u = 0;

        /* an integer field's value; other fields leave u unused */
        (void) tx_rec_uint(&v, &u);

        i = (int64_t) u;

        switch (tag) {
        case TX_RUN_ID:
            run->id = v.len == 16 ? v.data : NULL;
            break;
        case TX_RUN_START_US:
            run->start_us = i;
            break;
        case TX_RUN_KEY_ID:
            run->key = v;
            break;
        case TX_RUN_PROJECT:
            run->project = v;
            break;
        case TX_RUN_ORG:
            run->org = v;
            break;
        case TX_RUN_USER:
            run->user = v;
            break;
        case TX_RUN_ENDPOINT:
            run->endpoint = u;
            break;
        case TX_RUN_MODEL_REQ:
            run->model_req = v;
            break;
        case TX_RUN_MODEL:
            run->model = v;
            break;
        case TX_RUN_PROVIDER:
            run->provider = v;
            break;
        case TX_RUN_STATUS:
            run->status = u;
            break;
        case TX_RUN_LATENCY_US:
            run->latency_us = u;
            break;
        case TX_RUN_TOKENS_IN:
            run->tokens_in = u;
            break;
        case TX_RUN_TOKENS_OUT:
            run->tokens_out = u;
            break;
        case TX_RUN_TOKENS_CACHE_READ:
            run->cache_read = u;
            break;
        case TX_RUN_TOKENS_CACHE_WRITE:
            run->cache_write = u;
            break;
        case TX_RUN_TOKENS_REASONING:
            run->reasoning = u;
            break;
        case TX_RUN_COST:
            run->cost = i;
            break;
        case TX_RUN_FLAGS:
            run->flags = u;
            break;
        case TX_RUN_NAME:
            run->name = v;
            break;
        case TX_RUN_END_USER:
            run->end_user = v;
            break;
        case TX_RUN_TAGS:
            run->tags = v;
            break;
        case TX_RUN_ERROR_TYPE:
            run->error_type = v;
            break;
        case TX_RUN_ERROR:
            run->error = v;
            break;
        case TX_RUN_REQ_BODY:
            run->req_body = v;
            break;
        case TX_RUN_RESP_BODY:
            run->resp_body = v;
            break;
        case TX_RUN_LIMIT:
            if (run->limit.data == NULL) {
                run->limit = v;
            }
            break;
        }
    }

    return rc == TX_DONE ? TX_OK : TX_ERROR;
}


int
txcp_run_is_error(const txcp_run_t *run)
{
    if (run->flags & (TX_RUNF_ERROR | TX_RUNF_REJECTED)) {
        return 1;
    }

    return run->status >= 400 && !(run->flags & TX_RUNF_CANCELLED);
}


const tx_str_t *
txcp_run_model(const txcp_run_t *run)
{
    return run->model.len ? &run->model : &run->model_req;
}


int
txcp_tags_get(const tx_str_t *tags, const char *name, tx_str_t *val)
{
    size_t         n;
    const uint8_t *p, *end, *nl;

    n = strlen(name);
    p = tags->data;
    end = p + tags->len;

    while (p < end) {
        nl = memchr(p, '\n', end - p);
        nl = nl ? nl : end;

        if ((size_t) (nl - p) > n && p[n] == '=' && memcmp(p, name, n) == 0) {
            val->data = p + n + 1;
            val->len = nl - p - n - 1;
            return TX_OK;
        }

        p = nl + 1;
    }

    return TX_DECLINED;
}


size_t
txcp_runs_idx_key(uint8_t *out, int dim, const uint8_t *id, size_t idlen)
{
    if (idlen > 255) {
        idlen = 255;
    }

    out[0] = (uint8_t) dim;
    out[1] = (uint8_t) idlen;

    if (idlen) {
        memcpy(out + 2, id, idlen);
    }

    return 2 + idlen;
}


/*
 * Index row i (0..TXCP_IDX_DIMS-1) of a run: its key (the run id is the
 * value) into key and 1, or 0 when the run has no row there.
 */
static int
txcp_runs_idx_row(const txcp_run_t *run, int i, MDB_val *k, uint8_t *key)
{
    int             dim;
    const tx_str_t *id;

    switch (i) {
    case 0:
        dim = TXCP_IDX_KEY;
        id = &run->key;
        break;
    case 1:
        dim = TXCP_IDX_PROJECT;
        id = &run->project;
        break;
    case 2:
        dim = TXCP_IDX_USER;
        id = &run->user;
        break;
    default:
        if (!txcp_run_is_error(run)) {
            return 0;
        }

        k->mv_data = key;
        k->mv_size = txcp_runs_idx_key(key, TXCP_IDX_ERROR, NULL, 0);
        return 1;
    }

    if (id->len == 0) {
        return 0;
    }

    k->mv_data = key;
    k->mv_size = txcp_runs_idx_key(key, dim, id->data, id->len);

    return 1;
}


/* the index rows of a run, added (queued in cur) or removed */
static int
txcp_runs_rows(MDB_txn *txn, txcp_runs_cur_t *cur, const txcp_run_t *run,
               int del)
{
    int     i, rc;
    uint8_t key[TXCP_IDX_KEY_MAX];
    MDB_val k;
    MDB_dbi dbi;

    dbi = txcp.db[TXCP_DB_RUNS_IDX];

    for (i = 0; i < TXCP_IDX_DIMS; i++) {
        if (!txcp_runs_idx_row(run, i, &k, key)) {
            continue;
        }

        if (del) {
            rc = txcp_runidx_del(txn, dbi, k.mv_data, k.mv_size, run->id);

        } else {
            rc = txcp_runidx_queue(&cur->idx, k.mv_data, k.mv_size, run->id);

            /* a long txn (a rebuild) adds as it goes */
            if (rc == 0 && cur->idx.queued >= TXCP_RUNS_QUEUE_MAX) {
                rc = txcp_runidx_flush(&cur->idx, txn, dbi);
            }
        }

        if (rc != 0) {
            return rc;
        }
    }

    return 0;
}


int
txcp_runs_index(MDB_txn *txn, txcp_runs_cur_t *cur, const txcp_run_t *run,
                int del)
{
    if (run->id == NULL) {
        return 0;
    }

    return txcp_runs_rows(txn, cur, run, del);
}


void
txcp_runs_cur_begin(txcp_runs_cur_t *cur)
{
    cur->runs = NULL;
    cur->nq = 0;
    cur->alen = 0;
    cur->last_known = 0;

    if (cur->seen) {
        memset(cur->seen, 0, cur->nseen * sizeof(uint32_t));
    }

    txcp_runidx_reset(&cur->idx);
}


/* the queue slot of id (hi, lo), or where it goes */
static size_t
txcp_runs_seen_slot(const txcp_runs_cur_t *cur, uint64_t hi, uint64_t lo)
{
    size_t               i, mask;
    const txcp_runs_q_t *e;

    mask = cur->nseen - 1;

    for (i = (size_t) (lo ^ (lo >> 29)) & mask; cur->seen[i];
         i = (i + 1) & mask) {
        e = &cur->q[cur->seen[i] - 1];

        if (e->hi == hi && e->lo == lo) {
            break;
        }
    }

    return i;
}


/* room in the queue (and its id table) for one more run, len bytes */
static int
txcp_runs_q_room(txcp_runs_cur_t *cur, size_t len)
{
    void     *p;
    size_t    n, i, j, mask;
    uint32_t *seen;

    if (cur->nq == cur->qcap) {
        n = cur->qcap ? cur->qcap * 2 : 1024;
        p = realloc(cur->q, n * sizeof(txcp_runs_q_t));
        if (p == NULL) {
            return ENOMEM;
        }

        cur->q = p;
        cur->qcap = n;
    }

    if (cur->alen + len > cur->acap) {
        for (n = cur->acap ? cur->acap : 65536; n < cur->alen + len; n *= 2) {
            /* void */
        }

        p = realloc(cur->arena, n);
        if (p == NULL) {
            return ENOMEM;
        }

        cur->arena = p;
        cur->acap = n;
    }

    if ((cur->nq + 1) * 2 <= cur->nseen) {
        return 0;
    }

    n = cur->nseen ? cur->nseen * 2 : 2048;

    seen = calloc(n, sizeof(uint32_t));
    if (seen == NULL) {
        return ENOMEM;
    }

    mask = n - 1;

    for (i = 0; i < cur->nq; i++) {
        for (j = (size_t) (cur->q[i].lo ^ (cur->q[i].lo >> 29)) & mask; seen[j];
             j = (j + 1) & mask)
        {
            /* void */
        }

        seen[j] = (uint32_t) i + 1;
    }

    free(cur->seen);
    cur->seen = seen;
    cur->nseen = n;

    return 0;
}


/* queued runs by id */
static int
txcp_runs_q_cmp(const void *a, const void *b)
{
    const txcp_runs_q_t *x = a, *y = b;

    if (x->hi != y->hi) {
        return x->hi > y->hi ? 1 : -1;
    }

    return x->lo > y->lo ? 1 : (x->lo < y->lo ? -1 : 0);
}


/*
 * Writes the queued runs in id order: appended past the store's last run,
 * put in their place before it (runs logged late, other workers' files).
 */
static int
txcp_runs_q_flush(MDB_txn *txn, txcp_runs_cur_t *cur)
{
    int           rc;
    size_t        i, j, moves;
    uint8_t       id[16];
    MDB_val       k, v;
    txcp_runs_q_t t;

    if (cur->nq == 0) {
        return 0;
    }

    if (cur->runs == NULL) {
        rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_RUNS], &cur->runs);
        if (rc != 0) {
            cur->runs = NULL;
            return rc;
        }
    }

    /*
     * insertion sort: the runs of one file are each a few places from their
     * own at most; the runs of workers' files side by side interleave, and
     * past a few moves a run the sort is left to qsort
     */

    moves = 0;

    for (i = 1; i < cur->nq && moves <= 32 * cur->nq; i++) {
        t = cur->q[i];

        for (j = i; j > 0 && txcp_runs_q_cmp(&cur->q[j - 1], &t) > 0; j--) {
            cur->q[j] = cur->q[j - 1];
        }

        moves += i - j;
        cur->q[j] = t;
    }

    if (i < cur->nq) {
        qsort(cur->q, cur->nq, sizeof(txcp_runs_q_t), txcp_runs_q_cmp);
    }

    for (i = 0; i < cur->nq; i++) {
        txcp_put_be64(id, cur->q[i].hi);
        txcp_put_be64(id + 8, cur->q[i].lo);

        k.mv_data = id;
        k.mv_size = 16;
        v.mv_data =
            cur->q[i].rec ? (void *) cur->q[i].rec : cur->arena + cur->q[i].off;
        v.mv_size = cur->q[i].len;

        rc = mdb_cursor_put(cur->runs, &k, &v, MDB_APPEND);
        if (rc == MDB_KEYEXIST) {
            rc = mdb_cursor_put(cur->runs, &k, &v, MDB_NOOVERWRITE);
        }

        if (rc != 0) {
            /* a duplicate here was let through by the checks: a bug */
            return rc == MDB_KEYEXIST ? MDB_CORRUPTED : rc;
        }
    }

    /* what was written is the store's now: its ids are looked up there */

    if (memcmp(id, cur->last, 16) > 0) {
        memcpy(cur->last, id, 16);
    }

    cur->nq = 0;
    cur->alen = 0;
    memset(cur->seen, 0, cur->nseen * sizeof(uint32_t));

    return 0;
}


int
txcp_runs_cur_flush(MDB_txn *txn, txcp_runs_cur_t *cur)
{
    int rc;

    rc = txcp_runs_q_flush(txn, cur);
    if (rc != 0) {
        return rc;
    }

    return txcp_runidx_flush(&cur->idx, txn, txcp.db[TXCP_DB_RUNS_IDX]);
}


void
txcp_runs_cur_free(txcp_runs_cur_t *cur)
{
    txcp_runidx_free(&cur->idx);
    free(cur->q);
    free(cur->arena);
    free(cur->seen);
    memset(cur, 0, sizeof(txcp_runs_cur_t));
}


int
txcp_runs_put(MDB_txn *txn, txcp_runs_cur_t *cur, const txcp_run_t *run,
              const void *rec, size_t len, int stable)
{
    int            rc;
    size_t         i;
    uint64_t       hi, lo;
    MDB_val        k, v;
    txcp_runs_q_t *e;

    if (!cur->last_known) {
        /* the store's last run id, as the txn began */

        if (cur->runs == NULL) {
            rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_RUNS], &cur->runs);
            if (rc != 0) {
                cur->runs = NULL;
                return rc;
            }
        }

        rc = mdb_cursor_get(cur->runs, &k, &v, MDB_LAST);

        if (rc == 0 && k.mv_size == 16) {
            memcpy(cur->last, k.mv_data, 16);

        } else if (rc == 0 || rc == MDB_NOTFOUND) {
            memset(cur->last, 0, 16);

        } else {
            return rc;
        }

        cur->last_known = 1;
    }

    if (memcmp(run->id, cur->last, 16) <= 0) {
        /*
         * not past the store's last run (a file of another worker read
         * after this one's, a replay): put in its place now, where a
         * duplicate shows; the queue holds only ids past it
         */
        k.mv_data = (void *) run->id;
        k.mv_size = 16;
        v.mv_data = (void *) rec;
        v.mv_size = len;

        rc = mdb_cursor_put(cur->runs, &k, &v, MDB_NOOVERWRITE);
        if (rc != 0) {
            return rc;
        }

        return txcp_runs_rows(txn, cur, run, 0);
    }

    rc = txcp_runs_q_room(cur, stable ? 0 : len);
    if (rc != 0) {
        return rc;
    }

    hi = txcp_get_be64(run->id);
    lo = txcp_get_be64(run->id + 8);

    /* a duplicate in the queue */

    i = txcp_runs_seen_slot(cur, hi, lo);

    if (cur->seen[i]) {
        return MDB_KEYEXIST;
    }

    e = &cur->q[cur->nq];
    e->hi = hi;
    e->lo = lo;
    e->rec = stable ? rec : NULL;
    e->off = cur->alen;
    e->len = len;

    if (!stable) {
        memcpy(cur->arena + cur->alen, rec, len);
        cur->alen += len;
    }

    cur->seen[i] = (uint32_t) ++cur->nq;

    rc = txcp_runs_rows(txn, cur, run, 0);
    if (rc != 0) {
        return rc;
    }

    /* a txn of large records writes as it goes */

    return cur->alen >= TXCP_RUNS_ARENA_MAX ? txcp_runs_q_flush(txn, cur) : 0;
}

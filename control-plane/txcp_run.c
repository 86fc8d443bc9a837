/*
 * torrix-cp run records (see txcp_run.h).
 */

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

        if (v.len == 8) {
            (void) tx_rec_u64(&v, &u);
        }

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


/* the index rows of a run, added (queued in cur when not NULL) or removed */
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

        } else if (cur == NULL) {
            rc = txcp_runidx_add(txn, dbi, k.mv_data, k.mv_size, run->id, 1);

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
    txcp_runidx_reset(&cur->idx);
}


int
txcp_runs_cur_flush(MDB_txn *txn, txcp_runs_cur_t *cur)
{
    return txcp_runidx_flush(&cur->idx, txn, txcp.db[TXCP_DB_RUNS_IDX]);
}


void
txcp_runs_cur_free(txcp_runs_cur_t *cur)
{
    txcp_runidx_free(&cur->idx);
}


int
txcp_runs_put(MDB_txn *txn, txcp_runs_cur_t *cur, const txcp_run_t *run,
              const void *rec, size_t len)
{
    int     rc;
    MDB_val k, v;

    if (cur->runs == NULL) {
        rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_RUNS], &cur->runs);
        if (rc != 0) {
            cur->runs = NULL;
            return rc;
        }
    }

    k.mv_data = (void *) run->id;
    k.mv_size = 16;
    v.mv_data = (void *) rec;
    v.mv_size = len;

    /*
     * run ids are time-ordered: most runs land past the last one, where
     * MDB_APPEND puts them without a search and fills pages whole instead
     * of splitting them in halves; a run that does not (another worker's
     * file, a replay) is put the usual way, which finds a duplicate
     */
    rc = mdb_cursor_put(cur->runs, &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST) {
        rc = mdb_cursor_put(cur->runs, &k, &v, MDB_NOOVERWRITE);
    }

    if (rc != 0) {
        return rc;
    }

    return txcp_runs_rows(txn, cur, run, 0);
}

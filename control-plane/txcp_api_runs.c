/*
 * torrix-cp: /api/v1/runs (run records ingested from the spool) and
 * /api/v1/health.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tx_record.h"
#include "tx_spool.h"

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_http.h"
#include "txcp_json.h"
#include "txcp_store.h"


void
txcp_api_health(txcp_req_t *r)
{
    cJSON *out, *ing;

    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "ok");
    cJSON_AddNumberToObject(out, "schema", TXCP_STORE_SCHEMA);
    cJSON_AddStringToObject(out, "version", TXCP_VERSION);
    cJSON_AddNumberToObject(out, "snapshot_gen", (double) txcp.gen);

    ing = cJSON_AddObjectToObject(out, "ingest");
    cJSON_AddNumberToObject(ing, "ingested", (double) txcp.ingest.ingested);
    cJSON_AddNumberToObject(ing, "duplicates", (double) txcp.ingest.duplicates);
    cJSON_AddNumberToObject(ing, "torn", (double) txcp.ingest.torn);
    cJSON_AddNumberToObject(ing, "files_done", (double) txcp.ingest.files_done);

    txcp_http_reply(r, 200, out);
}


/*
 * Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid (NUL
 * counts as invalid: cJSON strings end there).
 */
static size_t
txcp_utf8_len(const uint8_t *p, size_t n)
{
    size_t   len, i;
    uint32_t cp;

    if (p[0] == 0) {
        return 0;
    }

    if (p[0] < 0x80) {
        return 1;
    }

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        cp = p[0] & 0x1f;

    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        cp = p[0] & 0x0f;

    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        cp = p[0] & 0x07;

    } else {
        return 0;
    }

    if (n < len) {
        return 0;
    }

    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        cp = cp << 6 | (p[i] & 0x3f);
    }

    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    {
        return 0;
    }

    return len;
}


/* A string field; invalid UTF-8 and NUL become U+FFFD (valid JSON out). */
static void
txcp_run_str(cJSON *o, const char *name, const tx_str_t *v)
{
    char  *s, *d;
    size_t i, n;

    s = malloc(v->len * 3 + 1);
    if (s == NULL) {
        return;
    }

    d = s;

    for (i = 0; i < v->len; i += n) {
        n = txcp_utf8_len(v->data + i, v->len - i);

        if (n == 0) {
            memcpy(d, "\xef\xbf\xbd", 3);
            d += 3;
            n = 1;
            continue;
        }

        memcpy(d, v->data + i, n);
        d += n;
    }

    *d = '\0';

    txcp_json_set(o, name, cJSON_CreateString(s));
    free(s);
}


static void
txcp_run_num(cJSON *o, const char *name, const tx_str_t *v, double div)
{
    uint64_t u;

    if (tx_rec_u64(v, &u) == TX_OK) {
        txcp_json_set(o, name, cJSON_CreateNumber((double) u / div));
    }
}


/* Tags: '\n'-separated k=v into an object. */
static void
txcp_run_tags(cJSON *o, const tx_str_t *v)
{
    cJSON *tags;
    char  *s, *p, *nl, *eq;

    s = malloc(v->len + 1);
    if (s == NULL) {
        return;
    }

    memcpy(s, v->data, v->len);
    s[v->len] = '\0';

    tags = cJSON_CreateObject();

    for (p = s; p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');

        if (nl) {
            *nl = '\0';
        }

        eq = strchr(p, '=');

        if (eq) {
            *eq = '\0';
            txcp_json_set(tags, p, cJSON_CreateString(eq + 1));

        } else if (*p) {
            txcp_json_set(tags, p, cJSON_CreateString(""));
        }
    }

    free(s);

    txcp_json_set(o, "tags", tags);
}


/*
 * JSON of a TLV run record; bodies only when `bodies`.  NULL when the
 * record is corrupt.
 */
static cJSON *
txcp_run_json(const uint8_t *id, const void *val, size_t len, int bodies)
{
    int           rc;
    uint16_t      tag;
    uint64_t      u, flags;
    int64_t       i;
    char          hex[33], ts[40];
    cJSON        *o, *tok;
    tx_str_t      v;
    tx_rec_iter_t it;

    o = cJSON_CreateObject();
    tx_run_id_hex(id, hex);
    cJSON_AddStringToObject(o, "id", hex);
    cJSON_AddNullToObject(o, "started_at");

    tok = cJSON_CreateObject();
    flags = 0;

    tx_rec_iter_init(&it, val, len);

    while ((rc = tx_rec_next(&it, &tag, &v)) == TX_OK) {
        switch (tag) {
        case TX_RUN_START_US:
            if (tx_rec_i64(&v, &i) == TX_OK) {
                txcp_json_set(o, "started_at",
                              cJSON_CreateString(
                                  txcp_time_format(i, 3, ts, sizeof(ts))));
            }
            break;

        case TX_RUN_KEY_ID:
            txcp_run_str(o, "key_id", &v);
            break;
        case TX_RUN_PROJECT:
            txcp_run_str(o, "project_id", &v);
            break;
        case TX_RUN_ORG:
            txcp_run_str(o, "org_id", &v);
            break;
        case TX_RUN_USER:
            txcp_run_str(o, "user_id", &v);
            break;

        case TX_RUN_ENDPOINT:
            if (tx_rec_u64(&v, &u) == TX_OK) {
                txcp_json_set(o, "endpoint",
                              cJSON_CreateString(tx_endpoint_name(u)));
            }
            break;

        case TX_RUN_MODEL_REQ:
            txcp_run_str(o, "model_requested", &v);
            break;
        case TX_RUN_MODEL:
            txcp_run_str(o, "model", &v);
            break;
        case TX_RUN_PROVIDER:
            txcp_run_str(o, "provider", &v);
            break;
        case TX_RUN_STATUS:
            txcp_run_num(o, "status", &v, 1);
            break;
        case TX_RUN_UPSTREAM_STATUS:
            txcp_run_num(o, "upstream_status", &v, 1);
            break;
        case TX_RUN_LATENCY_US:
            txcp_run_num(o, "latency_ms", &v, 1000);
            break;
        case TX_RUN_UPSTREAM_US:
            txcp_run_num(o, "upstream_ms", &v, 1000);
            break;
        case TX_RUN_TTFT_US:
            txcp_run_num(o, "ttft_ms", &v, 1000);
            break;
        case TX_RUN_BYTES_IN:
            txcp_run_num(o, "bytes_in", &v, 1);
            break;
        case TX_RUN_BYTES_OUT:
            txcp_run_num(o, "bytes_out", &v, 1);
            break;
        case TX_RUN_TOKENS_IN:
            txcp_run_num(tok, "input", &v, 1);
            break;
        case TX_RUN_TOKENS_OUT:
            txcp_run_num(tok, "output", &v, 1);
            break;
        case TX_RUN_TOKENS_CACHE_READ:
            txcp_run_num(tok, "cache_read", &v, 1);
            break;
        case TX_RUN_TOKENS_CACHE_WRITE:
            txcp_run_num(tok, "cache_write", &v, 1);
            break;
        case TX_RUN_TOKENS_REASONING:
            txcp_run_num(tok, "reasoning", &v, 1);
            break;

        case TX_RUN_COST:
            if (tx_rec_i64(&v, &i) == TX_OK) {
                txcp_json_set(o, "cost_usd", txcp_json_money_value(i));
            }
            break;

        case TX_RUN_FLAGS:
            if (tx_rec_u64(&v, &u) == TX_OK) {
                flags = u;
            }
            break;

        case TX_RUN_NAME:
            txcp_run_str(o, "name", &v);
            break;
        case TX_RUN_END_USER:
            txcp_run_str(o, "end_user", &v);
            break;
        case TX_RUN_TAGS:
            txcp_run_tags(o, &v);
            break;
        case TX_RUN_ERROR_TYPE:
            txcp_run_str(o, "error_type", &v);
            break;
        case TX_RUN_ERROR:
            txcp_run_str(o, "error", &v);
            break;
        case TX_RUN_METHOD:
            txcp_run_str(o, "method", &v);
            break;
        case TX_RUN_TARGET:
            txcp_run_str(o, "target", &v);
            break;
        case TX_RUN_EDGE:
            txcp_run_str(o, "edge", &v);
            break;

        case TX_RUN_RESERVED:
            if (tx_rec_i64(&v, &i) == TX_OK) {
                txcp_json_set(o, "reserved_usd", txcp_json_money_value(i));
            }
            break;

        case TX_RUN_REQ_BODY:
            if (bodies) {
                txcp_run_str(o, "request_body", &v);
            }
            break;

        case TX_RUN_RESP_BODY:
            if (bodies) {
                txcp_run_str(o, "response_body", &v);
            }
            break;
        }
    }

    if (rc != TX_DONE) {
        cJSON_Delete(tok);
        cJSON_Delete(o);
        return NULL;
    }

    if (!cJSON_GetObjectItemCaseSensitive(tok, "input")) {
        cJSON_AddNumberToObject(tok, "input", 0);
    }

    if (!cJSON_GetObjectItemCaseSensitive(tok, "output")) {
        cJSON_AddNumberToObject(tok, "output", 0);
    }

    txcp_json_set(o, "tokens", tok);

    if (!cJSON_GetObjectItemCaseSensitive(o, "cost_usd")) {
        txcp_json_set(o, "cost_usd", txcp_json_money_value(0));
    }

    tok = cJSON_CreateObject();
    cJSON_AddBoolToObject(tok, "sampled", (flags & TX_RUNF_SAMPLED) != 0);
    cJSON_AddBoolToObject(tok, "stream", (flags & TX_RUNF_STREAM) != 0);
    cJSON_AddBoolToObject(tok, "cancelled", (flags & TX_RUNF_CANCELLED) != 0);
    cJSON_AddBoolToObject(tok, "error", (flags & TX_RUNF_ERROR) != 0);
    cJSON_AddBoolToObject(tok, "unpriced", (flags & TX_RUNF_UNPRICED) != 0);
    cJSON_AddBoolToObject(tok, "rejected", (flags & TX_RUNF_REJECTED) != 0);
    cJSON_AddBoolToObject(tok, "truncated", (flags & TX_RUNF_TRUNCATED) != 0);
    txcp_json_set(o, "flags", tok);

    return o;
}


void
txcp_api_runs_list(txcp_req_t *r)
{
    int         rc, limit, count;
    const char *cursor, *key_id;
    uint8_t     cid[16], last[16];
    char        hex[33];
    cJSON      *items, *o;
    tx_str_t    kv;
    MDB_txn    *txn;
    MDB_val     k, v;
    MDB_cursor *cur;

    if (txcp_http_limit(r, &limit) != 0) {
        return;
    }

    cursor = txcp_http_arg(r, "cursor");
    key_id = txcp_http_arg(r, "key_id");

    if (cursor && tx_run_id_parse(cursor, strlen(cursor), cid) != TX_OK) {
        txcp_http_error(r, 400, "bad cursor");
        return;
    }

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    if (mdb_cursor_open(txn, txcp.db[TXCP_DB_RUNS], &cur) != 0) {
        mdb_txn_abort(txn);
        txcp_http_error(r, 500, "internal error");
        return;
    }

    items = cJSON_CreateArray();
    count = 0;

    /* newest first: from the cursor (exclusive) or the end, backwards */

    if (cursor) {
        k.mv_data = cid;
        k.mv_size = 16;

        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);

        if (rc == MDB_NOTFOUND) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);

        } else if (rc == 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
        }

        if (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, cid, 16) >= 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
        }

    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    }

    for (/* void */; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
        if (k.mv_size != 16) {
            continue;
        }

        if (key_id
            && (tx_rec_find(v.mv_data, v.mv_size, TX_RUN_KEY_ID, &kv) != TX_OK
                || kv.len != strlen(key_id)
                || memcmp(kv.data, key_id, kv.len) != 0))
        {
            continue;
        }

        if (count == limit) {
            break;
        }

        o = txcp_run_json(k.mv_data, v.mv_data, v.mv_size, 0);

        if (o) {
            cJSON_AddItemToArray(items, o);
            count++;
            memcpy(last, k.mv_data, 16);
        }
    }

    mdb_cursor_close(cur);
    mdb_txn_abort(txn);

    if (rc == 0 && count == limit) {
        tx_run_id_hex(last, hex);
        txcp_http_reply(r, 200, txcp_http_page(items, hex));

    } else {
        txcp_http_reply(r, 200, txcp_http_page(items, NULL));
    }
}


void
txcp_api_runs_get(txcp_req_t *r)
{
    uint8_t  id[16];
    cJSON   *o;
    MDB_txn *txn;
    MDB_val  k, v;

    if (tx_run_id_parse(r->id, strlen(r->id), id) != TX_OK) {
        txcp_http_error(r, 404, "no run %s", r->id);
        return;
    }

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    k.mv_data = id;
    k.mv_size = 16;

    if (mdb_get(txn, txcp.db[TXCP_DB_RUNS], &k, &v) != 0) {
        mdb_txn_abort(txn);
        txcp_http_error(r, 404, "no run %s", r->id);
        return;
    }

    o = txcp_run_json(id, v.mv_data, v.mv_size, 1);
    mdb_txn_abort(txn);

    if (o == NULL) {
        txcp_http_error(r, 500, "run record is corrupt");
        return;
    }

    txcp_http_reply(r, 200, o);
}

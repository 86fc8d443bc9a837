/*
 * torrix-cp: /api/v1/runs (run records ingested from the spool) and
 * /api/v1/health.
 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tx_record.h"
#include "tx_spool.h"

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_http.h"
#include "txcp_json.h"
#include "txcp_run.h"
#include "txcp_store.h"


#define TXCP_RUNQ_SCAN_MAX 200000 /* records examined per page at most */


/* A parsed run query: ?since= &until= &key_id= ... (see txcp_runq_parse) */
typedef struct {
    int         dim; /* TXCP_IDX_* used to walk, 0: every run */
    const char *idx_id;
    int64_t     since_ms;
    int64_t     until_ms;
    const char *key_id;
    const char *project_id;
    const char *user_id;
    const char *model;
    const char *tag;
    const char *name;
    int         status; /* 0 any, -1 errors, else the HTTP status */
    int         errors; /* only error runs */
    int         asc;    /* oldest first */
    int         has_cursor;
    uint8_t     cursor[16];
} txcp_runq_t;


/* Called per matching run; returns 0 to go on, 1 to stop. */
typedef int (*txcp_runq_pt)(void *arg, const uint8_t *id, const uint8_t *rec,
                            size_t len, const txcp_run_t *run);


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

    if (tx_rec_uint(v, &u) == TX_OK) {
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
 * Appends one upstream attempt (a nested TX_ATT_* record) to list:
 * {"model","provider","status","latency_ms","error"|null}.
 */
static void
txcp_run_attempt(cJSON *list, const tx_str_t *rec)
{
    uint16_t      tag;
    uint64_t      u;
    cJSON        *a;
    tx_str_t      v;
    tx_rec_iter_t it;

    a = cJSON_CreateObject();
    cJSON_AddNullToObject(a, "model");
    cJSON_AddNullToObject(a, "provider");
    cJSON_AddNumberToObject(a, "status", 0);
    cJSON_AddNumberToObject(a, "latency_ms", 0);
    cJSON_AddNullToObject(a, "error");

    tx_rec_iter_init(&it, rec->data, rec->len);

    while (tx_rec_next(&it, &tag, &v) == TX_OK) {
        switch (tag) {
        case TX_ATT_MODEL:
            txcp_run_str(a, "model", &v);
            break;
        case TX_ATT_PROVIDER:
            txcp_run_str(a, "provider", &v);
            break;
        case TX_ATT_STATUS:
            txcp_run_num(a, "status", &v, 1);
            break;
        case TX_ATT_US:
            if (tx_rec_uint(&v, &u) == TX_OK) {
                txcp_json_set(a, "latency_ms",
                              cJSON_CreateNumber((double) u / 1000));
            }
            break;
        case TX_ATT_ERROR:
            txcp_run_str(a, "error", &v);
            break;
        }
    }

    cJSON_AddItemToArray(list, a);
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
    cJSON        *o, *tok, *att;
    tx_str_t      v;
    tx_rec_iter_t it;

    o = cJSON_CreateObject();
    tx_run_id_hex(id, hex);
    cJSON_AddStringToObject(o, "id", hex);
    cJSON_AddNullToObject(o, "started_at");

    tok = cJSON_CreateObject();
    att = cJSON_CreateArray();
    flags = 0;

    tx_rec_iter_init(&it, val, len);

    while ((rc = tx_rec_next(&it, &tag, &v)) == TX_OK) {
        switch (tag) {
        case TX_RUN_START_US:
            if (tx_rec_int(&v, &i) == TX_OK) {
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
            if (tx_rec_uint(&v, &u) == TX_OK) {
                txcp_json_set(o, "endpoint",
                              cJSON_CreateString(tx_endpoint_name(u)));
            }
            break;

        case TX_RUN_MODEL_REQ:
            txcp_run_str(o, "model_requested", &v);
            txcp_run_str(o, "requested_model", &v);
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
            if (tx_rec_int(&v, &i) == TX_OK) {
                txcp_json_set(o, "cost_usd", txcp_json_money_value(i));
            }
            break;

        case TX_RUN_FLAGS:
            if (tx_rec_uint(&v, &u) == TX_OK) {
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
            if (tx_rec_int(&v, &i) == TX_OK) {
                txcp_json_set(o, "reserved_usd", txcp_json_money_value(i));
            }
            break;

        case TX_RUN_ATTEMPT:
            txcp_run_attempt(att, &v);
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
        cJSON_Delete(att);
        cJSON_Delete(tok);
        cJSON_Delete(o);
        return NULL;
    }

    txcp_json_set(o, "attempts", att);

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
    cJSON_AddBoolToObject(tok, "estimated", (flags & TX_RUNF_ESTIMATED) != 0);
    cJSON_AddBoolToObject(tok, "usage_injected",
                          (flags & TX_RUNF_USAGE_INJECTED) != 0);
    txcp_json_set(o, "flags", tok);

    if (bodies) {
        cJSON_AddBoolToObject(o, "truncated", (flags & TX_RUNF_TRUNCATED) != 0);
    }

    if (!cJSON_GetObjectItemCaseSensitive(o, "tags")) {
        cJSON_AddObjectToObject(o, "tags");
    }

    return o;
}


static int
txcp_time_arg(txcp_req_t *r, const char *name, int64_t *ms)
{
    const char *s;
    char       *end;
    long long   n;
    int64_t     secs;

    s = txcp_http_arg(r, name);

    if (s == NULL || *s == '\0') {
        return 0;
    }

    if (*s >= '0' && *s <= '9' && strchr(s, '-') == NULL) {
        errno = 0;
        n = strtoll(s, &end, 10);

        if (errno == 0 && *end == '\0' && n >= 0 && n < 253402300800LL) {
            *ms = n * 1000;
            return 0;
        }

    } else if (txcp_time_parse(s, &secs) == TX_OK && secs >= 0) {
        *ms = secs * 1000;
        return 0;
    }

    txcp_http_error(r, 400, "%s must be an RFC 3339 time or unix seconds",
                    name);

    return -1;
}


/* Parses the common run filters; replies 400 and returns -1 when bad. */
static int
txcp_runq_parse(txcp_req_t *r, txcp_runq_t *q, int errors)
{
    const char *s, *cursor;
    char       *end;
    long        n;

    memset(q, 0, sizeof(txcp_runq_t));

    q->since_ms = 0;
    q->until_ms = INT64_MAX;
    q->errors = errors;

    if (txcp_time_arg(r, "since", &q->since_ms) != 0
        || txcp_time_arg(r, "until", &q->until_ms) != 0)
    {
        return -1;
    }

    q->key_id = txcp_http_arg(r, "key_id");
    q->project_id = txcp_http_arg(r, "project_id");
    q->user_id = txcp_http_arg(r, "user_id");
    q->model = txcp_http_arg(r, "model");
    q->tag = txcp_http_arg(r, "tag");
    q->name = txcp_http_arg(r, "name");

    if (q->tag && strchr(q->tag, '=') == NULL) {
        txcp_http_error(r, 400, "tag must be k=v");
        return -1;
    }

    s = txcp_http_arg(r, "status");

    if (s && strcmp(s, "error") == 0) {
        q->status = -1;
        q->errors = 1;

    } else if (s) {
        errno = 0;
        n = strtol(s, &end, 10);

        if (errno || end == s || *end || n < 100 || n > 999) {
            txcp_http_error(r, 400, "status must be an HTTP status or error");
            return -1;
        }

        q->status = (int) n;
    }

    cursor = txcp_http_arg(r, "cursor");

    if (cursor) {
        if (tx_run_id_parse(cursor, strlen(cursor), q->cursor) != TX_OK) {
            txcp_http_error(r, 400, "bad cursor");
            return -1;
        }

        q->has_cursor = 1;
    }

    /* walk the narrowest index */

    if (q->key_id && *q->key_id) {
        q->dim = TXCP_IDX_KEY;
        q->idx_id = q->key_id;

    } else if (q->project_id && *q->project_id) {
        q->dim = TXCP_IDX_PROJECT;
        q->idx_id = q->project_id;

    } else if (q->user_id && *q->user_id) {
        q->dim = TXCP_IDX_USER;
        q->idx_id = q->user_id;

    } else if (q->errors) {
        q->dim = TXCP_IDX_ERROR;
        q->idx_id = "";
    }

    if (q->idx_id && strlen(q->idx_id) > 255) {
        txcp_http_error(r, 400, "id too long");
        return -1;
    }

    return 0;
}


static int
txcp_str_is(const tx_str_t *v, const char *s)
{
    return s == NULL
           || (v->len == strlen(s) && memcmp(v->data, s, v->len) == 0);
}


static int
txcp_runq_match(const txcp_runq_t *q, const txcp_run_t *run)
{
    const char *eq;
    char        k[256];
    tx_str_t    v;
    int64_t     ms;

    ms = run->start_us / 1000;

    if (run->start_us && (ms < q->since_ms || ms >= q->until_ms)) {
        return 0;
    }

    if (!txcp_str_is(&run->key, q->key_id)
        || !txcp_str_is(&run->project, q->project_id)
        || !txcp_str_is(&run->user, q->user_id)
        || !txcp_str_is(&run->name, q->name))
    {
        return 0;
    }

    if (q->model && !txcp_str_is(&run->model, q->model)
        && !txcp_str_is(&run->model_req, q->model))
    {
        return 0;
    }

    if (q->errors && !txcp_run_is_error(run)) {
        return 0;
    }

    if (q->status > 0 && run->status != (uint64_t) q->status) {
        return 0;
    }

    if (q->tag) {
        eq = strchr(q->tag, '=');

        if ((size_t) (eq - q->tag) >= sizeof(k)) {
            return 0;
        }

        memcpy(k, q->tag, eq - q->tag);
        k[eq - q->tag] = '\0';

        if (txcp_tags_get(&run->tags, k, &v) != TX_OK
            || !txcp_str_is(&v, eq + 1)) {
            return 0;
        }
    }

    return 1;
}


static int64_t
txcp_run_id_ms(const uint8_t *id)
{
    int     i;
    int64_t ms;

    ms = 0;

    for (i = 0; i < 6; i++) {
        ms = ms << 8 | id[i];
    }

    return ms;
}


/*
 * Walks the runs matching q in id (time) order, newest first unless q->asc,
 * from q's cursor (exclusive), calling cb for each until it returns 1 or
 * TXCP_RUNQ_SCAN_MAX records were examined.  *last gets the id of the last
 * run handed to cb (or examined, when the scan cap stopped the walk) and
 * *more says whether the walk stopped before the end.  0 or an LMDB rc.
 */
static int
txcp_runq_walk(MDB_txn *txn, const txcp_runq_t *q, txcp_runq_pt cb, void *arg,
               uint8_t *last, int *more)
{
    int              rc, stop;
    size_t           plen, scanned;
    uint8_t          key[TXCP_IDX_KEY_MAX], bound[16], zero[10];
    const uint8_t   *id;
    int64_t          ms;
    txcp_run_t       run;
    MDB_cursor      *cur;
    MDB_val          k, v, rk, rv;
    MDB_cursor_op    step;
    txcp_runidx_it_t it;

    *more = 0;
    memset(zero, 0, sizeof(zero));

    /* the starting bound: the cursor, else the time limit */

    if (q->has_cursor) {
        memcpy(bound, q->cursor, 16);

    } else if (q->asc) {
        tx_run_id_make(bound, q->since_ms, zero);

    } else {
        tx_run_id_make(bound,
                       q->until_ms == INT64_MAX ? 0xffffffffffffLL
                                                : q->until_ms,
                       zero);
    }

    cur = NULL;
    step = q->asc ? MDB_NEXT : MDB_PREV;

    if (q->dim) {
        /* the run ids under one index key (txcp_runidx.h) */

        plen = txcp_runs_idx_key(key, q->dim, (const uint8_t *) q->idx_id,
                                 strlen(q->idx_id));

        rc = txcp_runidx_open(&it, txn, txcp.db[TXCP_DB_RUNS_IDX], key, plen,
                              bound, q->asc, q->asc && q->has_cursor);

        rc = rc == 0 ? txcp_runidx_next(&it, &id) : rc;

    } else {
        rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_RUNS], &cur);
        if (rc != 0) {
            return rc;
        }

        k.mv_data = bound;
        k.mv_size = 16;

        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);

        if (q->asc) {
            if (rc == 0 && q->has_cursor && k.mv_size == 16
                && memcmp(k.mv_data, bound, 16) == 0)
            {
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            }

        } else {
            /* SET_RANGE lands on the first key >= bound: step back once */
            rc = rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
                 : rc == 0          ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
                                    : rc;
        }
    }

    scanned = 0;

    for (/* void */; rc == 0; rc = q->dim ? txcp_runidx_next(&it, &id)
                                          : mdb_cursor_get(cur, &k, &v, step))
    {
        if (!q->dim) {
            if (k.mv_size != 16) {
                break;
            }

            id = k.mv_data;
        }

        ms = txcp_run_id_ms(id);

        if (q->asc ? ms >= q->until_ms : ms < q->since_ms) {
            break;
        }

        if (++scanned > TXCP_RUNQ_SCAN_MAX) {
            *more = 1;
            break;
        }

        memcpy(last, id, 16);

        if (q->dim) {
            rk.mv_data = (void *) id;
            rk.mv_size = 16;

            if (mdb_get(txn, txcp.db[TXCP_DB_RUNS], &rk, &rv) != 0) {
                continue;
            }

        } else {
            rv = v;
        }

        if (txcp_run_decode(rv.mv_data, rv.mv_size, &run) != TX_OK
            || !txcp_runq_match(q, &run))
        {
            continue;
        }

        stop = cb(arg, id, rv.mv_data, rv.mv_size, &run);

        if (stop) {
            *more = 1;
            break;
        }
    }

    if (q->dim) {
        txcp_runidx_close(&it);

    } else {
        mdb_cursor_close(cur);
    }

    return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}


typedef struct {
    cJSON *items;
    int    count;
    int    limit;
    int    kind; /* 0 runs, 1 logs, 2 errors */
} txcp_page_t;


static void
txcp_run_strv(cJSON *o, const char *name, const tx_str_t *v)
{
    if (v->len) {
        txcp_run_str(o, name, v);

    } else {
        cJSON_AddNullToObject(o, name);
    }
}


static cJSON *
txcp_log_json(const uint8_t *id, const txcp_run_t *run)
{
    char   hex[33], ts[40];
    cJSON *o, *t;

    o = cJSON_CreateObject();
    tx_run_id_hex(id, hex);

    cJSON_AddStringToObject(o, "time",
                            txcp_time_format(run->start_us, 3, ts, sizeof(ts)));
    cJSON_AddStringToObject(o, "run_id", hex);
    txcp_run_strv(o, "key_id", &run->key);
    txcp_run_strv(o, "user_id", &run->user);
    txcp_run_strv(o, "end_user", &run->end_user);
    cJSON_AddStringToObject(o, "endpoint", tx_endpoint_name(run->endpoint));
    txcp_run_strv(o, "model_requested", &run->model_req);
    txcp_run_strv(o, "model", &run->model);
    txcp_run_strv(o, "provider", &run->provider);

    t = cJSON_AddObjectToObject(o, "tokens");
    cJSON_AddNumberToObject(t, "input", (double) run->tokens_in);
    cJSON_AddNumberToObject(t, "output", (double) run->tokens_out);
    cJSON_AddNumberToObject(t, "cache_read", (double) run->cache_read);
    cJSON_AddNumberToObject(t, "cache_write", (double) run->cache_write);
    cJSON_AddNumberToObject(t, "reasoning", (double) run->reasoning);

    cJSON_AddItemToObject(o, "cost_usd", txcp_json_money_value(run->cost));
    cJSON_AddNumberToObject(o, "status", (double) run->status);
    cJSON_AddNumberToObject(o, "latency_ms", (double) run->latency_us / 1000);
    cJSON_AddBoolToObject(o, "unpriced", (run->flags & TX_RUNF_UNPRICED) != 0);

    return o;
}


static cJSON *
txcp_error_json(const uint8_t *id, const txcp_run_t *run)
{
    char     hex[33], ts[40];
    cJSON   *o;
    tx_str_t v;

    o = cJSON_CreateObject();
    tx_run_id_hex(id, hex);

    cJSON_AddStringToObject(o, "time",
                            txcp_time_format(run->start_us, 3, ts, sizeof(ts)));
    cJSON_AddStringToObject(o, "run_id", hex);
    cJSON_AddStringToObject(o, "source",
                            (run->flags & TX_RUNF_REJECTED) ? "gateway"
                                                            : "provider");
    txcp_run_strv(o, "type", &run->error_type);
    cJSON_AddNumberToObject(o, "status", (double) run->status);
    txcp_run_strv(o, "model", txcp_run_model(run));
    txcp_run_strv(o, "error", &run->error);
    txcp_run_strv(o, "user_id", &run->user);
    txcp_run_strv(o, "end_user", &run->end_user);
    txcp_run_strv(o, "key_id", &run->key);

    v.len = 0;
    v.data = NULL;
    (void) txcp_tags_get(&run->tags, "agent", &v);
    txcp_run_str(o, "agent", &v);

    v.len = 0;
    v.data = NULL;
    (void) txcp_tags_get(&run->tags, "version", &v);
    txcp_run_str(o, "version", &v);

    return o;
}


static int
txcp_page_add(void *arg, const uint8_t *id, const uint8_t *rec, size_t len,
              const txcp_run_t *run)
{
    txcp_page_t *pg;
    cJSON       *o;

    pg = arg;

    switch (pg->kind) {
    case 1:
        o = txcp_log_json(id, run);
        break;
    case 2:
        o = txcp_error_json(id, run);
        break;
    default:
        o = txcp_run_json(id, rec, len, 0);
    }

    if (o) {
        cJSON_AddItemToArray(pg->items, o);
    }

    return ++pg->count >= pg->limit;
}


static void
txcp_runs_page(txcp_req_t *r, int kind)
{
    int         rc, more;
    uint8_t     last[16];
    char        hex[33];
    txcp_runq_t q;
    txcp_page_t pg;
    MDB_txn    *txn;

    memset(&pg, 0, sizeof(pg));
    pg.kind = kind;

    if (txcp_http_limit(r, &pg.limit) != 0
        || txcp_runq_parse(r, &q, kind == 2) != 0)
    {
        return;
    }

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    pg.items = cJSON_CreateArray();

    rc = txcp_runq_walk(txn, &q, txcp_page_add, &pg, last, &more);
    mdb_txn_abort(txn);

    if (rc != 0) {
        cJSON_Delete(pg.items);
        txcp_http_error(r, 500, "internal error");
        return;
    }

    tx_run_id_hex(last, hex);

    txcp_http_reply(r, 200, txcp_http_page(pg.items, more ? hex : NULL));
}


void
txcp_api_runs_list(txcp_req_t *r)
{
    txcp_runs_page(r, 0);
}


void
txcp_api_logs(txcp_req_t *r)
{
    txcp_runs_page(r, 1);
}


void
txcp_api_errors(txcp_req_t *r)
{
    txcp_runs_page(r, 2);
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

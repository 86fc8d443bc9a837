/*
 * torrix-cp: spend and usage read from the rollups (never from raw runs):
 * /api/v1/spend, /api/v1/spend/scopes, /api/v1/usage/users.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tx_snapshot.h"
#include "tx_window.h"

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_http.h"
#include "txcp_json.h"
#include "txcp_rollup.h"
#include "txcp_store.h"


static const struct {
    const char *name;
    int         scope;
} txcp_scopes[] = {
    {"instance", TX_SCOPE_INSTANCE}, {"org", TX_SCOPE_ORG},
    {"project", TX_SCOPE_PROJECT},   {"user", TX_SCOPE_USER},
    {"key", TX_SCOPE_KEY},           {NULL, 0},
};


void
txcp_api_spend_scopes(txcp_req_t *r)
{
    int         i, scope;
    const char *name, *id;
    char        ts[40];
    int64_t     now, wm;
    uint32_t    idx;
    uint8_t     key[TX_SPEND_KEY_MAX];
    size_t      n, idlen;
    cJSON      *out, *w;
    MDB_txn    *txn;
    MDB_val     k, v;

    static const struct {
        const char *name;
        int         kind;
    } wins[] = {{"day", TX_WIN_DAY},
                {"week", TX_WIN_WEEK},
                {"month", TX_WIN_MONTH}};

    name = txcp_http_arg(r, "scope");
    id = txcp_http_arg(r, "id");
    scope = 0;

    for (i = 0; name && txcp_scopes[i].name; i++) {
        if (strcmp(txcp_scopes[i].name, name) == 0) {
            scope = txcp_scopes[i].scope;
        }
    }

    if (scope == 0) {
        txcp_http_error(r, 400,
                        "scope must be instance, org, project, user or key");
        return;
    }

    if (scope == TX_SCOPE_INSTANCE) {
        id = "";

    } else if (id == NULL || *id == '\0' || strlen(id) > TX_ID_MAX_LEN) {
        txcp_http_error(r, 400, "id is required");
        return;
    }

    idlen = strlen(id);

    /* what the data plane sees: the snapshot */

    if (mdb_txn_begin(txcp.snap, NULL, MDB_RDONLY, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    now = txcp_now_us() / 1000000;

    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "scope", name);
    cJSON_AddStringToObject(out, "id", id);

    for (i = 0; i < 3; i++) {
        idx = tx_window_index(wins[i].kind, now);
        n = tx_spend_key(key, scope, wins[i].kind, idx, (const uint8_t *) id,
                         idlen);

        k.mv_data = key;
        k.mv_size = n;

        w = cJSON_AddObjectToObject(out, wins[i].name);
        cJSON_AddNumberToObject(w, "index", idx);
        cJSON_AddStringToObject(w, "start",
                                txcp_time_format(tx_window_start(wins[i].kind,
                                                                 idx)
                                                     * 1000000,
                                                 0, ts, sizeof(ts)));

        if (mdb_get(txn, txcp.sdb[TXCP_SDB_SPEND], &k, &v) == 0
            && v.mv_size == 8) {
            cJSON_AddItemToObject(w, "cost_usd",
                                  txcp_json_money_value(
                                      (tx_money_t) txcp_get_le64(v.mv_data)));

        } else {
            cJSON_AddItemToObject(w, "cost_usd", txcp_json_money_value(0));
        }
    }

    k.mv_data = TX_SNAP_META_WATERMARK;
    k.mv_size = strlen(TX_SNAP_META_WATERMARK);

    if (mdb_get(txn, txcp.sdb[TXCP_SDB_META], &k, &v) == 0 && v.mv_size == 8) {
        wm = (int64_t) txcp_get_le64(v.mv_data);
        cJSON_AddStringToObject(out, "ingest_watermark",
                                txcp_time_format(wm, 6, ts, sizeof(ts)));
        cJSON_AddNumberToObject(out, "ingest_watermark_us", (double) wm);

    } else {
        cJSON_AddNullToObject(out, "ingest_watermark");
    }

    mdb_txn_abort(txn);

    cJSON_AddNumberToObject(out, "snapshot_gen", (double) txcp.gen);

    txcp_http_reply(r, 200, out);
}


#define TXCP_SERIES_DAYS 30


typedef struct {
    char    id[TXCP_ROLLUP_ID_MAX + 1];
    int64_t v[TXCP_RV_N];
} txcp_slice_t;


static const struct {
    const char *name;
    int         dim;
} txcp_bys[] = {
    {"key", TXCP_DIM_KEY},           {"tag", TXCP_DIM_TAG},
    {"provider", TXCP_DIM_PROVIDER}, {"model", TXCP_DIM_MODEL},
    {"project", TXCP_DIM_PROJECT},   {"user", TXCP_DIM_USER},
    {"org", TXCP_DIM_ORG},           {NULL, 0},
};


static int
txcp_slice_cmp(const void *a, const void *b)
{
    const txcp_slice_t *x, *y;

    x = a;
    y = b;

    if (x->v[TXCP_RV_COST] != y->v[TXCP_RV_COST]) {
        return x->v[TXCP_RV_COST] > y->v[TXCP_RV_COST] ? -1 : 1;
    }

    return strcmp(x->id, y->id);
}


/* ?since= ?until= (RFC 3339 or unix seconds); default the last 30 days. */
static int
txcp_range_args(txcp_req_t *r, int64_t *since, int64_t *until)
{
    int         i;
    const char *s, *names[2] = {"since", "until"};
    char       *end;
    int64_t     t, now, *out[2];

    now = txcp_now_us() / 1000000;
    *until = now;
    *since = now - now % 86400 - (TXCP_SERIES_DAYS - 1) * 86400;
    out[0] = since;
    out[1] = until;

    for (i = 0; i < 2; i++) {
        s = txcp_http_arg(r, names[i]);

        if (s == NULL || *s == '\0') {
            continue;
        }

        if (strchr(s, '-') == NULL) {
            errno = 0;
            t = strtoll(s, &end, 10);

            if (errno || end == s || *end || t < 0) {
                goto bad;
            }

        } else if (txcp_time_parse(s, &t) != TX_OK) {
            goto bad;
        }

        /* the year 9999 at most: later code works in microseconds */
        if (t < 0 || t >= 253402300800LL) {
            goto bad;
        }

        *out[i] = t;
    }

    if (*since >= *until) {
        txcp_http_error(r, 400, "since must be before until");
        return -1;
    }

    return 0;

bad:

    txcp_http_error(r, 400, "%s must be an RFC 3339 time or unix seconds",
                    names[i]);

    return -1;
}


/*
 * Sums every id of `dim` over [since, until): *out (malloc'd, caller
 * frees) gets the ids with at least one request, sorted by cost desc.
 * Returns 0 or an LMDB rc.
 */
static int
txcp_slices(MDB_txn *txn, int dim, int64_t since, int64_t until,
            txcp_slice_t **out, size_t *n)
{
    int            rc;
    size_t         cap, idlen;
    uint8_t        key[TXCP_ACC_KEY_MAX];
    const uint8_t *kp;
    txcp_slice_t  *s, *p;
    MDB_cursor    *walk, *sum;
    MDB_val        k, v;

    *out = NULL;
    *n = 0;
    cap = 0;
    s = NULL;

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_ROLLUPS], &walk);
    if (rc != 0) {
        return rc;
    }

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_ROLLUPS], &sum);
    if (rc != 0) {
        mdb_cursor_close(walk);
        return rc;
    }

    key[0] = (uint8_t) dim;
    k.mv_data = key;
    k.mv_size = 1;

    /* one seek per id: past its buckets to the next id */

    for (rc = mdb_cursor_get(walk, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(walk, &k, &v, MDB_SET_RANGE))
    {
        kp = k.mv_data;

        if (k.mv_size < 11 || kp[0] != dim || k.mv_size != 11 + (size_t) kp[1])
        {
            break;
        }

        idlen = kp[1];

        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            p = realloc(s, cap * sizeof(txcp_slice_t));

            if (p == NULL) {
                rc = ENOMEM;
                break;
            }

            s = p;
        }

        p = &s[*n];
        memcpy(p->id, kp + 2, idlen);
        p->id[idlen] = '\0';

        /* the next id: this id's prefix followed by 0xff sorts after it */

        memcpy(key, kp, 2 + idlen);
        key[2 + idlen] = 0xff;
        k.mv_data = key;
        k.mv_size = 3 + idlen;

        rc = txcp_rollup_sum(sum, dim, (const uint8_t *) p->id, idlen, since,
                             until, p->v);
        if (rc != 0) {
            break;
        }

        if (p->v[TXCP_RV_REQUESTS] > 0 && memchr(p->id, '\0', idlen) == NULL) {
            (*n)++;
        }
    }

    mdb_cursor_close(walk);
    mdb_cursor_close(sum);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        free(s);
        *n = 0;
        return rc;
    }

    if (*n) {
        qsort(s, *n, sizeof(txcp_slice_t), txcp_slice_cmp);
    }

    *out = s;

    return 0;
}


static void
txcp_slice_json(cJSON *o, const int64_t *v)
{
    double req;

    req = (double) v[TXCP_RV_REQUESTS];

    cJSON_AddItemToObject(o, "cost_usd",
                          txcp_json_money_value(v[TXCP_RV_COST]));
    cJSON_AddNumberToObject(o, "requests", req);
    cJSON_AddNumberToObject(o, "errors", (double) v[TXCP_RV_ERRORS]);
    cJSON_AddNumberToObject(o, "tokens_in", (double) v[TXCP_RV_TOKENS_IN]);
    cJSON_AddNumberToObject(o, "tokens_out", (double) v[TXCP_RV_TOKENS_OUT]);
    cJSON_AddNumberToObject(o, "mean_tokens_in",
                            req ? (double) v[TXCP_RV_TOKENS_IN] / req : 0);
    cJSON_AddNumberToObject(o, "mean_tokens_out",
                            req ? (double) v[TXCP_RV_TOKENS_OUT] / req : 0);
    cJSON_AddNumberToObject(o, "mean_latency_ms",
                            req ? (double) v[TXCP_RV_LATENCY_US] / req / 1000
                                : 0);
}


static cJSON *
txcp_series_json(MDB_cursor *cur, int dim, const char *id, int64_t today)
{
    int     i;
    int64_t series[TXCP_SERIES_DAYS];
    cJSON  *a;

    a = cJSON_CreateArray();

    if (txcp_rollup_series(cur, dim, (const uint8_t *) id, strlen(id), today,
                           TXCP_SERIES_DAYS, series)
        != 0)
    {
        memset(series, 0, sizeof(series));
    }

    for (i = 0; i < TXCP_SERIES_DAYS; i++) {
        cJSON_AddItemToArray(a, txcp_json_money_value(series[i]));
    }

    return a;
}


void
txcp_api_spend(txcp_req_t *r)
{
    int           i, dim, limit, rc;
    size_t        n, j;
    const char   *by;
    char          ts[40];
    int64_t       since, until, now, v[TXCP_RV_N];
    txcp_slice_t *s;
    cJSON        *out, *data, *o;
    MDB_txn      *txn;
    MDB_cursor   *cur;

    by = txcp_http_arg(r, "by");
    dim = 0;

    for (i = 0; by && txcp_bys[i].name; i++) {
        if (strcmp(txcp_bys[i].name, by) == 0) {
            dim = txcp_bys[i].dim;
        }
    }

    if (dim == 0) {
        txcp_http_error(r, 400,
                        "by must be key, tag, provider, model, project, user "
                        "or org");
        return;
    }

    if (txcp_http_limit(r, &limit) != 0
        || txcp_range_args(r, &since, &until) != 0) {
        return;
    }

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    rc = txcp_slices(txn, dim, since, until, &s, &n);

    if (rc != 0 || mdb_cursor_open(txn, txcp.db[TXCP_DB_ROLLUPS], &cur) != 0) {
        free(s);
        mdb_txn_abort(txn);
        txcp_http_error(r, 500, "internal error");
        return;
    }

    now = txcp_now_us() / 1000000;

    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "by", by);
    cJSON_AddStringToObject(out, "since",
                            txcp_time_format(since * 1000000, 0, ts,
                                             sizeof(ts)));
    cJSON_AddStringToObject(out, "until",
                            txcp_time_format(until * 1000000, 0, ts,
                                             sizeof(ts)));

    data = cJSON_AddArrayToObject(out, "data");

    for (j = 0; j < n && (int) j < limit; j++) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", s[j].id);
        txcp_slice_json(o, s[j].v);
        cJSON_AddItemToObject(o, "series",
                              txcp_series_json(cur, dim, s[j].id, now));
        cJSON_AddItemToArray(data, o);
    }

    cJSON_AddNumberToObject(out, "count", (double) n);

    /* the instance rollup: every run once, whatever the slicing */

    o = cJSON_AddObjectToObject(out, "total");

    if (txcp_rollup_sum(cur, TXCP_DIM_INSTANCE, NULL, 0, since, until, v) != 0)
    {
        memset(v, 0, sizeof(v));
    }

    txcp_slice_json(o, v);
    cJSON_AddItemToObject(o, "series",
                          txcp_series_json(cur, TXCP_DIM_INSTANCE, "", now));

    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    free(s);

    txcp_http_reply(r, 200, out);
}


void
txcp_api_usage_users(txcp_req_t *r)
{
    int           limit;
    size_t        n, j;
    int64_t       since, until;
    txcp_slice_t *s;
    cJSON        *data, *o, *rec;
    MDB_txn      *txn;

    if (txcp_http_limit(r, &limit) != 0
        || txcp_range_args(r, &since, &until) != 0) {
        return;
    }

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    if (txcp_slices(txn, TXCP_DIM_USER, since, until, &s, &n) != 0) {
        mdb_txn_abort(txn);
        txcp_http_error(r, 500, "internal error");
        return;
    }

    data = cJSON_CreateArray();

    for (j = 0; j < n && (int) j < limit; j++) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "user_id", s[j].id);

        rec = txcp_store_get(txn, TXCP_DB_USERS, s[j].id);

        if (txcp_json_str(rec, "email")) {
            cJSON_AddStringToObject(o, "email", txcp_json_str(rec, "email"));
            cJSON_AddStringToObject(o, "name",
                                    txcp_json_str(rec, "name")
                                        ? txcp_json_str(rec, "name")
                                        : "");
        } else {
            cJSON_AddNullToObject(o, "email");
            cJSON_AddNullToObject(o, "name");
        }

        cJSON_Delete(rec);

        cJSON_AddNumberToObject(o, "requests",
                                (double) s[j].v[TXCP_RV_REQUESTS]);
        cJSON_AddNumberToObject(o, "input_tokens",
                                (double) s[j].v[TXCP_RV_TOKENS_IN]);
        cJSON_AddNumberToObject(o, "output_tokens",
                                (double) s[j].v[TXCP_RV_TOKENS_OUT]);
        cJSON_AddItemToObject(o, "cost_usd",
                              txcp_json_money_value(s[j].v[TXCP_RV_COST]));
        cJSON_AddItemToArray(data, o);
    }

    mdb_txn_abort(txn);
    free(s);

    txcp_http_reply(r, 200, txcp_http_page(data, NULL));
}

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
    } wins[] = {{"day", TX_WIN_DAY}, {"week", TX_WIN_WEEK},
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
        cJSON_AddStringToObject(
            w, "start",
            txcp_time_format(tx_window_start(wins[i].kind, idx) * 1000000, 0,
                             ts, sizeof(ts)));

        if (mdb_get(txn, txcp.sdb[TXCP_SDB_SPEND], &k, &v) == 0
            && v.mv_size == 8)
        {
            cJSON_AddItemToObject(
                w, "cost_usd",
                txcp_json_money_value((tx_money_t) txcp_get_le64(v.mv_data)));

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

/*
 * torrix-cp: /api/v1/audit and /api/v1/audit/verify.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_audit.h"
#include "txcp_http.h"
#include "txcp_store.h"


void
txcp_api_audit_list(txcp_req_t *r)
{
    int           rc, limit, count, asc;
    const char   *order;
    char          buf[24];
    uint64_t      seq, last;
    uint8_t       key[8];
    cJSON        *items, *o;
    MDB_txn      *txn;
    MDB_val       k, v;
    MDB_cursor   *cur;
    MDB_cursor_op step;

    if (txcp_http_limit(r, &limit) != 0) {
        return;
    }

    order = txcp_http_arg(r, "order");

    if (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
        txcp_http_error(r, 400, "order must be asc or desc");
        return;
    }

    asc = order && strcmp(order, "asc") == 0;

    if (txcp_http_seq_cursor(r, &seq) != 0) {
        return;
    }

    if (txcp_api_cursor(r, TXCP_DB_AUDIT, &txn, &cur) != TX_OK) {
        return;
    }

    step = asc ? MDB_NEXT : MDB_PREV;

    if (seq) {
        txcp_put_be64(key, asc ? seq + 1 : seq);
        k.mv_data = key;
        k.mv_size = 8;

        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);

        if (!asc) {
            rc = rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
                                    : mdb_cursor_get(cur, &k, &v, MDB_PREV);
        }

    } else {
        rc = mdb_cursor_get(cur, &k, &v, asc ? MDB_FIRST : MDB_LAST);
    }

    items = cJSON_CreateArray();
    count = 0;
    last = 0;

    for (/* void */; rc == 0; rc = mdb_cursor_get(cur, &k, &v, step)) {
        if (count == limit) {
            break;
        }

        o = cJSON_ParseWithLength(v.mv_data, v.mv_size);

        if (o == NULL) {
            /* a damaged record is still listed, as text */
            o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "seq",
                                    k.mv_size == 8
                                        ? (double) txcp_get_be64(k.mv_data)
                                        : 0);
            cJSON_AddBoolToObject(o, "corrupt", 1);
        }

        cJSON_AddItemToArray(items, o);
        count++;

        if (k.mv_size == 8) {
            last = txcp_get_be64(k.mv_data);
        }
    }

    mdb_cursor_close(cur);
    mdb_txn_abort(txn);

    if (rc == 0 && count == limit && last > 0) {
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long) last);
        txcp_http_reply(r, 200, txcp_http_page(items, buf));

    } else {
        txcp_http_reply(r, 200, txcp_http_page(items, NULL));
    }
}


void
txcp_api_audit_verify(txcp_req_t *r)
{
    int      rc;
    uint64_t records, broken;
    char     reason[128];
    cJSON   *out;
    MDB_txn *txn;

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    records = 0;
    broken = 0;

    rc = txcp_audit_verify(txn, &records, &broken, reason, sizeof(reason));
    mdb_txn_abort(txn);

    out = cJSON_CreateObject();

    if (rc == TX_OK) {
        cJSON_AddBoolToObject(out, "ok", 1);
        cJSON_AddNumberToObject(out, "records", (double) records);

    } else if (rc == TX_DECLINED) {
        cJSON_AddBoolToObject(out, "ok", 0);
        cJSON_AddNumberToObject(out, "broken_at", (double) broken);
        cJSON_AddStringToObject(out, "reason", reason);

    } else {
        cJSON_Delete(out);
        txcp_http_error(r, 500, "internal error");
        return;
    }

    txcp_http_reply(r, 200, out);
}

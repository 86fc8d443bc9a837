/*
 * torrix-cp: /api/v1/webhooks (budget alert receivers) and /api/v1/alerts
 * (the alerts with their delivery status).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_audit.h"
#include "txcp_http.h"
#include "txcp_json.h"
#include "txcp_store.h"
#include "txcp_vault.h"
#include "txcp_webhook.h"


static const char *const txcp_format_enum[] = {"auto", "json", "slack", NULL};
static const char *const txcp_events[] = {"budget_exceeded", "budget_threshold",
                                          NULL};


static const txcp_field_t txcp_webhook_fields[] =
    {{"id", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"name", TXCP_F_STR, 0, 0, 200, NULL, 0, "\"\""},
     {"url", TXCP_F_STR, TXCP_FF_REQUIRED | TXCP_FF_URL, 8, 2048, NULL, 0,
      NULL},
     {"events", TXCP_F_STRLIST, 0, 1, 2, NULL, 0,
      "[\"budget_exceeded\",\"budget_threshold\"]"},
     {"enabled", TXCP_F_BOOL, 0, 0, 0, NULL, 0, "true"},
     {"format", TXCP_F_ENUM, 0, 0, 0, txcp_format_enum, 0, "\"auto\""},
     {"secret", TXCP_F_STR, TXCP_FF_NULLABLE | TXCP_FF_SECRET, 1, 1024, NULL, 0,
      NULL},
     {"created_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"updated_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {NULL, 0, 0, 0, 0, NULL, 0, NULL}};


/* Wipes the secret of a record, then deletes it. */
static void
txcp_webhook_rec_free(cJSON *rec)
{
    cJSON *s;

    s = cJSON_GetObjectItemCaseSensitive(rec, "secret");

    if (cJSON_IsString(s)) {
        sodium_memzero(s->valuestring, strlen(s->valuestring));
    }

    cJSON_Delete(rec);
}


/* API form: the fields, the secret as "secret_set". */
static cJSON *
txcp_webhook_output(const cJSON *rec)
{
    int    set;
    cJSON *out;

    out = txcp_json_output(txcp_webhook_fields, rec);

    if (out) {
        set =
            cJSON_IsString(
                cJSON_GetObjectItemCaseSensitive(rec, "secret_sealed"))
            || cJSON_IsString(cJSON_GetObjectItemCaseSensitive(rec, "secret"));
        cJSON_AddBoolToObject(out, "secret_set", set);
    }

    return out;
}


/*
 * Adds the opened secret of a stored record as "secret", for the diff of an
 * edit or delete; one that does not open still shows as a change.
 */
static void
txcp_webhook_open_secret(cJSON *rec, const char *id)
{
    if (txcp_vault_open_member(rec, "secret", id) == TX_ERROR) {
        txcp_json_set(rec, "secret", cJSON_CreateString(""));
    }
}


/* What the field table does not check: URL syntax and event names. */
static int
txcp_webhook_check(const cJSON *rec, char *err, size_t errlen)
{
    int          i, slack;
    const cJSON *ev, *it, *dup;
    const char  *url;

    url = txcp_json_str(rec, "url");

    if (url == NULL || txcp_webhook_url_check(url, &slack) != TX_OK) {
        snprintf(err, errlen, "field 'url' must be an http(s) URL with a host");
        return TX_ERROR;
    }

    ev = cJSON_GetObjectItemCaseSensitive(rec, "events");

    cJSON_ArrayForEach(it, ev)
    {
        for (i = 0; txcp_events[i]; i++) {
            if (strcmp(it->valuestring, txcp_events[i]) == 0) {
                break;
            }
        }

        if (txcp_events[i] == NULL) {
            snprintf(err, errlen,
                     "field 'events' entries must be \"budget_exceeded\" or "
                     "\"budget_threshold\"");
            return TX_ERROR;
        }

        for (dup = ev->child; dup != it; dup = dup->next) {
            if (strcmp(dup->valuestring, it->valuestring) == 0) {
                snprintf(err, errlen, "field 'events' has a duplicate");
                return TX_ERROR;
            }
        }
    }

    return TX_OK;
}


void
txcp_api_webhooks_create(txcp_req_t *r)
{
    int      rc;
    char     id[TX_ID_MAX_LEN], ts[40], err[256];
    cJSON   *body, *rec, *diff;
    MDB_txn *txn;

    body = txcp_api_body(r);
    if (body == NULL) {
        return;
    }

    txn = NULL;
    diff = cJSON_CreateObject();
    rec = cJSON_CreateObject();

    tx_id_generate("whk_", id);
    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));
    cJSON_AddStringToObject(rec, "id", id);

    if (txcp_store_begin(0, &txn) != 0) {
        txn = NULL;
        goto internal;
    }

    rc = txcp_json_apply(txcp_webhook_fields, body, rec, diff, 1, txn, err,
                         sizeof(err));
    if (rc != 0) {
        txcp_http_error(r, rc, "%s", err);
        goto done;
    }

    if (txcp_webhook_check(rec, err, sizeof(err)) != TX_OK) {
        txcp_http_error(r, 400, "%s", err);
        goto done;
    }

    txcp_json_set(rec, "created_at", cJSON_CreateString(ts));
    txcp_json_set(rec, "updated_at", cJSON_CreateString(ts));

    /* the secret is stored sealed only */

    if (txcp_vault_seal_member(rec, "secret", id) != TX_OK) {
        goto internal;
    }

    rc = txcp_api_commit(r, txn, TXCP_DB_WEBHOOKS, id, rec, "create", "webhook",
                         diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_http_reply(r, 201, txcp_webhook_output(rec));

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    txcp_webhook_rec_free(body);
    txcp_webhook_rec_free(rec);
    cJSON_Delete(diff);
}


static cJSON *
txcp_webhook_item(txcp_req_t *r, const cJSON *rec)
{
    return txcp_webhook_output(rec);
}


void
txcp_api_webhooks_list(txcp_req_t *r)
{
    txcp_api_list(r, TXCP_DB_WEBHOOKS, txcp_webhook_item);
}


void
txcp_api_webhooks_get(txcp_req_t *r)
{
    txcp_api_get(r, TXCP_DB_WEBHOOKS, "webhook", txcp_webhook_item,
                 txcp_webhook_rec_free);
}


void
txcp_api_webhooks_patch(txcp_req_t *r)
{
    int      rc;
    char     ts[40], err[256];
    cJSON   *body, *rec, *diff;
    MDB_txn *txn;

    body = txcp_api_body(r);
    if (body == NULL) {
        return;
    }

    rec = NULL;
    diff = cJSON_CreateObject();

    if (txcp_api_get_for_write(r, TXCP_DB_WEBHOOKS, "webhook", &txn, &rec)
        != TX_OK) {
        goto done;
    }

    txcp_webhook_open_secret(rec, r->id);

    rc = txcp_json_apply(txcp_webhook_fields, body, rec, diff, 0, txn, err,
                         sizeof(err));
    if (rc != 0) {
        txcp_http_error(r, rc, "%s", err);
        goto done;
    }

    if (txcp_webhook_check(rec, err, sizeof(err)) != TX_OK) {
        txcp_http_error(r, 400, "%s", err);
        goto done;
    }

    if (cJSON_GetArraySize(diff) == 0) {
        txcp_http_reply(r, 200, txcp_webhook_output(rec));
        goto done;
    }

    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));
    txcp_json_set(rec, "updated_at", cJSON_CreateString(ts));

    /* a new (or null) secret is sealed (or dropped); else the stored seal */

    if (cJSON_GetObjectItemCaseSensitive(body, "secret")) {
        if (txcp_vault_seal_member(rec, "secret", r->id) != TX_OK) {
            goto internal;
        }

    } else {
        txcp_vault_wipe_member(rec, "secret");
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "secret");
    }

    rc = txcp_api_commit(r, txn, TXCP_DB_WEBHOOKS, r->id, rec, "edit",
                         "webhook", diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_webhook_changed();

    txcp_http_reply(r, 200, txcp_webhook_output(rec));

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    txcp_webhook_rec_free(body);
    txcp_webhook_rec_free(rec);
    cJSON_Delete(diff);
}


void
txcp_api_webhooks_delete(txcp_req_t *r)
{
    int      rc;
    cJSON   *rec, *diff, *out;
    MDB_txn *txn;

    rec = NULL;
    diff = cJSON_CreateObject();

    if (txcp_api_get_for_write(r, TXCP_DB_WEBHOOKS, "webhook", &txn, &rec)
        != TX_OK) {
        goto done;
    }

    txcp_webhook_open_secret(rec, r->id);
    txcp_json_diff(txcp_webhook_fields, rec, NULL, diff);

    rc = txcp_api_commit(r, txn, TXCP_DB_WEBHOOKS, r->id, NULL, "delete",
                         "webhook", diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_webhook_changed();

    out = txcp_webhook_output(rec);
    cJSON_AddBoolToObject(out, "deleted", 1);
    txcp_http_reply(r, 200, out);

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    txcp_webhook_rec_free(rec);
    cJSON_Delete(diff);
}


/* API form of a stored alert. */
static cJSON *
txcp_alert_output(const cJSON *a)
{
    int          i;
    const char  *s;
    cJSON       *out, *list, *d;
    const cJSON *it, *src;

    static const char *const str[] = {"id",       "time",   "scope",
                                      "scope_id", "period", "window_start",
                                      "level",    "event",  NULL};
    static const char *const dfields[] = {"webhook_id", "status",
                                          "attempts",   "last_status",
                                          "last_error", "last_attempt_at",
                                          NULL};

    out = cJSON_CreateObject();

    for (i = 0; str[i]; i++) {
        s = txcp_json_str(a, str[i]);
        cJSON_AddStringToObject(out, str[i], s ? s : "");
    }

    s = txcp_json_str(a, "spent");
    cJSON_AddItemToObject(out, "spent_usd",
                          txcp_json_money_value(
                              s ? (tx_money_t) strtoll(s, NULL, 10) : 0));

    s = txcp_json_str(a, "threshold");
    cJSON_AddItemToObject(out, "threshold_usd",
                          txcp_json_money_value(
                              s ? (tx_money_t) strtoll(s, NULL, 10) : 0));

    list = cJSON_AddArrayToObject(out, "deliveries");

    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(a, "deliveries"))
    {
        d = cJSON_CreateObject();

        for (i = 0; dfields[i]; i++) {
            src = cJSON_GetObjectItemCaseSensitive(it, dfields[i]);
            cJSON_AddItemToObject(d, dfields[i],
                                  src ? cJSON_Duplicate(src, 1)
                                      : cJSON_CreateNull());
        }

        cJSON_AddItemToArray(list, d);
    }

    return out;
}


void
txcp_api_alerts_list(txcp_req_t *r)
{
    int         rc, limit, count;
    const char *scope, *scope_id, *level, *s;
    char        next[24];
    uint64_t    seq, last;
    uint8_t     key[8];
    cJSON      *items, *a;
    MDB_txn    *txn;
    MDB_val     k, v;
    MDB_cursor *cur;

    if (txcp_http_limit(r, &limit) != 0) {
        return;
    }

    scope = txcp_http_arg(r, "scope");
    scope_id = txcp_http_arg(r, "scope_id");
    level = txcp_http_arg(r, "level");

    if (txcp_http_seq_cursor(r, &seq) != 0) {
        return;
    }

    if (txcp_api_cursor(r, TXCP_DB_ALERTS, &txn, &cur) != TX_OK) {
        return;
    }

    /* newest first: from the last key, or from just below the cursor */

    if (seq) {
        txcp_put_be64(key, seq);
        k.mv_data = key;
        k.mv_size = 8;

        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        rc = rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
                                : mdb_cursor_get(cur, &k, &v, MDB_PREV);

        while (rc == 0 && k.mv_size == 8 && txcp_get_be64(k.mv_data) >= seq) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
        }

    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    }

    items = cJSON_CreateArray();
    count = 0;
    last = 0;

    for (/* void */; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
        if (k.mv_size != 8) {
            continue;
        }

        a = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (a == NULL) {
            continue;
        }

        s = txcp_json_str(a, "scope");

        if ((scope && !(s && strcmp(s, scope) == 0))
            || (scope_id
                && !((s = txcp_json_str(a, "scope_id"))
                     && strcmp(s, scope_id) == 0))
            || (level
                && !((s = txcp_json_str(a, "level")) && strcmp(s, level) == 0)))
        {
            cJSON_Delete(a);
            continue;
        }

        if (count == limit) {
            cJSON_Delete(a);
            break;
        }

        cJSON_AddItemToArray(items, txcp_alert_output(a));
        cJSON_Delete(a);

        count++;
        last = txcp_get_be64(k.mv_data);
    }

    mdb_cursor_close(cur);
    mdb_txn_abort(txn);

    snprintf(next, sizeof(next), "%llu", (unsigned long long) last);

    txcp_http_reply(r, 200,
                    txcp_http_page(items,
                                   rc == 0 && count == limit ? next : NULL));
}

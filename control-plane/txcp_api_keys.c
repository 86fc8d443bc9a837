/*
 * torrix-cp: /api/v1/keys and the key expiry sweep.
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
#include "txcp_publish.h"
#include "txcp_store.h"


#define TXCP_KEY_PREFIX_SHOWN 14 /* "sk-torrix-" + 4 */
#define TXCP_GRACE_DEFAULT    86400
#define TXCP_GRACE_MAX        (30 * 86400)
#define TXCP_SWEEP_MAX        256


static const char *const txcp_access_enum[] = {"full", "read", NULL};


static const txcp_field_t txcp_key_fields[] =
    {{"id", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"name", TXCP_F_STR, 0, 0, 200, NULL, 0, "\"\""},
     {"status", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"key_prefix", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"project_id", TXCP_F_REF, TXCP_FF_NULLABLE, 0, 0, NULL, TXCP_DB_PROJECTS,
      NULL},
     {"user_id", TXCP_F_REF, TXCP_FF_NULLABLE, 0, 0, NULL, TXCP_DB_USERS, NULL},
     {"org_id", TXCP_F_REF, TXCP_FF_NULLABLE | TXCP_FF_CREATE, 0, 0, NULL,
      TXCP_DB_ORGS, NULL},
     {"access", TXCP_F_ENUM, 0, 0, 0, txcp_access_enum, 0, "\"full\""},
     {"allowed_models", TXCP_F_MODELS, 0, 0, 1000, NULL, 0, "\"*\""},
     {"expires_at", TXCP_F_TIME, TXCP_FF_NULLABLE, 0, 0, NULL, 0, NULL},
     {"rpm", TXCP_F_INT, TXCP_FF_NULLABLE, 0, 1000000000LL, NULL, 0, NULL},
     {"tpm", TXCP_F_INT, TXCP_FF_NULLABLE, 0, 1000000000000LL, NULL, 0, NULL},
     {"daily_cap_usd", TXCP_F_MONEY, TXCP_FF_NULLABLE, 0, 0, NULL, 0, NULL},
     {"monthly_budget_usd", TXCP_F_MONEY, TXCP_FF_NULLABLE, 0, 0, NULL, 0,
      NULL},
     {"soft_alert_pct", TXCP_F_INT, 0, 1, 100, NULL, 0, "80"},
     {"metadata", TXCP_F_STRMAP, 0, 0, 100, NULL, 0, "{}"},
     {"created_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"updated_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"rotated_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"previous_key_expires_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0,
      NULL},
     {NULL, 0, 0, 0, 0, NULL, 0, NULL}};


static const char *
txcp_key_status(const cJSON *rec, int64_t now)
{
    const char *s;
    int64_t     exp;

    s = txcp_json_str(rec, "status");

    if (s && strcmp(s, "revoked") == 0) {
        return "revoked";
    }

    exp = txcp_json_int(rec, "expires_at", 0);

    if (exp > 0 && exp <= now) {
        return "expired";
    }

    return "active";
}


static cJSON *
txcp_key_output(const cJSON *rec)
{
    cJSON  *out;
    int64_t now, na;
    char    ts[40];

    now = txcp_now_us() / 1000000;

    out = txcp_json_output(txcp_key_fields, rec);
    if (out == NULL) {
        return NULL;
    }

    txcp_json_set(out, "status", cJSON_CreateString(txcp_key_status(rec, now)));

    na = txcp_json_int(rec, "_prev_not_after", 0);

    if (txcp_json_str(rec, "_prev_hash") && na > now
        && strcmp(txcp_key_status(rec, now), "revoked") != 0)
    {
        txcp_time_format(na * 1000000, 0, ts, sizeof(ts));
        txcp_json_set(out, "previous_key_expires_at", cJSON_CreateString(ts));
    }

    return out;
}


/* New secret into `secret`; its hash hex into rec._hash; prefix too. */
static int
txcp_key_new_secret(cJSON *rec, char *secret, uint8_t *hash)
{
    char hex[2 * TX_KEY_HASH_LEN + 1], prefix[TXCP_KEY_PREFIX_SHOWN + 1];

    tx_key_generate(secret);

    if (tx_key_hash(txcp.hash_key, (const uint8_t *) secret, TX_KEY_SECRET_LEN,
                    hash)
        != TX_OK)
    {
        return TX_ERROR;
    }

    txcp_hex(hash, TX_KEY_HASH_LEN, hex);
    memcpy(prefix, secret, TXCP_KEY_PREFIX_SHOWN);
    prefix[TXCP_KEY_PREFIX_SHOWN] = '\0';

    txcp_json_set(rec, "_hash", cJSON_CreateString(hex));
    txcp_json_set(rec, "key_prefix", cJSON_CreateString(prefix));

    return TX_OK;
}


/* org_id defaults to the project's, else the user's organization. */
static void
txcp_key_default_org(MDB_txn *txn, cJSON *rec, cJSON *diff, int force)
{
    const char *id, *org;
    cJSON      *owner;

    if (!force && txcp_json_str(rec, "org_id")) {
        return;
    }

    owner = NULL;
    id = txcp_json_str(rec, "project_id");

    if (id) {
        owner = txcp_store_get(txn, TXCP_DB_PROJECTS, id);
    }

    if (txcp_json_str(owner, "org_id") == NULL) {
        cJSON_Delete(owner);
        owner = NULL;
        id = txcp_json_str(rec, "user_id");

        if (id && !force) {
            owner = txcp_store_get(txn, TXCP_DB_USERS, id);
        }
    }

    org = txcp_json_str(owner, "org_id");

    if (org) {
        if (diff && !force) {
            /* create: the diff already lists the given fields */
            txcp_audit_diff(diff, "org_id", NULL, cJSON_CreateString(org));

        } else if (diff
                   && (txcp_json_str(rec, "org_id") == NULL
                       || strcmp(txcp_json_str(rec, "org_id"), org) != 0))
        {
            txcp_audit_diff(diff, "org_id",
                            txcp_json_str(rec, "org_id") ? cJSON_CreateString(
                                txcp_json_str(rec, "org_id"))
                                                         : NULL,
                            cJSON_CreateString(org));
        }

        txcp_json_set(rec, "org_id", cJSON_CreateString(org));
    }

    cJSON_Delete(owner);
}


cJSON *
txcp_api_body(txcp_req_t *r)
{
    char   err[256];
    cJSON *body;

    body = txcp_json_parse_body(r->body, r->len, err, sizeof(err));

    if (body == NULL) {
        txcp_http_error(r, 400, "%s", err);
    }

    return body;
}


void
txcp_api_keys_create(txcp_req_t *r)
{
    int      rc;
    char     id[TX_ID_MAX_LEN], ts[40], err[256], *secret;
    uint8_t  hash[TX_KEY_HASH_LEN];
    int64_t  exp;
    cJSON   *body, *rec, *diff, *out;
    MDB_txn *txn;

    body = txcp_api_body(r);
    if (body == NULL) {
        return;
    }

    secret = NULL;
    txn = NULL;
    diff = cJSON_CreateObject();
    rec = cJSON_CreateObject();

    tx_id_generate("key_", id);
    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));

    cJSON_AddStringToObject(rec, "id", id);

    if (txcp_store_begin(0, &txn) != 0) {
        goto internal;
    }

    rc = txcp_json_apply(txcp_key_fields, body, rec, diff, 1, txn, err,
                         sizeof(err));
    if (rc != 0) {
        txcp_http_error(r, rc, "%s", err);
        goto done;
    }

    txcp_key_default_org(txn, rec, diff, 0);

    secret = sodium_malloc(TX_KEY_SECRET_LEN + 1);
    if (secret == NULL || txcp_key_new_secret(rec, secret, hash) != TX_OK) {
        goto internal;
    }

    txcp_json_set(rec, "status", cJSON_CreateString("active"));
    txcp_json_set(rec, "created_at", cJSON_CreateString(ts));
    txcp_json_set(rec, "updated_at", cJSON_CreateString(ts));
    txcp_json_set(rec, "rotated_at", cJSON_CreateNull());

    txcp_audit_diff(diff, "key_prefix", NULL,
                    cJSON_CreateString(txcp_json_str(rec, "key_prefix")));

    exp = txcp_json_int(rec, "expires_at", 0);

    if (exp > 0
        && txcp_store_timer_add(txn, exp, TXCP_TIMER_EXPIRE, id) != TX_OK) {
        goto internal;
    }

    rc = txcp_api_commit(r, txn, TXCP_DB_KEYS, id, rec, "create", "key", diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(TXCP_PUB_KEY, id);

    out = txcp_key_output(rec);
    cJSON_AddStringToObject(out, "key", secret);
    txcp_http_reply(r, 201, out);

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    if (secret) {
        sodium_memzero(secret, TX_KEY_SECRET_LEN + 1);
        sodium_free(secret);
    }

    cJSON_Delete(body);
    cJSON_Delete(rec);
    cJSON_Delete(diff);
}


static cJSON *
txcp_key_list_item(txcp_req_t *r, const cJSON *rec)
{
    const char *f, *v;

    f = txcp_http_arg(r, "project_id");
    v = txcp_json_str(rec, "project_id");

    if (f && (v == NULL || strcmp(f, v) != 0)) {
        return NULL;
    }

    f = txcp_http_arg(r, "user_id");
    v = txcp_json_str(rec, "user_id");

    if (f && (v == NULL || strcmp(f, v) != 0)) {
        return NULL;
    }

    f = txcp_http_arg(r, "status");

    if (f && strcmp(f, txcp_key_status(rec, txcp_now_us() / 1000000)) != 0) {
        return NULL;
    }

    return txcp_key_output(rec);
}


void
txcp_api_keys_list(txcp_req_t *r)
{
    const char *s;

    s = txcp_http_arg(r, "status");

    if (s && strcmp(s, "active") != 0 && strcmp(s, "revoked") != 0
        && strcmp(s, "expired") != 0)
    {
        txcp_http_error(r, 400, "status must be active, revoked or expired");
        return;
    }

    txcp_api_list(r, TXCP_DB_KEYS, txcp_key_list_item);
}


static cJSON *
txcp_key_item(txcp_req_t *r, const cJSON *rec)
{
    return txcp_key_output(rec);
}


void
txcp_api_keys_get(txcp_req_t *r)
{
    txcp_api_get(r, TXCP_DB_KEYS, "key", txcp_key_item, cJSON_Delete);
}


void
txcp_api_keys_patch(txcp_req_t *r)
{
    int      rc;
    char     ts[40], err[256];
    int64_t  old_exp, new_exp;
    cJSON   *body, *rec, *diff;
    MDB_txn *txn;

    body = txcp_api_body(r);
    if (body == NULL) {
        return;
    }

    rec = NULL;
    diff = cJSON_CreateObject();

    if (txcp_api_get_for_write(r, TXCP_DB_KEYS, "key", &txn, &rec) != TX_OK) {
        goto done;
    }

    if (strcmp(txcp_key_status(rec, 0), "revoked") == 0) {
        txcp_http_error(r, 409, "key %s is revoked", r->id);
        goto done;
    }

    old_exp = txcp_json_int(rec, "expires_at", 0);

    rc = txcp_json_apply(txcp_key_fields, body, rec, diff, 0, txn, err,
                         sizeof(err));
    if (rc != 0) {
        txcp_http_error(r, rc, "%s", err);
        goto done;
    }

    if (cJSON_GetObjectItemCaseSensitive(diff, "project_id")
        && txcp_json_str(rec, "project_id"))
    {
        txcp_key_default_org(txn, rec, diff, 1);
    }

    if (cJSON_GetArraySize(diff) == 0) {
        txcp_http_reply(r, 200, txcp_key_output(rec));
        goto done;
    }

    new_exp = txcp_json_int(rec, "expires_at", 0);

    if (new_exp != old_exp) {
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "_expire_audited");

        if ((old_exp > 0
             && txcp_store_timer_del(txn, old_exp, TXCP_TIMER_EXPIRE, r->id)
                    != TX_OK)
            || (new_exp > 0
                && txcp_store_timer_add(txn, new_exp, TXCP_TIMER_EXPIRE, r->id)
                       != TX_OK))
        {
            goto internal;
        }
    }

    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));
    txcp_json_set(rec, "updated_at", cJSON_CreateString(ts));

    rc = txcp_api_commit(r, txn, TXCP_DB_KEYS, r->id, rec, "edit", "key", diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(TXCP_PUB_KEY, r->id);

    txcp_http_reply(r, 200, txcp_key_output(rec));

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    cJSON_Delete(body);
    cJSON_Delete(rec);
    cJSON_Delete(diff);
}


void
txcp_api_keys_revoke(txcp_req_t *r)
{
    int      rc;
    char     ts[40];
    cJSON   *rec, *diff;
    MDB_txn *txn;

    rec = NULL;
    diff = cJSON_CreateObject();

    if (txcp_api_get_for_write(r, TXCP_DB_KEYS, "key", &txn, &rec) != TX_OK) {
        goto done;
    }

    if (strcmp(txcp_key_status(rec, 0), "revoked") == 0) {
        txcp_http_reply(r, 200, txcp_key_output(rec));
        goto done;
    }

    txcp_audit_diff(diff, "status",
                    cJSON_CreateString(
                        txcp_key_status(rec, txcp_now_us() / 1000000)),
                    cJSON_CreateString("revoked"));

    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));
    txcp_json_set(rec, "status", cJSON_CreateString("revoked"));
    txcp_json_set(rec, "updated_at", cJSON_CreateString(ts));

    rc = txcp_api_commit(r, txn, TXCP_DB_KEYS, r->id, rec, "revoke", "key",
                         diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(TXCP_PUB_KEY, r->id);

    txcp_http_reply(r, 200, txcp_key_output(rec));

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    cJSON_Delete(rec);
    cJSON_Delete(diff);
}


void
txcp_api_keys_rotate(txcp_req_t *r)
{
    int          rc;
    char         ts[40], *secret;
    uint8_t      hash[TX_KEY_HASH_LEN];
    int64_t      now, grace, na;
    const char  *s;
    const cJSON *m;
    cJSON       *body, *rec, *diff, *out;
    MDB_txn     *txn;
    txcp_pub_t   item;

    body = NULL;
    rec = NULL;
    txn = NULL;
    secret = NULL;
    diff = cJSON_CreateObject();
    grace = TXCP_GRACE_DEFAULT;
    /*
     * whole seconds, rounded up: the data plane compares its clock's second
     * with not_after, so the old secret works for at least grace seconds
     */
    now = (txcp_now_us() + 999999) / 1000000;

    memset(&item, 0, sizeof(item));
    item.kind = TXCP_PUB_KEY;
    snprintf(item.id, sizeof(item.id), "%s", r->id);

    if (r->len > 0) {
        body = txcp_api_body(r);
        if (body == NULL) {
            goto done;
        }

        cJSON_ArrayForEach(m, body)
        {
            if (strcmp(m->string, "grace_seconds") != 0) {
                txcp_http_error(r, 400, "unknown field '%.100s'", m->string);
                goto done;
            }

            if (!cJSON_IsNumber(m) || m->valuedouble < 0
                || m->valuedouble > TXCP_GRACE_MAX
                || m->valuedouble != (double) (int64_t) m->valuedouble)
            {
                txcp_http_error(r, 400,
                                "field 'grace_seconds' must be an integer in "
                                "0..%d",
                                TXCP_GRACE_MAX);
                goto done;
            }

            grace = (int64_t) m->valuedouble;
        }
    }

    if (txcp_api_get_for_write(r, TXCP_DB_KEYS, "key", &txn, &rec) != TX_OK) {
        goto done;
    }

    if (strcmp(txcp_key_status(rec, 0), "revoked") == 0) {
        txcp_http_error(r, 409, "key %s is revoked", r->id);
        goto done;
    }

    /* a previous secret still in its grace is replaced: drop it */

    s = txcp_json_str(rec, "_prev_hash");

    if (s && txcp_unhex(s, item.drop[item.ndrop], TX_KEY_HASH_LEN) == TX_OK) {
        item.ndrop++;
    }

    na = txcp_json_int(rec, "_prev_not_after", 0);

    if (na > 0) {
        txcp_store_timer_del(txn, na, TXCP_TIMER_GRACE, r->id);
    }

    cJSON_DeleteItemFromObjectCaseSensitive(rec, "_prev_hash");
    cJSON_DeleteItemFromObjectCaseSensitive(rec, "_prev_not_after");

    s = txcp_json_str(rec, "_hash");

    if (s == NULL) {
        goto internal;
    }

    if (grace > 0) {
        txcp_json_set(rec, "_prev_hash", cJSON_CreateString(s));
        txcp_json_set(rec, "_prev_not_after",
                      cJSON_CreateNumber((double) (now + grace)));

        if (txcp_store_timer_add(txn, now + grace, TXCP_TIMER_GRACE, r->id)
            != TX_OK) {
            goto internal;
        }

    } else if (txcp_unhex(s, item.drop[item.ndrop], TX_KEY_HASH_LEN) == TX_OK) {
        item.ndrop++;
    }

    s = txcp_json_str(rec, "key_prefix");
    out = s ? cJSON_CreateString(s) : NULL;

    secret = sodium_malloc(TX_KEY_SECRET_LEN + 1);
    if (secret == NULL || txcp_key_new_secret(rec, secret, hash) != TX_OK) {
        cJSON_Delete(out);
        goto internal;
    }

    txcp_audit_diff(diff, "key_prefix", out,
                    cJSON_CreateString(txcp_json_str(rec, "key_prefix")));

    txcp_time_format(now * 1000000, 0, ts, sizeof(ts));
    txcp_audit_diff(diff, "previous_key_expires_at", NULL,
                    grace > 0 ? cJSON_CreateString(
                        txcp_time_format((now + grace) * 1000000, 0, ts,
                                         sizeof(ts)))
                              : NULL);

    txcp_time_format(now * 1000000, 0, ts, sizeof(ts));
    txcp_json_set(rec, "rotated_at", cJSON_CreateString(ts));
    txcp_json_set(rec, "updated_at", cJSON_CreateString(ts));

    rc = txcp_api_commit(r, txn, TXCP_DB_KEYS, r->id, rec, "rotate", "key",
                         diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish(&item, 1);

    out = txcp_key_output(rec);
    cJSON_AddStringToObject(out, "key", secret);

    if (!cJSON_GetObjectItemCaseSensitive(out, "previous_key_expires_at")) {
        cJSON_AddNullToObject(out, "previous_key_expires_at");
    }

    txcp_http_reply(r, 200, out);

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    if (secret) {
        sodium_memzero(secret, TX_KEY_SECRET_LEN + 1);
        sodium_free(secret);
    }

    cJSON_Delete(body);
    cJSON_Delete(rec);
    cJSON_Delete(diff);
}


/* Handles one due timer inside txn; may add a publish item. */
static int
txcp_keys_timer(MDB_txn *txn, int64_t at, int kind, const char *id,
                txcp_pub_t *items, size_t *n)
{
    int         rc;
    const char *s;
    cJSON      *rec, *diff;
    txcp_pub_t *item;

    rec = txcp_store_get(txn, TXCP_DB_KEYS, id);
    if (rec == NULL) {
        return TX_OK;
    }

    rc = TX_OK;
    item = &items[*n];
    memset(item, 0, sizeof(txcp_pub_t));
    item->kind = TXCP_PUB_KEY;
    snprintf(item->id, sizeof(item->id), "%s", id);

    if (kind == TXCP_TIMER_EXPIRE) {
        s = txcp_json_str(rec, "status");

        if (s && strcmp(s, "active") == 0
            && txcp_json_int(rec, "expires_at", 0) == at
            && !txcp_json_bool(rec, "_expire_audited", 0))
        {
            txcp_json_set(rec, "_expire_audited", cJSON_CreateTrue());

            diff = cJSON_CreateObject();
            txcp_audit_diff(diff, "status", cJSON_CreateString("active"),
                            cJSON_CreateString("expired"));

            if (txcp_store_put(txn, TXCP_DB_KEYS, id, rec) != TX_OK
                || txcp_audit_append(txn, "system", "expire", "key", id, diff)
                       != TX_OK)
            {
                rc = TX_ERROR;
            }

            cJSON_Delete(diff);
            (*n)++;
        }

    } else if (kind == TXCP_TIMER_GRACE) {
        s = txcp_json_str(rec, "_prev_hash");

        if (s && txcp_json_int(rec, "_prev_not_after", 0) == at) {
            if (txcp_unhex(s, item->drop[0], TX_KEY_HASH_LEN) == TX_OK) {
                item->ndrop = 1;
            }

            cJSON_DeleteItemFromObjectCaseSensitive(rec, "_prev_hash");
            cJSON_DeleteItemFromObjectCaseSensitive(rec, "_prev_not_after");

            if (txcp_store_put(txn, TXCP_DB_KEYS, id, rec) != TX_OK) {
                rc = TX_ERROR;
            }

            (*n)++;
        }
    }

    cJSON_Delete(rec);

    return rc;
}


void
txcp_keys_sweep(int64_t now)
{
    int         rc;
    size_t      n, klen;
    int64_t     at;
    char        id[TX_ID_MAX_LEN + 1];
    MDB_txn    *txn;
    MDB_val     k, v;
    MDB_cursor *cur;
    txcp_pub_t  items[TXCP_SWEEP_MAX];

    n = 0;

    if (txcp_store_begin(0, &txn) != 0) {
        return;
    }

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_TIMERS], &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
         rc == 0 && n < TXCP_SWEEP_MAX;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size < 10 || k.mv_size > 9 + TX_ID_MAX_LEN) {
            mdb_cursor_del(cur, 0);
            continue;
        }

        at = (int64_t) txcp_get_be64(k.mv_data);

        if (at > now) {
            break;
        }

        klen = k.mv_size - 9;
        memcpy(id, (uint8_t *) k.mv_data + 9, klen);
        id[klen] = '\0';

        if (txcp_keys_timer(txn, at, ((uint8_t *) k.mv_data)[8], id, items, &n)
            != TX_OK)
        {
            mdb_cursor_close(cur);
            mdb_txn_abort(txn);
            return;
        }

        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(cur);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return;
    }

    if (txcp_store_commit(txn) != 0) {
        return;
    }

    if (n > 0) {
        txcp_publish(items, n);
    }
}

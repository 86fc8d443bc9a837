/*
 * torrix-cp model router rules, fallback chains and the available-models
 * list (see txcp_routing.h).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tx_record.h"
#include "tx_snapshot.h"

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_audit.h"
#include "txcp_http.h"
#include "txcp_json.h"
#include "txcp_pricing.h"
#include "txcp_publish.h"
#include "txcp_routing.h"
#include "txcp_store.h"


#define TXCP_ROUTE_NAME_MAX 256 /* pattern, target, chain entries */
#define TXCP_WEIGHT_MAX     1000000


static const txcp_field_t txcp_route_fields[] =
    {{"id", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"org_id", TXCP_F_REF, TXCP_FF_NULLABLE, 0, 0, NULL, TXCP_DB_ORGS, "null"},
     {"pattern", TXCP_F_STR, TXCP_FF_REQUIRED, 1, TXCP_ROUTE_NAME_MAX, NULL, 0,
      NULL},
     {"target", TXCP_F_STR, TXCP_FF_REQUIRED, 1, TXCP_ROUTE_NAME_MAX, NULL, 0,
      NULL},
     {"created_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"updated_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {NULL, 0, 0, 0, 0, NULL, 0, NULL}};


/* "weights" is checked by txcp_fallback_weights(): no integer-list type */
static const txcp_field_t txcp_fallback_fields[] =
    {{"model", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"chain", TXCP_F_STRLIST, TXCP_FF_REQUIRED, 1, TX_FB_MAX - 1, NULL, 0,
      NULL},
     {"created_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {"updated_at", TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL},
     {NULL, 0, 0, 0, 0, NULL, 0, NULL}};


/* the audit diff of a chain: the fields a PUT replaces */
static const txcp_field_t txcp_fallback_diff_fields[] =
    {{"chain", TXCP_F_STRLIST, 0, 0, 0, NULL, 0, NULL},
     {"weights", TXCP_F_STRLIST, 0, 0, 0, NULL, 0, NULL},
     {NULL, 0, 0, 0, 0, NULL, 0, NULL}};


/* 1 when s is 1..max bytes, none of them a space or a control byte */
static int
txcp_model_name_ok(const char *s, size_t max)
{
    size_t i;

    for (i = 0; s[i]; i++) {
        if ((unsigned char) s[i] <= 0x20 || s[i] == 0x7f) {
            return 0;
        }
    }

    return i > 0 && i <= max;
}


/* A string array as one '\n'-joined TLV field; nothing when empty. */
static void
txcp_put_lines(tx_wbuf_t *wb, uint16_t tag, const cJSON *list, int numbers)
{
    char        *s, *p;
    size_t       n;
    const cJSON *it;

    n = 1;

    cJSON_ArrayForEach(it, list)
    {
        n += numbers ? 24 : strlen(it->valuestring ? it->valuestring : "") + 1;
    }

    s = malloc(n);
    if (s == NULL) {
        wb->overflow = 1;
        return;
    }

    p = s;

    cJSON_ArrayForEach(it, list)
    {
        if (p != s) {
            *p++ = '\n';
        }

        if (numbers) {
            p += sprintf(p, "%lld", (long long) it->valuedouble);

        } else if (cJSON_IsString(it)) {
            p += sprintf(p, "%s", it->valuestring);
        }
    }

    if (p != s) {
        tx_rec_put_bytes(wb, tag, s, p - s);
    }

    free(s);
}


int
txcp_pub_route(MDB_txn *rtxn, MDB_txn *txn, const char *id)
{
    int       rc;
    uint8_t   buf[2048];
    cJSON    *rec;
    tx_wbuf_t wb;

    rec = txcp_store_get(rtxn, TXCP_DB_ROUTES, id);

    if (rec == NULL) {
        return txcp_snap_del(txn, TXCP_SDB_ROUTES, id, strlen(id));
    }

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_cstr(&wb, TX_RT_ID, id);
    tx_rec_put_cstr(&wb, TX_RT_ORG, txcp_json_str(rec, "org_id"));
    tx_rec_put_cstr(&wb, TX_RT_PATTERN, txcp_json_str(rec, "pattern"));
    tx_rec_put_cstr(&wb, TX_RT_TARGET, txcp_json_str(rec, "target"));

    cJSON_Delete(rec);

    if (wb.overflow) {
        return ENOMEM;
    }

    rc = txcp_snap_put(txn, TXCP_SDB_ROUTES, id, strlen(id), buf,
                       wb.pos - wb.start);

    return rc;
}


int
txcp_pub_fallback(MDB_txn *rtxn, MDB_txn *txn, const char *model)
{
    int          rc;
    uint8_t      buf[4096];
    cJSON       *rec;
    const cJSON *w;
    tx_wbuf_t    wb;

    rec = txcp_store_get(rtxn, TXCP_DB_FALLBACKS, model);

    if (rec == NULL) {
        return txcp_snap_del(txn, TXCP_SDB_FALLBACKS, model, strlen(model));
    }

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_cstr(&wb, TX_FB_MODEL, model);
    txcp_put_lines(&wb, TX_FB_CHAIN,
                   cJSON_GetObjectItemCaseSensitive(rec, "chain"), 0);

    w = cJSON_GetObjectItemCaseSensitive(rec, "weights");

    if (cJSON_IsArray(w)) {
        txcp_put_lines(&wb, TX_FB_WEIGHTS, w, 1);
    }

    cJSON_Delete(rec);

    if (wb.overflow) {
        return ENOMEM;
    }

    rc = txcp_snap_put(txn, TXCP_SDB_FALLBACKS, model, strlen(model), buf,
                       wb.pos - wb.start);

    return rc;
}


/* 1 when some router rule has exactly this pattern, in any scope */
static int
txcp_route_pattern_exists(MDB_txn *txn, const char *model)
{
    int         rc, found;
    cJSON      *rec;
    const char *s;
    MDB_val     k, v;
    MDB_cursor *cur;

    if (strchr(model, '*')
        || mdb_cursor_open(txn, txcp.db[TXCP_DB_ROUTES], &cur)) {
        return 0;
    }

    found = 0;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !found;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        s = txcp_json_str(rec, "pattern");
        found = s && strcmp(s, model) == 0;
        cJSON_Delete(rec);
    }

    mdb_cursor_close(cur);

    return found;
}


/*
 * The provider of a model: its price's, else the configured provider its
 * prefix names; NULL when neither.  *priced: the catalog has a price.
 */
static const char *
txcp_model_provider(MDB_txn *txn, const char *model, char *buf, size_t len,
                    int *priced)
{
    cJSON      *rec;
    tx_price_t  p;
    const char *slash;
    size_t      n;

    *priced = 0;
    rec = txcp_store_get(txn, TXCP_DB_PRICES, model);

    if (rec && txcp_pricing_effective(rec, model, &p, NULL) == TX_OK) {
        *priced = 1;

        if (p.provider.len) {
            n = p.provider.len < len ? p.provider.len : len - 1;
            memcpy(buf, p.provider.data, n);
            buf[n] = '\0';
            cJSON_Delete(rec);

            return buf;
        }
    }

    cJSON_Delete(rec);

    slash = strchr(model, '/');

    if (slash == NULL || slash == model || slash[1] == '\0'
        || (size_t) (slash - model) >= len)
    {
        return NULL;
    }

    memcpy(buf, model, slash - model);
    buf[slash - model] = '\0';

    return txcp_provider_get(txn, buf, NULL, NULL) == TX_OK ? buf : NULL;
}


int
txcp_model_known(MDB_txn *txn, const char *model)
{
    int  priced;
    char buf[TXCP_ROUTE_NAME_MAX + 1];

    if (model == NULL || *model == '\0' || strlen(model) > TXCP_ROUTE_NAME_MAX)
    {
        return 0;
    }

    if (txcp_model_provider(txn, model, buf, sizeof(buf), &priced) != NULL
        || priced)
    {
        return 1;
    }

    return txcp_store_exists(txn, TXCP_DB_FALLBACKS, model)
           || txcp_route_pattern_exists(txn, model);
}


/* --- /api/v1/routes ---------------------------------------------------- */


static cJSON *
txcp_route_output(txcp_req_t *r, const cJSON *rec)
{
    return txcp_json_output(txcp_route_fields, rec);
}


/* A list item: the rule when it is in the ?org_id= scope ("global": none) */
static cJSON *
txcp_route_item(txcp_req_t *r, const cJSON *rec)
{
    const char *want, *org;

    want = txcp_http_arg(r, "org_id");
    org = txcp_json_str(rec, "org_id");

    if (want) {
        if (*want == '\0' || strcmp(want, "global") == 0
            || strcmp(want, "null") == 0) {
            if (org) {
                return NULL;
            }

        } else if (org == NULL || strcmp(org, want) != 0) {
            return NULL;
        }
    }

    return txcp_route_output(r, rec);
}


/*
 * What the field table does not check: the pattern and target syntax, a
 * target the instance can route, and one rule per scope and pattern.
 * Returns 0, or the HTTP status with a message in err.
 */
static int
txcp_route_check(MDB_txn *txn, const char *id, const cJSON *rec,
                 int target_changed, char *err, size_t errlen)
{
    int         rc, dup;
    char        other[TX_ID_MAX_LEN + 1];
    cJSON      *o;
    const char *pattern, *target, *org, *s;
    MDB_val     k, v;
    MDB_cursor *cur;

    pattern = txcp_json_str(rec, "pattern");
    target = txcp_json_str(rec, "target");
    org = txcp_json_str(rec, "org_id");

    if (pattern == NULL || !txcp_model_name_ok(pattern, TXCP_ROUTE_NAME_MAX)) {
        snprintf(err, errlen,
                 "field 'pattern' must be 1..%d printable characters without "
                 "spaces ('*' is the wildcard)",
                 TXCP_ROUTE_NAME_MAX);
        return 400;
    }

    if (target == NULL || !txcp_model_name_ok(target, TXCP_ROUTE_NAME_MAX)
        || strchr(target, '*'))
    {
        snprintf(err, errlen,
                 "field 'target' must be a model name: 1..%d printable "
                 "characters without spaces or '*'",
                 TXCP_ROUTE_NAME_MAX);
        return 400;
    }

    if (strcmp(pattern, target) == 0) {
        snprintf(err, errlen, "a rule must not route a model to itself");
        return 400;
    }

    if (target_changed && !txcp_model_known(txn, target)) {
        snprintf(err, errlen, "unknown model '%s'", target);
        return 400;
    }

    if (mdb_cursor_open(txn, txcp.db[TXCP_DB_ROUTES], &cur) != 0) {
        snprintf(err, errlen, "internal error");
        return 500;
    }

    dup = 0;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !dup;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size == strlen(id) && memcmp(k.mv_data, id, k.mv_size) == 0) {
            continue;
        }

        o = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        s = txcp_json_str(o, "pattern");

        if (s && strcmp(s, pattern) == 0) {
            s = txcp_json_str(o, "org_id");
            dup =
                (s == NULL && org == NULL) || (s && org && strcmp(s, org) == 0);

            if (dup) {
                snprintf(other, sizeof(other), "%.*s",
                         (int) (k.mv_size < TX_ID_MAX_LEN ? k.mv_size
                                                          : TX_ID_MAX_LEN),
                         (char *) k.mv_data);
            }
        }

        cJSON_Delete(o);
    }

    mdb_cursor_close(cur);

    if (dup) {
        snprintf(err, errlen, "rule %s already routes pattern '%s' %s%s", other,
                 pattern, org ? "for org " : "globally", org ? org : "");
        return 409;
    }

    return 0;
}


void
txcp_api_routes_create(txcp_req_t *r)
{
    int      rc;
    char     id[TX_ID_MAX_LEN], ts[40], err[512];
    cJSON   *body, *rec, *diff;
    MDB_txn *txn;

    body = txcp_api_body(r);
    if (body == NULL) {
        return;
    }

    txn = NULL;
    diff = cJSON_CreateObject();
    rec = cJSON_CreateObject();

    tx_id_generate("rt_", id);
    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));
    cJSON_AddStringToObject(rec, "id", id);

    if (txcp_store_begin(0, &txn) != 0) {
        txn = NULL;
        goto internal;
    }

    rc = txcp_json_apply(txcp_route_fields, body, rec, diff, 1, txn, err,
                         sizeof(err));
    if (rc == 0) {
        rc = txcp_route_check(txn, id, rec, 1, err, sizeof(err));
    }

    if (rc != 0) {
        txcp_http_error(r, rc, "%s", err);
        goto done;
    }

    txcp_json_set(rec, "created_at", cJSON_CreateString(ts));
    txcp_json_set(rec, "updated_at", cJSON_CreateString(ts));

    rc = txcp_api_commit(r, txn, TXCP_DB_ROUTES, id, rec, "route.create",
                         "route", diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(TXCP_PUB_ROUTE, id);

    txcp_http_reply(r, 201, txcp_route_output(r, rec));

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
txcp_api_routes_list(txcp_req_t *r)
{
    txcp_api_list(r, TXCP_DB_ROUTES, txcp_route_item);
}


void
txcp_api_routes_get(txcp_req_t *r)
{
    txcp_api_get(r, TXCP_DB_ROUTES, "route", txcp_route_output, cJSON_Delete);
}


void
txcp_api_routes_patch(txcp_req_t *r)
{
    int      rc;
    char     ts[40], err[512];
    cJSON   *body, *rec, *diff;
    MDB_txn *txn;

    body = txcp_api_body(r);
    if (body == NULL) {
        return;
    }

    rec = NULL;
    diff = cJSON_CreateObject();

    if (txcp_api_get_for_write(r, TXCP_DB_ROUTES, "route", &txn, &rec) != TX_OK)
    {
        goto done;
    }

    rc = txcp_json_apply(txcp_route_fields, body, rec, diff, 0, txn, err,
                         sizeof(err));
    if (rc == 0) {
        rc = txcp_route_check(txn, r->id, rec,
                              cJSON_HasObjectItem(diff, "target"), err,
                              sizeof(err));
    }

    if (rc != 0) {
        txcp_http_error(r, rc, "%s", err);
        goto done;
    }

    if (cJSON_GetArraySize(diff) == 0) {
        txcp_http_reply(r, 200, txcp_route_output(r, rec));
        goto done;
    }

    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));
    txcp_json_set(rec, "updated_at", cJSON_CreateString(ts));

    rc = txcp_api_commit(r, txn, TXCP_DB_ROUTES, r->id, rec, "route.update",
                         "route", diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(TXCP_PUB_ROUTE, r->id);

    txcp_http_reply(r, 200, txcp_route_output(r, rec));

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
txcp_api_routes_delete(txcp_req_t *r)
{
    int      rc;
    cJSON   *rec, *diff, *out;
    MDB_txn *txn;

    rec = NULL;
    diff = cJSON_CreateObject();

    if (txcp_api_get_for_write(r, TXCP_DB_ROUTES, "route", &txn, &rec) != TX_OK)
    {
        goto done;
    }

    txcp_json_diff(txcp_route_fields, rec, NULL, diff);

    rc = txcp_api_commit(r, txn, TXCP_DB_ROUTES, r->id, NULL, "route.delete",
                         "route", diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(TXCP_PUB_ROUTE, r->id);

    out = txcp_route_output(r, rec);
    cJSON_AddBoolToObject(out, "deleted", 1);
    txcp_http_reply(r, 200, out);

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


/* --- /api/v1/fallbacks ------------------------------------------------- */


static cJSON *
txcp_fallback_output(txcp_req_t *r, const cJSON *rec)
{
    cJSON       *out;
    const cJSON *w;

    out = txcp_json_output(txcp_fallback_fields, rec);

    if (out) {
        w = cJSON_GetObjectItemCaseSensitive(rec, "weights");
        cJSON_AddItemToObject(out, "weights",
                              cJSON_IsArray(w) ? cJSON_Duplicate(w, 1)
                                               : cJSON_CreateNull());
    }

    return out;
}


/* Checks "weights" (null, or 1 + chain length integers, not all zero). */
static int
txcp_fallback_weights(const cJSON *w, int nchain, char *err, size_t errlen)
{
    int          n, nonzero;
    const cJSON *it;

    if (w == NULL || cJSON_IsNull(w)) {
        return 0;
    }

    if (!cJSON_IsArray(w) || cJSON_GetArraySize(w) != nchain + 1) {
        snprintf(err, errlen,
                 "field 'weights' must be null or an array of %d integers: "
                 "the primary's weight, then one per chain entry",
                 nchain + 1);
        return 400;
    }

    n = 0;
    nonzero = 0;

    cJSON_ArrayForEach(it, w)
    {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0
            || it->valuedouble > TXCP_WEIGHT_MAX
            || it->valuedouble != (double) (int64_t) it->valuedouble)
        {
            snprintf(err, errlen,
                     "field 'weights' entry %d must be an integer in 0..%d", n,
                     TXCP_WEIGHT_MAX);
            return 400;
        }

        nonzero |= it->valuedouble > 0;
        n++;
    }

    if (!nonzero) {
        snprintf(err, errlen, "field 'weights' must not be all zero");
        return 400;
    }

    return 0;
}


/* The chain's entries: routable models, no '*', not the primary, unique. */
static int
txcp_fallback_chain(MDB_txn *txn, const char *primary, const cJSON *chain,
                    char *err, size_t errlen)
{
    const cJSON *it, *dup;
    const char  *m;

    cJSON_ArrayForEach(it, chain)
    {
        m = it->valuestring;

        if (!txcp_model_name_ok(m, TXCP_ROUTE_NAME_MAX) || strchr(m, '*')) {
            snprintf(err, errlen,
                     "field 'chain' entries must be model names: 1..%d "
                     "printable characters without spaces or '*'",
                     TXCP_ROUTE_NAME_MAX);
            return 400;
        }

        if (strcmp(m, primary) == 0) {
            snprintf(err, errlen,
                     "field 'chain' must not hold the primary "
                     "model itself");
            return 400;
        }

        for (dup = chain->child; dup != it; dup = dup->next) {
            if (strcmp(dup->valuestring, m) == 0) {
                snprintf(err, errlen, "field 'chain' has a duplicate: '%s'", m);
                return 400;
            }
        }

        if (!txcp_model_known(txn, m)) {
            snprintf(err, errlen, "unknown model '%s'", m);
            return 400;
        }
    }

    return 0;
}


static int
txcp_fallback_primary_ok(txcp_req_t *r)
{
    if (!txcp_model_name_ok(r->id, TXCP_MODEL_MAX) || strchr(r->id, '*')) {
        txcp_http_error(r, 400,
                        "the primary must be an exact model name: 1..%d "
                        "printable characters without spaces or '*'",
                        TXCP_MODEL_MAX);
        return 0;
    }

    return 1;
}


void
txcp_api_fallbacks_list(txcp_req_t *r)
{
    txcp_api_list(r, TXCP_DB_FALLBACKS, txcp_fallback_output);
}


void
txcp_api_fallbacks_get(txcp_req_t *r)
{
    if (!txcp_model_name_ok(r->id, TXCP_MODEL_MAX)) {
        txcp_http_error(r, 404, "no fallback chain for %.127s", r->id);
        return;
    }

    txcp_api_get(r, TXCP_DB_FALLBACKS, "fallback chain for",
                 txcp_fallback_output, cJSON_Delete);
}


void
txcp_api_fallbacks_put(txcp_req_t *r)
{
    int      rc;
    char     ts[40], err[512];
    cJSON   *body, *rec, *old, *diff, *w;
    MDB_txn *txn;

    if (!txcp_fallback_primary_ok(r)) {
        return;
    }

    body = txcp_api_body(r);
    if (body == NULL) {
        return;
    }

    txn = NULL;
    old = NULL;
    diff = cJSON_CreateObject();
    rec = cJSON_CreateObject();
    w = cJSON_DetachItemFromObjectCaseSensitive(body, "weights");

    if (txcp_store_begin(0, &txn) != 0) {
        txn = NULL;
        goto internal;
    }

    rc = txcp_json_apply(txcp_fallback_fields, body, rec, NULL, 1, txn, err,
                         sizeof(err));
    if (rc == 0) {
        rc = txcp_fallback_weights(
            w,
            cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(rec, "chain")),
            err, sizeof(err));
    }

    if (rc == 0) {
        rc = txcp_fallback_chain(txn, r->id,
                                 cJSON_GetObjectItemCaseSensitive(rec, "chain"),
                                 err, sizeof(err));
    }

    if (rc != 0) {
        txcp_http_error(r, rc, "%s", err);
        goto done;
    }

    cJSON_AddItemToObject(rec, "weights",
                          cJSON_IsArray(w) ? cJSON_Duplicate(w, 1)
                                           : cJSON_CreateNull());

    old = txcp_store_get(txn, TXCP_DB_FALLBACKS, r->id);

    txcp_json_diff(txcp_fallback_diff_fields, old, rec, diff);

    if (old && cJSON_GetArraySize(diff) == 0) {
        txcp_http_reply(r, 200, txcp_fallback_output(r, old));
        goto done;
    }

    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));

    cJSON_AddStringToObject(rec, "model", r->id);
    cJSON_AddStringToObject(rec, "created_at",
                            old && txcp_json_str(old, "created_at")
                                ? txcp_json_str(old, "created_at")
                                : ts);
    cJSON_AddStringToObject(rec, "updated_at", ts);

    rc = txcp_api_commit(r, txn, TXCP_DB_FALLBACKS, r->id, rec,
                         old ? "fallback.update" : "fallback.create",
                         "fallback", diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(TXCP_PUB_FALLBACK, r->id);

    txcp_http_reply(r, old ? 200 : 201, txcp_fallback_output(r, rec));

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    cJSON_Delete(w);
    cJSON_Delete(body);
    cJSON_Delete(rec);
    cJSON_Delete(old);
    cJSON_Delete(diff);
}


void
txcp_api_fallbacks_delete(txcp_req_t *r)
{
    int      rc;
    cJSON   *rec, *diff, *out;
    MDB_txn *txn;

    rec = NULL;
    diff = cJSON_CreateObject();

    if (!txcp_model_name_ok(r->id, TXCP_MODEL_MAX)) {
        txcp_http_error(r, 404, "no fallback chain for %.127s", r->id);
        goto done;
    }

    if (txcp_api_get_for_write(r, TXCP_DB_FALLBACKS, "fallback chain for", &txn,
                               &rec)
        != TX_OK)
    {
        goto done;
    }

    txcp_json_diff(txcp_fallback_diff_fields, rec, NULL, diff);

    rc = txcp_api_commit(r, txn, TXCP_DB_FALLBACKS, r->id, NULL,
                         "fallback.delete", "fallback", diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(TXCP_PUB_FALLBACK, r->id);

    out = txcp_fallback_output(r, rec);
    cJSON_AddBoolToObject(out, "deleted", 1);
    txcp_http_reply(r, 200, out);

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    cJSON_Delete(rec);
    cJSON_Delete(diff);
}


/* --- /api/v1/models ---------------------------------------------------- */


/* One entry of the list, by sort key: id, or "id <scope>" for an alias. */
typedef struct {
    char  *key;
    cJSON *item;
} txcp_model_ent_t;


typedef struct {
    txcp_model_ent_t *ents;
    size_t            n;
    size_t            cap;
    const char       *provider; /* ?provider= */
} txcp_models_t;


static int
txcp_model_ent_cmp(const void *a, const void *b)
{
    return strcmp(((const txcp_model_ent_t *) a)->key,
                  ((const txcp_model_ent_t *) b)->key);
}


/* Adds item (owned from then on) under key; TX_OK or TX_ERROR. */
static int
txcp_models_add(txcp_models_t *ms, const char *id, const char *scope,
                cJSON *item)
{
    size_t            n;
    txcp_model_ent_t *e;

    if (item == NULL) {
        return TX_ERROR;
    }

    if (ms->provider) {
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(item, "provider"))
            || strcmp(txcp_json_str(item, "provider"), ms->provider) != 0)
        {
            cJSON_Delete(item);
            return TX_OK;
        }
    }

    if (ms->n == ms->cap) {
        ms->cap = ms->cap ? ms->cap * 2 : 256;
        e = realloc(ms->ents, ms->cap * sizeof(txcp_model_ent_t));

        if (e == NULL) {
            cJSON_Delete(item);
            return TX_ERROR;
        }

        ms->ents = e;
    }

    n = strlen(id) + (scope ? strlen(scope) + 1 : 0) + 1;
    e = &ms->ents[ms->n];
    e->key = malloc(n);

    if (e->key == NULL) {
        cJSON_Delete(item);
        return TX_ERROR;
    }

    snprintf(e->key, n, "%s%s%s", id, scope ? " " : "", scope ? scope : "");
    e->item = item;
    ms->n++;

    return TX_OK;
}


/* "fallbacks": [...] of model, when it is a primary */
static void
txcp_models_chain(MDB_txn *txn, cJSON *item, const char *model)
{
    cJSON *fb;

    fb = txcp_store_get(txn, TXCP_DB_FALLBACKS, model);

    if (fb) {
        cJSON_AddItemToObject(
            item, "fallbacks",
            cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(fb, "chain"), 1));
        cJSON_Delete(fb);
    }
}


static int
txcp_models_collect(MDB_txn *txn, txcp_models_t *ms)
{
    int         rc, priced;
    char        pbuf[128], *model;
    cJSON      *rec, *item;
    const char *s, *target, *org, *prov;
    MDB_val     k, v;
    MDB_cursor *cur;
    tx_price_t  p;

    /* the catalog */

    if (mdb_cursor_open(txn, txcp.db[TXCP_DB_PRICES], &cur) != 0) {
        return TX_ERROR;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        s = txcp_json_str(rec, "model");

        if (s == NULL || txcp_pricing_effective(rec, s, &p, NULL) != TX_OK) {
            cJSON_Delete(rec);
            continue;
        }

        item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "id", s);

        if (p.provider.len) {
            snprintf(pbuf, sizeof(pbuf), "%.*s", (int) p.provider.len,
                     (const char *) p.provider.data);
            prov = pbuf;

        } else {
            prov = txcp_model_provider(txn, s, pbuf, sizeof(pbuf), &priced);
        }

        cJSON_AddItemToObject(item, "provider",
                              prov ? cJSON_CreateString(prov)
                                   : cJSON_CreateNull());

        cJSON_AddItemToObject(item, "input_per_mtok_usd",
                              txcp_json_money_value(p.free ? 0 : p.in));
        cJSON_AddItemToObject(item, "output_per_mtok_usd",
                              txcp_json_money_value(p.free ? 0 : p.out));
        cJSON_AddBoolToObject(item, "free", p.free);
        txcp_models_chain(txn, item, s);

        rc = txcp_models_add(ms, s, NULL, item);
        cJSON_Delete(rec);

        if (rc != TX_OK) {
            mdb_cursor_close(cur);
            return TX_ERROR;
        }
    }

    mdb_cursor_close(cur);

    /* router aliases: rules without a wildcard */

    if (mdb_cursor_open(txn, txcp.db[TXCP_DB_ROUTES], &cur) != 0) {
        return TX_ERROR;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        s = txcp_json_str(rec, "pattern");
        target = txcp_json_str(rec, "target");
        org = txcp_json_str(rec, "org_id");

        if (s == NULL || target == NULL || strchr(s, '*')) {
            cJSON_Delete(rec);
            continue;
        }

        item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "id", s);
        cJSON_AddStringToObject(item, "alias_of", target);
        cJSON_AddStringToObject(item, "scope", org ? org : "global");

        prov = txcp_model_provider(txn, target, pbuf, sizeof(pbuf), &priced);

        if (prov) {
            cJSON_AddStringToObject(item, "provider", prov);
        }

        txcp_models_chain(txn, item, s);

        rc = txcp_models_add(ms, s, org ? org : "global", item);
        cJSON_Delete(rec);

        if (rc != TX_OK) {
            mdb_cursor_close(cur);
            return TX_ERROR;
        }
    }

    mdb_cursor_close(cur);

    /* fallback primaries that are neither in the catalog nor aliases */

    if (mdb_cursor_open(txn, txcp.db[TXCP_DB_FALLBACKS], &cur) != 0) {
        return TX_ERROR;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        model = strndup(k.mv_data, k.mv_size);

        if (model == NULL) {
            mdb_cursor_close(cur);
            return TX_ERROR;
        }

        prov = txcp_model_provider(txn, model, pbuf, sizeof(pbuf), &priced);

        if (priced || txcp_route_pattern_exists(txn, model)) {
            free(model);
            continue;
        }

        item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "id", model);

        if (prov) {
            cJSON_AddStringToObject(item, "provider", prov);
        }

        txcp_models_chain(txn, item, model);

        rc = txcp_models_add(ms, model, NULL, item);
        free(model);

        if (rc != TX_OK) {
            mdb_cursor_close(cur);
            return TX_ERROR;
        }
    }

    mdb_cursor_close(cur);

    return TX_OK;
}


void
txcp_api_models(txcp_req_t *r)
{
    int           limit, rc;
    size_t        i, count;
    const char   *cursor, *last;
    cJSON        *items;
    MDB_txn      *txn;
    txcp_models_t ms;

    if (txcp_http_limit(r, &limit) != 0) {
        return;
    }

    cursor = txcp_http_arg(r, "cursor");

    if (cursor && *cursor == '\0') {
        txcp_http_error(r, 400, "bad cursor");
        return;
    }

    memset(&ms, 0, sizeof(ms));
    ms.provider = txcp_http_arg(r, "provider");

    if (ms.provider && *ms.provider == '\0') {
        ms.provider = NULL;
    }

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    rc = txcp_models_collect(txn, &ms);
    mdb_txn_abort(txn);

    if (rc != TX_OK) {
        txcp_http_error(r, 500, "internal error");
        goto done;
    }

    if (ms.n > 1) {
        qsort(ms.ents, ms.n, sizeof(txcp_model_ent_t), txcp_model_ent_cmp);
    }

    items = cJSON_CreateArray();
    count = 0;
    last = NULL;

    for (i = 0; i < ms.n; i++) {
        if (cursor && strcmp(ms.ents[i].key, cursor) <= 0) {
            continue;
        }

        if (count == (size_t) limit) {
            break;
        }

        cJSON_AddItemToArray(items, ms.ents[i].item);
        ms.ents[i].item = NULL;
        last = ms.ents[i].key;
        count++;
    }

    txcp_http_reply(r, 200, txcp_http_page(items, i < ms.n ? last : NULL));

done:

    for (i = 0; i < ms.n; i++) {
        free(ms.ents[i].key);
        cJSON_Delete(ms.ents[i].item);
    }

    free(ms.ents);
}

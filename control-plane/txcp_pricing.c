/*
 * torrix-cp pricing catalog (see txcp_pricing.h): store layers, the
 * shipped defaults, LiteLLM import, /api/v1/pricing and the CLI.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_audit.h"
#include "txcp_http.h"
#include "txcp_json.h"
#include "txcp_pricing.h"
#include "txcp_publish.h"
#include "txcp_store.h"


#define TXCP_IMPORT_MAX_ERRORS 100
#define TXCP_IMPORT_FILE_MAX   (64 * 1024 * 1024)

#define TXCP_PRICE_MONEY(name)                                                 \
    {                                                                          \
        name, TXCP_F_MONEY, TXCP_FF_NULLABLE, 0, 0, NULL, 0, NULL              \
    }


static const txcp_field_t txcp_price_fields[] =
    {TXCP_PRICE_MONEY("input_per_mtok_usd"),
     TXCP_PRICE_MONEY("output_per_mtok_usd"),
     TXCP_PRICE_MONEY("cache_read_per_mtok_usd"),
     TXCP_PRICE_MONEY("cache_write_per_mtok_usd"),
     {"tier_threshold", TXCP_F_INT, TXCP_FF_NULLABLE, 0, 1000000000000LL, NULL,
      0, NULL},
     TXCP_PRICE_MONEY("input_above_per_mtok_usd"),
     TXCP_PRICE_MONEY("output_above_per_mtok_usd"),
     TXCP_PRICE_MONEY("cache_read_above_per_mtok_usd"),
     TXCP_PRICE_MONEY("cache_write_above_per_mtok_usd"),
     {"provider", TXCP_F_STR, 0, 0, 64, NULL, 0, NULL},
     {"free", TXCP_F_BOOL, 0, 0, 0, NULL, 0, "false"},
     {NULL, 0, 0, 0, 0, NULL, 0, NULL}};


/* layer names by precedence, highest first, and their TX_PRICE_SRC_* */
static const char *const txcp_layers[] = {"custom", "catalog", "default"};
static const uint64_t    txcp_layer_src[] = {TX_PRICE_SRC_CUSTOM,
                                             TX_PRICE_SRC_CATALOG,
                                             TX_PRICE_SRC_DEFAULT};


static int
txcp_model_ok(const char *m)
{
    size_t i;

    for (i = 0; m[i]; i++) {
        if ((unsigned char) m[i] <= 0x20 || m[i] == 0x7f) {
            return 0;
        }
    }

    return i > 0 && i <= TXCP_MODEL_MAX;
}


static int
txcp_model_free(const char *model, const char *provider)
{
    return strncmp(model, "ollama/", 7) == 0
           || (provider
               && (strcmp(provider, "ollama") == 0
                   || strcmp(provider, "ollama_chat") == 0));
}


static int
txcp_has(const cJSON *o, const char *name)
{
    const cJSON *v;

    v = cJSON_GetObjectItemCaseSensitive(o, name);

    return v && !cJSON_IsNull(v);
}


static tx_money_t
txcp_opt_money(const cJSON *l, const char *name)
{
    return txcp_has(l, name) ? txcp_json_money(l, name) : -1;
}


int
txcp_pricing_effective(const cJSON *rec, const char *model, tx_price_t *p,
                       const char **source)
{
    int          i;
    const char  *prov;
    const cJSON *l;

    l = NULL;

    for (i = 0; i < 3; i++) {
        l = cJSON_GetObjectItemCaseSensitive(rec, txcp_layers[i]);

        if (cJSON_IsObject(l)) {
            break;
        }
    }

    if (i == 3) {
        return TX_DECLINED;
    }

    memset(p, 0, sizeof(tx_price_t));

    p->in = txcp_json_money(l, "input_per_mtok_usd");
    p->out = txcp_json_money(l, "output_per_mtok_usd");
    p->cache_read = txcp_opt_money(l, "cache_read_per_mtok_usd");
    p->cache_write = txcp_opt_money(l, "cache_write_per_mtok_usd");
    p->tier = (uint64_t) txcp_json_int(l, "tier_threshold", 0);
    p->in_above = txcp_json_money(l, "input_above_per_mtok_usd");
    p->out_above = txcp_json_money(l, "output_above_per_mtok_usd");
    p->cache_read_above = txcp_opt_money(l, "cache_read_above_per_mtok_usd");
    p->cache_write_above = txcp_opt_money(l, "cache_write_above_per_mtok_usd");
    p->source = txcp_layer_src[i];

    prov = txcp_json_str(l, "provider");

    if (prov) {
        p->provider.data = (const uint8_t *) prov;
        p->provider.len = strlen(prov);
    }

    p->free = txcp_json_bool(l, "free", 0) || txcp_model_free(model, prov);

    if (p->tier == 0) {
        p->in_above = 0;
        p->out_above = 0;
        p->cache_read_above = -1;
        p->cache_write_above = -1;
    }

    if (source) {
        *source = txcp_layers[i];
    }

    return TX_OK;
}


/* API form of a model: the effective price, its source and every layer */
static cJSON *
txcp_price_output(const cJSON *rec, const char *model)
{
    int          i;
    const char  *src;
    const cJSON *l, *u;
    cJSON       *out, *lo, *layers, *it;
    tx_price_t   p;

    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "model", model);

    src = NULL;
    l = NULL;

    for (i = 0; i < 3; i++) {
        l = cJSON_GetObjectItemCaseSensitive(rec, txcp_layers[i]);

        if (cJSON_IsObject(l)) {
            src = txcp_layers[i];
            break;
        }
    }

    lo = txcp_json_output(txcp_price_fields, src ? l : NULL);

    if (txcp_pricing_effective(rec, model, &p, NULL) == TX_OK && p.free) {
        txcp_json_set(lo, "free", cJSON_CreateTrue());

    } else if (src == NULL && txcp_model_free(model, NULL)) {
        txcp_json_set(lo, "free", cJSON_CreateTrue());
        txcp_json_set(lo, "provider", cJSON_CreateString("ollama"));
        src = "builtin";
    }

    while (lo->child) {
        it = cJSON_DetachItemViaPointer(lo, lo->child);
        cJSON_AddItemToObject(out, it->string, it);
    }

    cJSON_Delete(lo);

    cJSON_AddStringToObject(out, "source", src ? src : "none");

    layers = cJSON_AddObjectToObject(out, "layers");

    for (i = 0; i < 3; i++) {
        l = cJSON_GetObjectItemCaseSensitive(rec, txcp_layers[i]);

        if (cJSON_IsObject(l)) {
            cJSON_AddItemToObject(layers, txcp_layers[i],
                                  txcp_json_output(txcp_price_fields, l));
        }
    }

    u = cJSON_GetObjectItemCaseSensitive(rec, "updated_at");

    if (cJSON_IsString(u)) {
        cJSON_AddStringToObject(out, "updated_at", u->valuestring);
    }

    return out;
}


static void
txcp_layer_money(cJSON *l, const char *name, tx_money_t m)
{
    char buf[32];

    if (m < 0) {
        return;
    }

    snprintf(buf, sizeof(buf), "%lld", (long long) m);
    cJSON_AddStringToObject(l, name, buf);
}


static cJSON *
txcp_layer_from_default(const txcp_price_default_t *d)
{
    cJSON *l;

    l = cJSON_CreateObject();

    txcp_layer_money(l, "input_per_mtok_usd", d->in);
    txcp_layer_money(l, "output_per_mtok_usd", d->out);
    txcp_layer_money(l, "cache_read_per_mtok_usd", d->cache_read);
    txcp_layer_money(l, "cache_write_per_mtok_usd", d->cache_write);

    if (d->tier) {
        cJSON_AddNumberToObject(l, "tier_threshold", (double) d->tier);
        txcp_layer_money(l, "input_above_per_mtok_usd", d->in_above);
        txcp_layer_money(l, "output_above_per_mtok_usd", d->out_above);
        txcp_layer_money(l, "cache_read_above_per_mtok_usd",
                         d->cache_read_above);
        txcp_layer_money(l, "cache_write_above_per_mtok_usd",
                         d->cache_write_above);
    }

    cJSON_AddStringToObject(l, "provider", d->provider);
    cJSON_AddBoolToObject(l, "free", 0);

    return l;
}


/*
 * Sets layer `name` of the record of `model` to `layer` (taken; NULL
 * removes it).  Deletes the record when no layer is left.  Returns 1 when
 * the record changed, 0 when not, -1 on error.
 */
static int
txcp_price_set_layer(MDB_txn *txn, const char *model, const char *name,
                     cJSON *layer, const char *now)
{
    int          i, rc;
    cJSON       *rec;
    const cJSON *old;

    rec = txcp_store_get(txn, TXCP_DB_PRICES, model);
    old = cJSON_GetObjectItemCaseSensitive(rec, name);

    if ((layer == NULL && old == NULL)
        || (layer && old && cJSON_Compare(layer, old, 1)))
    {
        cJSON_Delete(layer);
        cJSON_Delete(rec);
        return 0;
    }

    if (rec == NULL) {
        rec = cJSON_CreateObject();
        cJSON_AddStringToObject(rec, "model", model);
    }

    if (layer) {
        txcp_json_set(rec, name, layer);

    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(rec, name);
    }

    txcp_json_set(rec, "updated_at", cJSON_CreateString(now));

    for (i = 0; i < 3; i++) {
        if (cJSON_GetObjectItemCaseSensitive(rec, txcp_layers[i])) {
            break;
        }
    }

    if (i == 3) {
        rc = txcp_store_del(txn, TXCP_DB_PRICES, model) == TX_ERROR ? -1 : 1;

    } else {
        rc = txcp_store_put(txn, TXCP_DB_PRICES, model, rec) == TX_OK ? 1 : -1;
    }

    cJSON_Delete(rec);

    return rc;
}


int
txcp_pricing_init(void)
{
    int    rc, n, found;
    size_t i, ndrop;
    char   now[40], model[TXCP_MODEL_MAX + 1];
    char(*drop)[TXCP_MODEL_MAX + 1], (*p)[TXCP_MODEL_MAX + 1];
    cJSON                      *diff;
    MDB_txn                    *txn;
    MDB_val                     k, v;
    MDB_cursor                 *cur;
    const txcp_price_default_t *d;

    txcp_time_format(txcp_now_us(), 0, now, sizeof(now));

    if (txcp_store_begin(0, &txn) != 0) {
        return TX_ERROR;
    }

    n = 0;

    for (d = txcp_prices_default; d->model; d++) {
        rc = txcp_price_set_layer(txn, d->model, "default",
                                  txcp_layer_from_default(d), now);
        if (rc < 0) {
            goto failed;
        }

        n += rc;
    }

    /* models dropped from the table lose their default layer */

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_PRICES], &cur);
    if (rc != 0) {
        goto failed;
    }

    drop = NULL;
    ndrop = 0;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size == 0 || k.mv_size > TXCP_MODEL_MAX
            || memmem(v.mv_data, v.mv_size, "\"default\":", 10) == NULL)
        {
            continue;
        }

        memcpy(model, k.mv_data, k.mv_size);
        model[k.mv_size] = '\0';
        found = 0;

        for (d = txcp_prices_default; d->model; d++) {
            if (strcmp(d->model, model) == 0) {
                found = 1;
                break;
            }
        }

        if (found) {
            continue;
        }

        p = realloc(drop, (ndrop + 1) * sizeof(*drop));
        if (p == NULL) {
            break;
        }

        drop = p;
        memcpy(drop[ndrop++], model, sizeof(model));
    }

    mdb_cursor_close(cur);

    for (i = 0; i < ndrop; i++) {
        if (txcp_price_set_layer(txn, drop[i], "default", NULL, now) < 0) {
            free(drop);
            goto failed;
        }

        n++;
    }

    free(drop);

    if (n > 0) {
        diff = cJSON_CreateObject();
        txcp_audit_diff(diff, "default_models", NULL, cJSON_CreateNumber(n));

        rc = txcp_audit_append(txn, "system", "sync", "pricing", "default",
                               diff);
        cJSON_Delete(diff);

        if (rc != TX_OK) {
            goto failed;
        }

        txcp_log(TXCP_LOG_INFO, "default prices synced", "models=%d", n);
    }

    return txcp_store_commit(txn) == 0 ? TX_OK : TX_ERROR;

failed:

    mdb_txn_abort(txn);
    txcp_log(TXCP_LOG_ERROR, "default prices sync failed", NULL);

    return TX_ERROR;
}


/* A LiteLLM per-token price (JSON number) into money per 1M tokens. */
static int
txcp_import_money(const cJSON *v, tx_money_t *out)
{
    int   rc;
    char *s;

    if (!cJSON_IsNumber(v) || v->valuedouble < 0) {
        return TX_ERROR;
    }

    s = cJSON_PrintUnformatted(v);
    if (s == NULL) {
        return TX_ERROR;
    }

    rc = tx_price_from_per_token(s, strlen(s), out);
    free(s);

    return rc == TX_OK && *out >= 0 ? TX_OK : TX_ERROR;
}


/*
 * Finds the tier of a LiteLLM entry: the smallest N of the
 * "input_cost_per_token_above_<N>k_tokens" / "output_..." keys (0: none).
 */
static uint64_t
txcp_import_tier(const cJSON *e)
{
    const cJSON *m;
    const char  *s, *p;
    char        *end;
    uint64_t     n, best;

    best = 0;

    cJSON_ArrayForEach(m, e)
    {
        s = m->string;

        if (strncmp(s, "input_cost_per_token_above_", 27) == 0) {
            p = s + 27;

        } else if (strncmp(s, "output_cost_per_token_above_", 28) == 0) {
            p = s + 28;

        } else {
            continue;
        }

        if (*p < '1' || *p > '9') {
            continue;
        }

        n = strtoull(p, &end, 10);

        if (strcmp(end, "k_tokens") != 0 || n > 1000000) {
            continue;
        }

        if (best == 0 || n < best) {
            best = n;
        }
    }

    return best * 1000;
}


static int
txcp_import_field(cJSON *l, const cJSON *e, const char *src, uint64_t tier,
                  const char *dst, char *err, size_t errlen)
{
    char         name[96];
    const cJSON *v;
    tx_money_t   m;

    if (tier) {
        snprintf(name, sizeof(name), "%s_above_%lluk_tokens", src,
                 (unsigned long long) (tier / 1000));
        src = name;
    }

    v = cJSON_GetObjectItemCaseSensitive(e, src);

    if (v == NULL || cJSON_IsNull(v)) {
        return TX_DECLINED;
    }

    if (txcp_import_money(v, &m) != TX_OK) {
        snprintf(err, errlen, "%s is not a non-negative price", src);
        return TX_ERROR;
    }

    txcp_layer_money(l, dst, m);

    return TX_OK;
}


/*
 * A catalog layer from one LiteLLM entry: TX_OK, TX_DECLINED (no token
 * price: skipped) or TX_ERROR with err.
 */
static int
txcp_import_entry(const char *model, const cJSON *e, cJSON **layer, char *err,
                  size_t errlen)
{
    int         rc, rin, rout;
    uint64_t    tier;
    const char *prov;
    char        pbuf[65];
    cJSON      *l;

    if (!cJSON_IsObject(e)) {
        return TX_DECLINED;
    }

    l = cJSON_CreateObject();

    rin = txcp_import_field(l, e, "input_cost_per_token", 0,
                            "input_per_mtok_usd", err, errlen);
    rout = txcp_import_field(l, e, "output_cost_per_token", 0,
                             "output_per_mtok_usd", err, errlen);

    if (rin == TX_ERROR || rout == TX_ERROR) {
        goto failed;
    }

    if (rin == TX_DECLINED && rout == TX_DECLINED) {
        cJSON_Delete(l);
        return TX_DECLINED;
    }

    if (rin == TX_DECLINED) {
        txcp_layer_money(l, "input_per_mtok_usd", 0);
    }

    if (rout == TX_DECLINED) {
        txcp_layer_money(l, "output_per_mtok_usd", 0);
    }

    if (txcp_import_field(l, e, "cache_read_input_token_cost", 0,
                          "cache_read_per_mtok_usd", err, errlen)
            == TX_ERROR
        || txcp_import_field(l, e, "cache_creation_input_token_cost", 0,
                             "cache_write_per_mtok_usd", err, errlen)
               == TX_ERROR)
    {
        goto failed;
    }

    tier = txcp_import_tier(e);

    if (tier) {
        cJSON_AddNumberToObject(l, "tier_threshold", (double) tier);

        rin = txcp_import_field(l, e, "input_cost_per_token", tier,
                                "input_above_per_mtok_usd", err, errlen);
        rout = txcp_import_field(l, e, "output_cost_per_token", tier,
                                 "output_above_per_mtok_usd", err, errlen);

        if (rin == TX_ERROR || rout == TX_ERROR) {
            goto failed;
        }

        /* an unset tier price keeps the base price */

        if (rin == TX_DECLINED) {
            txcp_layer_money(l, "input_above_per_mtok_usd",
                             txcp_json_money(l, "input_per_mtok_usd"));
        }

        if (rout == TX_DECLINED) {
            txcp_layer_money(l, "output_above_per_mtok_usd",
                             txcp_json_money(l, "output_per_mtok_usd"));
        }

        if (txcp_import_field(l, e, "cache_read_input_token_cost", tier,
                              "cache_read_above_per_mtok_usd", err, errlen)
                == TX_ERROR
            || txcp_import_field(l, e, "cache_creation_input_token_cost", tier,
                                 "cache_write_above_per_mtok_usd", err, errlen)
                   == TX_ERROR)
        {
            goto failed;
        }
    }

    prov = txcp_json_str(e, "litellm_provider");
    pbuf[0] = '\0';

    if (prov) {
        snprintf(pbuf, sizeof(pbuf), "%s", prov);

        for (rc = 0; pbuf[rc]; rc++) {
            if ((unsigned char) pbuf[rc] < 0x20 || pbuf[rc] == 0x7f) {
                pbuf[rc] = '?';
            }
        }
    }

    cJSON_AddStringToObject(l, "provider", pbuf);
    cJSON_AddBoolToObject(l, "free", txcp_model_free(model, pbuf));

    *layer = l;

    return TX_OK;

failed:

    cJSON_Delete(l);

    return TX_ERROR;
}


static void
txcp_import_error(cJSON *errors, const char *model, const char *msg)
{
    char buf[400];

    if (cJSON_GetArraySize(errors) >= TXCP_IMPORT_MAX_ERRORS) {
        return;
    }

    snprintf(buf, sizeof(buf), "%.120s: %s", model, msg);
    cJSON_AddItemToArray(errors, cJSON_CreateString(buf));
}


int
txcp_pricing_import(const char *text, size_t len, const char *actor,
                    cJSON **out, char *err, size_t errlen)
{
    int          rc, imported, skipped, changed, nerr;
    char         now[40], msg[200];
    size_t       npub, cap;
    cJSON       *doc, *errors, *layer, *diff;
    const cJSON *e;
    MDB_txn     *txn;
    txcp_pub_t  *pub, *p;

    doc = txcp_json_parse_body(text, len, err, errlen);
    if (doc == NULL) {
        return TX_DECLINED;
    }

    txcp_time_format(txcp_now_us(), 0, now, sizeof(now));

    errors = cJSON_CreateArray();
    imported = 0;
    skipped = 0;
    nerr = 0;
    pub = NULL;
    npub = 0;
    cap = 0;

    if (txcp_store_begin(0, &txn) != 0) {
        goto failed;
    }

    cJSON_ArrayForEach(e, doc)
    {
        if (strcmp(e->string, "sample_spec") == 0) {
            skipped++;
            continue;
        }

        if (!txcp_model_ok(e->string)) {
            txcp_import_error(errors, e->string,
                              "model names are 1..127 printable bytes");
            nerr++;
            continue;
        }

        layer = NULL;
        rc = txcp_import_entry(e->string, e, &layer, msg, sizeof(msg));

        if (rc == TX_DECLINED) {
            skipped++;
            continue;
        }

        if (rc != TX_OK) {
            txcp_import_error(errors, e->string, msg);
            nerr++;
            continue;
        }

        changed = txcp_price_set_layer(txn, e->string, "catalog", layer, now);

        if (changed < 0) {
            mdb_txn_abort(txn);
            goto failed;
        }

        imported++;

        if (!changed) {
            continue;
        }

        if (npub == cap) {
            cap = cap ? cap * 2 : 64;
            p = realloc(pub, cap * sizeof(txcp_pub_t));

            if (p == NULL) {
                mdb_txn_abort(txn);
                goto failed;
            }

            pub = p;
        }

        memset(&pub[npub], 0, sizeof(txcp_pub_t));
        pub[npub].kind = TXCP_PUB_PRICE;
        snprintf(pub[npub].id, sizeof(pub[npub].id), "%s", e->string);
        npub++;
    }

    diff = cJSON_CreateObject();
    txcp_audit_diff(diff, "imported", NULL, cJSON_CreateNumber(imported));
    txcp_audit_diff(diff, "changed", NULL, cJSON_CreateNumber((double) npub));
    txcp_audit_diff(diff, "skipped", NULL, cJSON_CreateNumber(skipped));
    txcp_audit_diff(diff, "errors", NULL, cJSON_CreateNumber(nerr));

    rc = txcp_audit_append(txn, actor, "import", "pricing", "catalog", diff);
    cJSON_Delete(diff);

    if (rc != TX_OK || txcp_store_commit(txn) != 0) {
        if (rc != TX_OK) {
            mdb_txn_abort(txn);
        }

        goto failed;
    }

    if (npub) {
        txcp_publish(pub, npub);
    }

    free(pub);
    cJSON_Delete(doc);

    txcp_log(TXCP_LOG_INFO, "pricing catalog imported",
             "imported=%d changed=%zu skipped=%d errors=%d actor=%s", imported,
             npub, skipped, nerr, actor);

    *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(*out, "imported", imported);
    cJSON_AddNumberToObject(*out, "changed", (double) npub);
    cJSON_AddNumberToObject(*out, "skipped", skipped);
    cJSON_AddItemToObject(*out, "errors", errors);

    return TX_OK;

failed:

    free(pub);
    cJSON_Delete(doc);
    cJSON_Delete(errors);

    return TX_ERROR;
}


void
txcp_api_pricing_import(txcp_req_t *r)
{
    int    rc;
    char   err[256];
    cJSON *out;

    out = NULL;
    rc = txcp_pricing_import(r->body, r->len, r->actor, &out, err, sizeof(err));

    if (rc == TX_DECLINED) {
        txcp_http_error(r, 400, "%s", err);
        return;
    }

    if (rc != TX_OK) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    txcp_http_reply(r, 200, out);
}


static cJSON *
txcp_pricing_list_item(txcp_req_t *r, const cJSON *rec)
{
    const char *q, *model;

    model = txcp_json_str(rec, "model");
    if (model == NULL) {
        return NULL;
    }

    q = txcp_http_arg(r, "q");

    if (q && *q && strstr(model, q) == NULL) {
        return NULL;
    }

    return txcp_price_output(rec, model);
}


void
txcp_api_pricing_list(txcp_req_t *r)
{
    txcp_api_list(r, TXCP_DB_PRICES, txcp_pricing_list_item);
}


void
txcp_api_pricing_get(txcp_req_t *r)
{
    cJSON   *rec;
    MDB_txn *txn;

    if (!txcp_model_ok(r->id)) {
        txcp_http_error(r, 404, "no price for %.127s", r->id);
        return;
    }

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    rec = txcp_store_get(txn, TXCP_DB_PRICES, r->id);
    mdb_txn_abort(txn);

    if (rec == NULL && !txcp_model_free(r->id, NULL)) {
        txcp_http_error(r, 404, "no price for %s", r->id);
        return;
    }

    txcp_http_reply(r, 200, txcp_price_output(rec, r->id));
    cJSON_Delete(rec);
}


static void
txcp_pricing_write(txcp_req_t *r, cJSON *layer)
{
    int      rc;
    char     now[40];
    cJSON   *rec, *diff, *old;
    MDB_txn *txn;

    diff = cJSON_CreateObject();
    old = NULL;
    rec = NULL;

    if (txcp_store_begin(0, &txn) != 0) {
        cJSON_Delete(layer);
        txn = NULL;
        goto internal;
    }

    rec = txcp_store_get(txn, TXCP_DB_PRICES, r->id);
    old = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(rec, "custom"), 1);

    if (layer == NULL && old == NULL) {
        txcp_http_error(r, 404, "no custom price for %s", r->id);
        goto done;
    }

    txcp_json_diff(txcp_price_fields, old, layer, diff);
    txcp_time_format(txcp_now_us(), 0, now, sizeof(now));

    if (txcp_price_set_layer(txn, r->id, "custom", layer, now) < 0
        || txcp_audit_append(txn, r->actor,
                             layer == NULL ? "delete"
                             : old         ? "edit"
                                           : "create",
                             "price", r->id, diff)
               != TX_OK)
    {
        goto internal;
    }

    rc = txcp_store_commit(txn);
    txn = NULL;

    if (rc != 0) {
        goto internal;
    }

    txcp_publish_one(TXCP_PUB_PRICE, r->id);

    if (txcp_store_begin(1, &txn) != 0) {
        txn = NULL;
        goto internal;
    }

    cJSON_Delete(rec);
    rec = txcp_store_get(txn, TXCP_DB_PRICES, r->id);

    txcp_http_reply(r, 200, txcp_price_output(rec, r->id));

    if (rec == NULL) {
        cJSON_AddBoolToObject(r->resp, "deleted", 1);
    }

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    cJSON_Delete(rec);
    cJSON_Delete(old);
    cJSON_Delete(diff);
}


void
txcp_api_pricing_put(txcp_req_t *r)
{
    int    rc;
    char   err[256];
    cJSON *body, *layer;

    if (!txcp_model_ok(r->id)) {
        txcp_http_error(r, 400, "model names are 1..127 printable bytes");
        return;
    }

    body = txcp_api_body(r);
    if (body == NULL) {
        return;
    }

    layer = cJSON_CreateObject();

    rc = txcp_json_apply(txcp_price_fields, body, layer, NULL, 1, NULL, err,
                         sizeof(err));
    cJSON_Delete(body);

    if (rc != 0) {
        cJSON_Delete(layer);
        txcp_http_error(r, rc, "%s", err);
        return;
    }

    if (!txcp_json_bool(layer, "free", 0)
        && (!txcp_has(layer, "input_per_mtok_usd")
            || !txcp_has(layer, "output_per_mtok_usd")))
    {
        cJSON_Delete(layer);
        txcp_http_error(r, 400,
                        "input_per_mtok_usd and output_per_mtok_usd are "
                        "required unless free is true");
        return;
    }

    if (txcp_has(layer, "tier_threshold")
        && txcp_json_int(layer, "tier_threshold", 0) > 0
        && (!txcp_has(layer, "input_above_per_mtok_usd")
            || !txcp_has(layer, "output_above_per_mtok_usd")))
    {
        cJSON_Delete(layer);
        txcp_http_error(r, 400,
                        "a tier_threshold needs input_above_per_mtok_usd and "
                        "output_above_per_mtok_usd");
        return;
    }

    txcp_pricing_write(r, layer);
}


void
txcp_api_pricing_delete(txcp_req_t *r)
{
    if (!txcp_model_ok(r->id)) {
        txcp_http_error(r, 404, "no custom price for %.127s", r->id);
        return;
    }

    txcp_pricing_write(r, NULL);
}


int
txcp_pricing_cli(int argc, char **argv)
{
    int         i, rc;
    const char *file;
    char       *text, err[512], *s;
    size_t      len;
    cJSON      *out;

    if (argc < 4 || strcmp(argv[2], "import") != 0) {
        fprintf(stderr, "usage: torrix-cp pricing import FILE --data DIR "
                        "[--config FILE]\n");
        return 2;
    }

    file = argv[3];

    if (txcp_config_defaults(&txcp.conf) != 0) {
        return 2;
    }

    txcp.conf.log_level = TXCP_LOG_WARN;

    for (i = 4; i < argc; i++) {
        if (txcp_config_cli_opt(&txcp.conf, argc, argv, &i, err, sizeof(err))
            != 0) {
            fprintf(stderr, "torrix-cp: %s\n", err);
            txcp_config_free(&txcp.conf);
            return 2;
        }
    }

    text = txcp_read_file(file, TXCP_IMPORT_FILE_MAX, &len, err, sizeof(err));

    if (text == NULL) {
        fprintf(stderr, "torrix-cp: %s\n", err);
        txcp_config_free(&txcp.conf);
        return 2;
    }

    rc = 2;

    if (sodium_init() < 0 || txcp_store_open(0) != TX_OK) {
        fprintf(stderr, "torrix-cp: cannot open the store in %s\n",
                txcp.conf.data_dir);
        goto done;
    }

    /* the snapshot is updated too when it exists (a running daemon) */

    if (txcp_snapshot_open() != TX_OK) {
        fprintf(stderr, "torrix-cp: cannot open the snapshot in %s\n",
                txcp.conf.data_dir);
        goto done;
    }

    out = NULL;

    switch (txcp_pricing_import(text, len, "cli", &out, err, sizeof(err))) {
    case TX_OK:
        s = cJSON_Print(out);
        printf("%s\n", s ? s : "{}");
        free(s);
        cJSON_Delete(out);
        rc = txcp.resync_needed ? 1 : 0;
        break;

    case TX_DECLINED:
        fprintf(stderr, "torrix-cp: %s: %s\n", file, err);
        rc = 1;
        break;

    default:
        fprintf(stderr, "torrix-cp: import failed\n");
        rc = 2;
    }

done:

    free(text);
    txcp_snapshot_close();
    txcp_store_close();
    txcp_config_free(&txcp.conf);

    return rc;
}

/*
 * torrix-cp: /api/v1/providers and /api/v1/settings, and the merged
 * provider / settings view the publisher uses.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "tx_pii.h"
#include "tx_snapshot.h"
#include "tx_url.h"

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_audit.h"
#include "txcp_http.h"
#include "txcp_json.h"
#include "txcp_publish.h"
#include "txcp_store.h"
#include "txcp_vault.h"


#define TXCP_SETTINGS_ID    "settings"
#define TXCP_SAMPLE_DEFAULT 1000000 /* ppm: every run sampled */


typedef struct {
    const char *name;
    const char *kind;
    const char *key_env;
    const char *url_env;
    const char *dflt_url;
} txcp_builtin_t;


static const txcp_builtin_t txcp_builtins[] =
    {{"openai", "openai", "OPENAI_API_KEY", "OPENAI_BASE_URL",
      "https://api.openai.com/v1"},
     {"anthropic", "anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
      "https://api.anthropic.com"},
     {"ollama", "ollama", NULL, "OLLAMA_BASE_URL", "http://localhost:11434"},
     {NULL, NULL, NULL, NULL, NULL}};

#define TXCP_NBUILTINS 3


const char *const txcp_builtin_providers[] = {"openai", "anthropic", "ollama",
                                              NULL};


/* captured at start: env values; keys in sodium_malloc memory */
static char *txcp_env_key[TXCP_NBUILTINS];
static char *txcp_env_url[TXCP_NBUILTINS];


static const char *const txcp_kind_enum[] = {"openai", "anthropic", "compat",
                                             "ollama", NULL};


static const txcp_field_t txcp_provider_fields[] =
    {{"kind", TXCP_F_ENUM, 0, 0, 0, txcp_kind_enum, 0, NULL},
     {"base_url", TXCP_F_STR, TXCP_FF_NULLABLE | TXCP_FF_URL, 8, 2048, NULL, 0,
      NULL},
     {"api_key", TXCP_F_STR, TXCP_FF_NULLABLE | TXCP_FF_SECRET, 1, 4096, NULL,
      0, NULL},
     {NULL, 0, 0, 0, 0, NULL, 0, NULL}};


/* TX_STRATEGY_* by index */
static const char *const txcp_strategy_enum[] = {"ordered", "weighted",
                                                 "latency", "cost", NULL};


static const txcp_field_t txcp_settings_fields[] =
    {{"proxy_targets", TXCP_F_STRLIST, TXCP_FF_NULLABLE | TXCP_FF_URL, 0, 1000,
      NULL, 0, NULL},
     {"sample_rate", TXCP_F_RATE, 0, 0, 0, NULL, 0, NULL},
     {"pii_masking", TXCP_F_BOOL, 0, 0, 0, NULL, 0, NULL},
     {"pii_rules", TXCP_F_STRMAP, TXCP_FF_NULLABLE, 0, 32, NULL, 0, NULL},
     {"retention_days", TXCP_F_INT, 0, 0, 36500, NULL, 0, NULL},
     {"default_max_tokens", TXCP_F_INT, TXCP_FF_NULLABLE, 0, 100000000, NULL, 0,
      NULL},
     {"instance_daily_cap_usd", TXCP_F_MONEY, TXCP_FF_NULLABLE, 0, 0, NULL, 0,
      NULL},
     {"instance_soft_alert_usd", TXCP_F_MONEY, TXCP_FF_NULLABLE, 0, 0, NULL, 0,
      NULL},
     {"routing_strategy", TXCP_F_ENUM, 0, 0, 0, txcp_strategy_enum, 0, NULL},
     {NULL, 0, 0, 0, 0, NULL, 0, NULL}};


int
txcp_providers_init(void)
{
    int         i;
    const char *v;

    for (i = 0; txcp_builtins[i].name; i++) {
        if (txcp_builtins[i].key_env) {
            v = getenv(txcp_builtins[i].key_env);

            if (v && *v) {
                txcp_env_key[i] = txcp_vault_strdup(v);
                if (txcp_env_key[i] == NULL) {
                    return TX_ERROR;
                }
            }
        }

        v = getenv(txcp_builtins[i].url_env);

        if (v && *v) {
            txcp_env_url[i] = strdup(v);
            if (txcp_env_url[i] == NULL) {
                return TX_ERROR;
            }
        }

        txcp_log(TXCP_LOG_INFO, "provider", "name=%s api_key=%s base_url=%s",
                 txcp_builtins[i].name, txcp_env_key[i] ? "env" : "none",
                 txcp_env_url[i] ? "env" : "default");
    }

    return TX_OK;
}


void
txcp_providers_free(void)
{
    int i;

    for (i = 0; i < TXCP_NBUILTINS; i++) {
        if (txcp_env_key[i]) {
            sodium_free(txcp_env_key[i]);
            txcp_env_key[i] = NULL;
        }

        free(txcp_env_url[i]);
        txcp_env_url[i] = NULL;
    }
}


uint64_t
txcp_provider_kind(const char *kind)
{
    if (kind == NULL) {
        return 0;
    }

    if (strcmp(kind, "openai") == 0) {
        return TX_PROVIDER_OPENAI;
    }

    if (strcmp(kind, "anthropic") == 0) {
        return TX_PROVIDER_ANTHROPIC;
    }

    if (strcmp(kind, "compat") == 0) {
        return TX_PROVIDER_COMPAT;
    }

    if (strcmp(kind, "ollama") == 0) {
        return TX_PROVIDER_OLLAMA;
    }

    return 0;
}


static int
txcp_builtin_index(const char *name)
{
    int i;

    for (i = 0; txcp_builtins[i].name; i++) {
        if (strcmp(txcp_builtins[i].name, name) == 0) {
            return i;
        }
    }

    return -1;
}


int
txcp_provider_get(MDB_txn *txn, const char *name, cJSON **recp,
                  txcp_provider_t *p)
{
    int             b;
    cJSON          *rec;
    const char     *s;
    txcp_provider_t tmp;

    b = txcp_builtin_index(name);
    rec = txcp_store_get(txn, TXCP_DB_PROVIDERS, name);

    if (b < 0 && rec == NULL) {
        return TX_DECLINED;
    }

    if (p == NULL) {
        p = &tmp;
    }

    memset(p, 0, sizeof(txcp_provider_t));
    p->name = b >= 0 ? txcp_builtins[b].name : txcp_json_str(rec, "_name");
    p->builtin = b >= 0;

    s = txcp_json_str(rec, "kind");
    p->kind = s ? s : b >= 0 ? txcp_builtins[b].kind : "compat";

    s = txcp_json_str(rec, "base_url");
    p->base_url = s                 ? s
                  : b < 0           ? ""
                  : txcp_env_url[b] ? txcp_env_url[b]
                                    : txcp_builtins[b].dflt_url;

    p->api_key_sealed = txcp_json_str(rec, "api_key_sealed");
    p->api_key_env = b >= 0 ? txcp_env_key[b] : NULL;
    p->api_key_set = p->api_key_sealed || p->api_key_env;

    if (rec) {
        p->source = "store";

    } else if (b >= 0 && (txcp_env_key[b] || txcp_env_url[b])) {
        p->source = "env";

    } else {
        p->source = "default";
    }

    if (recp) {
        *recp = rec;

    } else {
        cJSON_Delete(rec);
        p->name = NULL;
        p->kind = NULL;
        p->base_url = NULL;
        p->api_key_sealed = NULL;
        p->api_key_env = NULL;
    }

    return TX_OK;
}


char *
txcp_provider_api_key(const txcp_provider_t *p)
{
    if (p->api_key_sealed && p->name) {
        return txcp_vault_open_b64(p->api_key_sealed, p->name);
    }

    return p->api_key_env ? txcp_vault_strdup(p->api_key_env) : NULL;
}


/* A copy of the stored record with its credential opened, for a diff. */
static cJSON *
txcp_provider_diff_view(const cJSON *rec, const char *name)
{
    cJSON *view;

    view = rec ? cJSON_Duplicate(rec, 1) : NULL;

    if (view && txcp_vault_open_member(view, "api_key", name) == TX_ERROR) {
        /* unreadable: still shows as a change */
        txcp_json_set(view, "api_key", cJSON_CreateString(""));
    }

    return view;
}


static void
txcp_provider_diff_free(cJSON *view)
{
    txcp_vault_wipe_member(view, "api_key");
    cJSON_Delete(view);
}


static cJSON *
txcp_provider_output(const char *name, const txcp_provider_t *p)
{
    cJSON *out;

    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "name", name);
    cJSON_AddStringToObject(out, "kind", p->kind);
    cJSON_AddStringToObject(out, "base_url", p->base_url);
    cJSON_AddBoolToObject(out, "api_key_set", p->api_key_set);
    cJSON_AddStringToObject(out, "source", p->source);
    cJSON_AddBoolToObject(out, "builtin", p->builtin);

    return out;
}


static int
txcp_provider_name_ok(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')
              || s[i] == '-' || s[i] == '_'))
        {
            return 0;
        }
    }

    return i > 0 && i <= 64;
}


void
txcp_api_providers_list(txcp_req_t *r)
{
    int             i, rc;
    char            name[80];
    cJSON          *items, *rec;
    MDB_txn        *txn;
    MDB_val         k, v;
    MDB_cursor     *cur;
    txcp_provider_t p;

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    items = cJSON_CreateArray();

    for (i = 0; txcp_builtins[i].name; i++) {
        if (txcp_provider_get(txn, txcp_builtins[i].name, &rec, &p) == TX_OK) {
            cJSON_AddItemToArray(items,
                                 txcp_provider_output(txcp_builtins[i].name,
                                                      &p));
            cJSON_Delete(rec);
        }
    }

    if (mdb_cursor_open(txn, txcp.db[TXCP_DB_PROVIDERS], &cur) == 0) {
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        {
            if (k.mv_size == 0 || k.mv_size >= sizeof(name)) {
                continue;
            }

            memcpy(name, k.mv_data, k.mv_size);
            name[k.mv_size] = '\0';

            if (txcp_builtin_index(name) >= 0) {
                continue;
            }

            if (txcp_provider_get(txn, name, &rec, &p) == TX_OK) {
                cJSON_AddItemToArray(items, txcp_provider_output(name, &p));
                cJSON_Delete(rec);
            }
        }

        mdb_cursor_close(cur);
    }

    mdb_txn_abort(txn);

    txcp_http_reply(r, 200, txcp_http_page(items, NULL));
}


void
txcp_api_providers_get(txcp_req_t *r)
{
    cJSON          *rec;
    MDB_txn        *txn;
    txcp_provider_t p;

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    rec = NULL;

    if (txcp_provider_get(txn, r->id, &rec, &p) != TX_OK) {
        txcp_http_error(r, 404, "no provider %s", r->id);

    } else {
        txcp_http_reply(r, 200, txcp_provider_output(r->id, &p));
    }

    cJSON_Delete(rec);
    mdb_txn_abort(txn);
}


void
txcp_api_providers_put(txcp_req_t *r)
{
    int             rc, b;
    char            err[256];
    const char     *kind;
    cJSON          *body, *rec, *old, *diff, *prec, *stored;
    MDB_txn        *txn;
    txcp_provider_t p;

    if (!txcp_provider_name_ok(r->id)) {
        txcp_http_error(r, 400, "provider names are 1..64 of a-z, 0-9, - _");
        return;
    }

    body = txcp_api_body(r);

    if (r->body) {
        sodium_memzero(r->body, r->len);
    }

    if (body == NULL) {
        return;
    }

    txn = NULL;
    old = NULL;
    prec = NULL;
    diff = cJSON_CreateObject();
    rec = cJSON_CreateObject();
    b = txcp_builtin_index(r->id);

    if (txcp_store_begin(0, &txn) != 0) {
        txn = NULL;
        goto internal;
    }

    rc = txcp_json_apply(txcp_provider_fields, body, rec, NULL, 1, txn, err,
                         sizeof(err));
    if (rc != 0) {
        txcp_http_error(r, rc, "%s", err);
        goto done;
    }

    kind = txcp_json_str(rec, "kind");

    if (b >= 0 && kind && strcmp(kind, txcp_builtins[b].kind) != 0) {
        txcp_http_error(r, 400, "provider %s is of kind %s", r->id,
                        txcp_builtins[b].kind);
        goto done;
    }

    if (b < 0 && (kind == NULL || txcp_json_str(rec, "base_url") == NULL)) {
        txcp_http_error(r, 400, "missing field '%s'",
                        kind ? "base_url" : "kind");
        goto done;
    }

    cJSON_AddStringToObject(rec, "_name", r->id);

    stored = txcp_store_get(txn, TXCP_DB_PROVIDERS, r->id);
    old = txcp_provider_diff_view(stored, r->id);
    cJSON_Delete(stored);

    txcp_json_diff(txcp_provider_fields, old, rec, diff);

    /* the credential is stored sealed only */

    if (txcp_vault_seal_member(rec, "api_key", r->id) != TX_OK) {
        goto internal;
    }

    rc = txcp_api_commit(r, txn, TXCP_DB_PROVIDERS, r->id, rec,
                         old ? "edit" : "create", "provider", diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(TXCP_PUB_PROVIDER, r->id);

    if (txcp_store_begin(1, &txn) != 0) {
        txn = NULL;
        goto internal;
    }

    if (txcp_provider_get(txn, r->id, &prec, &p) == TX_OK) {
        txcp_http_reply(r, 200, txcp_provider_output(r->id, &p));
    }

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    cJSON_Delete(prec);
    txcp_vault_wipe_member(body, "api_key");
    txcp_vault_wipe_member(rec, "api_key");
    cJSON_Delete(body);
    cJSON_Delete(rec);
    txcp_provider_diff_free(old);
    cJSON_Delete(diff);
}


void
txcp_api_providers_delete(txcp_req_t *r)
{
    int             rc;
    cJSON          *old, *diff, *prec, *view;
    MDB_txn        *txn;
    txcp_provider_t p;

    prec = NULL;
    diff = cJSON_CreateObject();

    if (txcp_api_get_for_write(r, TXCP_DB_PROVIDERS, "stored provider", &txn,
                               &old)
        != TX_OK)
    {
        goto done;
    }

    view = txcp_provider_diff_view(old, r->id);
    txcp_json_diff(txcp_provider_fields, view, NULL, diff);
    txcp_provider_diff_free(view);

    rc = txcp_api_commit(r, txn, TXCP_DB_PROVIDERS, r->id, NULL, "delete",
                         "provider", diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(TXCP_PUB_PROVIDER, r->id);

    if (txcp_store_begin(1, &txn) != 0) {
        txn = NULL;
        goto internal;
    }

    if (txcp_provider_get(txn, r->id, &prec, &p) == TX_OK) {
        /* a built-in falls back to env / defaults */
        txcp_http_reply(r, 200, txcp_provider_output(r->id, &p));

    } else {
        txcp_http_reply(r, 200, NULL);
        cJSON_AddStringToObject(r->resp, "name", r->id);
        cJSON_AddBoolToObject(r->resp, "deleted", 1);
    }

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    cJSON_Delete(prec);
    cJSON_Delete(old);
    cJSON_Delete(diff);
}


int
txcp_settings_get(MDB_txn *txn, char **targets, uint64_t *sample_ppm)
{
    cJSON *rec, *list, *it;
    size_t n;
    char  *s, *p;

    rec = txcp_store_get(txn, TXCP_DB_SETTINGS, TXCP_SETTINGS_ID);

    *sample_ppm =
        (uint64_t) txcp_json_int(rec, "sample_rate", TXCP_SAMPLE_DEFAULT);

    list = cJSON_GetObjectItemCaseSensitive(rec, "proxy_targets");

    if (!cJSON_IsArray(list)) {
        *targets = strdup(tx_url_default_targets);
        cJSON_Delete(rec);
        return *targets ? TX_OK : TX_ERROR;
    }

    n = 1;

    cJSON_ArrayForEach(it, list)
    {
        if (cJSON_IsString(it)) {
            n += strlen(it->valuestring) + 1;
        }
    }

    s = malloc(n);
    if (s == NULL) {
        cJSON_Delete(rec);
        return TX_ERROR;
    }

    p = s;

    cJSON_ArrayForEach(it, list)
    {
        if (cJSON_IsString(it)) {
            if (p != s) {
                *p++ = '\n';
            }

            n = strlen(it->valuestring);
            memcpy(p, it->valuestring, n);
            p += n;
        }
    }

    *p = '\0';
    *targets = s;

    cJSON_Delete(rec);

    return TX_OK;
}


int
txcp_settings_read(MDB_txn *txn, txcp_settings_t *st)
{
    cJSON *rec;

    rec = txcp_store_get(txn, TXCP_DB_SETTINGS, TXCP_SETTINGS_ID);

    st->sample_ppm =
        (uint64_t) txcp_json_int(rec, "sample_rate", TXCP_SAMPLE_DEFAULT);
    st->pii_masking = txcp_json_bool(rec, "pii_masking", 0);
    st->retention_days =
        txcp_json_int(rec, "retention_days", TXCP_RETENTION_DEFAULT);
    st->default_max_tokens =
        (uint64_t) txcp_json_int(rec, "default_max_tokens", 0);
    st->instance_daily_cap = txcp_json_money(rec, "instance_daily_cap_usd");
    st->instance_soft_cap = txcp_json_money(rec, "instance_soft_alert_usd");

    cJSON_Delete(rec);

    return TX_OK;
}


static cJSON *
txcp_settings_output(MDB_txn *txn)
{
    cJSON          *out, *list, *rec;
    char           *targets, *p, *nl;
    const char     *strategy;
    uint64_t        ppm;
    txcp_settings_t st;

    if (txcp_settings_get(txn, &targets, &ppm) != TX_OK) {
        return NULL;
    }

    rec = txcp_store_get(txn, TXCP_DB_SETTINGS, TXCP_SETTINGS_ID);

    out = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(out, "proxy_targets");

    for (p = targets; *p; p = nl + 1) {
        nl = strchr(p, '\n');

        if (nl) {
            *nl = '\0';
        }

        if (*p) {
            cJSON_AddItemToArray(list, cJSON_CreateString(p));
        }

        if (nl == NULL) {
            break;
        }
    }

    cJSON_AddStringToObject(
        out, "proxy_targets_source",
        cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(rec, "proxy_targets"))
            ? "store"
            : "default");
    cJSON_AddNumberToObject(out, "sample_rate", (double) ppm / 1e6);

    txcp_settings_read(txn, &st);
    cJSON_AddBoolToObject(out, "pii_masking", st.pii_masking);

    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(rec, "pii_rules"))) {
        cJSON_AddItemToObject(
            out, "pii_rules",
            cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(rec, "pii_rules"),
                            1));

    } else {
        cJSON_AddObjectToObject(out, "pii_rules");
    }
    cJSON_AddNumberToObject(out, "retention_days", (double) st.retention_days);

    if (st.default_max_tokens) {
        cJSON_AddNumberToObject(out, "default_max_tokens",
                                (double) st.default_max_tokens);

    } else {
        cJSON_AddNullToObject(out, "default_max_tokens");
    }

    cJSON_AddItemToObject(out, "instance_daily_cap_usd",
                          st.instance_daily_cap
                              ? txcp_json_money_value(st.instance_daily_cap)
                              : cJSON_CreateNull());
    cJSON_AddItemToObject(out, "instance_soft_alert_usd",
                          st.instance_soft_cap
                              ? txcp_json_money_value(st.instance_soft_cap)
                              : cJSON_CreateNull());

    strategy = txcp_json_str(rec, "routing_strategy");
    cJSON_AddStringToObject(out, "routing_strategy",
                            strategy ? strategy : txcp_strategy_enum[0]);

    free(targets);
    cJSON_Delete(rec);

    return out;
}


void
txcp_api_settings_get(txcp_req_t *r)
{
    MDB_txn *txn;
    cJSON   *out;

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    out = txcp_settings_output(txn);
    mdb_txn_abort(txn);

    if (out == NULL) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    txcp_http_reply(r, 200, out);
}


/* Every custom PII rule must compile (tx_pii.h naming rules). */
static int
txcp_settings_pii_check(const cJSON *rec, char *err, size_t errlen)
{
    int          rc;
    const cJSON *rules, *it;
    tx_pii_t    *pii;

    rules = cJSON_GetObjectItemCaseSensitive(rec, "pii_rules");

    if (!cJSON_IsObject(rules)) {
        return TX_OK;
    }

    if (tx_pii_create(&pii, 0, err, errlen) != TX_OK) {
        return TX_ERROR;
    }

    rc = TX_OK;

    cJSON_ArrayForEach(it, rules)
    {
        rc = tx_pii_add_rule(pii, it->string, it->valuestring, err, errlen);
        if (rc != TX_OK) {
            break;
        }
    }

    tx_pii_free(pii);

    return rc;
}


void
txcp_api_settings_patch(txcp_req_t *r)
{
    int      rc;
    char     err[256];
    cJSON   *body, *rec, *diff, *out;
    MDB_txn *txn;

    body = txcp_api_body(r);
    if (body == NULL) {
        return;
    }

    rec = NULL;
    diff = cJSON_CreateObject();

    if (txcp_store_begin(0, &txn) != 0) {
        txn = NULL;
        goto internal;
    }

    rec = txcp_store_get(txn, TXCP_DB_SETTINGS, TXCP_SETTINGS_ID);

    if (rec == NULL) {
        rec = cJSON_CreateObject();
    }

    rc = txcp_json_apply(txcp_settings_fields, body, rec, diff, 0, txn, err,
                         sizeof(err));
    if (rc != 0) {
        txcp_http_error(r, rc, "%s", err);
        goto done;
    }

    if (txcp_settings_pii_check(rec, err, sizeof(err)) != TX_OK) {
        txcp_http_error(r, 400, "pii_rules: %s", err);
        goto done;
    }

    if (cJSON_GetArraySize(diff) > 0) {
        rc = txcp_api_commit(r, txn, TXCP_DB_SETTINGS, TXCP_SETTINGS_ID, rec,
                             "edit", "settings", diff);
        txn = NULL;

        if (rc != TX_OK) {
            goto internal;
        }

        txcp_publish_one(TXCP_PUB_SETTINGS, TXCP_SETTINGS_ID);

        if (txcp_store_begin(1, &txn) != 0) {
            txn = NULL;
            goto internal;
        }
    }

    out = txcp_settings_output(txn);

    if (out == NULL) {
        goto internal;
    }

    txcp_http_reply(r, 200, out);

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

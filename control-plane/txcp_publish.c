/*
 * torrix-cp snapshot publisher (see txcp_publish.h).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "tx_price.h"
#include "tx_record.h"
#include "tx_snapshot.h"

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_json.h"
#include "txcp_pricing.h"
#include "txcp_publish.h"
#include "txcp_rollup.h"
#include "txcp_routing.h"
#include "txcp_store.h"
#include "txcp_vault.h"


static const char *const txcp_sdb_names[TXCP_SDB_N] =
    {TX_SNAP_DB_META,      TX_SNAP_DB_KHASH,    TX_SNAP_DB_KEYS,
     TX_SNAP_DB_PROJECTS,  TX_SNAP_DB_ORGS,     TX_SNAP_DB_USERS,
     TX_SNAP_DB_PROVIDERS, TX_SNAP_DB_SETTINGS, TX_SNAP_DB_PRICES,
     TX_SNAP_DB_SPEND,     TX_SNAP_DB_ROUTES,   TX_SNAP_DB_FALLBACKS,
     TX_SNAP_DB_AGENTS};


int
txcp_snap_put(MDB_txn *txn, int sdb, const void *key, size_t klen,
              const void *val, size_t vlen)
{
    int     rc;
    MDB_val k, v;

    k.mv_data = (void *) key;
    k.mv_size = klen;

    rc = mdb_get(txn, txcp.sdb[sdb], &k, &v);

    if (rc == 0 && v.mv_size == vlen && memcmp(v.mv_data, val, vlen) == 0) {
        return 0;
    }

    v.mv_data = (void *) val;
    v.mv_size = vlen;

    return mdb_put(txn, txcp.sdb[sdb], &k, &v, 0);
}


int
txcp_snap_del(MDB_txn *txn, int sdb, const void *key, size_t klen)
{
    int     rc;
    MDB_val k;

    k.mv_data = (void *) key;
    k.mv_size = klen;

    rc = mdb_del(txn, txcp.sdb[sdb], &k, NULL);

    return rc == MDB_NOTFOUND ? 0 : rc;
}


/* A TLV buffer big enough for any encoding of rec. */
static uint8_t *
txcp_pub_buf(const cJSON *rec, size_t *len)
{
    char *text;

    text = cJSON_PrintUnformatted(rec);
    if (text == NULL) {
        return NULL;
    }

    *len = strlen(text) * 2 + 4096;
    free(text);

    return malloc(*len);
}


static void
txcp_put_joined(tx_wbuf_t *wb, uint16_t tag, const cJSON *v, int kv)
{
    const cJSON *it;
    size_t       n;
    char        *s, *p;

    if (cJSON_IsString(v)) {
        tx_rec_put_cstr(wb, tag, v->valuestring);
        return;
    }

    n = 0;

    cJSON_ArrayForEach(it, v)
    {
        if (cJSON_IsString(it)) {
            n += strlen(it->valuestring) + 1;
            n += kv ? strlen(it->string) + 1 : 0;
        }
    }

    if (n == 0) {
        return;
    }

    s = malloc(n + 1);
    if (s == NULL) {
        wb->overflow = 1;
        return;
    }

    p = s;

    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it)) {
            continue;
        }

        if (p != s) {
            *p++ = '\n';
        }

        if (kv) {
            p += sprintf(p, "%s=", it->string);
        }

        p += sprintf(p, "%s", it->valuestring);
    }

    tx_rec_put_bytes(wb, tag, s, p - s);
    free(s);
}


static int
txcp_pub_key(MDB_txn *txn, const txcp_pub_t *item, const cJSON *rec,
             int64_t now)
{
    int         rc, revoked, i;
    size_t      len;
    uint8_t    *buf, hash[TX_KEY_HASH_LEN];
    uint8_t     kh[128];
    const char *s;
    int64_t     not_after;
    tx_wbuf_t   wb;

    for (i = 0; i < item->ndrop; i++) {
        rc = txcp_snap_del(txn, TXCP_SDB_KHASH, item->drop[i], TX_KEY_HASH_LEN);
        if (rc != 0) {
            return rc;
        }
    }

    if (rec == NULL) {
        return txcp_snap_del(txn, TXCP_SDB_KEYS, item->id, strlen(item->id));
    }

    buf = txcp_pub_buf(rec, &len);
    if (buf == NULL) {
        return ENOMEM;
    }

    s = txcp_json_str(rec, "status");
    revoked = s && strcmp(s, "revoked") == 0;

    s = txcp_json_str(rec, "access");

    tx_wbuf_init(&wb, buf, len);
    tx_rec_put_cstr(&wb, TX_KEY_ID, item->id);
    tx_rec_put_cstr(&wb, TX_KEY_NAME, txcp_json_str(rec, "name"));
    tx_rec_put_cstr(&wb, TX_KEY_PROJECT, txcp_json_str(rec, "project_id"));
    tx_rec_put_cstr(&wb, TX_KEY_USER, txcp_json_str(rec, "user_id"));
    tx_rec_put_cstr(&wb, TX_KEY_ORG, txcp_json_str(rec, "org_id"));
    tx_rec_put_u64(&wb, TX_KEY_ACCESS,
                   s && strcmp(s, "read") == 0 ? TX_ACCESS_READ
                                               : TX_ACCESS_FULL);
    tx_rec_put_u64(&wb, TX_KEY_STATUS,
                   revoked ? TX_STATUS_REVOKED : TX_STATUS_ACTIVE);
    tx_rec_put_i64(&wb, TX_KEY_EXPIRES_AT, txcp_json_int(rec, "expires_at", 0));
    txcp_put_joined(&wb, TX_KEY_MODELS,
                    cJSON_GetObjectItemCaseSensitive(rec, "allowed_models"), 0);
    tx_rec_put_u64(&wb, TX_KEY_RPM, txcp_json_int(rec, "rpm", 0));
    tx_rec_put_u64(&wb, TX_KEY_TPM, txcp_json_int(rec, "tpm", 0));
    tx_rec_put_i64(&wb, TX_KEY_DAILY_CAP,
                   txcp_json_money(rec, "daily_cap_usd"));
    tx_rec_put_i64(&wb, TX_KEY_MONTHLY_BUDGET,
                   txcp_json_money(rec, "monthly_budget_usd"));
    tx_rec_put_u64(&wb, TX_KEY_SOFT_PCT,
                   txcp_json_int(rec, "soft_alert_pct", 80));
    txcp_put_joined(&wb, TX_KEY_METADATA,
                    cJSON_GetObjectItemCaseSensitive(rec, "metadata"), 1);

    if (wb.overflow) {
        free(buf);
        return ENOMEM;
    }

    rc = txcp_snap_put(txn, TXCP_SDB_KEYS, item->id, strlen(item->id), buf,
                       wb.pos - wb.start);
    free(buf);

    if (rc != 0) {
        return rc;
    }

    /* khash: current secret, and the previous one during its grace */

    s = txcp_json_str(rec, "_hash");

    if (s && txcp_unhex(s, hash, TX_KEY_HASH_LEN) == TX_OK) {
        if (revoked) {
            rc = txcp_snap_del(txn, TXCP_SDB_KHASH, hash, TX_KEY_HASH_LEN);

        } else {
            tx_wbuf_init(&wb, kh, sizeof(kh));
            tx_rec_put_cstr(&wb, TX_KH_KEY_ID, item->id);
            rc = txcp_snap_put(txn, TXCP_SDB_KHASH, hash, TX_KEY_HASH_LEN, kh,
                               wb.pos - wb.start);
        }

        if (rc != 0) {
            return rc;
        }
    }

    s = txcp_json_str(rec, "_prev_hash");
    not_after = txcp_json_int(rec, "_prev_not_after", 0);

    if (s && txcp_unhex(s, hash, TX_KEY_HASH_LEN) == TX_OK) {
        if (revoked || not_after <= now) {
            rc = txcp_snap_del(txn, TXCP_SDB_KHASH, hash, TX_KEY_HASH_LEN);

        } else {
            tx_wbuf_init(&wb, kh, sizeof(kh));
            tx_rec_put_cstr(&wb, TX_KH_KEY_ID, item->id);
            tx_rec_put_i64(&wb, TX_KH_NOT_AFTER, not_after);
            rc = txcp_snap_put(txn, TXCP_SDB_KHASH, hash, TX_KEY_HASH_LEN, kh,
                               wb.pos - wb.start);
        }

        if (rc != 0) {
            return rc;
        }
    }

    return 0;
}


static int
txcp_pub_tenant(MDB_txn *txn, int kind, const char *id, const cJSON *rec)
{
    int         rc, sdb;
    uint8_t     buf[4096];
    const char *s;
    tx_wbuf_t   wb;

    sdb = kind == TXCP_PUB_ORG    ? TXCP_SDB_ORGS
          : kind == TXCP_PUB_USER ? TXCP_SDB_USERS
                                  : TXCP_SDB_PROJECTS;

    if (rec == NULL) {
        return txcp_snap_del(txn, sdb, id, strlen(id));
    }

    tx_wbuf_init(&wb, buf, sizeof(buf));

    switch (kind) {
    case TXCP_PUB_ORG:
        tx_rec_put_cstr(&wb, TX_ORG_ID, id);
        tx_rec_put_cstr(&wb, TX_ORG_NAME, txcp_json_str(rec, "name"));
        tx_rec_put_i64(&wb, TX_ORG_SPEND_CAP,
                       txcp_json_money(rec, "spend_cap_usd"));
        tx_rec_put_u64(&wb, TX_ORG_ROLLOVER,
                       txcp_json_bool(rec, "rollover", 0));
        tx_rec_put_u64(&wb, TX_ORG_DLP, txcp_json_bool(rec, "dlp", 0));
        tx_rec_put_u64(&wb, TX_ORG_RPM, txcp_json_int(rec, "rpm", 0));
        tx_rec_put_u64(&wb, TX_ORG_TPM, txcp_json_int(rec, "tpm", 0));
        break;

    case TXCP_PUB_USER:
        s = txcp_json_str(rec, "status");
        tx_rec_put_cstr(&wb, TX_USR_ID, id);
        tx_rec_put_cstr(&wb, TX_USR_ORG, txcp_json_str(rec, "org_id"));
        tx_rec_put_u64(&wb, TX_USR_STATUS,
                       s && strcmp(s, "disabled") == 0 ? TX_STATUS_DISABLED
                                                       : TX_STATUS_ACTIVE);
        tx_rec_put_i64(&wb, TX_USR_WEEKLY_CAP,
                       txcp_json_money(rec, "weekly_cap_usd"));
        break;

    default:
        tx_rec_put_cstr(&wb, TX_PRJ_ID, id);
        tx_rec_put_cstr(&wb, TX_PRJ_SLUG, txcp_json_str(rec, "slug"));
        tx_rec_put_cstr(&wb, TX_PRJ_ORG, txcp_json_str(rec, "org_id"));
        tx_rec_put_u64(&wb, TX_PRJ_ACTIVE, txcp_json_bool(rec, "active", 1));
        tx_rec_put_u64(&wb, TX_PRJ_DLP, txcp_json_bool(rec, "dlp", 0));
        tx_rec_put_u64(&wb, TX_PRJ_RPM, txcp_json_int(rec, "rpm", 0));
        tx_rec_put_u64(&wb, TX_PRJ_TPM, txcp_json_int(rec, "tpm", 0));
        tx_rec_put_i64(&wb, TX_PRJ_DAILY_CAP,
                       txcp_json_money(rec, "daily_cap_usd"));
        tx_rec_put_i64(&wb, TX_PRJ_MONTHLY_CAP,
                       txcp_json_money(rec, "monthly_cap_usd"));
        break;
    }

    if (wb.overflow) {
        return ENOMEM;
    }

    rc = txcp_snap_put(txn, sdb, id, strlen(id), buf, wb.pos - wb.start);

    return rc;
}


/*
 * The credential of `name` sealed under the data-plane key into sealed
 * (*slen = 0 when there is none).  The blob already in the snapshot is kept
 * when it holds the same credential: a resync dirties no page.
 */
static int
txcp_pub_provider_seal(MDB_txn *txn, const char *name, const txcp_provider_t *p,
                       uint8_t *sealed, size_t cap, size_t *slen)
{
    int               rc;
    char             *key;
    size_t            klen;
    MDB_val           k, v;
    tx_provider_rec_t cur;

    *slen = 0;

    if (!p->api_key_set) {
        return 0;
    }

    key = txcp_provider_api_key(p);
    if (key == NULL) {
        return EINVAL;
    }

    klen = strlen(key);

    k.mv_data = (void *) name;
    k.mv_size = strlen(name);

    if (mdb_get(txn, txcp.sdb[TXCP_SDB_PROVIDERS], &k, &v) == 0
        && tx_provider_rec_decode(v.mv_data, v.mv_size, &cur) == TX_OK
        && cur.sealed.len > 0 && cur.sealed.len <= cap
        && txcp_vault_dp_same(name, cur.sealed.data, cur.sealed.len,
                              (const uint8_t *) key, klen))
    {
        memcpy(sealed, cur.sealed.data, cur.sealed.len);
        *slen = cur.sealed.len;
        rc = 0;

    } else {
        rc = txcp_vault_dp_seal(name, (const uint8_t *) key, klen, sealed, cap,
                                slen)
                     == TX_OK
                 ? 0
                 : EINVAL;
    }

    txcp_vault_strfree(key);

    return rc;
}


static int
txcp_pub_provider(MDB_txn *rtxn, MDB_txn *txn, const char *name)
{
    int             rc;
    uint8_t         buf[8192], sealed[tx_seal_len(4096)];
    size_t          slen;
    cJSON          *rec;
    tx_wbuf_t       wb;
    txcp_provider_t p;

    rec = NULL;

    if (txcp_provider_get(rtxn, name, &rec, &p) != TX_OK) {
        cJSON_Delete(rec);
        return txcp_snap_del(txn, TXCP_SDB_PROVIDERS, name, strlen(name));
    }

    /*
     * Never TX_PRV_API_KEY: the credential goes out sealed only.  One that
     * does not open is left out (the provider answers 401) rather than
     * failing every publish.
     */

    if (txcp_pub_provider_seal(txn, name, &p, sealed, sizeof(sealed), &slen)
        != 0) {
        txcp_log(TXCP_LOG_ERROR, "provider credential not published",
                 "provider=%s", name);
        slen = 0;
    }

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_cstr(&wb, TX_PRV_NAME, name);
    tx_rec_put_u64(&wb, TX_PRV_KIND, txcp_provider_kind(p.kind));
    tx_rec_put_cstr(&wb, TX_PRV_BASE_URL, p.base_url);

    if (slen > 0) {
        tx_rec_put_bytes(&wb, TX_PRV_SEALED, sealed, slen);
    }

    cJSON_Delete(rec);

    if (wb.overflow) {
        return ENOMEM;
    }

    rc = txcp_snap_put(txn, TXCP_SDB_PROVIDERS, name, strlen(name), buf,
                       wb.pos - wb.start);

    return rc;
}


/* An 8-byte LE setting, deleted when 0 (the module's default applies). */
static int
txcp_pub_setting_u64(MDB_txn *txn, const char *name, uint64_t val)
{
    uint8_t v[8];

    if (val == 0) {
        return txcp_snap_del(txn, TXCP_SDB_SETTINGS, name, strlen(name));
    }

    txcp_put_le64(v, val);

    return txcp_snap_put(txn, TXCP_SDB_SETTINGS, name, strlen(name), v, 8);
}


/* TX_STRATEGY_* of the settings record's "routing_strategy" */
static uint64_t
txcp_pub_strategy(MDB_txn *rtxn)
{
    int         i;
    cJSON      *rec;
    const char *s;
    uint64_t    val;

    /* indexed by TX_STRATEGY_* */
    static const char *const names[] = {"ordered", "weighted", "latency",
                                        "cost"};

    rec = txcp_store_get(rtxn, TXCP_DB_SETTINGS, "settings");
    s = txcp_json_str(rec, "routing_strategy");
    val = TX_STRATEGY_ORDERED;

    for (i = 0; s && i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            val = (uint64_t) i;
        }
    }

    cJSON_Delete(rec);

    return val;
}


static int
txcp_pub_settings(MDB_txn *rtxn, MDB_txn *txn)
{
    int             rc;
    char           *targets;
    uint64_t        ppm;
    uint8_t         v[8];
    txcp_settings_t st;

    if (txcp_settings_get(rtxn, &targets, &ppm) != TX_OK) {
        return ENOMEM;
    }

    rc = txcp_snap_put(txn, TXCP_SDB_SETTINGS, TX_SET_PROXY_TARGETS,
                       strlen(TX_SET_PROXY_TARGETS), targets, strlen(targets));
    free(targets);

    if (rc != 0) {
        return rc;
    }

    txcp_put_le64(v, ppm);

    rc = txcp_snap_put(txn, TXCP_SDB_SETTINGS, TX_SET_SAMPLE_RATE,
                       strlen(TX_SET_SAMPLE_RATE), v, 8);
    if (rc != 0) {
        return rc;
    }

    txcp_settings_read(rtxn, &st);

    rc = txcp_pub_setting_u64(txn, TX_SET_DEFAULT_MAX_TOKENS,
                              st.default_max_tokens);
    if (rc != 0) {
        return rc;
    }

    rc = txcp_pub_setting_u64(txn, TX_SET_INSTANCE_DAILY_CAP,
                              (uint64_t) st.instance_daily_cap);
    if (rc != 0) {
        return rc;
    }

    rc = txcp_pub_setting_u64(txn, TX_SET_INSTANCE_SOFT_CAP,
                              (uint64_t) st.instance_soft_cap);
    if (rc != 0) {
        return rc;
    }

    /* always written, "ordered" (0) included: the module needs no default */

    txcp_put_le64(v, txcp_pub_strategy(rtxn));

    return txcp_snap_put(txn, TXCP_SDB_SETTINGS, TX_SET_ROUTING_STRATEGY,
                         strlen(TX_SET_ROUTING_STRATEGY), v, 8);
}


static int
txcp_pub_price(MDB_txn *rtxn, MDB_txn *txn, const char *model)
{
    uint8_t    buf[1024];
    cJSON     *rec;
    tx_price_t p;
    tx_wbuf_t  wb;
    int        rc;

    rec = txcp_store_get(rtxn, TXCP_DB_PRICES, model);

    if (rec == NULL || txcp_pricing_effective(rec, model, &p, NULL) != TX_OK) {
        cJSON_Delete(rec);
        return txcp_snap_del(txn, TXCP_SDB_PRICES, model, strlen(model));
    }

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_price_encode(&wb, &p);
    cJSON_Delete(rec);

    if (wb.overflow) {
        return ENOMEM;
    }

    rc = txcp_snap_put(txn, TXCP_SDB_PRICES, model, strlen(model), buf,
                       wb.pos - wb.start);

    return rc;
}


static int
txcp_pub_item(MDB_txn *rtxn, MDB_txn *txn, const txcp_pub_t *item, int64_t now)
{
    int    rc, db;
    cJSON *rec;

    switch (item->kind) {
    case TXCP_PUB_KEY:
        rec = txcp_store_get(rtxn, TXCP_DB_KEYS, item->id);
        rc = txcp_pub_key(txn, item, rec, now);
        cJSON_Delete(rec);
        return rc;

    case TXCP_PUB_ORG:
    case TXCP_PUB_USER:
    case TXCP_PUB_PROJECT:
        db = item->kind == TXCP_PUB_ORG    ? TXCP_DB_ORGS
             : item->kind == TXCP_PUB_USER ? TXCP_DB_USERS
                                           : TXCP_DB_PROJECTS;
        rec = txcp_store_get(rtxn, db, item->id);
        rc = txcp_pub_tenant(txn, item->kind, item->id, rec);
        cJSON_Delete(rec);
        return rc;

    case TXCP_PUB_PROVIDER:
        return txcp_pub_provider(rtxn, txn, item->id);

    case TXCP_PUB_SETTINGS:
        return txcp_pub_settings(rtxn, txn);

    case TXCP_PUB_PRICE:
        return txcp_pub_price(rtxn, txn, item->id);

    case TXCP_PUB_ROUTE:
        return txcp_pub_route(rtxn, txn, item->id);

    case TXCP_PUB_FALLBACK:
        return txcp_pub_fallback(rtxn, txn, item->id);

    case TXCP_PUB_AGENT:
        return txcp_pub_agent(rtxn, txn, item->id);
    }

    return EINVAL;
}


static int
txcp_publish_meta(MDB_txn *txn)
{
    int      rc;
    uint8_t  v[8];
    uint64_t cur;
    MDB_val  k, d;

    /* another writer (torrix-cp pricing import) may have bumped it */

    k.mv_data = TX_SNAP_META_GEN;
    k.mv_size = strlen(TX_SNAP_META_GEN);

    if (mdb_get(txn, txcp.sdb[TXCP_SDB_META], &k, &d) == 0 && d.mv_size == 8) {
        cur = txcp_get_le64(d.mv_data);

        if (cur > txcp.gen) {
            txcp.gen = cur;
        }
    }

    txcp.gen++;
    txcp_put_le64(v, txcp.gen);

    k.mv_data = TX_SNAP_META_GEN;
    k.mv_size = strlen(TX_SNAP_META_GEN);
    d.mv_data = v;
    d.mv_size = 8;

    rc = mdb_put(txn, txcp.sdb[TXCP_SDB_META], &k, &d, 0);
    if (rc != 0) {
        return rc;
    }

    txcp_put_le64(v, (uint64_t) txcp_now_us());

    k.mv_data = TX_SNAP_META_PUBLISHED_AT;
    k.mv_size = strlen(TX_SNAP_META_PUBLISHED_AT);

    return mdb_put(txn, txcp.sdb[TXCP_SDB_META], &k, &d, 0);
}


/*
 * Undoes a failed publish (logged by the caller): aborts the txns that are
 * open, restores the gen from before it and asks for a resync.  TX_ERROR.
 */
static int
txcp_publish_failed(MDB_txn *rtxn, MDB_txn *txn, uint64_t gen)
{
    if (txn) {
        mdb_txn_abort(txn);
    }

    if (rtxn) {
        mdb_txn_abort(rtxn);
    }

    txcp.gen = gen;
    txcp.resync_needed = 1;

    return TX_ERROR;
}


int
txcp_publish_begin(MDB_txn **rtxn, MDB_txn **txn)
{
    int rc;

    *txn = NULL;

    rc = mdb_txn_begin(txcp.store, NULL, MDB_RDONLY, rtxn);
    if (rc != 0) {
        *rtxn = NULL;
        return rc;
    }

    rc = mdb_txn_begin(txcp.snap, NULL, 0, txn);
    if (rc != 0) {
        mdb_txn_abort(*rtxn);
        *rtxn = NULL;
        *txn = NULL;
    }

    return rc;
}


int
txcp_publish_commit(MDB_txn *txn)
{
    int rc;

    rc = txcp_publish_meta(txn);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }

    return mdb_txn_commit(txn);
}


int
txcp_publish(const txcp_pub_t *items, size_t n)
{
    int      rc;
    size_t   i;
    uint64_t gen;
    MDB_txn *rtxn, *txn;

    rtxn = NULL;
    txn = NULL;
    gen = txcp.gen;

    rc = txcp_publish_begin(&rtxn, &txn);
    if (rc != 0) {
        goto failed;
    }

    for (i = 0; i < n; i++) {
        rc = txcp_pub_item(rtxn, txn, &items[i], txcp_now_us() / 1000000);
        if (rc != 0) {
            goto failed;
        }
    }

    rc = txcp_publish_commit(txn);
    txn = NULL;

    if (rc != 0) {
        goto failed;
    }

    mdb_txn_abort(rtxn);

    txcp_log(TXCP_LOG_DEBUG, "published", "gen=%llu records=%zu",
             (unsigned long long) txcp.gen, n);

    return TX_OK;

failed:

    txcp_log(TXCP_LOG_ERROR, "publish failed", "err=\"%s\"", mdb_strerror(rc));

    return txcp_publish_failed(rtxn, txn, gen);
}


int
txcp_publish_one(int kind, const char *id)
{
    txcp_pub_t item;

    memset(&item, 0, sizeof(item));
    item.kind = kind;
    snprintf(item.id, sizeof(item.id), "%s", id);

    return txcp_publish(&item, 1);
}


/* Publishes every record of a store db and deletes the strays. */
static int
txcp_resync_tenants(MDB_txn *rtxn, MDB_txn *txn, int db, int kind, int sdb,
                    int64_t now)
{
    int         rc;
    char        id[128];
    MDB_val     k, v;
    MDB_cursor *cur;
    txcp_pub_t  item;

    rc = mdb_cursor_open(rtxn, txcp.db[db], &cur);
    if (rc != 0) {
        return rc;
    }

    memset(&item, 0, sizeof(item));
    item.kind = kind;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size == 0 || k.mv_size >= sizeof(item.id)) {
            continue;
        }

        memcpy(item.id, k.mv_data, k.mv_size);
        item.id[k.mv_size] = '\0';

        rc = txcp_pub_item(rtxn, txn, &item, now);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(cur);

    if (rc != MDB_NOTFOUND) {
        return rc;
    }

    rc = mdb_cursor_open(txn, txcp.sdb[sdb], &cur);
    if (rc != 0) {
        return rc;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size > 0 && k.mv_size < sizeof(id)) {
            memcpy(id, k.mv_data, k.mv_size);
            id[k.mv_size] = '\0';

            if (kind == TXCP_PUB_PROVIDER
                    ? txcp_provider_get(rtxn, id, NULL, NULL) == TX_OK
                    : txcp_store_exists(rtxn, db, id))
            {
                continue;
            }
        }

        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(cur);

    return rc == MDB_NOTFOUND ? 0 : rc;
}


/* Deletes khash entries the store does not back. */
static int
txcp_resync_khash(MDB_txn *rtxn, MDB_txn *txn, int64_t now)
{
    int            rc, keep;
    char           id[128], hex[2 * TX_KEY_HASH_LEN + 1];
    const char    *s;
    cJSON         *rec;
    MDB_val        k, v;
    MDB_cursor    *cur;
    tx_khash_rec_t kh;

    rc = mdb_cursor_open(txn, txcp.sdb[TXCP_SDB_KHASH], &cur);
    if (rc != 0) {
        return rc;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        keep = 0;

        if (k.mv_size == TX_KEY_HASH_LEN
            && tx_khash_rec_decode(v.mv_data, v.mv_size, &kh) == TX_OK
            && kh.key_id.len > 0 && kh.key_id.len < sizeof(id))
        {
            memcpy(id, kh.key_id.data, kh.key_id.len);
            id[kh.key_id.len] = '\0';
            txcp_hex(k.mv_data, TX_KEY_HASH_LEN, hex);

            rec = txcp_store_get(rtxn, TXCP_DB_KEYS, id);
            s = txcp_json_str(rec, "status");

            if (rec && !(s && strcmp(s, "revoked") == 0)) {
                s = txcp_json_str(rec, "_hash");
                keep = s && strcmp(s, hex) == 0;

                s = txcp_json_str(rec, "_prev_hash");

                if (s && strcmp(s, hex) == 0
                    && txcp_json_int(rec, "_prev_not_after", 0) > now) {
                    keep = 1;
                }
            }

            cJSON_Delete(rec);
        }

        if (!keep) {
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0) {
                break;
            }
        }
    }

    mdb_cursor_close(cur);

    return rc == MDB_NOTFOUND ? 0 : rc;
}


/*
 * The store dbs a resync republishes, in order: the tenants and keys first
 * (the khash sweep follows them), then the rest (after the builtin
 * providers).
 */
#define TXCP_RESYNC_KEYS 4 /* entries before the khash sweep */

static const struct {
    int db;
    int kind;
    int sdb;
} txcp_resync_dbs[] = {
    {TXCP_DB_ORGS, TXCP_PUB_ORG, TXCP_SDB_ORGS},
    {TXCP_DB_USERS, TXCP_PUB_USER, TXCP_SDB_USERS},
    {TXCP_DB_PROJECTS, TXCP_PUB_PROJECT, TXCP_SDB_PROJECTS},
    {TXCP_DB_KEYS, TXCP_PUB_KEY, TXCP_SDB_KEYS},
    {TXCP_DB_PROVIDERS, TXCP_PUB_PROVIDER, TXCP_SDB_PROVIDERS},
    {TXCP_DB_PRICES, TXCP_PUB_PRICE, TXCP_SDB_PRICES},
    {TXCP_DB_ROUTES, TXCP_PUB_ROUTE, TXCP_SDB_ROUTES},
    {TXCP_DB_FALLBACKS, TXCP_PUB_FALLBACK, TXCP_SDB_FALLBACKS},
    {TXCP_DB_AGENTS, TXCP_PUB_AGENT, TXCP_SDB_AGENTS},
};


int
txcp_publish_resync(void)
{
    int         rc;
    size_t      i;
    int64_t     now;
    uint64_t    gen;
    MDB_txn    *rtxn, *txn;
    MDB_val     k, v;
    MDB_cursor *cur;
    txcp_pub_t  item;

    rtxn = NULL;
    txn = NULL;
    gen = txcp.gen;
    now = txcp_now_us() / 1000000;

    rc = txcp_publish_begin(&rtxn, &txn);
    if (rc != 0) {
        goto failed;
    }

    for (i = 0; i < TXCP_RESYNC_KEYS; i++) {
        rc = txcp_resync_tenants(rtxn, txn, txcp_resync_dbs[i].db,
                                 txcp_resync_dbs[i].kind,
                                 txcp_resync_dbs[i].sdb, now);
        if (rc != 0) {
            goto failed;
        }
    }

    rc = txcp_resync_khash(rtxn, txn, now);
    if (rc != 0) {
        goto failed;
    }

    memset(&item, 0, sizeof(item));
    item.kind = TXCP_PUB_PROVIDER;

    for (i = 0; txcp_builtin_providers[i]; i++) {
        snprintf(item.id, sizeof(item.id), "%s", txcp_builtin_providers[i]);

        rc = txcp_pub_item(rtxn, txn, &item, now);
        if (rc != 0) {
            goto failed;
        }
    }

    for (i = TXCP_RESYNC_KEYS;
         i < sizeof(txcp_resync_dbs) / sizeof(txcp_resync_dbs[0]); i++)
    {
        rc = txcp_resync_tenants(rtxn, txn, txcp_resync_dbs[i].db,
                                 txcp_resync_dbs[i].kind,
                                 txcp_resync_dbs[i].sdb, now);
        if (rc != 0) {
            goto failed;
        }
    }

    rc = txcp_spend_resync(rtxn, txn);
    if (rc != 0) {
        goto failed;
    }

    rc = txcp_pub_settings(rtxn, txn);
    if (rc != 0) {
        goto failed;
    }

    /* settings the publisher does not know are stale */

    rc = mdb_cursor_open(txn, txcp.sdb[TXCP_SDB_SETTINGS], &cur);
    if (rc != 0) {
        goto failed;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if ((k.mv_size == strlen(TX_SET_PROXY_TARGETS)
             && memcmp(k.mv_data, TX_SET_PROXY_TARGETS, k.mv_size) == 0)
            || (k.mv_size == strlen(TX_SET_SAMPLE_RATE)
                && memcmp(k.mv_data, TX_SET_SAMPLE_RATE, k.mv_size) == 0)
            || (k.mv_size == strlen(TX_SET_DEFAULT_MAX_TOKENS)
                && memcmp(k.mv_data, TX_SET_DEFAULT_MAX_TOKENS, k.mv_size) == 0)
            || (k.mv_size == strlen(TX_SET_INSTANCE_DAILY_CAP)
                && memcmp(k.mv_data, TX_SET_INSTANCE_DAILY_CAP, k.mv_size) == 0)
            || (k.mv_size == strlen(TX_SET_INSTANCE_SOFT_CAP)
                && memcmp(k.mv_data, TX_SET_INSTANCE_SOFT_CAP, k.mv_size) == 0)
            || (k.mv_size == strlen(TX_SET_ROUTING_STRATEGY)
                && memcmp(k.mv_data, TX_SET_ROUTING_STRATEGY, k.mv_size) == 0))
        {
            continue;
        }

        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(cur);

    if (rc != MDB_NOTFOUND) {
        goto failed;
    }

    rc = txcp_publish_commit(txn);
    txn = NULL;

    if (rc != 0) {
        goto failed;
    }

    mdb_txn_abort(rtxn);

    txcp.resync_needed = 0;

    txcp_log(TXCP_LOG_INFO, "snapshot resynced", "gen=%llu",
             (unsigned long long) txcp.gen);

    return TX_OK;

failed:

    txcp_log(TXCP_LOG_ERROR, "snapshot resync failed", "err=\"%s\"",
             mdb_strerror(rc));

    return txcp_publish_failed(rtxn, txn, gen);
}


int
txcp_snapshot_open(void)
{
    int         rc, i;
    char        path[4096];
    uint8_t     v8[8];
    MDB_txn    *txn;
    MDB_val     k, v;
    struct stat st;

    txn = NULL;

    snprintf(path, sizeof(path), "%s/snapshot", txcp.conf.data_dir);

    if (stat(path, &st) != 0 && mkdir(path, 0750) != 0) {
        txcp_log(TXCP_LOG_ERROR, "mkdir failed", "path=%s err=\"%s\"", path,
                 strerror(errno));
        return TX_ERROR;
    }

    rc = mdb_env_create(&txcp.snap);
    if (rc != 0) {
        goto failed;
    }

    mdb_env_set_maxdbs(txcp.snap, TX_SNAP_MAX_DBS);
    mdb_env_set_maxreaders(txcp.snap,
                           (unsigned int) txcp.conf.snapshot_maxreaders);
    mdb_env_set_mapsize(txcp.snap, txcp.conf.snapshot_mapsize);

    rc = mdb_env_open(txcp.snap, path, MDB_NOTLS, 0660);
    if (rc != 0) {
        goto failed;
    }

    rc = mdb_txn_begin(txcp.snap, NULL, 0, &txn);
    if (rc != 0) {
        goto failed;
    }

    for (i = 0; i < TXCP_SDB_N; i++) {
        rc = mdb_dbi_open(txn, txcp_sdb_names[i], MDB_CREATE, &txcp.sdb[i]);
        if (rc != 0) {
            goto failed;
        }
    }

    k.mv_data = TX_SNAP_META_GEN;
    k.mv_size = strlen(TX_SNAP_META_GEN);

    if (mdb_get(txn, txcp.sdb[TXCP_SDB_META], &k, &v) == 0 && v.mv_size == 8) {
        txcp.gen = txcp_get_le64(v.mv_data);
    }

    txcp_put_le64(v8, TX_SNAP_SCHEMA);

    rc = txcp_snap_put(txn, TXCP_SDB_META, TX_SNAP_META_SCHEMA,
                       strlen(TX_SNAP_META_SCHEMA), v8, 8);
    if (rc != 0) {
        goto failed;
    }

    rc = txcp_snap_put(txn, TXCP_SDB_META, TX_SNAP_META_HASH_KEY,
                       strlen(TX_SNAP_META_HASH_KEY), txcp.hash_key,
                       TX_KEY_HASHKEY_LEN);
    if (rc != 0) {
        goto failed;
    }

    rc = mdb_txn_commit(txn);
    txn = NULL;

    if (rc != 0) {
        goto failed;
    }

    return TX_OK;

failed:

    txcp_log(TXCP_LOG_ERROR, "snapshot open failed", "path=%s err=\"%s\"", path,
             mdb_strerror(rc));

    if (txn) {
        mdb_txn_abort(txn);
    }

    if (txcp.snap) {
        mdb_env_close(txcp.snap);
        txcp.snap = NULL;
    }

    return TX_ERROR;
}


void
txcp_snapshot_close(void)
{
    if (txcp.snap) {
        mdb_env_close(txcp.snap);
        txcp.snap = NULL;
    }
}


void
txcp_snapshot_reader_check(void)
{
    int dead;

    dead = 0;

    if (txcp.snap && mdb_reader_check(txcp.snap, &dead) == 0 && dead > 0) {
        txcp_log(TXCP_LOG_WARN, "cleared stale snapshot readers", "count=%d",
                 dead);
    }
}

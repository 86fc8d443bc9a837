/*
 * ngx_torrix_module: a per-worker memo of snapshot values that most
 * requests share (the hash key, settings, providers with their upstream
 * strings prebuilt, model prices), valid for one snapshot generation.
 *
 * Each read transaction starts by reading its LMDB transaction id; when it
 * changed (every torrix-cp publish), the memo is dropped with its pool and
 * refilled lazily from that transaction, so a value is never older than the
 * snapshot the request reads.  Callers copy what must outlive the current
 * event-loop iteration into the request pool: the memo may be dropped by the
 * next one.
 */

#include "ngx_http_torrix_module.h"

#include <sodium.h>


#define NGX_HTTP_TORRIX_CACHE_PROVIDERS 32
#define NGX_HTTP_TORRIX_CACHE_PRICES    256


typedef struct {
    uint32_t   hash;
    ngx_str_t  model;
    ngx_uint_t found;
    tx_price_t price;
} ngx_http_torrix_cached_price_t;


typedef struct {
    uint64_t    gen;
    uint64_t    seq;
    ngx_uint_t  valid;
    ngx_pool_t *pool;

    unsigned has_hash_key : 1;
    unsigned loaded_settings : 1;
    uint8_t  hash_key[TX_KEY_HASHKEY_LEN];

    int64_t   settings[NGX_HTTP_TORRIX_SET_N];
    ngx_str_t proxy_targets;
    int64_t   watermark_us;

    ngx_uint_t                 nproviders;
    ngx_http_torrix_provider_t providers[NGX_HTTP_TORRIX_CACHE_PROVIDERS];

    ngx_uint_t                     nprices;
    ngx_http_torrix_cached_price_t prices[NGX_HTTP_TORRIX_CACHE_PRICES];

    unsigned                loaded_rules : 1;
    ngx_uint_t              nrules;
    ngx_http_torrix_rule_t *rules;
} ngx_http_torrix_cache_t;


static ngx_int_t ngx_http_torrix_cache_load_settings(MDB_txn *txn);
static ngx_int_t ngx_http_torrix_cache_build_provider(
    ngx_http_torrix_provider_t *p, tx_provider_rec_t *rec);


/*
 * Admission plans per key: the scopes, caps and ingested spend a key's
 * requests are checked against, a pure function of the snapshot generation
 * and the UTC day.  Kept outside the memo proper so a new generation costs
 * no memset: an entry is valid when its stamp matches.
 */
#define NGX_HTTP_TORRIX_CACHE_PLANS 1024

typedef struct {
    uint64_t               seq;
    uint32_t               hash;
    uint32_t               day;
    ngx_http_torrix_plan_t plan;
    size_t                 key_len;
    u_char                 key_id[TX_ID_MAX_LEN];
} ngx_http_torrix_cached_plan_t;


/*
 * Verified keys: a key the full check found (BLAKE2b of the secret, then the
 * khash and keys lookups) is remembered for the generation under a
 * SipHash-2-4-128 tag of its secret, keyed with random bytes each worker
 * draws for itself, so the next request with that secret skips the BLAKE2b
 * and both lookups.  Only the tag is kept, never the secret: matching an
 * entry takes the secret itself (or about 2^128 tries against a key the
 * attacker never sees), and tags are compared in constant time.  Found keys
 * only: an unknown secret always takes the full check.  Everything that
 * depends on time (expiry, a rotated secret's grace) is still checked per
 * request, from the remembered values.
 */
#define NGX_HTTP_TORRIX_CACHE_KEYS 2048

typedef struct {
    uint64_t     seq;
    uint8_t      tag[NGX_HTTP_TORRIX_KEY_TAG_LEN];
    int64_t      not_after;
    tx_key_rec_t key; /* strings in the memo's pool */
} ngx_http_torrix_cached_key_t;


static ngx_http_torrix_cache_t ngx_http_torrix_cache;
static ngx_http_torrix_cached_key_t
               ngx_http_torrix_keys[NGX_HTTP_TORRIX_CACHE_KEYS];
static uint8_t ngx_http_torrix_keys_salt[crypto_shorthash_siphashx24_KEYBYTES];
static ngx_uint_t ngx_http_torrix_keys_salted;
static ngx_http_torrix_cached_plan_t
                ngx_http_torrix_plans[NGX_HTTP_TORRIX_CACHE_PLANS];
static uint64_t ngx_http_torrix_cache_seq;

/* clang-format off */
static const struct {
    const char  *name;
    int64_t      dflt;
} ngx_http_torrix_settings[NGX_HTTP_TORRIX_SET_N] = {
    { TX_SET_SAMPLE_RATE, 1000000 },
    { TX_SET_DEFAULT_MAX_TOKENS, 4096 },
    { TX_SET_INSTANCE_DAILY_CAP, 0 },
    { TX_SET_INSTANCE_SOFT_CAP, 0 },
    { TX_SET_ROUTING_STRATEGY, TX_STRATEGY_ORDERED },
};
/* clang-format on */


ngx_int_t
ngx_http_torrix_cache_sync(MDB_txn *txn, ngx_log_t *log)
{
    uint64_t                 gen;
    ngx_http_torrix_cache_t *c;

    c = &ngx_http_torrix_cache;

    /*
     * the snapshot's transaction id: every publish is a commit, so it moves
     * whenever anything in the snapshot does, and costs no lookup (reopening
     * a replaced snapshot file drops the memo, see _snapshot.c)
     */
    gen = (uint64_t) mdb_txn_id(txn);

    if (c->valid && c->gen == gen) {
        return NGX_OK;
    }

    if (c->pool) {
        ngx_destroy_pool(c->pool);
    }

    ngx_memzero(c, sizeof(ngx_http_torrix_cache_t));

    /* the cycle's log: the pool outlives the request that made it */
    c->pool = ngx_create_pool(4096, ngx_cycle->log);
    if (c->pool == NULL) {
        return NGX_ERROR;
    }

    c->gen = gen;
    c->valid = 1;

    /* a distinct stamp per memo lifetime, even if gen values repeat */
    c->seq = ++ngx_http_torrix_cache_seq;

    return NGX_OK;
}


void
ngx_http_torrix_cache_drop(void)
{
    if (ngx_http_torrix_cache.pool) {
        ngx_destroy_pool(ngx_http_torrix_cache.pool);
    }

    ngx_memzero(&ngx_http_torrix_cache, sizeof(ngx_http_torrix_cache_t));
}


const uint8_t *
ngx_http_torrix_cache_hash_key(MDB_txn *txn)
{
    tx_str_t                 val;
    ngx_http_torrix_cache_t *c;

    c = &ngx_http_torrix_cache;

    if (!c->has_hash_key) {
        if (ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_META,
                                         TX_SNAP_META_HASH_KEY,
                                         sizeof(TX_SNAP_META_HASH_KEY) - 1,
                                         &val)
                != TX_OK
            || val.len != TX_KEY_HASHKEY_LEN)
        {
            return NULL;
        }

        ngx_memcpy(c->hash_key, val.data, TX_KEY_HASHKEY_LEN);
        c->has_hash_key = 1;
    }

    return c->hash_key;
}


static ngx_int_t
ngx_http_torrix_cache_load_settings(MDB_txn *txn)
{
    u_char                  *p;
    ngx_uint_t               i;
    tx_str_t                 val;
    ngx_http_torrix_cache_t *c;

    c = &ngx_http_torrix_cache;

    for (i = 0; i < NGX_HTTP_TORRIX_SET_N; i++) {
        c->settings[i] = ngx_http_torrix_settings[i].dflt;

        if (ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_SETTINGS,
                                         ngx_http_torrix_settings[i].name,
                                         ngx_strlen(
                                             ngx_http_torrix_settings[i].name),
                                         &val)
                == TX_OK
            && val.len == 8)
        {
            ngx_memcpy(&c->settings[i], val.data, 8);
        }
    }

    if (ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_SETTINGS,
                                     TX_SET_PROXY_TARGETS,
                                     sizeof(TX_SET_PROXY_TARGETS) - 1, &val)
        != TX_OK)
    {
        val.data = (const uint8_t *) tx_url_default_targets;
        val.len = ngx_strlen(tx_url_default_targets);
    }

    p = ngx_pnalloc(c->pool, val.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, val.data, val.len);
    c->proxy_targets.data = p;
    c->proxy_targets.len = val.len;

    c->watermark_us = 0;

    if (ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_META,
                                     TX_SNAP_META_WATERMARK,
                                     sizeof(TX_SNAP_META_WATERMARK) - 1, &val)
            == TX_OK
        && val.len == 8)
    {
        ngx_memcpy(&c->watermark_us, val.data, 8);
    }

    c->loaded_settings = 1;

    return NGX_OK;
}


int64_t
ngx_http_torrix_cache_setting(MDB_txn *txn, ngx_http_torrix_setting_e which)
{
    ngx_http_torrix_cache_t *c;

    c = &ngx_http_torrix_cache;

    if (!c->loaded_settings
        && ngx_http_torrix_cache_load_settings(txn) != NGX_OK) {
        return ngx_http_torrix_settings[which].dflt;
    }

    return c->settings[which];
}


ngx_str_t *
ngx_http_torrix_cache_proxy_targets(MDB_txn *txn)
{
    ngx_http_torrix_cache_t *c;

    c = &ngx_http_torrix_cache;

    if (!c->loaded_settings
        && ngx_http_torrix_cache_load_settings(txn) != NGX_OK) {
        return NULL;
    }

    return &c->proxy_targets;
}


int64_t
ngx_http_torrix_cache_watermark(MDB_txn *txn)
{
    ngx_http_torrix_cache_t *c;

    c = &ngx_http_torrix_cache;

    if (!c->loaded_settings
        && ngx_http_torrix_cache_load_settings(txn) != NGX_OK) {
        return 0;
    }

    return c->watermark_us;
}


ngx_http_torrix_provider_t *
ngx_http_torrix_cache_provider(MDB_txn *txn, ngx_str_t *name)
{
    ngx_uint_t                  i;
    tx_str_t                    val;
    tx_provider_rec_t           rec;
    ngx_http_torrix_cache_t    *c;
    ngx_http_torrix_provider_t *p;

    c = &ngx_http_torrix_cache;

    for (i = 0; i < c->nproviders; i++) {
        p = &c->providers[i];

        if (p->name.len == name->len
            && ngx_strncmp(p->name.data, name->data, name->len) == 0)
        {
            return p->found ? p : NULL;
        }
    }

    if (c->nproviders == NGX_HTTP_TORRIX_CACHE_PROVIDERS) {
        c->nproviders = 0;
    }

    p = &c->providers[c->nproviders];
    ngx_memzero(p, sizeof(ngx_http_torrix_provider_t));

    p->name.data = ngx_pnalloc(c->pool, name->len);
    if (p->name.data == NULL) {
        return NULL;
    }

    ngx_memcpy(p->name.data, name->data, name->len);
    p->name.len = name->len;

    if (ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_PROVIDERS,
                                     name->data, name->len, &val)
            == TX_OK
        && tx_provider_rec_decode(val.data, val.len, &rec) == TX_OK
        && rec.base_url.len)
    {
        p->found = 1;

        if (ngx_http_torrix_cache_build_provider(p, &rec) != NGX_OK) {
            return NULL;
        }
    }

    c->nproviders++;

    return p->found ? p : NULL;
}


/*
 * The router rules, read once per generation: there are few, and matching
 * wildcards needs them all.  A corrupt record is skipped.
 */
ngx_http_torrix_rule_t *
ngx_http_torrix_cache_rules(MDB_txn *txn, ngx_uint_t *n)
{
    u_char                  *p;
    uint16_t                 tag;
    tx_str_t                 k, v, f;
    tx_rec_iter_t            it;
    ngx_array_t              a;
    ngx_http_torrix_rule_t  *rule;
    ngx_http_torrix_cache_t *c;
    void                    *cur;

    c = &ngx_http_torrix_cache;

    if (c->loaded_rules) {
        *n = c->nrules;
        return c->rules;
    }

    *n = 0;

    if (ngx_array_init(&a, c->pool, 8, sizeof(ngx_http_torrix_rule_t))
        != NGX_OK) {
        return NULL;
    }

    cur = NULL;

    while (ngx_http_torrix_snapshot_next(txn, NGX_HTTP_TORRIX_DB_ROUTES, &cur,
                                         &k, &v)
           == TX_OK)
    {
        rule = ngx_array_push(&a);
        if (rule == NULL) {
            ngx_http_torrix_snapshot_close_cursor(cur);
            return NULL;
        }

        ngx_memzero(rule, sizeof(ngx_http_torrix_rule_t));

        p = ngx_pnalloc(c->pool, v.len);
        if (p == NULL) {
            ngx_http_torrix_snapshot_close_cursor(cur);
            return NULL;
        }

        ngx_memcpy(p, v.data, v.len);
        tx_rec_iter_init(&it, p, v.len);

        while (tx_rec_next(&it, &tag, &f) == TX_OK) {
            switch (tag) {
            case TX_RT_ID:
                rule->id.data = (u_char *) f.data;
                rule->id.len = f.len;
                break;
            case TX_RT_ORG:
                rule->org.data = (u_char *) f.data;
                rule->org.len = f.len;
                break;
            case TX_RT_PATTERN:
                rule->pattern.data = (u_char *) f.data;
                rule->pattern.len = f.len;
                break;
            case TX_RT_TARGET:
                rule->target.data = (u_char *) f.data;
                rule->target.len = f.len;
                break;
            }
        }

        if (rule->pattern.len == 0 || rule->target.len == 0) {
            a.nelts--;
            continue;
        }

        rule->glob = ngx_strlchr(rule->pattern.data,
                                 rule->pattern.data + rule->pattern.len, '*')
                     != NULL;
    }

    c->rules = a.elts;
    c->nrules = a.nelts;
    c->loaded_rules = 1;

    *n = c->nrules;

    return c->rules;
}


/* the upstream strings of a provider, prebuilt once per generation */
static ngx_int_t
ngx_http_torrix_cache_build_provider(ngx_http_torrix_provider_t *p,
                                     tx_provider_rec_t          *rec)
{
    u_char     *s;
    tx_url_t    u;
    ngx_pool_t *pool;
    ngx_str_t   key;

    pool = ngx_http_torrix_cache.pool;

    p->kind = rec->kind;

    s = ngx_pnalloc(pool, rec->base_url.len + rec->api_key.len + 1);
    if (s == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s, rec->base_url.data, rec->base_url.len);
    p->base_url.data = s;
    p->base_url.len = rec->base_url.len;

    key.data = s + rec->base_url.len;
    key.len = rec->api_key.len;

    if (key.len) {
        ngx_memcpy(key.data, rec->api_key.data, key.len);
    }

    if (rec->sealed.len
        && ngx_http_torrix_creds_open(&p->name, &rec->sealed, pool, &key)
               == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    if (tx_url_parse(p->base_url.data, p->base_url.len, &u) != TX_OK) {
        p->bad_url = 1;
        return NGX_OK;
    }

    /* OpenAI-style base URLs carry the version: the path without a '/' */
    p->path.data = (u_char *) u.path.data;
    p->path.len = u.path.len;

    while (p->path.len && p->path.data[p->path.len - 1] == '/') {
        p->path.len--;
    }

    if (ngx_http_torrix_upstream_name(pool, &u, &p->upstream, &p->host)
        != NGX_OK) {
        return NGX_ERROR;
    }

    if (key.len) {
        if (p->kind == TX_PROVIDER_ANTHROPIC) {
            p->api_key = key;

        } else {
            p->authorization.len = sizeof("Bearer ") - 1 + key.len;
            p->authorization.data = ngx_pnalloc(pool, p->authorization.len);
            if (p->authorization.data == NULL) {
                return NGX_ERROR;
            }

            ngx_sprintf(p->authorization.data, "Bearer %V", &key);
        }
    }

    return NGX_OK;
}


/* the memo's entry for a model, or NULL; *hash is the model's hash */
static ngx_http_torrix_cached_price_t *
ngx_http_torrix_cache_price_find(const u_char *model, size_t len,
                                 uint32_t *hash)
{
    ngx_uint_t                      i;
    ngx_http_torrix_cache_t        *c;
    ngx_http_torrix_cached_price_t *e;

    c = &ngx_http_torrix_cache;
    *hash = tx_crc32(0, model, len);

    for (i = 0; i < c->nprices; i++) {
        e = &c->prices[i];

        if (e->hash == *hash && e->model.len == len
            && ngx_memcmp(e->model.data, model, len) == 0)
        {
            return e;
        }
    }

    return NULL;
}


const tx_price_t *
ngx_http_torrix_cache_price(MDB_txn *txn, const u_char *model, size_t len)
{
    uint32_t                        hash;
    tx_str_t                        val;
    ngx_http_torrix_cache_t        *c;
    ngx_http_torrix_cached_price_t *e;

    c = &ngx_http_torrix_cache;

    if (len == 0) {
        return NULL;
    }

    e = ngx_http_torrix_cache_price_find(model, len, &hash);
    if (e) {
        return e->found ? &e->price : NULL;
    }

    if (c->nprices == NGX_HTTP_TORRIX_CACHE_PRICES) {
        c->nprices = 0;
    }

    e = &c->prices[c->nprices];
    ngx_memzero(e, sizeof(ngx_http_torrix_cached_price_t));

    e->model.data = ngx_pnalloc(c->pool, len);
    if (e->model.data == NULL) {
        return NULL;
    }

    ngx_memcpy(e->model.data, model, len);
    e->model.len = len;
    e->hash = hash;

    if (ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_PRICES, model, len,
                                     &val)
            == TX_OK
        && tx_price_decode(val.data, val.len, &e->price) == TX_OK)
    {
        /* the provider name borrows the value: a copy in the memo */
        if (e->price.provider.len) {
            u_char *p;

            p = ngx_pnalloc(c->pool, e->price.provider.len);
            if (p == NULL) {
                e->price.provider.len = 0;

            } else {
                ngx_memcpy(p, e->price.provider.data, e->price.provider.len);
            }

            e->price.provider.data = p;
        }

        e->found = 1;
    }

    c->nprices++;

    return e->found ? &e->price : NULL;
}


/*
 * The price the memo already holds, without a transaction: *known is set
 * when the memo has an answer for the model (priced or not).  The memo is at
 * most one publish old: the next transaction of any request refreshes it.
 */
const tx_price_t *
ngx_http_torrix_cache_price_peek(const u_char *model, size_t len,
                                 ngx_uint_t *known)
{
    uint32_t                        hash;
    ngx_http_torrix_cached_price_t *e;

    *known = 0;

    if (!ngx_http_torrix_cache.valid || len == 0) {
        return NULL;
    }

    e = ngx_http_torrix_cache_price_find(model, len, &hash);
    if (e == NULL) {
        return NULL;
    }

    *known = 1;

    return e->found ? &e->price : NULL;
}


void
ngx_http_torrix_cache_key_tag(const u_char *secret, size_t len, uint8_t *tag)
{
    if (!ngx_http_torrix_keys_salted) {
        /* this worker's own, drawn after the fork */
        randombytes_buf(ngx_http_torrix_keys_salt,
                        sizeof(ngx_http_torrix_keys_salt));
        ngx_http_torrix_keys_salted = 1;
    }

    (void) crypto_shorthash_siphashx24(tag, secret, len,
                                       ngx_http_torrix_keys_salt);
}


/*
 * Two tags equal, in constant time: both words are compared whole and the
 * differences folded before the one test (what sodium_memcmp does byte by
 * byte, without its call and per-byte loop on the hot path).
 */
static ngx_inline ngx_uint_t
ngx_http_torrix_tag_eq(const uint8_t *a, const uint8_t *b)
{
    uint64_t a0, a1, b0, b1;

    ngx_memcpy(&a0, a, 8);
    ngx_memcpy(&a1, a + 8, 8);
    ngx_memcpy(&b0, b, 8);
    ngx_memcpy(&b1, b + 8, 8);

    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}


static ngx_http_torrix_cached_key_t *
ngx_http_torrix_cache_key_slot(const uint8_t *tag)
{
    uint32_t h;

    ngx_memcpy(&h, tag, sizeof(h));

    return &ngx_http_torrix_keys[h % NGX_HTTP_TORRIX_CACHE_KEYS];
}


const tx_key_rec_t *
ngx_http_torrix_cache_key_get(const uint8_t *tag, int64_t *not_after)
{
    ngx_http_torrix_cached_key_t *e;

    if (!ngx_http_torrix_cache.valid) {
        return NULL;
    }

    e = ngx_http_torrix_cache_key_slot(tag);

    if (e->seq != ngx_http_torrix_cache.seq
        || !ngx_http_torrix_tag_eq(e->tag, tag)) {
        return NULL;
    }

    *not_after = e->not_after;

    return &e->key;
}


static ngx_int_t
ngx_http_torrix_cache_str(ngx_pool_t *pool, tx_str_t *dst, const tx_str_t *src)
{
    u_char *p;

    dst->len = src->len;
    dst->data = NULL;

    if (src->len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, src->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, src->data, src->len);
    dst->data = p;

    return NGX_OK;
}


void
ngx_http_torrix_cache_key_put(const uint8_t *tag, int64_t not_after,
                              const tx_key_rec_t *key)
{
    tx_key_rec_t                  k;
    ngx_pool_t                   *pool;
    ngx_http_torrix_cached_key_t *e;

    if (!ngx_http_torrix_cache.valid) {
        return;
    }

    pool = ngx_http_torrix_cache.pool;
    k = *key;

    if (ngx_http_torrix_cache_str(pool, &k.id, &key->id) != NGX_OK
        || ngx_http_torrix_cache_str(pool, &k.name, &key->name) != NGX_OK
        || ngx_http_torrix_cache_str(pool, &k.project, &key->project) != NGX_OK
        || ngx_http_torrix_cache_str(pool, &k.user, &key->user) != NGX_OK
        || ngx_http_torrix_cache_str(pool, &k.org, &key->org) != NGX_OK
        || ngx_http_torrix_cache_str(pool, &k.models, &key->models) != NGX_OK
        || ngx_http_torrix_cache_str(pool, &k.metadata, &key->metadata)
               != NGX_OK)
    {
        return;
    }

    e = ngx_http_torrix_cache_key_slot(tag);

    e->seq = ngx_http_torrix_cache.seq;
    ngx_memcpy(e->tag, tag, NGX_HTTP_TORRIX_KEY_TAG_LEN);
    e->not_after = not_after;
    e->key = k;
}


static ngx_http_torrix_cached_plan_t *
ngx_http_torrix_cache_plan_slot(ngx_str_t *key_id, uint32_t *hash)
{
    *hash = tx_crc32(0, key_id->data, key_id->len);

    return &ngx_http_torrix_plans[*hash % NGX_HTTP_TORRIX_CACHE_PLANS];
}


const ngx_http_torrix_plan_t *
ngx_http_torrix_cache_plan_get(ngx_str_t *key_id, uint32_t day)
{
    uint32_t                       hash;
    ngx_http_torrix_cached_plan_t *e;

    if (!ngx_http_torrix_cache.valid || key_id->len > TX_ID_MAX_LEN) {
        return NULL;
    }

    e = ngx_http_torrix_cache_plan_slot(key_id, &hash);

    if (e->seq != ngx_http_torrix_cache.seq || e->hash != hash || e->day != day
        || e->key_len != key_id->len
        || ngx_memcmp(e->key_id, key_id->data, key_id->len) != 0)
    {
        return NULL;
    }

    return &e->plan;
}


void
ngx_http_torrix_cache_plan_put(ngx_str_t *key_id, uint32_t day,
                               const ngx_http_torrix_plan_t *plan)
{
    uint32_t                       hash;
    ngx_http_torrix_cached_plan_t *e;

    if (!ngx_http_torrix_cache.valid || key_id->len > TX_ID_MAX_LEN) {
        return;
    }

    e = ngx_http_torrix_cache_plan_slot(key_id, &hash);

    e->seq = ngx_http_torrix_cache.seq;
    e->hash = hash;
    e->day = day;
    e->key_len = key_id->len;
    ngx_memcpy(e->key_id, key_id->data, key_id->len);
    e->plan = *plan;
}

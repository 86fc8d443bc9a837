/*
 * ngx_torrix_module: the access phase.
 *
 * In order: endpoint, key (snapshot read txn #1), read-only keys, the body
 * (read with the mirror module's re-entry pattern), JSON and model
 * allowlist, upstream choice (snapshot read txn #2).  A refusal is answered
 * here in the client's provider shape; an admitted request continues to the
 * proxy module with the $torrix_upstream* variables set.  Each snapshot txn
 * is reset before returning to the event loop.
 */

#include "ngx_http_torrix_module.h"


typedef struct {
    ngx_str_t               suffix;
    ngx_uint_t              endpoint;
    ngx_uint_t              method;
    ngx_http_torrix_shape_e shape;
} ngx_http_torrix_endpoint_t;


static void                   ngx_http_torrix_own_headers(ngx_http_request_t    *r,
                                                          ngx_http_torrix_ctx_t *ctx);
static ngx_http_torrix_ctx_t *ngx_http_torrix_ctx_new(ngx_http_request_t *r);
static ngx_int_t              ngx_http_torrix_check_args(ngx_http_request_t    *r,
                                                         ngx_http_torrix_ctx_t *ctx);
static ngx_int_t              ngx_http_torrix_finish(ngx_http_request_t    *r,
                                                     ngx_http_torrix_ctx_t *ctx);
static void      ngx_http_torrix_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_torrix_next(ngx_http_request_t    *r,
                                      ngx_http_torrix_ctx_t *ctx);
static ngx_int_t ngx_http_torrix_jump(ngx_http_request_t    *r,
                                      ngx_http_torrix_ctx_t *ctx,
                                      ngx_uint_t             named);
static ngx_int_t ngx_http_torrix_endpoint(ngx_http_request_t    *r,
                                          ngx_http_torrix_ctx_t *ctx);
static ngx_int_t ngx_http_torrix_check_key(ngx_http_request_t    *r,
                                           ngx_http_torrix_ctx_t *ctx);
static ngx_int_t ngx_http_torrix_check_body(ngx_http_request_t    *r,
                                            ngx_http_torrix_ctx_t *ctx);
static ngx_int_t ngx_http_torrix_route(ngx_http_request_t    *r,
                                       ngx_http_torrix_ctx_t *ctx);
static ngx_int_t ngx_http_torrix_route_proxy(ngx_http_request_t    *r,
                                             ngx_http_torrix_ctx_t *ctx);

static ngx_uint_t ngx_http_torrix_bearer(const u_char *p);
static u_char    *ngx_http_torrix_copy_to(u_char *p, ngx_str_t *dst,
                                          const tx_str_t *src);
static ngx_int_t  ngx_http_torrix_copy(ngx_pool_t *pool, ngx_str_t *dst,
                                       const tx_str_t *src);
static ngx_int_t  ngx_http_torrix_inject_usage(ngx_http_request_t    *r,
                                               ngx_http_torrix_ctx_t *ctx,
                                               ngx_str_t             *body,
                                               tx_json_req_t         *req);
static ngx_int_t  ngx_http_torrix_sample(ngx_http_request_t    *r,
                                         ngx_http_torrix_ctx_t *ctx,
                                         MDB_txn               *txn);


/* clang-format off */
static ngx_http_torrix_endpoint_t  ngx_http_torrix_endpoints[] = {
    { ngx_string("/v1/chat/completions"), TX_EP_CHAT, NGX_HTTP_POST,
      NGX_HTTP_TORRIX_SHAPE_OPENAI },
    { ngx_string("/v1/completions"), TX_EP_COMPLETIONS, NGX_HTTP_POST,
      NGX_HTTP_TORRIX_SHAPE_OPENAI },
    { ngx_string("/v1/embeddings"), TX_EP_EMBEDDINGS, NGX_HTTP_POST,
      NGX_HTTP_TORRIX_SHAPE_OPENAI },
    { ngx_string("/v1/responses"), TX_EP_RESPONSES, NGX_HTTP_POST,
      NGX_HTTP_TORRIX_SHAPE_OPENAI },
    { ngx_string("/v1/models"), TX_EP_MODELS, NGX_HTTP_GET,
      NGX_HTTP_TORRIX_SHAPE_OPENAI },
    { ngx_string("/v1/messages"), TX_EP_MESSAGES, NGX_HTTP_POST,
      NGX_HTTP_TORRIX_SHAPE_ANTHROPIC },
    { ngx_string("/proxy"), TX_EP_PROXY, 0,
      NGX_HTTP_TORRIX_SHAPE_OPENAI },
    { ngx_null_string, 0, 0, 0 }
};
/* clang-format on */


ngx_int_t
ngx_http_torrix_access_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    uint8_t                     rnd[10];
    ngx_http_torrix_ctx_t      *ctx;
    ngx_http_torrix_loc_conf_t *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_torrix_module);

    if (!tlcf->enable) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_torrix_get_ctx(r);

    if (ctx) {
        if (!ctx->done) {
            return NGX_DONE;
        }

        if (ctx->status == NGX_OK && ctx->ncands) {
            return ngx_http_torrix_next(r, ctx);
        }

        return ngx_http_torrix_finish(r, ctx);
    }

    ctx = ngx_http_torrix_ctx_new(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    ctx->max_out = -1;
    ctx->model_off = -1;
    ctx->usage_off = -1;
    ctx->start_us = ngx_http_torrix_now_us();

    ngx_http_torrix_random(rnd, sizeof(rnd));
    tx_run_id_make(ctx->run_id, ctx->start_us / 1000, rnd);
    tx_run_id_hex(ctx->run_id, ctx->run_id_hex);

    ngx_http_torrix_own_headers(r, ctx);

    /*
     * the key check opens the snapshot's read txn for this event-loop
     * iteration (_snapshot.c): when the body came with the headers, routing
     * and limits run before this handler returns and read the same snapshot
     */

    if (ngx_http_torrix_endpoint(r, ctx) != NGX_OK
        || ngx_http_torrix_check_args(r, ctx) != NGX_OK
        || ngx_http_torrix_check_key(r, ctx) != NGX_OK)
    {
        ctx->done = 1;
        return ngx_http_torrix_finish(r, ctx);
    }

    if (ctx->endpoint == TX_EP_MODELS) {
        ctx->done = 1;
        ctx->status = NGX_HTTP_OK;
        return ngx_http_torrix_finish(r, ctx);
    }

    if (r->headers_in.content_length_n > (off_t) tlcf->max_body_size) {
        ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                               "request_too_large",
                               "Request body of %O bytes exceeds the limit "
                               "of %uz bytes",
                               r->headers_in.content_length_n,
                               tlcf->max_body_size);
        ctx->done = 1;
        return ngx_http_torrix_finish(r, ctx);
    }

    ctx->waiting_body = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_torrix_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


/*
 * The access phase's answer once the decision is made: continue to the proxy
 * (NGX_OK), or send the response here and end the phase (NGX_DONE).
 */
static ngx_int_t
ngx_http_torrix_finish(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    ngx_int_t rc;

    if (ctx->status == NGX_OK) {
        return NGX_OK;
    }

    if (ctx->status != NGX_HTTP_OK && !ctx->rejected) {
        ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_INTERNAL_SERVER_ERROR,
                               "internal_error", "Internal gateway error");
    }

    /* refused on the headers alone: no "100 Continue" for a body we drop */
    r->expect_tested = 1;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->status == NGX_HTTP_OK && ctx->endpoint == TX_EP_MODELS) {
        rc = ngx_http_torrix_route_models(r, ctx);

    } else {
        rc = ngx_http_torrix_send_error(r, ctx);
    }

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * A request with candidates, back in the access phase: the decision made,
 * an attempt to start, or (through error_page in the fallback location) an
 * attempt that failed.
 *
 * Attempts that may fall back run in the "torrix_fallback" named location
 * (proxy_intercept_errors + error_page back to itself); the last one runs
 * in the main location again, where the provider's error reaches the client
 * as it is.
 */
static ngx_int_t
ngx_http_torrix_next(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    MDB_txn *txn;

    if (ctx->proxied) {
        /* the attempt failed: nginx's error_page brought the request here */
        ngx_http_torrix_attempt_end(r, ctx);

        if (ctx->cand + 1 >= ctx->ncands) {
            ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_BAD_GATEWAY,
                                   "upstream_error",
                                   "Every model of the fallback chain "
                                   "failed");
            return ngx_http_torrix_finish(r, ctx);
        }

        ctx->cand++;

        txn = ngx_http_torrix_txn(r, ctx);
        if (txn == NULL) {
            return ngx_http_torrix_finish(r, ctx);
        }

        if (ngx_http_torrix_route_apply(r, ctx, txn) != NGX_OK) {
            return ngx_http_torrix_finish(r, ctx);
        }

        if (ctx->cand + 1 == ctx->ncands) {
            return ngx_http_torrix_jump(r, ctx, 0);
        }

        ctx->proxied = 1;
        return NGX_OK;
    }

    if (ctx->jumped) {
        /* arrived where the attempt runs */
        ctx->jumped = 0;
        ctx->proxied = 1;
        return NGX_OK;
    }

    if (ctx->ncands > 1) {
        return ngx_http_torrix_jump(r, ctx, 1);
    }

    ctx->proxied = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_torrix_jump(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                     ngx_uint_t named)
{
    ctx->jumped = 1;

    if (named) {
        (void) ngx_http_named_location(r, &ctx->fb_loc);

    } else {
        (void) ngx_http_internal_redirect(r, &r->uri, &r->args);
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


/*
 * The context (with room for a response meter) is not taken from the
 * request pool: at ~2 KB it made nginx allocate one more pool block for
 * every request (memalign and free: ~700 instructions a request with the
 * walks over the longer block list).  A worker keeps the contexts of
 * finished requests on a free list, at most NGX_HTTP_TORRIX_CTX_FREE of
 * them; the request pool's cleanup gives each back, after the log phase.
 */

#if defined(__SANITIZE_ADDRESS__)
/* none kept under ASan: a context used after its request ends is caught */
#define NGX_HTTP_TORRIX_CTX_FREE 0
#else
#define NGX_HTTP_TORRIX_CTX_FREE 256
#endif

typedef struct ngx_http_torrix_ctx_mem_s ngx_http_torrix_ctx_mem_t;

struct ngx_http_torrix_ctx_mem_s {
    ngx_http_torrix_ctx_t      ctx;
    tx_meter_t                 meter;
    ngx_http_torrix_ctx_mem_t *next; /* on the free list */
};

static ngx_http_torrix_ctx_mem_t *ngx_http_torrix_ctx_free;
static ngx_uint_t                 ngx_http_torrix_ctx_nfree;


static void
ngx_http_torrix_ctx_cleanup(void *data)
{
    ngx_http_torrix_ctx_mem_t *mem;

    mem = data;

    if (ngx_http_torrix_ctx_nfree == NGX_HTTP_TORRIX_CTX_FREE) {
        ngx_free(mem);
        return;
    }

    mem->next = ngx_http_torrix_ctx_free;
    ngx_http_torrix_ctx_free = mem;
    ngx_http_torrix_ctx_nfree++;
}


static ngx_http_torrix_ctx_t *
ngx_http_torrix_ctx_new(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t        *cln;
    ngx_http_torrix_ctx_mem_t *mem;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    mem = ngx_http_torrix_ctx_free;

    if (mem) {
        ngx_http_torrix_ctx_free = mem->next;
        ngx_http_torrix_ctx_nfree--;

    } else {
        mem = ngx_alloc(sizeof(ngx_http_torrix_ctx_mem_t), r->connection->log);
        if (mem == NULL) {
            return NULL;
        }
    }

    /* the meter is set up (tx_meter_init) when a response is metered */
    ngx_memzero(&mem->ctx, sizeof(ngx_http_torrix_ctx_t));
    mem->ctx.meter_mem = &mem->meter;

    cln->handler = ngx_http_torrix_ctx_cleanup;
    cln->data = mem;

    ngx_http_set_ctx(r, &mem->ctx, ngx_http_torrix_module);

    return &mem->ctx;
}


ngx_http_torrix_ctx_t *
ngx_http_torrix_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t    *cln;
    ngx_http_torrix_ctx_t *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_torrix_module);

    if (ctx || !r->internal || r != r->main) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_torrix_ctx_cleanup) {
            ctx = &((ngx_http_torrix_ctx_mem_t *) cln->data)->ctx;
            ngx_http_set_ctx(r, ctx, ngx_http_torrix_module);
            return ctx;
        }
    }

    return NULL;
}


static void
ngx_http_torrix_body_handler(ngx_http_request_t *r)
{
    ngx_http_torrix_ctx_t *ctx;

    ctx = ngx_http_torrix_get_ctx(r);

    ctx->done = 1;
    ctx->waiting_body = 0;

    if (ngx_http_torrix_check_body(r, ctx) == NGX_OK
        && ngx_http_torrix_route(r, ctx) == NGX_OK
        && ngx_http_torrix_limits(r, ctx) == NGX_OK)
    {
        ctx->status = NGX_OK;
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static ngx_int_t
ngx_http_torrix_endpoint(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    ngx_http_torrix_endpoint_t *e;

    for (e = ngx_http_torrix_endpoints; e->suffix.len; e++) {
        if (r->uri.len >= e->suffix.len
            && ngx_strncmp(r->uri.data + r->uri.len - e->suffix.len,
                           e->suffix.data, e->suffix.len)
                   == 0)
        {
            break;
        }
    }

    if (e->suffix.len == 0) {
        /* an Anthropic client gets its own shape for unknown paths too */
        if (ngx_http_torrix_header(r, "anthropic-version",
                                   sizeof("anthropic-version") - 1))
        {
            ctx->shape = NGX_HTTP_TORRIX_SHAPE_ANTHROPIC;
        }

        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_NOT_FOUND,
                                      "unknown_url",
                                      "Unknown request URL: "
                                      "%V %V",
                                      &r->method_name, &r->uri);
    }

    ctx->endpoint = e->endpoint;
    ctx->shape = e->shape;

    if (e->method && !(r->method & e->method)) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_NOT_ALLOWED,
                                      "method_not_allowed",
                                      "%V is not allowed on %V; use %s",
                                      &r->method_name, &r->uri,
                                      e->method == NGX_HTTP_GET ? "GET"
                                                                : "POST");
    }

    return NGX_OK;
}


/* the key's metadata line "agent=<id>", copied into ctx->agent */
static ngx_int_t
ngx_http_torrix_key_agent(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                          tx_str_t *metadata)
{
    tx_str_t       v;
    const uint8_t *s, *e, *nl;

    s = metadata->data;
    e = s + metadata->len;

    while (s < e) {
        nl = (const uint8_t *) ngx_strlchr((u_char *) s, (u_char *) e, '\n');
        if (nl == NULL) {
            nl = e;
        }

        if (nl - s > 6 && ngx_strncmp(s, "agent=", 6) == 0) {
            v.data = s + 6;
            v.len = nl - s - 6;
            return ngx_http_torrix_copy(r->pool, &ctx->agent, &v);
        }

        s = nl + 1;
    }

    return NGX_OK;
}


/* the key and its metadata into ctx; the snapshot txn it opens is left open
 * for the access handler to end */
static ngx_int_t
ngx_http_torrix_check_key(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    u_char             *p;
    time_t              now;
    uint8_t             hash[TX_KEY_HASH_LEN];
    uint8_t             tag[NGX_HTTP_TORRIX_KEY_TAG_LEN];
    const uint8_t      *hash_key;
    MDB_txn            *txn;
    tx_str_t            secret, val;
    ngx_table_elt_t    *h;
    tx_key_rec_t        key;
    tx_khash_rec_t      kh;
    const tx_key_rec_t *known;

    secret.len = 0;
    secret.data = NULL;

    h = r->headers_in.authorization;

    if (h && h->value.len > 7 && ngx_http_torrix_bearer(h->value.data)) {
        secret.data = h->value.data + 7;
        secret.len = h->value.len - 7;

        while (secret.len && secret.data[0] == ' ') {
            secret.data++;
            secret.len--;
        }

    } else if (ctx->endpoint != TX_EP_PROXY) {
        h = ngx_http_torrix_header(r, "x-api-key", sizeof("x-api-key") - 1);
        if (h) {
            secret.data = h->value.data;
            secret.len = h->value.len;
        }
    }

    if (secret.len == 0) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_UNAUTHORIZED,
                                      "missing_api_key",
                                      "Missing API key: send "
                                      "\"Authorization: Bearer sk-torrix-...\""
                                      "%s",
                                      ctx->shape
                                              == NGX_HTTP_TORRIX_SHAPE_ANTHROPIC
                                          ? " or \"x-api-key\""
                                          : "");
    }

    if (!tx_key_shape_ok(secret.data, secret.len)) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_UNAUTHORIZED,
                                      "invalid_api_key",
                                      "Invalid API key: not a Torrix key");
    }

    txn = ngx_http_torrix_txn(r, ctx);
    if (txn == NULL) {
        return ctx->status;
    }

    now = ngx_http_torrix_time();

    ngx_http_torrix_cache_key_tag(secret.data, secret.len, tag);

    known = ngx_http_torrix_cache_key_get(tag, &kh.not_after);

    if (known) {
        key = *known;

        if (kh.not_after && now >= kh.not_after) {
            goto grace_over;
        }

        goto found;
    }

    hash_key = ngx_http_torrix_cache_hash_key(txn);
    if (hash_key == NULL
        || tx_key_hash(hash_key, secret.data, secret.len, hash) != TX_OK)
    {
        return ngx_http_torrix_reject(ctx, r->pool,
                                      NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "gateway_not_ready",
                                      "The gateway snapshot has no hash key");
    }

    if (ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_KHASH, hash,
                                     sizeof(hash), &val)
            != TX_OK
        || tx_khash_rec_decode(val.data, val.len, &kh) != TX_OK)
    {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_UNAUTHORIZED,
                                      "invalid_api_key",
                                      "Invalid API key: unknown or revoked");
    }

    if (kh.not_after && now >= kh.not_after) {
        goto grace_over;
    }

    if (ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_KEYS,
                                     kh.key_id.data, kh.key_id.len, &val)
            != TX_OK
        || tx_key_rec_decode(val.data, val.len, &key) != TX_OK)
    {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_UNAUTHORIZED,
                                      "invalid_api_key",
                                      "Invalid API key: unknown or revoked");
    }

    ngx_http_torrix_cache_key_put(tag, kh.not_after, &key);

found:

    /*
     * the key's fields outlive the snapshot read: copied to the request
     * pool, the five in one allocation
     */
    p = ngx_pnalloc(r->pool, key.id.len + key.project.len + key.org.len
                                 + key.user.len + key.models.len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_http_torrix_copy_to(p, &ctx->key_id, &key.id);
    p = ngx_http_torrix_copy_to(p, &ctx->project, &key.project);
    p = ngx_http_torrix_copy_to(p, &ctx->org, &key.org);
    p = ngx_http_torrix_copy_to(p, &ctx->user, &key.user);
    (void) ngx_http_torrix_copy_to(p, &ctx->models, &key.models);

    if (ctx->agent.len == 0 && key.metadata.len
        && ngx_http_torrix_key_agent(r, ctx, &key.metadata) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->access = key.access;
    ctx->key_rpm = key.rpm;
    ctx->key_tpm = key.tpm;
    ctx->key_daily_cap = key.daily_cap;
    ctx->key_monthly_budget = key.monthly_budget;

    if (key.status != TX_STATUS_ACTIVE) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_UNAUTHORIZED,
                                      "invalid_api_key",
                                      "Invalid API key: this key was revoked");
    }

    if (key.expires_at && now >= key.expires_at) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_UNAUTHORIZED,
                                      "invalid_api_key",
                                      "Invalid API key: this key expired");
    }

    if (key.access != TX_ACCESS_FULL) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_FORBIDDEN,
                                      "read_only_key",
                                      "This key has read access only and "
                                      "cannot call the gateway");
    }

    return NGX_OK;

grace_over:

    return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_UNAUTHORIZED,
                                  "invalid_api_key",
                                  "Invalid API key: this secret was "
                                  "rotated and its grace period ended");
}


static ngx_int_t
ngx_http_torrix_check_body(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    u_char                     *model;
    ssize_t                     n;
    ngx_str_t                   body;
    tx_json_req_t               req;
    ngx_http_torrix_loc_conf_t *tlcf;
    char                        err[128];
    tx_str_t                    models;

    if (ctx->too_large) {
        tlcf = ngx_http_get_module_loc_conf(r, ngx_http_torrix_module);
        return ngx_http_torrix_reject(ctx, r->pool,
                                      NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                      "request_too_large",
                                      "Request body exceeds the limit of "
                                      "%uz bytes",
                                      tlcf->max_body_size);
    }

    if (ngx_http_torrix_body_bytes(r, &body) != NGX_OK) {
        return ngx_http_torrix_reject(ctx, r->pool,
                                      NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "internal_error",
                                      "Could not read the request body");
    }

    ctx->req_body = body;
    ctx->prompt_bytes = body.len;

    if (tx_json_scan_request(body.data, body.len, &req, err, sizeof(err))
        != TX_OK) {
        if (ctx->endpoint == TX_EP_PROXY) {
            /* the generic proxy carries any body */
            return NGX_OK;
        }

        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_BAD_REQUEST,
                                      "invalid_json",
                                      "The request body is not valid JSON: %s",
                                      err);
    }

    ctx->stream = req.stream_on;
    ctx->max_out = req.max_out;

    if (req.model.off < 0 || !req.model_is_string) {
        if (ctx->endpoint == TX_EP_PROXY) {
            return NGX_OK;
        }

        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_BAD_REQUEST,
                                      "missing_model",
                                      "The request needs a \"model\" string");
    }

    if (!req.model_has_escape) {
        /* the usual model: the bytes between the quotes, where they are */
        model = body.data + req.model.off + 1;
        n = req.model.len - 2;

        if (n > NGX_HTTP_TORRIX_MODEL_MAX) {
            n = -1;
        }

    } else {
        model = ngx_pnalloc(r->pool, NGX_HTTP_TORRIX_MODEL_MAX);
        if (model == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        n = tx_json_unescape(body.data + req.model.off, req.model.len, model,
                             NGX_HTTP_TORRIX_MODEL_MAX);
    }

    if (n <= 0) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_BAD_REQUEST,
                                      "invalid_model",
                                      "The \"model\" is empty or longer than "
                                      "%d bytes",
                                      NGX_HTTP_TORRIX_MODEL_MAX);
    }

    ctx->model.data = model;
    ctx->model.len = n;
    ctx->model_off = req.model.off;
    ctx->model_len = req.model.len;

    models.data = ctx->models.data;
    models.len = ctx->models.len;

    if (!tx_glob_list_match(&models, model, n)) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_FORBIDDEN,
                                      "model_not_allowed",
                                      "This key is not allowed to use model "
                                      "\"%V\"",
                                      &ctx->model);
    }

    if (req.stream_on && !req.include_usage_on
        && (ctx->endpoint == TX_EP_CHAT || ctx->endpoint == TX_EP_COMPLETIONS))
    {
        return ngx_http_torrix_inject_usage(r, ctx, &body, &req);
    }

    return NGX_OK;
}


/*
 * Asks an OpenAI-shaped provider for the usage chunk of a stream whose
 * client did not (stream_options.include_usage): a splice of a few bytes
 * into the body (applied with the model rewrite, _route.c) rather than a
 * re-print; the filter removes that chunk from what the client sees.
 */
static ngx_int_t
ngx_http_torrix_inject_usage(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                             ngx_str_t *body, tx_json_req_t *req)
{
    u_char *p, *end;

    static u_char opts[] = "\"stream_options\":{\"include_usage\":true},";
    static u_char member[] = "\"include_usage\":true,";

    if (req->include_usage.off >= 0) {
        /* "include_usage": false (or another non-true value) */
        ctx->usage_off = req->include_usage.off;
        ctx->usage_len = req->include_usage.len;
        ngx_str_set(&ctx->usage_ins, "true");

    } else if (req->stream_options.off >= 0
               && body->data[req->stream_options.off] == '{')
    {
        /* an object without include_usage: add the member first */
        p = body->data + req->stream_options.off + 1;
        end = body->data + req->stream_options.off + req->stream_options.len;

        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        {
            p++;
        }

        ctx->usage_off = req->stream_options.off + 1;
        ctx->usage_len = 0;
        ctx->usage_ins.data = member;
        ctx->usage_ins.len = sizeof(member) - 1 - (*p == '}');

    } else if (req->stream_options.off >= 0) {
        /* "stream_options": null */
        ctx->usage_off = req->stream_options.off;
        ctx->usage_len = req->stream_options.len;
        ngx_str_set(&ctx->usage_ins, "{\"include_usage\":true}");

    } else {
        /* "stream": true means the object has a member: a comma fits */
        p = ngx_strlchr(body->data, body->data + body->len, '{');
        if (p == NULL) {
            return NGX_OK;
        }

        ctx->usage_off = p + 1 - body->data;
        ctx->usage_len = 0;
        ctx->usage_ins.data = opts;
        ctx->usage_ins.len = sizeof(opts) - 1;
    }

    ctx->strip_usage = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_torrix_route(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    MDB_txn                    *txn;
    ngx_http_torrix_loc_conf_t *tlcf;

    if (ctx->endpoint == TX_EP_PROXY) {
        return ngx_http_torrix_route_proxy(r, ctx);
    }

    txn = ngx_http_torrix_txn(r, ctx);
    if (txn == NULL) {
        return ctx->status;
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_torrix_module);
    ctx->fb_loc = tlcf->fallback;

    if (ngx_http_torrix_route_plan(r, ctx, txn) != NGX_OK
        || ngx_http_torrix_sample(r, ctx, txn) != NGX_OK
        || ngx_http_torrix_route_apply(r, ctx, txn) != NGX_OK)
    {
        return ctx->status;
    }

    /* the txn stays open for the limits plan */

    return NGX_OK;
}


static ngx_int_t
ngx_http_torrix_route_proxy(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    u_char          *p;
    MDB_txn         *txn;
    tx_url_t         u;
    tx_str_t         targets;
    ngx_str_t        target, *t;
    ngx_table_elt_t *h;

    ngx_str_set(&ctx->provider, "proxy");

    h = ngx_http_torrix_header(r, "x-target-url", sizeof("x-target-url") - 1);
    if (h == NULL || h->value.len == 0) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_BAD_REQUEST,
                                      "missing_target",
                                      "/proxy needs an \"x-target-url\" "
                                      "header");
    }

    target = h->value;

    if (tx_url_parse(target.data, target.len, &u) != TX_OK) {
        /* user info, fragments, odd encodings: refused like any target
         * outside the allowlist, since that is what they try to reach */
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_FORBIDDEN,
                                      "target_not_allowed",
                                      "\"x-target-url\" must be an absolute "
                                      "http(s) URL without user info, in "
                                      "this instance's target allowlist");
    }

    txn = ngx_http_torrix_txn(r, ctx);
    if (txn == NULL) {
        return ctx->status;
    }

    if (ngx_http_torrix_sample(r, ctx, txn) != NGX_OK) {
        return ctx->status;
    }

    t = ngx_http_torrix_cache_proxy_targets(txn);
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    targets.data = t->data;
    targets.len = t->len;

    if (!tx_url_allowed(&u, &targets)) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_FORBIDDEN,
                                      "target_not_allowed",
                                      "\"x-target-url\" is not in this "
                                      "instance's target allowlist");
    }

    ctx->upstream_uri.len =
        (u.path.len ? u.path.len : 1) + (u.query.len ? u.query.len + 1 : 0);
    ctx->upstream_uri.data = ngx_pnalloc(r->pool, ctx->upstream_uri.len);
    if (ctx->upstream_uri.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (u.path.len) {
        p = ngx_cpymem(ctx->upstream_uri.data, u.path.data, u.path.len);

    } else {
        p = ctx->upstream_uri.data;
        *p++ = '/';
    }

    if (u.query.len) {
        *p++ = '?';
        ngx_memcpy(p, u.query.data, u.query.len);
    }

    h = ngx_http_torrix_header(r, "x-upstream-authorization",
                               sizeof("x-upstream-authorization") - 1);
    if (h) {
        ctx->upstream_authorization = h->value;
    }

    if (ngx_http_torrix_upstream_name(r->pool, &u, &ctx->upstream,
                                      &ctx->upstream_host)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_torrix_upstream_name(ngx_pool_t *pool, tx_url_t *u,
                              ngx_str_t *upstream, ngx_str_t *host)
{
    u_char                         *p, buf[NGX_SOCKADDR_STRLEN + 8];
    size_t                          len;
    ngx_str_t                       name;
    ngx_uint_t                      i;
    ngx_http_torrix_main_conf_t    *tmcf;
    ngx_http_torrix_upstream_map_t *m;

    tmcf =
        ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_torrix_module);

    if (u->host.len > NGX_SOCKADDR_STRLEN) {
        return NGX_ERROR;
    }

    if (ngx_strlchr((u_char *) u->host.data,
                    (u_char *) u->host.data + u->host.len, ':'))
    {
        p = ngx_sprintf(buf, "[%*s]:%d", u->host.len, u->host.data, u->port);

    } else {
        p = ngx_sprintf(buf, "%*s:%d", u->host.len, u->host.data, u->port);
    }

    len = p - buf;

    name.len = u->hostport.len;
    name.data = (u_char *) u->hostport.data;

    m = tmcf->upstreams->elts;

    for (i = 0; i < tmcf->upstreams->nelts; i++) {
        if (m[i].hostport.len == len
            && ngx_strncasecmp(m[i].hostport.data, buf, len) == 0)
        {
            name = m[i].name;
            break;
        }
    }

    upstream->len =
        (u->https ? sizeof("https://") : sizeof("http://")) - 1 + name.len;
    upstream->data = ngx_pnalloc(pool, upstream->len + u->hostport.len);
    if (upstream->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(upstream->data, "%s%V", u->https ? "https://" : "http://",
                    &name);

    host->data = p;
    host->len = u->hostport.len;
    ngx_memcpy(p, u->hostport.data, u->hostport.len);

    return NGX_OK;
}


ngx_table_elt_t *
ngx_http_torrix_header(ngx_http_request_t *r, const char *name, size_t len)
{
    ngx_uint_t       i;
    ngx_list_part_t *part;
    ngx_table_elt_t *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/*
 * "Bearer " at p, the scheme in any case: seven bytes compared at once
 * (0x20 folds an ASCII letter to lower case and leaves the space as it is)
 */
static ngx_uint_t
ngx_http_torrix_bearer(const u_char *p)
{
    uint64_t v;

    v = 0;
    ngx_memcpy(&v, p, 7);

    return (v | 0x0020202020202020ULL)
           == (0x0020202020202020ULL | ((uint64_t) 'b') | ((uint64_t) 'e' << 8)
               | ((uint64_t) 'a' << 16) | ((uint64_t) 'r' << 24)
               | ((uint64_t) 'e' << 32) | ((uint64_t) 'r' << 40)
               | ((uint64_t) ' ' << 48));
}


/* src copied to p, dst set to the copy (NULL when empty); p past it */
static u_char *
ngx_http_torrix_copy_to(u_char *p, ngx_str_t *dst, const tx_str_t *src)
{
    dst->len = src->len;
    dst->data = src->len ? p : NULL;

    return src->len ? ngx_cpymem(p, src->data, src->len) : p;
}


static ngx_int_t
ngx_http_torrix_copy(ngx_pool_t *pool, ngx_str_t *dst, const tx_str_t *src)
{
    u_char *p;

    p = NULL;

    if (src->len) {
        p = ngx_pnalloc(pool, src->len);
        if (p == NULL) {
            return NGX_ERROR;
        }
    }

    (void) ngx_http_torrix_copy_to(p, dst, src);

    return NGX_OK;
}


/*
 * The sampling decision: x-torrix-sample (0..1) when the client sent it,
 * else the instance's sample_rate (parts per million).
 */
static ngx_int_t
ngx_http_torrix_sample(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                       MDB_txn *txn)
{
    u_char  *p, *end;
    uint32_t rnd;
    uint64_t ppm, scale;

    ppm = 0;

    if (ctx->has_sample_hdr) {
        p = ctx->sample_hdr.data;
        end = p + ctx->sample_hdr.len;

        if (p == end || (*p != '0' && *p != '1')) {
            goto invalid;
        }

        ppm = (*p++ - '0') * 1000000;

        if (p < end) {
            if (*p++ != '.') {
                goto invalid;
            }

            for (scale = 100000; p < end; p++, scale /= 10) {
                if (*p < '0' || *p > '9') {
                    goto invalid;
                }

                ppm += (*p - '0') * scale;
            }
        }

        if (ppm > 1000000) {
            goto invalid;
        }

    } else {
        ppm = ngx_http_torrix_cache_setting(txn, NGX_HTTP_TORRIX_SET_SAMPLE);
    }

    if (ppm >= 1000000) {
        ctx->sampled = 1;

    } else if (ppm > 0) {
        ngx_http_torrix_random(&rnd, sizeof(rnd));
        ctx->sampled = (rnd % 1000000) < ppm;
    }

    return NGX_OK;

invalid:

    return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_BAD_REQUEST,
                                  "invalid_sample",
                                  "\"x-torrix-sample\" must be a number "
                                  "from 0 to 1");
}


/*
 * Takes the client's x-torrix-* request headers into the ctx and hides them
 * from the upstream: each is renamed to x-torrix-name, which
 * conf/torrix_proxy.conf sets to "" (and so removes), whatever the client
 * called it.
 */
static void
ngx_http_torrix_own_headers(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    size_t           len;
    ngx_str_t       *dst;
    ngx_uint_t       i;
    ngx_list_part_t *part;
    ngx_table_elt_t *h;

    static ngx_uint_t hash;
    static u_char     hidden[] = "x-torrix-name";

    if (hash == 0) {
        hash = ngx_hash_key(hidden, sizeof(hidden) - 1);
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len < sizeof("x-torrix-") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "x-torrix-",
                               sizeof("x-torrix-") - 1)
                   != 0)
        {
            continue;
        }

        dst = NULL;
        len = h[i].key.len;

        if (len == sizeof("x-torrix-name") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "x-torrix-name", len)
                   == 0)
        {
            dst = &ctx->run_name;

        } else if (len == sizeof("x-torrix-user") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "x-torrix-user",
                                      len)
                          == 0)
        {
            dst = &ctx->end_user;

        } else if (len == sizeof("x-torrix-tags") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "x-torrix-tags",
                                      len)
                          == 0)
        {
            dst = &ctx->tags;

        } else if (len == sizeof("x-torrix-sample") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "x-torrix-sample", len)
                          == 0)
        {
            dst = &ctx->sample_hdr;
            ctx->has_sample_hdr = 1;

        } else if (len == sizeof("x-torrix-agent") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "x-torrix-agent", len)
                          == 0)
        {
            dst = &ctx->agent;
        }

        if (dst && dst->len == 0) {
            *dst = h[i].value;
        }

        h[i].key.data = hidden;
        h[i].key.len = sizeof(hidden) - 1;
        h[i].lowcase_key = hidden;
        h[i].hash = hash;
    }
}


/* a Torrix key in the URL would reach the provider and its logs */
static ngx_int_t
ngx_http_torrix_check_args(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    if (r->args.len >= TX_KEY_PREFIX_LEN
        && ngx_strlcasestrn(r->args.data, r->args.data + r->args.len,
                            (u_char *) TX_KEY_PREFIX, TX_KEY_PREFIX_LEN - 1)
               != NULL)
    {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_BAD_REQUEST,
                                      "key_in_url",
                                      "Send the Torrix key in the "
                                      "Authorization header, never in the "
                                      "URL");
    }

    return NGX_OK;
}


/*
 * The worker's snapshot read transaction, or NULL with the request refused
 * (503 in the client's shape) when there is no snapshot to read.
 */
MDB_txn *
ngx_http_torrix_txn(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    MDB_txn *txn;

    txn = ngx_http_torrix_snapshot_begin(r->connection->log);

    if (txn == NULL) {
        (void) ngx_http_torrix_reject(ctx, r->pool,
                                      NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "gateway_not_ready",
                                      "The gateway has no snapshot yet; is "
                                      "torrix-cp running?");
    }

    return txn;
}

/*
 * ngx_torrix_module: which model serves a request, and where it goes.
 *
 * The plan, made once per request from the snapshot:
 *
 *   1. agent tier: a request for model "normal", "heavy" or "max" from an
 *      agent (x-torrix-agent, else the key's metadata "agent=...") asks for
 *      that agent's model of that tier;
 *   2. router rule: the organization's rules, then the global ones; within a
 *      scope an exact pattern beats a wildcard, a longer wildcard a shorter
 *      one; the rule's target replaces the model;
 *   3. fallback chain of that model (exact name), when the location has
 *      "torrix_fallback @name" to run the attempts in;
 *   4. provider of each candidate: its explicit prefix ("anthropic/..."),
 *      else the pricing catalog's provider field, else the endpoint's
 *      default (openai, or anthropic for /v1/messages); a candidate whose
 *      provider cannot speak the client's API (an OpenAI model on
 *      /v1/messages) is dropped;
 *   5. the instance's routing strategy orders the candidates.
 *
 * The key's model allowlist is checked against the model the client asked
 * for (the operator's rules decide what serves it), before this plan.
 *
 * Each attempt rewrites the body's "model" (a splice, not a re-print) and
 * points the $torrix_upstream* variables at the candidate's provider.
 */

#include "ngx_http_torrix_module.h"


static ngx_int_t               ngx_http_torrix_route_tier(ngx_http_request_t    *r,
                                                          ngx_http_torrix_ctx_t *ctx,
                                                          MDB_txn *txn, ngx_str_t *name);
static ngx_http_torrix_rule_t *ngx_http_torrix_route_rule(MDB_txn   *txn,
                                                          ngx_str_t *org,
                                                          ngx_str_t *name);
static ngx_int_t               ngx_http_torrix_route_cand(ngx_http_request_t    *r,
                                                          ngx_http_torrix_ctx_t *ctx,
                                                          MDB_txn *txn, ngx_str_t *name,
                                                          ngx_http_torrix_cand_t *c);
static void       ngx_http_torrix_route_order(ngx_http_torrix_ctx_t *ctx,
                                              MDB_txn               *txn);
static ngx_int_t  ngx_http_torrix_route_body(ngx_http_request_t     *r,
                                             ngx_http_torrix_ctx_t  *ctx,
                                             ngx_http_torrix_cand_t *c);
static ngx_uint_t ngx_http_torrix_split(ngx_str_t *list, ngx_str_t *out,
                                        ngx_uint_t max);


ngx_int_t
ngx_http_torrix_route_plan(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                           MDB_txn *txn)
{
    u_char                     *p, *end;
    uint64_t                    w[TX_FB_MAX];
    uint16_t                    tag;
    tx_str_t                    val, f;
    ngx_str_t                   name, chain, weights, names[TX_FB_MAX];
    ngx_str_t                   ws[TX_FB_MAX];
    ngx_int_t                   status;
    ngx_uint_t                  i, n, k, nw;
    tx_rec_iter_t               it;
    ngx_http_torrix_cand_t     *cands;
    ngx_http_torrix_rule_t     *rule;
    ngx_http_torrix_loc_conf_t *tlcf;

    name = ctx->model;

    if ((name.len == 6 && ngx_strncmp(name.data, "normal", 6) == 0)
        || (name.len == 5 && ngx_strncmp(name.data, "heavy", 5) == 0)
        || (name.len == 3 && ngx_strncmp(name.data, "max", 3) == 0))
    {
        if (ngx_http_torrix_route_tier(r, ctx, txn, &name) != NGX_OK) {
            return ctx->status;
        }
    }

    rule = ngx_http_torrix_route_rule(txn, &ctx->org, &name);
    if (rule) {
        name = rule->target;
    }

    names[0] = name;
    n = 1;
    nw = 0;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_torrix_module);

    if (tlcf->fallback.len
        && ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_FALLBACKS,
                                        name.data, name.len, &val)
               == TX_OK)
    {
        ngx_str_null(&chain);
        ngx_str_null(&weights);

        tx_rec_iter_init(&it, val.data, val.len);

        while (tx_rec_next(&it, &tag, &f) == TX_OK) {
            if (tag == TX_FB_CHAIN) {
                chain.data = (u_char *) f.data;
                chain.len = f.len;

            } else if (tag == TX_FB_WEIGHTS) {
                weights.data = (u_char *) f.data;
                weights.len = f.len;
            }
        }

        n += ngx_http_torrix_split(&chain, &names[1], TX_FB_MAX - 1);
        nw = ngx_http_torrix_split(&weights, ws, TX_FB_MAX);
    }

    for (i = 0; i < n; i++) {
        w[i] = 1;

        if (i < nw) {
            w[i] = 0;
            p = ws[i].data;
            end = p + ws[i].len;

            while (p < end && *p >= '0' && *p <= '9' && w[i] < 1000000000) {
                w[i] = w[i] * 10 + (*p++ - '0');
            }
        }
    }

    cands = ngx_pcalloc(r->pool, n * sizeof(ngx_http_torrix_cand_t));
    if (cands == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    status = NGX_OK;
    k = 0;

    for (i = 0; i < n; i++) {
        if (ngx_http_torrix_route_cand(r, ctx, txn, &names[i], &cands[k])
            != NGX_OK) {
            /* the primary's refusal stands if no other candidate is left */
            if (i == 0) {
                status = ctx->status;
            }

            if (ctx->status == NGX_HTTP_INTERNAL_SERVER_ERROR) {
                return ctx->status;
            }

            continue;
        }

        cands[k].weight = w[i];
        cands[k].order = i;
        k++;
    }

    if (k == 0) {
        return status;
    }

    ctx->rejected = 0;
    ctx->err_type = NULL;
    ctx->status = NGX_HTTP_INTERNAL_SERVER_ERROR;

    ctx->cands = cands;
    ctx->ncands = k;
    ctx->cand = 0;

    ctx->attempts = ngx_palloc(r->pool, k * sizeof(ngx_http_torrix_attempt_t));
    if (ctx->attempts == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (k > 1) {
        ngx_http_torrix_route_order(ctx, txn);
    }

    return NGX_OK;
}


/* '\n'-separated items of list into out, at most max; returns how many */
static ngx_uint_t
ngx_http_torrix_split(ngx_str_t *list, ngx_str_t *out, ngx_uint_t max)
{
    u_char    *s, *e, *nl;
    ngx_uint_t n;

    n = 0;

    if (list->len == 0) {
        return 0;
    }

    s = list->data;
    e = s + list->len;

    while (s < e && n < max) {
        nl = ngx_strlchr(s, e, '\n');
        if (nl == NULL) {
            nl = e;
        }

        if (nl > s) {
            out[n].data = s;
            out[n].len = nl - s;
            n++;
        }

        s = nl + 1;
    }

    return n;
}


static ngx_int_t
ngx_http_torrix_route_tier(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                           MDB_txn *txn, ngx_str_t *name)
{
    uint16_t      tag, want;
    tx_str_t      val, f, model;
    tx_rec_iter_t it;

    if (ctx->agent.len == 0) {
        /* not an agent: a router rule may still give the name a meaning */
        return NGX_OK;
    }

    if (ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_AGENTS,
                                     ctx->agent.data, ctx->agent.len, &val)
        != TX_OK)
    {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_BAD_REQUEST,
                                      "unknown_agent",
                                      "Unknown agent \"%V\": no agent "
                                      "configuration has this id",
                                      &ctx->agent);
    }

    want = name->len == 6   ? TX_AG_NORMAL
           : name->len == 5 ? TX_AG_HEAVY
                            : TX_AG_MAX;

    model.len = 0;
    tx_rec_iter_init(&it, val.data, val.len);

    while (tx_rec_next(&it, &tag, &f) == TX_OK) {
        if (tag == want) {
            model = f;
        }
    }

    if (model.len == 0) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_BAD_REQUEST,
                                      "unknown_tier",
                                      "Agent \"%V\" has no \"%V\" model",
                                      &ctx->agent, name);
    }

    name->data = (u_char *) model.data;
    name->len = model.len;

    return NGX_OK;
}


static ngx_http_torrix_rule_t *
ngx_http_torrix_route_rule(MDB_txn *txn, ngx_str_t *org, ngx_str_t *name)
{
    ngx_int_t               score, best_score;
    ngx_uint_t              i, n;
    ngx_http_torrix_rule_t *rules, *rule, *best;

    rules = ngx_http_torrix_cache_rules(txn, &n);

    best = NULL;
    best_score = -1;

    for (i = 0; i < n; i++) {
        rule = &rules[i];

        if (rule->org.len
            && (rule->org.len != org->len
                || ngx_strncmp(rule->org.data, org->data, org->len) != 0))
        {
            continue;
        }

        if (rule->glob) {
            if (!tx_glob_match(rule->pattern.data, rule->pattern.len,
                               name->data, name->len))
            {
                continue;
            }

            /* a longer pattern is a more specific one */
            score = (ngx_int_t) ngx_min(rule->pattern.len, 100000);

        } else {
            if (rule->pattern.len != name->len
                || ngx_strncmp(rule->pattern.data, name->data, name->len) != 0)
            {
                continue;
            }

            score = 200000;
        }

        if (rule->org.len) {
            score += 1000000;
        }

        if (score > best_score
            || (score == best_score && best
                && ngx_memn2cmp(rule->id.data, best->id.data, rule->id.len,
                                best->id.len)
                       < 0))
        {
            best = rule;
            best_score = score;
        }
    }

    return best;
}


static ngx_int_t
ngx_http_torrix_route_cand(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                           MDB_txn *txn, ngx_str_t *name,
                           ngx_http_torrix_cand_t *c)
{
    u_char                     *slash, *p;
    ngx_str_t                   prefix, dflt;
    const tx_price_t           *price;
    ngx_http_torrix_provider_t *prv;

    prv = NULL;
    c->model = *name;

    slash = ngx_strlchr(name->data, name->data + name->len, '/');

    if (slash && slash > name->data && slash + 1 < name->data + name->len) {
        prefix.data = name->data;
        prefix.len = slash - name->data;

        prv = ngx_http_torrix_cache_provider(txn, &prefix);

        if (prv) {
            c->model.data = slash + 1;
            c->model.len = name->data + name->len - (slash + 1);
        }
    }

    /* by its name as written, else as sent: priced once for the plan */
    price = ngx_http_torrix_cache_price(txn, name->data, name->len);

    if (prv == NULL) {
        if (price && price->provider.len) {
            prefix.data = (u_char *) price->provider.data;
            prefix.len = price->provider.len;
            prv = ngx_http_torrix_cache_provider(txn, &prefix);
        }
    }

    if (prv == NULL) {
        if (ctx->endpoint == TX_EP_MESSAGES) {
            ngx_str_set(&dflt, "anthropic");

        } else {
            ngx_str_set(&dflt, "openai");
        }

        prv = ngx_http_torrix_cache_provider(txn, &dflt);

        if (prv == NULL) {
            return ngx_http_torrix_reject(ctx, r->pool,
                                          NGX_HTTP_SERVICE_UNAVAILABLE,
                                          "provider_not_configured",
                                          "Provider \"%V\" has no base URL",
                                          &dflt);
        }
    }

    if (prv->bad_url) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_BAD_GATEWAY,
                                      "provider_misconfigured",
                                      "Provider \"%V\" has an invalid base URL",
                                      &prv->name);
    }

    if (ctx->endpoint == TX_EP_MESSAGES && prv->kind != TX_PROVIDER_ANTHROPIC) {
        return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_BAD_REQUEST,
                                      "model_not_supported",
                                      "Model \"%V\" is served by provider "
                                      "\"%V\", which does not speak the "
                                      "Messages API: call /v1/chat/completions",
                                      name, &prv->name);
    }

    /* the memo and the txn's pages do not outlive this iteration */
    p = ngx_pnalloc(r->pool, name->len + prv->name.len);
    if (p == NULL) {
        return ngx_http_torrix_reject(ctx, r->pool,
                                      NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "internal_error", "Out of memory");
    }

    c->name.data = p;
    c->name.len = name->len;
    ngx_memcpy(p, name->data, name->len);

    c->model.data = p + (c->model.data - name->data);

    c->provider.data = p + name->len;
    c->provider.len = prv->name.len;
    ngx_memcpy(c->provider.data, prv->name.data, prv->name.len);

    c->kind = prv->kind;

    if (price == NULL && c->model.len != name->len) {
        price = ngx_http_torrix_cache_price(txn, c->model.data, c->model.len);
    }

    if (price && c->kind != TX_PROVIDER_OLLAMA) {
        c->price = *price;
        c->price.provider.len = 0;
        c->price.provider.data = NULL;
        c->priced = 1;
    }

    return NGX_OK;
}


/* insertion sort by (rank, order): stable, and n <= TX_FB_MAX */
static void
ngx_http_torrix_route_sort(ngx_http_torrix_cand_t *c, ngx_uint_t n)
{
    ngx_uint_t             i, j;
    ngx_http_torrix_cand_t t;

    for (i = 1; i < n; i++) {
        t = c[i];

        for (j = i;
             j > 0
             && (c[j - 1].rank > t.rank
                 || (c[j - 1].rank == t.rank && c[j - 1].order > t.order));
             j--)
        {
            c[j] = c[j - 1];
        }

        c[j] = t;
    }
}


static void
ngx_http_torrix_route_order(ngx_http_torrix_ctx_t *ctx, MDB_txn *txn)
{
    uint32_t                rnd;
    uint64_t                sum, pick;
    ngx_uint_t              i;
    ngx_http_torrix_cand_t *c, t;

    c = ctx->cands;

    switch (ngx_http_torrix_cache_setting(txn, NGX_HTTP_TORRIX_SET_STRATEGY)) {
    case TX_STRATEGY_WEIGHTED:
        sum = 0;
        for (i = 0; i < ctx->ncands; i++) {
            sum += c[i].weight;
        }

        if (sum == 0) {
            return;
        }

        ngx_http_torrix_random(&rnd, sizeof(rnd));
        pick = ((uint64_t) rnd * sum) >> 32;

        for (i = 0; i < ctx->ncands; i++) {
            if (pick < c[i].weight) {
                break;
            }

            pick -= c[i].weight;
        }

        if (i > 0 && i < ctx->ncands) {
            /* the pick first, the others as written */
            t = c[i];
            ngx_memmove(&c[1], &c[0], i * sizeof(ngx_http_torrix_cand_t));
            c[0] = t;
        }

        return;

    case TX_STRATEGY_LATENCY:
        /* a model never observed goes first: it gets measured */
        for (i = 0; i < ctx->ncands; i++) {
            c[i].rank = (int64_t) ngx_http_torrix_latency_get(&c[i].name);
        }

        ngx_http_torrix_route_sort(c, ctx->ncands);
        return;

    case TX_STRATEGY_COST:
        /* Ollama is free; an unpriced model goes last */
        for (i = 0; i < ctx->ncands; i++) {
            c[i].rank = c[i].kind == TX_PROVIDER_OLLAMA ? 0
                        : !c[i].priced                  ? INT64_MAX
                        : c[i].price.free               ? 0
                                          : c[i].price.in + c[i].price.out;
        }

        ngx_http_torrix_route_sort(c, ctx->ncands);
        return;

    default:
        return;
    }
}


/* copies s to p (an empty s may have a NULL pointer) */
static ngx_inline u_char *
ngx_http_torrix_put(u_char *p, ngx_str_t *s)
{
    return s->len ? ngx_cpymem(p, s->data, s->len) : p;
}


ngx_int_t
ngx_http_torrix_route_apply(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                            MDB_txn *txn)
{
    u_char                     *p;
    size_t                      skip;
    ngx_http_torrix_cand_t     *c;
    ngx_http_torrix_provider_t *prv;

    c = &ctx->cands[ctx->cand];

    prv = ngx_http_torrix_cache_provider(txn, &c->provider);
    if (prv == NULL || prv->bad_url) {
        return ngx_http_torrix_reject(ctx, r->pool,
                                      NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "provider_not_configured",
                                      "Provider \"%V\" has no valid base URL",
                                      &c->provider);
    }

    ctx->provider = c->provider;
    ctx->provider_kind = prv->kind;
    ctx->served = c->model;

    if (ngx_http_torrix_route_body(r, ctx, c) != NGX_OK) {
        return ngx_http_torrix_reject(ctx, r->pool,
                                      NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "internal_error",
                                      "Could not rewrite the request body");
    }

    /*
     * OpenAI-style base URLs include the version ("https://api.openai.com/v1"),
     * Anthropic's and Ollama's do not ("https://api.anthropic.com"): the
     * upstream path is the base path followed by the endpoint without or
     * with its "/v1".
     */
    skip = 0;
    for (p = r->uri.data + r->uri.len - 4; p >= r->uri.data; p--) {
        if (p[0] == '/' && p[1] == 'v' && p[2] == '1' && p[3] == '/') {
            skip = p - r->uri.data;
            break;
        }
    }

    if (prv->kind == TX_PROVIDER_OPENAI || prv->kind == TX_PROVIDER_COMPAT
        || (prv->path.len >= 3
            && ngx_strncmp(prv->path.data + prv->path.len - 3, "/v1", 3) == 0))
    {
        skip += 3;
    }

    ctx->upstream_uri.len = prv->path.len + (r->uri.len - skip)
                            + (r->args.len ? r->args.len + 1 : 0);

    p = ngx_pnalloc(r->pool, ctx->upstream_uri.len + prv->upstream.len
                                 + prv->host.len + prv->authorization.len
                                 + prv->api_key.len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->upstream_uri.data = p;
    p = ngx_http_torrix_put(p, &prv->path);
    p = ngx_cpymem(p, r->uri.data + skip, r->uri.len - skip);

    if (r->args.len) {
        *p++ = '?';
        p = ngx_cpymem(p, r->args.data, r->args.len);
    }

    ctx->upstream.data = p;
    ctx->upstream.len = prv->upstream.len;
    p = ngx_http_torrix_put(p, &prv->upstream);

    ctx->upstream_host.data = p;
    ctx->upstream_host.len = prv->host.len;
    p = ngx_http_torrix_put(p, &prv->host);

    ctx->upstream_authorization.data = p;
    ctx->upstream_authorization.len = prv->authorization.len;
    p = ngx_http_torrix_put(p, &prv->authorization);

    ctx->upstream_api_key.data = p;
    ctx->upstream_api_key.len = prv->api_key.len;
    (void) ngx_http_torrix_put(p, &prv->api_key);

    ctx->attempt_us = ngx_http_torrix_now_us();

    return NGX_OK;
}


/*
 * The body for candidate c: the client's, with "model" replaced when the
 * candidate's differs and the include_usage splice of a stream; both are
 * splices into the original bytes.
 */
static ngx_int_t
ngx_http_torrix_route_body(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                           ngx_http_torrix_cand_t *c)
{
    u_char    *q;
    size_t     off1, len1, off2, len2, pos;
    ngx_str_t  parts[5], ins1, ins2, model;
    ngx_uint_t n, rewrite;

    rewrite =
        ctx->model_off >= 0
        && (c->model.len != ctx->model.len
            || ngx_strncmp(c->model.data, ctx->model.data, c->model.len) != 0);

    if (!rewrite && ctx->usage_off < 0) {
        if (ctx->cand == 0) {
            /* the client's body as it came */
            return NGX_OK;
        }

        parts[0] = ctx->req_body;
        return ngx_http_torrix_body_set(r, parts, 1);
    }

    model.len = 0;

    if (rewrite) {
        q = ngx_pnalloc(r->pool, c->model.len * 6 + 2);
        if (q == NULL) {
            return NGX_ERROR;
        }

        model.data = q;
        *q++ = '"';
        q = ngx_http_torrix_json_escape(q, c->model.data, c->model.len);
        *q++ = '"';
        model.len = q - model.data;
    }

    /* at most two splices, in body order */
    off1 = len1 = off2 = len2 = 0;
    ins1.len = ins2.len = 0;
    ins1.data = ins2.data = NULL;
    n = 0;

    if (rewrite && ctx->usage_off >= 0) {
        if ((size_t) ctx->model_off < (size_t) ctx->usage_off) {
            off1 = ctx->model_off;
            len1 = ctx->model_len;
            ins1 = model;
            off2 = ctx->usage_off;
            len2 = ctx->usage_len;
            ins2 = ctx->usage_ins;

        } else {
            off1 = ctx->usage_off;
            len1 = ctx->usage_len;
            ins1 = ctx->usage_ins;
            off2 = ctx->model_off;
            len2 = ctx->model_len;
            ins2 = model;
        }

        n = 2;

    } else if (rewrite) {
        off1 = ctx->model_off;
        len1 = ctx->model_len;
        ins1 = model;
        n = 1;

    } else {
        off1 = ctx->usage_off;
        len1 = ctx->usage_len;
        ins1 = ctx->usage_ins;
        n = 1;
    }

    parts[0].data = ctx->req_body.data;
    parts[0].len = off1;
    parts[1] = ins1;
    pos = off1 + len1;

    if (n == 2) {
        parts[2].data = ctx->req_body.data + pos;
        parts[2].len = off2 - pos;
        parts[3] = ins2;
        pos = off2 + len2;
    }

    parts[n * 2].data = ctx->req_body.data + pos;
    parts[n * 2].len = ctx->req_body.len - pos;

    return ngx_http_torrix_body_set(r, parts, n * 2 + 1);
}


void
ngx_http_torrix_attempt_end(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    ngx_uint_t                 status;
    ngx_http_upstream_t       *u;
    ngx_http_torrix_attempt_t *a;

    if (!ctx->proxied || ctx->attempts == NULL || ctx->nattempts >= ctx->ncands)
    {
        return;
    }

    ctx->proxied = 0;

    a = &ctx->attempts[ctx->nattempts++];
    a->cand = ctx->cand;
    a->us = ngx_http_torrix_now_us() - ctx->attempt_us;
    a->error = NULL;

    u = r->upstream;
    status = u ? u->headers_in.status_n : 0;
    a->status = status;

    if (status == 0) {
        a->error =
            (u && u->state && u->state->status == NGX_HTTP_GATEWAY_TIME_OUT)
                ? "timeout"
                : "connect";
        return;
    }

    if (status < NGX_HTTP_BAD_REQUEST) {
        ngx_http_torrix_latency_put(&ctx->cands[a->cand].name,
                                    (uint64_t) a->us);
        return;
    }

    switch (status) {
    case 404:
        a->error = "http_404";
        break;
    case 429:
        a->error = "http_429";
        break;
    case 500:
        a->error = "http_500";
        break;
    case 502:
        a->error = "http_502";
        break;
    case 503:
        a->error = "http_503";
        break;
    case 504:
        a->error = "http_504";
        break;
    case 529:
        a->error = "http_529";
        break;
    default:
        a->error = status < 500 ? "http_4xx" : "http_5xx";
    }
}


typedef struct {
    ngx_str_t id;
    ngx_str_t owner;
    ngx_str_t alias_of;
} ngx_http_torrix_model_item_t;


static int ngx_libc_cdecl
ngx_http_torrix_model_cmp(const void *a, const void *b)
{
    ngx_int_t                           rc;
    const ngx_http_torrix_model_item_t *x = a, *y = b;

    rc = ngx_memn2cmp(x->id.data, y->id.data, x->id.len, y->id.len);
    if (rc) {
        return rc;
    }

    /* an alias first: it is the one kept */
    return (x->alias_of.len == 0) - (y->alias_of.len == 0);
}


static ngx_int_t
ngx_http_torrix_models_add(ngx_array_t *a, ngx_pool_t *pool, tx_str_t *id,
                           tx_str_t *owner, ngx_str_t *alias_of)
{
    ngx_http_torrix_model_item_t *m;

    m = ngx_array_push(a);
    if (m == NULL) {
        return NGX_ERROR;
    }

    m->id.len = id->len;
    m->id.data = ngx_pnalloc(pool, id->len + owner->len + alias_of->len + 1);
    if (m->id.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(m->id.data, id->data, id->len);

    m->owner.data = m->id.data + id->len;
    m->owner.len = owner->len;
    ngx_memcpy(m->owner.data, owner->data, owner->len);

    m->alias_of.data = m->owner.data + owner->len;
    m->alias_of.len = alias_of->len;
    if (alias_of->len) {
        ngx_memcpy(m->alias_of.data, alias_of->data, alias_of->len);
    }

    return NGX_OK;
}


/*
 * GET /v1/models: the models this key may ask for, in OpenAI's list shape:
 * the priced models of the catalog, the exact router rules of the key's
 * organization and the global ones (aliases, "owned_by": "torrix" with
 * "alias_of"), the primaries of fallback chains, and the exact entries of
 * the key's allowlist, each kept when the allowlist admits it.
 */
ngx_int_t
ngx_http_torrix_route_models(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    u_char                       *body, *p;
    size_t                        len;
    void                         *cur;
    MDB_txn                      *txn;
    tx_str_t                      k, v, models, owner, item;
    tx_price_t                    price;
    ngx_str_t                     none, list[64];
    ngx_uint_t                    i, n, nrules;
    ngx_array_t                   a;
    ngx_http_torrix_rule_t       *rules;
    ngx_http_torrix_model_item_t *m;

    static tx_str_t torrix = {6, (const uint8_t *) "torrix"};

    if (ngx_array_init(&a, r->pool, 64, sizeof(ngx_http_torrix_model_item_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    models.data = ctx->models.data;
    models.len = ctx->models.len;
    none.len = 0;
    none.data = NULL;

    /* the allowlist's exact names */
    n = ngx_http_torrix_split(&ctx->models, list, 64);

    for (i = 0; i < n; i++) {
        if (ngx_strlchr(list[i].data, list[i].data + list[i].len, '*')) {
            continue;
        }

        item.data = list[i].data;
        item.len = list[i].len;

        if (ngx_http_torrix_models_add(&a, r->pool, &item, &torrix, &none)
            != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    txn = ngx_http_torrix_txn(r, ctx);
    if (txn == NULL) {
        return ngx_http_torrix_send_error(r, ctx);
    }

    cur = NULL;

    while (ngx_http_torrix_snapshot_next(txn, NGX_HTTP_TORRIX_DB_PRICES, &cur,
                                         &k, &v)
           == TX_OK)
    {
        if (!tx_glob_list_match(&models, k.data, k.len)
            || tx_price_decode(v.data, v.len, &price) != TX_OK)
        {
            continue;
        }

        owner = price.provider.len ? price.provider : torrix;

        if (ngx_http_torrix_models_add(&a, r->pool, &k, &owner, &none)
            != NGX_OK) {
            ngx_http_torrix_snapshot_close_cursor(cur);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    cur = NULL;

    while (ngx_http_torrix_snapshot_next(txn, NGX_HTTP_TORRIX_DB_FALLBACKS,
                                         &cur, &k, &v)
           == TX_OK)
    {
        if (!tx_glob_list_match(&models, k.data, k.len)) {
            continue;
        }

        if (ngx_http_torrix_models_add(&a, r->pool, &k, &torrix, &none)
            != NGX_OK) {
            ngx_http_torrix_snapshot_close_cursor(cur);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rules = ngx_http_torrix_cache_rules(txn, &nrules);

    for (i = 0; i < nrules; i++) {
        if (rules[i].glob
            || (rules[i].org.len
                && (rules[i].org.len != ctx->org.len
                    || ngx_strncmp(rules[i].org.data, ctx->org.data,
                                   ctx->org.len)
                           != 0)))
        {
            continue;
        }

        item.data = rules[i].pattern.data;
        item.len = rules[i].pattern.len;

        if (!tx_glob_list_match(&models, item.data, item.len)) {
            continue;
        }

        if (ngx_http_torrix_models_add(&a, r->pool, &item, &torrix,
                                       &rules[i].target)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    m = a.elts;
    ngx_qsort(m, a.nelts, sizeof(ngx_http_torrix_model_item_t),
              ngx_http_torrix_model_cmp);

    len = sizeof("{\"object\":\"list\",\"data\":[]}");
    for (i = 0; i < a.nelts; i++) {
        len += sizeof("{\"id\":\"\",\"object\":\"model\",\"created\":0,"
                      "\"owned_by\":\"\",\"alias_of\":\"\"},")
               + (m[i].id.len + m[i].owner.len + m[i].alias_of.len) * 6;
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body, "{\"object\":\"list\",\"data\":[",
                   sizeof("{\"object\":\"list\",\"data\":[") - 1);

    for (i = 0; i < a.nelts; i++) {
        /* sorted: an alias first, then a duplicate of the same id */
        if (i > 0 && m[i].id.len == m[i - 1].id.len
            && ngx_memcmp(m[i].id.data, m[i - 1].id.data, m[i].id.len) == 0)
        {
            continue;
        }

        if (p[-1] == '}') {
            *p++ = ',';
        }

        p = ngx_cpymem(p, "{\"id\":\"", sizeof("{\"id\":\"") - 1);
        p = ngx_http_torrix_json_escape(p, m[i].id.data, m[i].id.len);
        p = ngx_cpymem(p,
                       "\",\"object\":\"model\",\"created\":0,\"owned_by\":\"",
                       sizeof("\",\"object\":\"model\",\"created\":0,"
                              "\"owned_by\":\"")
                           - 1);
        p = ngx_http_torrix_json_escape(p, m[i].owner.data, m[i].owner.len);
        *p++ = '"';

        if (m[i].alias_of.len) {
            p = ngx_cpymem(p, ",\"alias_of\":\"",
                           sizeof(",\"alias_of\":\"") - 1);
            p = ngx_http_torrix_json_escape(p, m[i].alias_of.data,
                                            m[i].alias_of.len);
            *p++ = '"';
        }

        *p++ = '}';
    }

    p = ngx_cpymem(p, "]}", 2);

    return ngx_http_torrix_send_json(r, NGX_HTTP_OK, body, p - body);
}

/*
 * ngx_torrix_module: the admission plan.
 *
 * From the snapshot (one read txn): the key's rate limits (or its project's
 * or organization's defaults), every budget that applies to the request
 * (key daily and monthly, project daily and monthly, organization monthly
 * with rollover, user weekly, instance daily), what torrix-cp has ingested
 * against each in the current window, the ingest watermark, and the
 * request's worst case: input estimated from the body size (bytes / 3: a
 * token is rarely shorter than three bytes of JSON) plus max_tokens (or the
 * instance's default_max_tokens), priced with the model's price.  Then
 * _zone.c admits or refuses under the zone lock.
 */

#include "ngx_http_torrix_module.h"


static void ngx_http_torrix_add_cap(ngx_http_torrix_ctx_t *ctx, MDB_txn *txn,
                                    ngx_uint_t scope, ngx_str_t *id,
                                    ngx_uint_t kind, tx_money_t cap);
static tx_money_t ngx_http_torrix_ingested(ngx_http_torrix_ctx_t *ctx,
                                           MDB_txn *txn, ngx_uint_t scope,
                                           ngx_str_t *id, ngx_uint_t kind,
                                           uint32_t index);
static int64_t    ngx_http_torrix_field(const tx_str_t *rec, uint16_t tag);
static void       ngx_http_torrix_plan_scopes(ngx_http_torrix_ctx_t *ctx,
                                              MDB_txn               *txn);
static void       ngx_http_torrix_plan_apply(ngx_http_torrix_ctx_t        *ctx,
                                             const ngx_http_torrix_plan_t *plan);
static void       ngx_http_torrix_plan_save(ngx_http_torrix_ctx_t *ctx);


ngx_int_t
ngx_http_torrix_limits(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    int64_t                       max_out;
    uint64_t                      est_in;
    MDB_txn                      *txn;
    ngx_uint_t                    i;
    tx_money_t                    cost;
    ngx_http_torrix_cand_t       *c;
    const ngx_http_torrix_plan_t *plan;

    if (ctx->endpoint == TX_EP_MODELS) {
        return NGX_OK;
    }

    txn = ngx_http_torrix_txn(r, ctx);
    if (txn == NULL) {
        return ctx->status;
    }

    ctx->now_s = ngx_http_torrix_time();
    ctx->windows[0] = tx_window_index(TX_WIN_DAY, ctx->now_s);
    ctx->windows[1] = tx_window_index(TX_WIN_WEEK, ctx->now_s);
    ctx->windows[2] = tx_window_index(TX_WIN_MONTH, ctx->now_s);

    ctx->watermark_us = ngx_http_torrix_cache_watermark(txn);

    plan = ngx_http_torrix_cache_plan_get(&ctx->key_id, ctx->windows[0]);

    if (plan) {
        ngx_http_torrix_plan_apply(ctx, plan);

    } else {
        ngx_http_torrix_plan_scopes(ctx, txn);
        ngx_http_torrix_plan_save(ctx);
    }

    /* the worst case */

    max_out = ctx->max_out;

    if (max_out < 0) {
        max_out = ngx_http_torrix_cache_setting(
            txn, NGX_HTTP_TORRIX_SET_DEFAULT_MAX_TOKENS);
    }

    est_in = (ctx->prompt_bytes + 2) / 3;
    ctx->est_tokens = est_in + (uint64_t) max_out;
    ctx->est_cost = 0;

    /* a fallback may serve it: the dearest candidate is the worst case */
    for (i = 0; ctx->ncaps && i < ctx->ncands; i++) {
        c = &ctx->cands[i];

        if (c->priced && !c->price.free
            && tx_price_cost(&c->price, est_in, (uint64_t) max_out, 0, 0, &cost)
                   == TX_OK
            && cost > ctx->est_cost)
        {
            ctx->est_cost = cost;
        }
    }


    return ngx_http_torrix_admit(r, ctx);
}


static void
ngx_http_torrix_add_cap(ngx_http_torrix_ctx_t *ctx, MDB_txn *txn,
                        ngx_uint_t scope, ngx_str_t *id, ngx_uint_t kind,
                        tx_money_t cap)
{
    uint32_t               index;
    ngx_http_torrix_cap_t *c;

    if (cap <= 0 || ctx->ncaps == NGX_HTTP_TORRIX_MAX_CAPS) {
        return;
    }

    index =
        ctx->windows[kind == TX_WIN_DAY ? 0 : (kind == TX_WIN_WEEK ? 1 : 2)];

    c = &ctx->caps[ctx->ncaps++];

    c->scope = scope;
    c->id = *id;
    c->kind = kind;
    c->index = index;
    c->cap = cap;
    c->ingested = ngx_http_torrix_ingested(ctx, txn, scope, id, kind, index);
    c->node = NULL;
}


static tx_money_t
ngx_http_torrix_ingested(ngx_http_torrix_ctx_t *ctx, MDB_txn *txn,
                         ngx_uint_t scope, ngx_str_t *id, ngx_uint_t kind,
                         uint32_t index)
{
    size_t   len;
    int64_t  v;
    tx_str_t val;
    uint8_t  key[TX_SPEND_KEY_MAX];

    len = tx_spend_key(key, scope, kind, index, id->data, id->len);

    if (ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_SPEND, key, len,
                                     &val)
            != TX_OK
        || val.len != 8)
    {
        return 0;
    }

    ngx_memcpy(&v, val.data, 8);

    return v;
}


static int64_t
ngx_http_torrix_field(const tx_str_t *rec, uint16_t tag)
{
    int64_t  v;
    tx_str_t val;

    if (tx_rec_find(rec->data, rec->len, tag, &val) != TX_OK
        || tx_rec_i64(&val, &v) != TX_OK)
    {
        return 0;
    }

    return v;
}


/*
 * The scopes of the request's key with their caps and ingested spend, and
 * its effective rate limits, read from the snapshot.
 */
static void
ngx_http_torrix_plan_scopes(ngx_http_torrix_ctx_t *ctx, MDB_txn *txn)
{
    int64_t    v;
    uint64_t   prj_rpm, prj_tpm, org_rpm, org_tpm;
    tx_str_t   val;
    ngx_str_t  none;
    tx_money_t cap, prev;

    prj_rpm = 0;
    prj_tpm = 0;
    org_rpm = 0;
    org_tpm = 0;

    /* key */

    ngx_http_torrix_add_cap(ctx, txn, TX_SCOPE_KEY, &ctx->key_id, TX_WIN_DAY,
                            ctx->key_daily_cap);
    ngx_http_torrix_add_cap(ctx, txn, TX_SCOPE_KEY, &ctx->key_id, TX_WIN_MONTH,
                            ctx->key_monthly_budget);

    /* project */

    if (ctx->project.len
        && ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_PROJECTS,
                                        ctx->project.data, ctx->project.len,
                                        &val)
               == TX_OK)
    {
        prj_rpm = ngx_http_torrix_field(&val, TX_PRJ_RPM);
        prj_tpm = ngx_http_torrix_field(&val, TX_PRJ_TPM);

        ngx_http_torrix_add_cap(ctx, txn, TX_SCOPE_PROJECT, &ctx->project,
                                TX_WIN_DAY,
                                ngx_http_torrix_field(&val, TX_PRJ_DAILY_CAP));
        ngx_http_torrix_add_cap(ctx, txn, TX_SCOPE_PROJECT, &ctx->project,
                                TX_WIN_MONTH,
                                ngx_http_torrix_field(&val,
                                                      TX_PRJ_MONTHLY_CAP));
    }

    /* organization: monthly cap, plus last month's unused part on rollover */

    if (ctx->org.len
        && ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_ORGS,
                                        ctx->org.data, ctx->org.len, &val)
               == TX_OK)
    {
        org_rpm = ngx_http_torrix_field(&val, TX_ORG_RPM);
        org_tpm = ngx_http_torrix_field(&val, TX_ORG_TPM);

        cap = ngx_http_torrix_field(&val, TX_ORG_SPEND_CAP);

        if (cap > 0 && ngx_http_torrix_field(&val, TX_ORG_ROLLOVER)) {
            prev = ngx_http_torrix_ingested(ctx, txn, TX_SCOPE_ORG, &ctx->org,
                                            TX_WIN_MONTH, ctx->windows[2] - 1);
            if (prev < cap) {
                cap += cap - prev;
            }
        }

        ngx_http_torrix_add_cap(ctx, txn, TX_SCOPE_ORG, &ctx->org, TX_WIN_MONTH,
                                cap);
    }

    /* user: weekly */

    if (ctx->user.len
        && ngx_http_torrix_snapshot_get(txn, NGX_HTTP_TORRIX_DB_USERS,
                                        ctx->user.data, ctx->user.len, &val)
               == TX_OK)
    {
        ngx_http_torrix_add_cap(ctx, txn, TX_SCOPE_USER, &ctx->user,
                                TX_WIN_WEEK,
                                ngx_http_torrix_field(&val, TX_USR_WEEKLY_CAP));
    }

    /* instance: daily hard cap */

    v = ngx_http_torrix_cache_setting(txn, NGX_HTTP_TORRIX_SET_INSTANCE_CAP);

    if (v > 0) {
        ngx_str_null(&none);
        ngx_http_torrix_add_cap(ctx, txn, TX_SCOPE_INSTANCE, &none, TX_WIN_DAY,
                                v);
    }

    /* a key's own rate limits win over its project's, then its org's */

    ctx->rpm = ctx->key_rpm ? ctx->key_rpm : (prj_rpm ? prj_rpm : org_rpm);
    ctx->tpm = ctx->key_tpm ? ctx->key_tpm : (prj_tpm ? prj_tpm : org_tpm);
}


/* the ctx's scope string for a plan's scope */
static ngx_str_t *
ngx_http_torrix_plan_id(ngx_http_torrix_ctx_t *ctx, ngx_uint_t scope)
{
    static ngx_str_t none = ngx_null_string;

    switch (scope) {
    case TX_SCOPE_KEY:
        return &ctx->key_id;
    case TX_SCOPE_PROJECT:
        return &ctx->project;
    case TX_SCOPE_ORG:
        return &ctx->org;
    case TX_SCOPE_USER:
        return &ctx->user;
    default:
        return &none;
    }
}


static void
ngx_http_torrix_plan_apply(ngx_http_torrix_ctx_t        *ctx,
                           const ngx_http_torrix_plan_t *plan)
{
    ngx_uint_t             i;
    ngx_http_torrix_cap_t *c;

    ctx->rpm = plan->rpm;
    ctx->tpm = plan->tpm;
    ctx->ncaps = plan->ncaps;

    for (i = 0; i < plan->ncaps; i++) {
        c = &ctx->caps[i];

        c->scope = plan->caps[i].scope;
        c->kind = plan->caps[i].kind;
        c->index = plan->caps[i].index;
        c->cap = plan->caps[i].cap;
        c->ingested = plan->caps[i].ingested;
        c->id = *ngx_http_torrix_plan_id(ctx, c->scope);
        c->node = NULL;
    }
}


static void
ngx_http_torrix_plan_save(ngx_http_torrix_ctx_t *ctx)
{
    ngx_uint_t             i;
    ngx_http_torrix_plan_t plan;

    plan.rpm = ctx->rpm;
    plan.tpm = ctx->tpm;
    plan.ncaps = ctx->ncaps;

    for (i = 0; i < ctx->ncaps; i++) {
        plan.caps[i].scope = (u_char) ctx->caps[i].scope;
        plan.caps[i].kind = (u_char) ctx->caps[i].kind;
        plan.caps[i].index = ctx->caps[i].index;
        plan.caps[i].cap = ctx->caps[i].cap;
        plan.caps[i].ingested = ctx->caps[i].ingested;
    }

    ngx_http_torrix_cache_plan_put(&ctx->key_id, ctx->windows[0], &plan);
}

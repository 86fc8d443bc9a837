/*
 * ngx_torrix_module: the log phase writes one run record per request to the
 * worker's spool.  It runs for every end of a request, client aborts (499)
 * and refusals included, so no request goes unrecorded.
 */

#include "ngx_http_torrix_module.h"


#define NGX_HTTP_TORRIX_RUN_FIXED 12288 /* a record without bodies */
#define NGX_HTTP_TORRIX_HDR_MAX   256


static uint8_t ngx_http_torrix_run_buf[NGX_HTTP_TORRIX_RUN_FIXED];


static void ngx_http_torrix_put_capped(tx_wbuf_t *wb, uint16_t tag,
                                       ngx_str_t *v);
static void ngx_http_torrix_put_str(tx_wbuf_t *wb, uint16_t tag, ngx_str_t *s);
static void ngx_http_torrix_put_attempts(ngx_http_torrix_ctx_t *ctx,
                                         tx_wbuf_t             *wb);
static void ngx_http_torrix_put_usage(ngx_http_request_t    *r,
                                      ngx_http_torrix_ctx_t *ctx, tx_wbuf_t *wb,
                                      uint64_t *flags, tx_money_t *cost,
                                      uint64_t *tokens);
static void ngx_http_torrix_put_bodies(ngx_http_request_t    *r,
                                       ngx_http_torrix_ctx_t *ctx,
                                       tx_wbuf_t *wb, uint64_t *flags,
                                       size_t max);


ngx_int_t
ngx_http_torrix_log_handler(ngx_http_request_t *r)
{
    int64_t                      now;
    uint64_t                     flags, status;
    ngx_msec_int_t               ms;
    tx_wbuf_t                    wb;
    ngx_http_upstream_t         *u;
    ngx_http_torrix_ctx_t       *ctx;
    ngx_http_upstream_state_t   *state;
    ngx_http_torrix_main_conf_t *tmcf;
    size_t                       size, body_max;
    uint8_t                     *buf;
    uint64_t                     tokens;
    size_t                       limit_len;
    uint8_t                      limit_key[TX_SPEND_KEY_MAX];
    tx_money_t                   cost;

    ctx = ngx_http_torrix_get_ctx(r);
    if (ctx == NULL) {
        return NGX_OK;
    }

    tmcf = ngx_http_get_module_main_conf(r, ngx_http_torrix_module);

    /* an attempt whose response never reached the header filter */
    ngx_http_torrix_attempt_end(r, ctx);

    now = ngx_http_torrix_now_us();

    status = r->headers_out.status;
    if (r->connection->error && !r->header_sent) {
        status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
    }

    flags = 0;

    if (ctx->stream) {
        flags |= TX_RUNF_STREAM;
    }

    if (ctx->rejected) {
        flags |= TX_RUNF_REJECTED;
    }

    /* a client that went away cancelled the run; it is not an error */
    if (status >= 400 && status != NGX_HTTP_CLIENT_CLOSED_REQUEST) {
        flags |= TX_RUNF_ERROR;
    }

    if (r->connection->error) {
        flags |= TX_RUNF_CANCELLED;

    } else if (r->upstream && r->upstream->header_sent
               && r->upstream->length > 0) {
        /* the provider closed before the response it announced ended */
        flags |= TX_RUNF_CANCELLED | TX_RUNF_ERROR;

        if (ctx->err_type == NULL) {
            ngx_http_torrix_reject(ctx, r->pool, status, "upstream_truncated",
                                   "The provider closed the connection "
                                   "before the response ended");
            ctx->rejected = 0;
        }
    }

    if (ctx->sampled) {
        flags |= TX_RUNF_SAMPLED;
    }

    if (ctx->strip_usage) {
        flags |= TX_RUNF_USAGE_INJECTED;
    }

    /* bodies: a sampled run's, and a failed run's whole (bounded by spool) */
    body_max = 0;
    if (ctx->sampled || (flags & TX_RUNF_ERROR)) {
        body_max = (flags & TX_RUNF_ERROR) ? NGX_HTTP_TORRIX_CAPTURE_ERR
                                           : NGX_HTTP_TORRIX_CAPTURE_MAX;
        body_max =
            ngx_min(body_max,
                    (tmcf->spool_size / 4 - NGX_HTTP_TORRIX_RUN_FIXED) / 2);
    }

    size = NGX_HTTP_TORRIX_RUN_FIXED + 2 * body_max;

    if (body_max == 0) {
        /* the common case: no body, no allocation (the handler is
         * synchronous, one record at a time per worker) */
        buf = ngx_http_torrix_run_buf;

    } else {
        buf = ngx_pnalloc(r->pool, size);
        if (buf == NULL) {
            return NGX_ERROR;
        }
    }

    tx_wbuf_init_compact(&wb, buf, size);

    tx_rec_put_bytes(&wb, TX_RUN_ID, ctx->run_id, sizeof(ctx->run_id));
    tx_rec_put_i64(&wb, TX_RUN_START_US, ctx->start_us);
    ngx_http_torrix_put_str(&wb, TX_RUN_KEY_ID, &ctx->key_id);
    ngx_http_torrix_put_str(&wb, TX_RUN_PROJECT, &ctx->project);
    ngx_http_torrix_put_str(&wb, TX_RUN_ORG, &ctx->org);
    ngx_http_torrix_put_str(&wb, TX_RUN_USER, &ctx->user);
    tx_rec_put_u64(&wb, TX_RUN_ENDPOINT, ctx->endpoint);
    ngx_http_torrix_put_str(&wb, TX_RUN_MODEL_REQ, &ctx->model);
    ngx_http_torrix_put_str(&wb, TX_RUN_PROVIDER, &ctx->provider);
    tx_rec_put_u64(&wb, TX_RUN_STATUS, status);
    tx_rec_put_u64(&wb, TX_RUN_LATENCY_US, (uint64_t) (now - ctx->start_us));
    tx_rec_put_u64(&wb, TX_RUN_BYTES_IN, r->request_length);
    tx_rec_put_u64(&wb, TX_RUN_BYTES_OUT, r->connection->sent);
    cost = 0;
    tokens = 0;

    ngx_http_torrix_put_usage(r, ctx, &wb, &flags, &cost, &tokens);

    if (ctx->est_cost) {
        tx_rec_put_i64(&wb, TX_RUN_RESERVED, ctx->est_cost);
    }

    if (body_max) {
        ngx_http_torrix_put_bodies(r, ctx, &wb, &flags, body_max);
    }

    tx_rec_put_u64(&wb, TX_RUN_FLAGS, flags);
    ngx_http_torrix_put_str(&wb, TX_RUN_METHOD, &r->method_name);

    if (ctx->first_byte) {
        tx_rec_put_u64(&wb, TX_RUN_TTFT_US,
                       (uint64_t) (ctx->first_byte_us - ctx->start_us));
    }

    u = r->upstream;

    if (u && u->state && u->state->status) {
        state = u->state;
        ms = state->response_time;

        tx_rec_put_u64(&wb, TX_RUN_UPSTREAM_STATUS, state->status);
        tx_rec_put_u64(&wb, TX_RUN_UPSTREAM_US,
                       ms >= 0 ? (uint64_t) ms * 1000 : 0);
    }

    if (ctx->upstream_host.len) {
        ngx_http_torrix_put_str(&wb, TX_RUN_TARGET, &ctx->upstream_host);
    }

    ngx_http_torrix_put_attempts(ctx, &wb);

    if (ctx->limit_scope) {
        /* which budget refused it: torrix-cp raises the hard alert */
        limit_len =
            tx_spend_key(limit_key, ctx->limit_scope->scope,
                         ctx->limit_scope->kind, ctx->limit_scope->index,
                         ctx->limit_scope->id.data, ctx->limit_scope->id.len);
        tx_rec_put_bytes(&wb, TX_RUN_LIMIT, limit_key, limit_len);
    }

    if (ctx->err_type) {
        tx_rec_put_cstr(&wb, TX_RUN_ERROR_TYPE, ctx->err_type);
        ngx_http_torrix_put_str(&wb, TX_RUN_ERROR, &ctx->err_msg);
    }

    ngx_http_torrix_put_capped(&wb, TX_RUN_NAME, &ctx->run_name);
    ngx_http_torrix_put_capped(&wb, TX_RUN_END_USER, &ctx->end_user);
    ngx_http_torrix_put_capped(&wb, TX_RUN_TAGS, &ctx->tags);

    if (tmcf->edge_name.len) {
        ngx_http_torrix_put_str(&wb, TX_RUN_EDGE, &tmcf->edge_name);
    }

    if (wb.overflow) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "torrix: run record too large");
        ngx_http_torrix_settle(ctx, cost, tokens);
        return NGX_OK;
    }

    if (ngx_http_torrix_spool_write(r->connection->log, wb.start,
                                    wb.pos - wb.start)
        == NGX_ERROR)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "torrix: run %s not spooled", ctx->run_id_hex);
    }

    /*
     * every end of an admitted request releases its reservation here, after
     * the frame is in the spool: a run settled before torrix-cp's ingest
     * watermark is then always in the spend the snapshot publishes
     */
    ngx_http_torrix_settle(ctx, cost, tokens);

    return NGX_OK;
}


/* every upstream attempt, in the order tried */
static void
ngx_http_torrix_put_attempts(ngx_http_torrix_ctx_t *ctx, tx_wbuf_t *wb)
{
    uint8_t                    buf[NGX_HTTP_TORRIX_MODEL_MAX + 256];
    tx_wbuf_t                  ab;
    ngx_uint_t                 i;
    ngx_http_torrix_cand_t    *c;
    ngx_http_torrix_attempt_t *a;

    for (i = 0; i < ctx->nattempts; i++) {
        a = &ctx->attempts[i];
        c = &ctx->cands[a->cand];

        tx_wbuf_init_compact(&ab, buf, sizeof(buf));
        tx_rec_put_bytes(&ab, TX_ATT_MODEL, c->model.data,
                         ngx_min(c->model.len, NGX_HTTP_TORRIX_MODEL_MAX));
        tx_rec_put_bytes(&ab, TX_ATT_PROVIDER, c->provider.data,
                         ngx_min(c->provider.len, 128));
        tx_rec_put_u64(&ab, TX_ATT_STATUS, a->status);
        tx_rec_put_u64(&ab, TX_ATT_US, a->us > 0 ? (uint64_t) a->us : 0);

        if (a->error) {
            tx_rec_put_cstr(&ab, TX_ATT_ERROR, a->error);
        }

        if (!ab.overflow) {
            tx_rec_put_bytes(wb, TX_RUN_ATTEMPT, ab.start, ab.pos - ab.start);
        }
    }
}


static void
ngx_http_torrix_put_capped(tx_wbuf_t *wb, uint16_t tag, ngx_str_t *v)
{
    if (v->len) {
        tx_rec_put_bytes(wb, tag, v->data,
                         ngx_min(v->len, NGX_HTTP_TORRIX_HDR_MAX));
    }
}


static void
ngx_http_torrix_put_str(tx_wbuf_t *wb, uint16_t tag, ngx_str_t *s)
{
    if (s->len) {
        tx_rec_put_bytes(wb, tag, s->data, s->len);
    }
}


/* tokens from the meter, the model that served, and the cost */
static void
ngx_http_torrix_put_usage(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                          tx_wbuf_t *wb, uint64_t *flags, tx_money_t *costp,
                          uint64_t *tokens)
{
    MDB_txn          *txn;
    ngx_str_t         model, fb;
    const tx_price_t *price;
    ngx_uint_t        known;
    tx_usage_t        u;
    tx_money_t        cost;
    ngx_uint_t        found;

    if (ctx->meter == NULL) {
        if (ctx->served.len) {
            ngx_http_torrix_put_str(wb, TX_RUN_MODEL, &ctx->served);

        } else if (ctx->model.len) {
            ngx_http_torrix_put_str(wb, TX_RUN_MODEL, &ctx->model);
        }

        return;
    }

    tx_meter_result(ctx->meter, &u);

    if (u.out_chars && (*flags & TX_RUNF_CANCELLED || !u.has_usage)
        && u.output < (u.out_chars + 3) / 4)
    {
        /*
         * a stream cut before its final usage (OpenAI sends none until the
         * end; Anthropic's message_start holds a placeholder output count):
         * bill what was delivered
         */
        u.output = (u.out_chars + 3) / 4;

        if (!u.has_usage) {
            u.input = (ctx->prompt_bytes + 3) / 4;
        }

        *flags |= TX_RUNF_ESTIMATED;
    }

    model.len = u.model_len;
    model.data = (u_char *) u.model;

    if (model.len == 0) {
        model = ctx->served.len ? ctx->served : ctx->model;
    }

    ngx_http_torrix_put_str(wb, TX_RUN_MODEL, &model);

    tx_rec_put_u64(wb, TX_RUN_TOKENS_IN, u.input);
    tx_rec_put_u64(wb, TX_RUN_TOKENS_OUT, u.output);

    *tokens = u.input + u.output;

    if (u.cache_read) {
        tx_rec_put_u64(wb, TX_RUN_TOKENS_CACHE_READ, u.cache_read);
    }

    if (u.cache_write) {
        tx_rec_put_u64(wb, TX_RUN_TOKENS_CACHE_WRITE, u.cache_write);
    }

    if (u.reasoning) {
        tx_rec_put_u64(wb, TX_RUN_TOKENS_REASONING, u.reasoning);
    }

    if (ctx->provider_kind == TX_PROVIDER_OLLAMA) {
        tx_rec_put_i64(wb, TX_RUN_COST, 0);
        return;
    }

    if (u.input == 0 && u.output == 0) {
        return;
    }

    found = 0;
    cost = 0;

    /* the memo usually knows the price: no transaction then */
    price = ngx_http_torrix_cache_price_peek(model.data, model.len, &known);

    fb = ctx->served.len ? ctx->served : ctx->model;

    if (known && price == NULL && fb.len) {
        price = ngx_http_torrix_cache_price_peek(fb.data, fb.len, &known);
    }

    if (!known) {
        txn = ngx_http_torrix_snapshot_begin(r->connection->log);

        if (txn) {
            price = ngx_http_torrix_cache_price(txn, model.data, model.len);

            if (price == NULL && fb.len) {
                price = ngx_http_torrix_cache_price(txn, fb.data, fb.len);
            }
        }
    }

    if (price
        && (price->free
            || tx_price_cost(price, u.input, u.output, u.cache_read,
                             u.cache_write, &cost)
                   == TX_OK))
    {
        found = 1;

        if (price->free) {
            cost = 0;
        }
    }

    if (!found) {
        *flags |= TX_RUNF_UNPRICED;
    }

    *costp = cost;

    tx_rec_put_i64(wb, TX_RUN_COST, cost);
}


static void
ngx_http_torrix_put_bodies(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                           tx_wbuf_t *wb, uint64_t *flags, size_t max)
{
    size_t len;

    if (ctx->req_body.len) {
        len = ctx->req_body.len;

        if (len > max) {
            len = max;
            *flags |= TX_RUNF_TRUNCATED;
        }

        tx_rec_put_bytes(wb, TX_RUN_REQ_BODY, ctx->req_body.data, len);
    }

    if (ctx->resp_len) {
        len = ctx->resp_len;

        if (len > max) {
            len = max;
            *flags |= TX_RUNF_TRUNCATED;
        }

        if (ctx->resp_truncated) {
            *flags |= TX_RUNF_TRUNCATED;
        }

        tx_rec_put_bytes(wb, TX_RUN_RESP_BODY, ctx->resp, len);

    } else if (ctx->err_body.len) {
        tx_rec_put_bytes(wb, TX_RUN_RESP_BODY, ctx->err_body.data,
                         ctx->err_body.len);
    }
}

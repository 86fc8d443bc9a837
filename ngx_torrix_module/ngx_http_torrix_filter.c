/*
 * ngx_torrix_module: response header and body filters.
 *
 * The header filter stamps x-torrix-run-id on every response of a Torrix
 * request (refusals included) and turns the error pages nginx itself makes
 * after admission (upstream unreachable or timed out) into the client's
 * provider error shape, and starts metering the response.
 *
 * The body filter feeds every response byte to the usage meter
 * (shared/tx_usage.h) as it passes, keeps the body of a sampled or failed run
 * (bounded), and notes the first byte (TTFT).  Bytes pass through untouched
 * and unheld, except in one case: when the gateway injected
 * stream_options.include_usage, each SSE event is held until it is complete
 * (at most one partial event) so the usage-only chunk the client did not ask
 * for can be dropped; what is released goes out at once with flush set.
 */

#include "ngx_http_torrix_module.h"


#define NGX_HTTP_TORRIX_HDR_VALUE 128
#define NGX_HTTP_TORRIX_NUM_LEN   (NGX_INT64_LEN + 3) /* -, digits, "ms" */


static ngx_int_t ngx_http_torrix_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_torrix_body_filter(ngx_http_request_t *r,
                                             ngx_chain_t        *in);
static ngx_int_t ngx_http_torrix_error_page(ngx_http_request_t    *r,
                                            ngx_http_torrix_ctx_t *ctx);
static ngx_int_t ngx_http_torrix_meter_start(ngx_http_request_t    *r,
                                             ngx_http_torrix_ctx_t *ctx);
static ngx_int_t ngx_http_torrix_limit_out(ngx_http_request_t    *r,
                                           ngx_http_torrix_ctx_t *ctx);
static ngx_int_t ngx_http_torrix_add_header(ngx_http_request_t *r,
                                            const char *name, const char *fmt,
                                            ...);
static ngx_int_t ngx_http_torrix_error_page_body(ngx_http_request_t    *r,
                                                 ngx_http_torrix_ctx_t *ctx,
                                                 ngx_chain_t           *in);
static void      ngx_http_torrix_capture(ngx_http_request_t    *r,
                                         ngx_http_torrix_ctx_t *ctx, u_char *p,
                                         size_t len);
static ngx_int_t ngx_http_torrix_strip(ngx_http_request_t    *r,
                                       ngx_http_torrix_ctx_t *ctx,
                                       ngx_chain_t           *in);


static ngx_http_output_header_filter_pt ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt   ngx_http_next_body_filter;


ngx_int_t
ngx_http_torrix_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_torrix_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_torrix_body_filter;

    return NGX_OK;
}


int64_t
ngx_http_torrix_real_us(void)
{
    struct timespec ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);

    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


int64_t
ngx_http_torrix_now_us(void)
{
    struct timespec ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);

    return ((int64_t) ts.tv_sec + ngx_http_torrix_clock_offset()) * 1000000
           + ts.tv_nsec / 1000;
}


static ngx_int_t
ngx_http_torrix_header_filter(ngx_http_request_t *r)
{
    ngx_table_elt_t       *h;
    ngx_http_torrix_ctx_t *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_torrix_get_ctx(r);
    if (ctx == NULL) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx->proxied && r->upstream) {
        ngx_http_torrix_attempt_end(r, ctx);
    }

    if (r->err_status >= NGX_HTTP_BAD_REQUEST && !ctx->rejected) {
        if (ngx_http_torrix_error_page(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (!ctx->rejected && !ctx->replace_body && r->upstream) {
        if (ngx_http_torrix_meter_start(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "x-torrix-run-id");
    h->value.len = 32;
    h->value.data = (u_char *) ctx->run_id_hex;

    if (ngx_http_torrix_limit_out(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_torrix_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    u_char                *p;
    size_t                 n;
    ngx_uint_t             last;
    tx_usage_t             u;
    ngx_chain_t           *cl;
    ngx_http_torrix_ctx_t *ctx;

    if (in == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_torrix_get_ctx(r);
    if (ctx == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->replace_body) {
        return ngx_http_torrix_error_page_body(r, ctx, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        last |= cl->buf->last_buf;

        if (!ngx_buf_in_memory(cl->buf) || cl->buf->pos == cl->buf->last) {
            continue;
        }

        if (!ctx->first_byte) {
            ctx->first_byte = 1;
            ctx->first_byte_us = ngx_http_torrix_now_us();
        }

        if (ctx->resp_max) {
            ngx_http_torrix_capture(r, ctx, cl->buf->pos,
                                    cl->buf->last - cl->buf->pos);
        }

        if (ctx->meter && !ctx->strip_usage) {
            p = cl->buf->pos;

            while (p < cl->buf->last) {
                n = tx_meter_feed(ctx->meter, p, cl->buf->last - p, NULL);
                p += n;
            }
        }
    }

    if (last && ctx->meter && ctx->tpm_taken) {
        /*
         * the usage is known before the last byte leaves: the unused part
         * of the TPM estimate goes back now, so the client's next request
         * already sees it (the log phase would be a moment too late)
         */
        tx_meter_result(ctx->meter, &u);

        if (u.has_usage) {
            ngx_http_torrix_tpm_return(ctx, u.input + u.output);
        }
    }

    if (ctx->strip_usage) {
        return ngx_http_torrix_strip(r, ctx, in);
    }

    return ngx_http_next_body_filter(r, in);
}


static ngx_int_t
ngx_http_torrix_meter_start(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    int        format;
    ngx_str_t *ct;

    ct = &r->headers_out.content_type;

    /* JSON: "application/json" compared first, the search costs more */

    if (ct->len >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(ct->data, (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1)
               == 0)
    {
        format = TX_METER_SSE;
        ctx->stream = 1;

    } else if ((ct->len >= sizeof("application/json") - 1
                && ngx_strncmp(ct->data, "application/json",
                               sizeof("application/json") - 1)
                       == 0)
               || ngx_strlcasestrn(ct->data, ct->data + ct->len,
                                   (u_char *) "json", 4 - 1)
                      != NULL)
    {
        format = TX_METER_JSON;

    } else {
        format = 0;
    }

    if (format != TX_METER_SSE) {
        ctx->strip_usage = 0;
    }

    if (ctx->strip_usage) {
        /* the body changes length */
        ngx_http_clear_content_length(r);
        ngx_http_clear_accept_ranges(r);
    }

    if (format) {
        ctx->meter = ctx->meter_mem;

        tx_meter_init(ctx->meter, format,
                      ctx->endpoint == TX_EP_MESSAGES ? TX_METER_ANTHROPIC
                                                      : TX_METER_OPENAI);
    }

    if (r->headers_out.status >= NGX_HTTP_BAD_REQUEST) {
        ctx->resp_max = NGX_HTTP_TORRIX_CAPTURE_ERR;

    } else if (ctx->sampled) {
        ctx->resp_max = NGX_HTTP_TORRIX_CAPTURE_MAX;
    }

    return NGX_OK;
}


static void
ngx_http_torrix_capture(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                        u_char *p, size_t len)
{
    u_char *nb;
    size_t  size;

    if (ctx->resp_len + len > ctx->resp_max) {
        ctx->resp_truncated = 1;
        len = ctx->resp_max - ctx->resp_len;
        if (len == 0) {
            return;
        }
    }

    if (ctx->resp == NULL || ctx->resp_len + len > ctx->resp_cap) {
        size = ngx_max(ctx->resp_cap * 2, 8192);
        size = ngx_max(size, ctx->resp_len + len);
        size = ngx_min(size, ctx->resp_max);

        nb = ngx_pnalloc(r->pool, size);
        if (nb == NULL) {
            ctx->resp_max = 0;
            return;
        }

        if (ctx->resp_len) {
            ngx_memcpy(nb, ctx->resp, ctx->resp_len);
        }

        ctx->resp = nb;
        ctx->resp_cap = size;
    }

    ngx_memcpy(ctx->resp + ctx->resp_len, p, len);
    ctx->resp_len += len;
}


/*
 * Strip mode: copies each complete SSE event to the output unless it is the
 * usage-only chunk, holds the partial one; input buffers are consumed.
 */
static ngx_int_t
ngx_http_torrix_strip(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                      ngx_chain_t *in)
{
    int          ev;
    u_char      *p, *seg, *o;
    size_t       need, n;
    ngx_buf_t   *b, *ob;
    ngx_int_t    rc;
    ngx_uint_t   last, flush;
    ngx_chain_t *cl, *out, **ll;

    if (ctx->held == NULL) {
        ctx->held = ngx_pnalloc(r->pool, NGX_HTTP_TORRIX_HOLD_MAX);
        if (ctx->held == NULL) {
            return NGX_ERROR;
        }
    }

    need = ctx->held_len;
    last = 0;
    flush = 0;

    for (cl = in; cl; cl = cl->next) {
        need += ngx_buf_in_memory(cl->buf) ? ngx_buf_size(cl->buf) : 0;
    }

    cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    ob = cl->buf;

    if (ob->start == NULL || (size_t) (ob->end - ob->start) < need) {
        n = ngx_max(need, 16384);

        ob->start = ngx_palloc(r->pool, n);
        if (ob->start == NULL) {
            return NGX_ERROR;
        }

        ob->end = ob->start + n;
    }

    ob->pos = ob->start;
    ob->last = ob->start;
    ob->temporary = 1;
    ob->tag = (ngx_buf_tag_t) &ngx_http_torrix_module;

    out = cl;
    ll = &cl->next;
    o = ob->last;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->last_buf) {
            last = 1;
        }

        if (b->flush || b->last_in_chain) {
            flush = 1;
        }

        if (!ngx_buf_in_memory(b)) {
            continue;
        }

        p = b->pos;
        seg = p;

        while (p < b->last) {
            n = tx_meter_feed(ctx->meter, p, b->last - p, &ev);
            p += n;

            if (ev == TX_METER_EV_NONE) {
                break;
            }

            if (ev != TX_METER_EV_END_USAGE || ctx->hold_overflow) {
                o = ngx_cpymem(o, ctx->held, ctx->held_len);
                o = ngx_cpymem(o, seg, p - seg);
            }

            ctx->held_len = 0;
            ctx->hold_overflow = 0;
            seg = p;
        }

        n = b->last - seg;

        if (n) {
            if (ctx->hold_overflow) {
                o = ngx_cpymem(o, seg, n);

            } else if (ctx->held_len + n <= NGX_HTTP_TORRIX_HOLD_MAX) {
                ngx_memcpy(ctx->held + ctx->held_len, seg, n);
                ctx->held_len += n;

            } else {
                /* an event too large to hold: let it through as it comes */
                o = ngx_cpymem(o, ctx->held, ctx->held_len);
                o = ngx_cpymem(o, seg, n);
                ctx->held_len = 0;
                ctx->hold_overflow = 1;
            }
        }

        b->pos = b->last;
    }

    if (last && ctx->held_len) {
        o = ngx_cpymem(o, ctx->held, ctx->held_len);
        ctx->held_len = 0;
    }

    ob->last = o;
    ob->flush = 1;

    if (o == ob->pos) {
        /* an empty buffer must be a special one, or the writer complains */
        ob->temporary = 0;
    }

    ob->last_buf = last;
    ob->last_in_chain = 1;
    *ll = NULL;

    if (ob->last == ob->pos && !last) {
        /* everything held or dropped: nothing to send now */
        ob->flush = flush;
        if (!flush) {
            out->next = ctx->free;
            ctx->free = out;
            return ngx_http_next_body_filter(r, NULL);
        }
    }

    rc = ngx_http_next_body_filter(r, out);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_torrix_module);

    return rc;
}


static ngx_int_t
ngx_http_torrix_error_page(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    ngx_int_t status;

    status = r->err_status;

    switch (status) {
    case NGX_HTTP_GATEWAY_TIME_OUT:
        ngx_http_torrix_reject(ctx, r->pool, status, "upstream_timeout",
                               "The provider did not answer in time");
        break;

    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        ngx_http_torrix_reject(ctx, r->pool, status, "upstream_error",
                               "The provider could not be reached");
        break;

    default:
        ngx_http_torrix_reject(ctx, r->pool, status, "gateway_error",
                               "The gateway could not complete the request "
                               "(HTTP %i)",
                               status);
    }

    /* the error happened after admission: not a refusal of the gateway */
    ctx->rejected = 0;

    if (ngx_http_torrix_error_body(r, ctx, &ctx->err_body) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->replace_body = 1;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    ngx_http_clear_content_length(r);
    r->headers_out.content_length_n = ctx->err_body.len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_torrix_error_page_body(ngx_http_request_t    *r,
                                ngx_http_torrix_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_buf_t   *b;
    ngx_chain_t *cl, out;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;

        if (cl->buf->last_buf) {
            b = ngx_calloc_buf(r->pool);
            if (b == NULL) {
                return NGX_ERROR;
            }

            b->pos = ctx->err_body.data;
            b->last = ctx->err_body.data + ctx->err_body.len;
            b->memory = 1;
            b->last_buf = 1;

            out.buf = b;
            out.next = NULL;

            return ngx_http_next_body_filter(r, &out);
        }
    }

    return NGX_OK;
}


/* adds a response header whose value is printed into the pool */
static ngx_int_t
ngx_http_torrix_add_header(ngx_http_request_t *r, const char *name,
                           const char *fmt, ...)
{
    u_char          *p, *last;
    va_list          args;
    ngx_table_elt_t *h;

    p = ngx_pnalloc(r->pool, NGX_HTTP_TORRIX_HDR_VALUE);
    if (p == NULL) {
        return NGX_ERROR;
    }

    va_start(args, fmt);
    last = ngx_vslprintf(p, p + NGX_HTTP_TORRIX_HDR_VALUE, fmt, args);
    va_end(args);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = p;
    h->value.len = last - p;

    return NGX_OK;
}


/*
 * A header whose value is a number, u (negated when `neg`, "ms" after it
 * when `ms`): written by hand, as these go out on every admitted request
 * and ngx_vslprintf's format parsing cost more than the rest of the header.
 * The value goes at *out (NGX_HTTP_TORRIX_NUM_LEN bytes at most), and *out
 * past it.
 */
static ngx_int_t
ngx_http_torrix_add_num(ngx_http_request_t *r, ngx_str_t *name, uint64_t u,
                        ngx_uint_t neg, ngx_uint_t ms, u_char **out)
{
    u_char          *p, *last;
    ngx_table_elt_t *h;

    p = *out;

    if (neg) {
        *p++ = '-';
    }

    last = ngx_http_torrix_dec(p, u);

    if (ms) {
        *last++ = 'm';
        *last++ = 's';
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *name;
    h->value.len = last - *out;
    h->value.data = *out;

    *out = last;

    return NGX_OK;
}


/*
 * v in decimal at p, the end returned: the length from the highest set bit
 * (log10 2 ~ 1233 / 4096) and a table, then the digits from the end two a
 * division.  ngx_sprintf's format parsing cost more than all the rest of a
 * number header.
 */
u_char *
ngx_http_torrix_dec(u_char *p, uint64_t v)
{
    u_char    *last;
    uint64_t   d;
    ngx_uint_t n;

    static const uint64_t pow10[] = {1ULL,
                                     10ULL,
                                     100ULL,
                                     1000ULL,
                                     10000ULL,
                                     100000ULL,
                                     1000000ULL,
                                     10000000ULL,
                                     100000000ULL,
                                     1000000000ULL,
                                     10000000000ULL,
                                     100000000000ULL,
                                     1000000000000ULL,
                                     10000000000000ULL,
                                     100000000000000ULL,
                                     1000000000000000ULL,
                                     10000000000000000ULL,
                                     100000000000000000ULL,
                                     1000000000000000000ULL,
                                     10000000000000000000ULL};

    /* "00".."99" */
    static const u_char digits[] = "00010203040506070809"
                                   "10111213141516171819"
                                   "20212223242526272829"
                                   "30313233343536373839"
                                   "40414243444546474849"
                                   "50515253545556575859"
                                   "60616263646566676869"
                                   "70717273747576777879"
                                   "80818283848586878889"
                                   "90919293949596979899";

    n = ((64 - (ngx_uint_t) __builtin_clzll(v | 1)) * 1233) >> 12;
    n += (v >= pow10[n]);
    n += (n == 0);

    last = p + n;
    p = last;

    while (v >= 100) {
        d = (v % 100) * 2;
        v /= 100;
        *--p = digits[d + 1];
        *--p = digits[d];
    }

    if (v >= 10) {
        *--p = digits[v * 2 + 1];
        *--p = digits[v * 2];

    } else {
        *--p = (u_char) ('0' + v);
    }

    return last;
}


static ngx_inline ngx_int_t
ngx_http_torrix_add_int(ngx_http_request_t *r, ngx_str_t *name, int64_t v,
                        ngx_uint_t ms, u_char **out)
{
    return ngx_http_torrix_add_num(r, name,
                                   v < 0 ? 0 - (uint64_t) v : (uint64_t) v,
                                   v < 0, ms, out);
}


/* OpenAI-style x-ratelimit-* headers, and what a 429 needs */
static ngx_int_t
ngx_http_torrix_limit_out(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    u_char                *v;
    uint64_t               limit;
    ngx_uint_t             i;
    ngx_http_torrix_cap_t *cap;

    static const char *scopes[] = {"",        "instance", "org",
                                   "project", "user",     "key"};

    static ngx_str_t names[] = {
        ngx_string("x-ratelimit-limit-requests"),
        ngx_string("x-ratelimit-remaining-requests"),
        ngx_string("x-ratelimit-reset-requests"),
        ngx_string("x-ratelimit-limit-tokens"),
        ngx_string("x-ratelimit-remaining-tokens"),
        ngx_string("x-ratelimit-reset-tokens"),
    };

    if (ctx->rl_set && (ctx->rpm || ctx->tpm)) {
        /* the six values in one allocation */
        v = ngx_pnalloc(r->pool, 6 * NGX_HTTP_TORRIX_NUM_LEN);
        if (v == NULL) {
            return NGX_ERROR;
        }

        /* i 0: requests, 1: tokens */
        for (i = 0; i < 2; i++) {
            limit = i ? ctx->tpm : ctx->rpm;

            if (limit
                && (ngx_http_torrix_add_num(r, &names[3 * i], limit, 0, 0, &v)
                        != NGX_OK
                    || ngx_http_torrix_add_int(r, &names[3 * i + 1],
                                               i ? ctx->rl_tok_remaining
                                                 : ctx->rl_req_remaining,
                                               0, &v)
                           != NGX_OK
                    || ngx_http_torrix_add_int(r, &names[3 * i + 2],
                                               ngx_max(i ? ctx->rl_tok_reset_ms
                                                         : ctx->rl_req_reset_ms,
                                                       0),
                                               1, &v)
                           != NGX_OK))
            {
                return NGX_ERROR;
            }
        }
    }

    if (r->headers_out.status != NGX_HTTP_TOO_MANY_REQUESTS
        || ctx->retry_after == 0)
    {
        return NGX_OK;
    }

    if (ngx_http_torrix_add_header(r, "retry-after", "%L", ctx->retry_after)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cap = ctx->limit_scope;

    if (cap) {
        return ngx_http_torrix_add_header(r, "x-torrix-limit-scope", "%s:%V:%s",
                                          scopes[cap->scope % 6], &cap->id,
                                          cap->kind == TX_WIN_DAY ? "daily"
                                          : cap->kind == TX_WIN_WEEK
                                              ? "weekly"
                                              : "monthly");
    }

    return ngx_http_torrix_add_header(r, "x-torrix-limit-scope", "key:%V:%s",
                                      &ctx->key_id,
                                      ctx->limit_tokens ? "tpm" : "rpm");
}

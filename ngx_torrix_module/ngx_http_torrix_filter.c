/*
 * ngx_torrix_module: response header and body filters.
 *
 * The header filter stamps x-torrix-run-id on every response of a Torrix
 * request (refusals included) and turns the error pages nginx itself makes
 * after admission (upstream unreachable or timed out) into the client's
 * provider error shape.  The body filter notes the time of the first body
 * byte (TTFT); it never holds a buffer back.
 */

#include "ngx_http_torrix_module.h"


static ngx_int_t ngx_http_torrix_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_torrix_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_torrix_error_page(ngx_http_request_t *r,
    ngx_http_torrix_ctx_t *ctx);
static ngx_int_t ngx_http_torrix_error_page_body(ngx_http_request_t *r,
    ngx_http_torrix_ctx_t *ctx, ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


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
ngx_http_torrix_now_us(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);

    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static ngx_int_t
ngx_http_torrix_header_filter(ngx_http_request_t *r)
{
    ngx_table_elt_t        *h;
    ngx_http_torrix_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_torrix_module);
    if (ctx == NULL) {
        return ngx_http_next_header_filter(r);
    }

    if (r->err_status >= NGX_HTTP_BAD_REQUEST && !ctx->rejected) {
        if (ngx_http_torrix_error_page(r, ctx) != NGX_OK) {
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

    if (r->headers_out.content_type.len >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(r->headers_out.content_type.data,
                           (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1)
               == 0)
    {
        ctx->stream = 1;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_torrix_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t            *cl;
    ngx_http_torrix_ctx_t  *ctx;

    if (in == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_torrix_module);

    if (ctx && ctx->replace_body) {
        return ngx_http_torrix_error_page_body(r, ctx, in);
    }

    if (ctx && !ctx->first_byte) {
        for (cl = in; cl; cl = cl->next) {
            if (ngx_buf_size(cl->buf)) {
                ctx->first_byte = 1;
                ctx->first_byte_us = ngx_http_torrix_now_us();
                break;
            }
        }
    }

    return ngx_http_next_body_filter(r, in);
}


static ngx_int_t
ngx_http_torrix_error_page(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    ngx_int_t  status;

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
                               "(HTTP %i)", status);
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
ngx_http_torrix_error_page_body(ngx_http_request_t *r,
    ngx_http_torrix_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl, out;

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

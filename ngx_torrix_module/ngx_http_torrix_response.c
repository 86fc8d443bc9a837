/*
 * ngx_torrix_module: responses the gateway itself sends, in the client's own
 * provider error shape:
 *
 *   OpenAI     {"error":{"message":"…","type":"…","param":null,"code":"…"}}
 *   Anthropic  {"type":"error","error":{"type":"…","message":"…"}}
 */

#include "ngx_http_torrix_module.h"


#define NGX_HTTP_TORRIX_ERR_MAX 512


typedef struct {
    ngx_int_t   status;
    const char *openai_type;
    const char *anthropic_type;
} ngx_http_torrix_err_map_t;


/* clang-format off */
static const ngx_http_torrix_err_map_t  ngx_http_torrix_err_map[] = {
    { 400, "invalid_request_error", "invalid_request_error" },
    { 401, "invalid_request_error", "authentication_error" },
    { 403, "permission_error", "permission_error" },
    { 404, "invalid_request_error", "not_found_error" },
    { 405, "invalid_request_error", "invalid_request_error" },
    { 413, "invalid_request_error", "request_too_large" },
    { 429, "rate_limit_error", "rate_limit_error" },
    { 502, "api_error", "api_error" },
    { 503, "api_error", "overloaded_error" },
    { 0, "api_error", "api_error" }
};
/* clang-format on */


ngx_int_t
ngx_http_torrix_reject(ngx_http_torrix_ctx_t *ctx, ngx_pool_t *pool,
                       ngx_int_t status, const char *code, const char *fmt, ...)
{
    u_char *p;
    va_list args;

    p = ngx_pnalloc(pool, NGX_HTTP_TORRIX_ERR_MAX);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    va_start(args, fmt);
    ctx->err_msg.data = p;
    ctx->err_msg.len =
        ngx_vslprintf(p, p + NGX_HTTP_TORRIX_ERR_MAX, fmt, args) - p;
    va_end(args);

    ctx->err_type = code;
    ctx->rejected = 1;
    ctx->status = status;

    return status;
}


u_char *
ngx_http_torrix_json_escape(u_char *dst, const u_char *src, size_t len)
{
    u_char        c;
    size_t        n, i;
    uint32_t      cp, min;
    const u_char *end;

    static u_char hex[] = "0123456789abcdef";

    end = src + len;

    while (src < end) {
        /* a run a JSON string holds as it is */
        i = tx_json_ascii(src, 0, end - src);

        if (i) {
            dst = ngx_cpymem(dst, src, i);
            src += i;
            continue;
        }

        c = *src;

        if (c == '"' || c == '\\') {
            *dst++ = '\\';
            *dst++ = c;
            src++;
            continue;
        }

        if (c < 0x20) {
            *dst++ = '\\';
            *dst++ = 'u';
            *dst++ = '0';
            *dst++ = '0';
            *dst++ = hex[c >> 4];
            *dst++ = hex[c & 0xf];
            src++;
            continue;
        }

        if (c < 0x80) {
            *dst++ = c;
            src++;
            continue;
        }

        /* a whole valid UTF-8 sequence is copied; any other byte becomes
         * U+FFFD, so the body stays valid JSON whatever the client sent */

        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
            min = 0x80;

        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
            min = 0x800;

        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
            min = 0x10000;

        } else {
            n = 0;
            cp = 0;
            min = 1;
        }

        for (i = 1; i <= n && src + i < end && (src[i] & 0xc0) == 0x80; i++) {
            cp = (cp << 6) | (src[i] & 0x3f);
        }

        if (n == 0 || i != n + 1 || cp < min || cp > 0x10ffff
            || (cp >= 0xd800 && cp <= 0xdfff))
        {
            dst = ngx_cpymem(dst, "\\ufffd", 6);
            src++;
            continue;
        }

        dst = ngx_cpymem(dst, src, n + 1);
        src += n + 1;
    }

    return dst;
}


ngx_int_t
ngx_http_torrix_send_error(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    ngx_str_t body;

    if (ngx_http_torrix_error_body(r, ctx, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_torrix_send_json(r, ctx->status, body.data, body.len);
}


ngx_int_t
ngx_http_torrix_error_body(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx,
                           ngx_str_t *out)
{
    size_t                           len;
    u_char                          *body, *p;
    const char                      *type;
    const ngx_http_torrix_err_map_t *m;

    for (m = ngx_http_torrix_err_map; m->status; m++) {
        if (m->status == ctx->status) {
            break;
        }
    }

    type = (ctx->shape == NGX_HTTP_TORRIX_SHAPE_ANTHROPIC) ? m->anthropic_type
                                                           : m->openai_type;

    len =
        sizeof("{\"type\":\"error\",\"error\":{\"type\":\"\",\"message\":\"\","
               "\"code\":\"\",\"param\":null}}")
        + ngx_strlen(type) + ngx_strlen(ctx->err_type) + ctx->err_msg.len * 6;

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_ERROR;
    }

    if (ctx->shape == NGX_HTTP_TORRIX_SHAPE_ANTHROPIC) {
        p = ngx_sprintf(body,
                        "{\"type\":\"error\",\"error\":{\"type\":\"%s\","
                        "\"message\":\"",
                        type);
        p = ngx_http_torrix_json_escape(p, ctx->err_msg.data, ctx->err_msg.len);
        p = ngx_cpymem(p, "\"}}", 3);

    } else {
        p = ngx_cpymem(body, "{\"error\":{\"message\":\"",
                       sizeof("{\"error\":{\"message\":\"") - 1);
        p = ngx_http_torrix_json_escape(p, ctx->err_msg.data, ctx->err_msg.len);
        p = ngx_sprintf(p,
                        "\",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}",
                        type, ctx->err_type);
    }

    out->data = body;
    out->len = p - body;

    return NGX_OK;
}


ngx_int_t
ngx_http_torrix_send_json(ngx_http_request_t *r, ngx_uint_t status,
                          u_char *body, size_t len)
{
    ngx_int_t   rc;
    ngx_buf_t  *b;
    ngx_chain_t out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}

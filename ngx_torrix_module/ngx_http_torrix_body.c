/*
 * ngx_torrix_module: the request body.
 *
 * A request body filter enforces torrix_max_body_size on bodies without a
 * Content-Length (chunked): past the limit it swallows the rest, so the
 * access phase can answer 413 in the provider's shape once reading ends.
 * ngx_http_torrix_body_bytes() gives the body as one contiguous buffer,
 * reading it back from the temp file when nginx spilled it there.
 */

#include "ngx_http_torrix_module.h"


static ngx_int_t ngx_http_torrix_request_body_filter(ngx_http_request_t *r,
                                                     ngx_chain_t        *in);


static ngx_http_request_body_filter_pt ngx_http_next_request_body_filter;


ngx_int_t
ngx_http_torrix_body_init(ngx_conf_t *cf)
{
    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_torrix_request_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_torrix_request_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    off_t                       size;
    ngx_chain_t                *cl;
    ngx_http_torrix_ctx_t      *ctx;
    ngx_http_torrix_loc_conf_t *tlcf;

    ctx = ngx_http_torrix_get_ctx(r);
    if (ctx == NULL) {
        return ngx_http_next_request_body_filter(r, in);
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_torrix_module);

    size = 0;
    for (cl = in; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    ctx->body_bytes += size;

    if (ctx->too_large || ctx->body_bytes > (off_t) tlcf->max_body_size) {
        ctx->too_large = 1;

        /*
         * drop the data but let reading run to its end; the save filter is
         * still called so it can flush what it holds from before the limit
         */
        for (cl = in; cl; cl = cl->next) {
            cl->buf->pos = cl->buf->last;
            cl->buf->file_pos = cl->buf->file_last;

            if (cl->buf->last_buf) {
                return ngx_http_next_request_body_filter(r, cl);
            }
        }

        return ngx_http_next_request_body_filter(r, NULL);
    }

    return ngx_http_next_request_body_filter(r, in);
}


ngx_int_t
ngx_http_torrix_body_bytes(ngx_http_request_t *r, ngx_str_t *body)
{
    off_t        len;
    u_char      *p;
    ssize_t      n;
    ngx_buf_t   *b;
    ngx_chain_t *cl;

    body->len = 0;
    body->data = NULL;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    len = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_size(b) == 0) {
            continue;
        }

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "torrix: short read of the request body file");
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    body->len = p - body->data;

    return NGX_OK;
}


/* a read-only buffer over len bytes at data (none: empty), linked at *ll */
static ngx_buf_t *
ngx_http_torrix_body_link(ngx_http_request_t *r, ngx_chain_t ***ll,
                          u_char *data, size_t len)
{
    ngx_buf_t   *b;
    ngx_chain_t *cl;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NULL;
    }

    if (len) {
        b->start = data;
        b->pos = data;
        b->last = data + len;
        b->end = b->last;
        b->memory = 1;
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;
    **ll = cl;
    *ll = &cl->next;

    return b;
}


/*
 * Replaces the request body by the concatenation of `parts`: a chain of
 * read-only buffers that point at the parts where they lie (the client's
 * body stays in the request pool; the proxy sends the chain with one
 * writev), any temp file left behind, Content-Length updated.  Each buffer
 * starts at its part, so an upstream retry (which rewinds every buffer to
 * its start) sends the same bytes again.  A body of at most
 * NGX_HTTP_TORRIX_BODY_COPY bytes is copied into one buffer instead: less
 * than the buffers and links of a chain cost, here and again in the proxy,
 * which copies the chain link by link.
 */

#define NGX_HTTP_TORRIX_BODY_COPY 4096

ngx_int_t
ngx_http_torrix_body_set(ngx_http_request_t *r, ngx_str_t *parts, ngx_uint_t n)
{
    u_char      *p;
    size_t       len;
    ngx_str_t    one;
    ngx_buf_t   *b;
    ngx_uint_t   i;
    ngx_chain_t *first, **ll;

    len = 0;

    for (i = 0; i < n; i++) {
        len += parts[i].len;
    }

    if (n > 1 && len <= NGX_HTTP_TORRIX_BODY_COPY) {
        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        one.data = p;
        one.len = len;

        for (i = 0; i < n; i++) {
            if (parts[i].len) {
                p = ngx_cpymem(p, parts[i].data, parts[i].len);
            }
        }

        parts = &one;
        n = 1;
    }

    first = NULL;
    ll = &first;
    b = NULL;

    for (i = 0; i < n; i++) {
        if (parts[i].len == 0) {
            continue;
        }

        b = ngx_http_torrix_body_link(r, &ll, parts[i].data, parts[i].len);
        if (b == NULL) {
            return NGX_ERROR;
        }
    }

    if (first == NULL) {
        /* an empty body: one empty last buffer, as nginx reads one */
        b = ngx_http_torrix_body_link(r, &ll, NULL, 0);
        if (b == NULL) {
            return NGX_ERROR;
        }
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    r->request_body->bufs = first;
    r->request_body->temp_file = NULL;
    r->request_body_in_file_only = 0;

    r->headers_in.content_length_n = len;

    if (r->headers_in.content_length) {
        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        r->headers_in.content_length->value.data = p;
        r->headers_in.content_length->value.len =
            ngx_http_torrix_dec(p, len) - p;
    }

    return NGX_OK;
}

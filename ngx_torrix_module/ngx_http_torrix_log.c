/*
 * ngx_torrix_module: the log phase writes one run record per request to the
 * worker's spool.  It runs for every end of a request, client aborts (499)
 * and refusals included, so no request goes unrecorded.
 */

#include "ngx_http_torrix_module.h"


#define NGX_HTTP_TORRIX_RUN_MAX    8192
#define NGX_HTTP_TORRIX_HDR_MAX    256


static void ngx_http_torrix_put_header(ngx_http_request_t *r, tx_wbuf_t *wb,
    uint16_t tag, const char *name, size_t len);
static void ngx_http_torrix_put_str(tx_wbuf_t *wb, uint16_t tag,
    ngx_str_t *s);


ngx_int_t
ngx_http_torrix_log_handler(ngx_http_request_t *r)
{
    int64_t                       now;
    uint64_t                      flags, status;
    ngx_msec_int_t                ms;
    tx_wbuf_t                     wb;
    ngx_http_upstream_t          *u;
    ngx_http_torrix_ctx_t        *ctx;
    ngx_http_upstream_state_t    *state;
    ngx_http_torrix_main_conf_t  *tmcf;
    uint8_t                       buf[NGX_HTTP_TORRIX_RUN_MAX];

    ctx = ngx_http_get_module_ctx(r, ngx_http_torrix_module);
    if (ctx == NULL) {
        return NGX_OK;
    }

    tmcf = ngx_http_get_module_main_conf(r, ngx_http_torrix_module);

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

    if (status >= 400 || r->connection->error) {
        flags |= TX_RUNF_ERROR;
    }

    if (r->connection->error) {
        flags |= TX_RUNF_CANCELLED;
    }

    tx_wbuf_init(&wb, buf, sizeof(buf));

    tx_rec_put_bytes(&wb, TX_RUN_ID, ctx->run_id, sizeof(ctx->run_id));
    tx_rec_put_i64(&wb, TX_RUN_START_US, ctx->start_us);
    ngx_http_torrix_put_str(&wb, TX_RUN_KEY_ID, &ctx->key_id);
    ngx_http_torrix_put_str(&wb, TX_RUN_PROJECT, &ctx->project);
    ngx_http_torrix_put_str(&wb, TX_RUN_ORG, &ctx->org);
    ngx_http_torrix_put_str(&wb, TX_RUN_USER, &ctx->user);
    tx_rec_put_u64(&wb, TX_RUN_ENDPOINT, ctx->endpoint);
    ngx_http_torrix_put_str(&wb, TX_RUN_MODEL_REQ, &ctx->model);
    ngx_http_torrix_put_str(&wb, TX_RUN_MODEL, &ctx->model);
    ngx_http_torrix_put_str(&wb, TX_RUN_PROVIDER, &ctx->provider);
    tx_rec_put_u64(&wb, TX_RUN_STATUS, status);
    tx_rec_put_u64(&wb, TX_RUN_LATENCY_US, (uint64_t) (now - ctx->start_us));
    tx_rec_put_u64(&wb, TX_RUN_BYTES_IN, r->request_length);
    tx_rec_put_u64(&wb, TX_RUN_BYTES_OUT, r->connection->sent);
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

    if (ctx->err_type) {
        tx_rec_put_cstr(&wb, TX_RUN_ERROR_TYPE, ctx->err_type);
        ngx_http_torrix_put_str(&wb, TX_RUN_ERROR, &ctx->err_msg);
    }

    ngx_http_torrix_put_header(r, &wb, TX_RUN_NAME, "x-torrix-name",
                               sizeof("x-torrix-name") - 1);
    ngx_http_torrix_put_header(r, &wb, TX_RUN_END_USER, "x-torrix-user",
                               sizeof("x-torrix-user") - 1);
    ngx_http_torrix_put_header(r, &wb, TX_RUN_TAGS, "x-torrix-tags",
                               sizeof("x-torrix-tags") - 1);

    if (tmcf->edge_name.len) {
        ngx_http_torrix_put_str(&wb, TX_RUN_EDGE, &tmcf->edge_name);
    }

    if (wb.overflow) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "torrix: run record too large");
        return NGX_OK;
    }

    if (ngx_http_torrix_spool_write(r->connection->log, wb.start,
                                    wb.pos - wb.start)
        == NGX_ERROR)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "torrix: run %s not spooled", ctx->run_id_hex);
    }

    return NGX_OK;
}


static void
ngx_http_torrix_put_header(ngx_http_request_t *r, tx_wbuf_t *wb, uint16_t tag,
    const char *name, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_http_torrix_header(r, name, len);

    if (h && h->value.len) {
        tx_rec_put_bytes(wb, tag, h->value.data,
                         ngx_min(h->value.len, NGX_HTTP_TORRIX_HDR_MAX));
    }
}


static void
ngx_http_torrix_put_str(tx_wbuf_t *wb, uint16_t tag, ngx_str_t *s)
{
    if (s->len) {
        tx_rec_put_bytes(wb, tag, s->data, s->len);
    }
}

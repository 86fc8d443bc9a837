/*
 * ngx_torrix_module: the data-plane key that opens provider credentials.
 *
 * torrix-cp publishes each provider's API key sealed (tx_seal.h) under the
 * data-plane key, with the provider's name as associated data, so the
 * snapshot files (readable by every worker, and by whoever can read the
 * directory) carry no plaintext credential.  The key lives in its own file
 * ("torrix_credentials_key", default: dataplane.key beside the snapshot
 * directory), which nginx's master reads while it still runs as root; the
 * workers inherit the key in memory.  A worker that started without it
 * (the file appeared later) tries to read it again, at most once a second.
 */

#include "ngx_http_torrix_module.h"

#include <sodium.h>

#include "tx_seal.h"


static uint8_t    ngx_http_torrix_creds_key[TX_SEAL_KEY_LEN];
static ngx_uint_t ngx_http_torrix_creds_ok;
static u_char    *ngx_http_torrix_creds_path;
static time_t     ngx_http_torrix_creds_tried;


static ngx_int_t
ngx_http_torrix_creds_read(ngx_log_t *log, ngx_uint_t level)
{
    char      buf[256];
    ssize_t   n;
    ngx_fd_t  fd;
    ngx_err_t err;

    fd = ngx_open_file(ngx_http_torrix_creds_path, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;
        ngx_log_error(level, log, err,
                      "torrix: credentials key \"%s\" not readable: "
                      "providers get no API key until it is",
                      ngx_http_torrix_creds_path);
        return NGX_ERROR;
    }

    n = read(fd, buf, sizeof(buf));
    (void) ngx_close_file(fd);

    if (n <= 0 || tx_seal_key_parse(buf, n, ngx_http_torrix_creds_key) != TX_OK)
    {
        sodium_memzero(buf, sizeof(buf));
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "torrix: credentials key \"%s\" is not a key "
                      "(64 hex characters)",
                      ngx_http_torrix_creds_path);
        return NGX_ERROR;
    }

    sodium_memzero(buf, sizeof(buf));
    ngx_http_torrix_creds_ok = 1;

    return NGX_OK;
}


ngx_int_t
ngx_http_torrix_creds_init(ngx_conf_t *cf, ngx_str_t *path, ngx_str_t *snapshot)
{
    u_char *p, *slash;

    if (sodium_init() < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sodium_init() failed");
        return NGX_ERROR;
    }

    if (path->len) {
        p = ngx_pnalloc(cf->pool, path->len + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_cpystrn(p, path->data, path->len + 1);

    } else if (snapshot->len) {
        /* beside the snapshot directory: $DATA/dataplane.key */
        p = ngx_pnalloc(cf->pool, snapshot->len + sizeof("/dataplane.key"));
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, snapshot->data, snapshot->len);
        p[snapshot->len] = '\0';

        while (ngx_strlen(p) > 1 && p[ngx_strlen(p) - 1] == '/') {
            p[ngx_strlen(p) - 1] = '\0';
        }

        slash = (u_char *) strrchr((char *) p, '/');
        if (slash == NULL) {
            ngx_cpystrn(p, (u_char *) "dataplane.key", sizeof("dataplane.key"));

        } else {
            ngx_cpystrn(slash + 1, (u_char *) "dataplane.key",
                        sizeof("dataplane.key"));
        }

    } else {
        return NGX_OK;
    }

    ngx_http_torrix_creds_path = p;
    ngx_http_torrix_creds_ok = 0;

    (void) ngx_http_torrix_creds_read(cf->log, NGX_LOG_WARN);

    return NGX_OK;
}


ngx_int_t
ngx_http_torrix_creds_open(ngx_str_t *provider, tx_str_t *sealed,
                           ngx_pool_t *pool, ngx_str_t *out)
{
    size_t n;
    time_t now;

    if (!ngx_http_torrix_creds_ok) {
        now = ngx_time();

        if (ngx_http_torrix_creds_path == NULL
            || now == ngx_http_torrix_creds_tried) {
            return NGX_DECLINED;
        }

        ngx_http_torrix_creds_tried = now;

        if (ngx_http_torrix_creds_read(ngx_cycle->log, NGX_LOG_ERR) != NGX_OK) {
            return NGX_DECLINED;
        }
    }

    out->data = ngx_pnalloc(pool, sealed->len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    if (tx_unseal(ngx_http_torrix_creds_key, provider->data, provider->len,
                  sealed->data, sealed->len, out->data, sealed->len, &n)
        != TX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "torrix: the credential of provider \"%V\" does not "
                      "open with the credentials key (rotated? reload nginx)",
                      provider);
        return NGX_DECLINED;
    }

    out->len = n;

    return NGX_OK;
}

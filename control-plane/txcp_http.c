/*
 * torrix-cp HTTP layer (see txcp_http.h).
 */

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <sodium.h>

#include "txcp.h"
#include "txcp_http.h"
#include "txcp_api.h"
#include "txcp_json.h"
#include "txcp_pricing.h"
#include "txcp_routing.h"
#include "txcp_store.h"


#define TXCP_IMPORT_MAX_BODY (16 * 1024 * 1024) /* POST pricing/import */


typedef void (*txcp_handler_pt)(txcp_req_t *r);


typedef struct {
    const char     *pattern; /* segments after /api/v1/, '*' = id */
    int             method;
    int             auth;
    txcp_handler_pt handler;
} txcp_route_t;


static const txcp_route_t txcp_routes[] =
    {{"health", TXCP_GET, 0, txcp_api_health},

     {"keys", TXCP_POST, 1, txcp_api_keys_create},
     {"keys", TXCP_GET, 1, txcp_api_keys_list},
     {"keys/*", TXCP_GET, 1, txcp_api_keys_get},
     {"keys/*", TXCP_PATCH, 1, txcp_api_keys_patch},
     {"keys/*", TXCP_DELETE, 1, txcp_api_keys_revoke},
     {"keys/*/rotate", TXCP_POST, 1, txcp_api_keys_rotate},

     {"orgs", TXCP_POST, 1, txcp_api_tenant_create},
     {"orgs", TXCP_GET, 1, txcp_api_tenant_list},
     {"orgs/*", TXCP_GET, 1, txcp_api_tenant_get},
     {"orgs/*", TXCP_PATCH, 1, txcp_api_tenant_patch},
     {"orgs/*", TXCP_DELETE, 1, txcp_api_tenant_delete},

     {"users", TXCP_POST, 1, txcp_api_tenant_create},
     {"users", TXCP_GET, 1, txcp_api_tenant_list},
     {"users/*", TXCP_GET, 1, txcp_api_tenant_get},
     {"users/*/activity.csv", TXCP_GET, 1, txcp_api_user_activity_csv},
     {"users/*", TXCP_PATCH, 1, txcp_api_tenant_patch},
     {"users/*", TXCP_DELETE, 1, txcp_api_tenant_delete},

     {"projects", TXCP_POST, 1, txcp_api_tenant_create},
     {"projects", TXCP_GET, 1, txcp_api_tenant_list},
     {"projects/*", TXCP_GET, 1, txcp_api_tenant_get},
     {"projects/*", TXCP_PATCH, 1, txcp_api_tenant_patch},
     {"projects/*", TXCP_DELETE, 1, txcp_api_tenant_delete},

     {"providers", TXCP_GET, 1, txcp_api_providers_list},
     {"providers/*", TXCP_GET, 1, txcp_api_providers_get},
     {"providers/*", TXCP_PUT, 1, txcp_api_providers_put},
     {"providers/*", TXCP_DELETE, 1, txcp_api_providers_delete},

     {"settings", TXCP_GET, 1, txcp_api_settings_get},
     {"settings", TXCP_PATCH, 1, txcp_api_settings_patch},

     {"pricing", TXCP_GET, 1, txcp_api_pricing_list},
     {"pricing/import", TXCP_POST, 1, txcp_api_pricing_import},
     {"pricing/**", TXCP_GET, 1, txcp_api_pricing_get},
     {"pricing/**", TXCP_PUT, 1, txcp_api_pricing_put},
     {"pricing/**", TXCP_DELETE, 1, txcp_api_pricing_delete},

     {"spend", TXCP_GET, 1, txcp_api_spend},
     {"spend/scopes", TXCP_GET, 1, txcp_api_spend_scopes},
     {"usage/users", TXCP_GET, 1, txcp_api_usage_users},

     {"runs", TXCP_GET, 1, txcp_api_runs_list},
     {"runs/*", TXCP_GET, 1, txcp_api_runs_get},
     {"logs", TXCP_GET, 1, txcp_api_logs},
     {"errors", TXCP_GET, 1, txcp_api_errors},

     {"webhooks", TXCP_POST, 1, txcp_api_webhooks_create},
     {"webhooks", TXCP_GET, 1, txcp_api_webhooks_list},
     {"webhooks/*", TXCP_GET, 1, txcp_api_webhooks_get},
     {"webhooks/*", TXCP_PATCH, 1, txcp_api_webhooks_patch},
     {"webhooks/*", TXCP_DELETE, 1, txcp_api_webhooks_delete},
     {"alerts", TXCP_GET, 1, txcp_api_alerts_list},

     {"routes", TXCP_POST, 1, txcp_api_routes_create},
     {"routes", TXCP_GET, 1, txcp_api_routes_list},
     {"routes/*", TXCP_GET, 1, txcp_api_routes_get},
     {"routes/*", TXCP_PATCH, 1, txcp_api_routes_patch},
     {"routes/*", TXCP_DELETE, 1, txcp_api_routes_delete},

     {"fallbacks", TXCP_GET, 1, txcp_api_fallbacks_list},
     {"fallbacks/**", TXCP_GET, 1, txcp_api_fallbacks_get},
     {"fallbacks/**", TXCP_PUT, 1, txcp_api_fallbacks_put},
     {"fallbacks/**", TXCP_DELETE, 1, txcp_api_fallbacks_delete},

     {"models", TXCP_GET, 1, txcp_api_models},

     {"agents/import", TXCP_POST, 1, txcp_api_agents_import},
     {"agents/export", TXCP_GET, 1, txcp_api_agents_export},
     {"agents", TXCP_GET, 1, txcp_api_agents_list},
     {"agents/*", TXCP_GET, 1, txcp_api_agents_get},
     {"agents/*", TXCP_DELETE, 1, txcp_api_agents_delete},

     {"vault", TXCP_GET, 1, txcp_api_vault_get},
     {"vault/rotate", TXCP_POST, 1, txcp_api_vault_rotate},

     {"audit/verify", TXCP_GET, 1, txcp_api_audit_verify},
     {"audit", TXCP_GET, 1, txcp_api_audit_list},

     {NULL, 0, 0, NULL}};


static const char *const txcp_method_names[] = {"?",   "GET",   "POST",
                                                "PUT", "PATCH", "DELETE"};


static struct MHD_Daemon *txcp_httpd;


void
txcp_http_reply(txcp_req_t *r, int status, cJSON *resp)
{
    if (r->resp) {
        cJSON_Delete(r->resp);
    }

    r->status = status;
    r->resp = resp ? resp : cJSON_CreateObject();
}


void
txcp_http_reply_raw(txcp_req_t *r, int status, struct MHD_Response *resp)
{
    if (r->raw) {
        MHD_destroy_response(r->raw);
    }

    cJSON_Delete(r->resp);
    r->resp = NULL;
    r->raw = resp;
    r->status = status;
}


static const char *
txcp_http_error_type(int status)
{
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict_error";
    case 413:
        return "request_too_large";
    default:
        return "internal_error";
    }
}


void
txcp_http_error(txcp_req_t *r, int status, const char *fmt, ...)
{
    va_list ap;
    char    msg[512];
    cJSON  *resp, *e;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    resp = cJSON_CreateObject();
    e = cJSON_AddObjectToObject(resp, "error");
    cJSON_AddStringToObject(e, "type", txcp_http_error_type(status));
    cJSON_AddStringToObject(e, "message", msg);

    txcp_http_reply(r, status, resp);
}


const char *
txcp_http_arg(txcp_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}


int
txcp_http_limit(txcp_req_t *r, int *limit)
{
    const char *s;
    char       *end;
    long        n;

    *limit = 100;

    s = txcp_http_arg(r, "limit");
    if (s == NULL) {
        return 0;
    }

    errno = 0;
    n = strtol(s, &end, 10);

    if (errno || end == s || *end || n < 1 || n > 1000) {
        txcp_http_error(r, 400, "limit must be an integer in 1..1000");
        return -1;
    }

    *limit = (int) n;

    return 0;
}


int
txcp_http_seq_cursor(txcp_req_t *r, uint64_t *seq)
{
    const char *s;
    char       *end;

    *seq = 0;

    s = txcp_http_arg(r, "cursor");
    if (s == NULL) {
        return 0;
    }

    errno = 0;
    *seq = strtoull(s, &end, 10);

    if (errno || end == s || *end || *seq == 0 || *s < '0' || *s > '9') {
        txcp_http_error(r, 400, "bad cursor");
        return -1;
    }

    return 0;
}


cJSON *
txcp_http_page(cJSON *items, const char *cursor)
{
    cJSON *page;

    page = cJSON_CreateObject();
    cJSON_AddItemToObject(page, "data", items);

    if (cursor) {
        cJSON_AddStringToObject(page, "next_cursor", cursor);

    } else {
        cJSON_AddNullToObject(page, "next_cursor");
    }

    return page;
}


/* Returns 0 when authenticated (r->actor set), else an HTTP status. */
static int
txcp_http_auth(txcp_req_t *r)
{
    const char *h;
    size_t      len;
    uint8_t     hash[TX_KEY_HASH_LEN];
    cJSON      *rec;
    const char *id, *role;
    int         rc;
    MDB_txn    *txn;
    MDB_val     k, v;

    h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                    MHD_HTTP_HEADER_AUTHORIZATION);

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        return 401;
    }

    h += 7;

    while (*h == ' ') {
        h++;
    }

    len = strlen(h);

    if (len == 0 || len > 256) {
        return 401;
    }

    if (tx_key_hash(txcp.hash_key, (const uint8_t *) h, len, hash) != TX_OK) {
        return 401;
    }

    if (txcp_store_begin(1, &txn) != 0) {
        return 500;
    }

    k.mv_data = hash;
    k.mv_size = TX_KEY_HASH_LEN;

    rc = mdb_get(txn, txcp.db[TXCP_DB_ADMINS], &k, &v);

    if (rc != 0 || k.mv_size != TX_KEY_HASH_LEN
        || sodium_memcmp(k.mv_data, hash, TX_KEY_HASH_LEN) != 0)
    {
        mdb_txn_abort(txn);
        return 401;
    }

    rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
    mdb_txn_abort(txn);

    sodium_memzero(hash, sizeof(hash));

    id = txcp_json_str(rec, "id");
    role = txcp_json_str(rec, "role");

    if (id == NULL || strlen(id) > TX_ID_MAX_LEN) {
        cJSON_Delete(rec);
        return 401;
    }

    snprintf(r->actor, sizeof(r->actor), "%s", id);

    rc = 0;

    if (role && strcmp(role, "viewer") == 0 && r->method != TXCP_GET) {
        rc = 403;
    }

    cJSON_Delete(rec);

    return rc;
}


/*
 * Matches path (after /api/v1/) against the routes.  Returns the route, or
 * NULL with *status 404 (no path) or 405 (path, other method).
 */
static const txcp_route_t *
txcp_http_route(txcp_req_t *r, const char *path, int *status)
{
    const txcp_route_t *rt;
    const char         *p, *q, *seg, *end;
    size_t              n;
    int                 path_ok;

    path_ok = 0;

    for (rt = txcp_routes; rt->pattern; rt++) {
        p = rt->pattern;
        q = path;
        r->id[0] = '\0';

        for (;;) {
            end = strchr(p, '/');
            n = end ? (size_t) (end - p) : strlen(p);
            seg = q;

            while (*q && *q != '/') {
                q++;
            }

            if (n == 2 && p[0] == '*' && p[1] == '*' && end == NULL) {
                /* the rest of the path, slashes included (model names) */

                n = strlen(seg);

                if (n == 0 || n >= sizeof(r->id)) {
                    break;
                }

                memcpy(r->id, seg, n + 1);
                q = seg + n;

            } else if (n == 1 && *p == '*') {
                if (q == seg || (size_t) (q - seg) >= sizeof(r->id)) {
                    break;
                }

                memcpy(r->id, seg, q - seg);
                r->id[q - seg] = '\0';

            } else if ((size_t) (q - seg) != n || memcmp(seg, p, n) != 0) {
                break;
            }

            if (end == NULL) {
                if (*q == '\0' || (q[0] == '/' && q[1] == '\0')) {
                    path_ok = 1;

                    if (rt->method == r->method) {
                        n = strcspn(path, "/");

                        if (n < sizeof(r->resource)) {
                            memcpy(r->resource, path, n);
                            r->resource[n] = '\0';
                        }

                        return rt;
                    }
                }

                break;
            }

            if (*q != '/') {
                break;
            }

            p = end + 1;
            q++;
        }
    }

    *status = path_ok ? 405 : 404;

    return NULL;
}


static void
txcp_http_dispatch(txcp_req_t *r, const char *url)
{
    const txcp_route_t *rt;
    int                 status;

    if (r->method == 0) {
        txcp_http_error(r, 405, "method not allowed");
        return;
    }

    if (strncmp(url, "/api/v1/", 8) != 0) {
        txcp_http_error(r, 404, "no such route");
        return;
    }

    rt = txcp_http_route(r, url + 8, &status);

    if (rt == NULL) {
        txcp_http_error(r, status,
                        status == 404 ? "no such route" : "method not allowed");
        return;
    }

    if (rt->auth) {
        status = txcp_http_auth(r);

        if (status == 401) {
            txcp_http_error(r, 401, "missing or invalid admin API key");
            return;
        }

        if (status == 403) {
            txcp_http_error(r, 403, "this admin role may only read");
            return;
        }

        if (status != 0) {
            txcp_http_error(r, 500, "internal error");
            return;
        }
    }

    rt->handler(r);

    if (r->resp == NULL && r->raw == NULL) {
        txcp_http_error(r, 500, "internal error");
    }
}


static enum MHD_Result
txcp_http_queue(txcp_req_t *r)
{
    char                *text;
    struct MHD_Response *resp;
    enum MHD_Result      ret;

    if (r->raw) {
        ret = MHD_queue_response(r->conn, (unsigned int) r->status, r->raw);
        MHD_destroy_response(r->raw);
        r->raw = NULL;
        r->replied = 1;

        txcp_log(TXCP_LOG_INFO, "request",
                 "method=%s path=%s status=%d actor=%s ms=%.2f stream=1",
                 txcp_method_names[r->method], r->path, r->status,
                 r->actor[0] ? r->actor : "-",
                 (double) (txcp_now_us() - r->start_us) / 1000.0);

        return ret;
    }

    text = r->resp ? cJSON_PrintUnformatted(r->resp) : NULL;

    if (text == NULL) {
        text = strdup("{\"error\":{\"type\":\"internal_error\","
                      "\"message\":\"out of memory\"}}");
        r->status = 500;

        if (text == NULL) {
            return MHD_NO;
        }
    }

    resp = MHD_create_response_from_buffer(strlen(text), text,
                                           MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }

    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");

    ret = MHD_queue_response(r->conn, (unsigned int) r->status, resp);
    MHD_destroy_response(resp);

    r->replied = 1;

    txcp_log(TXCP_LOG_INFO, "request",
             "method=%s path=%s status=%d actor=%s ms=%.2f",
             txcp_method_names[r->method], r->path, r->status,
             r->actor[0] ? r->actor : "-",
             (double) (txcp_now_us() - r->start_us) / 1000.0);

    return ret;
}


static int
txcp_http_method(const char *m)
{
    if (strcmp(m, "GET") == 0) {
        return TXCP_GET;
    }

    if (strcmp(m, "POST") == 0) {
        return TXCP_POST;
    }

    if (strcmp(m, "PUT") == 0) {
        return TXCP_PUT;
    }

    if (strcmp(m, "PATCH") == 0) {
        return TXCP_PATCH;
    }

    if (strcmp(m, "DELETE") == 0) {
        return TXCP_DELETE;
    }

    return 0;
}


#define TXCP_HTTP_NUL_MARK '\x01'


/*
 * libmicrohttpd's URL unescaping, except that a decoded %00 becomes
 * TXCP_HTTP_NUL_MARK instead of ending the C string the router matches on
 * ("/orgs/ID%00/x" must not route as "/orgs/ID"); the handler refuses it.
 */
static size_t
txcp_http_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    size_t  i, o;
    uint8_t b;

    for (i = 0, o = 0; s[i]; i++) {
        if (s[i] == '%' && s[i + 1] && s[i + 2]
            && tx_unhex(s + i + 1, 2, &b) == TX_OK) {
            s[o] = (char) b;

            if (s[o] == '\0' || s[o] == TXCP_HTTP_NUL_MARK) {
                s[o] = TXCP_HTTP_NUL_MARK;
            }

            o++;
            i += 2;
            continue;
        }

        s[o++] = s[i];
    }

    s[o] = '\0';

    return o;
}


static enum MHD_Result
txcp_http_handler(void *cls, struct MHD_Connection *conn, const char *url,
                  const char *method, const char *version,
                  const char *upload_data, size_t *upload_data_size,
                  void **con_cls)
{
    txcp_req_t        *r;
    const char        *cl;
    unsigned long long n;
    size_t             need;
    char              *p;

    r = *con_cls;

    if (r == NULL) {
        r = calloc(1, sizeof(txcp_req_t));
        if (r == NULL) {
            return MHD_NO;
        }

        r->conn = conn;
        r->method = txcp_http_method(method);
        r->start_us = txcp_now_us();
        *con_cls = r;

        for (n = 0; url[n] && n < sizeof(r->path) - 1; n++) {
            r->path[n] = (url[n] > 0x20 && url[n] < 0x7f) ? url[n] : '?';
        }

        r->max_body = txcp.conf.max_body;

        if (r->method == TXCP_POST
            && (strcmp(url, "/api/v1/pricing/import") == 0
                || strcmp(url, "/api/v1/pricing/import/") == 0))
        {
            r->max_body = TXCP_IMPORT_MAX_BODY;
        }

        if (strchr(url, TXCP_HTTP_NUL_MARK)) {
            /* an encoded NUL (or other control byte): never a route */
            txcp_http_error(r, 400, "the path holds a control character");
            return txcp_http_queue(r);
        }

        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_LENGTH);

        if (cl) {
            n = strtoull(cl, NULL, 10);

            if (n > r->max_body) {
                txcp_http_error(r, 413, "request body over %zu bytes",
                                r->max_body);
                return txcp_http_queue(r);
            }
        }

        return MHD_YES;
    }

    if (r->replied) {
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (*upload_data_size) {
        if (!r->too_large) {
            if (r->len + *upload_data_size > r->max_body) {
                r->too_large = 1;
                free(r->body);
                r->body = NULL;
                r->len = 0;

            } else {
                need = r->len + *upload_data_size + 1;

                if (need > r->cap) {
                    need = need < 4096 ? 4096 : need;
                    need = need < r->cap * 2 ? r->cap * 2 : need;

                    if (need > r->max_body + 1) {
                        need = r->max_body + 1;
                    }

                    p = realloc(r->body, need);
                    if (p == NULL) {
                        return MHD_NO;
                    }

                    r->body = p;
                    r->cap = need;
                }

                memcpy(r->body + r->len, upload_data, *upload_data_size);
                r->len += *upload_data_size;
                r->body[r->len] = '\0';
            }
        }

        *upload_data_size = 0;
        return MHD_YES;
    }

    if (r->too_large) {
        txcp_http_error(r, 413, "request body over %zu bytes", r->max_body);

    } else {
        txcp_http_dispatch(r, url);
    }

    return txcp_http_queue(r);
}


static void
txcp_http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    txcp_req_t *r;

    r = *con_cls;

    if (r == NULL) {
        return;
    }

    free(r->body);
    cJSON_Delete(r->resp);

    if (r->raw) {
        MHD_destroy_response(r->raw);
    }

    free(r);

    *con_cls = NULL;
}


static void
txcp_http_logger(void *cls, const char *fmt, va_list ap)
{
    char   msg[512];
    size_t n;

    vsnprintf(msg, sizeof(msg), fmt, ap);

    n = strlen(msg);

    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) {
        msg[--n] = '\0';
    }

    txcp_log(TXCP_LOG_WARN, "httpd", "detail=\"%s\"", msg);
}


int
txcp_http_start(void)
{
    char            host[300], *port;
    struct addrinfo hints, *ai;
    unsigned int    flags;
    int             rc;

    snprintf(host, sizeof(host), "%s", txcp.conf.listen);

    port = strrchr(host, ':');
    if (port == NULL || port == host) {
        txcp_log(TXCP_LOG_ERROR, "listen must be HOST:PORT", "listen=%s",
                 txcp.conf.listen);
        return TX_ERROR;
    }

    *port++ = '\0';

    if (host[0] == '[' && port - host > 2 && port[-2] == ']') {
        port[-2] = '\0';
        memmove(host, host + 1, strlen(host));
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;

    rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        txcp_log(TXCP_LOG_ERROR, "bad listen address", "listen=%s err=\"%s\"",
                 txcp.conf.listen, gai_strerror(rc));
        return TX_ERROR;
    }

    flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }

    txcp_httpd =
        MHD_start_daemon(flags, 0, NULL, NULL, txcp_http_handler, NULL,
                         MHD_OPTION_EXTERNAL_LOGGER, txcp_http_logger, NULL,
                         MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                         MHD_OPTION_NOTIFY_COMPLETED, txcp_http_completed, NULL,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 512,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 60,
                         MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int) 1,
                         MHD_OPTION_UNESCAPE_CALLBACK, txcp_http_unescape, NULL,
                         MHD_OPTION_END);

    freeaddrinfo(ai);

    if (txcp_httpd == NULL) {
        txcp_log(TXCP_LOG_ERROR, "cannot listen", "listen=%s",
                 txcp.conf.listen);
        return TX_ERROR;
    }

    txcp.httpd = txcp_httpd;

    txcp_log(TXCP_LOG_INFO, "listening", "listen=%s", txcp.conf.listen);

    return TX_OK;
}


void
txcp_http_stop(void)
{
    if (txcp_httpd) {
        MHD_stop_daemon(txcp_httpd);
        txcp_httpd = NULL;
        txcp.httpd = NULL;
    }
}


int
txcp_http_fd(void)
{
    const union MHD_DaemonInfo *info;

    if (txcp_httpd == NULL) {
        return -1;
    }

    info = MHD_get_daemon_info(txcp_httpd, MHD_DAEMON_INFO_EPOLL_FD);

    return info ? info->epoll_fd : -1;
}


long
txcp_http_timeout(void)
{
    MHD_UNSIGNED_LONG_LONG t;

    if (txcp_httpd == NULL || MHD_get_timeout(txcp_httpd, &t) != MHD_YES) {
        return -1;
    }

    return t > 100000 ? 100000 : (long) t;
}


void
txcp_http_run(void)
{
    if (txcp_httpd) {
        MHD_run(txcp_httpd);
    }
}

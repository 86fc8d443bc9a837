/*
 * torrix-cp HTTP layer: libmicrohttpd in external-select mode (MHD_USE_EPOLL)
 * driven by the loop (txcp_loop.c), request accumulation with a hard body
 * cap, admin authentication, routing under /api/v1 and JSON replies.
 */

#ifndef TXCP_HTTP_H
#define TXCP_HTTP_H


#include "txcp.h"


struct MHD_Response;


#define TXCP_GET    1
#define TXCP_POST   2
#define TXCP_PUT    3
#define TXCP_PATCH  4
#define TXCP_DELETE 5


/*
 * Per-request state: allocated on the first handler call, freed in the
 * completion callback.  Handlers read method, body, resource, id, actor
 * and set status + resp (owned by the request from then on).
 */
typedef struct {
    struct MHD_Connection *conn;
    int                    method;
    char                  *body; /* NUL-terminated, malloc'd */
    size_t                 len;
    size_t                 cap;
    int                    too_large;
    size_t                 max_body; /* conf max_body, more on some routes */
    int                    replied;
    char                   path[160]; /* for the log, sanitized */
    char                   resource[32];
    char                   id[128];
    char                   actor[TX_ID_MAX_LEN + 1];
    int                    status;
    cJSON                 *resp;
    struct MHD_Response   *raw; /* a non-JSON reply (streamed), or NULL */
    int64_t                start_us;
} txcp_req_t;


/* Starts the HTTP daemon on txcp.conf.listen.  TX_OK or TX_ERROR. */
int txcp_http_start(void);

/* Stops it (in-flight requests are dropped). */
void txcp_http_stop(void);

/* The epoll fd to poll for readability, -1 when not running. */
int txcp_http_fd(void);

/* Milliseconds MHD wants to be run within, or -1 for no deadline. */
long txcp_http_timeout(void);

/* Runs MHD once (non-blocking). */
void txcp_http_run(void);

/*
 * Sets a JSON reply; takes ownership of resp (NULL gives {}).  A later
 * reply replaces an earlier one.
 */
void txcp_http_reply(txcp_req_t *r, int status, cJSON *resp);

/*
 * Sets a non-JSON reply (e.g. MHD_create_response_from_callback); the
 * request owns resp from then on.  Replaces any JSON reply.
 */
void txcp_http_reply_raw(txcp_req_t *r, int status, struct MHD_Response *resp);

/* Sets {"error":{"type":...,"message":...}} with the status' type. */
void txcp_http_error(txcp_req_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A query argument (MHD-owned, valid during the request) or NULL. */
const char *txcp_http_arg(txcp_req_t *r, const char *name);

/*
 * Reads ?limit= (1..1000, default 100) into *limit.  Returns 0, or -1
 * after replying 400.
 */
int txcp_http_limit(txcp_req_t *r, int *limit);

/*
 * Reads ?cursor= as a sequence number (a positive decimal) into *seq, 0
 * when there is none.  Returns 0, or -1 after replying 400.
 */
int txcp_http_seq_cursor(txcp_req_t *r, uint64_t *seq);

/* Wraps items (owned) as {"data":items,"next_cursor":cursor|null}. */
cJSON *txcp_http_page(cJSON *items, const char *cursor);


#endif /* TXCP_HTTP_H */

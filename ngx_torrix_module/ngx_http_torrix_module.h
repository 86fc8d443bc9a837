/*
 * ngx_torrix_module: types shared by the module's files.
 *
 * Request flow:
 *   access phase   _access.c   endpoint, key (snapshot), allowlist, body,
 *                              upstream choice -> $torrix_* variables
 *   proxy          stock ngx_http_proxy_module via conf/torrix_proxy.conf
 *   filters        _filter.c   x-torrix-run-id, bytes and first-byte time
 *   log phase      _log.c      run record -> per-worker spool (_spool.c)
 */

#ifndef NGX_HTTP_TORRIX_MODULE_H
#define NGX_HTTP_TORRIX_MODULE_H


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <lmdb.h>

#include "tx_core.h"
#include "tx_json.h"
#include "tx_key.h"
#include "tx_record.h"
#include "tx_snapshot.h"
#include "tx_spool.h"
#include "tx_url.h"
#include "tx_usage.h"
#include "tx_price.h"
#include "tx_window.h"


#define NGX_HTTP_TORRIX_MODEL_MAX   256
#define NGX_HTTP_TORRIX_CAPTURE_MAX (64 * 1024)  /* a sampled body */
#define NGX_HTTP_TORRIX_CAPTURE_ERR (256 * 1024) /* an error body */
#define NGX_HTTP_TORRIX_HOLD_MAX    (64 * 1024)  /* a held SSE event */


typedef enum {
    NGX_HTTP_TORRIX_SHAPE_OPENAI = 0,
    NGX_HTTP_TORRIX_SHAPE_ANTHROPIC
} ngx_http_torrix_shape_e;


/* an upstream{} block reachable by one of its servers' "host:port" */
typedef struct {
    ngx_str_t hostport;
    ngx_str_t name;
} ngx_http_torrix_upstream_map_t;


typedef struct ngx_http_torrix_node_s ngx_http_torrix_node_t;


/* one budget an admission checks: scope, window, cap, ingested spend */
typedef struct {
    ngx_uint_t              scope; /* TX_SCOPE_* */
    ngx_str_t               id;
    ngx_uint_t              kind; /* TX_WIN_* */
    uint32_t                index;
    tx_money_t              cap;
    tx_money_t              ingested;
    ngx_http_torrix_node_t *node;
} ngx_http_torrix_cap_t;

#define NGX_HTTP_TORRIX_MAX_CAPS 8


typedef struct {
    ngx_str_t    snapshot_path;
    ngx_str_t    spool_path;
    size_t       spool_size;
    ngx_msec_t   spool_rotate;
    ngx_str_t    edge_name;
    ngx_uint_t   max_readers;
    size_t       zone_size;
    ngx_array_t *upstreams; /* of ngx_http_torrix_upstream_map_t */
    ngx_str_t    creds_path;
} ngx_http_torrix_main_conf_t;


typedef struct {
    ngx_flag_t enable;
    size_t     max_body_size;
    ngx_str_t  fallback; /* "@name": where attempts that may fall back run */
} ngx_http_torrix_loc_conf_t;


/* one model a request may be served by (_route.c) */
typedef struct {
    ngx_str_t  name;     /* as configured, maybe with a provider prefix */
    ngx_str_t  model;    /* as sent upstream */
    ngx_str_t  provider; /* provider name */
    ngx_uint_t kind;     /* the provider's TX_PROVIDER_* */
    tx_price_t price;    /* a copy; its provider name is not kept */
    unsigned   priced : 1;
    uint64_t   weight;
    int64_t    rank; /* the strategy's sort key */
    ngx_uint_t order;
} ngx_http_torrix_cand_t;


/* one upstream attempt, for the run record */
typedef struct {
    ngx_uint_t  cand;
    ngx_uint_t  status; /* upstream HTTP status, 0 none */
    int64_t     us;
    const char *error; /* NULL: served the response */
} ngx_http_torrix_attempt_t;


typedef struct {
    /* access phase outcome: NGX_OK to proxy, an HTTP status to refuse */
    ngx_int_t status;
    unsigned  done : 1;
    unsigned  waiting_body : 1;
    unsigned  too_large : 1;
    unsigned  rejected : 1;
    unsigned  stream : 1;
    unsigned  first_byte : 1;
    unsigned  replace_body : 1; /* nginx's own error page */
    unsigned  sampled : 1;
    unsigned  strip_usage : 1; /* we injected include_usage */
    unsigned  hold_overflow : 1;
    unsigned  resp_truncated : 1;
    unsigned  proxied : 1; /* an attempt went to the proxy */
    unsigned  jumped : 1;  /* on the way to where the next attempt runs */

    ngx_http_torrix_shape_e shape;
    ngx_uint_t              endpoint; /* TX_EP_* */

    uint8_t run_id[16];
    char    run_id_hex[33];

    /* the key, copied out of the snapshot into the request pool */
    ngx_str_t  key_id;
    ngx_str_t  project;
    ngx_str_t  org;
    ngx_str_t  user;
    ngx_str_t  models;
    ngx_uint_t access;

    ngx_str_t model; /* requested model */
    ngx_str_t provider;
    ngx_str_t served; /* model sent upstream on the current attempt */
    ngx_str_t fb_loc; /* the main location's torrix_fallback */
    ngx_str_t agent;  /* x-torrix-agent, or the key's metadata agent= */

    /* routing (_route.c): candidates in the order they are tried */
    ngx_http_torrix_cand_t    *cands;
    ngx_uint_t                 ncands;
    ngx_uint_t                 cand; /* the current one */
    ngx_http_torrix_attempt_t *attempts;
    ngx_uint_t                 nattempts;
    int64_t                    attempt_us; /* when the current one began */
    ssize_t                    model_off;  /* "model" span in req_body */
    size_t                     model_len;
    ssize_t                    usage_off; /* include_usage splice, -1 none */
    size_t                     usage_len;
    ngx_str_t                  usage_ins;

    /* upstream variables */
    ngx_str_t upstream;
    ngx_str_t upstream_uri;
    ngx_str_t upstream_host;
    ngx_str_t upstream_authorization;
    ngx_str_t upstream_api_key;

    off_t      body_bytes;
    off_t      bytes_out;
    ngx_msec_t start_ms;
    int64_t    start_us;
    int64_t    first_byte_us;

    /* why the gateway refused, for the run record */
    const char *err_type;
    ngx_str_t   err_msg;
    /* the client's x-torrix-* headers, taken before they are hidden */
    ngx_str_t run_name;
    ngx_str_t end_user;
    ngx_str_t tags;
    ngx_str_t sample_hdr;
    unsigned  has_sample_hdr : 1;
    ngx_str_t err_body;

    ngx_uint_t provider_kind; /* TX_PROVIDER_* */
    off_t      prompt_bytes;

    /* response metering (_filter.c): NULL, or at meter_mem when metered */
    tx_meter_t  *meter;
    tx_meter_t  *meter_mem;
    u_char      *held; /* a partial SSE event */
    size_t       held_len;
    ngx_chain_t *free;
    ngx_chain_t *busy;

    /* limits and budgets (_limits.c, _zone.c) */
    int64_t                 max_out; /* from the body, -1 none */
    time_t                  now_s;
    uint32_t                windows[3]; /* day, week, month indexes */
    int64_t                 watermark_us;
    uint64_t                rpm;
    uint64_t                tpm;
    uint64_t                key_rpm;
    uint64_t                key_tpm;
    tx_money_t              key_daily_cap;
    tx_money_t              key_monthly_budget;
    uint64_t                est_tokens;
    tx_money_t              est_cost;
    char                    est_s[32];
    ngx_http_torrix_cap_t   caps[NGX_HTTP_TORRIX_MAX_CAPS];
    ngx_uint_t              ncaps;
    ngx_http_torrix_cap_t  *limit_scope; /* the one that tripped */
    int64_t                 retry_after;
    ngx_http_torrix_node_t *rl_key;
    uint64_t                tpm_taken;
    ngx_uint_t              slot;
    unsigned                reserved : 1;
    unsigned                rl_set : 1;
    unsigned                limit_tokens : 1; /* TPM tripped, not RPM */
    int64_t                 rl_req_remaining;
    int64_t                 rl_req_reset_ms;
    int64_t                 rl_tok_remaining;
    int64_t                 rl_tok_reset_ms;

    /* the response body kept for a sampled or failed run */
    u_char   *resp;
    size_t    resp_len;
    size_t    resp_cap;
    size_t    resp_max;
    ngx_str_t req_body; /* as the client sent it */
} ngx_http_torrix_ctx_t;


extern ngx_module_t ngx_http_torrix_module;


/* _access.c */
ngx_int_t ngx_http_torrix_access_handler(ngx_http_request_t *r);

/*
 * The request's context, also after an internal redirect or a jump to a
 * named location (which clear module contexts): it is found again through
 * the request pool's cleanup that gives it back.
 */
ngx_http_torrix_ctx_t *ngx_http_torrix_get_ctx(ngx_http_request_t *r);

/* _route.c */

/*
 * Decides the candidates of a request: agent tier, router rule, fallback
 * chain, strategy order; NGX_OK or the request refused (ctx->status).
 */
ngx_int_t ngx_http_torrix_route_plan(ngx_http_request_t    *r,
                                     ngx_http_torrix_ctx_t *ctx, MDB_txn *txn);

/*
 * Points the upstream variables and the body at candidate ctx->cand;
 * NGX_OK or the request refused.
 */
ngx_int_t ngx_http_torrix_route_apply(ngx_http_request_t    *r,
                                      ngx_http_torrix_ctx_t *ctx, MDB_txn *txn);

/* GET /v1/models for the key: catalog, aliases, chains, allowlist */
ngx_int_t ngx_http_torrix_route_models(ngx_http_request_t    *r,
                                       ngx_http_torrix_ctx_t *ctx);

/* Records how the attempt that went to the proxy ended. */
void ngx_http_torrix_attempt_end(ngx_http_request_t    *r,
                                 ngx_http_torrix_ctx_t *ctx);

/* Finds a request header by name (case-insensitive); NULL if absent. */
ngx_table_elt_t *ngx_http_torrix_header(ngx_http_request_t *r, const char *name,
                                        size_t len);

/* _body.c */
ngx_int_t ngx_http_torrix_body_init(ngx_conf_t *cf);
ngx_int_t ngx_http_torrix_body_bytes(ngx_http_request_t *r, ngx_str_t *body);
ngx_int_t ngx_http_torrix_body_set(ngx_http_request_t *r, ngx_str_t *parts,
                                   ngx_uint_t n);

/* _filter.c */
ngx_int_t ngx_http_torrix_filter_init(ngx_conf_t *cf);
int64_t   ngx_http_torrix_now_us(void);  /* the gateway's clock */
int64_t   ngx_http_torrix_real_us(void); /* the host's, never shifted */
u_char   *ngx_http_torrix_dec(u_char *p, uint64_t v); /* v in decimal */

/* _response.c */
ngx_int_t ngx_http_torrix_send_error(ngx_http_request_t    *r,
                                     ngx_http_torrix_ctx_t *ctx);
ngx_int_t ngx_http_torrix_error_body(ngx_http_request_t    *r,
                                     ngx_http_torrix_ctx_t *ctx,
                                     ngx_str_t             *out);
ngx_int_t ngx_http_torrix_reject(ngx_http_torrix_ctx_t *ctx, ngx_pool_t *pool,
                                 ngx_int_t status, const char *type,
                                 const char *fmt, ...);
ngx_int_t ngx_http_torrix_send_json(ngx_http_request_t *r, ngx_uint_t status,
                                    u_char *body, size_t len);
u_char *ngx_http_torrix_json_escape(u_char *dst, const u_char *src, size_t len);

/* _cache.c: per-worker memo of snapshot values, one generation long */
typedef enum {
    NGX_HTTP_TORRIX_SET_SAMPLE = 0,
    NGX_HTTP_TORRIX_SET_DEFAULT_MAX_TOKENS,
    NGX_HTTP_TORRIX_SET_INSTANCE_CAP,
    NGX_HTTP_TORRIX_SET_INSTANCE_SOFT,
    NGX_HTTP_TORRIX_SET_STRATEGY,
    NGX_HTTP_TORRIX_SET_N
} ngx_http_torrix_setting_e;

typedef struct {
    ngx_str_t  name;
    ngx_uint_t kind; /* TX_PROVIDER_* */
    ngx_str_t  base_url;
    ngx_str_t  upstream;      /* "https://upstream_block" or host */
    ngx_str_t  host;          /* Host: and SNI */
    ngx_str_t  path;          /* base path, no trailing '/' */
    ngx_str_t  authorization; /* "Bearer ..." (OpenAI shapes) */
    ngx_str_t  api_key;       /* x-api-key (Anthropic) */
    unsigned   found : 1;
    unsigned   bad_url : 1;
} ngx_http_torrix_provider_t;

/* a key's admission plan, without its request-specific estimate */
typedef struct {
    uint64_t   rpm;
    uint64_t   tpm;
    ngx_uint_t ncaps;
    struct {
        u_char     scope;
        u_char     kind;
        uint32_t   index;
        tx_money_t cap;
        tx_money_t ingested;
    } caps[NGX_HTTP_TORRIX_MAX_CAPS];
} ngx_http_torrix_plan_t;

const ngx_http_torrix_plan_t *ngx_http_torrix_cache_plan_get(ngx_str_t *key_id,
                                                             uint32_t   day);
void ngx_http_torrix_cache_plan_put(ngx_str_t *key_id, uint32_t day,
                                    const ngx_http_torrix_plan_t *plan);

/*
 * Verified keys (the snapshot generation's): a key the full check found is
 * remembered under a tag of its secret; see ngx_http_torrix_cache.c.
 */
#define NGX_HTTP_TORRIX_KEY_TAG_LEN 16

void ngx_http_torrix_cache_key_tag(const u_char *secret, size_t len,
                                   uint8_t *tag);
const tx_key_rec_t *ngx_http_torrix_cache_key_get(const uint8_t *tag,
                                                  int64_t       *not_after);
void ngx_http_torrix_cache_key_put(const uint8_t *tag, int64_t not_after,
                                   const tx_key_rec_t *key);

ngx_int_t      ngx_http_torrix_cache_sync(MDB_txn *txn, ngx_log_t *log);
void           ngx_http_torrix_cache_drop(void);
const uint8_t *ngx_http_torrix_cache_hash_key(MDB_txn *txn);
int64_t        ngx_http_torrix_cache_setting(MDB_txn                  *txn,
                                             ngx_http_torrix_setting_e which);
ngx_str_t     *ngx_http_torrix_cache_proxy_targets(MDB_txn *txn);
int64_t        ngx_http_torrix_cache_watermark(MDB_txn *txn);
ngx_http_torrix_provider_t *ngx_http_torrix_cache_provider(MDB_txn   *txn,
                                                           ngx_str_t *name);
const tx_price_t *ngx_http_torrix_cache_price(MDB_txn *txn, const u_char *model,
                                              size_t len);
const tx_price_t *ngx_http_torrix_cache_price_peek(const u_char *model,
                                                   size_t        len,
                                                   ngx_uint_t   *known);

/*
 * "scheme://" + the name of the upstream{} block serving the URL's
 * host:port (its keepalive pool is used), else its host:port as written;
 * and the authority for Host:.  Allocated from pool.
 */
ngx_int_t ngx_http_torrix_upstream_name(ngx_pool_t *pool, tx_url_t *u,
                                        ngx_str_t *upstream, ngx_str_t *host);

/*
 * _access.c: the snapshot txn for a request, or NULL with the request
 * refused (503, gateway_not_ready) when there is no snapshot.
 */
MDB_txn *ngx_http_torrix_txn(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx);

/* _snapshot.c: per-worker read access to the snapshot */
ngx_int_t ngx_http_torrix_snapshot_init_process(ngx_cycle_t *cycle);
void      ngx_http_torrix_snapshot_exit_process(ngx_cycle_t *cycle);

/*
 * The worker's read transaction, begun at the iteration's first call and
 * shared by every later one: returns the txn, or NULL when no snapshot is
 * available.  It stays valid until the end of the current event-loop
 * iteration, when a posted event (or the snapshot's own timer) ends it:
 * nothing read through it may be kept past that without a copy.
 */
MDB_txn *ngx_http_torrix_snapshot_begin(ngx_log_t *log);

typedef enum {
    NGX_HTTP_TORRIX_DB_META = 0,
    NGX_HTTP_TORRIX_DB_KHASH,
    NGX_HTTP_TORRIX_DB_KEYS,
    NGX_HTTP_TORRIX_DB_PROVIDERS,
    NGX_HTTP_TORRIX_DB_SETTINGS,
    NGX_HTTP_TORRIX_DB_PROJECTS,
    NGX_HTTP_TORRIX_DB_ORGS,
    NGX_HTTP_TORRIX_DB_USERS,
    NGX_HTTP_TORRIX_DB_PRICES, /* optional from here on */
    NGX_HTTP_TORRIX_DB_SPEND,
    NGX_HTTP_TORRIX_DB_ROUTES,
    NGX_HTTP_TORRIX_DB_FALLBACKS,
    NGX_HTTP_TORRIX_DB_AGENTS,
    NGX_HTTP_TORRIX_DB_N
} ngx_http_torrix_db_e;

/* Looks up key in one of the snapshot's databases: TX_OK / TX_DECLINED. */
int ngx_http_torrix_snapshot_get(MDB_txn *txn, ngx_http_torrix_db_e db,
                                 const void *key, size_t klen, tx_str_t *val);

/*
 * Iterates a database: *cursor NULL to start; TX_OK with the next pair,
 * TX_DONE at the end (the cursor is closed), TX_DECLINED when the db is
 * absent.  Stopping early: ngx_http_torrix_snapshot_close_cursor().
 */
int  ngx_http_torrix_snapshot_next(MDB_txn *txn, ngx_http_torrix_db_e db,
                                   void **cursor, tx_str_t *key, tx_str_t *val);
void ngx_http_torrix_snapshot_close_cursor(void *cursor);

/* _creds.c: the data-plane key (read at configuration, in the master) */
ngx_int_t ngx_http_torrix_creds_init(ngx_conf_t *cf, ngx_str_t *path,
                                     ngx_str_t *snapshot);

/*
 * Opens a provider's sealed credential into pool memory: NGX_OK, or
 * NGX_DECLINED (no key, or it does not open; logged) / NGX_ERROR.
 */
ngx_int_t ngx_http_torrix_creds_open(ngx_str_t *provider, tx_str_t *sealed,
                                     ngx_pool_t *pool, ngx_str_t *out);

/* _spool.c */
ngx_int_t ngx_http_torrix_spool_init_process(ngx_cycle_t *cycle);
void      ngx_http_torrix_spool_exit_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_torrix_spool_write(ngx_log_t *log, const u_char *rec,
                                      size_t len);

/* _log.c */
ngx_int_t ngx_http_torrix_log_handler(ngx_http_request_t *r);

/* _module.c */
void ngx_http_torrix_random(void *buf, size_t len);

/* unix time as the gateway sees it (a test build may shift it) */
time_t  ngx_http_torrix_time(void);
int64_t ngx_http_torrix_clock_offset(void);
void    ngx_http_torrix_clock_update(void);

/* _limits.c: reads the scopes' limits and spend, then admits */
ngx_int_t ngx_http_torrix_limits(ngx_http_request_t    *r,
                                 ngx_http_torrix_ctx_t *ctx);

/* _zone.c */
ngx_int_t ngx_http_torrix_zone_add(ngx_conf_t *cf, size_t size);
void      ngx_http_torrix_zone_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_torrix_admit(ngx_http_request_t    *r,
                                ngx_http_torrix_ctx_t *ctx);
void      ngx_http_torrix_settle(ngx_http_torrix_ctx_t *ctx, tx_money_t cost,
                                 uint64_t tokens);
void ngx_http_torrix_tpm_return(ngx_http_torrix_ctx_t *ctx, uint64_t tokens);
void ngx_http_torrix_limit_headers(ngx_http_torrix_ctx_t *ctx);

/* observed latency per model, shared by the workers: microseconds, 0 none */
uint64_t ngx_http_torrix_latency_get(ngx_str_t *model);
void     ngx_http_torrix_latency_put(ngx_str_t *model, uint64_t us);

/* _cache.c: the router rules of this generation */
typedef struct {
    ngx_str_t org; /* empty: global */
    ngx_str_t pattern;
    ngx_str_t target;
    ngx_str_t id;
    unsigned  glob : 1;
} ngx_http_torrix_rule_t;

ngx_http_torrix_rule_t *ngx_http_torrix_cache_rules(MDB_txn    *txn,
                                                    ngx_uint_t *n);


#endif /* NGX_HTTP_TORRIX_MODULE_H */

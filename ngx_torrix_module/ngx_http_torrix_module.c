/*
 * ngx_torrix_module: directives, configuration, variables, init.
 */

#include "ngx_http_torrix_module.h"

#include <sys/random.h>


static ngx_int_t ngx_http_torrix_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_torrix_variable(ngx_http_request_t        *r,
                                          ngx_http_variable_value_t *v,
                                          uintptr_t                  data);
static void     *ngx_http_torrix_create_main_conf(ngx_conf_t *cf);
static char     *ngx_http_torrix_init_main_conf(ngx_conf_t *cf, void *conf);
static void     *ngx_http_torrix_create_loc_conf(ngx_conf_t *cf);
static char     *ngx_http_torrix_merge_loc_conf(ngx_conf_t *cf, void *parent,
                                                void *child);
static char     *ngx_http_torrix_spool(ngx_conf_t *cf, ngx_command_t *cmd,
                                       void *conf);
static char     *ngx_http_torrix_fallback(ngx_conf_t *cf, ngx_command_t *cmd,
                                          void *conf);
static ngx_int_t ngx_http_torrix_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_torrix_map_upstreams(
    ngx_conf_t *cf, ngx_http_torrix_main_conf_t *tmcf);
static ngx_int_t ngx_http_torrix_init_process(ngx_cycle_t *cycle);
static void      ngx_http_torrix_exit_process(ngx_cycle_t *cycle);


/* clang-format off */
static ngx_command_t  ngx_http_torrix_commands[] = {

    { ngx_string("torrix"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_torrix_loc_conf_t, enable),
      NULL },

    { ngx_string("torrix_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_torrix_loc_conf_t, max_body_size),
      NULL },

    { ngx_string("torrix_fallback"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_torrix_fallback,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_torrix_loc_conf_t, fallback),
      NULL },

    { ngx_string("torrix_snapshot"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_torrix_main_conf_t, snapshot_path),
      NULL },

    { ngx_string("torrix_credentials_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_torrix_main_conf_t, creds_path),
      NULL },

    { ngx_string("torrix_snapshot_readers"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_torrix_main_conf_t, max_readers),
      NULL },

    { ngx_string("torrix_spool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_torrix_spool,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("torrix_limits_zone_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_torrix_main_conf_t, zone_size),
      NULL },

    { ngx_string("torrix_edge_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_torrix_main_conf_t, edge_name),
      NULL },

      ngx_null_command
};
/* clang-format on */


/* clang-format off */
static ngx_http_module_t  ngx_http_torrix_module_ctx = {
    ngx_http_torrix_add_variables,         /* preconfiguration */
    ngx_http_torrix_init,                  /* postconfiguration */

    ngx_http_torrix_create_main_conf,      /* create main configuration */
    ngx_http_torrix_init_main_conf,        /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_torrix_create_loc_conf,       /* create location configuration */
    ngx_http_torrix_merge_loc_conf         /* merge location configuration */
};
/* clang-format on */


/* clang-format off */
ngx_module_t  ngx_http_torrix_module = {
    NGX_MODULE_V1,
    &ngx_http_torrix_module_ctx,           /* module context */
    ngx_http_torrix_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_torrix_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_torrix_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};
/* clang-format on */


/* clang-format off */
static ngx_http_variable_t  ngx_http_torrix_vars[] = {

    { ngx_string("torrix_upstream"), NULL, ngx_http_torrix_variable,
      offsetof(ngx_http_torrix_ctx_t, upstream),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("torrix_upstream_uri"), NULL, ngx_http_torrix_variable,
      offsetof(ngx_http_torrix_ctx_t, upstream_uri),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("torrix_upstream_host"), NULL, ngx_http_torrix_variable,
      offsetof(ngx_http_torrix_ctx_t, upstream_host),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("torrix_upstream_authorization"), NULL,
      ngx_http_torrix_variable,
      offsetof(ngx_http_torrix_ctx_t, upstream_authorization),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("torrix_upstream_api_key"), NULL, ngx_http_torrix_variable,
      offsetof(ngx_http_torrix_ctx_t, upstream_api_key),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("torrix_key_id"), NULL, ngx_http_torrix_variable,
      offsetof(ngx_http_torrix_ctx_t, key_id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("torrix_model"), NULL, ngx_http_torrix_variable,
      offsetof(ngx_http_torrix_ctx_t, model),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("torrix_provider"), NULL, ngx_http_torrix_variable,
      offsetof(ngx_http_torrix_ctx_t, provider),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};
/* clang-format on */


/* per-worker PRNG state for run ids (xoshiro256**), seeded from getrandom */
static uint64_t ngx_http_torrix_rng[4];

/* seconds added to the clock: only test builds can set it */
static int64_t ngx_http_torrix_offset;
#if (NGX_TORRIX_TEST_HOOKS)
static char *ngx_http_torrix_clock_file;
#endif


static ngx_int_t
ngx_http_torrix_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t *var, *v;

    for (v = ngx_http_torrix_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_torrix_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
                         uintptr_t data)
{
    ngx_str_t             *s;
    ngx_http_torrix_ctx_t *ctx;

    ctx = ngx_http_torrix_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((char *) ctx + data);

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static void *
ngx_http_torrix_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_torrix_main_conf_t *tmcf;

    tmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_torrix_main_conf_t));
    if (tmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     tmcf->snapshot_path = { 0, NULL };
     *     tmcf->spool_path = { 0, NULL };
     *     tmcf->edge_name = { 0, NULL };
     *     tmcf->upstreams = NULL;
     */

    tmcf->spool_size = NGX_CONF_UNSET_SIZE;
    tmcf->spool_rotate = NGX_CONF_UNSET_MSEC;
    tmcf->max_readers = NGX_CONF_UNSET_UINT;
    tmcf->zone_size = NGX_CONF_UNSET_SIZE;

    return tmcf;
}


static char *
ngx_http_torrix_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_torrix_main_conf_t *tmcf = conf;

    ngx_conf_init_size_value(tmcf->spool_size, 8 * 1024 * 1024);
    ngx_conf_init_msec_value(tmcf->spool_rotate, 10000);
    ngx_conf_init_uint_value(tmcf->max_readers, 1024);
    ngx_conf_init_size_value(tmcf->zone_size, 16 * 1024 * 1024);

#if (NGX_TORRIX_TEST_HOOKS)
    {
        char *path;

        /* read in the master: nginx clears workers' environment */
        path = getenv("TORRIX_TEST_CLOCK_FILE");
        ngx_http_torrix_clock_file = NULL;

        if (path) {
            ngx_http_torrix_clock_file =
                ngx_pnalloc(cf->pool, ngx_strlen(path) + 1);
            if (ngx_http_torrix_clock_file == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_cpystrn((u_char *) ngx_http_torrix_clock_file, (u_char *) path,
                        ngx_strlen(path) + 1);
        }
    }
#endif

    if (tmcf->zone_size < 256 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "torrix_limits_zone_size must be at least 256k");
        return NGX_CONF_ERROR;
    }

    /* limits are always on where the gateway is: never fail open */
    if (tmcf->snapshot_path.len
        && ngx_http_torrix_zone_add(cf, tmcf->zone_size) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_torrix_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_torrix_loc_conf_t *tlcf;

    tlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_torrix_loc_conf_t));
    if (tlcf == NULL) {
        return NULL;
    }

    tlcf->enable = NGX_CONF_UNSET;
    tlcf->max_body_size = NGX_CONF_UNSET_SIZE;

    return tlcf;
}


static char *
ngx_http_torrix_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_torrix_loc_conf_t *prev = parent;
    ngx_http_torrix_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t *clcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_size_value(conf->max_body_size, prev->max_body_size,
                              4 * 1024 * 1024);
    ngx_conf_merge_str_value(conf->fallback, prev->fallback, "");

    if (conf->enable) {
        /*
         * the module enforces torrix_max_body_size itself, so that an
         * oversized body gets a 413 in the provider's error shape rather
         * than nginx's HTML page
         */
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
        clcf->client_max_body_size = 0;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_torrix_spool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_torrix_main_conf_t *tmcf = conf;

    ngx_str_t *value, s;
    ngx_uint_t i;

    if (tmcf->spool_path.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    tmcf->spool_path = value[1];

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "size=", 5) == 0) {
            s.len = value[i].len - 5;
            s.data = value[i].data + 5;

            tmcf->spool_size = ngx_parse_size(&s);
            if (tmcf->spool_size == (size_t) NGX_ERROR
                || tmcf->spool_size < 64 * 1024) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid spool size \"%V\" "
                                   "(at least 64k)",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "rotate=", 7) == 0) {
            s.len = value[i].len - 7;
            s.data = value[i].data + 7;

            tmcf->spool_rotate = ngx_parse_time(&s, 0);
            if (tmcf->spool_rotate == (ngx_msec_t) NGX_ERROR
                || tmcf->spool_rotate == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid spool rotate \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_torrix_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt         *h;
    ngx_http_core_main_conf_t   *cmcf;
    ngx_http_torrix_main_conf_t *tmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_torrix_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_torrix_access_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_torrix_log_handler;

    if (ngx_http_torrix_map_upstreams(cf, tmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_torrix_creds_init(cf, &tmcf->creds_path, &tmcf->snapshot_path)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_torrix_body_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_torrix_filter_init(cf);
}


/*
 * Collects the explicit upstream{} blocks by their servers' "host:port", so
 * that a provider base URL naming one of them is proxied through the block
 * (and its keepalive pool) rather than resolved per request.
 */
static ngx_int_t
ngx_http_torrix_map_upstreams(ngx_conf_t *cf, ngx_http_torrix_main_conf_t *tmcf)
{
    size_t                          len;
    u_char                         *p;
    ngx_uint_t                      i, j;
    ngx_http_upstream_server_t     *server;
    ngx_http_upstream_srv_conf_t  **uscfp, *uscf;
    ngx_http_upstream_main_conf_t  *umcf;
    ngx_http_torrix_upstream_map_t *m;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);

    tmcf->upstreams =
        ngx_array_create(cf->pool, 4, sizeof(ngx_http_torrix_upstream_map_t));
    if (tmcf->upstreams == NULL) {
        return NGX_ERROR;
    }

    if (umcf == NULL) {
        return NGX_OK;
    }

    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        uscf = uscfp[i];

        if (!(uscf->flags & NGX_HTTP_UPSTREAM_CREATE) || uscf->servers == NULL)
        {
            continue;
        }

        server = uscf->servers->elts;

        for (j = 0; j < uscf->servers->nelts; j++) {
            if (server[j].name.len == 0) {
                continue;
            }

            m = ngx_array_push(tmcf->upstreams);
            if (m == NULL) {
                return NGX_ERROR;
            }

            m->name = uscf->host;

            /* "host" alone means port 80, as nginx reads it */
            if (ngx_strlchr(server[j].name.data,
                            server[j].name.data + server[j].name.len, ':')
                    == NULL
                || server[j].name.data[server[j].name.len - 1] == ']')
            {
                len = server[j].name.len + sizeof(":80") - 1;
                p = ngx_pnalloc(cf->pool, len);
                if (p == NULL) {
                    return NGX_ERROR;
                }

                ngx_sprintf(p, "%V:80", &server[j].name);
                m->hostport.len = len;
                m->hostport.data = p;

            } else {
                m->hostport = server[j].name;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_torrix_init_process(ngx_cycle_t *cycle)
{
    u_char  seed[32];
    ssize_t n;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    n = getrandom(seed, sizeof(seed), 0);
    if (n != (ssize_t) sizeof(seed)) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "torrix: getrandom() failed");
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_http_torrix_rng, seed, sizeof(seed));

    ngx_http_torrix_clock_update();

    ngx_http_torrix_zone_init_process(cycle);

    if (ngx_http_torrix_snapshot_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_torrix_spool_init_process(cycle);
}


static void
ngx_http_torrix_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_torrix_spool_exit_process(cycle);
    ngx_http_torrix_snapshot_exit_process(cycle);
}


static ngx_inline uint64_t
ngx_http_torrix_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}


void
ngx_http_torrix_random(void *buf, size_t len)
{
    u_char   *p;
    size_t    n;
    uint64_t *s, r, t;

    s = ngx_http_torrix_rng;
    p = buf;

    while (len) {
        r = ngx_http_torrix_rotl(s[1] * 5, 7) * 9;
        t = s[1] << 17;

        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = ngx_http_torrix_rotl(s[3], 45);

        n = ngx_min(len, sizeof(r));
        ngx_memcpy(p, &r, n);
        p += n;
        len -= n;
    }
}


time_t
ngx_http_torrix_time(void)
{
    return ngx_time() + ngx_http_torrix_offset;
}


int64_t
ngx_http_torrix_clock_offset(void)
{
    return ngx_http_torrix_offset;
}


/*
 * Test builds (-DNGX_TORRIX_TEST_HOOKS=1, ./build.sh test) shift the clock
 * by the number of seconds written in the file named by the environment
 * variable TORRIX_TEST_CLOCK_FILE (as nginx was started), re-read every
 * second, so window rollover
 * (midnight UTC, Monday, the 1st) is tested without waiting.  Production
 * builds have no such code.
 */
void
ngx_http_torrix_clock_update(void)
{
#if (NGX_TORRIX_TEST_HOOKS)
    int     fd;
    char   *path, buf[32];
    ssize_t n;

    path = ngx_http_torrix_clock_file;
    if (path == NULL) {
        return;
    }

    fd = open(path, O_RDONLY);
    if (fd == -1) {
        ngx_http_torrix_offset = 0;
        return;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    (void) close(fd);

    if (n > 0) {
        buf[n] = '\0';
        ngx_http_torrix_offset = strtoll(buf, NULL, 10);
    }
#endif
}


/* torrix_fallback @name: a named location, checked to exist at start */
static char *
ngx_http_torrix_fallback(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t *value;

    value = cf->args->elts;

    if (value[1].len < 2 || value[1].data[0] != '@') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"torrix_fallback\" needs a named location "
                           "(\"@name\"), not \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    return ngx_conf_set_str_slot(cf, cmd, conf);
}

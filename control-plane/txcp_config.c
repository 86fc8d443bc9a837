/*
 * torrix-cp configuration (see txcp_config.h).
 */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txcp.h"


#define TXCP_OPT_STRING 1
#define TXCP_OPT_SIZE   2 /* bytes, with optional k/m/g suffix */
#define TXCP_OPT_INT    3
#define TXCP_OPT_ENUM   4
#define TXCP_OPT_BOOL   5


typedef struct {
    const char        *name;
    int                type;
    size_t             offset;
    long long          min;
    long long          max;
    const char        *dflt;
    const char *const *enums; /* TXCP_OPT_ENUM: value = index */
    const char        *doc;
} txcp_option_t;


static const char *const txcp_log_levels[] = {"debug", "info", "warn", "error",
                                              NULL};


static const txcp_option_t txcp_options[] = {

    {"data_dir", TXCP_OPT_STRING, offsetof(txcp_conf_t, data_dir), 1, 4096,
     "./data", NULL, "data directory: store/, snapshot/, spool/, admin.key"},

    {"listen", TXCP_OPT_STRING, offsetof(txcp_conf_t, listen), 3, 300,
     "127.0.0.1:8089", NULL,
     "HOST:PORT of the admin REST API ([v6addr]:port for IPv6)"},

    {"max_body", TXCP_OPT_SIZE, offsetof(txcp_conf_t, max_body), 1, 1024 * 1024,
     "1m", NULL,
     "largest API request body; bigger bodies get 413 (hard cap 1m)"},

    {"snapshot_mapsize", TXCP_OPT_SIZE, offsetof(txcp_conf_t, snapshot_mapsize),
     1024 * 1024, 1LL << 40, "1g", NULL,
     "LMDB map size of the snapshot env (virtual; grows the file lazily)"},

    {"store_mapsize", TXCP_OPT_SIZE, offsetof(txcp_conf_t, store_mapsize),
     1024 * 1024, 1LL << 42, "8g", NULL,
     "LMDB map size of the store env (runs live here)"},

    {"snapshot_maxreaders", TXCP_OPT_INT,
     offsetof(txcp_conf_t, snapshot_maxreaders), 16, 65536, "1024", NULL,
     "reader slots of the snapshot env: at least the nginx worker count"},

    {"ingest_interval_ms", TXCP_OPT_INT,
     offsetof(txcp_conf_t, ingest_interval_ms), 10, 60000, "100", NULL,
     "how often the spool directory is scanned for new run records"},

    {"ingest_busy_interval_ms", TXCP_OPT_INT,
     offsetof(txcp_conf_t, ingest_busy_interval_ms), 10, 60000, "1000", NULL,
     "the scan interval after a pass that ingested ingest_busy_runs or more: "
     "under load, fewer and larger store transactions (each is a durable "
     "commit) leave the gateway's CPU to the gateway; budgets stay exact "
     "(the data plane counts its own spend past the ingest watermark)"},

    {"ingest_busy_runs", TXCP_OPT_INT, offsetof(txcp_conf_t, ingest_busy_runs),
     1, 100000000, "1000", NULL,
     "run records in one pass that make the next wait "
     "ingest_busy_interval_ms"},

    {"spool_free_age_s", TXCP_OPT_INT, offsetof(txcp_conf_t, spool_free_age_s),
     1, 86400, "60", NULL,
     "seconds a finished spool file may wait in spool/free/ for a worker to "
     "reuse it before it is deleted (it still holds its runs' records)"},

    {"ingest_batch", TXCP_OPT_INT, offsetof(txcp_conf_t, ingest_batch), 1,
     100000, "10000", NULL,
     "run records per store write transaction during ingest (a batch also "
     "ends at the 50 ms budget of an ingest pass)"},

    {"nice", TXCP_OPT_INT, offsetof(txcp_conf_t, nice), 0, 19, "10", NULL,
     "the daemon's scheduling niceness: its work (ingest, rollups, the admin "
     "API) can wait, the nginx workers on the same machine come first when "
     "the CPU is short; budgets stay exact meanwhile (the data plane counts "
     "its own spend past the ingest watermark).  Lowering it below the "
     "niceness it was started with needs CAP_SYS_NICE"},

    {"dataplane_user", TXCP_OPT_STRING, offsetof(txcp_conf_t, dataplane_user),
     0, 64, "", NULL,
     "when started as root: owner given to the snapshot files and the "
     "spool directory (the nginx worker user)"},

    {"master_key_file", TXCP_OPT_STRING, offsetof(txcp_conf_t, master_key_file),
     0, 4096, "", NULL,
     "file holding the vault master key (64 hex characters or base64 of 32 "
     "bytes); unset: env TORRIX_MASTER_KEY, else $DATA/master.key (created "
     "on first start)"},

    {"log_level", TXCP_OPT_ENUM, offsetof(txcp_conf_t, log_level), 0, 0, "info",
     txcp_log_levels, "debug, info, warn or error"},

    {"daemonize", TXCP_OPT_BOOL, offsetof(txcp_conf_t, daemonize), 0, 1, "no",
     NULL, "detach from the terminal after start-up (--foreground forces no)"},

    {"webhook_timeout_ms", TXCP_OPT_INT,
     offsetof(txcp_conf_t, webhook_timeout_ms), 100, 600000, "10000", NULL,
     "time limit of one webhook delivery attempt (connect included)"},

    {"webhook_backoff_min_ms", TXCP_OPT_INT,
     offsetof(txcp_conf_t, webhook_backoff_min_ms), 10, 3600000, "1000", NULL,
     "delay before the first retry of a failed delivery; it doubles at "
     "every further attempt"},

    {"webhook_backoff_max_ms", TXCP_OPT_INT,
     offsetof(txcp_conf_t, webhook_backoff_max_ms), 10, 86400000, "300000",
     NULL, "the longest delay between two delivery attempts"},

    {"webhook_give_up_s", TXCP_OPT_INT,
     offsetof(txcp_conf_t, webhook_give_up_s), 1, 30 * 86400, "86400", NULL,
     "deliveries still failing this long after their alert are marked failed"},

    {"webhook_max_inflight", TXCP_OPT_INT,
     offsetof(txcp_conf_t, webhook_max_inflight), 1, 1024, "16", NULL,
     "webhook requests in flight at once"},

    {NULL, 0, 0, 0, 0, NULL, NULL, NULL}};


static const txcp_option_t *
txcp_option_find(const char *name)
{
    const txcp_option_t *o;
    size_t               i, n;
    char                 a, b;

    n = strlen(name);

    for (o = txcp_options; o->name; o++) {
        if (strlen(o->name) != n) {
            continue;
        }

        for (i = 0; i < n; i++) {
            a = name[i] == '-' ? '_' : name[i];
            b = o->name[i];

            if (a != b) {
                break;
            }
        }

        if (i == n) {
            return o;
        }
    }

    return NULL;
}


static int
txcp_parse_ll(const char *v, int size, long long *out)
{
    char     *end;
    long long n, mul;

    errno = 0;
    n = strtoll(v, &end, 10);

    if (errno != 0 || end == v || n < 0) {
        return -1;
    }

    mul = 1;

    if (size && *end) {
        switch (tolower((unsigned char) *end)) {
        case 'k':
            mul = 1024;
            break;
        case 'm':
            mul = 1024 * 1024;
            break;
        case 'g':
            mul = 1024 * 1024 * 1024;
            break;
        default:
            return -1;
        }

        end++;

        if (*end == 'b' || *end == 'B') {
            end++;
        }
    }

    if (*end != '\0') {
        return -1;
    }

    if (n > LLONG_MAX / mul) {
        return -1;
    }

    *out = n * mul;

    return 0;
}


int
txcp_config_set(txcp_conf_t *conf, const char *name, const char *value,
                char *err, size_t errlen)
{
    const txcp_option_t *o;
    long long            n;
    size_t               len;
    char                *s, **sp;
    int                  i;

    o = txcp_option_find(name);

    if (o == NULL) {
        snprintf(err, errlen, "unknown option \"%s\"", name);
        return -1;
    }

    switch (o->type) {
    case TXCP_OPT_STRING:
        len = strlen(value);

        if ((long long) len < o->min || (long long) len > o->max) {
            snprintf(err, errlen, "%s: length must be %lld..%lld", o->name,
                     o->min, o->max);
            return -1;
        }

        s = strdup(value);
        if (s == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }

        sp = (char **) ((char *) conf + o->offset);
        free(*sp);
        *sp = s;
        return 0;

    case TXCP_OPT_SIZE:
    case TXCP_OPT_INT:
        if (txcp_parse_ll(value, o->type == TXCP_OPT_SIZE, &n) != 0
            || n < o->min || n > o->max)
        {
            snprintf(err, errlen, "%s: \"%s\" is not a %s in %lld..%lld",
                     o->name, value,
                     o->type == TXCP_OPT_SIZE ? "size" : "number", o->min,
                     o->max);
            return -1;
        }

        if (o->type == TXCP_OPT_SIZE) {
            *(size_t *) ((char *) conf + o->offset) = (size_t) n;

        } else {
            *(long long *) ((char *) conf + o->offset) = n;
        }

        return 0;

    case TXCP_OPT_ENUM:
        for (i = 0; o->enums[i]; i++) {
            if (strcmp(o->enums[i], value) == 0) {
                *(long long *) ((char *) conf + o->offset) = i;
                return 0;
            }
        }

        snprintf(err, errlen, "%s: unknown value \"%s\"", o->name, value);
        return -1;

    case TXCP_OPT_BOOL:
        if (strcmp(value, "yes") == 0 || strcmp(value, "on") == 0
            || strcmp(value, "1") == 0)
        {
            n = 1;

        } else if (strcmp(value, "no") == 0 || strcmp(value, "off") == 0
                   || strcmp(value, "0") == 0)
        {
            n = 0;

        } else {
            snprintf(err, errlen, "%s: expected yes or no", o->name);
            return -1;
        }

        *(long long *) ((char *) conf + o->offset) = n;
        return 0;
    }

    snprintf(err, errlen, "%s: bad option type", o->name);
    return -1;
}


int
txcp_config_defaults(txcp_conf_t *conf)
{
    const txcp_option_t *o;
    char                 err[256];

    memset(conf, 0, sizeof(txcp_conf_t));

    for (o = txcp_options; o->name; o++) {
        if (txcp_config_set(conf, o->name, o->dflt, err, sizeof(err)) != 0) {
            return -1;
        }
    }

    return 0;
}


int
txcp_config_file(txcp_conf_t *conf, const char *path, char *err, size_t errlen)
{
    FILE *f;
    char  line[8192], msg[256], *p, *name, *value, *end;
    int   lineno, rc;

    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }

    lineno = 0;
    rc = 0;

    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;

        p = strchr(line, '#');
        if (p) {
            *p = '\0';
        }

        for (p = line; isspace((unsigned char) *p); p++) {
            /* void */
        }

        end = p + strlen(p);

        while (end > p && isspace((unsigned char) end[-1])) {
            *--end = '\0';
        }

        if (*p == '\0') {
            continue;
        }

        name = p;

        while (*p && !isspace((unsigned char) *p)) {
            p++;
        }

        if (*p == '\0') {
            snprintf(err, errlen, "%s:%d: option \"%s\" without a value", path,
                     lineno, name);
            rc = -1;
            break;
        }

        *p++ = '\0';

        while (isspace((unsigned char) *p)) {
            p++;
        }

        value = p;

        if (value[0] == '"' && end - value >= 2 && end[-1] == '"') {
            end[-1] = '\0';
            value++;
        }

        if (txcp_config_set(conf, name, value, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
            rc = -1;
            break;
        }
    }

    fclose(f);

    return rc;
}


int
txcp_config_args(txcp_conf_t *conf, int argc, char **argv, char *err,
                 size_t errlen)
{
    int         i;
    const char *name;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--config needs a file");
                return -1;
            }

            if (txcp_config_file(conf, argv[i + 1], err, errlen) != 0) {
                return -1;
            }
        }
    }

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            i++;
            continue;
        }

        if (strcmp(argv[i], "--foreground") == 0) {
            conf->daemonize = 0;
            continue;
        }

        if (strncmp(argv[i], "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument \"%s\"", argv[i]);
            return -1;
        }

        name = argv[i] + 2;

        if (strcmp(name, "data") == 0) {
            name = "data_dir";
        }

        if (i + 1 >= argc) {
            snprintf(err, errlen, "%s needs a value", argv[i]);
            return -1;
        }

        if (txcp_config_set(conf, name, argv[i + 1], err, errlen) != 0) {
            return -1;
        }

        i++;
    }

    return 0;
}


int
txcp_config_cli_opt(txcp_conf_t *conf, int argc, char **argv, int *i, char *err,
                    size_t errlen)
{
    const char *a;

    a = argv[*i];

    if (*i + 1 < argc
        && (strcmp(a, "--data") == 0 || strcmp(a, "--data-dir") == 0)) {
        return txcp_config_set(conf, "data_dir", argv[++*i], err, errlen);
    }

    if (*i + 1 < argc && strcmp(a, "--config") == 0) {
        return txcp_config_file(conf, argv[++*i], err, errlen);
    }

    snprintf(err, errlen, "unexpected argument \"%s\"", a);

    return -1;
}


void
txcp_config_usage(void)
{
    const txcp_option_t *o;

    fprintf(stderr, "usage: torrix-cp [--config FILE] [--data DIR] "
                    "[--listen HOST:PORT]\n"
                    "                 [--dataplane-user USER] [--foreground] "
                    "[--OPTION VALUE]...\n"
                    "       torrix-cp audit verify --data DIR\n"
                    "       torrix-cp vault rotate [--new-key-file F] "
                    "--data DIR\n\n"
                    "options (config file: \"name value\" lines; flags: "
                    "--name value):\n");

    for (o = txcp_options; o->name; o++) {
        fprintf(stderr, "  %-20s %s (default \"%s\")\n", o->name, o->doc,
                o->dflt);
    }
}


void
txcp_config_free(txcp_conf_t *conf)
{
    free(conf->data_dir);
    free(conf->listen);
    free(conf->dataplane_user);
    free(conf->master_key_file);
    conf->data_dir = NULL;
    conf->listen = NULL;
    conf->dataplane_user = NULL;
    conf->master_key_file = NULL;
}

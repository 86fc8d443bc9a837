/*
 * torrix-cp configuration: one typed option table (name, type, bounds,
 * default, doc) read from a config file of "name value" lines ('#' starts a
 * comment) and from command line flags ("--name value", '-' and '_' are
 * interchangeable).  Flags win over the file; the file wins over defaults.
 */

#ifndef TXCP_CONFIG_H
#define TXCP_CONFIG_H


#include <stddef.h>


typedef struct {
    char     *data_dir; /* malloc'd */
    char     *listen;   /* malloc'd, "host:port" */
    size_t    max_body;
    size_t    snapshot_mapsize;
    size_t    store_mapsize;
    long long snapshot_maxreaders;
    long long ingest_interval_ms;
    long long ingest_busy_interval_ms;
    long long ingest_busy_runs;
    long long spool_free_age_s;
    long long ingest_batch;
    long long nice;                   /* niceness, set at start */
    char     *dataplane_user;         /* malloc'd, "" = none */
    char     *master_key_file;        /* malloc'd, "" = env or $DATA */
    long long log_level;              /* TXCP_LOG_* */
    long long daemonize;              /* 0/1 */
    long long webhook_timeout_ms;     /* one delivery attempt */
    long long webhook_backoff_min_ms; /* first retry delay */
    long long webhook_backoff_max_ms; /* retry delay cap */
    long long webhook_give_up_s;      /* age of an alert when retries stop */
    long long webhook_max_inflight;   /* concurrent deliveries */
} txcp_conf_t;


/* Sets every option to its default.  Returns 0, or -1 on allocation error. */
int txcp_config_defaults(txcp_conf_t *conf);

/*
 * Parses argv[1..argc-1] (options only, no subcommand): first finds
 * "--config FILE" and loads it, then applies the flags.  On error writes a
 * message into err and returns -1.
 */
int txcp_config_args(txcp_conf_t *conf, int argc, char **argv, char *err,
                     size_t errlen);

/* Loads a config file; -1 with a message naming file and line on error. */
int txcp_config_file(txcp_conf_t *conf, const char *path, char *err,
                     size_t errlen);

/* Sets one option from its text value; -1 with a message on error. */
int txcp_config_set(txcp_conf_t *conf, const char *name, const char *value,
                    char *err, size_t errlen);

/*
 * Applies argv[*i] of an offline subcommand (keys seed, pricing import,
 * audit): "--data DIR" (or --data-dir) or "--config FILE"; *i is left on the
 * value it consumed.  The caller checks its own options first.  Returns 0,
 * or -1 with a message in err (a bad value, or any other argument).
 */
int txcp_config_cli_opt(txcp_conf_t *conf, int argc, char **argv, int *i,
                        char *err, size_t errlen);

/* Prints every option with its doc and default (for --help). */
void txcp_config_usage(void);

/* Frees the strings of conf. */
void txcp_config_free(txcp_conf_t *conf);


#endif /* TXCP_CONFIG_H */

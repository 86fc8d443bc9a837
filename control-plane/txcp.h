/*
 * torrix-cp: the control-plane daemon.  Process-wide state, logging and
 * small utilities shared by every txcp_*.c file.
 *
 * The daemon is single threaded: one event loop (txcp_loop.c) drives the
 * HTTP server, the spool ingest, the expiry sweep and LMDB housekeeping, so
 * the state below is only ever touched from that thread.  Signal handlers
 * only set flags.
 */

#ifndef TXCP_H
#define TXCP_H


#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>

#include <lmdb.h>
#include <cjson/cJSON.h>

#include "tx_core.h"
#include "tx_key.h"
#include "txcp_config.h"


#define TXCP_VERSION      "0.1.0"
#define TXCP_STORE_SCHEMA 6


/* Store (source of truth) named databases, see txcp_store.h */
enum {
    TXCP_DB_META = 0,
    TXCP_DB_ORGS,
    TXCP_DB_USERS,
    TXCP_DB_PROJECTS,
    TXCP_DB_KEYS,
    TXCP_DB_ADMINS,
    TXCP_DB_AUDIT,
    TXCP_DB_RUNS,
    TXCP_DB_SPOOL_CURSOR,
    TXCP_DB_PROVIDERS,
    TXCP_DB_SETTINGS,
    TXCP_DB_SLUGS,
    TXCP_DB_TIMERS,
    TXCP_DB_PRICES,
    TXCP_DB_SPEND,
    TXCP_DB_ROLLUPS,
    TXCP_DB_RUNS_IDX,
    TXCP_DB_WEBHOOKS,
    TXCP_DB_ALERTS,
    TXCP_DB_ALERT_MARKS,
    TXCP_DB_OUTBOX,
    TXCP_DB_ROUTES,    /* rule id -> route rule (txcp_routes.c) */
    TXCP_DB_FALLBACKS, /* primary model -> fallback chain */
    TXCP_DB_AGENTS,    /* agent id -> agent (txcp_agents.c) */
    TXCP_DB_N
};


/* Snapshot named databases, see tx_snapshot.h */
enum {
    TXCP_SDB_META = 0,
    TXCP_SDB_KHASH,
    TXCP_SDB_KEYS,
    TXCP_SDB_PROJECTS,
    TXCP_SDB_ORGS,
    TXCP_SDB_USERS,
    TXCP_SDB_PROVIDERS,
    TXCP_SDB_SETTINGS,
    TXCP_SDB_PRICES,
    TXCP_SDB_SPEND,
    TXCP_SDB_ROUTES,
    TXCP_SDB_FALLBACKS,
    TXCP_SDB_AGENTS,
    TXCP_SDB_N
};


typedef struct {
    uint64_t ingested;   /* runs inserted */
    uint64_t duplicates; /* frames whose run id was already stored */
    uint64_t torn;       /* frames skipped: bad crc or bad record */
    uint64_t files_done; /* spool files finished and unlinked */
} txcp_ingest_stats_t;


typedef struct txcp_s {
    txcp_conf_t conf;

    MDB_env *store;
    MDB_dbi  db[TXCP_DB_N];

    MDB_env *snap;
    MDB_dbi  sdb[TXCP_SDB_N];
    uint64_t gen;           /* last published snapshot gen */
    int      resync_needed; /* a publish failed: resync */

    uint8_t *hash_key; /* sodium_malloc, 32 bytes */

    struct MHD_Daemon *httpd;

    txcp_ingest_stats_t ingest;

    volatile sig_atomic_t stop;
} txcp_t;


/* The one instance (like Redis' `server`); defined in txcp_main.c. */
extern txcp_t txcp;


/* Log levels, ordered */
#define TXCP_LOG_DEBUG 0
#define TXCP_LOG_INFO  1
#define TXCP_LOG_WARN  2
#define TXCP_LOG_ERROR 3


/*
 * Writes one line to stderr: "<RFC 3339 ms time> <level> <msg> <kv>" where
 * kv is printf-formatted "key=value ..." pairs (may be NULL).  Lines below
 * txcp.conf.log_level are dropped.  Never pass secrets.
 */
void txcp_log(int level, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Unix time now, microseconds. */
int64_t txcp_now_us(void);

/*
 * A regular file of at most max bytes, NUL-terminated (malloc'd; *len
 * without the NUL), or NULL with the reason in err.
 */
char *txcp_read_file(const char *path, size_t max, size_t *len, char *err,
                     size_t errlen);

/*
 * Formats unix microseconds as RFC 3339 UTC into buf (at least 32 bytes):
 * digits = 0 ("...:05Z"), 3 (".123Z") or 6 (".123456Z").  Returns buf.
 */
char *txcp_time_format(int64_t us, int digits, char *buf, size_t len);

/*
 * Parses an RFC 3339 date-time ("2026-11-22T10:00:00Z", fraction and
 * "+hh:mm" offsets allowed) into unix seconds (the fraction is dropped).
 * Returns TX_OK or TX_ERROR.
 */
int txcp_time_parse(const char *s, int64_t *secs);

/* Lowercase hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void txcp_hex(const uint8_t *in, size_t n, char *out);

/* Parses exactly 2n hex characters into n bytes; TX_OK or TX_ERROR. */
int txcp_unhex(const char *s, uint8_t *out, size_t n);

/* Little-endian 8-byte integer helpers for LMDB values (unaligned). */
void     txcp_put_le64(uint8_t *p, uint64_t v);
uint64_t txcp_get_le64(const uint8_t *p);

/* Big-endian 8-byte helpers: keys that sort numerically (audit seq). */
void     txcp_put_be64(uint8_t *p, uint64_t v);
uint64_t txcp_get_be64(const uint8_t *p);


#endif /* TXCP_H */

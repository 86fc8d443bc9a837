/*
 * Torrix snapshot schema: the data plane's view of the store.
 *
 * The snapshot is an LMDB environment (a directory with data.mdb/lock.mdb)
 * that torrix-cp updates in place, one write transaction per committed
 * change, so an edit costs O(log n) whatever the number of keys and nginx
 * workers see each change atomically at their next read transaction.  For a
 * remote edge the same environment is shipped as one compacted file
 * (mdb_env_copy2 with MDB_CP_COMPACT); an edge that finds a new data.mdb
 * (another inode) reopens it.
 *
 * Named databases (all keys and values are byte strings):
 *
 *   meta       "schema"   -> uint64 LE, TX_SNAP_SCHEMA
 *              "gen"      -> uint64 LE, bumped by every publish
 *              "hash_key" -> 32 bytes, the key-hashing key (see tx_key.h)
 *              "published_at" -> int64 LE, unix microseconds
 *   khash      32-byte keyed hash of a secret -> TLV TX_KH_*
 *              (one entry per live secret; a rotated-out secret carries
 *              TX_KH_NOT_AFTER and is removed by torrix-cp after it)
 *   keys       key id ("key_...") -> TLV TX_KEY_*
 *   projects   project id ("prj_...") -> TLV TX_PRJ_*
 *   orgs       org id ("org_...") -> TLV TX_ORG_*
 *   users      user id ("usr_...") -> TLV TX_USR_*
 *   providers  provider name ("openai") -> TLV TX_PRV_*
 *   settings   setting name -> raw value (see TX_SET_*)
 *   prices     model name -> TLV TX_PRICE_* (tx_price.h); optional: a
 *              snapshot without it prices nothing (runs flagged unpriced)
 *   spend      spend key (tx_spend_key) -> int64 LE money: the spend of
 *              that scope in that window over every ingested run; optional
 *   routes     rule id ("rt_...") -> TLV TX_RT_*: model router rules;
 *              optional
 *   fallbacks  primary model (exact name) -> TLV TX_FB_*: its fallback
 *              chain; optional
 *   agents     agent id -> TLV TX_AG_*: tier models of an agent; optional
 *
 * meta "ingest_watermark" (int64 LE, unix microseconds) says which runs
 * `spend` covers: every run whose spool frame was complete before that time.
 * torrix-cp sets it to the start time of the last ingest pass that read every
 * spool file to its end, in the same transaction as the spend it covers.  An
 * edge adds what it settled since the watermark and what it has reserved, so
 * a new snapshot neither double counts nor leaves a gap.
 *
 * Later schema additions (pricing, routes, agents, spend watermarks) are new
 * named databases; existing ones keep their meaning.
 */

#ifndef TX_SNAPSHOT_H
#define TX_SNAPSHOT_H


#include "tx_core.h"
#include "tx_key.h"


#define TX_SNAP_SCHEMA  1
#define TX_SNAP_MAX_DBS 32

#define TX_SNAP_DB_META      "meta"
#define TX_SNAP_DB_KHASH     "khash"
#define TX_SNAP_DB_KEYS      "keys"
#define TX_SNAP_DB_PROJECTS  "projects"
#define TX_SNAP_DB_ORGS      "orgs"
#define TX_SNAP_DB_USERS     "users"
#define TX_SNAP_DB_PROVIDERS "providers"
#define TX_SNAP_DB_SETTINGS  "settings"
#define TX_SNAP_DB_PRICES    "prices"
#define TX_SNAP_DB_SPEND     "spend"
#define TX_SNAP_DB_ROUTES    "routes"
#define TX_SNAP_DB_FALLBACKS "fallbacks"
#define TX_SNAP_DB_AGENTS    "agents"

#define TX_SNAP_META_SCHEMA       "schema"
#define TX_SNAP_META_GEN          "gen"
#define TX_SNAP_META_HASH_KEY     "hash_key"
#define TX_SNAP_META_PUBLISHED_AT "published_at"
#define TX_SNAP_META_WATERMARK    "ingest_watermark"


/*
 * Spend scopes.  A spend key is: scope byte, window kind byte (TX_WIN_*,
 * tx_window.h), window index (uint32 big endian), then the scope's id bytes
 * (empty for the instance).  torrix-cp publishes day, week and month windows
 * for every scope and keeps the current and previous window of each kind.
 */
#define TX_SCOPE_INSTANCE 1
#define TX_SCOPE_ORG      2
#define TX_SCOPE_PROJECT  3
#define TX_SCOPE_USER     4
#define TX_SCOPE_KEY      5

#define TX_SPEND_KEY_MAX (6 + TX_ID_MAX_LEN)

/*
 * Writes the spend key of (scope, window kind, index, id) into out
 * (TX_SPEND_KEY_MAX bytes) and returns its length.
 */
size_t tx_spend_key(uint8_t *out, int scope, int kind, uint32_t index,
                    const uint8_t *id, size_t idlen);


/* khash values */
#define TX_KH_KEY_ID    1 /* str: "key_..." */
#define TX_KH_NOT_AFTER 2 /* i64: unix seconds; absent or 0: no limit */


/* keys values */
#define TX_KEY_ID             1  /* str */
#define TX_KEY_NAME           2  /* str */
#define TX_KEY_PROJECT        3  /* str: project id, may be absent */
#define TX_KEY_USER           4  /* str: owner user id, may be absent */
#define TX_KEY_ORG            5  /* str: org id, may be absent */
#define TX_KEY_ACCESS         6  /* u64: TX_ACCESS_* */
#define TX_KEY_STATUS         7  /* u64: TX_STATUS_* */
#define TX_KEY_EXPIRES_AT     8  /* i64: unix seconds, 0 = never */
#define TX_KEY_MODELS         9  /* str: '\n'-separated globs, "*" = any */
#define TX_KEY_RPM            10 /* u64, 0 = unlimited */
#define TX_KEY_TPM            11 /* u64, 0 = unlimited */
#define TX_KEY_DAILY_CAP      12 /* i64 money, 0 = none */
#define TX_KEY_MONTHLY_BUDGET 13 /* i64 money, 0 = none */
#define TX_KEY_SOFT_PCT       14 /* u64: soft alert percent */
#define TX_KEY_METADATA       15 /* str: '\n'-separated "k=v" */

#define TX_ACCESS_FULL 1
#define TX_ACCESS_READ 2

#define TX_STATUS_ACTIVE   1
#define TX_STATUS_REVOKED  2
#define TX_STATUS_DISABLED 3


/* projects values */
#define TX_PRJ_ID          1 /* str */
#define TX_PRJ_SLUG        2 /* str */
#define TX_PRJ_ORG         3 /* str */
#define TX_PRJ_ACTIVE      4 /* u64 0/1 */
#define TX_PRJ_DLP         5 /* u64 0/1 */
#define TX_PRJ_RPM         6 /* u64 default for its keys, 0 = none */
#define TX_PRJ_TPM         7 /* u64 */
#define TX_PRJ_DAILY_CAP   8 /* i64 money */
#define TX_PRJ_MONTHLY_CAP 9 /* i64 money */

/* orgs values */
#define TX_ORG_ID        1 /* str */
#define TX_ORG_NAME      2 /* str */
#define TX_ORG_SPEND_CAP 3 /* i64 money per month, 0 = none */
#define TX_ORG_ROLLOVER  4 /* u64 0/1 */
#define TX_ORG_DLP       5 /* u64 0/1 */
#define TX_ORG_RPM       6 /* u64 */
#define TX_ORG_TPM       7 /* u64 */

/* users values */
#define TX_USR_ID         1 /* str */
#define TX_USR_ORG        2 /* str */
#define TX_USR_STATUS     3 /* u64 TX_STATUS_* */
#define TX_USR_WEEKLY_CAP 4 /* i64 money */


/* providers values */
#define TX_PRV_NAME     1 /* str */
#define TX_PRV_KIND     2 /* u64 TX_PROVIDER_* */
#define TX_PRV_BASE_URL 3 /* str: e.g. "https://api.openai.com/v1" */
/* str: a plaintext credential, no longer published (old snapshots) */
#define TX_PRV_API_KEY 4
/* bytes: the credential sealed under the data-plane key (tx_seal.h) */
#define TX_PRV_SEALED 5

#define TX_PROVIDER_OPENAI    1
#define TX_PROVIDER_ANTHROPIC 2
#define TX_PROVIDER_COMPAT    3 /* any OpenAI-compatible base URL */
#define TX_PROVIDER_OLLAMA    4


/* settings */
#define TX_SET_PROXY_TARGETS                                                   \
    "proxy_targets"                      /* '\n'-separated URL
                                                  patterns, tx_url.h */
#define TX_SET_SAMPLE_RATE "sample_rate" /* u64: parts per million */
#define TX_SET_DEFAULT_MAX_TOKENS                                              \
    "default_max_tokens"                               /* u64: output tokens
                                                  assumed when a request has
                                                  no max_tokens (4096) */
#define TX_SET_INSTANCE_DAILY_CAP "instance_daily_cap" /* i64 money, 0 none */
#define TX_SET_INSTANCE_SOFT_CAP  "instance_soft_cap"  /* i64 money, 0 none */
#define TX_SET_ROUTING_STRATEGY   "routing_strategy"   /* u64 TX_STRATEGY_* */

/* how the candidates of a fallback chain are ordered */
#define TX_STRATEGY_ORDERED  0 /* the chain as written (default) */
#define TX_STRATEGY_WEIGHTED 1 /* first by weighted random, then as written */
#define TX_STRATEGY_LATENCY  2 /* lowest observed latency first */
#define TX_STRATEGY_COST     3 /* lowest price first */


/*
 * routes values: a model router rule.  An organization's rules win over
 * global ones; within a scope an exact pattern wins over a wildcard one, and
 * among wildcards the longest pattern wins (ties: the smaller rule id).
 */
#define TX_RT_ID      1 /* str "rt_..." */
#define TX_RT_ORG     2 /* str: org id; absent = global */
#define TX_RT_PATTERN 3 /* str: requested model, exact or with '*' */
/* str: routed model, may carry a provider prefix ("anthropic/...") */
#define TX_RT_TARGET 4

/*
 * fallbacks values: the models tried after the primary when it fails.
 * Weights (for TX_STRATEGY_WEIGHTED) are '\n'-separated decimals for the
 * primary then each chain entry; absent: all 1.
 */
#define TX_FB_MODEL   1 /* str: the primary model */
#define TX_FB_CHAIN   2 /* str: '\n'-separated models, in order */
#define TX_FB_WEIGHTS 3 /* str */

#define TX_FB_MAX 8 /* models in a chain, the primary included */

/* agents values: an agent asking for model "normal", "heavy" or "max" */
#define TX_AG_ID     1 /* str */
#define TX_AG_NAME   2 /* str */
#define TX_AG_ROLE   3 /* str */
#define TX_AG_NORMAL 4 /* str: model */
#define TX_AG_HEAVY  5 /* str */
#define TX_AG_MAX    6 /* str */


/*
 * A key record decoded zero-copy from a snapshot value: the strings borrow
 * the value's bytes and are valid only while the read transaction lives.
 */
typedef struct {
    tx_str_t   id;
    tx_str_t   name;
    tx_str_t   project;
    tx_str_t   user;
    tx_str_t   org;
    tx_str_t   models;
    tx_str_t   metadata;
    uint64_t   access;
    uint64_t   status;
    int64_t    expires_at;
    uint64_t   rpm;
    uint64_t   tpm;
    tx_money_t daily_cap;
    tx_money_t monthly_budget;
    uint64_t   soft_pct;
} tx_key_rec_t;


typedef struct {
    tx_str_t key_id;
    int64_t  not_after;
} tx_khash_rec_t;


typedef struct {
    tx_str_t name;
    tx_str_t base_url;
    tx_str_t api_key; /* legacy plaintext, schema 1 */
    tx_str_t sealed;  /* TX_PRV_SEALED */
    uint64_t kind;
} tx_provider_rec_t;


/*
 * Decoders.  Missing fields are zero / empty.  Return TX_OK, or TX_ERROR for
 * a corrupt record.
 */
int tx_key_rec_decode(const void *val, size_t len, tx_key_rec_t *k);
int tx_khash_rec_decode(const void *val, size_t len, tx_khash_rec_t *kh);
int tx_provider_rec_decode(const void *val, size_t len, tx_provider_rec_t *p);

/*
 * Returns 1 when `model` matches one of the '\n'-separated glob patterns
 * (`*` matches any run of bytes, the only wildcard; an empty list matches
 * nothing, "*" matches everything), else 0.
 */
int tx_glob_list_match(const tx_str_t *patterns, const uint8_t *model,
                       size_t len);

/* Returns 1 when `s` matches the glob `pat` (`*` wildcard only). */
int tx_glob_match(const uint8_t *pat, size_t plen, const uint8_t *s,
                  size_t slen);


#endif /* TX_SNAPSHOT_H */

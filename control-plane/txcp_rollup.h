/*
 * torrix-cp rollups and spend: aggregates maintained at ingest, in the same
 * store transaction as the runs they count, never by scanning runs.
 *
 * rollups (store db "rollups"):
 *
 *   key    dim (1 byte, TXCP_DIM_*) | id length (1) | id (<= 200 bytes)
 *          | bucket kind (1: 'h' hour, 'd' day) | bucket start (8, unix
 *          seconds, big endian)
 *   value  TXCP_RV_N int64 little endian: TXCP_RV_* below
 *
 *   All buckets of one (dim, id) are adjacent and time-ordered, so a range
 *   of one id is one cursor seek; a breakdown over every id of a dim is a
 *   seek per id.  Buckets are UTC hours and days of the run's start time.
 *
 * spend (store db "spend", mirrored to the snapshot's "spend"):
 *
 *   key    tx_spend_key(scope, window kind, window index, id) (tx_snapshot.h)
 *   value  int64 LE money: the cost of every ingested run that started in
 *          that window, for scopes instance / org / project / user (the
 *          key's owner) / key and windows day / week / month (tx_window.h)
 *
 *   Only the current and the previous window of each kind are kept: older
 *   ones are pruned at start and when the day changes, and a late run of an
 *   older window is not added.
 *
 * Ingest accumulates the deltas of a batch in memory (txcp_acc_t, one entry
 * per distinct key), adds them to the store before its commit, and after
 * the commit remembers the spend keys it changed; at the end of the pass
 * they are published in one snapshot txn with meta "ingest_watermark"
 * (txcp_spend_publish).
 */

#ifndef TXCP_ROLLUP_H
#define TXCP_ROLLUP_H


#include "txcp.h"
#include "txcp_run.h"


#define TXCP_DIM_KEY      'k'
#define TXCP_DIM_PROJECT  'p'
#define TXCP_DIM_USER     'u'
#define TXCP_DIM_ORG      'o'
#define TXCP_DIM_MODEL    'm'
#define TXCP_DIM_PROVIDER 'v'
#define TXCP_DIM_TAG      't'
#define TXCP_DIM_INSTANCE 'i'

#define TXCP_BUCKET_HOUR 'h'
#define TXCP_BUCKET_DAY  'd'

#define TXCP_ROLLUP_ID_MAX 200

#define TXCP_RV_REQUESTS    0
#define TXCP_RV_ERRORS      1
#define TXCP_RV_TOKENS_IN   2
#define TXCP_RV_TOKENS_OUT  3
#define TXCP_RV_CACHE_READ  4
#define TXCP_RV_CACHE_WRITE 5
#define TXCP_RV_REASONING   6
#define TXCP_RV_COST        7
#define TXCP_RV_LATENCY_US  8
#define TXCP_RV_N           9

#define TXCP_ACC_KEY_MAX 224


/*
 * One accumulated key: its TXCP_RV_N deltas and its bytes, the deltas and
 * the head of the key (keys are short) in the entry's first two cache lines.
 */
typedef struct {
    uint32_t hash;
    uint16_t klen;
    uint8_t  used;
    int64_t  v[TXCP_RV_N];
    uint8_t  key[TXCP_ACC_KEY_MAX];
} txcp_acc_ent_t;


/* An open-addressing table of txcp_acc_ent_t; zero-initialized is empty. */
typedef struct {
    txcp_acc_ent_t *ents;
    size_t          cap;
    size_t          n;
} txcp_acc_t;


/*
 * Adds v[0..nv-1] to the entry of key (created at zero).  Returns TX_OK or
 * TX_ERROR (allocation).
 */
int txcp_acc_add(txcp_acc_t *acc, const uint8_t *key, size_t klen,
                 const int64_t *v, size_t nv);

/* Empties the table (keeps its memory). */
void txcp_acc_reset(txcp_acc_t *acc);

/* Frees the table. */
void txcp_acc_free(txcp_acc_t *acc);

/*
 * Adds every entry to db (values of nv int64 LE, read-add-write) inside
 * txn.  Returns 0 or an LMDB rc.
 */
int txcp_acc_flush(MDB_txn *txn, int db, const txcp_acc_t *acc, size_t nv);

/*
 * Builds a rollup key into out (TXCP_ACC_KEY_MAX bytes); returns its
 * length.  id is cut at TXCP_ROLLUP_ID_MAX bytes.
 */
size_t txcp_rollup_key(uint8_t *out, int dim, const uint8_t *id, size_t idlen,
                       int bucket, int64_t start);

/*
 * The rollup and spend deltas of ingested runs reach their accumulators
 * through a pending sum: runs in a row with the same dimensions (key,
 * project, user, org, provider, model, tags; tags the merged '\n'-separated
 * list), the same hour and the same `now` (unix seconds) are summed here and
 * added as one run, so a burst from one key costs two dozen hash updates per
 * change of shape instead of per run.  Rollups get every dimension's hour
 * and day bucket; spend gets the scopes' windows not older than the
 * previous one at `now`, when the cost is not 0 (value slot 0).
 * Zero-initialized is empty.
 */
#define TXCP_PEND_MAX 2048

typedef struct {
    txcp_run_t run; /* the dimensions (bytes in buf) and the hour's start */
    int64_t    v[TXCP_RV_N];
    int64_t    now;
    int        used;
    uint8_t    buf[TXCP_PEND_MAX];
} txcp_pend_t;

/*
 * Adds one run: to the pending sum when it has its shape, else the
 * pending sum goes to the accumulators first (txcp_pend_flush) and the run
 * starts a new one (or, its dimensions too long to keep, goes straight to
 * them).  TX_OK or TX_ERROR (allocation).
 */
int txcp_pend_add(txcp_pend_t *p, txcp_acc_t *rollup, txcp_acc_t *spend,
                  const txcp_run_t *run, int64_t now);

/* Adds the pending sum to the accumulators and empties it.  TX_OK or
 * TX_ERROR. */
int txcp_pend_flush(txcp_pend_t *p, txcp_acc_t *rollup, txcp_acc_t *spend);

/*
 * Publishes the store's current value of every key of `changed` to the
 * snapshot "spend" db, plus meta "ingest_watermark" = watermark_us when it
 * is >= 0, in one snapshot txn (gen bumped).  TX_OK, or TX_ERROR (sets
 * txcp.resync_needed).
 */
int txcp_spend_publish(const txcp_acc_t *changed, int64_t watermark_us);

/*
 * Deletes spend windows older than the previous one (at `now`) from the
 * store and from the snapshot.  TX_OK or TX_ERROR.
 */
int txcp_spend_prune(int64_t now);

/*
 * Makes the snapshot "spend" db equal to the store's, inside the caller's
 * snapshot write txn (rtxn: a store read txn).  Returns an LMDB rc.
 */
int txcp_spend_resync(MDB_txn *rtxn, MDB_txn *txn);

/*
 * Sums the buckets of (dim, id) over [since, until) (unix seconds, whole
 * hours: since rounded down, until up) into v[TXCP_RV_N]: day buckets for
 * whole days, hour buckets at the edges.  Returns 0 or an LMDB rc.
 */
int txcp_rollup_sum(MDB_cursor *cur, int dim, const uint8_t *id, size_t idlen,
                    int64_t since, int64_t until, int64_t *v);

/*
 * Daily cost of (dim, id) for the n days ending with the day of `today`
 * (unix seconds) into series[0..n-1], oldest first.  0 or an LMDB rc.
 */
int txcp_rollup_series(MDB_cursor *cur, int dim, const uint8_t *id,
                       size_t idlen, int64_t today, int n, int64_t *series);


#endif /* TXCP_ROLLUP_H */

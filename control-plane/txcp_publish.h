/*
 * torrix-cp snapshot publisher: keeps $DATA/snapshot (tx_snapshot.h) equal
 * to the data-plane view of the store.
 *
 * After every committed store write the changed records are republished in
 * one snapshot write txn (O(log n) per record; "gen" bumped).  At start a
 * full resync rewrites what differs and deletes what the store no longer
 * has, which repairs a crash between a store commit and its publish.
 */

#ifndef TXCP_PUBLISH_H
#define TXCP_PUBLISH_H


#include "txcp.h"


#define TXCP_PUB_KEY      1
#define TXCP_PUB_ORG      2
#define TXCP_PUB_USER     3
#define TXCP_PUB_PROJECT  4
#define TXCP_PUB_PROVIDER 5
#define TXCP_PUB_SETTINGS 6
#define TXCP_PUB_PRICE    7  /* id = model name */
#define TXCP_PUB_ROUTE    8  /* id = rule id */
#define TXCP_PUB_FALLBACK 9  /* id = primary model */
#define TXCP_PUB_AGENT    10 /* id = agent id */


/* settings published beyond tx_snapshot.h's TX_SET_*: u64 LE, absent = 0 */
#define TXCP_SET_DEFAULT_MAX_TOKENS "default_max_tokens"


/* One changed record: kind + store id, plus khash entries to delete. */
typedef struct {
    int     kind;
    char    id[128];
    int     ndrop;
    uint8_t drop[2][TX_KEY_HASH_LEN];
} txcp_pub_t;


/*
 * Opens (creating) $DATA/snapshot with the configured mapsize and
 * maxreaders, its named databases, and writes meta schema and hash_key.
 * TX_OK or TX_ERROR (logged).
 */
int txcp_snapshot_open(void);

/* Closes the snapshot env. */
void txcp_snapshot_close(void);

/*
 * Republishes n changed records read from the committed store, in one
 * snapshot txn.  A record missing from the store is deleted from the
 * snapshot.  On failure sets txcp.resync_needed (the loop retries with a
 * full resync) and returns TX_ERROR.
 */
int txcp_publish(const txcp_pub_t *items, size_t n);

/* Convenience: publish one record (no khash drops). */
int txcp_publish_one(int kind, const char *id);

/* Full resync in one txn; clears txcp.resync_needed on success. */
int txcp_publish_resync(void);

/*
 * Puts key -> val into snapshot db sdb (TXCP_SDB_*) in the write txn, unless
 * it already holds exactly that (no page is dirtied).  key and val are
 * copied by LMDB.  Returns an LMDB rc, 0 on success.
 */
int txcp_snap_put(MDB_txn *txn, int sdb, const void *key, size_t klen,
                  const void *val, size_t vlen);

/* Deletes key from snapshot db sdb; absent is fine.  Returns an LMDB rc. */
int txcp_snap_del(MDB_txn *txn, int sdb, const void *key, size_t klen);

/*
 * Begins a publish: *rtxn, a read txn of the store, and *txn, a write txn of
 * the snapshot (end it with txcp_publish_commit() or mdb_txn_abort(), and
 * *rtxn with mdb_txn_abort()).  Returns an LMDB rc; on failure both are
 * NULL (nothing is left open).
 */
int txcp_publish_begin(MDB_txn **rtxn, MDB_txn **txn);

/*
 * Ends the caller's snapshot write txn: bumps meta "gen" (past any gen
 * another writer stored), sets "published_at" and commits.  txn is always
 * ended (aborted when the meta write fails).  Returns an LMDB rc, 0 on
 * success; the caller logs a failure.
 */
int txcp_publish_commit(MDB_txn *txn);

/* Clears stale reader slots of crashed nginx workers. */
void txcp_snapshot_reader_check(void);


#endif /* TXCP_PUBLISH_H */

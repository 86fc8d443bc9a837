/*
 * torrix-cp store: the LMDB environment $DATA/store/ that is the source of
 * truth.  Named databases (ids are NUL-free strings, records JSON text
 * unless noted):
 *
 *   meta          "schema" -> uint64 LE; "hash_key" -> 32 bytes
 *   orgs users projects keys providers
 *                 id (or provider name) -> JSON record; fields whose name
 *                 starts with '_' are internal (secret hashes, ...) and
 *                 never leave the daemon
 *   admins        32-byte keyed hash of an admin secret -> JSON
 *   audit         8-byte big-endian seq -> JSON audit record
 *   runs          16-byte run id -> TLV run record (tx_spool.h, enriched
 *                 at ingest: txcp_run.h)
 *   spool_cursor  spool file name -> uint64 LE offset of the next frame
 *   settings      "settings" -> JSON object
 *   slugs         project slug -> project id (unique index)
 *   timers        8-byte BE unix seconds | 1 byte kind | key id -> ""
 *                 (expiry and rotation-grace deadlines, swept in order)
 *   prices        model name -> JSON price layers (txcp_pricing.h)
 *   spend         tx_spend_key -> int64 LE money (txcp_rollup.h)
 *   rollups       dim | id | bucket -> TXCP_RV_N int64 LE (txcp_rollup.h)
 *   runs_idx      dim | id | run id -> "" (txcp_run.h)
 *   webhooks      webhook id -> JSON record (the signing secret sealed as
 *                 "secret_sealed", txcp_vault.h; never leaves)
 *   alerts        8-byte BE alert seq -> JSON alert with its deliveries
 *                 (txcp_alert.h)
 *   alert_marks   tx_spend_key | level byte -> 8-byte BE alert seq: one
 *                 alert per scope, window and level, ever
 *   outbox        8-byte BE alert seq | webhook id -> int64 LE unix ms of
 *                 the next attempt: pending deliveries only
 *
 * Schema 2 added prices, spend, rollups and runs_idx (the migration indexes
 * the runs already stored; rollups are only built at ingest).  Schema 3
 * added webhooks, alerts, alert_marks and outbox (empty at migration).
 * Schema 4 sealed provider credentials, schema 5 webhook secrets (the
 * migration seals plaintext values and compacts the store file).
 */

#ifndef TXCP_STORE_H
#define TXCP_STORE_H


#include "txcp.h"


#define TXCP_TIMER_EXPIRE 'e' /* key expires_at reached */
#define TXCP_TIMER_GRACE  'g' /* rotated-out secret's not_after reached */


/*
 * Opens (creating when `create`) $DATA/store and its databases into
 * txcp.store/txcp.db, runs txcp_store_migrate() when the schema is older and
 * refuses (TX_ERROR) a newer schema.  When `create`, also makes the hash key
 * and, on first start, the admin key (written to $DATA/admin.key and
 * printed once on stdout).
 */
int txcp_store_open(int create);

/* Closes the store env (no txn may be open). */
void txcp_store_close(void);

/*
 * Upgrades the store from schema `from` to `to` inside `txn` (the caller
 * commits).  Returns TX_OK or TX_ERROR (the caller refuses to start).
 */
int txcp_store_migrate(MDB_txn *txn, uint64_t from, uint64_t to);

/* Begins a store txn (read-only when rdonly); logs and returns rc. */
int txcp_store_begin(int rdonly, MDB_txn **txn);

/* Commits; logs and returns rc (the txn is gone either way). */
int txcp_store_commit(MDB_txn *txn);

/*
 * Reads and parses the JSON record `id` of `db`.  Returns a new tree the
 * caller owns (cJSON_Delete), or NULL when absent or unparsable (logged).
 */
cJSON *txcp_store_get(MDB_txn *txn, int db, const char *id);

/* Writes rec (printed unformatted) under id; TX_OK or TX_ERROR (logged). */
int txcp_store_put(MDB_txn *txn, int db, const char *id, const cJSON *rec);

/* Deletes id from db: TX_OK, TX_DECLINED when absent, TX_ERROR. */
int txcp_store_del(MDB_txn *txn, int db, const char *id);

/* Returns 1 when id exists in db, else 0. */
int txcp_store_exists(MDB_txn *txn, int db, const char *id);

/*
 * Returns 1 when some record of db has string field `field` equal to id
 * (a reference that blocks a delete), else 0.  Records with status
 * "revoked" do not count.  A full scan of db.
 */
int txcp_store_ref_used(MDB_txn *txn, int db, const char *field,
                        const char *id);

/* Adds / removes a timer entry (see the header comment). */
int txcp_store_timer_add(MDB_txn *txn, int64_t at, int kind,
                         const char *key_id);
int txcp_store_timer_del(MDB_txn *txn, int64_t at, int kind,
                         const char *key_id);

/*
 * The pid of a process that has the store env open, 0 when none, -1 when
 * unknown (offline commands refuse to write under a running daemon).
 */
long txcp_store_user(void);

/* The database name of a TXCP_DB_* index. */
const char *txcp_store_db_name(int db);


#endif /* TXCP_STORE_H */

/*
 * torrix-cp audit log: append-only, hash-chained records in the store's
 * "audit" database (8-byte big-endian seq -> JSON).
 *
 * A record is {"seq","time","actor","action","target_type","target_id",
 * "diff","prev_hash","hash"} in that order.  hash = SHA-256 over the 32
 * bytes of prev_hash (zeros for seq 1) followed by the canonical JSON of the
 * record without "hash" (cJSON unformatted print of the parsed record, keys
 * in the order above).  Diffs never hold secrets.
 */

#ifndef TXCP_AUDIT_H
#define TXCP_AUDIT_H


#include "txcp.h"


/*
 * Appends one record inside txn (the caller's write txn, so the change and
 * its audit record commit together).  diff may be NULL ({}); it is copied,
 * the caller keeps ownership.  Returns TX_OK or TX_ERROR (logged).
 */
int txcp_audit_append(MDB_txn *txn, const char *actor, const char *action,
                      const char *target_type, const char *target_id,
                      const cJSON *diff);

/*
 * Adds field: [old, new] to diff, taking ownership of old and new (NULL
 * stands for JSON null).
 */
void txcp_audit_diff(cJSON *diff, const char *field, cJSON *old, cJSON *nw);

/*
 * Walks the chain from seq 1 and recomputes every hash.  Returns TX_OK with
 * *records set when intact; TX_DECLINED with *broken_at and reason when
 * not; TX_ERROR on an LMDB error.
 */
int txcp_audit_verify(MDB_txn *txn, uint64_t *records, uint64_t *broken_at,
                      char *reason, size_t len);

/*
 * Test aid (torrix-cp audit tamper): changes one byte of record seq in a
 * way that keeps it valid JSON.  Returns TX_OK, TX_DECLINED (no such
 * record) or TX_ERROR.
 */
int txcp_audit_tamper(MDB_txn *txn, uint64_t seq);


#endif /* TXCP_AUDIT_H */

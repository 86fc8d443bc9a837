/*
 * torrix-cp run index rows: posting lists of run ids in one store db
 * ("runs_ix"; the index keys are txcp_run.h's, one per key, project, user
 * and one for every error run).
 *
 * A row holds up to TXCP_RUNIDX_ROW run ids of one index key, ascending,
 * and is keyed by the index key and its last (newest) run id:
 *
 *   index key | last run id (16)  ->  run ids (16 bytes each)
 *
 * so the rows of one index key are consecutive and in time order.  New run
 * ids go onto the key's last row (put again under its new last id) and then
 * into new rows: a batch of runs costs a put per TXCP_RUNIDX_ROW of its
 * runs per index key instead of one per run and key.  An id at or before
 * the key's newest (a run logged after a later one, another worker's file,
 * a replay) goes into the row that covers it, which splits in two when
 * full.  Retention takes the oldest ids off the oldest rows.
 *
 * Every function takes the db handle, so they work on any LMDB env (the
 * unit test's too).  The LMDB rc is returned: 0, or MDB_NOTFOUND at the end
 * of an iteration.
 */

#ifndef TXCP_RUNIDX_H
#define TXCP_RUNIDX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <lmdb.h>


#define TXCP_RUNIDX_ROW        64        /* run ids per row, at most */
#define TXCP_RUNIDX_PREFIX_MAX (2 + 255) /* an index key */
#define TXCP_RUNIDX_KEY_MAX    (TXCP_RUNIDX_PREFIX_MAX + 16)


/*
 * Adds n run ids (16 bytes each, ascending) under the index key prefix of
 * plen bytes; an id already there is skipped.
 */
int txcp_runidx_add(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix,
                    size_t plen, const uint8_t *ids, size_t n);

/* Removes run id from under prefix; one that is not there is no error. */
int txcp_runidx_del(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix,
                    size_t plen, const uint8_t *id);


/* The run ids of one index key, in order from a bound. */
typedef struct {
    MDB_cursor    *cur;
    uint8_t        prefix[TXCP_RUNIDX_PREFIX_MAX];
    size_t         plen;
    const uint8_t *ids; /* the current row's, in the txn's pages */
    ssize_t        n;
    ssize_t        pos; /* the next one to return */
    int            asc;
    int            done;
} txcp_runidx_it_t;

/*
 * Positions it on the run ids under prefix: newest first from the last one
 * before bound (asc = 0), or oldest first from bound (asc = 1; after = 1
 * skips bound itself).  Close it when done, also after an error.
 */
int txcp_runidx_open(txcp_runidx_it_t *it, MDB_txn *txn, MDB_dbi dbi,
                     const uint8_t *prefix, size_t plen, const uint8_t *bound,
                     int asc, int after);

/* The next run id (16 bytes, valid for the txn), or MDB_NOTFOUND. */
int  txcp_runidx_next(txcp_runidx_it_t *it, const uint8_t **id);
void txcp_runidx_close(txcp_runidx_it_t *it);


/*
 * The rows a write txn has still to add, by index key: queued while runs
 * are inserted, sorted and added at flush.  Zeroed to start; reset when
 * the txn is aborted; free at the end.
 */
typedef struct {
    uint32_t off; /* of the index key, in keys */
    uint32_t plen;
    uint32_t hash;
    uint8_t *ids;
    size_t   n;
    size_t   cap;
} txcp_runidx_grp_t;

typedef struct {
    uint8_t           *keys;
    size_t             klen;
    size_t             kcap;
    txcp_runidx_grp_t *grp;
    size_t             ngrp;
    size_t             gcap;
    uint32_t          *slot; /* group index + 1, 0 = free */
    size_t             nslot;
    size_t             queued;
} txcp_runidx_buf_t;

/* Queues run id under prefix: 0 or ENOMEM. */
int txcp_runidx_queue(txcp_runidx_buf_t *b, const uint8_t *prefix, size_t plen,
                      const uint8_t *id);

/* Adds every queued id (each key's in run id order); b is empty after. */
int  txcp_runidx_flush(txcp_runidx_buf_t *b, MDB_txn *txn, MDB_dbi dbi);
void txcp_runidx_reset(txcp_runidx_buf_t *b);
void txcp_runidx_free(txcp_runidx_buf_t *b);


#endif /* TXCP_RUNIDX_H */

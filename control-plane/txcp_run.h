/*
 * torrix-cp run records: a decoded view of one TLV run record (tx_spool.h
 * TX_RUN_*), as stored in the store's "runs" database.
 *
 * Stored form: the record the module spooled, in its form (the compact one
 * since 2026-11; a store may hold fixed-form runs of earlier versions, and
 * the readers take both: integers through tx_rec_uint/tx_rec_int), except
 * that at ingest
 * TX_RUN_TAGS becomes the merged '\n'-separated "k=v" list (request tags
 * first, then the key's metadata; at most TXCP_RUN_TAGS_MAX), bodies are
 * PII-masked when masking applies, and Ollama runs carry cost 0.  Every
 * other field is kept as spooled, in order: the repeated TX_RUN_ATTEMPT
 * fields (upstream attempts) are stored as the module wrote them and only
 * decoded by the runs API.
 */

#ifndef TXCP_RUN_H
#define TXCP_RUN_H


#include "tx_spool.h"

#include "txcp.h"
#include "txcp_runidx.h"


#define TXCP_RUN_TAGS_MAX 32


/* Borrowed strings: valid while the record's bytes are. */
typedef struct {
    const uint8_t *id; /* 16 bytes, NULL when absent */
    int64_t        start_us;
    tx_str_t       key;
    tx_str_t       project;
    tx_str_t       org;
    tx_str_t       user;
    tx_str_t       model_req;
    tx_str_t       model;
    tx_str_t       provider;
    tx_str_t       name;
    tx_str_t       end_user;
    tx_str_t       tags;
    tx_str_t       error_type;
    tx_str_t       error;
    tx_str_t       req_body;
    tx_str_t       resp_body;
    tx_str_t       limit; /* TX_RUN_LIMIT, the first; data NULL: absent */
    uint64_t       endpoint;
    uint64_t       status;
    uint64_t       latency_us;
    uint64_t       tokens_in;
    uint64_t       tokens_out;
    uint64_t       cache_read;
    uint64_t       cache_write;
    uint64_t       reasoning;
    uint64_t       flags;
    tx_money_t     cost;
} txcp_run_t;


/*
 * Decodes a record into *run (missing fields zero / empty).  TX_OK, or
 * TX_ERROR when the record is corrupt.
 */
int txcp_run_decode(const void *rec, size_t len, txcp_run_t *run);

/*
 * 1 when the run counts as an error: the error or rejected flag, or an
 * HTTP status >= 400 on a run that was not cancelled by its client.
 */
int txcp_run_is_error(const txcp_run_t *run);

/* The served model, else the requested one. */
const tx_str_t *txcp_run_model(const txcp_run_t *run);

/*
 * runs_ix (store db): secondary indexes of runs, as rows of up to 64 run ids
 * (txcp_runidx.h) under an index key:
 *
 *   dim (1: TXCP_IDX_*) | id length (1) | id
 *
 * so the runs of one key, project or user (and every error run) are one
 * range of rows, in run id (time) order.  (Up to schema 5 a row per run and
 * index key, the run id at the end of the key, in "runs_idx": each a search
 * from the root, pages split in halves; the step to schema 6 rebuilds the
 * index.)
 */
#define TXCP_IDX_KEY     'k'
#define TXCP_IDX_PROJECT 'p'
#define TXCP_IDX_USER    'u'
#define TXCP_IDX_ERROR   'x' /* id empty */
#define TXCP_IDX_DIMS    4

#define TXCP_IDX_KEY_MAX TXCP_RUNIDX_PREFIX_MAX

/* Builds an index key into out (TXCP_IDX_KEY_MAX bytes); its length. */
size_t txcp_runs_idx_key(uint8_t *out, int dim, const uint8_t *id,
                         size_t idlen);

/*
 * Many inserts in one write txn: the runs and their index rows are queued
 * and written at txcp_runs_cur_flush() (before the commit), each in run id
 * order.  Runs come in log order, which is time order only up to the
 * random part of the ids within a millisecond and the requests in flight:
 * put as they come, most would miss MDB_APPEND and be searched for and
 * put mid-page, splitting pages in halves; sorted, they are appended and
 * fill pages whole (fewer pages for the commit to write).  A duplicate is
 * still found at once: a run not past the store's last (as the txn began:
 * another worker's file, a replay) is put in its place right away, and the
 * queue knows its own ids.
 * Zero it once; txcp_runs_cur_begin() when a txn begins (its cursor is
 * LMDB's to close with the txn); txcp_runs_cur_free() at the end.
 */
typedef struct {
    uint64_t hi; /* the id, as two numbers (byte order is numeric order) */
    uint64_t lo;
    const uint8_t *rec; /* the record, or NULL: in the arena at off */
    size_t         off;
    size_t         len;
} txcp_runs_q_t;

typedef struct {
    MDB_cursor       *runs;
    txcp_runidx_buf_t idx;
    txcp_runs_q_t    *q;
    size_t            nq;
    size_t            qcap;
    uint8_t          *arena;
    size_t            alen;
    size_t            acap;
    uint32_t         *seen; /* the queue's ids: index + 1, 0 = free */
    size_t            nseen;
    uint8_t           last[16]; /* the store's last run id */
    int               last_known;
} txcp_runs_cur_t;

#define TXCP_RUNS_ARENA_MAX (16 << 20) /* queued records before a write */
#define TXCP_RUNS_QUEUE_MAX 65536 /* index rows queued before they are added */

void txcp_runs_cur_begin(txcp_runs_cur_t *cur);
int  txcp_runs_cur_flush(MDB_txn *txn, txcp_runs_cur_t *cur);
void txcp_runs_cur_free(txcp_runs_cur_t *cur);

/*
 * Inserts a run (its record rec of len bytes under run->id) and its index
 * rows, queued in cur until txcp_runs_cur_flush(): rec is copied unless
 * stable (it stays where it is until the flush: the spool file's
 * mapping).  0, MDB_KEYEXIST for a run id already stored or queued
 * (nothing written), or an LMDB rc.
 */
int txcp_runs_put(MDB_txn *txn, txcp_runs_cur_t *cur, const txcp_run_t *run,
                  const void *rec, size_t len, int stable);

/*
 * Adds (del = 0: queued in cur, written at txcp_runs_cur_flush()) or
 * removes (del = 1: at once, cur unused, may be NULL) every index row of a
 * run inside txn.  Returns 0 or an LMDB rc (a row already
 * there on add, or missing on delete, is not an error).
 */
int txcp_runs_index(MDB_txn *txn, txcp_runs_cur_t *cur, const txcp_run_t *run,
                    int del);

/*
 * Finds tag `name` in a '\n'-separated "k=v" list; TX_OK with *val set, or
 * TX_DECLINED.
 */
int txcp_tags_get(const tx_str_t *tags, const char *name, tx_str_t *val);


#endif /* TXCP_RUN_H */

/*
 * torrix-cp spool ingest: moves run records from the spool files (written
 * by nginx workers, tx_spool.h) into the store's "runs" database.
 *
 * Per file, in one store write txn: the runs (MDB_NOOVERWRITE on the run
 * id, so a replay is skipped and counted) and spool_cursor[file] = offset of
 * the next frame.  A crash before the commit re-reads from the old cursor;
 * after it the cursor is past the frames: nothing is lost or repeated.  A
 * file is finished when sealed, or when its writer is gone (we get its
 * flock) and no further frame is readable; it is unlinked after the commit
 * that covers its end and its cursor deleted in a following txn.
 */

#ifndef TXCP_INGEST_H
#define TXCP_INGEST_H


#include "txcp.h"


/*
 * Creates $DATA/spool (mode 0750) and drops cursors whose file is gone (a
 * crash between unlink and cursor delete).  TX_OK or TX_ERROR.
 */
int txcp_ingest_init(void);

/*
 * One ingest pass over the spool directory, bounded to about `budget_ms`
 * of work; counters in txcp.ingest.  At its end the spend it changed is
 * published, with meta "ingest_watermark" = the pass' start time when it
 * read every spool file to its end.  Returns 1 when it stopped at the
 * budget with work left (the loop runs the next pass at once), else 0.
 */
int txcp_ingest_run(long budget_ms);

/* Frees the ingest state (caches, accumulators, PII detector). */
void txcp_ingest_free(void);


#endif /* TXCP_INGEST_H */

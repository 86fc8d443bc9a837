/*
 * torrix-cp retention: raw runs older than the setting retention_days
 * (default 30, 0 = keep forever) are deleted in the background, with their
 * runs_idx rows, a bounded batch per loop tick.  Rollups and spend are not
 * touched: totals outlive the runs they were built from.
 */

#ifndef TXCP_RETENTION_H
#define TXCP_RETENTION_H


#include "txcp.h"


#define TXCP_RETENTION_BATCH     2000 /* runs per tick at most */
#define TXCP_RETENTION_BUDGET_US 20000

/*
 * One step at `now` (unix seconds): deletes up to TXCP_RETENTION_BATCH of
 * the oldest runs that are past the retention age, in one store txn.
 * Returns the number deleted (0 when nothing is due), -1 on error.
 */
long txcp_retention_step(int64_t now);


#endif /* TXCP_RETENTION_H */

/*
 * torrix-cp budget alerts: detected at ingest, in the store transaction
 * that adds the spend, so an alert, its dedup mark and its pending webhook
 * deliveries commit (or vanish) together with the runs that caused it.
 *
 * Thresholds per scope and window (the caps the nginx module enforces):
 *
 *   instance  day    hard: settings instance_daily_cap_usd
 *                    soft: settings instance_soft_alert_usd (absolute)
 *   org       month  hard: spend_cap_usd, plus last month's unused part
 *                    when rollover is on (as the module computes it)
 *   project   day    daily_cap_usd;   month: monthly_cap_usd
 *   user      week   weekly_cap_usd
 *   key       day    daily_cap_usd;   month: monthly_budget_usd
 *
 * Soft thresholds of org, project, user and key are soft_alert_pct (1..100,
 * default 80) percent of the hard one; 100 means no soft alert.  A level
 * fires when the window's spend after a batch is >= its threshold and the
 * mark (tx_spend_key | level) is not yet in "alert_marks": exactly one
 * alert per (scope, id, window kind, window index, level), ever.  A cap
 * lowered below the spend fires at the next ingested run of that scope.
 *
 * An alert record (store "alerts", 8-byte BE seq -> JSON):
 *
 *   {"id":"alr_...","time":"RFC3339","scope":"key","scope_id":"key_...",
 *    "period":"daily"|"weekly"|"monthly","window_start":"RFC3339",
 *    "level":"soft"|"hard","spent":"<money>","threshold":"<money>",
 *    "created_us":N,"deliveries":[{"webhook_id","status","attempts",
 *    "last_error","last_status"}]}
 *
 * with money in store form (decimal string of 1e-8 USD).  Every enabled
 * webhook whose events include the alert's event gets a delivery entry and
 * an "outbox" row (txcp_webhook.h delivers them).
 */

#ifndef TXCP_ALERT_H
#define TXCP_ALERT_H


#include "txcp.h"
#include "txcp_rollup.h"


#define TXCP_ALERT_SOFT 's'
#define TXCP_ALERT_HARD 'h'


/*
 * Checks every spend key of acc (the batch's deltas, already added to the
 * store's "spend" db in txn) against its thresholds and records the alerts
 * that fire, with their deliveries, in txn.  now_us stamps them.  *created
 * is incremented per alert.  Returns 0 or an LMDB rc (abort the txn).
 */
int txcp_alert_check(MDB_txn *txn, const txcp_acc_t *acc, int64_t now_us,
                     int *created);

/*
 * Deletes the marks of windows older than the previous one at `now` (unix
 * seconds), like the spend windows they refer to.  TX_OK or TX_ERROR.
 */
/*
 * The hard alert of a budget that refused a request (the run's TX_RUN_LIMIT
 * spend key): the gateway reserves each request's worst case, so spend
 * itself rarely reaches a cap; the first refusal is when it is exceeded.
 * Fires at most once per scope, window and level, like txcp_alert_check.
 */
int txcp_alert_refused(MDB_txn *txn, const uint8_t *skey, size_t sklen,
                       int64_t now_us, int *created);

int txcp_alert_prune(int64_t now);

/* "key", "user", "project", "org", "instance" of a TX_SCOPE_*. */
const char *txcp_alert_scope_name(int scope);

/* "daily", "weekly", "monthly" of a TX_WIN_*. */
const char *txcp_alert_period_name(int kind);


#endif /* TXCP_ALERT_H */

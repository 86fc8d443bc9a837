/*
 * torrix-cp webhook delivery: the store's "outbox" rows (one per pending
 * (alert, webhook) pair, written with the alert, txcp_alert.h) are POSTed
 * with libcurl's multi interface driven by the event loop, never blocking
 * it: curl's sockets live in an epoll set whose fd the loop polls beside
 * the HTTP server's, and curl's timer becomes part of the loop's wait.
 *
 * An outbox row holds the unix ms of its next attempt.  A due row not in
 * flight starts a transfer (at most webhook_max_inflight at once); its
 * result is written in one store txn: the alert's delivery entry gets
 * attempts, last_status (HTTP status or null) and last_error, and either
 * status "delivered" (2xx; the row is deleted), "failed" (the alert is
 * older than webhook_give_up_s, or the webhook was deleted or disabled;
 * row deleted) or stays "pending" with the row moved to now + backoff
 * (webhook_backoff_min_ms doubled per attempt, capped at
 * webhook_backoff_max_ms).  Redirects are not followed; any non-2xx is a
 * failed attempt.
 *
 * Delivery is at least once: a crash between a receiver's 2xx and that
 * commit repeats the POST after restart, with the same "alert_id" (and
 * x-torrix-alert-id header) for the receiver to deduplicate on.
 *
 * Body: the JSON event (see README), or a Slack message ({"text",
 * "blocks"}) when the webhook's format is "slack", or "auto" and the URL's
 * host is hooks.slack.com.  With a secret, x-torrix-signature:
 * sha256=<hex HMAC-SHA256(secret, body)>; the secret is stored sealed
 * ("secret_sealed", txcp_vault.h), opened into sodium_malloc memory for
 * each request and wiped once signed (one that does not open fails the
 * attempt: never sent unsigned).  Secrets and URLs are never logged: failures log the webhook id, alert id, HTTP status and curl's
 * error code text.
 */

#ifndef TXCP_WEBHOOK_H
#define TXCP_WEBHOOK_H


#include "txcp.h"


/*
 * Sets up libcurl (curl_global_init, a multi handle) and the epoll set, and
 * schedules a scan of the outbox (deliveries pending before a restart).
 * TX_OK or TX_ERROR.
 */
int txcp_webhook_init(void);

/* Aborts transfers in flight (their rows stay pending) and frees it all. */
void txcp_webhook_free(void);

/* The fd to poll for readability, -1 before init. */
int txcp_webhook_fd(void);

/* Milliseconds until txcp_webhook_run() has work, -1 for none. */
long txcp_webhook_timeout(void);

/*
 * Drives curl (readable: the fd polled readable), records finished
 * transfers and starts due deliveries.  Never blocks.
 */
void txcp_webhook_run(int readable);

/* The outbox changed (new alerts committed): scan it at the next run. */
void txcp_webhook_kick(void);

/*
 * A webhook was edited or deleted: at the next run, the pending deliveries
 * of deleted or disabled webhooks are settled as "failed" at once instead
 * of at their next attempt.
 */
void txcp_webhook_changed(void);

/*
 * Checks a webhook URL: http(s), a host, parseable by libcurl.  *slack is
 * set to 1 when the host is hooks.slack.com.  TX_OK or TX_ERROR.
 */
int txcp_webhook_url_check(const char *url, int *slack);


#endif /* TXCP_WEBHOOK_H */

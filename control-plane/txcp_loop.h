/*
 * torrix-cp event loop: one thread polls the HTTP server's epoll fd and the
 * webhook sender's (curl sockets, txcp_webhook.h), with the nearest of
 * MHD's, curl's and the next due delivery's timeouts (capped at 100 ms),
 * runs MHD and curl, and runs the periodic tasks:
 * spool ingest every ingest_interval_ms, the key expiry sweep (and a
 * snapshot resync after a failed publish) every second, mdb_reader_check on
 * the snapshot every 10 s.  Returns when txcp.stop is set by a signal.
 */

#ifndef TXCP_LOOP_H
#define TXCP_LOOP_H


/* Installs SIGINT/SIGTERM (set txcp.stop) and ignores SIGPIPE. */
void txcp_loop_signals(void);

/* Runs until txcp.stop. */
void txcp_loop_run(void);


#endif /* TXCP_LOOP_H */

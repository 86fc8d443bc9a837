/*
 * torrix-cp event loop (see txcp_loop.h).
 */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_http.h"
#include "txcp_ingest.h"
#include "txcp_loop.h"
#include "txcp_publish.h"
#include "txcp_retention.h"
#include "txcp_rollup.h"
#include "txcp_webhook.h"
#include "txcp_alert.h"
#include "tx_window.h"


#define TXCP_LOOP_MAX_WAIT 100 /* ms */
#define TXCP_SWEEP_EVERY   1000
#define TXCP_READERS_EVERY 10000
#define TXCP_INGEST_BUDGET 50 /* ms of ingest work per pass */


static void
txcp_signal_handler(int signo)
{
    txcp.stop = 1;
}


void
txcp_loop_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = txcp_signal_handler;
    sigemptyset(&sa.sa_mask);

    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}


static int64_t
txcp_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


void
txcp_loop_run(void)
{
    int64_t       now, next_ingest, next_sweep, next_readers, wait;
    uint64_t      ingested;
    uint32_t      day, last_day;
    long          t;
    struct pollfd pfd[2];

    now = txcp_mono_ms();
    next_ingest = now;
    next_sweep = now;
    next_readers = now + TXCP_READERS_EVERY;
    last_day = tx_window_index(TX_WIN_DAY, time(NULL));

    while (!txcp.stop) {
        now = txcp_mono_ms();

        wait = next_ingest < next_sweep ? next_ingest : next_sweep;
        wait = (wait < next_readers ? wait : next_readers) - now;

        if (wait > TXCP_LOOP_MAX_WAIT) {
            wait = TXCP_LOOP_MAX_WAIT;
        }

        t = txcp_http_timeout();

        if (t >= 0 && t < wait) {
            wait = t;
        }

        t = txcp_webhook_timeout();

        if (t >= 0 && t < wait) {
            wait = t;
        }

        if (wait < 0) {
            wait = 0;
        }

        /* a negative fd is ignored by poll */

        pfd[0].fd = txcp_http_fd();
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        pfd[1].fd = txcp_webhook_fd();
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;

        if (poll(pfd, 2, (int) wait) < 0 && errno != EINTR) {
            txcp_log(TXCP_LOG_ERROR, "poll failed", "err=\"%s\"",
                     strerror(errno));
        }

        if (txcp.stop) {
            break;
        }

        txcp_http_run();

        txcp_webhook_run(pfd[1].revents != 0);

        now = txcp_mono_ms();

        if (now >= next_ingest) {
            /* a backlog is drained pass after pass, HTTP served between */

            ingested = txcp.ingest.ingested;

            if (txcp_ingest_run(TXCP_INGEST_BUDGET)) {
                next_ingest = txcp_mono_ms();

            } else if (txcp.ingest.ingested - ingested
                       >= (uint64_t) txcp.conf.ingest_busy_runs)
            {
                /* busy: batch more per durable commit */
                next_ingest =
                    txcp_mono_ms() + txcp.conf.ingest_busy_interval_ms;

            } else {
                next_ingest = txcp_mono_ms() + txcp.conf.ingest_interval_ms;
            }
        }

        if (now >= next_sweep) {
            txcp_keys_sweep((int64_t) time(NULL));

            if (txcp.resync_needed) {
                txcp_publish_resync();
            }

            (void) txcp_retention_step((int64_t) time(NULL));

            day = tx_window_index(TX_WIN_DAY, time(NULL));

            if (day != last_day && txcp_spend_prune(time(NULL)) == TX_OK
                && txcp_alert_prune(time(NULL)) == TX_OK)
            {
                last_day = day;
            }

            next_sweep = now + TXCP_SWEEP_EVERY;
        }

        if (now >= next_readers) {
            txcp_snapshot_reader_check();
            next_readers = now + TXCP_READERS_EVERY;
        }
    }
}

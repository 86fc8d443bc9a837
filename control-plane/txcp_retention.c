/*
 * torrix-cp retention (see txcp_retention.h).
 */

#include <string.h>

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_retention.h"
#include "txcp_run.h"
#include "txcp_store.h"


long
txcp_retention_step(int64_t now)
{
    int             rc;
    long            n;
    int64_t         cutoff_ms, ms, t0;
    const uint8_t  *id;
    txcp_settings_t st;
    txcp_run_t      run;
    MDB_txn        *txn;
    MDB_cursor     *cur;
    MDB_val         k, v;

    if (txcp_store_begin(0, &txn) != 0) {
        return -1;
    }

    txcp_settings_read(txn, &st);

    if (st.retention_days <= 0) {
        mdb_txn_abort(txn);
        return 0;
    }

    cutoff_ms = (now - st.retention_days * 86400) * 1000;

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_RUNS], &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return -1;
    }

    n = 0;
    t0 = txcp_now_us();

    /* run ids start with their 6-byte ms time: the oldest come first */

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST))
    {
        if (n >= TXCP_RETENTION_BATCH
            || (n % 64 == 63 && txcp_now_us() - t0 > TXCP_RETENTION_BUDGET_US))
        {
            break;
        }

        id = k.mv_data;
        ms = k.mv_size == 16
                 ? (int64_t) id[0] << 40 | (int64_t) id[1] << 32
                       | (int64_t) id[2] << 24 | (int64_t) id[3] << 16
                       | (int64_t) id[4] << 8 | id[5]
                 : 0;

        if (ms >= cutoff_ms) {
            break;
        }

        if (txcp_run_decode(v.mv_data, v.mv_size, &run) == TX_OK) {
            rc = txcp_runs_index(txn, NULL, &run, 1);
            if (rc != 0) {
                break;
            }
        }

        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }

        n++;
    }

    mdb_cursor_close(cur);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        txcp_log(TXCP_LOG_ERROR, "retention failed", "err=\"%s\"",
                 mdb_strerror(rc));
        mdb_txn_abort(txn);
        return -1;
    }

    if (n == 0) {
        mdb_txn_abort(txn);
        return 0;
    }

    if (txcp_store_commit(txn) != 0) {
        return -1;
    }

    txcp_log(TXCP_LOG_INFO, "retention: runs deleted", "count=%ld days=%lld", n,
             (long long) st.retention_days);

    return n;
}

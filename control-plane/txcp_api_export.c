/*
 * torrix-cp: GET /api/v1/users/{id}/activity.csv, one user's runs streamed
 * as CSV (oldest first) through MHD_create_response_from_callback: each
 * callback reads the next slice of the user's index in its own short read
 * txn, so neither the file nor a long-lived txn is ever held in memory.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_http.h"
#include "txcp_run.h"
#include "txcp_store.h"


#define TXCP_CSV_RUNS_PER_FILL 256
#define TXCP_CSV_BLOCK         (32 * 1024)

#define TXCP_CSV_HEADER                                                        \
    "time,run_id,model,tokens_in,tokens_out,cost_usd,latency_ms,status,"       \
    "conversation\r\n"


typedef struct {
    char    user[256];
    size_t  ulen;
    uint8_t last[16];
    int     has_last;
    int     done;
    char   *buf;
    size_t  len;
    size_t  off;
    size_t  cap;
} txcp_csv_t;


static int
txcp_csv_reserve(txcp_csv_t *st, size_t more)
{
    char  *p;
    size_t cap;

    if (st->len + more <= st->cap) {
        return TX_OK;
    }

    cap = st->cap ? st->cap : 4096;

    while (cap < st->len + more) {
        cap *= 2;
    }

    p = realloc(st->buf, cap);
    if (p == NULL) {
        return TX_ERROR;
    }

    st->buf = p;
    st->cap = cap;

    return TX_OK;
}


/*
 * Appends one CSV field: quoted when it holds , " CR or LF; NULs dropped; a
 * field a spreadsheet would run as a formula (= + - @ tab CR first) gets a
 * leading ' so it stays text (OWASP CSV injection).
 */
static int
txcp_csv_field(txcp_csv_t *st, const uint8_t *s, size_t n, int last)
{
    size_t i;
    int    quote, formula;

    if (txcp_csv_reserve(st, n * 2 + 5) != TX_OK) {
        return TX_ERROR;
    }

    formula = n > 0
              && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@'
                  || s[0] == '\t' || s[0] == '\r');

    /* a plain negative number is data, not a formula */
    if (formula && s[0] == '-' && n > 1) {
        for (i = 1; i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'); i++)
        {
            /* void */
        }

        formula = (i != n);
    }

    quote = formula;

    for (i = 0; i < n; i++) {
        if (s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n') {
            quote = 1;
            break;
        }
    }

    if (quote) {
        st->buf[st->len++] = '"';
    }

    if (formula) {
        st->buf[st->len++] = '\'';
    }

    for (i = 0; i < n; i++) {
        if (s[i] == '\0') {
            continue;
        }

        if (s[i] == '"') {
            st->buf[st->len++] = '"';
        }

        st->buf[st->len++] = (char) s[i];
    }

    if (quote) {
        st->buf[st->len++] = '"';
    }

    if (last) {
        st->buf[st->len++] = '\r';
        st->buf[st->len++] = '\n';

    } else {
        st->buf[st->len++] = ',';
    }

    return TX_OK;
}


static int
txcp_csv_cstr(txcp_csv_t *st, const char *s)
{
    return txcp_csv_field(st, (const uint8_t *) s, strlen(s), 0);
}


static int
txcp_csv_line(txcp_csv_t *st, const uint8_t *id, const txcp_run_t *run)
{
    char            buf[64], hex[33];
    const tx_str_t *model;
    tx_str_t        none;

    tx_run_id_hex(id, hex);
    model = txcp_run_model(run);

    none.len = 0;
    none.data = NULL;

    if (txcp_csv_cstr(st, txcp_time_format(run->start_us, 3, buf, sizeof(buf)))
            != TX_OK
        || txcp_csv_cstr(st, hex) != TX_OK
        || txcp_csv_field(st, model->data, model->len, 0) != TX_OK)
    {
        return TX_ERROR;
    }

    snprintf(buf, sizeof(buf), "%llu", (unsigned long long) run->tokens_in);
    if (txcp_csv_cstr(st, buf) != TX_OK) {
        return TX_ERROR;
    }

    snprintf(buf, sizeof(buf), "%llu", (unsigned long long) run->tokens_out);
    if (txcp_csv_cstr(st, buf) != TX_OK) {
        return TX_ERROR;
    }

    if (txcp_csv_cstr(st, tx_money_format(run->cost, buf, sizeof(buf)))
        != TX_OK) {
        return TX_ERROR;
    }

    snprintf(buf, sizeof(buf), "%.3f", (double) run->latency_us / 1000);
    if (txcp_csv_cstr(st, buf) != TX_OK) {
        return TX_ERROR;
    }

    snprintf(buf, sizeof(buf), "%llu", (unsigned long long) run->status);
    if (txcp_csv_cstr(st, buf) != TX_OK) {
        return TX_ERROR;
    }

    if ((run->flags & TX_RUNF_SAMPLED) && run->req_body.len) {
        return txcp_csv_field(st, run->req_body.data, run->req_body.len, 1);
    }

    return txcp_csv_field(st, none.data, 0, 1);
}


/* Reads the next slice of the user's runs into st->buf. */
static void
txcp_csv_fill(txcp_csv_t *st)
{
    int              rc, n;
    size_t           plen;
    uint8_t          key[TXCP_IDX_KEY_MAX];
    const uint8_t   *id;
    txcp_run_t       run;
    MDB_txn         *txn;
    MDB_val          rk, rv;
    txcp_runidx_it_t it;

    if (txcp_store_begin(1, &txn) != 0) {
        st->done = 1;
        return;
    }

    /* the user's run ids, oldest first, after the last one read */

    plen = txcp_runs_idx_key(key, TXCP_IDX_USER, (const uint8_t *) st->user,
                             st->ulen);

    if (!st->has_last) {
        memset(st->last, 0, 16);
    }

    rc = txcp_runidx_open(&it, txn, txcp.db[TXCP_DB_RUNS_IDX], key, plen,
                          st->last, 1, st->has_last);

    for (n = 0; rc == 0 && n < TXCP_CSV_RUNS_PER_FILL; n++) {
        rc = txcp_runidx_next(&it, &id);
        if (rc != 0) {
            break;
        }

        memcpy(st->last, id, 16);
        st->has_last = 1;

        rk.mv_data = st->last;
        rk.mv_size = 16;

        if (mdb_get(txn, txcp.db[TXCP_DB_RUNS], &rk, &rv) != 0
            || txcp_run_decode(rv.mv_data, rv.mv_size, &run) != TX_OK)
        {
            continue;
        }

        if (txcp_csv_line(st, st->last, &run) != TX_OK) {
            rc = MDB_NOTFOUND;
            break;
        }
    }

    if (rc != 0) {
        st->done = 1;
    }

    txcp_runidx_close(&it);
    mdb_txn_abort(txn);
}


static ssize_t
txcp_csv_read(void *cls, uint64_t pos, char *out, size_t max)
{
    size_t      n;
    txcp_csv_t *st;

    st = cls;

    while (st->off == st->len) {
        if (st->done) {
            return MHD_CONTENT_READER_END_OF_STREAM;
        }

        st->off = 0;
        st->len = 0;
        txcp_csv_fill(st);
    }

    n = st->len - st->off;
    n = n < max ? n : max;

    memcpy(out, st->buf + st->off, n);
    st->off += n;

    return (ssize_t) n;
}


static void
txcp_csv_free(void *cls)
{
    txcp_csv_t *st;

    st = cls;
    free(st->buf);
    free(st);
}


void
txcp_api_user_activity_csv(txcp_req_t *r)
{
    int                  found;
    size_t               plen;
    uint8_t              key[TXCP_IDX_KEY_MAX], zero[16];
    const uint8_t       *id;
    txcp_csv_t          *st;
    MDB_txn             *txn;
    txcp_runidx_it_t     it;
    struct MHD_Response *resp;

    if (strlen(r->id) > 255) {
        txcp_http_error(r, 404, "no user %s", r->id);
        return;
    }

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    /* a deleted user's runs can still be exported */

    found = txcp_store_exists(txn, TXCP_DB_USERS, r->id);

    if (!found) {
        plen = txcp_runs_idx_key(key, TXCP_IDX_USER, (const uint8_t *) r->id,
                                 strlen(r->id));
        memset(zero, 0, sizeof(zero));

        found = txcp_runidx_open(&it, txn, txcp.db[TXCP_DB_RUNS_IDX], key, plen,
                                 zero, 1, 0)
                    == 0
                && txcp_runidx_next(&it, &id) == 0;

        txcp_runidx_close(&it);
    }

    mdb_txn_abort(txn);

    if (!found) {
        txcp_http_error(r, 404, "no user %s", r->id);
        return;
    }

    st = calloc(1, sizeof(txcp_csv_t));

    if (st == NULL || txcp_csv_reserve(st, sizeof(TXCP_CSV_HEADER)) != TX_OK) {
        free(st);
        txcp_http_error(r, 500, "out of memory");
        return;
    }

    st->ulen = strlen(r->id);
    memcpy(st->user, r->id, st->ulen + 1);
    memcpy(st->buf, TXCP_CSV_HEADER, sizeof(TXCP_CSV_HEADER) - 1);
    st->len = sizeof(TXCP_CSV_HEADER) - 1;

    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, TXCP_CSV_BLOCK,
                                             txcp_csv_read, st, txcp_csv_free);
    if (resp == NULL) {
        txcp_csv_free(st);
        txcp_http_error(r, 500, "out of memory");
        return;
    }

    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/csv; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "Content-Disposition",
                            "attachment; filename=\"activity.csv\"");

    txcp_http_reply_raw(r, 200, resp);
}

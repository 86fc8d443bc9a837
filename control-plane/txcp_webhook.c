/*
 * torrix-cp webhook delivery (see txcp_webhook.h).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "txcp.h"
#include "txcp_json.h"
#include "txcp_store.h"
#include "txcp_vault.h"
#include "txcp_webhook.h"


#define TXCP_WH_EVENTS     32
#define TXCP_WH_FINALIZE   64
#define TXCP_WH_OKEY_MAX   (8 + TX_ID_MAX_LEN)
#define TXCP_WH_SLACK_HOST "hooks.slack.com"


typedef struct txcp_xfer_s txcp_xfer_t;

struct txcp_xfer_s {
    txcp_xfer_t       *next;
    CURL              *easy;
    struct curl_slist *headers;
    char              *body;
    uint64_t           seq;
    char               hook[TX_ID_MAX_LEN + 1];
    char               alert[TX_ID_MAX_LEN + 1];
};


/* An outbox row settled without a transfer (webhook gone or disabled). */
typedef struct {
    uint64_t    seq;
    char        hook[TX_ID_MAX_LEN + 1];
    const char *why; /* NULL: drop the row only (alert gone) */
} txcp_finalize_t;


typedef struct {
    CURLM       *multi;
    int          epfd;
    int          kicked;
    int          recheck;  /* settle rows of deleted / disabled webhooks */
    int64_t      timer_ms; /* monotonic deadline of curl's timer, -1 */
    int64_t      due_ms;   /* unix ms of the next due row, -1 */
    txcp_xfer_t *flight;
    long long    nflight;
} txcp_webhook_ctx_t;


static txcp_webhook_ctx_t txcp_wh = {NULL, -1, 0, 0, -1, -1, NULL, 0};


static int64_t
txcp_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static int
txcp_wh_socket(CURL *easy, curl_socket_t s, int what, void *userp,
               void *socketp)
{
    struct epoll_event ev;

    if (what == CURL_POLL_REMOVE) {
        (void) epoll_ctl(txcp_wh.epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }

    memset(&ev, 0, sizeof(ev));
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0)
                | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    ev.data.fd = s;

    if (epoll_ctl(txcp_wh.epfd, EPOLL_CTL_MOD, s, &ev) != 0
        && (errno != ENOENT
            || epoll_ctl(txcp_wh.epfd, EPOLL_CTL_ADD, s, &ev) != 0))
    {
        txcp_log(TXCP_LOG_ERROR, "webhook epoll_ctl failed", "err=\"%s\"",
                 strerror(errno));
        return -1;
    }

    return 0;
}


static int
txcp_wh_timer(CURLM *multi, long timeout_ms, void *userp)
{
    txcp_wh.timer_ms = timeout_ms < 0 ? -1 : txcp_mono_ms() + timeout_ms;

    return 0;
}


static size_t
txcp_wh_discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    return size * nmemb;
}


int
txcp_webhook_init(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        txcp_log(TXCP_LOG_ERROR, "curl_global_init failed", NULL);
        return TX_ERROR;
    }

    txcp_wh.epfd = epoll_create1(EPOLL_CLOEXEC);

    if (txcp_wh.epfd < 0) {
        txcp_log(TXCP_LOG_ERROR, "epoll_create1 failed", "err=\"%s\"",
                 strerror(errno));
        return TX_ERROR;
    }

    txcp_wh.multi = curl_multi_init();

    if (txcp_wh.multi == NULL) {
        txcp_log(TXCP_LOG_ERROR, "curl_multi_init failed", NULL);
        return TX_ERROR;
    }

    curl_multi_setopt(txcp_wh.multi, CURLMOPT_SOCKETFUNCTION, txcp_wh_socket);
    curl_multi_setopt(txcp_wh.multi, CURLMOPT_TIMERFUNCTION, txcp_wh_timer);

    txcp_wh.kicked = 1;
    txcp_wh.timer_ms = -1;
    txcp_wh.due_ms = -1;

    return TX_OK;
}


static void
txcp_xfer_free(txcp_xfer_t *x)
{
    if (x->easy) {
        curl_multi_remove_handle(txcp_wh.multi, x->easy);
        curl_easy_cleanup(x->easy);
    }

    curl_slist_free_all(x->headers);
    free(x->body);
    free(x);
}


void
txcp_webhook_free(void)
{
    txcp_xfer_t *x, *next;

    for (x = txcp_wh.flight; x; x = next) {
        next = x->next;
        txcp_xfer_free(x);
    }

    txcp_wh.flight = NULL;
    txcp_wh.nflight = 0;

    if (txcp_wh.multi) {
        curl_multi_cleanup(txcp_wh.multi);
        txcp_wh.multi = NULL;
        curl_global_cleanup();
    }

    if (txcp_wh.epfd >= 0) {
        close(txcp_wh.epfd);
        txcp_wh.epfd = -1;
    }
}


int
txcp_webhook_fd(void)
{
    return txcp_wh.epfd;
}


void
txcp_webhook_kick(void)
{
    txcp_wh.kicked = 1;
}


void
txcp_webhook_changed(void)
{
    txcp_wh.kicked = 1;
    txcp_wh.recheck = 1;
}


long
txcp_webhook_timeout(void)
{
    int64_t t, w;

    if (txcp_wh.multi == NULL) {
        return -1;
    }

    if (txcp_wh.kicked) {
        return 0;
    }

    w = -1;

    if (txcp_wh.timer_ms >= 0) {
        t = txcp_wh.timer_ms - txcp_mono_ms();
        w = t < 0 ? 0 : t;
    }

    if (txcp_wh.due_ms >= 0) {
        t = txcp_wh.due_ms - txcp_now_us() / 1000;
        t = t < 0 ? 0 : t;
        w = w < 0 || t < w ? t : w;
    }

    return (long) w;
}


int
txcp_webhook_url_check(const char *url, int *slack)
{
    int    ok;
    char  *scheme, *host;
    CURLU *u;

    *slack = 0;
    scheme = NULL;
    host = NULL;

    u = curl_url();
    if (u == NULL) {
        return TX_ERROR;
    }

    ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK
         && curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
         && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK
         && (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0)
         && host[0] != '\0';

    if (ok && strcasecmp(host, TXCP_WH_SLACK_HOST) == 0) {
        *slack = 1;
    }

    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);

    return ok ? TX_OK : TX_ERROR;
}


/* "$12.34": money with two decimals at least (tx_money_format). */
static void
txcp_wh_usd(const cJSON *alert, const char *field, char *buf, size_t len)
{
    char        num[40];
    const char *s;
    long long   v;

    s = txcp_json_str(alert, field);
    v = s ? strtoll(s, NULL, 10) : 0;

    tx_money_format((tx_money_t) v, num, sizeof(num));
    snprintf(buf, len, "$%s", num);
}


static cJSON *
txcp_wh_money(const cJSON *alert, const char *field)
{
    const char *s;

    s = txcp_json_str(alert, field);

    return txcp_json_money_value(s ? (tx_money_t) strtoll(s, NULL, 10) : 0);
}


/* The request body for alert to a webhook of that format (malloc'd). */
static char *
txcp_wh_body(const cJSON *alert, int slack)
{
    char        text[1024], spent[48], thr[48], *out;
    const char *scope, *id, *period, *level;
    cJSON      *o, *blocks, *b, *t;

    scope = txcp_json_str(alert, "scope");
    id = txcp_json_str(alert, "scope_id");
    period = txcp_json_str(alert, "period");
    level = txcp_json_str(alert, "level");

    scope = scope ? scope : "?";
    id = id ? id : "";
    period = period ? period : "?";
    level = level ? level : "hard";

    o = cJSON_CreateObject();

    if (!slack) {
        cJSON_AddStringToObject(o, "event", txcp_json_str(alert, "event"));
        cJSON_AddStringToObject(o, "period", period);
        cJSON_AddItemToObject(o, "spent_usd", txcp_wh_money(alert, "spent"));
        cJSON_AddItemToObject(o, "threshold_usd",
                              txcp_wh_money(alert, "threshold"));
        cJSON_AddStringToObject(o, "scope", scope);
        cJSON_AddStringToObject(o, "scope_id", id);
        cJSON_AddStringToObject(o, "window_start",
                                txcp_json_str(alert, "window_start"));
        cJSON_AddStringToObject(o, "alert_id", txcp_json_str(alert, "id"));
        cJSON_AddStringToObject(o, "time", txcp_json_str(alert, "time"));

        out = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);

        return out;
    }

    txcp_wh_usd(alert, "spent", spent, sizeof(spent));
    txcp_wh_usd(alert, "threshold", thr, sizeof(thr));

    if (strcmp(level, "hard") == 0) {
        snprintf(text, sizeof(text),
                 ":rotating_light: *Torrix budget exceeded*: %s%s%s has "
                 "spent %s against its %s cap of %s (window from %s; "
                 "requests get 429 until it resets). Alert %s",
                 scope, id[0] ? " " : "", id, spent, period, thr,
                 txcp_json_str(alert, "window_start"),
                 txcp_json_str(alert, "id"));

    } else {
        snprintf(text, sizeof(text),
                 ":warning: *Torrix budget threshold reached*: %s%s%s has "
                 "spent %s, past its %s alert threshold of %s (window from "
                 "%s). Alert %s",
                 scope, id[0] ? " " : "", id, spent, period, thr,
                 txcp_json_str(alert, "window_start"),
                 txcp_json_str(alert, "id"));
    }

    cJSON_AddStringToObject(o, "text", text);
    blocks = cJSON_AddArrayToObject(o, "blocks");
    b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "section");
    t = cJSON_AddObjectToObject(b, "text");
    cJSON_AddStringToObject(t, "type", "mrkdwn");
    cJSON_AddStringToObject(t, "text", text);
    cJSON_AddItemToArray(blocks, b);

    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);

    return out;
}


static struct curl_slist *
txcp_wh_headers(const cJSON *alert, const char *secret, const char *body)
{
    char               line[256], hex[2 * crypto_auth_hmacsha256_BYTES + 1];
    uint8_t            mac[crypto_auth_hmacsha256_BYTES];
    struct curl_slist *h, *n;
    crypto_auth_hmacsha256_state st;

    h = NULL;

#define TXCP_ADD(s)                                                            \
    do {                                                                       \
        n = curl_slist_append(h, s);                                           \
        if (n == NULL) {                                                       \
            goto failed;                                                       \
        }                                                                      \
        h = n;                                                                 \
    } while (0)

    TXCP_ADD("Content-Type: application/json");
    TXCP_ADD("User-Agent: torrix-cp/" TXCP_VERSION);
    TXCP_ADD("Expect:");

    snprintf(line, sizeof(line), "x-torrix-alert-id: %s",
             txcp_json_str(alert, "id"));
    TXCP_ADD(line);

    snprintf(line, sizeof(line), "x-torrix-event: %s",
             txcp_json_str(alert, "event"));
    TXCP_ADD(line);

    if (secret && secret[0]) {
        crypto_auth_hmacsha256_init(&st, (const uint8_t *) secret,
                                    strlen(secret));
        crypto_auth_hmacsha256_update(&st, (const uint8_t *) body,
                                      strlen(body));
        crypto_auth_hmacsha256_final(&st, mac);
        sodium_memzero(&st, sizeof(st));

        txcp_hex(mac, sizeof(mac), hex);
        snprintf(line, sizeof(line), "x-torrix-signature: sha256=%s", hex);
        TXCP_ADD(line);
    }

#undef TXCP_ADD

    return h;

failed:

    curl_slist_free_all(h);

    return NULL;
}


/* Starts one transfer.  TX_OK, or TX_ERROR (the row stays due). */
static int
txcp_wh_start(uint64_t seq, const char *hook_id, const cJSON *alert,
              const cJSON *hook)
{
    int          slack;
    char        *secret;
    const char  *url, *fmt, *sealed;
    txcp_xfer_t *x;

    url = txcp_json_str(hook, "url");
    fmt = txcp_json_str(hook, "format");
    sealed = txcp_json_str(hook, "secret_sealed");

    if (url == NULL || txcp_webhook_url_check(url, &slack) != TX_OK) {
        return TX_ERROR;
    }

    if (fmt && strcmp(fmt, "auto") != 0) {
        slack = strcmp(fmt, "slack") == 0;
    }

    /* never sent unsigned: a secret that does not open fails the attempt */

    secret = NULL;

    if (sealed) {
        secret = txcp_vault_open_b64(sealed, hook_id);
        if (secret == NULL) {
            return TX_ERROR;
        }
    }

    x = calloc(1, sizeof(txcp_xfer_t));
    if (x == NULL) {
        txcp_vault_strfree(secret);
        return TX_ERROR;
    }

    x->seq = seq;
    snprintf(x->hook, sizeof(x->hook), "%s", hook_id);
    snprintf(x->alert, sizeof(x->alert), "%s",
             txcp_json_str(alert, "id") ? txcp_json_str(alert, "id") : "");

    x->body = txcp_wh_body(alert, slack);

    if (x->body) {
        x->headers = txcp_wh_headers(alert, secret, x->body);
    }

    txcp_vault_strfree(secret);

    x->easy = x->headers ? curl_easy_init() : NULL;

    if (x->easy == NULL) {
        txcp_xfer_free(x);
        return TX_ERROR;
    }

    curl_easy_setopt(x->easy, CURLOPT_URL, url);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(x->body));
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS,
                     (long) txcp.conf.webhook_timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) txcp.conf.webhook_timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, txcp_wh_discard);
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);

    if (curl_multi_add_handle(txcp_wh.multi, x->easy) != CURLM_OK) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
        txcp_xfer_free(x);
        return TX_ERROR;
    }

    x->next = txcp_wh.flight;
    txcp_wh.flight = x;
    txcp_wh.nflight++;

    return TX_OK;
}


static int
txcp_wh_in_flight(uint64_t seq, const char *hook_id)
{
    txcp_xfer_t *x;

    for (x = txcp_wh.flight; x; x = x->next) {
        if (x->seq == seq && strcmp(x->hook, hook_id) == 0) {
            return 1;
        }
    }

    return 0;
}


static int64_t
txcp_wh_backoff(int64_t attempts)
{
    int64_t d;

    d = txcp.conf.webhook_backoff_min_ms;

    while (--attempts > 0 && d < txcp.conf.webhook_backoff_max_ms) {
        d *= 2;
    }

    return d < txcp.conf.webhook_backoff_max_ms
               ? d
               : txcp.conf.webhook_backoff_max_ms;
}


/*
 * Writes the result of one attempt (or a settlement without one: status
 * < 0 and why set) to the alert's delivery entry and the outbox row.
 */
static void
txcp_wh_record(uint64_t seq, const char *hook_id, long status,
               const char *error, const char *why)
{
    int         rc, ok, attempted;
    char        ts[40];
    uint8_t     okey[TXCP_WH_OKEY_MAX], ov[8], sk[8];
    char       *text;
    int64_t     now_ms, created_ms, attempts;
    cJSON      *alert, *list, *d, *it;
    const char *s, *final;
    MDB_txn    *txn;
    MDB_val     k, v;

    now_ms = txcp_now_us() / 1000;
    attempted = why == NULL;
    ok = attempted && status >= 200 && status < 300;
    alert = NULL;
    text = NULL;

    if (txcp_store_begin(0, &txn) != 0) {
        return;
    }

    txcp_put_be64(sk, seq);
    txcp_put_be64(okey, seq);
    memcpy(okey + 8, hook_id, strlen(hook_id));

    k.mv_data = sk;
    k.mv_size = 8;

    if (mdb_get(txn, txcp.db[TXCP_DB_ALERTS], &k, &v) == 0) {
        alert = cJSON_ParseWithLength(v.mv_data, v.mv_size);
    }

    d = NULL;
    list = cJSON_GetObjectItemCaseSensitive(alert, "deliveries");

    cJSON_ArrayForEach(it, list)
    {
        s = txcp_json_str(it, "webhook_id");

        if (s && strcmp(s, hook_id) == 0) {
            d = it;
            break;
        }
    }

    k.mv_data = okey;
    k.mv_size = 8 + strlen(hook_id);

    if (d == NULL) {
        /* the alert or its entry is gone: nothing left to deliver */
        rc = mdb_del(txn, txcp.db[TXCP_DB_OUTBOX], &k, NULL);
        goto commit;
    }

    attempts = txcp_json_int(d, "attempts", 0) + attempted;
    created_ms = txcp_json_int(alert, "created_us", 0) / 1000;

    final = ok ? "delivered"
            : why || now_ms - created_ms >= txcp.conf.webhook_give_up_s * 1000
                ? "failed"
                : NULL;

    txcp_json_set(d, "status", cJSON_CreateString(final ? final : "pending"));
    txcp_json_set(d, "attempts", cJSON_CreateNumber((double) attempts));

    if (attempted) {
        txcp_json_set(d, "last_status",
                      status > 0 ? cJSON_CreateNumber(status)
                                 : cJSON_CreateNull());
    }

    txcp_json_set(d, "last_error",
                  ok ? cJSON_CreateNull()
                     : cJSON_CreateString(why ? why : error));
    if (attempted) {
        txcp_json_set(d, "last_attempt_at",
                      cJSON_CreateString(
                          txcp_time_format(now_ms * 1000, 0, ts, sizeof(ts))));
    }

    if (final) {
        rc = mdb_del(txn, txcp.db[TXCP_DB_OUTBOX], &k, NULL);

    } else {
        txcp_put_le64(ov, (uint64_t) (now_ms + txcp_wh_backoff(attempts)));
        v.mv_data = ov;
        v.mv_size = 8;
        rc = mdb_put(txn, txcp.db[TXCP_DB_OUTBOX], &k, &v, 0);
    }

    if (rc == 0 || rc == MDB_NOTFOUND) {
        text = cJSON_PrintUnformatted(alert);
        rc = text ? 0 : ENOMEM;
    }

    if (rc == 0) {
        k.mv_data = sk;
        k.mv_size = 8;
        v.mv_data = text;
        v.mv_size = strlen(text);
        rc = mdb_put(txn, txcp.db[TXCP_DB_ALERTS], &k, &v, 0);
    }

    if (ok) {
        txcp_log(TXCP_LOG_INFO, "webhook delivered",
                 "webhook=%s alert=%s status=%ld attempts=%lld", hook_id,
                 txcp_json_str(alert, "id"), status, (long long) attempts);

    } else {
        txcp_log(final ? TXCP_LOG_ERROR : TXCP_LOG_WARN,
                 final ? "webhook delivery failed, giving up"
                       : "webhook delivery failed, will retry",
                 "webhook=%s alert=%s status=%ld attempts=%lld err=\"%s\"",
                 hook_id, txcp_json_str(alert, "id"), status,
                 (long long) attempts, why ? why : error);
    }

commit:

    free(text);
    cJSON_Delete(alert);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        txcp_log(TXCP_LOG_ERROR, "webhook state write failed",
                 "webhook=%s err=\"%s\"", hook_id, mdb_strerror(rc));
        mdb_txn_abort(txn);
        return;
    }

    (void) txcp_store_commit(txn);
}


/* Finished transfers: record, free, and rescan (a slot is free). */
static void
txcp_wh_done(void)
{
    int          left;
    long         status;
    char         err[160];
    CURLMsg     *m;
    txcp_xfer_t *x, **pp;

    while ((m = curl_multi_info_read(txcp_wh.multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) {
            continue;
        }

        x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &x);

        if (x == NULL) {
            continue;
        }

        status = 0;

        if (m->data.result == CURLE_OK) {
            curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
            snprintf(err, sizeof(err), "HTTP %ld", status);

        } else {
            snprintf(err, sizeof(err), "%s",
                     curl_easy_strerror(m->data.result));
        }

        txcp_wh_record(x->seq, x->hook, status, err, NULL);

        for (pp = &txcp_wh.flight; *pp; pp = &(*pp)->next) {
            if (*pp == x) {
                *pp = x->next;
                break;
            }
        }

        txcp_wh.nflight--;
        txcp_xfer_free(x);
        txcp_wh.kicked = 1;
    }
}


/* Deletes a webhook record, wiping its secret first. */
static void
txcp_wh_hook_free(cJSON *hook)
{
    cJSON *s;

    s = cJSON_GetObjectItemCaseSensitive(hook, "secret");

    if (cJSON_IsString(s)) {
        sodium_memzero(s->valuestring, strlen(s->valuestring));
    }

    cJSON_Delete(hook);
}


/* Starts the due rows of the outbox; settles rows of dead webhooks. */
static void
txcp_wh_scan(void)
{
    int             rc, i, nfin, recheck;
    char            hook_id[TX_ID_MAX_LEN + 1];
    int64_t         now_ms, next;
    uint64_t        seq;
    cJSON          *alert, *hook;
    MDB_txn        *txn;
    MDB_val         k, v, ak, av;
    MDB_cursor     *cur;
    txcp_finalize_t fin[TXCP_WH_FINALIZE];

    recheck = txcp_wh.recheck;
    txcp_wh.kicked = 0;
    txcp_wh.recheck = 0;
    txcp_wh.due_ms = -1;
    now_ms = txcp_now_us() / 1000;
    nfin = 0;

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_wh.due_ms = now_ms + 1000;
        return;
    }

    if (mdb_cursor_open(txn, txcp.db[TXCP_DB_OUTBOX], &cur) != 0) {
        mdb_txn_abort(txn);
        txcp_wh.due_ms = now_ms + 1000;
        return;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size <= 8 || k.mv_size > TXCP_WH_OKEY_MAX || v.mv_size != 8) {
            continue;
        }

        seq = txcp_get_be64(k.mv_data);
        memcpy(hook_id, (char *) k.mv_data + 8, k.mv_size - 8);
        hook_id[k.mv_size - 8] = '\0';
        next = (int64_t) txcp_get_le64(v.mv_data);

        if (txcp_wh_in_flight(seq, hook_id)) {
            continue;
        }

        if (next > now_ms) {
            hook = recheck && nfin < TXCP_WH_FINALIZE
                       ? txcp_store_get(txn, TXCP_DB_WEBHOOKS, hook_id)
                       : NULL;

            if (recheck && nfin < TXCP_WH_FINALIZE
                && (hook == NULL || !txcp_json_bool(hook, "enabled", 1)))
            {
                fin[nfin].seq = seq;
                snprintf(fin[nfin].hook, sizeof(fin[nfin].hook), "%s", hook_id);
                fin[nfin].why = hook ? "webhook disabled" : "webhook deleted";
                nfin++;
                txcp_wh_hook_free(hook);
                continue;
            }

            txcp_wh_hook_free(hook);

            if (txcp_wh.due_ms < 0 || next < txcp_wh.due_ms) {
                txcp_wh.due_ms = next;
            }

            continue;
        }

        if (txcp_wh.nflight >= txcp.conf.webhook_max_inflight
            || nfin == TXCP_WH_FINALIZE)
        {
            /* a finished transfer kicks another scan */
            if (nfin == TXCP_WH_FINALIZE) {
                txcp_wh.kicked = 1;
            }

            break;
        }

        ak.mv_data = k.mv_data;
        ak.mv_size = 8;
        alert = NULL;

        if (mdb_get(txn, txcp.db[TXCP_DB_ALERTS], &ak, &av) == 0) {
            alert = cJSON_ParseWithLength(av.mv_data, av.mv_size);
        }

        hook = txcp_store_get(txn, TXCP_DB_WEBHOOKS, hook_id);

        if (alert == NULL || hook == NULL || !txcp_json_bool(hook, "enabled", 1)
            || txcp_wh_start(seq, hook_id, alert, hook) != TX_OK)
        {
            fin[nfin].seq = seq;
            snprintf(fin[nfin].hook, sizeof(fin[nfin].hook), "%s", hook_id);
            fin[nfin].why = alert == NULL  ? NULL
                            : hook == NULL ? "webhook deleted"
                            : !txcp_json_bool(hook, "enabled", 1)
                                ? "webhook disabled"
                                : "request not built";
            nfin++;
        }

        txcp_wh_hook_free(hook);
        cJSON_Delete(alert);
    }

    mdb_cursor_close(cur);
    mdb_txn_abort(txn);

    for (i = 0; i < nfin; i++) {
        txcp_wh_record(fin[i].seq, fin[i].hook, -1, NULL,
                       fin[i].why ? fin[i].why : "alert gone");
    }
}


void
txcp_webhook_run(int readable)
{
    int                i, n, running, flags;
    struct epoll_event ev[TXCP_WH_EVENTS];

    if (txcp_wh.multi == NULL) {
        return;
    }

    if (readable) {
        n = epoll_wait(txcp_wh.epfd, ev, TXCP_WH_EVENTS, 0);

        for (i = 0; i < n; i++) {
            flags = ((ev[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0)
                    | ((ev[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0)
                    | ((ev[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR
                                                              : 0);

            curl_multi_socket_action(txcp_wh.multi, ev[i].data.fd, flags,
                                     &running);
        }
    }

    if (txcp_wh.timer_ms >= 0 && txcp_mono_ms() >= txcp_wh.timer_ms) {
        txcp_wh.timer_ms = -1;
        curl_multi_socket_action(txcp_wh.multi, CURL_SOCKET_TIMEOUT, 0,
                                 &running);
    }

    txcp_wh_done();

    if (txcp_wh.kicked
        || (txcp_wh.due_ms >= 0 && txcp_now_us() / 1000 >= txcp_wh.due_ms))
    {
        txcp_wh_scan();
    }
}

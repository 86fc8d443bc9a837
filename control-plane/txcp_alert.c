/*
 * torrix-cp budget alerts (see txcp_alert.h).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tx_snapshot.h"
#include "tx_window.h"

#include "txcp.h"
#include "txcp_alert.h"
#include "txcp_api.h"
#include "txcp_json.h"
#include "txcp_store.h"


typedef struct {
    tx_money_t hard;
    tx_money_t soft;
} txcp_thresholds_t;


const char *
txcp_alert_scope_name(int scope)
{
    switch (scope) {
    case TX_SCOPE_INSTANCE:
        return "instance";
    case TX_SCOPE_ORG:
        return "org";
    case TX_SCOPE_PROJECT:
        return "project";
    case TX_SCOPE_USER:
        return "user";
    case TX_SCOPE_KEY:
        return "key";
    }

    return "?";
}


const char *
txcp_alert_period_name(int kind)
{
    switch (kind) {
    case TX_WIN_DAY:
        return "daily";
    case TX_WIN_WEEK:
        return "weekly";
    case TX_WIN_MONTH:
        return "monthly";
    }

    return "?";
}


static uint32_t
txcp_be32(const uint8_t *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8
           | p[3];
}


static tx_money_t
txcp_spend_get(MDB_txn *txn, const uint8_t *key, size_t klen)
{
    MDB_val k, v;

    k.mv_data = (void *) key;
    k.mv_size = klen;

    if (mdb_get(txn, txcp.db[TXCP_DB_SPEND], &k, &v) != 0 || v.mv_size != 8) {
        return 0;
    }

    return (tx_money_t) txcp_get_le64(v.mv_data);
}


static tx_money_t
txcp_pct(tx_money_t cap, int64_t pct)
{
    if (pct <= 0 || pct >= 100) {
        return 0;
    }

    /* cap / 100 * pct without overflow for any sane cap */
    return cap / 100 * pct + cap % 100 * pct / 100;
}


/* The thresholds of (scope, kind, index, id); zero when none apply. */
static void
txcp_alert_thresholds(MDB_txn *txn, int scope, int kind, uint32_t index,
                      const char *id, txcp_thresholds_t *t)
{
    size_t          n;
    uint8_t         key[TX_SPEND_KEY_MAX];
    cJSON          *rec;
    tx_money_t      prev;
    const char     *field;
    txcp_settings_t st;

    t->hard = 0;
    t->soft = 0;
    rec = NULL;
    field = NULL;

    switch (scope) {
    case TX_SCOPE_INSTANCE:
        if (kind == TX_WIN_DAY) {
            txcp_settings_read(txn, &st);
            t->hard = st.instance_daily_cap;
            t->soft = st.instance_soft_cap;
        }

        return;

    case TX_SCOPE_ORG:
        if (kind != TX_WIN_MONTH) {
            return;
        }

        rec = txcp_store_get(txn, TXCP_DB_ORGS, id);
        t->hard = txcp_json_money(rec, "spend_cap_usd");

        if (t->hard > 0 && txcp_json_bool(rec, "rollover", 0) && index > 0) {
            n = tx_spend_key(key, TX_SCOPE_ORG, TX_WIN_MONTH, index - 1,
                             (const uint8_t *) id, strlen(id));
            prev = txcp_spend_get(txn, key, n);

            if (prev < t->hard) {
                t->hard += t->hard - prev;
            }
        }

        break;

    case TX_SCOPE_PROJECT:
        field = kind == TX_WIN_DAY     ? "daily_cap_usd"
                : kind == TX_WIN_MONTH ? "monthly_cap_usd"
                                       : NULL;
        if (field) {
            rec = txcp_store_get(txn, TXCP_DB_PROJECTS, id);
        }

        break;

    case TX_SCOPE_USER:
        if (kind == TX_WIN_WEEK) {
            field = "weekly_cap_usd";
            rec = txcp_store_get(txn, TXCP_DB_USERS, id);
        }

        break;

    case TX_SCOPE_KEY:
        field = kind == TX_WIN_DAY     ? "daily_cap_usd"
                : kind == TX_WIN_MONTH ? "monthly_budget_usd"
                                       : NULL;
        if (field) {
            rec = txcp_store_get(txn, TXCP_DB_KEYS, id);
        }

        break;
    }

    if (rec == NULL) {
        return;
    }

    if (field) {
        t->hard = txcp_json_money(rec, field);
    }

    if (t->hard > 0) {
        t->soft = txcp_pct(t->hard, txcp_json_int(rec, "soft_alert_pct", 80));
    }

    cJSON_Delete(rec);
}


/* The next alert seq: one past the last. */
static int
txcp_alert_next_seq(MDB_txn *txn, uint64_t *seq)
{
    int         rc;
    MDB_val     k, v;
    MDB_cursor *cur;

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_ALERTS], &cur);
    if (rc != 0) {
        return rc;
    }

    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);

    if (rc == MDB_NOTFOUND) {
        *seq = 1;
        return 0;
    }

    if (rc != 0) {
        return rc;
    }

    *seq = k.mv_size == 8 ? txcp_get_be64(k.mv_data) + 1 : 1;

    return 0;
}


/* 1 when the webhook wants `event` and is enabled, else 0. */
static int
txcp_alert_wants(const cJSON *hook, const char *event)
{
    const cJSON *ev, *it;

    if (!txcp_json_bool(hook, "enabled", 1)) {
        return 0;
    }

    ev = cJSON_GetObjectItemCaseSensitive(hook, "events");

    if (!cJSON_IsArray(ev)) {
        return 1;
    }

    cJSON_ArrayForEach(it, ev)
    {
        if (cJSON_IsString(it) && strcmp(it->valuestring, event) == 0) {
            return 1;
        }
    }

    return 0;
}


/* Adds a delivery entry and an outbox row per interested webhook. */
static int
txcp_alert_deliveries(MDB_txn *txn, uint64_t seq, cJSON *alert,
                      const char *event, int64_t now_us)
{
    int         rc;
    char        id[128];
    uint8_t     okey[8 + 128], ov[8];
    cJSON      *list, *hook, *d;
    MDB_val     k, v, ok, oval;
    MDB_cursor *cur;

    list = cJSON_AddArrayToObject(alert, "deliveries");

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_WEBHOOKS], &cur);
    if (rc != 0) {
        return rc;
    }

    txcp_put_be64(okey, seq);
    txcp_put_le64(ov, (uint64_t) (now_us / 1000));

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size == 0 || k.mv_size >= sizeof(id)) {
            continue;
        }

        memcpy(id, k.mv_data, k.mv_size);
        id[k.mv_size] = '\0';

        hook = cJSON_ParseWithLength(v.mv_data, v.mv_size);

        if (hook == NULL || !txcp_alert_wants(hook, event)) {
            cJSON_Delete(hook);
            continue;
        }

        cJSON_Delete(hook);

        d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "webhook_id", id);
        cJSON_AddStringToObject(d, "status", "pending");
        cJSON_AddNumberToObject(d, "attempts", 0);
        cJSON_AddNullToObject(d, "last_error");
        cJSON_AddNullToObject(d, "last_status");
        cJSON_AddItemToArray(list, d);

        memcpy(okey + 8, id, k.mv_size);
        ok.mv_data = okey;
        ok.mv_size = 8 + k.mv_size;
        oval.mv_data = ov;
        oval.mv_size = 8;

        rc = mdb_put(txn, txcp.db[TXCP_DB_OUTBOX], &ok, &oval, 0);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(cur);

    return rc == MDB_NOTFOUND ? 0 : rc;
}


/* Records one alert unless its mark exists; *fired 1 when recorded. */
static int
txcp_alert_fire(MDB_txn *txn, const uint8_t *skey, size_t sklen, int level,
                tx_money_t spent, tx_money_t threshold, int64_t now_us,
                int *fired)
{
    int         rc, scope, kind;
    char        id[TX_ID_MAX_LEN + 1], aid[TX_ID_MAX_LEN], ts[40], num[32];
    char       *text;
    uint8_t     mark[TX_SPEND_KEY_MAX + 1], sb[8];
    uint32_t    index;
    uint64_t    seq;
    cJSON      *a;
    const char *event;
    MDB_val     k, v;

    *fired = 0;

    rc = txcp_alert_next_seq(txn, &seq);
    if (rc != 0) {
        return rc;
    }

    memcpy(mark, skey, sklen);
    mark[sklen] = (uint8_t) level;
    txcp_put_be64(sb, seq);

    k.mv_data = mark;
    k.mv_size = sklen + 1;
    v.mv_data = sb;
    v.mv_size = 8;

    rc = mdb_put(txn, txcp.db[TXCP_DB_ALERT_MARKS], &k, &v, MDB_NOOVERWRITE);

    if (rc == MDB_KEYEXIST) {
        return 0;
    }

    if (rc != 0) {
        return rc;
    }

    scope = skey[0];
    kind = skey[1];
    index = txcp_be32(skey + 2);
    memcpy(id, skey + 6, sklen - 6);
    id[sklen - 6] = '\0';

    event = level == TXCP_ALERT_HARD ? "budget_exceeded" : "budget_threshold";

    tx_id_generate("alr_", aid);

    a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "id", aid);
    cJSON_AddStringToObject(a, "time",
                            txcp_time_format(now_us, 0, ts, sizeof(ts)));
    cJSON_AddStringToObject(a, "scope", txcp_alert_scope_name(scope));
    cJSON_AddStringToObject(a, "scope_id", id);
    cJSON_AddStringToObject(a, "period", txcp_alert_period_name(kind));
    cJSON_AddStringToObject(a, "window_start",
                            txcp_time_format(tx_window_start(kind, index)
                                                 * 1000000,
                                             0, ts, sizeof(ts)));
    cJSON_AddStringToObject(a, "level",
                            level == TXCP_ALERT_HARD ? "hard" : "soft");
    cJSON_AddStringToObject(a, "event", event);
    snprintf(num, sizeof(num), "%lld", (long long) spent);
    cJSON_AddStringToObject(a, "spent", num);
    snprintf(num, sizeof(num), "%lld", (long long) threshold);
    cJSON_AddStringToObject(a, "threshold", num);
    cJSON_AddNumberToObject(a, "created_us", (double) now_us);

    rc = txcp_alert_deliveries(txn, seq, a, event, now_us);

    if (rc == 0) {
        text = cJSON_PrintUnformatted(a);

        if (text == NULL) {
            rc = ENOMEM;

        } else {
            k.mv_data = sb;
            k.mv_size = 8;
            v.mv_data = text;
            v.mv_size = strlen(text);

            rc = mdb_put(txn, txcp.db[TXCP_DB_ALERTS], &k, &v, 0);
            free(text);
        }
    }

    if (rc == 0) {
        *fired = 1;

        txcp_log(TXCP_LOG_INFO, "budget alert",
                 "alert=%s scope=%s id=%s period=%s level=%s deliveries=%d",
                 aid, txcp_alert_scope_name(scope), id[0] ? id : "-",
                 txcp_alert_period_name(kind),
                 level == TXCP_ALERT_HARD ? "hard" : "soft",
                 cJSON_GetArraySize(
                     cJSON_GetObjectItemCaseSensitive(a, "deliveries")));
    }

    cJSON_Delete(a);

    return rc;
}


int
txcp_alert_check(MDB_txn *txn, const txcp_acc_t *acc, int64_t now_us,
                 int *created)
{
    int                   rc, fired, scope, kind;
    char                  id[TX_ID_MAX_LEN + 1];
    size_t                i, idlen;
    uint32_t              index;
    tx_money_t            spent;
    txcp_thresholds_t     t;
    const txcp_acc_ent_t *e;

    for (i = 0; i < acc->cap; i++) {
        e = &acc->ents[i];

        if (!e->used || e->klen < 6 || e->klen > 6 + TX_ID_MAX_LEN) {
            continue;
        }

        scope = e->key[0];
        kind = e->key[1];
        index = txcp_be32(e->key + 2);
        idlen = e->klen - 6;

        if ((scope == TX_SCOPE_INSTANCE) != (idlen == 0)) {
            continue;
        }

        memcpy(id, e->key + 6, idlen);
        id[idlen] = '\0';

        if (strlen(id) != idlen) {
            continue;
        }

        txcp_alert_thresholds(txn, scope, kind, index, id, &t);

        if (t.hard <= 0 && t.soft <= 0) {
            continue;
        }

        spent = txcp_spend_get(txn, e->key, e->klen);

        if (t.soft > 0 && spent >= t.soft) {
            rc = txcp_alert_fire(txn, e->key, e->klen, TXCP_ALERT_SOFT, spent,
                                 t.soft, now_us, &fired);
            if (rc != 0) {
                return rc;
            }

            *created += fired;
        }

        if (t.hard > 0 && spent >= t.hard) {
            rc = txcp_alert_fire(txn, e->key, e->klen, TXCP_ALERT_HARD, spent,
                                 t.hard, now_us, &fired);
            if (rc != 0) {
                return rc;
            }

            *created += fired;
        }
    }

    return 0;
}


int
txcp_alert_refused(MDB_txn *txn, const uint8_t *skey, size_t sklen,
                   int64_t now_us, int *created)
{
    int               rc, fired, scope, kind;
    char              id[TX_ID_MAX_LEN + 1];
    size_t            idlen;
    uint32_t          index;
    tx_money_t        spent;
    txcp_thresholds_t t;

    if (sklen < 6 || sklen > 6 + TX_ID_MAX_LEN) {
        return 0;
    }

    scope = skey[0];
    kind = skey[1];
    index = txcp_be32(skey + 2);
    idlen = sklen - 6;

    memcpy(id, skey + 6, idlen);
    id[idlen] = '\0';

    if (strlen(id) != idlen || (scope == TX_SCOPE_INSTANCE) != (idlen == 0)) {
        return 0;
    }

    txcp_alert_thresholds(txn, scope, kind, index, id, &t);

    if (t.hard <= 0) {
        return 0;
    }

    spent = txcp_spend_get(txn, skey, sklen);

    rc = txcp_alert_fire(txn, skey, sklen, TXCP_ALERT_HARD, spent, t.hard,
                         now_us, &fired);

    if (rc == 0) {
        *created += fired;
    }

    return rc;
}


int
txcp_alert_prune(int64_t now)
{
    int         rc, kind;
    size_t      n;
    uint32_t    index, cur;
    MDB_txn    *txn;
    MDB_val     k, v;
    MDB_cursor *c;

    if (txcp_store_begin(0, &txn) != 0) {
        return TX_ERROR;
    }

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_ALERT_MARKS], &c);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return TX_ERROR;
    }

    n = 0;

    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    {
        if (k.mv_size < 7) {
            continue;
        }

        kind = ((uint8_t *) k.mv_data)[1];
        index = txcp_be32((uint8_t *) k.mv_data + 2);
        cur = tx_window_index(kind, now);

        if (index + 1 >= cur) {
            continue;
        }

        rc = mdb_cursor_del(c, 0);
        if (rc != 0) {
            break;
        }

        n++;
    }

    mdb_cursor_close(c);

    if (rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return TX_ERROR;
    }

    if (txcp_store_commit(txn) != 0) {
        return TX_ERROR;
    }

    if (n) {
        txcp_log(TXCP_LOG_INFO, "alert marks pruned", "count=%zu", n);
    }

    return TX_OK;
}

/*
 * torrix-cp audit log (see txcp_audit.h).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "txcp.h"
#include "txcp_audit.h"


#define TXCP_HASH_LEN crypto_hash_sha256_BYTES


static int txcp_audit_hash(const uint8_t *prev, cJSON *rec, char *hex);


/*
 * Hashes prev || canonical(rec without "hash") into hex (65 bytes).  rec
 * must not contain "hash".
 */
static int
txcp_audit_hash(const uint8_t *prev, cJSON *rec, char *hex)
{
    char                    *text;
    uint8_t                  h[TXCP_HASH_LEN];
    crypto_hash_sha256_state st;

    text = cJSON_PrintUnformatted(rec);
    if (text == NULL) {
        return TX_ERROR;
    }

    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, prev, TXCP_HASH_LEN);
    crypto_hash_sha256_update(&st, (const uint8_t *) text, strlen(text));
    crypto_hash_sha256_final(&st, h);

    free(text);

    txcp_hex(h, TXCP_HASH_LEN, hex);

    return TX_OK;
}


void
txcp_audit_diff(cJSON *diff, const char *field, cJSON *old, cJSON *nw)
{
    cJSON *pair;

    pair = cJSON_CreateArray();

    cJSON_AddItemToArray(pair, old ? old : cJSON_CreateNull());
    cJSON_AddItemToArray(pair, nw ? nw : cJSON_CreateNull());

    cJSON_AddItemToObject(diff, field, pair);
}


int
txcp_audit_append(MDB_txn *txn, const char *actor, const char *action,
                  const char *target_type, const char *target_id,
                  const cJSON *diff)
{
    int         rc;
    uint64_t    seq;
    uint8_t     prev[TXCP_HASH_LEN], key[8];
    char        ts[40], prevhex[2 * TXCP_HASH_LEN + 1];
    char        hash[2 * TXCP_HASH_LEN + 1];
    char       *text;
    cJSON      *rec, *canon, *last, *h;
    MDB_val     k, v;
    MDB_cursor *cur;

    rec = NULL;
    canon = NULL;
    text = NULL;
    seq = 1;
    memset(prev, 0, sizeof(prev));

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_AUDIT], &cur);
    if (rc != 0) {
        goto failed;
    }

    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);

    if (rc == 0) {
        if (k.mv_size != 8) {
            mdb_cursor_close(cur);
            goto failed;
        }

        seq = txcp_get_be64(k.mv_data) + 1;

        last = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        h = cJSON_GetObjectItemCaseSensitive(last, "hash");

        if (!cJSON_IsString(h)
            || txcp_unhex(h->valuestring, prev, TXCP_HASH_LEN) != TX_OK)
        {
            /* a broken tail: keep chaining, verify will report it */
            memset(prev, 0xff, sizeof(prev));
        }

        cJSON_Delete(last);

    } else if (rc != MDB_NOTFOUND) {
        mdb_cursor_close(cur);
        goto failed;
    }

    mdb_cursor_close(cur);

    txcp_hex(prev, TXCP_HASH_LEN, prevhex);
    txcp_time_format(txcp_now_us(), 6, ts, sizeof(ts));

    rec = cJSON_CreateObject();
    cJSON_AddNumberToObject(rec, "seq", (double) seq);
    cJSON_AddStringToObject(rec, "time", ts);
    cJSON_AddStringToObject(rec, "actor", actor);
    cJSON_AddStringToObject(rec, "action", action);
    cJSON_AddStringToObject(rec, "target_type", target_type);
    cJSON_AddStringToObject(rec, "target_id", target_id);
    cJSON_AddItemToObject(rec, "diff",
                          diff ? cJSON_Duplicate(diff, 1)
                               : cJSON_CreateObject());
    cJSON_AddStringToObject(rec, "prev_hash", prevhex);

    /* canonical form: what a parse + print of the stored text gives */

    text = cJSON_PrintUnformatted(rec);
    if (text == NULL) {
        goto failed;
    }

    canon = cJSON_Parse(text);
    free(text);
    text = NULL;

    if (canon == NULL || txcp_audit_hash(prev, canon, hash) != TX_OK) {
        goto failed;
    }

    cJSON_AddStringToObject(canon, "hash", hash);

    text = cJSON_PrintUnformatted(canon);
    if (text == NULL) {
        goto failed;
    }

    txcp_put_be64(key, seq);
    k.mv_data = key;
    k.mv_size = 8;
    v.mv_data = text;
    v.mv_size = strlen(text);

    rc = mdb_put(txn, txcp.db[TXCP_DB_AUDIT], &k, &v, MDB_NOOVERWRITE);
    if (rc != 0) {
        goto failed;
    }

    txcp_log(TXCP_LOG_INFO, "audit", "seq=%llu actor=%s action=%s %s=%s",
             (unsigned long long) seq, actor, action, target_type, target_id);

    free(text);
    cJSON_Delete(rec);
    cJSON_Delete(canon);

    return TX_OK;

failed:

    txcp_log(TXCP_LOG_ERROR, "audit append failed", "err=\"%s\"",
             rc ? mdb_strerror(rc) : "no memory");

    free(text);
    cJSON_Delete(rec);
    cJSON_Delete(canon);

    return TX_ERROR;
}


int
txcp_audit_verify(MDB_txn *txn, uint64_t *records, uint64_t *broken_at,
                  char *reason, size_t len)
{
    int         rc, ret;
    uint64_t    expect;
    uint8_t     prev[TXCP_HASH_LEN];
    char        prevhex[2 * TXCP_HASH_LEN + 1], hash[2 * TXCP_HASH_LEN + 1];
    cJSON      *rec, *f, *h;
    MDB_val     k, v;
    MDB_cursor *cur;

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_AUDIT], &cur);
    if (rc != 0) {
        return TX_ERROR;
    }

    memset(prev, 0, sizeof(prev));
    expect = 1;
    ret = TX_OK;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), expect++)
    {
        *broken_at = expect;

        if (k.mv_size != 8 || txcp_get_be64(k.mv_data) != expect) {
            snprintf(reason, len, "sequence gap");
            ret = TX_DECLINED;
            break;
        }

        rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (rec == NULL) {
            snprintf(reason, len, "record is not valid JSON");
            ret = TX_DECLINED;
            break;
        }

        f = cJSON_GetObjectItemCaseSensitive(rec, "seq");

        if (!cJSON_IsNumber(f) || f->valuedouble != (double) expect) {
            snprintf(reason, len, "seq field does not match its key");
            cJSON_Delete(rec);
            ret = TX_DECLINED;
            break;
        }

        txcp_hex(prev, TXCP_HASH_LEN, prevhex);
        f = cJSON_GetObjectItemCaseSensitive(rec, "prev_hash");

        if (!cJSON_IsString(f) || strcmp(f->valuestring, prevhex) != 0) {
            snprintf(reason, len, "prev_hash does not match seq %llu",
                     (unsigned long long) (expect - 1));
            cJSON_Delete(rec);
            ret = TX_DECLINED;
            break;
        }

        h = cJSON_DetachItemFromObjectCaseSensitive(rec, "hash");

        if (!cJSON_IsString(h) || txcp_audit_hash(prev, rec, hash) != TX_OK
            || strcmp(h->valuestring, hash) != 0
            || txcp_unhex(h->valuestring, prev, TXCP_HASH_LEN) != TX_OK)
        {
            snprintf(reason, len, "hash mismatch");
            cJSON_Delete(h);
            cJSON_Delete(rec);
            ret = TX_DECLINED;
            break;
        }

        cJSON_Delete(h);
        cJSON_Delete(rec);
    }

    mdb_cursor_close(cur);

    if (ret == TX_OK && rc != MDB_NOTFOUND) {
        return TX_ERROR;
    }

    *records = ret == TX_OK ? expect - 1 : 0;

    return ret;
}


int
txcp_audit_tamper(MDB_txn *txn, uint64_t seq)
{
    int     rc;
    uint8_t key[8];
    char   *buf, *p;
    MDB_val k, v;

    txcp_put_be64(key, seq);
    k.mv_data = key;
    k.mv_size = 8;

    rc = mdb_get(txn, txcp.db[TXCP_DB_AUDIT], &k, &v);
    if (rc == MDB_NOTFOUND) {
        return TX_DECLINED;
    }

    if (rc != 0) {
        return TX_ERROR;
    }

    buf = malloc(v.mv_size + 1);
    if (buf == NULL) {
        return TX_ERROR;
    }

    memcpy(buf, v.mv_data, v.mv_size);
    buf[v.mv_size] = '\0';

    /* the last digit of the year in "time": still valid JSON */

    p = strstr(buf, "\"time\":\"");

    if (p && p + 11 < buf + v.mv_size && p[11] >= '0' && p[11] <= '9') {
        p[11] = p[11] == '9' ? '0' : p[11] + 1;

    } else {
        buf[v.mv_size / 2] ^= 0x01;
    }

    v.mv_data = buf;

    rc = mdb_put(txn, txcp.db[TXCP_DB_AUDIT], &k, &v, 0);
    free(buf);

    return rc == 0 ? TX_OK : TX_ERROR;
}

/*
 * torrix-cp keys seed: creates N virtual keys offline, for benchmarks and
 * capacity tests (see txcp_api.h).
 *
 * The first key goes through the POST /api/v1/keys handler itself (actor
 * "cli"); its store record and audit diff are the template of the others,
 * which differ only in id, secret hash, prefix and times.  So a seeded key
 * is what the API would have made, with its audit record, whatever fields
 * the API grows.  The rest are written TXCP_SEED_BATCH per store txn, each
 * batch then published like an API write (txcp_publish).  Their ids and
 * hashes are generated first and written in sorted order: batches then
 * extend the keys and khash trees instead of copying pages all over them
 * (1,000,000 keys: ~30 s instead of ~95 s, 1.4 GB written instead of 28).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_audit.h"
#include "txcp_http.h"
#include "txcp_json.h"
#include "txcp_publish.h"
#include "txcp_store.h"


#define TXCP_SEED_BATCH        10000
#define TXCP_SEED_MAX          10000000
#define TXCP_SEED_PREFIX_SHOWN 14 /* as the API: "sk-torrix-" + 4 */


typedef struct {
    uint8_t hash[TX_KEY_HASH_LEN];
    char    prefix[TXCP_SEED_PREFIX_SHOWN + 1];
} txcp_seed_sec_t;


typedef struct {
    cJSON           *rec;  /* store record of the first key */
    cJSON           *diff; /* its audit diff */
    txcp_pub_t      *items;
    char            *ids;    /* keys 2..n: TX_ID_MAX_LEN each, sorted */
    txcp_seed_sec_t *hashes; /* keys 2..n: sorted by hash */
    char            *secret; /* sodium_malloc: scratch */
    char            *last;   /* sodium_malloc: the last key's secret */
    uint8_t          max[TX_KEY_HASH_LEN];
    char             last_id[TX_ID_MAX_LEN];
} txcp_seed_t;


static double
txcp_seed_clock(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}


/* The first key, through the API handler; fills s->rec, s->diff. */
static int
txcp_seed_first(txcp_seed_t *s, const char *project, char *err, size_t len)
{
    int         rc;
    char       *text;
    const char *id, *msg;
    cJSON      *body, *key, *audit;
    MDB_txn    *txn;
    MDB_val     k, v;
    MDB_cursor *cur;
    txcp_req_t  r;

    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "name", "seed");

    if (project) {
        cJSON_AddStringToObject(body, "project_id", project);
    }

    text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);

    if (text == NULL) {
        snprintf(err, len, "out of memory");
        return TX_ERROR;
    }

    memset(&r, 0, sizeof(r));
    r.method = TXCP_POST;
    r.body = text;
    r.len = strlen(text);
    snprintf(r.path, sizeof(r.path), "/api/v1/keys");
    snprintf(r.resource, sizeof(r.resource), "keys");
    snprintf(r.actor, sizeof(r.actor), "cli");

    txcp_api_keys_create(&r);
    free(text);

    if (r.status != 201) {
        msg = txcp_json_str(cJSON_GetObjectItemCaseSensitive(r.resp, "error"),
                            "message");
        snprintf(err, len, "%s", msg ? msg : "key create failed");
        cJSON_Delete(r.resp);
        return r.status == 400 || r.status == 404 ? TX_DECLINED : TX_ERROR;
    }

    id = txcp_json_str(r.resp, "id");
    key = cJSON_GetObjectItemCaseSensitive(r.resp, "key");

    if (id == NULL || !cJSON_IsString(key)
        || strlen(key->valuestring) != TX_KEY_SECRET_LEN)
    {
        snprintf(err, len, "unexpected key create reply");
        cJSON_Delete(r.resp);
        return TX_ERROR;
    }

    snprintf(s->last_id, sizeof(s->last_id), "%s", id);
    memcpy(s->last, key->valuestring, TX_KEY_SECRET_LEN + 1);
    sodium_memzero(key->valuestring, TX_KEY_SECRET_LEN);
    cJSON_Delete(r.resp);

    /* the template: its store record and the audit record just appended */

    if (txcp_store_begin(1, &txn) != 0) {
        snprintf(err, len, "store txn failed");
        return TX_ERROR;
    }

    s->rec = txcp_store_get(txn, TXCP_DB_KEYS, s->last_id);
    audit = NULL;

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_AUDIT], &cur);

    if (rc == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);

        if (rc == 0) {
            audit = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        }

        mdb_cursor_close(cur);
    }

    mdb_txn_abort(txn);

    id = txcp_json_str(audit, "target_id");

    if (s->rec == NULL || id == NULL || strcmp(id, s->last_id) != 0
        || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(audit, "diff")))
    {
        snprintf(err, len, "the first key's record or audit is missing");
        cJSON_Delete(audit);
        return TX_ERROR;
    }

    s->diff = cJSON_DetachItemFromObjectCaseSensitive(audit, "diff");
    cJSON_Delete(audit);

    return TX_OK;
}


static int
txcp_seed_id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}


static int
txcp_seed_hash_cmp(const void *a, const void *b)
{
    return memcmp(a, b, TX_KEY_HASH_LEN);
}


/*
 * The ids and secret hashes of keys 2..n, each list sorted, paired in
 * order; only the secret of the greatest hash (the last key's) is kept.
 */
static int
txcp_seed_make(txcp_seed_t *s, size_t m)
{
    size_t           i;
    txcp_seed_sec_t *h;

    s->ids = malloc(m * TX_ID_MAX_LEN);
    s->hashes = malloc(m * sizeof(txcp_seed_sec_t));

    if (s->ids == NULL || s->hashes == NULL) {
        return TX_ERROR;
    }

    for (i = 0; i < m; i++) {
        tx_id_generate("key_", s->ids + i * TX_ID_MAX_LEN);

        h = &s->hashes[i];
        tx_key_generate(s->secret);

        if (tx_key_hash(txcp.hash_key, (const uint8_t *) s->secret,
                        TX_KEY_SECRET_LEN, h->hash)
            != TX_OK)
        {
            return TX_ERROR;
        }

        memcpy(h->prefix, s->secret, TXCP_SEED_PREFIX_SHOWN);
        h->prefix[TXCP_SEED_PREFIX_SHOWN] = '\0';

        if (i == 0 || memcmp(h->hash, s->max, TX_KEY_HASH_LEN) > 0) {
            memcpy(s->max, h->hash, TX_KEY_HASH_LEN);
            memcpy(s->last, s->secret, TX_KEY_SECRET_LEN + 1);
        }
    }

    sodium_memzero(s->secret, TX_KEY_SECRET_LEN + 1);

    qsort(s->ids, m, TX_ID_MAX_LEN, txcp_seed_id_cmp);
    qsort(s->hashes, m, sizeof(txcp_seed_sec_t), txcp_seed_hash_cmp);

    return TX_OK;
}


/* Key i (of keys 2..n) from the template inside txn; its publish item. */
static int
txcp_seed_key(txcp_seed_t *s, size_t i, MDB_txn *txn, txcp_pub_t *item)
{
    int              rc;
    char             ts[40], hex[2 * TX_KEY_HASH_LEN + 1];
    const char      *id;
    cJSON           *pair;
    txcp_seed_sec_t *h;

    id = s->ids + i * TX_ID_MAX_LEN;
    h = &s->hashes[i];

    txcp_hex(h->hash, TX_KEY_HASH_LEN, hex);
    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));

    txcp_json_set(s->rec, "id", cJSON_CreateString(id));
    txcp_json_set(s->rec, "_hash", cJSON_CreateString(hex));
    txcp_json_set(s->rec, "key_prefix", cJSON_CreateString(h->prefix));
    txcp_json_set(s->rec, "created_at", cJSON_CreateString(ts));
    txcp_json_set(s->rec, "updated_at", cJSON_CreateString(ts));

    pair = cJSON_GetObjectItemCaseSensitive(s->diff, "key_prefix");

    if (cJSON_GetArraySize(pair) == 2) {
        cJSON_ReplaceItemInArray(pair, 1, cJSON_CreateString(h->prefix));
    }

    rc = txcp_store_put(txn, TXCP_DB_KEYS, id, s->rec);

    if (rc == TX_OK) {
        rc = txcp_audit_append(txn, "cli", "create", "key", id, s->diff);
    }

    memset(item, 0, sizeof(*item));
    item->kind = TXCP_PUB_KEY;
    snprintf(item->id, sizeof(item->id), "%s", id);

    return rc;
}


/*
 * Keys 2..n in batches: one store txn, then one publish, per batch.  In
 * id and hash order, so each batch extends the keys and khash trees
 * instead of rewriting pages all over them.
 */
static int
txcp_seed_rest(txcp_seed_t *s, size_t n, char *err, size_t len)
{
    size_t   done, i, batch, m;
    MDB_txn *txn;

    m = n - 1;

    if (m == 0) {
        return TX_OK;
    }

    if (txcp_seed_make(s, m) != TX_OK) {
        snprintf(err, len, "out of memory");
        return TX_ERROR;
    }

    for (done = 0; done < m; done += batch) {
        batch = m - done < TXCP_SEED_BATCH ? m - done : TXCP_SEED_BATCH;

        if (txcp_store_begin(0, &txn) != 0) {
            snprintf(err, len, "store txn failed after %zu keys", done + 1);
            return TX_ERROR;
        }

        for (i = 0; i < batch; i++) {
            if (txcp_seed_key(s, done + i, txn, &s->items[i]) != TX_OK) {
                mdb_txn_abort(txn);
                snprintf(err, len, "key write failed after %zu keys", done + 1);
                return TX_ERROR;
            }
        }

        if (txcp_store_commit(txn) != 0) {
            snprintf(err, len, "store commit failed after %zu keys", done + 1);
            return TX_ERROR;
        }

        if (txcp_publish(s->items, batch) != TX_OK) {
            snprintf(err, len,
                     "publish failed after %zu keys (stored; the next "
                     "start of torrix-cp resyncs the snapshot)",
                     done + 1 + batch);
            return TX_ERROR;
        }
    }

    snprintf(s->last_id, sizeof(s->last_id), "%s",
             s->ids + (m - 1) * TX_ID_MAX_LEN);

    return TX_OK;
}


int
txcp_seed_cli(int argc, char **argv)
{
    int         i, rc;
    long        pid;
    char       *end, err[512];
    const char *project;
    double      t0;
    size_t      n;
    txcp_seed_t s;

    if (argc < 4 || strcmp(argv[2], "seed") != 0) {
        fprintf(stderr, "usage: torrix-cp keys seed N --data DIR "
                        "[--project ID] [--config FILE]\n");
        return 2;
    }

    errno = 0;
    n = strtoull(argv[3], &end, 10);

    if (errno || *end || argv[3][0] == '-' || n == 0 || n > TXCP_SEED_MAX) {
        fprintf(stderr, "torrix-cp: keys seed needs N in 1..%d\n",
                TXCP_SEED_MAX);
        return 2;
    }

    if (txcp_config_defaults(&txcp.conf) != 0) {
        return 2;
    }

    txcp.conf.log_level = TXCP_LOG_WARN;
    project = NULL;

    for (i = 4; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--project") == 0) {
            project = argv[++i];
            continue;
        }

        if (txcp_config_cli_opt(&txcp.conf, argc, argv, &i, err, sizeof(err))
            != 0) {
            fprintf(stderr, "torrix-cp: %s\n", err);
            txcp_config_free(&txcp.conf);
            return 2;
        }
    }

    /*
     * Seeding holds the store's write lock for seconds at a time: refuse a
     * store another process (a running torrix-cp) has open.
     */

    pid = txcp_store_user();

    if (pid != 0) {
        if (pid > 0) {
            fprintf(stderr,
                    "torrix-cp: the store in %s is in use by pid %ld "
                    "(stop torrix-cp first)\n",
                    txcp.conf.data_dir, pid);
        } else {
            fprintf(stderr,
                    "torrix-cp: cannot check the lock of the store "
                    "in %s\n",
                    txcp.conf.data_dir);
        }

        txcp_config_free(&txcp.conf);
        return 1;
    }

    memset(&s, 0, sizeof(s));
    rc = 2;

    if (sodium_init() < 0 || txcp_store_open(0) != TX_OK) {
        fprintf(stderr,
                "torrix-cp: cannot open the store in %s (start "
                "torrix-cp once to create it)\n",
                txcp.conf.data_dir);
        goto done;
    }

    if (txcp_snapshot_open() != TX_OK) {
        fprintf(stderr, "torrix-cp: cannot open the snapshot in %s\n",
                txcp.conf.data_dir);
        goto done;
    }

    s.secret = sodium_malloc(TX_KEY_SECRET_LEN + 1);
    s.last = sodium_malloc(TX_KEY_SECRET_LEN + 1);
    s.items = calloc(TXCP_SEED_BATCH, sizeof(txcp_pub_t));

    if (s.secret == NULL || s.last == NULL || s.items == NULL) {
        fprintf(stderr, "torrix-cp: out of memory\n");
        goto done;
    }

    t0 = txcp_seed_clock();

    switch (txcp_seed_first(&s, project, err, sizeof(err))) {
    case TX_OK:
        break;

    case TX_DECLINED:
        fprintf(stderr, "torrix-cp: %s\n", err);
        rc = 1;
        goto done;

    default:
        fprintf(stderr, "torrix-cp: %s\n", err);
        goto done;
    }

    if (txcp_seed_rest(&s, n, err, sizeof(err)) != TX_OK) {
        fprintf(stderr, "torrix-cp: %s\n", err);
        goto done;
    }

    printf("{\"count\":%zu,\"seconds\":%.3f,\"last_id\":\"%s\","
           "\"last_key\":\"%s\"}\n",
           n, txcp_seed_clock() - t0, s.last_id, s.last);

    rc = txcp.resync_needed ? 1 : 0;

done:

    cJSON_Delete(s.rec);
    cJSON_Delete(s.diff);
    free(s.items);
    free(s.ids);
    free(s.hashes);

    if (s.secret) {
        sodium_memzero(s.secret, TX_KEY_SECRET_LEN + 1);
        sodium_free(s.secret);
    }

    if (s.last) {
        sodium_memzero(s.last, TX_KEY_SECRET_LEN + 1);
        sodium_free(s.last);
    }

    txcp_snapshot_close();
    txcp_store_close();
    txcp_config_free(&txcp.conf);

    return rc;
}

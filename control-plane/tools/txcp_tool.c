/*
 * txcp_tool: a test aid for torrix-cp (not installed).
 *
 *   txcp_tool snapdump SNAPDIR            print the snapshot
 *   txcp_tool lookup SNAPDIR SECRET       what the data plane finds for a
 *                                         presented secret
 *   txcp_tool spool SPOOLDIR N [seal|open|torn] [HOLD_SECONDS] [KEY_ID]
 *                   [PROJECT_ID USER_ID ORG_ID]
 *                                         write N run records like a worker
 *                                         (every 10th an upstream 500;
 *                                         env TXCP_TOOL_AGO=SECONDS dates
 *                                         them back)
 *
 * Build: cc -D_GNU_SOURCE -Ishared -o build/txcp_tool \
 *            control-plane/tools/txcp_tool.c build/libtxshared.a -llmdb -lsodium
 */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include <lmdb.h>
#include <sodium.h>

#include "tx_key.h"
#include "tx_record.h"
#include "tx_snapshot.h"
#include "tx_spool.h"


static int64_t
now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);

    return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}


static MDB_env *
snap_open(const char *dir, MDB_txn **txn)
{
    MDB_env *env;

    if (mdb_env_create(&env) != 0) {
        return NULL;
    }

    mdb_env_set_maxdbs(env, TX_SNAP_MAX_DBS);

    if (mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0644) != 0
        || mdb_txn_begin(env, NULL, MDB_RDONLY, txn) != 0)
    {
        fprintf(stderr, "cannot open %s\n", dir);
        exit(2);
    }

    return env;
}


static void
dump_db(MDB_txn *txn, const char *name)
{
    MDB_dbi       dbi;
    MDB_cursor   *cur;
    MDB_val       k, v;
    tx_rec_iter_t it;
    uint16_t      tag;
    tx_str_t      val;
    uint64_t      u;
    size_t        i;
    int           binkey;

    if (mdb_dbi_open(txn, name, 0, &dbi) != 0) {
        printf("[%s] missing\n", name);
        return;
    }

    printf("[%s]\n", name);
    mdb_cursor_open(txn, dbi, &cur);

    while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
        binkey = strcmp(name, "khash") == 0 || strcmp(name, "spend") == 0;
        printf("  ");

        for (i = 0; i < k.mv_size; i++) {
            if (binkey) {
                printf("%02x", ((uint8_t *) k.mv_data)[i]);
            } else {
                putchar(((char *) k.mv_data)[i]);
            }
        }

        printf(" =");

        if (strcmp(name, "spend") == 0 && v.mv_size == 8) {
            memcpy(&u, v.mv_data, 8);
            printf(" %lld\n", (long long) u);
            continue;
        }

        if (strcmp(name, "meta") == 0 || strcmp(name, "settings") == 0) {
            if (v.mv_size == 8 && strcmp((char *) k.mv_data, "hash_key")) {
                memcpy(&u, v.mv_data, 8);
                printf(" %llu\n", (unsigned long long) u);
            } else {
                printf(" (%zu bytes) %.*s\n", v.mv_size,
                       strncmp(k.mv_data, "hash_key", 8) ? (int) v.mv_size : 0,
                       (char *) v.mv_data);
            }
            continue;
        }

        tx_rec_iter_init(&it, v.mv_data, v.mv_size);

        while (tx_rec_next(&it, &tag, &val) == TX_OK) {
            if (val.len == 8 && tx_rec_u64(&val, &u) == TX_OK
                && (u < 100000000000000ULL)) {
                printf(" %u:%llu", tag, (unsigned long long) u);

            } else if (strcmp(name, "providers") == 0 && tag == TX_PRV_API_KEY)
            {
                printf(" %u:<%zu bytes>", tag, val.len);

            } else {
                printf(" %u:\"%.*s\"", tag, (int) val.len, val.data);
            }
        }

        printf("\n");
    }

    mdb_cursor_close(cur);
}


static int
cmd_snapdump(const char *dir)
{
    MDB_txn    *txn;
    const char *dbs[] = {"meta",   "khash",    "keys",      "orgs",
                         "users",  "projects", "providers", "settings",
                         "prices", "spend",    NULL};
    int         i;

    snap_open(dir, &txn);

    for (i = 0; dbs[i]; i++) {
        dump_db(txn, dbs[i]);
    }

    return 0;
}


static int
cmd_lookup(const char *dir, const char *secret)
{
    MDB_txn       *txn;
    MDB_dbi        meta, khash;
    MDB_val        k, v;
    uint8_t        hash[TX_KEY_HASH_LEN];
    tx_khash_rec_t kh;

    snap_open(dir, &txn);

    if (mdb_dbi_open(txn, "meta", 0, &meta) != 0
        || mdb_dbi_open(txn, "khash", 0, &khash) != 0)
    {
        return 2;
    }

    k.mv_data = "hash_key";
    k.mv_size = 8;

    if (mdb_get(txn, meta, &k, &v) != 0 || v.mv_size != 32) {
        return 2;
    }

    tx_key_hash(v.mv_data, (const uint8_t *) secret, strlen(secret), hash);

    k.mv_data = hash;
    k.mv_size = 32;

    if (mdb_get(txn, khash, &k, &v) != 0) {
        printf("unknown\n");
        return 1;
    }

    tx_khash_rec_decode(v.mv_data, v.mv_size, &kh);
    printf("%.*s not_after=%lld\n", (int) kh.key_id.len, kh.key_id.data,
           (long long) kh.not_after);

    return 0;
}


static int
cmd_spool(const char *dir, int n, const char *mode, int hold,
          const char *key_id, char **ids)
{
    char      path[4096];
    int       fd, i;
    size_t    cap, off, len;
    uint8_t  *base, rec[4096], id[16], rnd[10];
    int64_t   now;
    tx_wbuf_t wb;

    now = now_us();
    cap = 1024 * 1024;

    if (getenv("TXCP_TOOL_AGO")) {
        /* runs that started that many seconds ago (retention tests) */
        now -= (int64_t) atoll(getenv("TXCP_TOOL_AGO")) * 1000000;
    }

    snprintf(path, sizeof(path), "%s/%016llx-%d.txs", dir,
             (unsigned long long) now, (int) getpid());

    fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0640);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0 || ftruncate(fd, cap) != 0)
    {
        perror(path);
        return 2;
    }

    base = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    tx_spool_hdr_init(base, getpid(), now, cap);
    off = TX_SPOOL_HDR_LEN;

    for (i = 0; i < n; i++) {
        randombytes_buf(rnd, sizeof(rnd));
        tx_run_id_make(id, now / 1000 + i, rnd);

        tx_wbuf_init_compact(&wb, rec, sizeof(rec));
        tx_rec_put_bytes(&wb, TX_RUN_ID, id, 16);
        tx_rec_put_i64(&wb, TX_RUN_START_US, now + i * 1000);
        tx_rec_put_cstr(&wb, TX_RUN_KEY_ID, key_id);

        if (ids) {
            tx_rec_put_cstr(&wb, TX_RUN_PROJECT, ids[0]);
            tx_rec_put_cstr(&wb, TX_RUN_USER, ids[1]);
            tx_rec_put_cstr(&wb, TX_RUN_ORG, ids[2]);
        }

        tx_rec_put_u64(&wb, TX_RUN_ENDPOINT, TX_EP_CHAT);
        tx_rec_put_cstr(&wb, TX_RUN_MODEL_REQ, "gpt-4o-mini");
        tx_rec_put_cstr(&wb, TX_RUN_MODEL, "gpt-4o-mini-2024-07-18");
        tx_rec_put_cstr(&wb, TX_RUN_PROVIDER, "openai");
        tx_rec_put_u64(&wb, TX_RUN_STATUS, i % 10 == 9 ? 500 : 200);
        tx_rec_put_u64(&wb, TX_RUN_UPSTREAM_STATUS, i % 10 == 9 ? 500 : 200);

        if (i % 10 == 9) {
            tx_rec_put_cstr(&wb, TX_RUN_ERROR_TYPE, "upstream_error");
            tx_rec_put_cstr(&wb, TX_RUN_ERROR, "upstream returned 500");
            tx_rec_put_cstr(&wb, TX_RUN_RESP_BODY,
                            "{\"error\":\"boom for ann@example.com\"}");
        }

        tx_rec_put_u64(&wb, TX_RUN_LATENCY_US, 12345);
        tx_rec_put_u64(&wb, TX_RUN_TOKENS_IN, 10 + i);
        tx_rec_put_u64(&wb, TX_RUN_TOKENS_OUT, 20);
        tx_rec_put_i64(&wb, TX_RUN_COST, 1250 + i);
        tx_rec_put_u64(&wb, TX_RUN_FLAGS,
                       TX_RUNF_SAMPLED | TX_RUNF_STREAM
                           | (i % 10 == 9 ? TX_RUNF_ERROR : 0));
        tx_rec_put_cstr(&wb, TX_RUN_TAGS, "team=a, env = ci,agent=bot");
        tx_rec_put_cstr(&wb, TX_RUN_METHOD, "POST");
        tx_rec_put_cstr(&wb, TX_RUN_REQ_BODY,
                        "{\"model\":\"gpt-4o-mini\",\n \"messages\":[{\"role\":"
                        "\"user\",\"content\":\"mail me at ann@example.com, "
                        "card 4111 1111 1111 1111\"}]}");
        len = wb.pos - wb.start;

        if (tx_spool_append(base, cap, &off, rec, len) != TX_OK) {
            fprintf(stderr, "spool full\n");
            return 2;
        }

        if (strcmp(mode, "torn") == 0 && i == n / 2) {
            /* corrupt the crc of this frame: a torn write */
            base[off - tx_spool_frame_size(len) + 4] ^= 0xff;
        }
    }

    if (strcmp(mode, "seal") == 0) {
        tx_spool_seal(base, cap, off);
    }

    printf("%s\n", path);
    fflush(stdout);

    if (hold > 0) {
        sleep(hold);
    }

    munmap(base, cap);
    close(fd);

    return 0;
}


int
main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        return 2;
    }

    if (argc == 3 && strcmp(argv[1], "snapdump") == 0) {
        return cmd_snapdump(argv[2]);
    }

    if (argc == 4 && strcmp(argv[1], "lookup") == 0) {
        return cmd_lookup(argv[2], argv[3]);
    }

    if (argc >= 4 && strcmp(argv[1], "spool") == 0) {
        return cmd_spool(argv[2], atoi(argv[3]), argc > 4 ? argv[4] : "seal",
                         argc > 5 ? atoi(argv[5]) : 0,
                         argc > 6 ? argv[6] : "key_test",
                         argc > 9 ? argv + 7 : NULL);
    }

    fprintf(stderr, "usage: see the comment at the top of txcp_tool.c\n");

    return 2;
}

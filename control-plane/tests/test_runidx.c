/*
 * Unit tests: the run index rows (txcp_runidx.h) against a model, on a
 * scratch LMDB env: batches in order and out of it, rows filling and
 * splitting, deletes, and iteration both ways from any bound.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "txcp_runidx.h"


#define KEYS 3
#define MAXN 4000


typedef struct {
    MDB_env *env;
    MDB_dbi  dbi;
    char     dir[64];
    uint8_t  ids[KEYS][MAXN][16]; /* the model: each key's ids, ascending */
    size_t   n[KEYS];
} fx_t;


static uint64_t rng = 88172645463325252ULL;


static uint64_t
rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}


/* an id whose order is t then r */
static void
mkid(uint8_t *id, uint64_t t, uint64_t r)
{
    int i;

    for (i = 0; i < 8; i++) {
        id[i] = (uint8_t) (t >> (56 - 8 * i));
        id[8 + i] = (uint8_t) (r >> (56 - 8 * i));
    }
}


/* index keys that share bytes, as real ones do ("k" + length + id) */
static size_t
mkkey(uint8_t *out, int k)
{
    static const char *const ids[KEYS] = {"key_a", "key_ab", "key_b"};
    size_t                   n;

    n = strlen(ids[k]);
    out[0] = 'k';
    out[1] = (uint8_t) n;
    memcpy(out + 2, ids[k], n);

    return n + 2;
}


static int
idcmp(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}


static void
model_add(fx_t *f, int k, const uint8_t *id)
{
    size_t i;

    for (i = 0; i < f->n[k]; i++) {
        if (memcmp(f->ids[k][i], id, 16) == 0) {
            return;
        }
    }

    assert_true(f->n[k] < MAXN);
    memcpy(f->ids[k][f->n[k]++], id, 16);
    qsort(f->ids[k], f->n[k], 16, idcmp);
}


static void
model_del(fx_t *f, int k, const uint8_t *id)
{
    size_t i;

    for (i = 0; i < f->n[k]; i++) {
        if (memcmp(f->ids[k][i], id, 16) == 0) {
            memmove(f->ids[k][i], f->ids[k][i + 1], (f->n[k] - i - 1) * 16);
            f->n[k]--;
            return;
        }
    }
}


static int
setup(void **state)
{
    fx_t    *f;
    MDB_txn *txn;

    f = calloc(1, sizeof(fx_t));
    assert_non_null(f);

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_runidx.XXXXXX");
    assert_non_null(mkdtemp(f->dir));

    assert_int_equal(mdb_env_create(&f->env), 0);
    mdb_env_set_maxdbs(f->env, 2);
    mdb_env_set_mapsize(f->env, 256 << 20);
    assert_int_equal(mdb_env_open(f->env, f->dir, MDB_NOSYNC, 0600), 0);
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "ix", MDB_CREATE, &f->dbi), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);

    *state = f;

    return 0;
}


static int
teardown(void **state)
{
    char  path[96];
    fx_t *f;

    f = *state;
    mdb_env_close(f->env);

    snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", f->dir);
    unlink(path);
    rmdir(f->dir);
    free(f);

    return 0;
}


/* every row well formed, and each key's rows hold the model's ids */
static void
check_rows(fx_t *f, MDB_txn *txn)
{
    int         k, rc;
    size_t      plen, n, i, seen[KEYS];
    uint8_t     key[TXCP_RUNIDX_PREFIX_MAX], prev[16];
    MDB_val     kv, v;
    MDB_cursor *c;

    memset(seen, 0, sizeof(seen));
    assert_int_equal(mdb_cursor_open(txn, f->dbi, &c), 0);

    for (rc = mdb_cursor_get(c, &kv, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &kv, &v, MDB_NEXT))
    {
        for (k = 0; k < KEYS; k++) {
            plen = mkkey(key, k);

            if (kv.mv_size == plen + 16 && memcmp(kv.mv_data, key, plen) == 0) {
                break;
            }
        }

        assert_true(k < KEYS);
        assert_true(v.mv_size > 0 && v.mv_size % 16 == 0);

        n = v.mv_size / 16;
        assert_true(n <= TXCP_RUNIDX_ROW);

        /* keyed by its last id */
        assert_memory_equal((uint8_t *) kv.mv_data + plen,
                            (uint8_t *) v.mv_data + (n - 1) * 16, 16);

        for (i = 0; i < n; i++) {
            if (seen[k]) {
                assert_true(memcmp(prev, (uint8_t *) v.mv_data + i * 16, 16)
                            < 0);
            }

            assert_true(seen[k] < f->n[k]);
            assert_memory_equal((uint8_t *) v.mv_data + i * 16,
                                f->ids[k][seen[k]], 16);
            memcpy(prev, (uint8_t *) v.mv_data + i * 16, 16);
            seen[k]++;
        }
    }

    assert_int_equal(rc, MDB_NOTFOUND);
    mdb_cursor_close(c);

    for (k = 0; k < KEYS; k++) {
        assert_int_equal(seen[k], f->n[k]);
    }
}


/* iteration from a bound, both ways, against the model */
static void
check_iter(fx_t *f, MDB_txn *txn, int k, const uint8_t *bound, int asc,
           int after)
{
    int              rc;
    size_t           plen, i, j, want;
    uint8_t          key[TXCP_RUNIDX_PREFIX_MAX];
    const uint8_t   *id;
    txcp_runidx_it_t it;

    plen = mkkey(key, k);

    assert_int_equal(txcp_runidx_open(&it, txn, f->dbi, key, plen, bound, asc,
                                      after),
                     0);

    /* the model's first index in the walk's order */
    for (i = 0; i < f->n[k] && memcmp(f->ids[k][i], bound, 16) < 0; i++) {
        /* void */
    }

    if (asc) {
        if (after && i < f->n[k] && memcmp(f->ids[k][i], bound, 16) == 0) {
            i++;
        }

        want = f->n[k] - i;

    } else {
        want = i;
    }

    for (j = 0; j < want; j++) {
        assert_int_equal(txcp_runidx_next(&it, &id), 0);
        assert_memory_equal(id, f->ids[k][asc ? i + j : i - 1 - j], 16);
    }

    rc = txcp_runidx_next(&it, &id);
    assert_int_equal(rc, MDB_NOTFOUND);

    txcp_runidx_close(&it);
}


static void
check_all(fx_t *f)
{
    int      k, t;
    size_t   n;
    uint8_t  bound[16];
    MDB_txn *txn;

    assert_int_equal(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), 0);

    check_rows(f, txn);

    for (k = 0; k < KEYS; k++) {
        for (t = 0; t < 24; t++) {
            n = f->n[k];

            switch (t % 4) {
            case 0: /* an id of the key */
                if (n == 0) {
                    continue;
                }
                memcpy(bound, f->ids[k][rnd() % n], 16);
                break;
            case 1: /* between ids, or outside them all */
                mkid(bound, rnd() % 2200, rnd());
                break;
            case 2:
                memset(bound, 0, 16);
                break;
            default:
                memset(bound, 0xff, 16);
            }

            check_iter(f, txn, k, bound, 0, 0);
            check_iter(f, txn, k, bound, 1, 0);
            check_iter(f, txn, k, bound, 1, 1);
        }
    }

    mdb_txn_abort(txn);
}


/* a batch: ascending ids of several keys through the queue */
static void
batch(fx_t *f, txcp_runidx_buf_t *b, uint64_t *t, size_t n, int late)
{
    int      k;
    size_t   i, plen;
    uint8_t  key[TXCP_RUNIDX_PREFIX_MAX], id[16];
    MDB_txn *txn;

    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);

    for (i = 0; i < n; i++) {
        k = (int) (rnd() % KEYS);
        plen = mkkey(key, k);

        if (late && rnd() % 4 == 0) {
            /* logged after a later one: out of order, or before the batch */
            mkid(id, *t - rnd() % (late * 30 + 1), rnd());

        } else {
            mkid(id, (*t)++, rnd());
        }

        assert_int_equal(txcp_runidx_queue(b, key, plen, id), 0);
        model_add(f, k, id);
    }

    assert_int_equal(txcp_runidx_flush(b, txn, f->dbi), 0);
    assert_int_equal(b->queued, 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}


static void
test_in_order(void **state)
{
    int               i;
    uint64_t          t;
    fx_t             *f;
    txcp_runidx_buf_t b;

    f = *state;
    memset(&b, 0, sizeof(b));
    t = 1000;

    /* batches of 1 to 300: rows fill up across batches */
    for (i = 0; i < 20; i++) {
        batch(f, &b, &t, 1 + rnd() % 300, 0);
        check_all(f);
    }

    txcp_runidx_free(&b);
}


static void
test_late_and_deleted(void **state)
{
    int               i, k;
    size_t            plen, j;
    uint64_t          t;
    uint8_t           key[TXCP_RUNIDX_PREFIX_MAX], id[16];
    fx_t             *f;
    MDB_txn          *txn;
    txcp_runidx_buf_t b;

    f = *state;
    memset(&b, 0, sizeof(b));
    t = 1000;

    for (i = 0; i < 16; i++) {
        batch(f, &b, &t, 1 + rnd() % 400, 1 + i % 3);

        /* a replayed id is not added twice */
        assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
        k = (int) (rnd() % KEYS);
        plen = mkkey(key, k);
        if (f->n[k]) {
            memcpy(id, f->ids[k][rnd() % f->n[k]], 16);
            assert_int_equal(txcp_runidx_add(txn, f->dbi, key, plen, id, 1), 0);
        }

        /* deletes: the oldest (retention), and anywhere */
        for (j = 0; j < 40; j++) {
            k = (int) (rnd() % KEYS);
            plen = mkkey(key, k);

            if (f->n[k] == 0) {
                continue;
            }

            memcpy(id, f->ids[k][j % 2 ? 0 : rnd() % f->n[k]], 16);
            assert_int_equal(txcp_runidx_del(txn, f->dbi, key, plen, id), 0);
            model_del(f, k, id);

            /* again: no longer there, no error */
            assert_int_equal(txcp_runidx_del(txn, f->dbi, key, plen, id), 0);
        }

        assert_int_equal(mdb_txn_commit(txn), 0);
        check_all(f);
    }

    /* everything deleted: no rows left */
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);

    for (k = 0; k < KEYS; k++) {
        plen = mkkey(key, k);

        while (f->n[k]) {
            memcpy(id, f->ids[k][rnd() % f->n[k]], 16);
            assert_int_equal(txcp_runidx_del(txn, f->dbi, key, plen, id), 0);
            model_del(f, k, id);
        }
    }

    assert_int_equal(mdb_txn_commit(txn), 0);
    check_all(f);

    txcp_runidx_free(&b);
}


/* two workers' files of the same seconds, one read after the other */
static void
test_interleaved_files(void **state)
{
    int               k, f2;
    size_t            i, plen;
    uint8_t           key[TXCP_RUNIDX_PREFIX_MAX], id[16];
    fx_t             *f;
    MDB_txn          *txn;
    txcp_runidx_buf_t b;

    f = *state;
    memset(&b, 0, sizeof(b));

    for (f2 = 0; f2 < 2; f2++) {
        assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);

        for (i = 0; i < 900; i++) {
            k = (int) (rnd() % KEYS);
            plen = mkkey(key, k);
            mkid(id, 1000 + 2 * i + f2, rnd());

            assert_int_equal(txcp_runidx_queue(&b, key, plen, id), 0);
            model_add(f, k, id);
        }

        assert_int_equal(txcp_runidx_flush(&b, txn, f->dbi), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        check_all(f);
    }

    txcp_runidx_free(&b);
}


static void
test_aborted_batch(void **state)
{
    size_t            plen;
    uint8_t           key[TXCP_RUNIDX_PREFIX_MAX], id[16];
    fx_t             *f;
    MDB_txn          *txn;
    txcp_runidx_buf_t b;

    f = *state;
    memset(&b, 0, sizeof(b));

    /* queued, then the txn aborted: reset forgets them */
    plen = mkkey(key, 0);
    mkid(id, 5, 5);
    assert_int_equal(txcp_runidx_queue(&b, key, plen, id), 0);
    assert_int_equal(b.queued, 1);
    txcp_runidx_reset(&b);

    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
    assert_int_equal(txcp_runidx_flush(&b, txn, f->dbi), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    check_all(f);

    txcp_runidx_free(&b);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_and_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interleaved_files, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_aborted_batch, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

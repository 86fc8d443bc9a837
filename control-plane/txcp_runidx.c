/*
 * torrix-cp run index rows (see txcp_runidx.h).
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "txcp_runidx.h"


#define TXCP_RUNIDX_ID 16


/* k is a row of the index key prefix */
static int
txcp_runidx_is_row(const MDB_val *k, const uint8_t *prefix, size_t plen)
{
    return k->mv_size == plen + TXCP_RUNIDX_ID
           && memcmp(k->mv_data, prefix, plen) == 0;
}


/* ids in a row value, 0 for a damaged one (skipped) */
static size_t
txcp_runidx_count(const MDB_val *v)
{
    if (v->mv_size == 0 || v->mv_size % TXCP_RUNIDX_ID != 0
        || v->mv_size > TXCP_RUNIDX_ROW * 2 * TXCP_RUNIDX_ID)
    {
        return 0;
    }

    return v->mv_size / TXCP_RUNIDX_ID;
}


/* the index of the first of ids[0..n) >= id */
static size_t
txcp_runidx_lower(const uint8_t *ids, size_t n, const uint8_t *id)
{
    size_t lo, hi, mid;

    lo = 0;
    hi = n;

    while (lo < hi) {
        mid = (lo + hi) / 2;

        if (memcmp(ids + mid * TXCP_RUNIDX_ID, id, TXCP_RUNIDX_ID) < 0) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return lo;
}


/*
 * Positions c on the last row of prefix (key holds prefix): 0 with *k, *v
 * the row, MDB_NOTFOUND when prefix has none, or an rc.
 */
static int
txcp_runidx_last(MDB_cursor *c, uint8_t *key, size_t plen, MDB_val *k,
                 MDB_val *v)
{
    int rc;

    memset(key + plen, 0xff, TXCP_RUNIDX_ID);
    k->mv_data = key;
    k->mv_size = plen + TXCP_RUNIDX_ID;

    rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);

    if (rc == 0) {
        rc = mdb_cursor_get(c, k, v, MDB_PREV);

    } else if (rc == MDB_NOTFOUND) {
        rc = mdb_cursor_get(c, k, v, MDB_LAST);
    }

    if (rc == 0 && !txcp_runidx_is_row(k, key, plen)) {
        rc = MDB_NOTFOUND;
    }

    return rc;
}


#define TXCP_RUNIDX_MERGE 256 /* late ids merged into a row at a time */


/*
 * Merges ids[0..n) (ascending, none past the key's newest) into the rows
 * that cover them (the first row whose last id is >= an id), each row
 * read and written once for all of its ids: a row that grows past
 * TXCP_RUNIDX_ROW is written as several of equal size, each but the last
 * (which keeps the row's key) keyed by its own last id.  Ids already there
 * are skipped.  Sets *done to how many of ids were placed.
 */
static int
txcp_runidx_merge(MDB_cursor *c, uint8_t *key, size_t plen, const uint8_t *ids,
                  size_t n, size_t *done)
{
    int     rc;
    size_t  rn, m, a, b, t, parts, part, size;
    uint8_t row[(TXCP_RUNIDX_ROW * 2 + TXCP_RUNIDX_MERGE) * TXCP_RUNIDX_ID];
    uint8_t rkey[TXCP_RUNIDX_KEY_MAX];
    const uint8_t *r;
    MDB_val        k, v;

    *done = 0;

    memcpy(key + plen, ids, TXCP_RUNIDX_ID);
    k.mv_data = key;
    k.mv_size = plen + TXCP_RUNIDX_ID;

    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }

    rn = rc == 0 && txcp_runidx_is_row(&k, key, plen) ? txcp_runidx_count(&v)
                                                      : 0;

    if (rn == 0) {
        /* no row covers it (or a damaged one): a row of its own */
        memcpy(key + plen, ids, TXCP_RUNIDX_ID);
        k.mv_data = key;
        k.mv_size = plen + TXCP_RUNIDX_ID;
        v.mv_data = (void *) ids;
        v.mv_size = TXCP_RUNIDX_ID;

        *done = 1;

        return mdb_cursor_put(c, &k, &v, 0);
    }

    memcpy(rkey, k.mv_data, k.mv_size);
    r = v.mv_data;

    /* the ids this row covers (its last id is >= each) */

    for (m = 1;
         m < n && m < TXCP_RUNIDX_MERGE
         && memcmp(ids + m * TXCP_RUNIDX_ID, rkey + plen, TXCP_RUNIDX_ID) <= 0;
         m++)
    {
        /* void */
    }

    /* merge the row's ids and ids[0..m), one copy of each */

    a = 0;
    b = 0;
    t = 0;

    while (a < rn || b < m) {
        if (b == m
            || (a < rn
                && memcmp(r + a * TXCP_RUNIDX_ID, ids + b * TXCP_RUNIDX_ID,
                          TXCP_RUNIDX_ID)
                       <= 0))
        {
            if (b < m
                && memcmp(r + a * TXCP_RUNIDX_ID, ids + b * TXCP_RUNIDX_ID,
                          TXCP_RUNIDX_ID)
                       == 0)
            {
                b++;
            }

            memcpy(row + t++ * TXCP_RUNIDX_ID, r + a++ * TXCP_RUNIDX_ID,
                   TXCP_RUNIDX_ID);

        } else {
            memcpy(row + t++ * TXCP_RUNIDX_ID, ids + b++ * TXCP_RUNIDX_ID,
                   TXCP_RUNIDX_ID);
        }
    }

    *done = m;

    /* written back as rows of equal size, the last under the row's key */

    parts = (t + TXCP_RUNIDX_ROW - 1) / TXCP_RUNIDX_ROW;
    a = 0;

    for (part = 0; part < parts; part++) {
        size = (t - a) / (parts - part);

        if (part == parts - 1) {
            memcpy(key + plen, rkey + plen, TXCP_RUNIDX_ID);

        } else {
            memcpy(key + plen, row + (a + size - 1) * TXCP_RUNIDX_ID,
                   TXCP_RUNIDX_ID);
        }

        k.mv_data = key;
        k.mv_size = plen + TXCP_RUNIDX_ID;
        v.mv_data = row + a * TXCP_RUNIDX_ID;
        v.mv_size = size * TXCP_RUNIDX_ID;

        rc = mdb_cursor_put(c, &k, &v, 0);
        if (rc != 0) {
            return rc;
        }

        a += size;
    }

    return 0;
}


int
txcp_runidx_add(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t plen,
                const uint8_t *ids, size_t n)
{
    int         rc;
    size_t      i, m, rn, late;
    uint8_t     key[TXCP_RUNIDX_KEY_MAX], last[TXCP_RUNIDX_ID];
    uint8_t     row[TXCP_RUNIDX_ROW * TXCP_RUNIDX_ID];
    MDB_val     k, v;
    MDB_cursor *c;

    if (n == 0) {
        return 0;
    }

    if (plen > TXCP_RUNIDX_PREFIX_MAX) {
        return EINVAL;
    }

    rc = mdb_cursor_open(txn, dbi, &c);
    if (rc != 0) {
        return rc;
    }

    memcpy(key, prefix, plen);
    i = 0;

    rc = txcp_runidx_last(c, key, plen, &k, &v);

    if (rc == 0) {
        /*
         * ids not past the key's newest (a file of another worker read
         * after this one's, runs logged late) go into the rows that cover
         * them, a row at a time
         */

        memcpy(last, (uint8_t *) k.mv_data + plen, TXCP_RUNIDX_ID);

        for (late = 0;
             late < n
             && memcmp(ids + late * TXCP_RUNIDX_ID, last, TXCP_RUNIDX_ID) <= 0;
             late++)
        {
            /* void */
        }

        while (i < late) {
            rc = txcp_runidx_merge(c, key, plen, ids + i * TXCP_RUNIDX_ID,
                                   late - i, &m);
            if (rc != 0) {
                goto done;
            }

            i += m;
        }

        if (late) {
            rc = txcp_runidx_last(c, key, plen, &k, &v);
            if (rc != 0) {
                goto done;
            }
        }

        /* the rest fill up the last row first */

        rn = txcp_runidx_count(&v);

        if (i < n && rn > 0 && rn < TXCP_RUNIDX_ROW) {
            m = TXCP_RUNIDX_ROW - rn;
            m = m < n - i ? m : n - i;

            memcpy(row, v.mv_data, rn * TXCP_RUNIDX_ID);
            memcpy(row + rn * TXCP_RUNIDX_ID, ids + i * TXCP_RUNIDX_ID,
                   m * TXCP_RUNIDX_ID);
            rn += m;
            i += m;

            /* its key changes with its last id */
            rc = mdb_cursor_del(c, 0);
            if (rc != 0) {
                goto done;
            }

            memcpy(key + plen, row + (rn - 1) * TXCP_RUNIDX_ID, TXCP_RUNIDX_ID);
            k.mv_data = key;
            k.mv_size = plen + TXCP_RUNIDX_ID;
            v.mv_data = row;
            v.mv_size = rn * TXCP_RUNIDX_ID;

            rc = mdb_cursor_put(c, &k, &v, 0);
            if (rc != 0) {
                goto done;
            }
        }

    } else if (rc != MDB_NOTFOUND) {
        goto done;
    }

    rc = 0;

    while (i < n) {
        m = n - i < TXCP_RUNIDX_ROW ? n - i : TXCP_RUNIDX_ROW;

        memcpy(key + plen, ids + (i + m - 1) * TXCP_RUNIDX_ID, TXCP_RUNIDX_ID);
        k.mv_data = key;
        k.mv_size = plen + TXCP_RUNIDX_ID;
        v.mv_data = (void *) (ids + i * TXCP_RUNIDX_ID);
        v.mv_size = m * TXCP_RUNIDX_ID;

        rc = mdb_cursor_put(c, &k, &v, 0);
        if (rc != 0) {
            goto done;
        }

        i += m;
    }

done:

    mdb_cursor_close(c);

    return rc;
}


int
txcp_runidx_del(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t plen,
                const uint8_t *id)
{
    int         rc;
    size_t      n, p;
    uint8_t     key[TXCP_RUNIDX_KEY_MAX];
    uint8_t     row[TXCP_RUNIDX_ROW * 2 * TXCP_RUNIDX_ID];
    MDB_val     k, v;
    MDB_cursor *c;

    if (plen > TXCP_RUNIDX_PREFIX_MAX) {
        return EINVAL;
    }

    rc = mdb_cursor_open(txn, dbi, &c);
    if (rc != 0) {
        return rc;
    }

    memcpy(key, prefix, plen);
    memcpy(key + plen, id, TXCP_RUNIDX_ID);
    k.mv_data = key;
    k.mv_size = plen + TXCP_RUNIDX_ID;

    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);

    if (rc != 0 || !txcp_runidx_is_row(&k, key, plen)) {
        rc = rc == 0 ? MDB_NOTFOUND : rc;
        goto done;
    }

    n = txcp_runidx_count(&v);
    p = txcp_runidx_lower(v.mv_data, n, id);

    if (p == n
        || memcmp((uint8_t *) v.mv_data + p * TXCP_RUNIDX_ID, id,
                  TXCP_RUNIDX_ID)
               != 0)
    {
        rc = MDB_NOTFOUND;
        goto done;
    }

    memcpy(row, v.mv_data, p * TXCP_RUNIDX_ID);
    memcpy(row + p * TXCP_RUNIDX_ID,
           (uint8_t *) v.mv_data + (p + 1) * TXCP_RUNIDX_ID,
           (n - p - 1) * TXCP_RUNIDX_ID);
    n--;

    if (n == 0 || p == n) {
        /* the row goes, or its key changes with its last id */
        rc = mdb_cursor_del(c, 0);
        if (rc != 0 || n == 0) {
            goto done;
        }

        memcpy(key + plen, row + (n - 1) * TXCP_RUNIDX_ID, TXCP_RUNIDX_ID);
        k.mv_data = key;

    } else {
        memcpy(key + plen, (uint8_t *) k.mv_data + plen, TXCP_RUNIDX_ID);
        k.mv_data = key;
    }

    k.mv_size = plen + TXCP_RUNIDX_ID;
    v.mv_data = row;
    v.mv_size = n * TXCP_RUNIDX_ID;

    rc = mdb_cursor_put(c, &k, &v, 0);

done:

    mdb_cursor_close(c);

    return rc == MDB_NOTFOUND ? 0 : rc;
}


/* it takes the row at its cursor (k, v) */
static void
txcp_runidx_load(txcp_runidx_it_t *it, const MDB_val *v)
{
    it->ids = v->mv_data;
    it->n = (ssize_t) txcp_runidx_count(v);
}


int
txcp_runidx_open(txcp_runidx_it_t *it, MDB_txn *txn, MDB_dbi dbi,
                 const uint8_t *prefix, size_t plen, const uint8_t *bound,
                 int asc, int after)
{
    int     rc;
    size_t  p;
    uint8_t key[TXCP_RUNIDX_KEY_MAX];
    MDB_val k, v;

    memset(it, 0, sizeof(txcp_runidx_it_t));
    it->asc = asc;
    it->pos = asc ? 0 : -1;
    it->done = 1;

    if (plen > TXCP_RUNIDX_PREFIX_MAX) {
        return EINVAL;
    }

    memcpy(it->prefix, prefix, plen);
    it->plen = plen;

    rc = mdb_cursor_open(txn, dbi, &it->cur);
    if (rc != 0) {
        it->cur = NULL;
        return rc;
    }

    /* the first row whose last id is >= bound: bound falls in it, if any */

    memcpy(key, prefix, plen);
    memcpy(key + plen, bound, TXCP_RUNIDX_ID);
    k.mv_data = key;
    k.mv_size = plen + TXCP_RUNIDX_ID;

    rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET_RANGE);

    if (rc == 0 && txcp_runidx_is_row(&k, prefix, plen)) {
        txcp_runidx_load(it, &v);
        p = txcp_runidx_lower(it->ids, (size_t) it->n, bound);

        if (asc) {
            p += after && p < (size_t) it->n
                 && memcmp(it->ids + p * TXCP_RUNIDX_ID, bound, TXCP_RUNIDX_ID)
                        == 0;
            it->pos = (ssize_t) p;

        } else {
            it->pos = (ssize_t) p - 1;
        }

        it->done = 0;
        return 0;
    }

    if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }

    if (asc) {
        /* every id of prefix is before bound */
        return 0;
    }

    /* all of the row before (if it is prefix's) is before bound */

    rc = rc == 0 ? mdb_cursor_get(it->cur, &k, &v, MDB_PREV)
                 : mdb_cursor_get(it->cur, &k, &v, MDB_LAST);

    if (rc == 0 && txcp_runidx_is_row(&k, prefix, plen)) {
        txcp_runidx_load(it, &v);
        it->pos = it->n - 1;
        it->done = 0;
    }

    return rc == MDB_NOTFOUND ? 0 : rc;
}


int
txcp_runidx_next(txcp_runidx_it_t *it, const uint8_t **id)
{
    int     rc;
    MDB_val k, v;

    if (it->done) {
        return MDB_NOTFOUND;
    }

    while (it->asc ? it->pos >= it->n : it->pos < 0) {
        rc = mdb_cursor_get(it->cur, &k, &v, it->asc ? MDB_NEXT : MDB_PREV);

        if (rc != 0 || !txcp_runidx_is_row(&k, it->prefix, it->plen)) {
            it->done = 1;
            return rc == 0 ? MDB_NOTFOUND : rc;
        }

        txcp_runidx_load(it, &v);
        it->pos = it->asc ? 0 : it->n - 1;
    }

    *id = it->ids + it->pos * TXCP_RUNIDX_ID;
    it->pos += it->asc ? 1 : -1;

    return 0;
}


void
txcp_runidx_close(txcp_runidx_it_t *it)
{
    if (it->cur) {
        mdb_cursor_close(it->cur);
        it->cur = NULL;
    }
}


/* a 64-bit multiply-xor hash of the index key, eight bytes a step */
static uint32_t
txcp_runidx_hash(const uint8_t *p, size_t len)
{
    uint64_t h, w;

    h = 0x9e3779b97f4a7c15ULL ^ len;

    while (len >= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        p += 8;
        len -= 8;
    }

    w = 0;
    memcpy(&w, p, len);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;

    return (uint32_t) h;
}


static int
txcp_runidx_grow(void **p, size_t *cap, size_t need, size_t size)
{
    void  *np;
    size_t nc;

    if (need <= *cap) {
        return 0;
    }

    nc = *cap ? *cap : 16;

    while (nc < need) {
        nc *= 2;
    }

    np = realloc(*p, nc * size);
    if (np == NULL) {
        return ENOMEM;
    }

    *p = np;
    *cap = nc;

    return 0;
}


/* (re)builds the slot table with at least twice as many slots as groups */
static int
txcp_runidx_rehash(txcp_runidx_buf_t *b)
{
    size_t    i, j, n, mask;
    uint32_t *slot;

    n = b->nslot ? b->nslot * 2 : 64;

    slot = calloc(n, sizeof(uint32_t));
    if (slot == NULL) {
        return ENOMEM;
    }

    mask = n - 1;

    for (i = 0; i < b->ngrp; i++) {
        for (j = b->grp[i].hash & mask; slot[j]; j = (j + 1) & mask) {
            /* void */
        }

        slot[j] = (uint32_t) i + 1;
    }

    free(b->slot);
    b->slot = slot;
    b->nslot = n;

    return 0;
}


int
txcp_runidx_queue(txcp_runidx_buf_t *b, const uint8_t *prefix, size_t plen,
                  const uint8_t *id)
{
    size_t             i, mask;
    uint32_t           h;
    txcp_runidx_grp_t *g;

    if (plen > TXCP_RUNIDX_PREFIX_MAX) {
        return EINVAL;
    }

    if ((b->ngrp + 1) * 2 > b->nslot && txcp_runidx_rehash(b) != 0) {
        return ENOMEM;
    }

    h = txcp_runidx_hash(prefix, plen);
    mask = b->nslot - 1;
    g = NULL;

    for (i = h & mask; b->slot[i]; i = (i + 1) & mask) {
        g = &b->grp[b->slot[i] - 1];

        if (g->hash == h && g->plen == plen
            && memcmp(b->keys + g->off, prefix, plen) == 0)
        {
            break;
        }

        g = NULL;
    }

    if (g == NULL) {
        if (txcp_runidx_grow((void **) &b->keys, &b->kcap, b->klen + plen, 1)
            != 0) {
            return ENOMEM;
        }

        if (b->ngrp == b->gcap) {
            /* new groups start zeroed; old ones keep their ids' memory */
            if (txcp_runidx_grow((void **) &b->grp, &b->gcap, b->ngrp + 1,
                                 sizeof(txcp_runidx_grp_t))
                != 0)
            {
                return ENOMEM;
            }

            memset(&b->grp[b->ngrp], 0,
                   (b->gcap - b->ngrp) * sizeof(txcp_runidx_grp_t));
        }

        g = &b->grp[b->ngrp];
        g->off = (uint32_t) b->klen;
        g->plen = (uint32_t) plen;
        g->hash = h;
        g->n = 0;

        memcpy(b->keys + b->klen, prefix, plen);
        b->klen += plen;

        b->slot[i] = (uint32_t) ++b->ngrp;
    }

    if (txcp_runidx_grow((void **) &g->ids, &g->cap, g->n + 1, TXCP_RUNIDX_ID)
        != 0) {
        return ENOMEM;
    }

    memcpy(g->ids + g->n * TXCP_RUNIDX_ID, id, TXCP_RUNIDX_ID);
    g->n++;
    b->queued++;

    return 0;
}


/*
 * Eight bytes of an id as a number (byte order is numeric order): the
 * sort's compare, inline (txcp_get_be64() is the daemon's, a call and a
 * loop, and this file stands alone for its unit test)
 */
static uint64_t
txcp_runidx_be64(const uint8_t *p)
{
    uint64_t w;

    memcpy(&w, p, 8);

    return __builtin_bswap64(w);
}


static int
txcp_runidx_cmp(const void *a, const void *b)
{
    return memcmp(a, b, TXCP_RUNIDX_ID);
}


/*
 * Insertion sort: a key's ids come in log order, which is time order up to
 * the random part within a millisecond and the requests in flight, so each
 * id moves a few places at most.  The ids of workers' files read side by
 * side interleave: past a few moves an id, the sort is left to qsort.
 */
static void
txcp_runidx_sort(uint8_t *ids, size_t n)
{
    size_t   i, j, moves;
    uint64_t hi, lo, phi, plo;
    uint8_t  t[TXCP_RUNIDX_ID];

    moves = 0;

    for (i = 1; i < n; i++) {
        if (moves > 32 * n) {
            qsort(ids, n, TXCP_RUNIDX_ID, txcp_runidx_cmp);
            return;
        }

        hi = txcp_runidx_be64(ids + i * TXCP_RUNIDX_ID);
        lo = txcp_runidx_be64(ids + i * TXCP_RUNIDX_ID + 8);

        for (j = i; j > 0; j--) {
            phi = txcp_runidx_be64(ids + (j - 1) * TXCP_RUNIDX_ID);
            plo = txcp_runidx_be64(ids + (j - 1) * TXCP_RUNIDX_ID + 8);

            if (phi < hi || (phi == hi && plo <= lo)) {
                break;
            }
        }

        if (j == i) {
            continue;
        }

        moves += i - j;

        memcpy(t, ids + i * TXCP_RUNIDX_ID, TXCP_RUNIDX_ID);
        memmove(ids + (j + 1) * TXCP_RUNIDX_ID, ids + j * TXCP_RUNIDX_ID,
                (i - j) * TXCP_RUNIDX_ID);
        memcpy(ids + j * TXCP_RUNIDX_ID, t, TXCP_RUNIDX_ID);
    }
}


int
txcp_runidx_flush(txcp_runidx_buf_t *b, MDB_txn *txn, MDB_dbi dbi)
{
    int                rc;
    size_t             i;
    txcp_runidx_grp_t *g;

    rc = 0;

    for (i = 0; i < b->ngrp && rc == 0; i++) {
        g = &b->grp[i];

        txcp_runidx_sort(g->ids, g->n);

        rc = txcp_runidx_add(txn, dbi, b->keys + g->off, g->plen, g->ids, g->n);
    }

    txcp_runidx_reset(b);

    return rc;
}


void
txcp_runidx_reset(txcp_runidx_buf_t *b)
{
    size_t i;

    for (i = 0; i < b->ngrp; i++) {
        b->grp[i].n = 0;
    }

    b->ngrp = 0;
    b->klen = 0;
    b->queued = 0;

    if (b->slot) {
        memset(b->slot, 0, b->nslot * sizeof(uint32_t));
    }
}


void
txcp_runidx_free(txcp_runidx_buf_t *b)
{
    size_t i;

    for (i = 0; i < b->gcap; i++) {
        free(b->grp[i].ids);
    }

    free(b->grp);
    free(b->keys);
    free(b->slot);

    memset(b, 0, sizeof(txcp_runidx_buf_t));
}

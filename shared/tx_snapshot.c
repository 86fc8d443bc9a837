/*
 * Torrix snapshot record decoders and model globs (see tx_snapshot.h).
 *
 * A field that appears twice keeps its last value; writers never do that.
 */

#include <string.h>

#include "tx_snapshot.h"
#include "tx_record.h"


int
tx_key_rec_decode(const void *val, size_t len, tx_key_rec_t *k)
{
    int           rc;
    uint16_t      tag;
    uint64_t     *u;
    int64_t      *i;
    tx_str_t      v, *s;
    tx_rec_iter_t it;

    memset(k, 0, sizeof(tx_key_rec_t));
    tx_rec_iter_init(&it, val, len);

    for (;;) {
        rc = tx_rec_next(&it, &tag, &v);

        if (rc == TX_DONE) {
            return TX_OK;
        }

        if (rc != TX_OK) {
            return TX_ERROR;
        }

        s = NULL;
        u = NULL;
        i = NULL;

        switch (tag) {
        case TX_KEY_ID:
            s = &k->id;
            break;
        case TX_KEY_NAME:
            s = &k->name;
            break;
        case TX_KEY_PROJECT:
            s = &k->project;
            break;
        case TX_KEY_USER:
            s = &k->user;
            break;
        case TX_KEY_ORG:
            s = &k->org;
            break;
        case TX_KEY_MODELS:
            s = &k->models;
            break;
        case TX_KEY_METADATA:
            s = &k->metadata;
            break;
        case TX_KEY_ACCESS:
            u = &k->access;
            break;
        case TX_KEY_STATUS:
            u = &k->status;
            break;
        case TX_KEY_EXPIRES_AT:
            i = &k->expires_at;
            break;
        case TX_KEY_RPM:
            u = &k->rpm;
            break;
        case TX_KEY_TPM:
            u = &k->tpm;
            break;
        case TX_KEY_DAILY_CAP:
            i = &k->daily_cap;
            break;
        case TX_KEY_MONTHLY_BUDGET:
            i = &k->monthly_budget;
            break;
        case TX_KEY_SOFT_PCT:
            u = &k->soft_pct;
            break;
        default:
            break;
        }

        if (s) {
            *s = v;

        } else if (u) {
            if (tx_rec_u64(&v, u) != TX_OK) {
                return TX_ERROR;
            }

        } else if (i) {
            if (tx_rec_i64(&v, i) != TX_OK) {
                return TX_ERROR;
            }
        }
    }
}


int
tx_khash_rec_decode(const void *val, size_t len, tx_khash_rec_t *kh)
{
    int           rc;
    uint16_t      tag;
    tx_str_t      v;
    tx_rec_iter_t it;

    memset(kh, 0, sizeof(tx_khash_rec_t));
    tx_rec_iter_init(&it, val, len);

    for (;;) {
        rc = tx_rec_next(&it, &tag, &v);

        if (rc == TX_DONE) {
            return TX_OK;
        }

        if (rc != TX_OK) {
            return TX_ERROR;
        }

        switch (tag) {
        case TX_KH_KEY_ID:
            kh->key_id = v;
            break;

        case TX_KH_NOT_AFTER:
            if (tx_rec_i64(&v, &kh->not_after) != TX_OK) {
                return TX_ERROR;
            }
            break;

        default:
            break;
        }
    }
}


int
tx_provider_rec_decode(const void *val, size_t len, tx_provider_rec_t *p)
{
    int           rc;
    uint16_t      tag;
    tx_str_t      v;
    tx_rec_iter_t it;

    memset(p, 0, sizeof(tx_provider_rec_t));
    tx_rec_iter_init(&it, val, len);

    for (;;) {
        rc = tx_rec_next(&it, &tag, &v);

        if (rc == TX_DONE) {
            return TX_OK;
        }

        if (rc != TX_OK) {
            return TX_ERROR;
        }

        switch (tag) {
        case TX_PRV_NAME:
            p->name = v;
            break;

        case TX_PRV_BASE_URL:
            p->base_url = v;
            break;

        case TX_PRV_API_KEY:
            p->api_key = v;
            break;

        case TX_PRV_SEALED:
            p->sealed = v;
            break;

        case TX_PRV_KIND:
            if (tx_rec_u64(&v, &p->kind) != TX_OK) {
                return TX_ERROR;
            }
            break;

        default:
            break;
        }
    }
}


/*
 * Iterative match with backtracking to the last '*' only: O(plen * slen)
 * worst case, no recursion, no allocation.
 */

int
tx_glob_match(const uint8_t *pat, size_t plen, const uint8_t *s, size_t slen)
{
    size_t pi, si, star, mark;
    int    have_star;

    pi = 0;
    si = 0;
    star = 0;
    mark = 0;
    have_star = 0;

    while (si < slen) {
        if (pi < plen && pat[pi] == '*') {
            have_star = 1;
            star = ++pi;
            mark = si;
            continue;
        }

        if (pi < plen && pat[pi] == s[si]) {
            pi++;
            si++;
            continue;
        }

        if (!have_star) {
            return 0;
        }

        pi = star;
        si = ++mark;
    }

    while (pi < plen && pat[pi] == '*') {
        pi++;
    }

    return pi == plen;
}


int
tx_glob_list_match(const tx_str_t *patterns, const uint8_t *model, size_t len)
{
    const uint8_t *p, *end, *nl;

    if (patterns == NULL || patterns->len == 0) {
        return 0;
    }

    p = patterns->data;
    end = p + patterns->len;

    while (p < end) {
        nl = memchr(p, '\n', (size_t) (end - p));

        if (nl == NULL) {
            nl = end;
        }

        if (nl > p && tx_glob_match(p, (size_t) (nl - p), model, len)) {
            return 1;
        }

        p = nl + 1;
    }

    return 0;
}

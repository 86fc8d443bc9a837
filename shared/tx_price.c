/*
 * Torrix pricing (see tx_price.h).
 *
 * Costs are summed in 128 bits (a token count times a price is below 2^127)
 * and rounded once.  Decimal prices are converted digit by digit, never
 * through a double.
 */

#include <string.h>

#include "tx_price.h"


#define TX_PRICE_SCALE  1000000 /* prices are per 1M tokens */
#define TX_PRICE_DIGITS 14      /* USD per token -> money per 1M tokens */
#define TX_PRICE_EXPCAP 100000

/* no single term may reach this: the sum of four stays far from 2^128 */
#define TX_PRICE_TERM_MAX ((unsigned __int128) 1 << 100)


typedef unsigned __int128 tx_u128_t;


int
tx_price_decode(const void *val, size_t len, tx_price_t *p)
{
    int           rc;
    uint16_t      tag;
    uint64_t      u;
    tx_str_t      v;
    tx_rec_iter_t it;

    memset(p, 0, sizeof(tx_price_t));
    p->cache_read = -1;
    p->cache_write = -1;
    p->cache_read_above = -1;
    p->cache_write_above = -1;

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
        case TX_PRICE_IN:
            rc = tx_rec_i64(&v, &p->in);
            break;
        case TX_PRICE_OUT:
            rc = tx_rec_i64(&v, &p->out);
            break;
        case TX_PRICE_CACHE_READ:
            rc = tx_rec_i64(&v, &p->cache_read);
            break;
        case TX_PRICE_CACHE_WRITE:
            rc = tx_rec_i64(&v, &p->cache_write);
            break;
        case TX_PRICE_TIER:
            rc = tx_rec_u64(&v, &p->tier);
            break;
        case TX_PRICE_IN_ABOVE:
            rc = tx_rec_i64(&v, &p->in_above);
            break;
        case TX_PRICE_OUT_ABOVE:
            rc = tx_rec_i64(&v, &p->out_above);
            break;
        case TX_PRICE_CACHE_READ_ABOVE:
            rc = tx_rec_i64(&v, &p->cache_read_above);
            break;
        case TX_PRICE_CACHE_WRITE_ABOVE:
            rc = tx_rec_i64(&v, &p->cache_write_above);
            break;
        case TX_PRICE_PROVIDER:
            p->provider = v;
            break;
        case TX_PRICE_FREE:
            rc = tx_rec_u64(&v, &u);
            p->free = (u != 0);
            break;
        case TX_PRICE_SOURCE:
            rc = tx_rec_u64(&v, &p->source);
            break;
        default:
            break;
        }

        if (rc != TX_OK) {
            return TX_ERROR;
        }
    }
}


void
tx_price_encode(tx_wbuf_t *wb, const tx_price_t *p)
{
    tx_rec_put_i64(wb, TX_PRICE_IN, p->in);
    tx_rec_put_i64(wb, TX_PRICE_OUT, p->out);

    if (p->cache_read >= 0) {
        tx_rec_put_i64(wb, TX_PRICE_CACHE_READ, p->cache_read);
    }

    if (p->cache_write >= 0) {
        tx_rec_put_i64(wb, TX_PRICE_CACHE_WRITE, p->cache_write);
    }

    if (p->tier) {
        tx_rec_put_u64(wb, TX_PRICE_TIER, p->tier);
        tx_rec_put_i64(wb, TX_PRICE_IN_ABOVE, p->in_above);
        tx_rec_put_i64(wb, TX_PRICE_OUT_ABOVE, p->out_above);

        if (p->cache_read_above >= 0) {
            tx_rec_put_i64(wb, TX_PRICE_CACHE_READ_ABOVE, p->cache_read_above);
        }

        if (p->cache_write_above >= 0) {
            tx_rec_put_i64(wb, TX_PRICE_CACHE_WRITE_ABOVE,
                           p->cache_write_above);
        }
    }

    if (p->provider.len) {
        tx_rec_put_bytes(wb, TX_PRICE_PROVIDER, p->provider.data,
                         p->provider.len);
    }

    if (p->free) {
        tx_rec_put_u64(wb, TX_PRICE_FREE, 1);
    }

    if (p->source) {
        tx_rec_put_u64(wb, TX_PRICE_SOURCE, p->source);
    }
}


/* tokens * price into *sum; TX_ERROR when the term is out of range */

static int
tx_price_term(uint64_t tokens, tx_money_t price, tx_u128_t *sum)
{
    tx_u128_t t;

    if (price < 0) {
        return TX_ERROR;
    }

    t = (tx_u128_t) tokens * (uint64_t) price;

    if (t >= TX_PRICE_TERM_MAX) {
        return TX_ERROR;
    }

    *sum += t;

    return TX_OK;
}


int
tx_price_cost(const tx_price_t *p, uint64_t input, uint64_t output,
              uint64_t cache_read, uint64_t cache_write, tx_money_t *cost)
{
    uint64_t   uncached;
    tx_u128_t  sum, cached;
    tx_money_t in, out, cr, cw;

    if (p->free) {
        *cost = 0;
        return TX_OK;
    }

    if (p->tier && input > p->tier) {
        in = p->in_above;
        out = p->out_above;
        cr = p->cache_read_above;
        cw = p->cache_write_above;

    } else {
        in = p->in;
        out = p->out;
        cr = p->cache_read;
        cw = p->cache_write;
    }

    cr = (cr == -1) ? in : cr;
    cw = (cw == -1) ? in : cw;

    cached = (tx_u128_t) cache_read + cache_write;
    uncached = (cached >= input) ? 0 : input - (uint64_t) cached;

    sum = 0;

    if (tx_price_term(uncached, in, &sum) != TX_OK
        || tx_price_term(cache_read, cr, &sum) != TX_OK
        || tx_price_term(cache_write, cw, &sum) != TX_OK
        || tx_price_term(output, out, &sum) != TX_OK)
    {
        return TX_ERROR;
    }

    sum = (sum + TX_PRICE_SCALE / 2) / TX_PRICE_SCALE;

    if (sum > INT64_MAX) {
        return TX_ERROR;
    }

    *cost = (tx_money_t) sum;

    return TX_OK;
}


/*
 * JSON number syntax.  The digits of the mantissa, integer and fraction
 * together, are d[0..n); the value is 0.d[0..n) * 10^point.  Scaled by
 * 10^14 the units are d[0..point+14) and the digit after them decides the
 * rounding, half up.
 */

int
tx_price_from_per_token(const char *s, size_t len, tx_money_t *out)
{
    int      nonzero, rd;
    size_t   i, int_start, int_end, frac_start, frac_end, n;
    int64_t  exp, point, k;
    uint64_t v;

    if (s == NULL || len == 0) {
        return TX_ERROR;
    }

    i = 0;
    nonzero = 0;

    int_start = i;

    while (i < len && s[i] >= '0' && s[i] <= '9') {
        nonzero |= (s[i] != '0');
        i++;
    }

    int_end = i;

    if (int_end == int_start) {
        return TX_ERROR; /* also "-...": prices are not negative */
    }

    frac_start = frac_end = i;

    if (i < len && s[i] == '.') {
        i++;
        frac_start = i;

        while (i < len && s[i] >= '0' && s[i] <= '9') {
            nonzero |= (s[i] != '0');
            i++;
        }

        frac_end = i;

        if (frac_end == frac_start) {
            return TX_ERROR;
        }
    }

    if (tx_decimal_exponent((const char *) s, len, &i, TX_PRICE_EXPCAP, &exp)
        != TX_OK)
    {
        return TX_ERROR;
    }

    if (i != len) {
        return TX_ERROR;
    }

    if (!nonzero) {
        *out = 0;
        return TX_OK;
    }

    n = (int_end - int_start) + (frac_end - frac_start);
    point = (int64_t) (int_end - int_start) + exp + TX_PRICE_DIGITS;

#define tx_price_digit(j)                                                      \
    ((size_t) (j) < int_end - int_start                                        \
         ? s[int_start + (j)] - '0'                                            \
         : ((size_t) (j) < n                                                   \
                ? s[frac_start + (j) - (int_end - int_start)] - '0'            \
                : 0))

    v = 0;

    for (k = 0; k < point; k++) {
        rd = ((size_t) k < n) ? tx_price_digit(k) : 0;

        if (v > ((uint64_t) INT64_MAX - (uint64_t) rd) / 10) {
            return TX_ERROR;
        }

        v = v * 10 + (uint64_t) rd;
    }

    rd = (point >= 0 && (size_t) point < n) ? tx_price_digit(point) : 0;

#undef tx_price_digit

    if (rd >= 5) {
        if (v == (uint64_t) INT64_MAX) {
            return TX_ERROR;
        }

        v++;
    }

    *out = (tx_money_t) v;

    return TX_OK;
}

/*
 * Torrix shared library: money formatting and parsing (see tx_core.h).
 */

#include <stdio.h>
#include <string.h>

#include "tx_core.h"


static int
tx_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


#define TX_MONEY_DECIMALS 8
#define TX_EXP_CAP        100000


char *
tx_money_format(tx_money_t m, char *buf, size_t len)
{
    uint64_t u, ip, fp;
    char     frac[TX_MONEY_DECIMALS + 1];
    int      n;

    if (len == 0) {
        return buf;
    }

    u = m < 0 ? (uint64_t) 0 - (uint64_t) m : (uint64_t) m;
    ip = u / TX_MONEY_PER_USD;
    fp = u % TX_MONEY_PER_USD;

    snprintf(frac, sizeof(frac), "%08llu", (unsigned long long) fp);

    for (n = TX_MONEY_DECIMALS; n > 2 && frac[n - 1] == '0'; n--) {
        /* void */
    }

    snprintf(buf, len, "%s%llu.%.*s", m < 0 ? "-" : "", (unsigned long long) ip,
             n, frac);

    return buf;
}


/*
 * Accepts JSON number syntax ("-"? int ("." digits)? exponent?) and keeps
 * it exact: the value must be a whole number of 1e-8 USD.  Trailing zeros
 * of the fraction are not significant, so "0.100000000" is accepted; an
 * exponent is accepted because JSON serializers write 0.00001 as "1e-05".
 */

int
tx_money_parse(const char *s, size_t len, tx_money_t *out)
{
    int         neg, any;
    size_t      i;
    int64_t     exp, scale, shift, zeros, fraclen;
    uint64_t    m, lim;
    const char *p;

    p = s;
    i = 0;
    neg = 0;
    m = 0;
    zeros = 0;
    fraclen = 0;

    if (s == NULL || len == 0) {
        return TX_ERROR;
    }

    if (p[i] == '-') {
        neg = 1;
        i++;
    }

    /* integer part */

    any = 0;

    while (i < len && p[i] >= '0' && p[i] <= '9') {
        if (m > (UINT64_MAX - 9) / 10) {
            return TX_ERROR;
        }

        m = m * 10 + (uint64_t) (p[i] - '0');
        any = 1;
        i++;
    }

    if (!any) {
        return TX_ERROR;
    }

    /* fraction: trailing zeros are held back until a non-zero digit */

    if (i < len && p[i] == '.') {
        i++;
        any = 0;

        while (i < len && p[i] >= '0' && p[i] <= '9') {
            any = 1;

            if (p[i] == '0') {
                zeros++;
                i++;
                continue;
            }

            for (/* void */; zeros > 0; zeros--) {
                if (m > UINT64_MAX / 10) {
                    return TX_ERROR;
                }

                m *= 10;
                fraclen++;
            }

            if (m > (UINT64_MAX - 9) / 10) {
                return TX_ERROR;
            }

            m = m * 10 + (uint64_t) (p[i] - '0');
            fraclen++;
            i++;
        }

        if (!any) {
            return TX_ERROR;
        }
    }

    if (tx_decimal_exponent((const char *) p, len, &i, TX_EXP_CAP, &exp)
        != TX_OK) {
        return TX_ERROR;
    }

    if (i != len) {
        return TX_ERROR;
    }

    if (m == 0) {
        *out = 0;
        return TX_OK;
    }

    scale = fraclen - exp;
    shift = TX_MONEY_DECIMALS - scale;

    while (shift < 0 && m % 10 == 0) {
        m /= 10;
        shift++;
    }

    if (shift < 0) {
        return TX_ERROR; /* more than 8 significant decimals */
    }

    for (/* void */; shift > 0; shift--) {
        if (m > UINT64_MAX / 10) {
            return TX_ERROR;
        }

        m *= 10;
    }

    lim = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;

    if (m > lim) {
        return TX_ERROR;
    }

    *out = neg ? (tx_money_t) (0 - m) : (tx_money_t) m;

    return TX_OK;
}


int
tx_unhex(const char *s, size_t len, uint8_t *out)
{
    int    hi, lo;
    size_t i;

    if (len % 2) {
        return TX_ERROR;
    }

    for (i = 0; i < len / 2; i++) {
        hi = tx_hexval(s[2 * i]);
        lo = tx_hexval(s[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return TX_ERROR;
        }

        out[i] = (uint8_t) (hi << 4 | lo);
    }

    return TX_OK;
}


int
tx_decimal_exponent(const char *s, size_t len, size_t *i, int64_t cap,
                    int64_t *exp)
{
    int     eneg, any;
    int64_t e;

    e = 0;

    if (*i < len && (s[*i] == 'e' || s[*i] == 'E')) {
        (*i)++;
        eneg = 0;

        if (*i < len && (s[*i] == '+' || s[*i] == '-')) {
            eneg = (s[*i] == '-');
            (*i)++;
        }

        any = 0;

        while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
            if (e < cap) {
                e = e * 10 + (s[*i] - '0');
            }

            any = 1;
            (*i)++;
        }

        if (!any) {
            return TX_ERROR;
        }

        if (eneg) {
            e = -e;
        }
    }

    *exp = e;

    return TX_OK;
}

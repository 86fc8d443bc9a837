/*
 * Unit tests: price records, cost of a run, per-token price conversion.
 *
 * test_catalog reads the LiteLLM catalog copy (env TX_PRICES_JSON, default
 * ../shared/data/model_prices_and_context_window.json from the repository
 * root) and converts every per-token price in it; skipped when absent.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tx_price.h"


#define USD(x) ((tx_money_t) ((x) *100000000LL)) /* whole dollars only */


/* llround for the non-negative values here, without libm */

static long long
round_pos(double d)
{
    return (long long) (d + 0.5);
}


static void
price_init(tx_price_t *p, tx_money_t in, tx_money_t out)
{
    memset(p, 0, sizeof(tx_price_t));
    p->in = in;
    p->out = out;
    p->cache_read = -1;
    p->cache_write = -1;
    p->cache_read_above = -1;
    p->cache_write_above = -1;
}


static tx_money_t
per_token(const char *s)
{
    tx_money_t m;

    assert_int_equal(tx_price_from_per_token(s, strlen(s), &m), TX_OK);

    return m;
}


static tx_money_t
cost(const tx_price_t *p, uint64_t in, uint64_t out, uint64_t cr, uint64_t cw)
{
    tx_money_t c;

    assert_int_equal(tx_price_cost(p, in, out, cr, cw, &c), TX_OK);

    return c;
}


static void
test_gpt4o(void **state)
{
    tx_price_t p;

    /* $2.50 / $10.00 per 1M */
    price_init(&p, 250000000, USD(10));

    /* 1000 in + 500 out = $0.0025 + $0.005 = $0.0075 */
    assert_int_equal(cost(&p, 1000, 500, 0, 0), 750000);
    assert_int_equal(cost(&p, 0, 0, 0, 0), 0);
    assert_int_equal(cost(&p, 1, 0, 0, 0), 250);
    assert_int_equal(cost(&p, 1000000, 1000000, 0, 0), USD(10) + 250000000);

    /* cached tokens without a cache price cost the input price */
    assert_int_equal(cost(&p, 1000, 500, 600, 0), 750000);

    /* $1.25 cached read: 400 * 2.5 + 600 * 1.25 = 1750 / 1M USD */
    p.cache_read = 125000000;
    assert_int_equal(cost(&p, 1000, 0, 600, 0), 175000);
}


static void
test_anthropic_cache(void **state)
{
    tx_price_t p;

    /* claude sonnet: $3 in, $15 out, $0.30 cache read, $3.75 cache write */
    price_init(&p, per_token("3e-06"), per_token("1.5e-05"));
    p.cache_read = per_token("3e-07");
    p.cache_write = per_token("3.75e-06");

    /* tx_usage's normalised input 4195 = 2095 + 2000 read + 100 written:
     * 0.006285 + 0.0006 + 0.000375 + 0.007545 = $0.014805 */
    assert_int_equal(cost(&p, 4195, 503, 2000, 100), 1480500);

    /* cache counts above input never make uncached negative */
    assert_int_equal(cost(&p, 10, 0, 20, 30), 20 * 30 + 30 * 375);
    assert_int_equal(cost(&p, 0, 0, 1000000, 0), 30000000);
}


static void
test_tier(void **state)
{
    tx_price_t p;

    /* claude-sonnet-4: above 200k input, $6 / $22.50, cache $0.60/$7.50 */
    price_init(&p, per_token("3e-06"), per_token("1.5e-05"));
    p.cache_read = per_token("3e-07");
    p.cache_write = per_token("3.75e-06");
    p.tier = 200000;
    p.in_above = per_token("6e-06");
    p.out_above = per_token("2.25e-05");
    p.cache_read_above = per_token("6e-07");
    p.cache_write_above = per_token("7.5e-06");

    /* at the threshold: base prices, 0.6 + 0.015 */
    assert_int_equal(cost(&p, 200000, 1000, 0, 0), 61500000);

    /* one above: the whole request at the above prices */
    assert_int_equal(cost(&p, 200001, 1000, 0, 0), 120000600 + 2250000);

    /* above, with cache: 1 * 6 + 100000 * 0.6 + 100000 * 7.5 per 1M */
    assert_int_equal(cost(&p, 200001, 0, 100000, 100000),
                     600 + 6000000 + 75000000);

    /* above, unset cache prices fall back to in_above */
    p.cache_read_above = -1;
    p.cache_write_above = -1;
    assert_int_equal(cost(&p, 200001, 0, 100000, 100000), 120000600);

    /* no tier: no switch */
    p.tier = 0;
    assert_int_equal(cost(&p, 10000000, 0, 0, 0), USD(30));
}


static void
test_rounding(void **state)
{
    tx_price_t p;

    /* one unit per 1M tokens: the cost is tokens / 1M, half up */
    price_init(&p, 1, 3);

    assert_int_equal(cost(&p, 499999, 0, 0, 0), 0);
    assert_int_equal(cost(&p, 500000, 0, 0, 0), 1);
    assert_int_equal(cost(&p, 1499999, 0, 0, 0), 1);
    assert_int_equal(cost(&p, 1500000, 0, 0, 0), 2);

    /* rounded once, on the sum: 0.4 + 0.3 (out) = 0.7 -> 1 */
    assert_int_equal(cost(&p, 400000, 100000, 0, 0), 1);
}


static void
test_free_and_zero(void **state)
{
    tx_price_t p;

    price_init(&p, 0, 0);
    assert_int_equal(cost(&p, 123456789, 987654321, 0, 0), 0);

    price_init(&p, USD(100), USD(100));
    p.free = 1;
    assert_int_equal(cost(&p, UINT64_MAX, UINT64_MAX, 0, 0), 0);
}


static void
test_overflow(void **state)
{
    tx_money_t c;
    tx_price_t p;

    price_init(&p, INT64_MAX, INT64_MAX);
    c = 42;
    assert_int_equal(tx_price_cost(&p, UINT64_MAX, 0, 0, 0, &c), TX_ERROR);
    assert_int_equal(tx_price_cost(&p, 0, UINT64_MAX, 0, 0, &c), TX_ERROR);
    assert_int_equal(c, 42);

    /* just below INT64_MAX units: $1M per 1M tokens, 9.2e12 tokens */
    price_init(&p, USD(1000000), 0);
    assert_int_equal(cost(&p, 92233720368ULL, 0, 0, 0), 9223372036800000000LL);
    assert_int_equal(tx_price_cost(&p, 92233720369ULL, 0, 0, 0, &c), TX_ERROR);

    /* a negative price is an error, -1 cache prices mean unset */
    price_init(&p, -5, 0);
    assert_int_equal(tx_price_cost(&p, 1, 0, 0, 0, &c), TX_ERROR);
    price_init(&p, 5, 0);
    p.cache_read = -2;
    assert_int_equal(tx_price_cost(&p, 1, 0, 1, 0, &c), TX_ERROR);
}


static void
test_per_token(void **state)
{
    tx_money_t m;

    assert_int_equal(per_token("2.5e-06"), 250000000);
    assert_int_equal(per_token("1.25e-7"), 12500000);
    assert_int_equal(per_token("0.000003"), 300000000);
    assert_int_equal(per_token("3e-06"), 300000000);
    assert_int_equal(per_token("3E-6"), 300000000);
    assert_int_equal(per_token("3e-6"), 300000000);
    assert_int_equal(per_token("0"), 0);
    assert_int_equal(per_token("0.0"), 0);
    assert_int_equal(per_token("0e-7"), 0);
    assert_int_equal(per_token("0.00000000000000"), 0);
    assert_int_equal(per_token("1"), 100000000000000LL);
    assert_int_equal(per_token("1e0"), 100000000000000LL);
    assert_int_equal(per_token("0.00001"), 1000000000);
    assert_int_equal(per_token("3.625e-09"), 362500);
    assert_int_equal(per_token("1.875e-08"), 1875000);
    assert_int_equal(per_token("1e-14"), 1);
    assert_int_equal(per_token("0.00000000000001"), 1);
    assert_int_equal(per_token("100e-16"), 1);
    assert_int_equal(per_token("1.5625e-06"), 156250000);
    assert_int_equal(per_token("0.00000000000001000000"), 1);
    assert_int_equal(per_token("2.5e+1"), 2500000000000000LL);

    /* below the unit: half up */
    assert_int_equal(per_token("5e-15"), 1);
    assert_int_equal(per_token("4.9e-15"), 0);
    assert_int_equal(per_token("4.99999999e-15"), 0);
    assert_int_equal(per_token("1.25e-14"), 1);
    assert_int_equal(per_token("1.5e-14"), 2);
    assert_int_equal(per_token("2.4999e-14"), 2);
    assert_int_equal(per_token("1e-300"), 0);
    assert_int_equal(per_token("0.000000000000005"), 1);

    /* the largest */
    assert_int_equal(per_token("92233.72036854775807"), INT64_MAX);
    assert_int_equal(per_token("92233.720368547758069"), INT64_MAX);

    m = 77;
    assert_int_equal(tx_price_from_per_token("92233.72036854775808", 20, &m),
                     TX_ERROR);
    assert_int_equal(tx_price_from_per_token("92233.720368547758075", 21, &m),
                     TX_ERROR);
    assert_int_equal(tx_price_from_per_token("1e300", 5, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token("1e999999999999", 14, &m),
                     TX_ERROR);
    assert_int_equal(tx_price_from_per_token("-2.5e-06", 8, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token("-0", 2, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token("+1", 2, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token("", 0, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token(NULL, 0, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token(".5", 2, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token("5.", 2, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token("1e", 2, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token("1e+", 3, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token("1 ", 2, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token("null", 4, &m), TX_ERROR);
    assert_int_equal(tx_price_from_per_token("\"3e-06\"", 7, &m), TX_ERROR);
    assert_int_equal(m, 77);

    /* only len bytes are read */
    assert_int_equal(tx_price_from_per_token("3e-06,", 5, &m), TX_OK);
    assert_int_equal(m, 300000000);
}


static void
test_record(void **state)
{
    uint8_t    buf[512];
    tx_wbuf_t  wb;
    tx_price_t p, q;

    price_init(&p, 250000000, 1000000000);
    p.cache_read = 125000000;
    p.tier = 272000;
    p.in_above = 500000000;
    p.out_above = 2000000000;
    p.cache_write_above = 0;
    p.provider.data = (const uint8_t *) "openai";
    p.provider.len = 6;
    p.source = TX_PRICE_SRC_CATALOG;

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_price_encode(&wb, &p);
    assert_false(wb.overflow);

    assert_int_equal(tx_price_decode(buf, wb.pos - buf, &q), TX_OK);
    assert_int_equal(q.in, 250000000);
    assert_int_equal(q.out, 1000000000);
    assert_int_equal(q.cache_read, 125000000);
    assert_int_equal(q.cache_write, -1);
    assert_int_equal(q.tier, 272000);
    assert_int_equal(q.in_above, 500000000);
    assert_int_equal(q.out_above, 2000000000);
    assert_int_equal(q.cache_read_above, -1);
    assert_int_equal(q.cache_write_above, 0);
    assert_int_equal(q.provider.len, 6);
    assert_memory_equal(q.provider.data, "openai", 6);
    assert_int_equal(q.free, 0);
    assert_int_equal(q.source, TX_PRICE_SRC_CATALOG);

    /* free, and a tag from the future */
    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_u64(&wb, TX_PRICE_FREE, 1);
    tx_rec_put_cstr(&wb, 999, "later");
    assert_int_equal(tx_price_decode(buf, wb.pos - buf, &q), TX_OK);
    assert_int_equal(q.free, 1);
    assert_int_equal(q.in, 0);
    assert_int_equal(q.cache_read, -1);
    assert_int_equal(q.cache_write, -1);

    /* empty record */
    assert_int_equal(tx_price_decode(buf, 0, &q), TX_OK);
    assert_int_equal(q.tier, 0);

    /* a price of the wrong size, a truncated record */
    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_bytes(&wb, TX_PRICE_IN, "1234", 4);
    assert_int_equal(tx_price_decode(buf, wb.pos - buf, &q), TX_ERROR);

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_i64(&wb, TX_PRICE_IN, 5);
    assert_int_equal(tx_price_decode(buf, wb.pos - buf - 1, &q), TX_ERROR);

    /* overflow of the writer is the writer's flag */
    tx_wbuf_init(&wb, buf, 10);
    tx_price_encode(&wb, &p);
    assert_true(wb.overflow);
}


/* every per-token price in the LiteLLM catalog, against llround(v * 1e14) */

static void
test_catalog(void **state)
{
    int         ok;
    char       *text, num[64], *e;
    long        size;
    size_t      n, klen, checked;
    FILE       *f;
    double      d;
    tx_money_t  m;
    const char *path, *p, *q, *k;

    path = getenv("TX_PRICES_JSON");

    if (path == NULL) {
        path = "../shared/data/model_prices_and_context_window.json";
    }

    f = fopen(path, "rb");

    if (f == NULL) {
        printf("test_catalog: %s: skipped\n", path);
        skip();
    }

    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size > 0);
    rewind(f);

    text = malloc((size_t) size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t) size, f), (size_t) size);
    text[size] = '\0';
    fclose(f);

    /* "<key>": <number> where the key names a per-token price */

    checked = 0;

    for (p = text; (p = strstr(p, "\": ")) != NULL; p += 3) {
        for (k = p; k > text && k[-1] != '"'; k--) {
            /* void */
        }

        klen = (size_t) (p - k);

        ok = (memmem(k, klen, "cost_per_token", 14) != NULL
              || memmem(k, klen, "input_token_cost", 16) != NULL);

        q = p + 3;

        if (!ok || !(*q == '-' || (*q >= '0' && *q <= '9'))) {
            continue;
        }

        n = strspn(q, "0123456789.eE+-");
        assert_true(n > 0 && n < sizeof(num));
        memcpy(num, q, n);
        num[n] = '\0';

        d = strtod(num, &e);
        assert_true(*e == '\0');

        if (d < 0) {
            assert_int_equal(tx_price_from_per_token(num, n, &m), TX_ERROR);
            continue;
        }

        assert_int_equal(tx_price_from_per_token(num, n, &m), TX_OK);

        if (m != round_pos(d * 1e14)) {
            fail_msg("%.*s: %s -> %lld, want %lld", (int) klen, k, num,
                     (long long) m, (long long) round_pos(d * 1e14));
        }

        checked++;
    }

    printf("test_catalog: %zu prices checked\n", checked);
    assert_true(checked > 1000);

    free(text);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt4o),
        cmocka_unit_test(test_anthropic_cache),
        cmocka_unit_test(test_tier),
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_free_and_zero),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_per_token),
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_catalog),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests: money parse and format.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "tx_core.h"


static int
parse(const char *s, tx_money_t *m)
{
    return tx_money_parse(s, strlen(s), m);
}


static void
test_parse_ok(void **state)
{
    tx_money_t m;

    assert_int_equal(parse("12", &m), TX_OK);
    assert_int_equal(m, 1200000000);
    assert_int_equal(parse("12.5", &m), TX_OK);
    assert_int_equal(m, 1250000000);
    assert_int_equal(parse("0.00000001", &m), TX_OK);
    assert_int_equal(m, 1);
    assert_int_equal(parse("-3", &m), TX_OK);
    assert_int_equal(m, -300000000);
    assert_int_equal(parse("0", &m), TX_OK);
    assert_int_equal(m, 0);
    assert_int_equal(parse("-0", &m), TX_OK);
    assert_int_equal(m, 0);
    assert_int_equal(parse("0.12345678", &m), TX_OK);
    assert_int_equal(m, 12345678);
    assert_int_equal(parse("0.100000000000000000000", &m), TX_OK);
    assert_int_equal(m, 10000000);
    assert_int_equal(parse("1e-05", &m), TX_OK);
    assert_int_equal(m, 1000);
    assert_int_equal(parse("1.5E2", &m), TX_OK);
    assert_int_equal(m, 15000000000LL);
    assert_int_equal(parse("100e-10", &m), TX_OK);
    assert_int_equal(m, 1);
    assert_int_equal(parse("0e999999999", &m), TX_OK);
    assert_int_equal(m, 0);

    /* the extremes */
    assert_int_equal(parse("92233720368.54775807", &m), TX_OK);
    assert_true(m == INT64_MAX);
    assert_int_equal(parse("-92233720368.54775808", &m), TX_OK);
    assert_true(m == INT64_MIN);

    /* only len bytes are read */
    assert_int_equal(tx_money_parse("12.5junk", 4, &m), TX_OK);
    assert_int_equal(m, 1250000000);
}


static void
test_parse_rejects(void **state)
{
    tx_money_t m;

    m = 77;
    assert_int_equal(parse("1.123456789", &m), TX_ERROR);
    assert_int_equal(parse("1e-9", &m), TX_ERROR);
    assert_int_equal(parse("abc", &m), TX_ERROR);
    assert_int_equal(parse("", &m), TX_ERROR);
    assert_int_equal(parse("-", &m), TX_ERROR);
    assert_int_equal(parse(".5", &m), TX_ERROR);
    assert_int_equal(parse("5.", &m), TX_ERROR);
    assert_int_equal(parse("+5", &m), TX_ERROR);
    assert_int_equal(parse(" 5", &m), TX_ERROR);
    assert_int_equal(parse("5 ", &m), TX_ERROR);
    assert_int_equal(parse("1e", &m), TX_ERROR);
    assert_int_equal(parse("1e+", &m), TX_ERROR);
    assert_int_equal(parse("1.2.3", &m), TX_ERROR);
    assert_int_equal(parse("0x10", &m), TX_ERROR);
    assert_int_equal(parse("--1", &m), TX_ERROR);
    assert_int_equal(parse("92233720368.54775808", &m), TX_ERROR);
    assert_int_equal(parse("-92233720368.54775809", &m), TX_ERROR);
    assert_int_equal(parse("99999999999999999999999", &m), TX_ERROR);
    assert_int_equal(parse("1e300", &m), TX_ERROR);
    assert_int_equal(parse("1e99999999999999999999", &m), TX_ERROR);
    assert_int_equal(tx_money_parse(NULL, 0, &m), TX_ERROR);
    assert_int_equal(m, 77);
}


static void
test_format(void **state)
{
    char buf[32];

    assert_string_equal(tx_money_format(1250000000, buf, sizeof(buf)), "12.50");
    assert_string_equal(tx_money_format(125, buf, sizeof(buf)), "0.00000125");
    assert_string_equal(tx_money_format(0, buf, sizeof(buf)), "0.00");
    assert_string_equal(tx_money_format(-300000000, buf, sizeof(buf)), "-3.00");
    assert_string_equal(tx_money_format(-1, buf, sizeof(buf)), "-0.00000001");
    assert_string_equal(tx_money_format(123456789, buf, sizeof(buf)),
                        "1.23456789");
    assert_string_equal(tx_money_format(INT64_MAX, buf, sizeof(buf)),
                        "92233720368.54775807");
    assert_string_equal(tx_money_format(INT64_MIN, buf, sizeof(buf)),
                        "-92233720368.54775808");
    assert_string_equal(tx_money_format(10000000, buf, sizeof(buf)), "0.10");
    assert_string_equal(tx_money_format(1001000000, buf, sizeof(buf)), "10.01");
}


static void
test_roundtrip(void **state)
{
    static const tx_money_t v[] = {0,          1,         -1,
                                   99,         100000000, 1234567890123LL,
                                   -987654321, INT64_MAX, INT64_MIN,
                                   50000000,   7};

    char       buf[32];
    size_t     i;
    tx_money_t m;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        tx_money_format(v[i], buf, sizeof(buf));
        assert_int_equal(parse(buf, &m), TX_OK);
        assert_true(m == v[i]);
    }

    for (m = -1000; m < 100000; m += 7) {
        tx_money_t back;

        tx_money_format(m, buf, sizeof(buf));
        assert_int_equal(parse(buf, &back), TX_OK);
        assert_true(back == m);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_roundtrip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

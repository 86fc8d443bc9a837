#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tx_window.h"


static void
test_day(void **state)
{
    /* 2026-11-22T23:59:59Z and the next second */
    assert_int_equal(tx_window_index(TX_WIN_DAY, 1795391999), 20779);
    assert_int_equal(tx_window_index(TX_WIN_DAY, 1795392000), 20780);
    assert_int_equal(tx_window_left(TX_WIN_DAY, 1795391999), 1);
    assert_int_equal(tx_window_start(TX_WIN_DAY, 20780), 1795392000);
}


static void
test_week(void **state)
{
    /* 2026-11-22 is a Sunday; 2026-11-23 a Monday */
    uint32_t sun, mon;

    sun = tx_window_index(TX_WIN_WEEK, 1795391999);
    mon = tx_window_index(TX_WIN_WEEK, 1795392000);

    assert_int_equal(mon, sun + 1);
    assert_int_equal(tx_window_start(TX_WIN_WEEK, mon), 1795392000);
    /* 1970-01-05 was the first Monday */
    assert_int_equal(tx_window_start(TX_WIN_WEEK, 1), 4 * 86400);
}


static void
test_month(void **state)
{
    /* 2026-11-30T23:59:59Z -> 2026-12-01T00:00:00Z */
    uint32_t nov, dec;

    nov = tx_window_index(TX_WIN_MONTH, 1796083199);
    dec = tx_window_index(TX_WIN_MONTH, 1796083200);

    assert_int_equal(nov, (2026 - 1970) * 12 + 10);
    assert_int_equal(dec, nov + 1);
    assert_int_equal(tx_window_start(TX_WIN_MONTH, dec), 1796083200);
    assert_int_equal(tx_window_left(TX_WIN_MONTH, 1796083199), 1);

    /* leap year: 2028-02-29 is still February */
    assert_int_equal(tx_window_index(TX_WIN_MONTH, 1835395200),
                     (2028 - 1970) * 12 + 1);
    assert_int_equal(tx_window_start(TX_WIN_MONTH, (2028 - 1970) * 12 + 2),
                     1835481600);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_day),
        cmocka_unit_test(test_week),
        cmocka_unit_test(test_month),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests: secrets, key hashing, ids, run ids.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "tx_key.h"


static int
setup(void **state)
{
    return sodium_init() < 0 ? -1 : 0;
}


static void
test_generate_shape(void **state)
{
    char   a[TX_KEY_SECRET_LEN + 1], b[TX_KEY_SECRET_LEN + 1];
    size_t i;

    assert_int_equal(TX_KEY_SECRET_LEN, 53);

    tx_key_generate(a);
    tx_key_generate(b);

    assert_int_equal(strlen(a), TX_KEY_SECRET_LEN);
    assert_memory_equal(a, "sk-torrix-", 10);
    assert_true(tx_key_shape_ok((uint8_t *) a, strlen(a)));
    assert_true(tx_key_shape_ok((uint8_t *) b, strlen(b)));
    assert_string_not_equal(a, b);

    for (i = TX_KEY_PREFIX_LEN; i < TX_KEY_SECRET_LEN; i++) {
        assert_true(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789-_",
                   a[i])
            != NULL);
    }
}


static void
test_shape_rejects(void **state)
{
    int    b64;
    char   s[TX_KEY_SECRET_LEN + 2];
    size_t i, c;

    memcpy(s, "sk-torrix-", 10);
    memset(s + 10, 'A', 43);
    s[53] = '\0';
    assert_true(tx_key_shape_ok((uint8_t *) s, 53));

    assert_false(tx_key_shape_ok((uint8_t *) s, 52));
    assert_false(tx_key_shape_ok((uint8_t *) s, 0));
    assert_false(tx_key_shape_ok(NULL, 53));

    s[53] = 'A';
    assert_false(tx_key_shape_ok((uint8_t *) s, 54));

    s[20] = '+';
    assert_false(tx_key_shape_ok((uint8_t *) s, 53));
    s[20] = '=';
    assert_false(tx_key_shape_ok((uint8_t *) s, 53));
    s[20] = '\0';
    assert_false(tx_key_shape_ok((uint8_t *) s, 53));
    s[20] = '_';
    assert_true(tx_key_shape_ok((uint8_t *) s, 53));

    s[0] = 'S';
    assert_false(tx_key_shape_ok((uint8_t *) s, 53));
    s[0] = 's';
    s[9] = '_';
    assert_false(tx_key_shape_ok((uint8_t *) s, 53));
    s[9] = '-';

    /* every byte value at every position of the 43: base64url or not */
    for (i = 10; i < 53; i++) {
        for (c = 0; c < 256; c++) {
            memset(s + 10, 'q', 43);
            s[i] = (char) c;
            b64 = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                  || (c >= '0' && c <= '9') || c == '-' || c == '_';
            assert_int_equal(tx_key_shape_ok((uint8_t *) s, 53), b64);
        }
    }
}


static void
test_hash(void **state)
{
    uint8_t k1[TX_KEY_HASHKEY_LEN], k2[TX_KEY_HASHKEY_LEN];
    uint8_t h1[TX_KEY_HASH_LEN], h2[TX_KEY_HASH_LEN], ref[TX_KEY_HASH_LEN];
    char    sec[TX_KEY_SECRET_LEN + 1];

    memset(k1, 1, sizeof(k1));
    memset(k2, 2, sizeof(k2));
    tx_key_generate(sec);

    assert_int_equal(tx_key_hash(k1, (uint8_t *) sec, TX_KEY_SECRET_LEN, h1),
                     TX_OK);
    assert_int_equal(tx_key_hash(k1, (uint8_t *) sec, TX_KEY_SECRET_LEN, h2),
                     TX_OK);
    assert_memory_equal(h1, h2, sizeof(h1));

    /* keyed BLAKE2b-256, as the data plane and torrix-cp both compute it */
    crypto_generichash(ref, sizeof(ref), (uint8_t *) sec, TX_KEY_SECRET_LEN, k1,
                       sizeof(k1));
    assert_memory_equal(h1, ref, sizeof(h1));

    assert_int_equal(tx_key_hash(k2, (uint8_t *) sec, TX_KEY_SECRET_LEN, h2),
                     TX_OK);
    assert_memory_not_equal(h1, h2, sizeof(h1));

    sec[TX_KEY_SECRET_LEN - 1] ^= 1;
    assert_int_equal(tx_key_hash(k1, (uint8_t *) sec, TX_KEY_SECRET_LEN, h2),
                     TX_OK);
    assert_memory_not_equal(h1, h2, sizeof(h1));
}


static void
test_id(void **state)
{
    char   a[TX_ID_MAX_LEN], b[TX_ID_MAX_LEN];
    size_t i;
    int    seen[32];

    memset(seen, 0, sizeof(seen));

    tx_id_generate("key_", a);
    tx_id_generate("key_", b);
    assert_int_equal(strlen(a), 4 + TX_ID_RAND_LEN);
    assert_memory_equal(a, "key_", 4);
    assert_string_not_equal(a, b);

    for (i = 0; i < 200; i++) {
        size_t j;

        tx_id_generate("prj_", a);

        for (j = 4; j < 24; j++) {
            const char *c;

            c = strchr("abcdefghijklmnopqrstuvwxyz234567", a[j]);
            assert_non_null(c);
            seen[c - "abcdefghijklmnopqrstuvwxyz234567"] = 1;
        }
    }

    /* 4000 draws: every symbol of the alphabet shows up */
    for (i = 0; i < 32; i++) {
        assert_true(seen[i]);
    }

    tx_id_generate("", a);
    assert_int_equal(strlen(a), TX_ID_RAND_LEN);
}


static void
test_run_id(void **state)
{
    int     i, j;
    uint8_t a[16], b[16], c[16], r_hi[10], r_lo[10];
    char    hex[33], want[33];

    memset(r_hi, 0xff, sizeof(r_hi));
    memset(r_lo, 0x00, sizeof(r_lo));

    tx_run_id_make(a, 1700000000000LL, r_hi);
    tx_run_id_make(b, 1700000000001LL, r_lo);
    tx_run_id_make(c, 1800000000000LL, r_lo);

    /* byte order is time order, whatever the random part */
    assert_true(memcmp(a, b, 16) < 0);
    assert_true(memcmp(b, c, 16) < 0);
    assert_memory_equal(a + 6, r_hi, 10);

    /* 1700000000000 = 0x018bcfe56800 */
    assert_memory_equal(a, "\x01\x8b\xcf\xe5\x68\x00", 6);

    tx_run_id_hex(a, hex);
    assert_string_equal(hex, "018bcfe56800ffffffffffffffffffff");

    assert_int_equal(tx_run_id_parse(hex, 32, c), TX_OK);
    assert_memory_equal(a, c, 16);
    assert_int_equal(tx_run_id_parse("018BCFE56800FFFFFFFFFFFFFFFFFFFF", 32, c),
                     TX_OK);
    assert_memory_equal(a, c, 16);

    assert_int_equal(tx_run_id_parse(hex, 31, c), TX_ERROR);
    assert_int_equal(tx_run_id_parse(hex, 33, c), TX_ERROR);
    hex[5] = 'g';
    assert_int_equal(tx_run_id_parse(hex, 32, c), TX_ERROR);
    assert_int_equal(tx_run_id_parse(NULL, 32, c), TX_ERROR);

    /* every byte value, in every position: lowercase hex, round trip */
    for (i = 0; i < 256; i++) {
        for (j = 0; j < 16; j++) {
            a[j] = (uint8_t) (i + j * 17);
        }

        tx_run_id_hex(a, hex);

        for (j = 0; j < 16; j++) {
            snprintf(want + 2 * j, 3, "%02x", a[j]);
        }

        assert_string_equal(hex, want);
        assert_int_equal(tx_run_id_parse(hex, 32, c), TX_OK);
        assert_memory_equal(a, c, 16);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_shape),
        cmocka_unit_test(test_shape_rejects),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_id),
        cmocka_unit_test(test_run_id),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}

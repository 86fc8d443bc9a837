/*
 * Unit tests: sealed blobs (tx_seal.h) and key parsing.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "tx_seal.h"


static const uint8_t tx_test_key[TX_SEAL_KEY_LEN] =
    {0xfb, 0xef, 0xbe, 0xff, 0xff, 0xff, 0x06, 0x07, 0x08, 0x09, 0x0a,
     0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
     0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0xff};

#define MSG "sk-upstream-openai-0123456789"
#define AD  "openai"


static int
setup(void **state)
{
    return sodium_init() < 0 ? -1 : 0;
}


static int
algs(int *out)
{
    int n;

    n = 0;

    if (crypto_aead_aes256gcm_is_available()) {
        out[n++] = TX_SEAL_AES256GCM;
    }

    out[n++] = TX_SEAL_XCHACHA;

    return n;
}


static size_t
seal(int alg, const char *ad, const char *m, uint8_t *out, size_t cap)
{
    size_t len;

    assert_int_equal(tx_seal_alg(alg, tx_test_key, (const uint8_t *) ad,
                                 strlen(ad), (const uint8_t *) m, strlen(m),
                                 out, cap, &len),
                     TX_OK);

    return len;
}


static void
test_round_trip(void **state)
{
    int     i, n, a[2];
    size_t  clen, mlen, nlen;
    uint8_t c[256], c2[256], m[256];

    n = algs(a);

    for (i = 0; i < n; i++) {
        nlen = a[i] == TX_SEAL_AES256GCM ? 12 : 24;

        clen = seal(a[i], AD, MSG, c, sizeof(c));
        assert_int_equal(clen, 2 + nlen + strlen(MSG) + 16);
        assert_true(clen <= tx_seal_len(strlen(MSG)));
        assert_int_equal(c[0], TX_SEAL_VERSION);
        assert_int_equal(c[1], a[i]);
        assert_null(memmem(c, clen, MSG, strlen(MSG)));

        assert_int_equal(tx_unseal(tx_test_key, (const uint8_t *) AD,
                                   strlen(AD), c, clen, m, sizeof(m), &mlen),
                         TX_OK);
        assert_int_equal(mlen, strlen(MSG));
        assert_memory_equal(m, MSG, mlen);

        /* random nonces: the same message seals differently */
        assert_int_equal(seal(a[i], AD, MSG, c2, sizeof(c2)), clen);
        assert_memory_not_equal(c, c2, clen);

        /* empty message, empty AD */
        clen = seal(a[i], "", "", c, sizeof(c));
        assert_int_equal(clen, 2 + nlen + 16);
        assert_int_equal(tx_unseal(tx_test_key, NULL, 0, c, clen, m, sizeof(m),
                                   &mlen),
                         TX_OK);
        assert_int_equal(mlen, 0);
    }

    /* the default is one of them */
    clen = 0;
    assert_int_equal(tx_seal(tx_test_key, (const uint8_t *) AD, strlen(AD),
                             (const uint8_t *) MSG, strlen(MSG), c, sizeof(c),
                             &clen),
                     TX_OK);
    assert_int_equal(c[1], tx_seal_default_alg());
    assert_string_equal(tx_seal_alg_name(tx_seal_default_alg()),
                        crypto_aead_aes256gcm_is_available()
                            ? "aes256gcm"
                            : "xchacha20poly1305");
}


static void
test_wrong_key_ad(void **state)
{
    int     i, n, a[2];
    size_t  clen, mlen;
    uint8_t c[256], m[256], key[TX_SEAL_KEY_LEN];

    n = algs(a);

    for (i = 0; i < n; i++) {
        clen = seal(a[i], AD, MSG, c, sizeof(c));

        memcpy(key, tx_test_key, sizeof(key));
        key[7] ^= 0x40;

        memset(m, 'x', sizeof(m));
        assert_int_equal(tx_unseal(key, (const uint8_t *) AD, strlen(AD), c,
                                   clen, m, sizeof(m), &mlen),
                         TX_ERROR);
        assert_int_equal(mlen, 0);
        assert_null(memmem(m, sizeof(m), MSG, strlen(MSG)));

        assert_int_equal(tx_unseal(tx_test_key, (const uint8_t *) "anthropic",
                                   9, c, clen, m, sizeof(m), &mlen),
                         TX_ERROR);
        assert_int_equal(tx_unseal(tx_test_key, NULL, 0, c, clen, m, sizeof(m),
                                   &mlen),
                         TX_ERROR);
    }
}


static void
test_tamper(void **state)
{
    int     i, n, a[2];
    size_t  clen, mlen, j, bit;
    uint8_t c[256], t[256], m[256];

    n = algs(a);

    for (i = 0; i < n; i++) {
        clen = seal(a[i], AD, MSG, c, sizeof(c));

        /* every bit of every byte, header included */
        for (j = 0; j < clen; j++) {
            for (bit = 0; bit < 8; bit++) {
                memcpy(t, c, clen);
                t[j] ^= (uint8_t) (1u << bit);
                assert_int_equal(tx_unseal(tx_test_key, (const uint8_t *) AD,
                                           strlen(AD), t, clen, m, sizeof(m),
                                           &mlen),
                                 TX_ERROR);
            }
        }

        /* truncated at every length, and one byte too many */
        for (j = 0; j < clen; j++) {
            assert_int_equal(tx_unseal(tx_test_key, (const uint8_t *) AD,
                                       strlen(AD), c, j, m, sizeof(m), &mlen),
                             TX_ERROR);
        }

        memcpy(t, c, clen);
        t[clen] = 0;
        assert_int_equal(tx_unseal(tx_test_key, (const uint8_t *) AD,
                                   strlen(AD), t, clen + 1, m, sizeof(m),
                                   &mlen),
                         TX_ERROR);

        /* out too small */
        assert_int_equal(tx_unseal(tx_test_key, (const uint8_t *) AD,
                                   strlen(AD), c, clen, m, strlen(MSG) - 1,
                                   &mlen),
                         TX_ERROR);
    }

    /* unknown version and algorithm */
    clen = seal(TX_SEAL_XCHACHA, AD, MSG, c, sizeof(c));
    c[1] = 3;
    assert_int_equal(tx_unseal(tx_test_key, (const uint8_t *) AD, strlen(AD), c,
                               clen, m, sizeof(m), &mlen),
                     TX_ERROR);
    c[1] = TX_SEAL_XCHACHA;
    c[0] = 2;
    assert_int_equal(tx_unseal(tx_test_key, (const uint8_t *) AD, strlen(AD), c,
                               clen, m, sizeof(m), &mlen),
                     TX_ERROR);

    /* seal: out too small, unknown algorithm */
    assert_int_equal(tx_seal_alg(TX_SEAL_XCHACHA, tx_test_key, NULL, 0,
                                 (const uint8_t *) MSG, strlen(MSG), c,
                                 2 + 24 + 16 + strlen(MSG) - 1, &clen),
                     TX_ERROR);
    assert_int_equal(tx_seal_alg(7, tx_test_key, NULL, 0, (const uint8_t *) MSG,
                                 strlen(MSG), c, sizeof(c), &clen),
                     TX_DECLINED);
}


static void
test_key_parse(void **state)
{
    uint8_t key[TX_SEAL_KEY_LEN];
    char    hex[65], b64[64], url[64], buf[128];
    size_t  n;

    sodium_bin2hex(hex, sizeof(hex), tx_test_key, sizeof(tx_test_key));

    memset(key, 0, sizeof(key));
    assert_int_equal(tx_seal_key_parse(hex, 64, key), TX_OK);
    assert_memory_equal(key, tx_test_key, sizeof(key));

    /* a key file: trailing newline, surrounding blanks; upper case */
    n = (size_t) snprintf(buf, sizeof(buf), "  %s\n", hex);
    memset(key, 0, sizeof(key));
    assert_int_equal(tx_seal_key_parse(buf, n, key), TX_OK);
    assert_memory_equal(key, tx_test_key, sizeof(key));

    for (n = 0; n < 64; n++) {
        buf[n] = (char) (hex[n] >= 'a' ? hex[n] - 32 : hex[n]);
    }

    memset(key, 0, sizeof(key));
    assert_int_equal(tx_seal_key_parse(buf, 64, key), TX_OK);
    assert_memory_equal(key, tx_test_key, sizeof(key));

    /* base64: standard with and without padding, url-safe */
    sodium_bin2base64(b64, sizeof(b64), tx_test_key, sizeof(tx_test_key),
                      sodium_base64_VARIANT_ORIGINAL);
    assert_int_equal(strlen(b64), 44);
    assert_memory_equal(b64, "++++////", 8); /* both alphabets differ */
    memset(key, 0, sizeof(key));
    assert_int_equal(tx_seal_key_parse(b64, 44, key), TX_OK);
    assert_memory_equal(key, tx_test_key, sizeof(key));
    memset(key, 0, sizeof(key));
    assert_int_equal(tx_seal_key_parse(b64, 43, key), TX_OK);
    assert_memory_equal(key, tx_test_key, sizeof(key));

    sodium_bin2base64(url, sizeof(url), tx_test_key, sizeof(tx_test_key),
                      sodium_base64_VARIANT_URLSAFE);
    assert_memory_equal(url, "----____", 8);
    n = (size_t) snprintf(buf, sizeof(buf), "\t%s \r\n", url);
    memset(key, 0, sizeof(key));
    assert_int_equal(tx_seal_key_parse(buf, n, key), TX_OK);
    assert_memory_equal(key, tx_test_key, sizeof(key));
    memset(key, 0, sizeof(key));
    assert_int_equal(tx_seal_key_parse(url, 43, key), TX_OK);
    assert_memory_equal(key, tx_test_key, sizeof(key));

    /* rejects */
    assert_int_equal(tx_seal_key_parse("", 0, key), TX_ERROR);
    assert_int_equal(tx_seal_key_parse(hex, 63, key), TX_ERROR);
    assert_int_equal(tx_seal_key_parse(hex, 62, key), TX_ERROR);
    memcpy(buf, hex, 64);
    buf[10] = 'g';
    assert_int_equal(tx_seal_key_parse(buf, 64, key), TX_ERROR);
    memcpy(buf, hex, 64);
    buf[32] = ' ';
    assert_int_equal(tx_seal_key_parse(buf, 64, key), TX_ERROR);
    assert_int_equal(tx_seal_key_parse(b64, 42, key), TX_ERROR);
    memcpy(buf, b64, 44);
    buf[43] = 'A'; /* 44 characters without padding: 33 bytes */
    assert_int_equal(tx_seal_key_parse(buf, 44, key), TX_ERROR);
    memcpy(buf, b64, 44);
    buf[5] = '*';
    assert_int_equal(tx_seal_key_parse(buf, 44, key), TX_ERROR);
    memcpy(buf, b64, 44);
    buf[3] = '-'; /* mixed alphabets */
    assert_int_equal(tx_seal_key_parse(buf, 44, key), TX_ERROR);
}


/* every refused key leaves the output zeroed, whatever it held */
static void
test_key_parse_zeroes(void **state)
{
    size_t      i;
    uint8_t     key[TX_SEAL_KEY_LEN], zero[TX_SEAL_KEY_LEN];
    const char *bad[] = {"", " \n", "abc", "zz", /* wrong lengths */
                         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                         /* 44 characters without the final '=' */
                         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                         /* 64 characters, not hex */
                         "gggggggggggggggggggggggggggggggggggggggggggggggg"
                         "gggggggggggggggg"};

    (void) state;

    memset(zero, 0, sizeof(zero));

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(key, 0xa5, sizeof(key));
        assert_int_equal(tx_seal_key_parse(bad[i], strlen(bad[i]), key),
                         TX_ERROR);
        assert_memory_equal(key, zero, sizeof(key));
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrong_key_ad),
        cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_key_parse),
        cmocka_unit_test(test_key_parse_zeroes),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}

/*
 * Unit tests: spool frames, crc32, endpoint names.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "tx_spool.h"


#define CAP 1024


typedef union {
    uint64_t align;
    uint8_t  b[CAP];
} spool_buf_t;


static void
test_crc32(void **state)
{
    size_t   off, len, i, bit;
    uint8_t  zeros[32], ones[32], buf[160];
    uint32_t ref;

    /* CRC-32C check value and RFC 3720 (iSCSI) B.4 vectors */
    assert_int_equal(tx_crc32(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(tx_crc32(0, "", 0), 0);
    memset(zeros, 0, sizeof(zeros));
    memset(ones, 0xff, sizeof(ones));
    assert_int_equal(tx_crc32(0, zeros, 32), 0x8a9136aau);
    assert_int_equal(tx_crc32(0, ones, 32), 0x62a8ab43u);
    /* incremental == one shot */
    assert_int_equal(tx_crc32(tx_crc32(0, "1234", 4), "56789", 5), 0xe3069283u);

    /* every length and alignment up to 150 bytes against a bitwise CRC-32C:
     * the four-word loop and the eight-, four-, two- and one-byte forms */
    for (off = 0; off < 8; off++) {
        for (len = 0; len <= 150; len++) {
            for (i = 0; i < len; i++) {
                buf[off + i] = (uint8_t) (i * 131 + len * 7 + off + 1);
            }

            ref = 0xffffffffu;

            for (i = 0; i < len; i++) {
                ref ^= buf[off + i];

                for (bit = 0; bit < 8; bit++) {
                    ref = (ref >> 1) ^ (0x82f63b78u & (0u - (ref & 1)));
                }
            }

            assert_int_equal(tx_crc32(0, buf + off, len), ~ref);
        }
    }
}


static void
test_header(void **state)
{
    spool_buf_t f;

    memset(&f, 0, sizeof(f));
    tx_spool_hdr_init(f.b, 4242, 0x0123456789abLL, CAP);
    assert_memory_equal(f.b, TX_SPOOL_MAGIC, 8);
    assert_int_equal(f.b[8], 2);
    assert_int_equal(tx_spool_hdr_check(f.b, CAP), TX_OK);
    assert_int_equal(tx_spool_hdr_check(f.b, TX_SPOOL_HDR_LEN - 1), TX_ERROR);

    f.b[0] = 'X';
    assert_int_equal(tx_spool_hdr_check(f.b, CAP), TX_ERROR);
    f.b[0] = 'T';
    f.b[8] = 1; /* version 1 is still read */
    assert_int_equal(tx_spool_hdr_check(f.b, CAP), TX_OK);
    f.b[8] = 3;
    assert_int_equal(tx_spool_hdr_check(f.b, CAP), TX_ERROR);
    assert_int_equal(sizeof(tx_spool_hdr_t), TX_SPOOL_HDR_LEN);
}


static void
test_append_read(void **state)
{
    size_t         woff, roff, len;
    spool_buf_t    f;
    const uint8_t *pl;

    memset(&f, 0, sizeof(f));
    tx_spool_hdr_init(f.b, 1, 1, CAP);

    woff = TX_SPOOL_HDR_LEN;
    roff = TX_SPOOL_HDR_LEN;

    /* nothing written yet */
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_AGAIN);
    assert_int_equal(roff, TX_SPOOL_HDR_LEN);

    assert_int_equal(tx_spool_append(f.b, CAP, &woff, "hello", 5), TX_OK);
    assert_int_equal(woff, TX_SPOOL_HDR_LEN + 16);
    assert_int_equal(tx_spool_append(f.b, CAP, &woff, "12345678", 8), TX_OK);
    assert_int_equal(woff, TX_SPOOL_HDR_LEN + 32);

    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(pl, "hello", 5);
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_OK);
    assert_int_equal(len, 8);
    assert_memory_equal(pl, "12345678", 8);
    assert_int_equal(roff, woff);

    /* frame not yet written */
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_AGAIN);
    assert_int_equal(roff, woff);

    tx_spool_seal(f.b, CAP, woff);
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_DONE);
    assert_int_equal(roff, woff);
}


/*
 * A recycled file: old frames stay past the new ones.  The reader stops
 * after the new ones (each append zeroes the word after its frame), and an
 * old frame that reappears there (a machine crash that kept the old page on
 * disk, not the new one) fails the new header's CRC seed.
 */
static void
test_recycled(void **state)
{
    size_t         woff, roff, len;
    spool_buf_t    f, g;
    const uint8_t *pl;

    memset(&f, 0, sizeof(f));
    tx_spool_hdr_init(f.b, 7, 1000, CAP);

    woff = TX_SPOOL_HDR_LEN;
    assert_int_equal(tx_spool_append(f.b, CAP, &woff, "old-one", 7), TX_OK);
    assert_int_equal(tx_spool_append(f.b, CAP, &woff, "old-two", 7), TX_OK);
    assert_int_equal(tx_spool_append(f.b, CAP, &woff, "old-three", 9), TX_OK);
    tx_spool_seal(f.b, CAP, woff);
    memcpy(&g, &f, sizeof(f)); /* the old file, to take a frame from */

    /* taken again: a new header and a zero first length, as a worker does */
    tx_spool_hdr_init(f.b, 8, 2000, CAP);
    memset(f.b + TX_SPOOL_HDR_LEN, 0, 4);

    roff = TX_SPOOL_HDR_LEN;
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_AGAIN);

    woff = TX_SPOOL_HDR_LEN;
    assert_int_equal(tx_spool_append(f.b, CAP, &woff, "new", 3), TX_OK);

    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_OK);
    assert_memory_equal(pl, "new", 3);
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_AGAIN);
    assert_int_equal(roff, woff);

    /* the old second frame back (on disk) where the zero should be */
    assert_int_equal(woff, TX_SPOOL_HDR_LEN + 16);
    memcpy(f.b + woff, g.b + woff, 16);

    roff = woff;
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_ERROR);
    assert_true(roff > woff); /* skipped as torn, nothing returned */
}


static void
test_bad_args(void **state)
{
    size_t         off, len;
    spool_buf_t    f;
    const uint8_t *pl;

    memset(&f, 0, sizeof(f));
    off = TX_SPOOL_HDR_LEN;
    assert_int_equal(tx_spool_append(f.b, CAP, &off, "", 0), TX_ERROR);
    off = TX_SPOOL_HDR_LEN + 4;
    assert_int_equal(tx_spool_append(f.b, CAP, &off, "x", 1), TX_ERROR);
    off = 0;
    assert_int_equal(tx_spool_append(f.b, CAP, &off, "x", 1), TX_ERROR);
    off = TX_SPOOL_HDR_LEN + 4;
    assert_int_equal(tx_spool_read(f.b, CAP, &off, &pl, &len), TX_ERROR);
    off = CAP + 8;
    assert_int_equal(tx_spool_read(f.b, CAP, &off, &pl, &len), TX_ERROR);
    assert_int_equal(off, CAP + 8);
}


static void
test_full(void **state)
{
    size_t         off, roff, len, n;
    uint8_t        rec[100];
    spool_buf_t    f;
    const uint8_t *pl;

    memset(&f, 0, sizeof(f));
    memset(rec, 'r', sizeof(rec));
    tx_spool_hdr_init(f.b, 1, 1, CAP);
    off = TX_SPOOL_HDR_LEN;
    n = 0;

    while (tx_spool_append(f.b, CAP, &off, rec, sizeof(rec)) == TX_OK) {
        n++;
    }

    /* (1024 - 64 - 8) / 112 = 8 frames fit with the seal word kept */
    assert_int_equal(n, 8);
    assert_true(CAP - off >= TX_SPOOL_FRAME_HDR);
    assert_int_equal(tx_spool_append(f.b, CAP, &off, rec, sizeof(rec)),
                     TX_AGAIN);

    /* a small one still fits; then nothing, but the seal always does */
    while (tx_spool_append(f.b, CAP, &off, rec, 1) == TX_OK) {
        n++;
    }

    assert_int_equal(CAP - off, 16);
    tx_spool_seal(f.b, CAP, off);

    roff = TX_SPOOL_HDR_LEN;

    while (tx_spool_read(f.b, CAP, &roff, &pl, &len) == TX_OK) {
        n--;
    }

    assert_int_equal(n, 0);
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_DONE);
}


static void
test_torn(void **state)
{
    size_t         woff, roff, len, second;
    spool_buf_t    f;
    const uint8_t *pl;

    memset(&f, 0, sizeof(f));
    tx_spool_hdr_init(f.b, 1, 1, CAP);
    woff = TX_SPOOL_HDR_LEN;

    assert_int_equal(tx_spool_append(f.b, CAP, &woff, "first", 5), TX_OK);
    second = woff;
    assert_int_equal(tx_spool_append(f.b, CAP, &woff, "second", 6), TX_OK);
    assert_int_equal(tx_spool_append(f.b, CAP, &woff, "third", 5), TX_OK);

    /* a torn write: payload bytes lost, length already on disk */
    f.b[TX_SPOOL_HDR_LEN + TX_SPOOL_FRAME_HDR + 1] = 0;

    roff = TX_SPOOL_HDR_LEN;
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_ERROR);
    assert_int_equal(roff, second);
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_OK);
    assert_memory_equal(pl, "second", 6);
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_OK);
    assert_memory_equal(pl, "third", 5);
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_AGAIN);

    /* implausible length: unreadable, offset stays */
    roff = second;
    memcpy(f.b + second, "\x00\x00\x20\x00", 4);
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_ERROR);
    assert_int_equal(roff, second);

    /* a frame running past the end of the file */
    memcpy(f.b + second, "\x00\x04\x00\x00", 4);
    assert_int_equal(tx_spool_read(f.b, CAP, &roff, &pl, &len), TX_ERROR);
    assert_int_equal(roff, second);
}


static void
test_endpoint_names(void **state)
{
    assert_string_equal(tx_endpoint_name(TX_EP_CHAT), "chat.completions");
    assert_string_equal(tx_endpoint_name(TX_EP_MESSAGES), "messages");
    assert_string_equal(tx_endpoint_name(TX_EP_PROXY), "proxy");
    assert_string_equal(tx_endpoint_name(TX_EP_UNKNOWN), "unknown");
    assert_string_equal(tx_endpoint_name(8), "unknown");
    assert_string_equal(tx_endpoint_name(UINT64_MAX), "unknown");
    assert_int_equal(tx_spool_frame_size(0), 8);
    assert_int_equal(tx_spool_frame_size(1), 16);
    assert_int_equal(tx_spool_frame_size(8), 16);
    assert_int_equal(tx_spool_frame_size(9), 24);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_append_read),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_torn),
        cmocka_unit_test(test_recycled),
        cmocka_unit_test(test_endpoint_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

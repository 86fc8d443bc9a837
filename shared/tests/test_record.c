/*
 * Unit tests: TLV records and snapshot decoders.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tx_record.h"
#include "tx_snapshot.h"


static void
test_roundtrip(void **state)
{
    uint8_t       buf[128];
    uint16_t      tag;
    uint64_t      u;
    int64_t       i;
    tx_str_t      v;
    tx_wbuf_t     wb;
    tx_rec_iter_t it;

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_cstr(&wb, 1, "hello");
    tx_rec_put_u64(&wb, 2, 0x0102030405060708ULL);
    tx_rec_put_i64(&wb, 3, -42);
    tx_rec_put_bytes(&wb, 4, "", 0);
    tx_rec_put_cstr(&wb, 5, NULL);
    tx_rec_put_cstr(&wb, 6, "");
    assert_false(wb.overflow);
    assert_int_equal(wb.pos - wb.start, tx_rec_field_size(5)
                                            + 2 * tx_rec_field_size(8)
                                            + tx_rec_field_size(0));

    /* little endian on the wire */
    assert_int_equal(buf[0], 1);
    assert_int_equal(buf[1], 0);
    assert_int_equal(buf[2], 5);
    assert_int_equal(buf[11 + 6], 0x08);

    tx_rec_iter_init(&it, buf, wb.pos - wb.start);

    assert_int_equal(tx_rec_next(&it, &tag, &v), TX_OK);
    assert_int_equal(tag, 1);
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.data, "hello", 5);

    assert_int_equal(tx_rec_next(&it, &tag, &v), TX_OK);
    assert_int_equal(tag, 2);
    assert_int_equal(tx_rec_u64(&v, &u), TX_OK);
    assert_true(u == 0x0102030405060708ULL);

    assert_int_equal(tx_rec_next(&it, &tag, &v), TX_OK);
    assert_int_equal(tag, 3);
    assert_int_equal(tx_rec_i64(&v, &i), TX_OK);
    assert_int_equal(i, -42);

    assert_int_equal(tx_rec_next(&it, &tag, &v), TX_OK);
    assert_int_equal(tag, 4);
    assert_int_equal(v.len, 0);
    assert_int_equal(tx_rec_u64(&v, &u), TX_ERROR);
    /* an empty value is the compact form's zero */
    assert_int_equal(tx_rec_uint(&v, &u), TX_OK);
    assert_true(u == 0);

    v.data = buf;
    v.len = 9;
    assert_int_equal(tx_rec_uint(&v, &u), TX_ERROR);

    assert_int_equal(tx_rec_next(&it, &tag, &v), TX_DONE);
    assert_int_equal(tx_rec_next(&it, &tag, &v), TX_DONE);
}


static void
test_overflow(void **state)
{
    uint8_t   buf[16];
    tx_wbuf_t wb;

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_u64(&wb, 1, 7);
    assert_false(wb.overflow);
    assert_int_equal(wb.pos - wb.start, 14);

    tx_rec_put_bytes(&wb, 2, "x", 1);
    assert_true(wb.overflow);
    assert_int_equal(wb.pos - wb.start, 14);

    /* sticky: a small field after the overflow is not written either */
    tx_rec_put_bytes(&wb, 3, "", 0);
    assert_true(wb.overflow);
    assert_int_equal(wb.pos - wb.start, 14);

    tx_wbuf_init(&wb, buf, 5);
    tx_rec_put_bytes(&wb, 1, "", 0);
    assert_true(wb.overflow);
}


static void
test_truncated(void **state)
{
    uint8_t       buf[64];
    uint16_t      tag;
    tx_str_t      v;
    tx_wbuf_t     wb;
    tx_rec_iter_t it;
    size_t        n, cut;

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_cstr(&wb, 1, "abc");
    tx_rec_put_cstr(&wb, 2, "defgh");
    n = wb.pos - wb.start;

    for (cut = 1; cut < tx_rec_field_size(5); cut++) {
        tx_rec_iter_init(&it, buf, n - cut);
        assert_int_equal(tx_rec_next(&it, &tag, &v), TX_OK);
        assert_int_equal(tx_rec_next(&it, &tag, &v), TX_ERROR);
        /* stays in error */
        assert_int_equal(tx_rec_next(&it, &tag, &v), TX_ERROR);
        assert_int_equal(tx_rec_find(buf, n - cut, 2, &v), TX_ERROR);
    }

    /* a length near 4 GiB must not wrap around */
    memcpy(buf, "\x01\x00\xff\xff\xff\xff", 6);
    tx_rec_iter_init(&it, buf, 6);
    assert_int_equal(tx_rec_next(&it, &tag, &v), TX_ERROR);

    tx_rec_iter_init(&it, buf, 0);
    assert_int_equal(tx_rec_next(&it, &tag, &v), TX_DONE);
}


static void
test_compact(void **state)
{
    size_t        n, cut, lens[] = {0, 5, 127, 128, 16383, 16384, 70000};
    uint8_t      *big, buf[64];
    uint16_t      tag;
    uint64_t      u;
    int64_t       i;
    tx_str_t      v;
    tx_wbuf_t     wb;
    tx_rec_iter_t it;
    unsigned      k;

    static const uint64_t ints[] = {0,          1,
                                    127,        255,
                                    256,        65535,
                                    1ULL << 40, (1ULL << 56) - 1,
                                    1ULL << 56, UINT64_MAX};
    static const size_t   ilen[] = {0, 1, 1, 1, 2, 2, 6, 7, 8, 8};

    static const struct {
        const char *rec;
        size_t      len;
    } bad[] = {
        {"\xff\x81\x00", 3},                     /* tag 0x81 */
        {"\xff\x01\x80\x00", 4},                 /* overlong length 0 */
        {"\xff\x01\xff\xff\xff\xff\x0f", 7},     /* 4 GiB - 1: past the end */
        {"\xff\x01\xff\xff\xff\xff\x10", 7},     /* 4 GiB: past 32 bits */
        {"\xff\x01\x81\x80\x80\x80\x80\x01", 8}, /* six bytes of length */
    };

    /* integers: shortest little endian, the header two bytes */
    for (k = 0; k < sizeof(ints) / sizeof(ints[0]); k++) {
        tx_wbuf_init_compact(&wb, buf, sizeof(buf));
        tx_rec_put_u64(&wb, 11, ints[k]);
        assert_false(wb.overflow);
        assert_int_equal(wb.pos - wb.start, 1 + 2 + ilen[k]);
        assert_int_equal(buf[0], TX_REC_COMPACT);
        assert_int_equal(buf[1], 11);
        assert_int_equal(buf[2], ilen[k]);

        tx_rec_iter_init(&it, buf, wb.pos - wb.start);
        assert_true(it.compact);
        assert_int_equal(tx_rec_next(&it, &tag, &v), TX_OK);
        assert_int_equal(tag, 11);
        assert_int_equal(tx_rec_uint(&v, &u), TX_OK);
        assert_true(u == ints[k]);
        assert_int_equal(tx_rec_u64(&v, &u), ilen[k] == 8 ? TX_OK : TX_ERROR);
        assert_int_equal(tx_rec_next(&it, &tag, &v), TX_DONE);
    }

    tx_wbuf_init_compact(&wb, buf, sizeof(buf));
    tx_rec_put_i64(&wb, 23, -42);
    tx_rec_put_cstr(&wb, 3, "key_abc");
    assert_false(wb.overflow);
    assert_int_equal(wb.pos - wb.start, 1 + 2 + 8 + 2 + 7);
    assert_int_equal(tx_rec_find(buf, wb.pos - wb.start, 3, &v), TX_OK);
    assert_int_equal(v.len, 7);
    assert_memory_equal(v.data, "key_abc", 7);
    assert_int_equal(tx_rec_find(buf, wb.pos - wb.start, 23, &v), TX_OK);
    assert_int_equal(tx_rec_int(&v, &i), TX_OK);
    assert_int_equal(i, -42);

    /* lengths over a byte: varint, never a longer header than fixed */
    big = malloc(80000);
    assert_non_null(big);
    memset(big, 'x', 80000);

    for (k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        uint8_t *rec = malloc(lens[k] + 16);

        assert_non_null(rec);
        tx_wbuf_init_compact(&wb, rec, lens[k] + 16);
        tx_rec_put_bytes(&wb, 30, big, lens[k]);
        assert_false(wb.overflow);
        n = wb.pos - wb.start;
        assert_int_equal(n, 1 + 1
                                + (lens[k] < 128     ? 1
                                   : lens[k] < 16384 ? 2
                                                     : 3)
                                + lens[k]);
        assert_true(n - 1 <= tx_rec_field_size(lens[k]));

        tx_rec_iter_init(&it, rec, n);
        assert_int_equal(tx_rec_next(&it, &tag, &v), TX_OK);
        assert_int_equal(tag, 30);
        assert_int_equal(v.len, lens[k]);
        assert_int_equal(tx_rec_next(&it, &tag, &v), TX_DONE);

        /* every truncation is an error, never a short field */
        for (cut = 1; cut < n; cut++) {
            tx_rec_iter_init(&it, rec, n - cut);
            assert_int_equal(tx_rec_next(&it, &tag, &v),
                             n - cut == 1 ? TX_DONE : TX_ERROR);
        }

        free(rec);
    }

    free(big);

    /* tags are one byte below 128 */
    tx_wbuf_init_compact(&wb, buf, sizeof(buf));
    tx_rec_put_u64(&wb, 128, 1);
    assert_true(wb.overflow);
    tx_wbuf_init_compact(&wb, buf, sizeof(buf));
    tx_rec_put_bytes(&wb, 200, "a", 1);
    assert_true(wb.overflow);
    tx_wbuf_init_compact(&wb, buf, 0);
    assert_true(wb.overflow);

    /* room: a two-byte header and the value's bytes, no more */
    tx_wbuf_init_compact(&wb, buf, 1 + 2 + 2);
    tx_rec_put_u64(&wb, 11, 300);
    assert_false(wb.overflow);
    tx_rec_put_u64(&wb, 12, 0);
    assert_true(wb.overflow);

    /* malformed: a tag with its top bit, an overlong or too long length */
    for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        tx_rec_iter_init(&it, bad[k].rec, bad[k].len);
        assert_int_equal(tx_rec_next(&it, &tag, &v), TX_ERROR);
    }

    /* a fixed-form record is still read as one */
    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_u64(&wb, 2, 7);
    tx_rec_iter_init(&it, buf, wb.pos - wb.start);
    assert_false(it.compact);
    assert_int_equal(tx_rec_next(&it, &tag, &v), TX_OK);
    assert_int_equal(v.len, 8);
}


static void
test_find(void **state)
{
    uint8_t   buf[64];
    tx_str_t  v;
    tx_wbuf_t wb;

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_cstr(&wb, 900, "unknown");
    tx_rec_put_cstr(&wb, 7, "first");
    tx_rec_put_cstr(&wb, 7, "second");

    assert_int_equal(tx_rec_find(buf, wb.pos - wb.start, 7, &v), TX_OK);
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.data, "first", 5);
    assert_int_equal(tx_rec_find(buf, wb.pos - wb.start, 8, &v), TX_DECLINED);
    assert_int_equal(tx_rec_find(buf, 0, 8, &v), TX_DECLINED);
}


static void
test_key_decode(void **state)
{
    uint8_t      buf[512], *odd;
    tx_wbuf_t    wb;
    tx_key_rec_t k;
    size_t       n;

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_cstr(&wb, TX_KEY_ID, "key_abc");
    tx_rec_put_cstr(&wb, TX_KEY_NAME, "ci");
    tx_rec_put_cstr(&wb, TX_KEY_PROJECT, "prj_1");
    tx_rec_put_cstr(&wb, TX_KEY_MODELS, "gpt-4o*\nclaude-*");
    tx_rec_put_u64(&wb, TX_KEY_ACCESS, TX_ACCESS_READ);
    tx_rec_put_u64(&wb, TX_KEY_STATUS, TX_STATUS_ACTIVE);
    tx_rec_put_i64(&wb, TX_KEY_EXPIRES_AT, 1900000000);
    tx_rec_put_u64(&wb, TX_KEY_RPM, 60);
    tx_rec_put_i64(&wb, TX_KEY_MONTHLY_BUDGET, 12 * TX_MONEY_PER_USD);
    tx_rec_put_u64(&wb, TX_KEY_SOFT_PCT, 80);
    tx_rec_put_cstr(&wb, 999, "future field");
    assert_false(wb.overflow);
    n = wb.pos - wb.start;

    /* values read from LMDB are not aligned */
    odd = buf + 256 + 1;
    memmove(odd, buf, n);

    assert_int_equal(tx_key_rec_decode(odd, n, &k), TX_OK);
    assert_int_equal(k.id.len, 7);
    assert_memory_equal(k.id.data, "key_abc", 7);
    assert_int_equal(k.name.len, 2);
    assert_int_equal(k.user.len, 0);
    assert_int_equal(k.org.len, 0);
    assert_int_equal(k.models.len, 16);
    assert_int_equal(k.access, TX_ACCESS_READ);
    assert_int_equal(k.status, TX_STATUS_ACTIVE);
    assert_int_equal(k.expires_at, 1900000000);
    assert_int_equal(k.rpm, 60);
    assert_int_equal(k.tpm, 0);
    assert_int_equal(k.daily_cap, 0);
    assert_int_equal(k.monthly_budget, 12 * TX_MONEY_PER_USD);
    assert_int_equal(k.soft_pct, 80);

    assert_int_equal(tx_key_rec_decode(odd, n - 1, &k), TX_ERROR);

    /* an integer field of the wrong size is corrupt */
    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_bytes(&wb, TX_KEY_RPM, "\x01\x02", 2);
    assert_int_equal(tx_key_rec_decode(buf, wb.pos - wb.start, &k), TX_ERROR);

    assert_int_equal(tx_key_rec_decode(buf, 0, &k), TX_OK);
    assert_int_equal(k.id.len, 0);
}


static void
test_khash_provider_decode(void **state)
{
    uint8_t           buf[256];
    tx_wbuf_t         wb;
    tx_khash_rec_t    kh;
    tx_provider_rec_t pr;

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_cstr(&wb, TX_KH_KEY_ID, "key_x");
    tx_rec_put_i64(&wb, TX_KH_NOT_AFTER, 1700000000);
    assert_int_equal(tx_khash_rec_decode(buf, wb.pos - wb.start, &kh), TX_OK);
    assert_int_equal(kh.key_id.len, 5);
    assert_int_equal(kh.not_after, 1700000000);

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_cstr(&wb, TX_KH_KEY_ID, "key_y");
    assert_int_equal(tx_khash_rec_decode(buf, wb.pos - wb.start, &kh), TX_OK);
    assert_int_equal(kh.not_after, 0);

    tx_rec_put_bytes(&wb, TX_KH_NOT_AFTER, "1234", 4);
    assert_int_equal(tx_khash_rec_decode(buf, wb.pos - wb.start, &kh),
                     TX_ERROR);

    tx_wbuf_init(&wb, buf, sizeof(buf));
    tx_rec_put_cstr(&wb, TX_PRV_NAME, "openai");
    tx_rec_put_u64(&wb, TX_PRV_KIND, TX_PROVIDER_OPENAI);
    tx_rec_put_cstr(&wb, TX_PRV_BASE_URL, "https://api.openai.com/v1");
    assert_int_equal(tx_provider_rec_decode(buf, wb.pos - wb.start, &pr),
                     TX_OK);
    assert_int_equal(pr.kind, TX_PROVIDER_OPENAI);
    assert_int_equal(pr.base_url.len, 25);
    assert_int_equal(pr.api_key.len, 0);
    assert_int_equal(tx_provider_rec_decode(buf, 3, &pr), TX_ERROR);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_compact),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_key_decode),
        cmocka_unit_test(test_khash_provider_decode),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests: JSON request scanner and string unescaping.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tx_json.h"


static int
scan(const char *s, tx_json_req_t *r)
{
    char err[128];

    return tx_json_scan_request((const uint8_t *) s, strlen(s), r, err,
                                sizeof(err));
}


static int
ok(const char *s)
{
    tx_json_req_t r;

    return scan(s, &r) == TX_OK;
}


static void
assert_span(const char *body, const tx_json_span_t *sp, const char *want)
{
    assert_true(sp->off >= 0);
    assert_int_equal(sp->len, strlen(want));
    assert_memory_equal(body + sp->off, want, sp->len);
}


static void
test_basic(void **state)
{
    tx_json_req_t r;
    const char   *b;

    b = "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\","
        "\"content\":\"hi\"}],\"stream\":true,\"max_tokens\":256,"
        "\"stream_options\":{\"include_usage\":true}}";

    assert_int_equal(scan(b, &r), TX_OK);
    assert_span(b, &r.model, "\"gpt-4o-mini\"");
    assert_true(r.model_is_string);
    assert_false(r.model_has_escape);
    assert_span(b, &r.stream, "true");
    assert_true(r.stream_on);
    assert_span(b, &r.max_tokens, "256");
    assert_int_equal(r.max_out, 256);
    assert_span(b, &r.stream_options, "{\"include_usage\":true}");
    assert_span(b, &r.include_usage, "true");
    assert_true(r.include_usage_on);
    assert_int_equal(r.max_completion_tokens.off, -1);
    assert_int_equal(r.max_output_tokens.off, -1);
}


static void
test_absent(void **state)
{
    tx_json_req_t r;

    assert_int_equal(scan("{}", &r), TX_OK);
    assert_int_equal(r.model.off, -1);
    assert_int_equal(r.stream.off, -1);
    assert_int_equal(r.stream_options.off, -1);
    assert_int_equal(r.include_usage.off, -1);
    assert_false(r.stream_on);
    assert_false(r.include_usage_on);
    assert_false(r.model_is_string);
    assert_int_equal(r.max_out, -1);

    assert_int_equal(scan("{\"stream\":false,\"model\":42}", &r), TX_OK);
    assert_false(r.stream_on);
    assert_false(r.model_is_string);
    assert_int_equal(r.model.len, 2);

    assert_int_equal(scan("{\"stream\":\"true\"}", &r), TX_OK);
    assert_false(r.stream_on);
}


static void
test_whitespace(void **state)
{
    tx_json_req_t r;
    const char   *b;

    b = " \r\n\t{ \"model\" :\t\"m\" , \"stream\" : true }\n ";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_span(b, &r.model, "\"m\"");
    assert_true(r.stream_on);
    assert_true(ok("{ }"));
    assert_true(ok("{\"a\":[ ]}"));
    assert_true(ok("{\"a\":[ 1 , 2 ]}"));
    assert_false(ok("\x0b{}"));
    assert_false(ok("\xef\xbb\xbf{}"));
}


static void
test_nested_model(void **state)
{
    tx_json_req_t r;
    const char   *b;

    b = "{\"messages\":[{\"model\":\"evil\",\"stream\":true}],"
        "\"metadata\":{\"model\":\"evil2\",\"max_tokens\":9},"
        "\"model\":\"good\"}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_span(b, &r.model, "\"good\"");
    assert_false(r.stream_on);
    assert_int_equal(r.max_out, -1);

    b = "{\"messages\":[{\"model\":\"evil\"}]}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_int_equal(r.model.off, -1);

    /* include_usage only as a direct member of top-level stream_options */
    b = "{\"include_usage\":true,\"x\":{\"include_usage\":true},"
        "\"stream_options\":{\"y\":{\"include_usage\":true}}}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_int_equal(r.include_usage.off, -1);
    assert_false(r.include_usage_on);

    b = "{\"stream_options\":[{\"include_usage\":true}]}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_int_equal(r.include_usage.off, -1);

    b = "{\"stream_options\":{\"include_usage\":false}}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_span(b, &r.include_usage, "false");
    assert_false(r.include_usage_on);

    b = "{\"stream_options\":{\"a\":{\"b\":[1]},\"include_usage\":{\"c\":1}}}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_span(b, &r.include_usage, "{\"c\":1}");
    assert_false(r.include_usage_on);

    /* a container value of model spans the whole value */
    b = "{\"model\":{\"model\":\"x\"},\"stream\":true}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_span(b, &r.model, "{\"model\":\"x\"}");
    assert_false(r.model_is_string);
    assert_true(r.stream_on);
}


static void
test_duplicates(void **state)
{
    tx_json_req_t r;
    const char   *b;

    b = "{\"model\":\"a\",\"stream\":true,\"model\":\"b\",\"stream\":false}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_span(b, &r.model, "\"b\"");
    assert_false(r.stream_on);

    /* an escaped key is the same key */
    b = "{\"model\":\"cheap\",\"mod\\u0065l\":\"pricey\"}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_span(b, &r.model, "\"pricey\"");

    b = "{\"stream_options\":{\"include_usage\":true},"
        "\"stream_options\":{}}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_span(b, &r.stream_options, "{}");
    assert_int_equal(r.include_usage.off, -1);
    assert_false(r.include_usage_on);

    b = "{\"stream_options\":{\"include_usage\":true,\"include_usage\":0}}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_false(r.include_usage_on);

    b = "{\"model\":\"a\\\"b\"}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_true(r.model_is_string);
    assert_true(r.model_has_escape);
    assert_span(b, &r.model, "\"a\\\"b\"");
}


static void
test_max_out(void **state)
{
    tx_json_req_t r;

    assert_int_equal(scan("{\"max_completion_tokens\":100}", &r), TX_OK);
    assert_int_equal(r.max_out, 100);
    assert_int_equal(scan("{\"max_output_tokens\":7}", &r), TX_OK);
    assert_int_equal(r.max_out, 7);
    assert_int_equal(scan("{\"max_output_tokens\":7,\"max_tokens\":5}", &r),
                     TX_OK);
    assert_int_equal(r.max_out, 5);
    assert_int_equal(scan("{\"max_tokens\":null,"
                          "\"max_completion_tokens\":9}",
                          &r),
                     TX_OK);
    assert_int_equal(r.max_out, 9);
    assert_int_equal(scan("{\"max_tokens\":0}", &r), TX_OK);
    assert_int_equal(r.max_out, 0);
    assert_int_equal(scan("{\"max_tokens\":-1}", &r), TX_OK);
    assert_int_equal(r.max_out, -1);
    assert_int_equal(scan("{\"max_tokens\":-0}", &r), TX_OK);
    assert_int_equal(r.max_out, -1);
    assert_int_equal(scan("{\"max_tokens\":1.5}", &r), TX_OK);
    assert_int_equal(r.max_out, -1);
    assert_int_equal(scan("{\"max_tokens\":1e5}", &r), TX_OK);
    assert_int_equal(r.max_out, -1);
    assert_int_equal(scan("{\"max_tokens\":\"100\"}", &r), TX_OK);
    assert_int_equal(r.max_out, -1);
    assert_int_equal(scan("{\"max_tokens\":9223372036854775807}", &r), TX_OK);
    assert_true(r.max_out == INT64_MAX);
    assert_int_equal(scan("{\"max_tokens\":9223372036854775808}", &r), TX_OK);
    assert_int_equal(r.max_out, -1);
    assert_int_equal(scan("{\"max_tokens\":99999999999999999999999}", &r),
                     TX_OK);
    assert_int_equal(r.max_out, -1);
}


static void
test_numbers(void **state)
{
    assert_true(ok("{\"a\":-0}"));
    assert_true(ok("{\"a\":1e5}"));
    assert_true(ok("{\"a\":1E+5}"));
    assert_true(ok("{\"a\":-1.25e-10}"));
    assert_true(ok("{\"a\":0.5}"));
    assert_true(ok("{\"a\":[0,10,-0.0]}"));
    assert_false(ok("{\"a\":01}"));
    assert_false(ok("{\"a\":-01}"));
    assert_false(ok("{\"a\":1.}"));
    assert_false(ok("{\"a\":.5}"));
    assert_false(ok("{\"a\":1e}"));
    assert_false(ok("{\"a\":1e+}"));
    assert_false(ok("{\"a\":-}"));
    assert_false(ok("{\"a\":+1}"));
    assert_false(ok("{\"a\":0x10}"));
    assert_false(ok("{\"a\":NaN}"));
    assert_false(ok("{\"a\":Infinity}"));
    assert_false(ok("{\"a\":1"));
}


static void
test_literals(void **state)
{
    assert_true(ok("{\"a\":true,\"b\":false,\"c\":null}"));
    assert_false(ok("{\"a\":tru}"));
    assert_false(ok("{\"a\":True}"));
    assert_false(ok("{\"a\":nul}"));
    assert_false(ok("{\"a\":falsey}"));
    assert_false(ok("{\"a\":truefalse}"));
    assert_false(ok("{\"a\":undefined}"));
}


static void
test_strings(void **state)
{
    assert_true(
        ok("{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\"}"));
    assert_true(ok("{\"a\":\"caf\xc3\xa9\"}"));
    assert_true(ok("{\"\":\"\"}"));
    assert_false(ok("{\"a\":\"abc}"));
    assert_false(ok("{\"a\":\"abc\\\"}"));
    assert_false(ok("{\"a\":\"\\x41\"}"));
    assert_false(ok("{\"a\":\"\\'\"}"));
    assert_false(ok("{\"a\":\"\\u12\"}"));
    assert_false(ok("{\"a\":\"\\u12G4\"}"));
    assert_false(ok("{\"a\":\"\\"));
    assert_false(ok("{\"a\":\"tab\there\"}"));
    assert_false(ok("{\"a\":\"nl\nhere\"}"));
    assert_false(ok("{\"a\":\"\x1f\"}"));
    assert_false(ok("{\"a\":'single'}"));
    assert_false(ok("{\"k\x01\":1}"));
    assert_true(ok("{\"a\":\"\x7f\"}"));
}


static void
test_structure(void **state)
{
    tx_json_req_t r;
    char          err[64];
    const char   *b;

    assert_false(ok(""));
    assert_false(ok("   "));
    assert_false(ok("[]"));
    assert_false(ok("[{\"model\":\"x\"}]"));
    assert_false(ok("\"str\""));
    assert_false(ok("42"));
    assert_false(ok("null"));
    assert_false(ok("{"));
    assert_false(ok("}"));
    assert_false(ok("{\"a\"}"));
    assert_false(ok("{\"a\":}"));
    assert_false(ok("{\"a\" 1}"));
    assert_false(ok("{a:1}"));
    assert_false(ok("{\"a\":1,}"));
    assert_false(ok("{,\"a\":1}"));
    assert_false(ok("{\"a\":1 \"b\":2}"));
    assert_false(ok("{\"a\":[1,]}"));
    assert_false(ok("{\"a\":[1 2]}"));
    assert_false(ok("{\"a\":[}"));
    assert_false(ok("{\"a\":{]}"));
    assert_false(ok("{\"a\":[1}"));
    assert_false(ok("{} {}"));
    assert_false(ok("{}x"));
    assert_false(ok("{}}"));
    assert_false(ok("{}\n,"));

    /* a NUL inside the body is not the end */
    assert_int_equal(tx_json_scan_request((const uint8_t *) "{}\0", 3, &r, NULL,
                                          0),
                     TX_ERROR);
    assert_int_equal(tx_json_scan_request(NULL, 0, &r, NULL, 0), TX_ERROR);

    b = "{\"model\":\"x\"} garbage";
    assert_int_equal(tx_json_scan_request((const uint8_t *) b, strlen(b), &r,
                                          err, sizeof(err)),
                     TX_ERROR);
    assert_string_equal(err, "trailing data at offset 14");

    b = "{\"a\":\"x\x01\"}";
    assert_int_equal(tx_json_scan_request((const uint8_t *) b, strlen(b), &r,
                                          err, sizeof(err)),
                     TX_ERROR);
    assert_string_equal(err, "control character in string at offset 7");

    /* a short error buffer is cut, still NUL-terminated */
    assert_int_equal(tx_json_scan_request((const uint8_t *) b, strlen(b), &r,
                                          err, 8),
                     TX_ERROR);
    assert_string_equal(err, "control");
}


static void
test_depth(void **state)
{
    char  *b;
    size_t n, i;

    /* TX_JSON_MAX_DEPTH containers nest; one more does not */
    for (n = TX_JSON_MAX_DEPTH; n <= TX_JSON_MAX_DEPTH + 1; n++) {
        b = malloc(2 * n + 16);
        assert_non_null(b);
        i = 0;
        b[i++] = '{';
        memcpy(b + i, "\"a\":", 4);
        i += 4;
        memset(b + i, '[', n - 1);
        i += n - 1;
        memset(b + i, ']', n - 1);
        i += n - 1;
        b[i++] = '}';
        b[i] = '\0';

        assert_int_equal(ok(b), n == TX_JSON_MAX_DEPTH);
        free(b);
    }

    /* a deep unterminated body is an error, not a crash */
    b = malloc(100001);
    assert_non_null(b);
    b[0] = '{';
    memcpy(b + 1, "\"a\":", 4);
    memset(b + 5, '[', 99995);
    b[100000] = '\0';
    assert_false(ok(b));
    free(b);
}


static void
test_unescape(void **state)
{
    uint8_t     out[64];
    const char *s;
    ssize_t     n;

    s = "\"gpt-4o\"";
    n = tx_json_unescape((const uint8_t *) s, strlen(s), out, sizeof(out));
    assert_int_equal(n, 6);
    assert_memory_equal(out, "gpt-4o", 6);

    s = "\"a\\\"b\\\\c\\/d\\n\\t\\u0041\\u00e9\\u20ac\\ud83d\\ude00\"";
    n = tx_json_unescape((const uint8_t *) s, strlen(s), out, sizeof(out));
    assert_int_equal(n, 10 + 2 + 3 + 4);
    assert_memory_equal(out,
                        "a\"b\\c/d\n\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
                        (size_t) n);

    s = "\"\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, 2, NULL, 0), 0);

    /* does not fit */
    s = "\"abcdef\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, strlen(s), out, 5),
                     -1);
    s = "\"\\u20ac\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, strlen(s), out, 2),
                     -1);
    assert_int_equal(tx_json_unescape((const uint8_t *) s, strlen(s), out, 3),
                     3);

    /* not a valid string */
    s = "abc";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, 3, out, 64), -1);
    s = "\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, 1, out, 64), -1);
    s = "\"a\"b\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, 5, out, 64), -1);
    s = "\"ab\\\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, 5, out, 64), -1);
    s = "\"\\q\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, 4, out, 64), -1);
    s = "\"\\ud83d\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, 8, out, 64), -1);
    s = "\"\\ude00\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, 8, out, 64), -1);
    s = "\"\\ud83d\\u0041\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, 14, out, 64), -1);
    s = "\"\\u00\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, 6, out, 64), -1);
    s = "\"a\tb\"";
    assert_int_equal(tx_json_unescape((const uint8_t *) s, 5, out, 64), -1);
}


static void
test_scan_then_unescape(void **state)
{
    tx_json_req_t r;
    uint8_t       out[32];
    ssize_t       n;
    const char   *b;

    b = "{\"model\":\"gpt\\u002d4o\"}";
    assert_int_equal(scan(b, &r), TX_OK);
    assert_true(r.model_has_escape);
    n = tx_json_unescape((const uint8_t *) b + r.model.off, r.model.len, out,
                         sizeof(out));
    assert_int_equal(n, 6);
    assert_memory_equal(out, "gpt-4o", 6);
}


/* tx_json_plain against a byte loop: every length to 300, each stop byte
 * at every position, from every start up to 40 (both vector widths and
 * the tails) */
static void
test_plain_skip(void **state)
{
    size_t  len, at, from, want, k;
    uint8_t buf[300];

    static const uint8_t stops[] = {'"', '\\', 0x00, 0x1f, 0x0a};

    (void) state;

    for (len = 0; len <= sizeof(buf); len++) {
        for (at = 0; at <= len; at++) {
            for (k = 0; k < sizeof(stops); k++) {
                memset(buf, 'a', sizeof(buf));
                buf[len > 0 ? len - 1 : 0] = 0xc3; /* a high byte is plain */

                if (at < len) {
                    buf[at] = stops[k];
                }

                for (from = 0; from <= len && from <= 40; from++) {
                    want = at < len && at >= from ? at : len;

                    if (at < from) {
                        want = len;
                    }

                    assert_int_equal(tx_json_plain(buf, from, len), want);
                }

                if (at == len) {
                    break;
                }
            }
        }
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_absent),
        cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_nested_model),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_max_out),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_scan_then_unescape),
        cmocka_unit_test(test_plain_skip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

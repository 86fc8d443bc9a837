/*
 * Unit tests: URL parsing and the /proxy allowlist.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "tx_url.h"


static int
parse(const char *s, tx_url_t *u)
{
    return tx_url_parse((const uint8_t *) s, strlen(s), u);
}


static int
allowed(const char *url, const char *pats)
{
    tx_url_t u;
    tx_str_t p;

    if (parse(url, &u) != TX_OK) {
        return -1;
    }

    p.data = (const uint8_t *) pats;
    p.len = strlen(pats);

    return tx_url_allowed(&u, &p);
}


static void
assert_str(const tx_str_t *s, const char *want)
{
    assert_int_equal(s->len, strlen(want));
    assert_memory_equal(s->data, want, s->len);
}


static void
test_parse(void **state)
{
    tx_url_t u;

    assert_int_equal(parse("https://api.openai.com/v1/chat?x=1&y", &u), TX_OK);
    assert_true(u.https);
    assert_str(&u.host, "api.openai.com");
    assert_int_equal(u.port, 443);
    assert_false(u.port_set);
    assert_str(&u.path, "/v1/chat");
    assert_str(&u.query, "x=1&y");
    assert_str(&u.hostport, "api.openai.com");

    assert_int_equal(parse("http://127.0.0.1:9000", &u), TX_OK);
    assert_false(u.https);
    assert_str(&u.host, "127.0.0.1");
    assert_int_equal(u.port, 9000);
    assert_true(u.port_set);
    assert_str(&u.path, "");
    assert_str(&u.query, "");
    assert_str(&u.hostport, "127.0.0.1:9000");

    assert_int_equal(parse("http://h?q", &u), TX_OK);
    assert_str(&u.path, "");
    assert_str(&u.query, "q");
    assert_int_equal(u.port, 80);

    assert_int_equal(parse("HTTPS://API.OpenAI.com/", &u), TX_OK);
    assert_true(u.https);
    assert_str(&u.host, "API.OpenAI.com");
    assert_str(&u.path, "/");

    assert_int_equal(parse("http://[::1]:8080/x", &u), TX_OK);
    assert_str(&u.host, "::1");
    assert_int_equal(u.port, 8080);
    assert_str(&u.hostport, "[::1]:8080");
    assert_int_equal(parse("https://[2001:DB8::a]/", &u), TX_OK);
    assert_str(&u.host, "2001:DB8::a");
    assert_int_equal(u.port, 443);
    assert_int_equal(parse("http://[::ffff:1.2.3.4]", &u), TX_OK);

    assert_int_equal(parse("http://h:65535", &u), TX_OK);
    assert_int_equal(u.port, 65535);
    assert_int_equal(parse("http://h:00080", &u), TX_OK);
    assert_int_equal(u.port, 80);
    assert_true(u.port_set);
}


static void
test_parse_rejects(void **state)
{
    tx_url_t u;

    assert_int_equal(parse("https://user@api.openai.com/", &u), TX_ERROR);
    assert_int_equal(parse("https://user:pw@api.openai.com/", &u), TX_ERROR);
    assert_int_equal(parse("https://evil.com@api.openai.com", &u), TX_ERROR);
    assert_int_equal(parse("https://api.openai.com/#frag", &u), TX_ERROR);
    assert_int_equal(parse("https://api.openai.com\\@evil.com/", &u), TX_ERROR);
    assert_int_equal(parse("https://api.openai.com /", &u), TX_ERROR);
    assert_int_equal(parse("https://api.openai.com/a b", &u), TX_ERROR);
    assert_int_equal(parse("https://api.openai.com/\r\nX: y", &u), TX_ERROR);
    assert_int_equal(parse("https://api.openai.com\x7f", &u), TX_ERROR);
    assert_int_equal(tx_url_parse((const uint8_t *) "http://a\0b", 10, &u),
                     TX_ERROR);
    assert_int_equal(parse("ftp://h/", &u), TX_ERROR);
    assert_int_equal(parse("//h/", &u), TX_ERROR);
    assert_int_equal(parse("/v1/chat", &u), TX_ERROR);
    assert_int_equal(parse("https:/h", &u), TX_ERROR);
    assert_int_equal(parse("https://", &u), TX_ERROR);
    assert_int_equal(parse("https:///x", &u), TX_ERROR);
    assert_int_equal(parse("https://:443", &u), TX_ERROR);
    assert_int_equal(parse("", &u), TX_ERROR);
    assert_int_equal(parse("http://h:", &u), TX_ERROR);
    assert_int_equal(parse("http://h:0", &u), TX_ERROR);
    assert_int_equal(parse("http://h:65536", &u), TX_ERROR);
    assert_int_equal(parse("http://h:123456", &u), TX_ERROR);
    assert_int_equal(parse("http://h:8x", &u), TX_ERROR);
    assert_int_equal(parse("http://h:80:81", &u), TX_ERROR);
    assert_int_equal(parse("http://h%2ecom/", &u), TX_ERROR);
    assert_int_equal(parse("http://*.h.com/", &u), TX_ERROR);
    assert_int_equal(parse("http://a..b/", &u), TX_ERROR);
    assert_int_equal(parse("http://.a/", &u), TX_ERROR);
    assert_int_equal(parse("http://h\xc3\xa9/", &u), TX_ERROR);
    assert_int_equal(parse("http://[::1/", &u), TX_ERROR);
    assert_int_equal(parse("http://[]/", &u), TX_ERROR);
    assert_int_equal(parse("http://[1.2.3.4]/", &u), TX_ERROR);
    assert_int_equal(parse("http://[::1]x/", &u), TX_ERROR);
    assert_int_equal(parse("http://[::1%25eth0]/", &u), TX_ERROR);
    assert_int_equal(parse("http://::1/", &u), TX_ERROR);
    assert_int_equal(parse("http://h/v1/../admin", &u), TX_ERROR);
    assert_int_equal(parse("http://h/v1/..", &u), TX_ERROR);
    assert_int_equal(parse("http://h/./x", &u), TX_ERROR);
    assert_int_equal(parse("http://h/v1/%2e%2E/admin", &u), TX_ERROR);
    assert_int_equal(parse("http://h/v1/.%2e/admin", &u), TX_ERROR);
    assert_int_equal(parse("http://h/v1%2fadmin", &u), TX_ERROR);
    assert_int_equal(parse("http://h/v1%5Cadmin", &u), TX_ERROR);

    /* dots that are not whole segments are fine */
    assert_int_equal(parse("http://h/a.b/...x/.well-known/v1.", &u), TX_OK);
    assert_int_equal(parse("http://h/a/...", &u), TX_OK);
    assert_int_equal(parse("http://h/x?../..", &u), TX_OK);
}


static void
test_allowed_exact(void **state)
{
    const char *p;

    p = "https://api.openai.com";
    assert_int_equal(allowed("https://api.openai.com/v1/chat/completions", p),
                     1);
    assert_int_equal(allowed("https://api.openai.com", p), 1);
    assert_int_equal(allowed("https://API.OPENAI.COM/v1", p), 1);
    assert_int_equal(allowed("https://api.openai.com:443/v1", p), 1);
    assert_int_equal(allowed("https://api.openai.com.evil.com/v1", p), 0);
    assert_int_equal(allowed("https://evilapi.openai.com/v1", p), 0);
    assert_int_equal(allowed("https://x.api.openai.com/v1", p), 0);
    assert_int_equal(allowed("https://api.openai.co/v1", p), 0);
    assert_int_equal(allowed("http://api.openai.com/v1", p), 0);
    assert_int_equal(allowed("https://api.openai.com:8443/v1", p), 0);
    assert_int_equal(allowed("https://api.openai.com./v1", p), 0);

    /* uppercase in the pattern too */
    assert_int_equal(allowed("https://api.openai.com/",
                             "HTTPS://Api.OpenAI.Com"),
                     1);

    /* an explicit default port in the pattern is the same port */
    assert_int_equal(allowed("https://api.openai.com/",
                             "https://api.openai.com:443"),
                     1);
    assert_int_equal(allowed("http://h:8080/", "http://h"), 0);
    assert_int_equal(allowed("http://h/", "http://h:8080"), 0);
    assert_int_equal(allowed("http://h:8080/", "http://h:8080"), 1);
}


static void
test_allowed_wildcard(void **state)
{
    const char *p;

    p = "https://*.openai.azure.com";
    assert_int_equal(allowed("https://myco.openai.azure.com/openai/x", p), 1);
    assert_int_equal(allowed("https://a.b.openai.azure.com/", p), 1);
    assert_int_equal(allowed("https://MYCO.OpenAI.Azure.com/", p), 1);
    assert_int_equal(allowed("https://openai.azure.com/", p), 0);
    assert_int_equal(allowed("https://.openai.azure.com/", p), -1);
    assert_int_equal(allowed("https://evilopenai.azure.com/", p), 0);
    assert_int_equal(allowed("https://x.openai.azure.com.evil.com/", p), 0);
    assert_int_equal(allowed("http://x.openai.azure.com/", p), 0);
    assert_int_equal(allowed("https://x.openai.azure.com:444/", p), 0);
    assert_int_equal(allowed("https://[::1]/", p), 0);
}


static void
test_allowed_path(void **state)
{
    const char *p;

    p = "http://127.0.0.1:9000/v1";
    assert_int_equal(allowed("http://127.0.0.1:9000/v1", p), 1);
    assert_int_equal(allowed("http://127.0.0.1:9000/v1/x", p), 1);
    assert_int_equal(allowed("http://127.0.0.1:9000/v1?q=1", p), 1);
    assert_int_equal(allowed("http://127.0.0.1:9000/v10", p), 0);
    assert_int_equal(allowed("http://127.0.0.1:9000/v", p), 0);
    assert_int_equal(allowed("http://127.0.0.1:9000/", p), 0);
    assert_int_equal(allowed("http://127.0.0.1:9000", p), 0);
    assert_int_equal(allowed("http://127.0.0.1:9000/V1/x", p), 0);
    assert_int_equal(allowed("http://127.0.0.1/v1", p), 0);

    p = "http://127.0.0.1:9000/v1/";
    assert_int_equal(allowed("http://127.0.0.1:9000/v1/", p), 1);
    assert_int_equal(allowed("http://127.0.0.1:9000/v1/x/y", p), 1);
    assert_int_equal(allowed("http://127.0.0.1:9000/v1", p), 0);
    assert_int_equal(allowed("http://127.0.0.1:9000/v10/", p), 0);

    p = "https://h/";
    assert_int_equal(allowed("https://h", p), 1);
    assert_int_equal(allowed("https://h/anything", p), 1);
}


static void
test_allowed_list(void **state)
{
    tx_url_t    u;
    tx_str_t    p;
    const char *pats;

    pats = "\n  https://a.example  \r\nnot a url\nhttp://[::1]:8000/v1\n"
           "https://h?x=1\nhttps://*.\n\n";
    assert_int_equal(allowed("https://a.example/x", pats), 1);
    assert_int_equal(allowed("http://[::1]:8000/v1/m", pats), 1);
    assert_int_equal(allowed("http://[0::1]:8000/v1/m", pats), 0);
    assert_int_equal(allowed("http://[::1]:8001/v1/m", pats), 0);
    assert_int_equal(allowed("https://h/", pats), 0);
    assert_int_equal(allowed("https://b.example/", pats), 0);
    assert_int_equal(allowed("https://a.example/", ""), 0);

    p.data = (const uint8_t *) tx_url_default_targets;
    p.len = strlen(tx_url_default_targets);

    assert_int_equal(parse("https://api.anthropic.com/v1/messages", &u), TX_OK);
    assert_true(tx_url_allowed(&u, &p));
    assert_int_equal(parse("https://api.x.ai/v1/chat/completions", &u), TX_OK);
    assert_true(tx_url_allowed(&u, &p));
    assert_int_equal(parse("https://r.openai.azure.com/openai/d", &u), TX_OK);
    assert_true(tx_url_allowed(&u, &p));
    assert_int_equal(parse("https://evil.example/", &u), TX_OK);
    assert_false(tx_url_allowed(&u, &p));
    assert_int_equal(parse("http://api.openai.com/", &u), TX_OK);
    assert_false(tx_url_allowed(&u, &p));
    assert_false(tx_url_allowed(&u, NULL));
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_allowed_exact),
        cmocka_unit_test(test_allowed_wildcard),
        cmocka_unit_test(test_allowed_path),
        cmocka_unit_test(test_allowed_list),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Torrix URL parsing and the /proxy allowlist (see tx_url.h).
 */

#include <string.h>

#include "tx_url.h"


#define TX_URL_HOST_MAX 255


const char tx_url_default_targets[] =
    "https://api.openai.com\n"
    "https://api.anthropic.com\n"
    "https://generativelanguage.googleapis.com\n"
    "https://api.mistral.ai\n"
    "https://api.groq.com\n"
    "https://api.together.xyz\n"
    "https://openrouter.ai\n"
    "https://api.cohere.com\n"
    "https://api.deepseek.com\n"
    "https://api.x.ai\n"
    "https://*.openai.azure.com";


static uint8_t
tx_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t) (c | 0x20) : c;
}


static int
tx_url_caseeq(const uint8_t *a, const uint8_t *b, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (tx_lower(a[i]) != tx_lower(b[i])) {
            return 0;
        }
    }

    return 1;
}


static int
tx_url_host_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}


static int
tx_url_ipv6_char(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
           || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}


/*
 * Dot segments and encoded separators are refused: a server that normalizes
 * "/v1/../admin" or decodes "%2f" would see another path than the
 * allowlist did.
 */

static int
tx_url_path_ok(const uint8_t *p, size_t len)
{
    size_t i;
    int    dots, other;

    dots = 0;
    other = 0;

    for (i = 0; i <= len; i++) {
        if (i == len || p[i] == '/') {
            if (!other && (dots == 1 || dots == 2)) {
                return 0;
            }

            dots = 0;
            other = 0;
            continue;
        }

        if (p[i] == '.') {
            dots++;
            continue;
        }

        if (p[i] == '%' && len - i >= 3) {
            if (p[i + 1] == '2' && tx_lower(p[i + 2]) == 'e') {
                dots++;
                i += 2;
                continue;
            }

            if ((p[i + 1] == '2' && tx_lower(p[i + 2]) == 'f')
                || (p[i + 1] == '5' && tx_lower(p[i + 2]) == 'c'))
            {
                return 0;
            }
        }

        other = 1;
    }

    return 1;
}


static int
tx_url_parse_ex(const uint8_t *s, size_t len, tx_url_t *u, int *wildcard)
{
    size_t         i, a, ae, hs, he, plen;
    uint32_t       port;
    const uint8_t *q;

    if (wildcard) {
        *wildcard = 0;
    }

    if (s == NULL || len == 0) {
        return TX_ERROR;
    }

    for (i = 0; i < len; i++) {
        if (s[i] <= 0x20 || s[i] == 0x7f || s[i] == '\\' || s[i] == '#') {
            return TX_ERROR;
        }
    }

    if (len >= 8 && tx_url_caseeq(s, (const uint8_t *) "https://", 8)) {
        u->https = 1;
        a = 8;

    } else if (len >= 7 && tx_url_caseeq(s, (const uint8_t *) "http://", 7)) {
        u->https = 0;
        a = 7;

    } else {
        return TX_ERROR;
    }

    for (ae = a; ae < len && s[ae] != '/' && s[ae] != '?'; ae++) {
        if (s[ae] == '@') {
            return TX_ERROR;
        }
    }

    if (ae == a) {
        return TX_ERROR;
    }

    u->hostport.data = s + a;
    u->hostport.len = ae - a;

    i = a;

    if (s[i] == '[') {
        hs = ++i;

        while (i < ae && tx_url_ipv6_char(s[i])) {
            i++;
        }

        if (i >= ae || s[i] != ']' || i - hs < 2
            || memchr(s + hs, ':', i - hs) == NULL) {
            return TX_ERROR;
        }

        he = i++;

    } else {
        if (wildcard && ae - i > 2 && s[i] == '*' && s[i + 1] == '.') {
            *wildcard = 1;
            i += 2;
        }

        hs = i;

        while (i < ae && tx_url_host_char(s[i])) {
            if (s[i] == '.' && (i == hs || s[i - 1] == '.')) {
                return TX_ERROR;
            }

            i++;
        }

        he = i;

        if (he == hs || (i < ae && s[i] != ':')) {
            return TX_ERROR;
        }
    }

    if (he - hs > TX_URL_HOST_MAX) {
        return TX_ERROR;
    }

    u->host.data = s + hs;
    u->host.len = he - hs;
    u->port_set = 0;
    u->port = u->https ? 443 : 80;

    if (i < ae) {
        if (s[i] != ':' || ae - i < 2 || ae - i > 6) {
            return TX_ERROR;
        }

        port = 0;

        for (i++; i < ae; i++) {
            if (s[i] < '0' || s[i] > '9') {
                return TX_ERROR;
            }

            port = port * 10 + (uint32_t) (s[i] - '0');
        }

        if (port == 0 || port > 65535) {
            return TX_ERROR;
        }

        u->port = (uint16_t) port;
        u->port_set = 1;
    }

    q = memchr(s + ae, '?', len - ae);
    plen = q ? (size_t) (q - (s + ae)) : len - ae;

    u->path.data = s + ae;
    u->path.len = plen;

    if (q) {
        u->query.data = q + 1;
        u->query.len = (size_t) (s + len - (q + 1));

    } else {
        u->query.data = s + len;
        u->query.len = 0;
    }

    if (!tx_url_path_ok(u->path.data, u->path.len)) {
        return TX_ERROR;
    }

    return TX_OK;
}


int
tx_url_parse(const uint8_t *s, size_t len, tx_url_t *u)
{
    return tx_url_parse_ex(s, len, u, NULL);
}


static int
tx_url_match(const tx_url_t *t, const uint8_t *pat, size_t plen)
{
    int      wild;
    size_t   hl, tl, pl;
    tx_url_t pu;

    if (tx_url_parse_ex(pat, plen, &pu, &wild) != TX_OK) {
        return 0;
    }

    if (pu.query.len || memchr(pat, '?', plen) != NULL) {
        return 0;
    }

    if (pu.https != t->https || pu.port != t->port) {
        return 0;
    }

    hl = pu.host.len;
    tl = t->host.len;

    if (wild) {
        if (tl < hl + 2 || t->host.data[tl - hl - 1] != '.'
            || memchr(t->host.data, ':', tl) != NULL
            || !tx_url_caseeq(t->host.data + tl - hl, pu.host.data, hl))
        {
            return 0;
        }

    } else if (tl != hl || !tx_url_caseeq(t->host.data, pu.host.data, hl)) {
        return 0;
    }

    pl = pu.path.len;

    if (pl == 0 || (pl == 1 && pu.path.data[0] == '/')) {
        return 1;
    }

    if (t->path.len < pl || memcmp(t->path.data, pu.path.data, pl) != 0) {
        return 0;
    }

    return t->path.len == pl || pu.path.data[pl - 1] == '/'
           || t->path.data[pl] == '/';
}


int
tx_url_allowed(const tx_url_t *target, const tx_str_t *patterns)
{
    const uint8_t *p, *end, *nl, *b, *e;

    if (target == NULL || patterns == NULL || patterns->data == NULL) {
        return 0;
    }

    p = patterns->data;
    end = p + patterns->len;

    while (p < end) {
        nl = memchr(p, '\n', (size_t) (end - p));

        if (nl == NULL) {
            nl = end;
        }

        b = p;
        e = nl;

        while (b < e && (*b == ' ' || *b == '\t')) {
            b++;
        }

        while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
            e--;
        }

        if (e > b && tx_url_match(target, b, (size_t) (e - b))) {
            return 1;
        }

        p = nl + 1;
    }

    return 0;
}

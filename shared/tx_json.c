/*
 * Torrix request scanner (see tx_json.h).
 *
 * One pass over the body with an explicit stack of open containers: no
 * recursion, no allocation.  Keys are compared after unescaping, so
 * "mod\u0065l" is "model" here as it is for the upstream's parser.
 */

#include <stdio.h>
#include <string.h>

#include "tx_json.h"

#if defined(TX_JSON_AVX2)
#include <immintrin.h>
#endif


#define TX_JF_NONE           0
#define TX_JF_MODEL          1
#define TX_JF_STREAM         2
#define TX_JF_MAX_TOKENS     3
#define TX_JF_MAX_COMPLETION 4
#define TX_JF_MAX_OUTPUT     5
#define TX_JF_STREAM_OPTIONS 6
#define TX_JF_INCLUDE_USAGE  7

#define TX_JSON_KEY_MAX 32


/* string bytes: 0 plain, 1 quote, 2 backslash, 3 control */
/* clang-format off */
static const uint8_t tx_json_str_class[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
};
/* clang-format on */


typedef struct {
    const uint8_t *p;
    size_t         len;
    const char    *what;
    size_t         at;
} tx_json_ctx_t;


static int
tx_json_hex(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


static int
tx_json_hex4(const uint8_t *p)
{
    int i, h, v;

    v = 0;

    for (i = 0; i < 4; i++) {
        h = tx_json_hex(p[i]);

        if (h < 0) {
            return -1;
        }

        v = v << 4 | h;
    }

    return v;
}


static int
tx_json_fail(tx_json_ctx_t *cx, const char *what, size_t at)
{
    cx->what = what;
    cx->at = at;

    return TX_ERROR;
}


/* *i at the opening quote; leaves *i after the closing one */

static int
tx_json_string(tx_json_ctx_t *cx, size_t *i, int *esc)
{
    size_t         j, n, len;
    uint32_t       cp;
    const uint8_t *p;

    p = cx->p;
    len = cx->len;
    j = *i + 1;
    *esc = 0;

    for (;;) {
        j = tx_json_plain(p, j, len);

        if (j >= len) {
            return tx_json_fail(cx, "unterminated string", *i);
        }

        switch (tx_json_str_class[p[j]]) {
        case 1:
            *i = j + 1;
            return TX_OK;

        case 2:
            *esc = 1;

            if (j + 1 >= len) {
                return tx_json_fail(cx, "unterminated string", *i);
            }

            n = tx_json_escape(p + j, len - j, &cp);

            if (n == 0) {
                return tx_json_fail(cx,
                                    p[j + 1] == 'u' ? "invalid \\u escape"
                                                    : "invalid escape",
                                    j);
            }

            j += n;
            break;

        default:
            return tx_json_fail(cx, "control character in string", j);
        }
    }
}


static int
tx_json_number(tx_json_ctx_t *cx, size_t *i)
{
    size_t         j, n;
    const uint8_t *p;

    p = cx->p + *i;
    n = tx_json_number_len(p, cx->len - *i);

    if (n == 0) {
        /* the one case with its own message: a digit after a leading 0 */
        j = (p[0] == '-');

        return tx_json_fail(cx,
                            cx->len - *i > j + 1 && p[j] == '0'
                                    && p[j + 1] >= '0' && p[j + 1] <= '9'
                                ? "leading zero in number"
                                : "invalid number",
                            *i);
    }

    *i += n;

    return TX_OK;
}


size_t
tx_json_number_len(const uint8_t *p, size_t n)
{
    size_t j;

    j = (n && p[0] == '-');

    if (j == n || !tx_json_digit(p[j])) {
        return 0;
    }

    if (p[j++] == '0') {
        if (j < n && tx_json_digit(p[j])) {
            return 0;
        }

    } else {
        while (j < n && tx_json_digit(p[j])) {
            j++;
        }
    }

    if (j < n && p[j] == '.') {
        if (++j == n || !tx_json_digit(p[j])) {
            return 0;
        }

        while (j < n && tx_json_digit(p[j])) {
            j++;
        }
    }

    if (j < n && (p[j] == 'e' || p[j] == 'E')) {
        if (++j < n && (p[j] == '+' || p[j] == '-')) {
            j++;
        }

        if (j == n || !tx_json_digit(p[j])) {
            return 0;
        }

        while (j < n && tx_json_digit(p[j])) {
            j++;
        }
    }

    return j;
}


size_t
tx_json_escape(const uint8_t *p, size_t n, uint32_t *cp)
{
    int h;

    if (n < 2) {
        return 0;
    }

    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
        *cp = p[1];
        return 2;
    case 'b':
        *cp = '\b';
        return 2;
    case 'f':
        *cp = '\f';
        return 2;
    case 'n':
        *cp = '\n';
        return 2;
    case 'r':
        *cp = '\r';
        return 2;
    case 't':
        *cp = '\t';
        return 2;

    case 'u':
        if (n < 6 || (h = tx_json_hex4(p + 2)) < 0) {
            return 0;
        }

        *cp = (uint32_t) h;
        return 6;

    default:
        return 0;
    }
}


static int
tx_json_key_id(const uint8_t *k, size_t len, int depth)
{
    if (depth == 2) {
        return (len == 13 && memcmp(k, "include_usage", 13) == 0)
                   ? TX_JF_INCLUDE_USAGE
                   : TX_JF_NONE;
    }

    switch (len) {
    case 5:
        return memcmp(k, "model", 5) == 0 ? TX_JF_MODEL : TX_JF_NONE;
    case 6:
        return memcmp(k, "stream", 6) == 0 ? TX_JF_STREAM : TX_JF_NONE;
    case 10:
        return memcmp(k, "max_tokens", 10) == 0 ? TX_JF_MAX_TOKENS : TX_JF_NONE;
    case 14:
        return memcmp(k, "stream_options", 14) == 0 ? TX_JF_STREAM_OPTIONS
                                                    : TX_JF_NONE;
    case 17:
        return memcmp(k, "max_output_tokens", 17) == 0 ? TX_JF_MAX_OUTPUT
                                                       : TX_JF_NONE;
    case 21:
        return memcmp(k, "max_completion_tokens", 21) == 0
                   ? TX_JF_MAX_COMPLETION
                   : TX_JF_NONE;
    default:
        return TX_JF_NONE;
    }
}


/* key span with quotes */

static int
tx_json_key(const uint8_t *span, size_t len, int esc, int depth)
{
    ssize_t n;
    uint8_t buf[TX_JSON_KEY_MAX];

    if (!esc) {
        return tx_json_key_id(span + 1, len - 2, depth);
    }

    n = tx_json_unescape(span, len, buf, sizeof(buf));

    if (n < 0) {
        return TX_JF_NONE;
    }

    return tx_json_key_id(buf, (size_t) n, depth);
}


/* a plain non-negative integer that fits int64, else -1 */

static int64_t
tx_json_int(const uint8_t *p, size_t len)
{
    size_t  i;
    int64_t v;

    if (len == 0) {
        return -1;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        if (v > (INT64_MAX - (p[i] - '0')) / 10) {
            return -1;
        }

        v = v * 10 + (p[i] - '0');
    }

    return v;
}


static int
tx_json_is_true(const uint8_t *p, size_t len)
{
    return len == 4 && memcmp(p, "true", 4) == 0;
}


int
tx_json_scan_request(const uint8_t *p, size_t len, tx_json_req_t *req,
                     char *err, size_t errlen)
{
    int             field, sub, esc, vesc, id;
    size_t          i, j, depth, vstart, substart, kstart;
    int64_t         v;
    uint8_t         stack[TX_JSON_MAX_DEPTH];
    tx_json_ctx_t   cx;
    tx_json_span_t *sp;

    req->model.off = -1;
    req->stream.off = -1;
    req->max_tokens.off = -1;
    req->max_completion_tokens.off = -1;
    req->max_output_tokens.off = -1;
    req->stream_options.off = -1;
    req->include_usage.off = -1;
    req->model.len = 0;
    req->stream.len = 0;
    req->max_tokens.len = 0;
    req->max_completion_tokens.len = 0;
    req->max_output_tokens.len = 0;
    req->stream_options.len = 0;
    req->include_usage.len = 0;
    req->stream_on = 0;
    req->include_usage_on = 0;
    req->model_is_string = 0;
    req->model_has_escape = 0;
    req->max_out = -1;

    if (p == NULL) {
        len = 0;
    }

    cx.p = p;
    cx.len = len;
    cx.what = NULL;
    cx.at = 0;

    i = 0;
    depth = 0;
    field = TX_JF_NONE;
    sub = TX_JF_NONE;
    vstart = 0;
    substart = 0;
    vesc = 0;

/* whitespace is rare in a request: one test for the usual byte */
#define tx_json_ws()                                                           \
    while (i < len && p[i] <= ' '                                              \
           && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))   \
    {                                                                          \
        i++;                                                                   \
    }

/* a string: plain bytes up to the closing quote inline, else the full walk */
#define tx_json_str(e)                                                         \
    j = tx_json_plain(p, i + 1, len);                                          \
                                                                               \
    if (j < len && p[j] == '"') {                                              \
        i = j + 1;                                                             \
        e = 0;                                                                 \
                                                                               \
    } else if (tx_json_string(&cx, &i, &e) != TX_OK) {                         \
        goto failed;                                                           \
    }

    tx_json_ws();

    if (i >= len) {
        tx_json_fail(&cx, "empty body", i);
        goto failed;
    }

    if (p[i] != '{') {
        tx_json_fail(&cx, "top level is not an object", i);
        goto failed;
    }

value:

    if (i >= len) {
        tx_json_fail(&cx, "unexpected end", i);
        goto failed;
    }

    switch (p[i]) {
    case '{':
    case '[':
        if (depth == TX_JSON_MAX_DEPTH) {
            tx_json_fail(&cx, "nesting too deep", i);
            goto failed;
        }

        stack[depth++] = p[i++];
        tx_json_ws();

        if (i < len && p[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
            depth--;
            i++;
            goto after;
        }

        if (stack[depth - 1] == '{') {
            goto key;
        }

        goto value;

    case '"':
        tx_json_str(vesc);
        goto after;

    case 't':
        if (len - i < 4 || memcmp(p + i, "true", 4) != 0) {
            tx_json_fail(&cx, "invalid literal", i);
            goto failed;
        }

        i += 4;
        goto after;

    case 'f':
        if (len - i < 5 || memcmp(p + i, "false", 5) != 0) {
            tx_json_fail(&cx, "invalid literal", i);
            goto failed;
        }

        i += 5;
        goto after;

    case 'n':
        if (len - i < 4 || memcmp(p + i, "null", 4) != 0) {
            tx_json_fail(&cx, "invalid literal", i);
            goto failed;
        }

        i += 4;
        goto after;

    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        if (tx_json_number(&cx, &i) != TX_OK) {
            goto failed;
        }

        goto after;

    default:
        tx_json_fail(&cx, "unexpected character", i);
        goto failed;
    }

key:

    if (i >= len) {
        tx_json_fail(&cx, "unexpected end", i);
        goto failed;
    }

    if (p[i] != '"') {
        tx_json_fail(&cx, "expected a string key", i);
        goto failed;
    }

    kstart = i;
    tx_json_str(esc);

    if (depth == 1) {
        field = tx_json_key(p + kstart, i - kstart, esc, 1);

    } else if (depth == 2 && field == TX_JF_STREAM_OPTIONS && stack[1] == '{') {
        sub = tx_json_key(p + kstart, i - kstart, esc, 2);
    }

    tx_json_ws();

    if (i >= len || p[i] != ':') {
        tx_json_fail(&cx, "expected ':'", i);
        goto failed;
    }

    i++;
    tx_json_ws();

    if (depth == 1) {
        vstart = i;

        if (field == TX_JF_STREAM_OPTIONS) {
            req->include_usage.off = -1;
            req->include_usage.len = 0;
            req->include_usage_on = 0;
        }

    } else if (depth == 2 && sub != TX_JF_NONE) {
        substart = i;
    }

    goto value;

after:

    if (depth == 1 && field != TX_JF_NONE) {
        switch (field) {
        case TX_JF_MODEL:
            sp = &req->model;
            req->model_is_string = (p[vstart] == '"');
            req->model_has_escape = req->model_is_string && vesc;
            break;
        case TX_JF_STREAM:
            sp = &req->stream;
            req->stream_on = tx_json_is_true(p + vstart, i - vstart);
            break;
        case TX_JF_MAX_TOKENS:
            sp = &req->max_tokens;
            break;
        case TX_JF_MAX_COMPLETION:
            sp = &req->max_completion_tokens;
            break;
        case TX_JF_MAX_OUTPUT:
            sp = &req->max_output_tokens;
            break;
        default: /* TX_JF_STREAM_OPTIONS */
            sp = &req->stream_options;
            break;
        }

        sp->off = (ssize_t) vstart;
        sp->len = i - vstart;
        field = TX_JF_NONE;

    } else if (depth == 2 && sub != TX_JF_NONE) {
        req->include_usage.off = (ssize_t) substart;
        req->include_usage.len = i - substart;
        req->include_usage_on = tx_json_is_true(p + substart, i - substart);
        sub = TX_JF_NONE;
    }

    if (depth == 0) {
        tx_json_ws();

        if (i != len) {
            tx_json_fail(&cx, "trailing data", i);
            goto failed;
        }

        goto done;
    }

    tx_json_ws();

    if (i >= len) {
        tx_json_fail(&cx, "unexpected end", i);
        goto failed;
    }

    if (stack[depth - 1] == '{') {
        if (p[i] == ',') {
            i++;
            tx_json_ws();
            goto key;
        }

        if (p[i] == '}') {
            depth--;
            i++;
            goto after;
        }

        tx_json_fail(&cx, "expected ',' or '}'", i);
        goto failed;
    }

    if (p[i] == ',') {
        i++;
        tx_json_ws();
        goto value;
    }

    if (p[i] == ']') {
        depth--;
        i++;
        goto after;
    }

    tx_json_fail(&cx, "expected ',' or ']'", i);
    goto failed;

#undef tx_json_ws
#undef tx_json_str

done:

    /* the first of the max_* fields, in this order, that is an integer */

    for (id = 0; id < 3; id++) {
        sp = id == 0   ? &req->max_tokens
             : id == 1 ? &req->max_completion_tokens
                       : &req->max_output_tokens;

        if (sp->off < 0) {
            continue;
        }

        v = tx_json_int(p + sp->off, sp->len);

        if (v >= 0) {
            req->max_out = v;
            break;
        }
    }

    return TX_OK;

failed:

    if (err && errlen) {
        snprintf(err, errlen, "%s at offset %zu", cx.what, cx.at);
    }

    return TX_ERROR;
}


static size_t
tx_utf8_put(uint8_t *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (uint8_t) cp;
        return 1;
    }

    if (cp < 0x800) {
        out[0] = (uint8_t) (0xc0 | cp >> 6);
        out[1] = (uint8_t) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        out[0] = (uint8_t) (0xe0 | cp >> 12);
        out[1] = (uint8_t) (0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t) (0x80 | (cp & 0x3f));
        return 3;
    }

    out[0] = (uint8_t) (0xf0 | cp >> 18);
    out[1] = (uint8_t) (0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t) (0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t) (0x80 | (cp & 0x3f));
    return 4;
}


ssize_t
tx_json_unescape(const uint8_t *span, size_t len, uint8_t *out, size_t outlen)
{
    size_t   i, end, n, k;
    uint8_t  c, u[4];
    uint32_t cp, lo;

    if (span == NULL || len < 2 || span[0] != '"' || span[len - 1] != '"') {
        return -1;
    }

    i = 1;
    end = len - 1;
    n = 0;

    while (i < end) {
        c = span[i];

        if (c == '"' || c < 0x20) {
            return -1;
        }

        if (c != '\\') {
            if (n >= outlen) {
                return -1;
            }

            out[n++] = c;
            i++;
            continue;
        }

        k = tx_json_escape(span + i, end - i, &cp);

        if (k == 0 || (cp >= 0xdc00 && cp <= 0xdfff)) {
            return -1;
        }

        i += k;

        if (cp >= 0xd800 && cp <= 0xdbff) {
            /* a high surrogate: a low one must follow, as an escape */
            k = (span[i] == '\\') ? tx_json_escape(span + i, end - i, &lo) : 0;

            if (k == 0 || lo < 0xdc00 || lo > 0xdfff) {
                return -1;
            }

            i += k;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }

        k = tx_utf8_put(u, cp);

        if (k > outlen - n) {
            return -1;
        }

        memcpy(out + n, u, k);
        n += k;
    }

    return (ssize_t) n;
}


#if defined(TX_JSON_AVX2)

__attribute__((target("avx2"))) size_t
tx_json_plain_avx2(const uint8_t *p, size_t i, size_t len)
{
    unsigned bits;
    __m256i  v, hit, quote, bslash, ctl;

    quote = _mm256_set1_epi8('"');
    bslash = _mm256_set1_epi8('\\');
    ctl = _mm256_set1_epi8(0x1f);

    while (i + 32 <= len) {
        v = _mm256_loadu_si256((const __m256i *) (p + i));

        /* min(v, 0x1f) == v: an unsigned v <= 0x1f */
        hit = _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(v, quote),
                                              _mm256_cmpeq_epi8(v, bslash)),
                              _mm256_cmpeq_epi8(_mm256_min_epu8(v, ctl), v));

        bits = (unsigned) _mm256_movemask_epi8(hit);

        if (bits) {
            return i + (size_t) __builtin_ctz(bits);
        }

        i += 32;
    }

    /* the last few bytes: sixteen at a time, then one by one */
    return tx_json_plain(p, i, len);
}

#endif

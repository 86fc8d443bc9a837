/*
 * Torrix request scanner: validates a JSON request body and finds the
 * top-level fields the gateway acts on, without building a tree or copying
 * the body.  Used on the hot path (nginx access phase) for every request, so
 * it is one linear pass, allocation-free, with a nesting limit.
 */

#ifndef TX_JSON_H
#define TX_JSON_H


#include <string.h>

#include "tx_core.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif


#define TX_JSON_MAX_DEPTH 128


/*
 * A span of the body: offset and length of the whole value as it appears
 * (for a string, including its quotes).  off == -1: the field is absent.
 */
typedef struct {
    ssize_t off;
    size_t  len;
} tx_json_span_t;


typedef struct {
    tx_json_span_t model;      /* top-level "model" value */
    tx_json_span_t stream;     /* top-level "stream" value */
    tx_json_span_t max_tokens; /* "max_tokens" */
    tx_json_span_t max_completion_tokens;
    tx_json_span_t max_output_tokens; /* /v1/responses */
    tx_json_span_t stream_options;    /* top-level "stream_options" value */
    tx_json_span_t include_usage;     /* stream_options.include_usage */

    /* decoded conveniences */
    int     stream_on; /* "stream": true */
    int     include_usage_on;
    int     model_is_string;
    int     model_has_escape; /* model string contains '\' */
    int64_t max_out;          /* first of the max_* fields, -1 none:
                                        in the order above, the first one
                                        present whose value is a plain
                                        non-negative integer that fits
                                        int64 (null, 1.5, -1, 1e3 skipped) */
} tx_json_req_t;


/*
 * Scans a complete body.  The body must be exactly one JSON object (RFC 8259
 * syntax, UTF-8 not validated beyond control characters, whitespace around
 * allowed).  On success fills *req and returns TX_OK.  On a syntax error
 * returns TX_ERROR and writes "<what> at offset N" into err.  A duplicate
 * top-level field of interest keeps the last occurrence (what most JSON
 * parsers upstream do); keys are compared unescaped ("mod\u0065l" is
 * "model").  Only top-level members are fields of interest; include_usage is
 * the member of the top-level "stream_options" object, and a new
 * "stream_options" resets it.  The span offsets are into p.  err may be
 * NULL.
 */
int tx_json_scan_request(const uint8_t *p, size_t len, tx_json_req_t *req,
                         char *err, size_t errlen);

/*
 * Decodes a JSON string span (with its quotes) into out, handling escapes
 * (a \u escape's four hex digits to UTF-8, surrogate pairs).  Returns the
 * decoded length, or -1 when it does not fit in outlen or is not a valid
 * string.
 */
ssize_t tx_json_unescape(const uint8_t *span, size_t len, uint8_t *out,
                         size_t outlen);

/*
 * The escape at p[0] (a backslash), n bytes there: its length (2, or 6 for
 * \u and four hex digits) with the code unit it stands for in *cp, or 0
 * when it is not a valid escape.  The one definition of an escape for the
 * request scanner, tx_json_unescape and the usage meter's fast path.
 */
size_t tx_json_escape(const uint8_t *p, size_t n, uint32_t *cp);

/* c is an ASCII digit: one comparison */
#define tx_json_digit(c) ((uint8_t) ((c) - '0') < 10)

/*
 * The length of the JSON number at p[0], n bytes there (RFC 8259: -?int
 * frac? exp?, no leading zero), or 0 when there is none.
 */
size_t tx_json_number_len(const uint8_t *p, size_t n);


#if defined(__x86_64__) && defined(__GNUC__)
#define TX_JSON_AVX2 1

/*
 * tx_json_plain's loop 32 bytes at a time, for CPUs with AVX2: a long
 * string (a prompt) is skipped at twice the pace.  Only called where
 * __builtin_cpu_supports("avx2").
 */
size_t tx_json_plain_avx2(const uint8_t *p, size_t i, size_t len);
#endif


#if defined(__SSE2__)

/*
 * One bit for each of the sixteen bytes at p that a JSON string cannot hold
 * as it is: '"', '\\' or a control character (min(v, 0x1f) == v: an
 * unsigned v <= 0x1f).
 */
static inline unsigned
tx_json_special16(const uint8_t *p, __m128i *v)
{
    __m128i hit;

    *v = _mm_loadu_si128((const __m128i *) p);

    hit =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(*v, _mm_set1_epi8('"')),
                                  _mm_cmpeq_epi8(*v, _mm_set1_epi8('\\'))),
                     _mm_cmpeq_epi8(_mm_min_epu8(*v, _mm_set1_epi8(0x1f)), *v));

    return (unsigned) _mm_movemask_epi8(hit);
}

#endif


/*
 * The offset of the first byte at or after i, below len, that a JSON string
 * cannot hold as it is: '"', '\\' or a control character, or (when `high`)
 * a byte above 0x7f; len when there is none.  tx_json_plain and
 * tx_json_ascii below, `high` a constant in each.
 */
static inline size_t
tx_json_stop(const uint8_t *p, size_t i, size_t len, int high)
{
#if defined(__SSE2__)
    unsigned bits;
    __m128i  v;

    while (i + 16 <= len) {
        bits = tx_json_special16(p + i, &v);

        if (high) {
            bits |= (unsigned) _mm_movemask_epi8(v);
        }

        if (bits) {
            return i + (size_t) __builtin_ctz(bits);
        }

        i += 16;

#if defined(TX_JSON_AVX2)
        /* past the first sixteen bytes (where keys and short values end):
         * a long string, on to the wider loop where there is one */
        if (!high && i + 64 <= len && __builtin_cpu_supports("avx2")) {
            return tx_json_plain_avx2(p, i, len);
        }
#endif
    }
#else
    uint64_t v, q, b;

#define TX_ONES  0x0101010101010101ULL
#define TX_HIGHS 0x8080808080808080ULL

    while (i + 8 <= len) {
        memcpy(&v, p + i, 8);

        q = v ^ (TX_ONES * '"');
        b = v ^ (TX_ONES * '\\');

        if ((((q - TX_ONES) & ~q) | ((b - TX_ONES) & ~b)
             | ((v - TX_ONES * 0x20) & ~v) | (high ? v : 0))
            & TX_HIGHS)
        {
            break;
        }

        i += 8;
    }

#undef TX_ONES
#undef TX_HIGHS
#endif

    while (i < len && p[i] != '"' && p[i] != '\\' && p[i] >= 0x20
           && (!high || p[i] < 0x80))
    {
        i++;
    }

    return i;
}


/*
 * The first byte at or after i a JSON string cannot hold as it is.  Strings
 * are mostly such plain bytes, and both the request scanner and the response
 * meter skip them here, sixteen at a time where SSE2 is there (every
 * x86-64), eight at a time elsewhere.
 */
static inline size_t
tx_json_plain(const uint8_t *p, size_t i, size_t len)
{
    return tx_json_stop(p, i, len, 0);
}


/*
 * As tx_json_plain, and a byte above 0x7f stops it too: the run a JSON
 * writer copies as it is before it must look at UTF-8 (an escaper).
 */
static inline size_t
tx_json_ascii(const uint8_t *p, size_t i, size_t len)
{
    return tx_json_stop(p, i, len, 1);
}


#endif /* TX_JSON_H */

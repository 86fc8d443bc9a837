/*
 * Torrix virtual keys and ids (see tx_key.h).
 */

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <sodium.h>

#include "tx_key.h"


#define TX_KEY_RAND_LEN 32


static const char tx_b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char tx_b32[] = "abcdefghijklmnopqrstuvwxyz234567";


static size_t
tx_base64url_encode(const uint8_t *in, size_t len, char *out)
{
    size_t   i, n;
    uint32_t v;

    n = 0;

    for (i = 0; i + 2 < len; i += 3) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        out[n++] = tx_b64url[(v >> 18) & 63];
        out[n++] = tx_b64url[(v >> 12) & 63];
        out[n++] = tx_b64url[(v >> 6) & 63];
        out[n++] = tx_b64url[v & 63];
    }

    if (len - i == 1) {
        v = (uint32_t) in[i] << 16;
        out[n++] = tx_b64url[(v >> 18) & 63];
        out[n++] = tx_b64url[(v >> 12) & 63];

    } else if (len - i == 2) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
        out[n++] = tx_b64url[(v >> 18) & 63];
        out[n++] = tx_b64url[(v >> 12) & 63];
        out[n++] = tx_b64url[(v >> 6) & 63];
    }

    return n;
}


void
tx_key_generate(char *out)
{
    uint8_t rnd[TX_KEY_RAND_LEN];
    size_t  n;

    randombytes_buf(rnd, sizeof(rnd));

    memcpy(out, TX_KEY_PREFIX, TX_KEY_PREFIX_LEN);
    n = tx_base64url_encode(rnd, sizeof(rnd), out + TX_KEY_PREFIX_LEN);
    out[TX_KEY_PREFIX_LEN + n] = '\0';

    sodium_memzero(rnd, sizeof(rnd));
}


#if !defined(__SSE2__)

/* the bytes of a key's random part: [A-Za-z0-9_-] */
static const uint8_t tx_key_char[256] = {
    ['-'] = 1, ['_'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1,
    ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
    ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,
    ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,
    ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1,
    ['z'] = 1,
};
#endif


#if defined(__SSE2__)

/* one bit for each of the sixteen bytes at p that is a base64url character */
static unsigned
tx_key_b64url16(const uint8_t *p)
{
    __m128i v, ok;

#define tx_key_in(lo, n)                                                       \
    _mm_cmpeq_epi8(_mm_min_epu8(_mm_sub_epi8(v, _mm_set1_epi8(lo)),            \
                                _mm_set1_epi8((n) -1)),                        \
                   _mm_sub_epi8(v, _mm_set1_epi8(lo)))

    v = _mm_loadu_si128((const __m128i *) p);

    ok = _mm_or_si128(_mm_or_si128(tx_key_in('A', 26), tx_key_in('a', 26)),
                      _mm_or_si128(tx_key_in('0', 10),
                                   _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(
                                                                      '-')),
                                                _mm_cmpeq_epi8(v, _mm_set1_epi8(
                                                                      '_')))));

#undef tx_key_in

    return (unsigned) _mm_movemask_epi8(ok);
}

#endif


int
tx_key_shape_ok(const uint8_t *s, size_t len)
{
#if !defined(__SSE2__)
    size_t  i;
    uint8_t c;
#endif

    if (s == NULL || len != TX_KEY_SECRET_LEN
        || memcmp(s, TX_KEY_PREFIX, TX_KEY_PREFIX_LEN) != 0)
    {
        return 0;
    }

#if defined(__SSE2__)
    /* the 43 characters as three sixteen-byte tests, the last overlapping */
    return (tx_key_b64url16(s + TX_KEY_PREFIX_LEN)
            & tx_key_b64url16(s + TX_KEY_PREFIX_LEN + 16)
            & tx_key_b64url16(s + TX_KEY_SECRET_LEN - 16))
           == 0xffff;
#else
    c = 1;

    for (i = TX_KEY_PREFIX_LEN; i < len; i++) {
        c &= tx_key_char[s[i]];
    }

    return c;
#endif
}


int
tx_key_hash(const uint8_t *hash_key, const uint8_t *secret, size_t len,
            uint8_t *out)
{
    if (crypto_generichash(out, TX_KEY_HASH_LEN, secret, len, hash_key,
                           TX_KEY_HASHKEY_LEN)
        != 0)
    {
        return TX_ERROR;
    }

    return TX_OK;
}


void
tx_id_generate(const char *prefix, char *out)
{
    uint8_t  rnd[13];
    size_t   plen, i, bit;
    unsigned v;

    randombytes_buf(rnd, sizeof(rnd));

    plen = strlen(prefix);
    memcpy(out, prefix, plen);

    /* 20 groups of 5 bits from the first 100 bits of rnd */

    for (i = 0; i < TX_ID_RAND_LEN; i++) {
        bit = i * 5;
        v = (unsigned) rnd[bit / 8] << 8 | rnd[bit / 8 + 1];
        v = (v >> (11 - bit % 8)) & 31;
        out[plen + i] = tx_b32[v];
    }

    out[plen + TX_ID_RAND_LEN] = '\0';
}


void
tx_run_id_make(uint8_t *out, int64_t unix_ms, const uint8_t *rnd)
{
    uint64_t ms;
    int      i;

    ms = (uint64_t) unix_ms;

    for (i = 0; i < 6; i++) {
        out[i] = (uint8_t) (ms >> (8 * (5 - i)));
    }

    memcpy(out + 6, rnd, 10);
}


void
tx_run_id_hex(const uint8_t *id, char *out)
{
#if defined(__SSE2__)
    /* the sixteen bytes at once: nibbles interleaved high first, each
     * plus '0', plus 'a' - '0' - 10 more where it is over 9 */
    __m128i v, mask, hi, lo, a, b, nine, fix;

    v = _mm_loadu_si128((const __m128i *) id);
    mask = _mm_set1_epi8(0x0f);
    hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
    lo = _mm_and_si128(v, mask);
    a = _mm_unpacklo_epi8(hi, lo);
    b = _mm_unpackhi_epi8(hi, lo);
    nine = _mm_set1_epi8(9);
    fix = _mm_set1_epi8('a' - '0' - 10);

    a = _mm_add_epi8(_mm_add_epi8(a, _mm_set1_epi8('0')),
                     _mm_and_si128(_mm_cmpgt_epi8(a, nine), fix));
    b = _mm_add_epi8(_mm_add_epi8(b, _mm_set1_epi8('0')),
                     _mm_and_si128(_mm_cmpgt_epi8(b, nine), fix));

    _mm_storeu_si128((__m128i *) out, a);
    _mm_storeu_si128((__m128i *) (out + 16), b);
#else
    int i;

    static const char tx_hex[] = "0123456789abcdef";

    for (i = 0; i < 16; i++) {
        out[2 * i] = tx_hex[id[i] >> 4];
        out[2 * i + 1] = tx_hex[id[i] & 15];
    }
#endif

    out[32] = '\0';
}


int
tx_run_id_parse(const char *hex, size_t len, uint8_t *out)
{
    uint8_t id[16];

    if (hex == NULL || len != 32 || tx_unhex(hex, len, id) != TX_OK) {
        return TX_ERROR;
    }

    memcpy(out, id, sizeof(id));

    return TX_OK;
}

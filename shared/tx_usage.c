/*
 * Torrix usage metering (see tx_usage.h).
 *
 * Two push state machines, one inside the other: SSE line framing, whose
 * "data:" bytes go to a JSON tokenizer.  Both keep every bit of state in
 * tx_meter_t, so a chunk may end anywhere, inside a \u escape or a number
 * included.  Keys are interned into small ids as they end; a value's target
 * is decided once, when it starts, from the ids of the enclosing keys; the
 * contents of strings nobody wants are skipped in a tight loop.
 */

#include <string.h>

#include "tx_json.h"
#include "tx_usage.h"


/* JSON tokenizer states */
#define TX_MJ_VALUE     0 /* a value (after ':' or ',' in an array) */
#define TX_MJ_OBJ_FIRST 1 /* after '{': a key or '}' */
#define TX_MJ_KEY       2 /* after ',' in an object: a key */
#define TX_MJ_ARR_FIRST 3 /* after '[': a value or ']' */
#define TX_MJ_COLON     4
#define TX_MJ_AFTER     5 /* after a value: ',' or a closing bracket */
#define TX_MJ_END       6 /* the top-level value is complete */
#define TX_MJ_STRING    7
#define TX_MJ_ESC       8
#define TX_MJ_UNI       9
#define TX_MJ_NUMBER    10
#define TX_MJ_LITERAL   11
#define TX_MJ_FAIL      12

/* what a string feeds */
#define TX_MS_SKIP  0
#define TX_MS_KEY   1
#define TX_MS_MODEL 2
#define TX_MS_COUNT 3

/* number states */
#define TX_MN_MINUS 0
#define TX_MN_ZERO  1
#define TX_MN_INT   2
#define TX_MN_DOT   3
#define TX_MN_FRAC  4
#define TX_MN_E     5
#define TX_MN_ESIGN 6
#define TX_MN_EXP   7

/* SSE states */
#define TX_ME_BOM    0
#define TX_ME_LINE   1 /* at the start of a line */
#define TX_ME_FIELD  2 /* in a field name */
#define TX_ME_VSTART 3 /* right after the colon */
#define TX_ME_VALUE  4
#define TX_ME_IGNORE 5 /* comment or a value nobody reads */

/* SSE fields */
#define TX_MF_OTHER 0
#define TX_MF_DATA  1
#define TX_MF_EVENT 2

/* top-level "choices" array of the current event */
#define TX_MC_NONE  0
#define TX_MC_OPEN  1 /* opened, empty so far */
#define TX_MC_ITEMS 2
#define TX_MC_EMPTY 3 /* closed empty */

/* raw usage fields, indexes into m->raw */
#define TX_MR_PROMPT      0
#define TX_MR_INPUT       1
#define TX_MR_OUTPUT      2
#define TX_MR_CACHED      3 /* *_details.cached_tokens */
#define TX_MR_CACHE_READ  4 /* Anthropic cache_read_input_tokens */
#define TX_MR_CACHE_WRITE 5
#define TX_MR_REASONING   6

/* value targets: none, model, out_chars, or TX_MT_RAW + a raw field */
#define TX_MT_NONE  0
#define TX_MT_MODEL 1
#define TX_MT_COUNT 2
#define TX_MT_RAW   3

/* interned keys */
#define TX_MK_NONE               0
#define TX_MK_USAGE              1
#define TX_MK_MODEL              2
#define TX_MK_MESSAGE            3
#define TX_MK_RESPONSE           4
#define TX_MK_CHOICES            5
#define TX_MK_DELTA              6
#define TX_MK_CONTENT            7
#define TX_MK_TEXT               8
#define TX_MK_THINKING           9
#define TX_MK_PARTIAL_JSON       10
#define TX_MK_REASONING_CONTENT  11
#define TX_MK_REASONING          12
#define TX_MK_TOOL_CALLS         13
#define TX_MK_FUNCTION           14
#define TX_MK_ARGUMENTS          15
#define TX_MK_PROMPT_TOKENS      16
#define TX_MK_INPUT_TOKENS       17
#define TX_MK_COMPLETION_TOKENS  18
#define TX_MK_OUTPUT_TOKENS      19
#define TX_MK_CACHED_TOKENS      20
#define TX_MK_REASONING_TOKENS   21
#define TX_MK_CACHE_READ         22
#define TX_MK_CACHE_CREATION     23
#define TX_MK_PROMPT_DETAILS     24
#define TX_MK_INPUT_DETAILS      25
#define TX_MK_COMPLETION_DETAILS 26
#define TX_MK_OUTPUT_DETAILS     27
#define TX_MK_ARRAY              255 /* an array level in the path */

#define TX_METER_PATTERN_MAX 5 /* keys in the longest path we look for */


typedef struct {
    size_t      len;
    const char *name;
    uint8_t     id;
} tx_meter_key_t;


/* clang-format off */
static const tx_meter_key_t tx_meter_keys[] = {
    { 4,  "text",                        TX_MK_TEXT },
    { 5,  "usage",                       TX_MK_USAGE },
    { 5,  "model",                       TX_MK_MODEL },
    { 5,  "delta",                       TX_MK_DELTA },
    { 7,  "choices",                     TX_MK_CHOICES },
    { 7,  "message",                     TX_MK_MESSAGE },
    { 7,  "content",                     TX_MK_CONTENT },
    { 8,  "response",                    TX_MK_RESPONSE },
    { 8,  "thinking",                    TX_MK_THINKING },
    { 8,  "function",                    TX_MK_FUNCTION },
    { 9,  "arguments",                   TX_MK_ARGUMENTS },
    { 9,  "reasoning",                   TX_MK_REASONING },
    { 10, "tool_calls",                  TX_MK_TOOL_CALLS },
    { 12, "partial_json",                TX_MK_PARTIAL_JSON },
    { 12, "input_tokens",                TX_MK_INPUT_TOKENS },
    { 13, "output_tokens",               TX_MK_OUTPUT_TOKENS },
    { 13, "prompt_tokens",               TX_MK_PROMPT_TOKENS },
    { 13, "cached_tokens",               TX_MK_CACHED_TOKENS },
    { 16, "reasoning_tokens",            TX_MK_REASONING_TOKENS },
    { 17, "completion_tokens",           TX_MK_COMPLETION_TOKENS },
    { 17, "reasoning_content",           TX_MK_REASONING_CONTENT },
    { 20, "input_tokens_details",        TX_MK_INPUT_DETAILS },
    { 21, "output_tokens_details",       TX_MK_OUTPUT_DETAILS },
    { 21, "prompt_tokens_details",       TX_MK_PROMPT_DETAILS },
    { 23, "cache_read_input_tokens",     TX_MK_CACHE_READ },
    { 25, "completion_tokens_details",   TX_MK_COMPLETION_DETAILS },
    { 27, "cache_creation_input_tokens", TX_MK_CACHE_CREATION },
};


/* clang-format on */


static const char *const tx_meter_literals[] = {"true", "false", "null"};


static void tx_meter_json(tx_meter_t *m, const uint8_t *p, size_t len);


static int
tx_meter_hex(uint8_t c)
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
tx_meter_ws(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}


/*
 * A perfect hash of the keys above: tx_meter_hash() is a different slot for
 * each (found by trying multipliers), whose value in tx_meter_slots is the
 * key's index in tx_meter_keys, 255 for none.  Kept in step with the table:
 * the unit tests look up every key (tx_meter_known_key).
 */
static size_t
tx_meter_hash(const char *k, size_t len)
{
    return ((len * 2) ^ (uint8_t) k[0] ^ ((uint8_t) k[len - 2] * 28u)) & 63;
}

/* clang-format off */
static const uint8_t tx_meter_slots[64] = {
    255,  25, 255,  10, 255,  24, 255, 255,
    255,  19,  23, 255,  13, 255, 255, 255,
    255,  21,   9, 255, 255,  22, 255, 255,
     20, 255,  18, 255,   0,  26,   3, 255,
    255,   4,  16, 255, 255,   6, 255,   5,
     11, 255, 255,   2,   8, 255, 255, 255,
     12,  17, 255, 255, 255, 255,   7, 255,
    255,  14, 255,   1, 255,  15, 255, 255,
};
/* clang-format on */


/*
 * n (4 or more) bytes equal: in words, the last word overlapping the one
 * before it rather than a loop over the tail; keys are short, and a call
 * to memcmp cost more than this
 */

static int
tx_meter_key_eq(const char *a, const char *b, size_t n)
{
    size_t   i;
    uint32_t s, t, u, w;
    uint64_t x, y, d;

    if (n < 8) {
        memcpy(&s, a, 4);
        memcpy(&t, b, 4);
        memcpy(&u, a + n - 4, 4);
        memcpy(&w, b + n - 4, 4);

        return ((s ^ t) | (u ^ w)) == 0;
    }

    d = 0;

    for (i = 0; i + 8 < n; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        d |= x ^ y;
    }

    memcpy(&x, a + n - 8, 8);
    memcpy(&y, b + n - 8, 8);

    return (d | (x ^ y)) == 0;
}


static TX_HOT_INLINE uint8_t
tx_meter_intern(const char *k, size_t len)
{
    uint8_t               i;
    const tx_meter_key_t *key;

    if (len < 4 || len > 27) {
        return TX_MK_NONE;
    }

    i = tx_meter_slots[tx_meter_hash(k, len)];

    if (i == 255) {
        return TX_MK_NONE;
    }

    key = &tx_meter_keys[i];

    return key->len == len && tx_meter_key_eq(key->name, k, len) ? key->id
                                                                 : TX_MK_NONE;
}


static void
tx_meter_json_reset(tx_meter_t *m)
{
    m->state = TX_MJ_VALUE;
    m->depth = 0;
    m->hi = 0;
}


static void
tx_meter_fail(tx_meter_t *m)
{
    m->state = TX_MJ_FAIL;

    if (m->format == TX_METER_JSON) {
        m->failed = 1;

    } else {
        m->ev_failed = 1;
    }
}


/*
 * the target of a value starting at depth, from the keys that lead to it
 * (path: an interned key, or TX_MK_ARRAY, a level)
 */

static int
tx_meter_path_target(const uint8_t *path, int depth)
{
    int     i, n, off;
    uint8_t k[TX_METER_PATTERN_MAX];

    if (depth == 0 || depth > TX_METER_DEPTH) {
        return TX_MT_NONE;
    }

    n = 0;

    for (i = 0; i < depth; i++) {
        if (path[i] == TX_MK_ARRAY) {
            continue;
        }

        if (path[i] == TX_MK_NONE || n == TX_METER_PATTERN_MAX) {
            return TX_MT_NONE;
        }

        k[n++] = path[i];
    }

    if (n == 0) {
        return TX_MT_NONE;
    }

    off = (n > 1 && (k[0] == TX_MK_MESSAGE || k[0] == TX_MK_RESPONSE));

    if (k[off] == TX_MK_USAGE) {
        if (n - off == 2) {
            switch (k[off + 1]) {
            case TX_MK_PROMPT_TOKENS:
                return TX_MT_RAW + TX_MR_PROMPT;
            case TX_MK_INPUT_TOKENS:
                return TX_MT_RAW + TX_MR_INPUT;
            case TX_MK_COMPLETION_TOKENS:
            case TX_MK_OUTPUT_TOKENS:
                return TX_MT_RAW + TX_MR_OUTPUT;
            case TX_MK_CACHE_READ:
                return TX_MT_RAW + TX_MR_CACHE_READ;
            case TX_MK_CACHE_CREATION:
                return TX_MT_RAW + TX_MR_CACHE_WRITE;
            default:
                return TX_MT_NONE;
            }
        }

        if (n - off == 3) {
            if ((k[off + 1] == TX_MK_PROMPT_DETAILS
                 || k[off + 1] == TX_MK_INPUT_DETAILS)
                && k[off + 2] == TX_MK_CACHED_TOKENS)
            {
                return TX_MT_RAW + TX_MR_CACHED;
            }

            if ((k[off + 1] == TX_MK_COMPLETION_DETAILS
                 || k[off + 1] == TX_MK_OUTPUT_DETAILS)
                && k[off + 2] == TX_MK_REASONING_TOKENS)
            {
                return TX_MT_RAW + TX_MR_REASONING;
            }
        }

        return TX_MT_NONE;
    }

    if (n - off == 1 && k[off] == TX_MK_MODEL) {
        return TX_MT_MODEL;
    }

    if (k[0] == TX_MK_CHOICES) {
        if (n == 2 && k[1] == TX_MK_TEXT) {
            return TX_MT_COUNT;
        }

        if (n == 3 && k[1] == TX_MK_DELTA
            && (k[2] == TX_MK_CONTENT || k[2] == TX_MK_REASONING_CONTENT
                || k[2] == TX_MK_REASONING))
        {
            return TX_MT_COUNT;
        }

        if (n == 5 && k[1] == TX_MK_DELTA && k[2] == TX_MK_TOOL_CALLS
            && k[3] == TX_MK_FUNCTION && k[4] == TX_MK_ARGUMENTS)
        {
            return TX_MT_COUNT;
        }

        return TX_MT_NONE;
    }

    if (k[0] == TX_MK_DELTA) {
        if (n == 1
            || (n == 2
                && (k[1] == TX_MK_TEXT || k[1] == TX_MK_THINKING
                    || k[1] == TX_MK_PARTIAL_JSON)))
        {
            return TX_MT_COUNT;
        }
    }

    return TX_MT_NONE;
}


static int
tx_meter_target(const tx_meter_t *m)
{
    return tx_meter_path_target(m->path, m->depth);
}


static void
tx_meter_value_done(tx_meter_t *m)
{
    m->state = m->depth ? TX_MJ_AFTER : TX_MJ_END;
}


static int
tx_meter_is_array(const tx_meter_t *m)
{
    int l;

    l = m->depth - 1;

    return (m->arrays[l >> 5] >> (l & 31)) & 1;
}


static int
tx_meter_push(tx_meter_t *m, int array)
{
    int l;

    if (m->depth == TX_METER_NEST) {
        return TX_ERROR;
    }

    l = m->depth++;

    if (array) {
        m->arrays[l >> 5] |= (uint32_t) 1 << (l & 31);

    } else {
        m->arrays[l >> 5] &= ~((uint32_t) 1 << (l & 31));
    }

    if (l < TX_METER_DEPTH) {
        m->path[l] = array ? TX_MK_ARRAY : TX_MK_NONE;
    }

    m->state = array ? TX_MJ_ARR_FIRST : TX_MJ_OBJ_FIRST;

    return TX_OK;
}


static void
tx_meter_pop(tx_meter_t *m)
{
    if (m->depth == 2 && m->ev_choices == TX_MC_OPEN) {
        m->ev_choices = TX_MC_EMPTY;
    }

    m->depth--;
    tx_meter_value_done(m);
}


/* c starts a value */

static int
tx_meter_value(tx_meter_t *m, uint8_t c)
{
    int target;

    if (m->ev_choices == TX_MC_OPEN && m->depth == 2) {
        m->ev_choices = TX_MC_ITEMS;
    }

    switch (c) {
    case '{':
        return tx_meter_push(m, 0);

    case '[':
        if (m->depth == 1 && m->path[0] == TX_MK_CHOICES
            && !tx_meter_is_array(m)) {
            m->ev_choices = TX_MC_OPEN;
        }

        return tx_meter_push(m, 1);

    case '"':
        target = tx_meter_target(m);
        m->state = TX_MJ_STRING;

        if (target == TX_MT_COUNT) {
            m->str_kind = TX_MS_COUNT;

        } else if (target == TX_MT_MODEL && m->u.model_len == 0) {
            m->str_kind = TX_MS_MODEL;
            m->model_pos = 0;
            m->hi = 0;

        } else {
            m->str_kind = TX_MS_SKIP;
        }

        return TX_OK;

    case 't':
    case 'f':
    case 'n':
        m->state = TX_MJ_LITERAL;
        m->lit = (c == 't') ? 0 : (c == 'f') ? 1 : 2;
        m->lit_pos = 1;
        return TX_OK;

    case '-':
        m->state = TX_MJ_NUMBER;
        m->num_state = TX_MN_MINUS;
        m->num_ok = 0;
        m->num_target = TX_MT_NONE;
        return TX_OK;

    default:
        if (c < '0' || c > '9') {
            return TX_ERROR;
        }

        target = tx_meter_target(m);

        m->state = TX_MJ_NUMBER;
        m->num_state = (c == '0') ? TX_MN_ZERO : TX_MN_INT;
        m->num = (uint64_t) (c - '0');
        m->num_ok = 1;
        m->num_target = target >= TX_MT_RAW ? target : TX_MT_NONE;
        return TX_OK;
    }
}


static void
tx_meter_number_done(tx_meter_t *m)
{
    int f;

    if (m->num_target != TX_MT_NONE && m->num_ok) {
        f = m->num_target - TX_MT_RAW;
        m->raw[f] = m->num;
        m->raw_seen |= 1u << f;
        m->u.has_usage = 1;
        m->ev_usage = 1;
    }

    tx_meter_value_done(m);
}


/* returns 1: c is part of the number, 0: the number ended before c, -1 */

static int
tx_meter_number(tx_meter_t *m, uint8_t c)
{
    int digit;

    digit = (c >= '0' && c <= '9');

    switch (m->num_state) {
    case TX_MN_MINUS:
        if (!digit) {
            return -1;
        }

        m->num_state = (c == '0') ? TX_MN_ZERO : TX_MN_INT;
        return 1;

    case TX_MN_ZERO:
    case TX_MN_INT:
        if (digit) {
            if (m->num_state == TX_MN_ZERO) {
                return -1;
            }

            if (m->num > (UINT64_MAX - (uint64_t) (c - '0')) / 10) {
                m->num_ok = 0;

            } else {
                m->num = m->num * 10 + (uint64_t) (c - '0');
            }

            return 1;
        }

        if (c == '.') {
            m->num_state = TX_MN_DOT;
            m->num_ok = 0;
            return 1;
        }

        if (c == 'e' || c == 'E') {
            m->num_state = TX_MN_E;
            m->num_ok = 0;
            return 1;
        }

        return 0;

    case TX_MN_DOT:
        if (!digit) {
            return -1;
        }

        m->num_state = TX_MN_FRAC;
        return 1;

    case TX_MN_FRAC:
        if (digit) {
            return 1;
        }

        if (c == 'e' || c == 'E') {
            m->num_state = TX_MN_E;
            return 1;
        }

        return 0;

    case TX_MN_E:
        if (c == '+' || c == '-') {
            m->num_state = TX_MN_ESIGN;
            return 1;
        }

        /* fall through */

    case TX_MN_ESIGN:
        if (!digit) {
            return -1;
        }

        m->num_state = TX_MN_EXP;
        return 1;

    default: /* TX_MN_EXP */
        return digit ? 1 : 0;
    }
}


static void
tx_meter_key_put(tx_meter_t *m, uint8_t c)
{
    if (m->key_len == TX_METER_KEY_MAX) {
        m->key_bad = 1;
        return;
    }

    m->key[m->key_len++] = (char) c;
}


static void
tx_meter_model_put(tx_meter_t *m, uint8_t c)
{
    if (m->model_pos < TX_METER_MODEL_MAX - 1) {
        m->u.model[m->model_pos++] = (char) c;
    }
}


static void
tx_meter_model_cp(tx_meter_t *m, uint32_t cp)
{
    if (cp < 0x80) {
        tx_meter_model_put(m, (uint8_t) cp);

    } else if (cp < 0x800) {
        tx_meter_model_put(m, (uint8_t) (0xc0 | cp >> 6));
        tx_meter_model_put(m, (uint8_t) (0x80 | (cp & 0x3f)));

    } else if (cp < 0x10000) {
        tx_meter_model_put(m, (uint8_t) (0xe0 | cp >> 12));
        tx_meter_model_put(m, (uint8_t) (0x80 | ((cp >> 6) & 0x3f)));
        tx_meter_model_put(m, (uint8_t) (0x80 | (cp & 0x3f)));

    } else {
        tx_meter_model_put(m, (uint8_t) (0xf0 | cp >> 18));
        tx_meter_model_put(m, (uint8_t) (0x80 | ((cp >> 12) & 0x3f)));
        tx_meter_model_put(m, (uint8_t) (0x80 | ((cp >> 6) & 0x3f)));
        tx_meter_model_put(m, (uint8_t) (0x80 | (cp & 0x3f)));
    }
}


/* a lone surrogate in a model name becomes U+FFFD */

static void
tx_meter_model_flush(tx_meter_t *m)
{
    if (m->hi) {
        tx_meter_model_cp(m, 0xfffd);
        m->hi = 0;
    }
}


/* plain bytes of a string, as tx_json_plain found them */

static void
tx_meter_key_add(tx_meter_t *m, const uint8_t *p, size_t n)
{
    if (n > TX_METER_KEY_MAX - m->key_len) {
        n = TX_METER_KEY_MAX - m->key_len;
        m->key_bad = 1;
    }

    memcpy(m->key + m->key_len, p, n);
    m->key_len += n;
}


static void
tx_meter_model_add(tx_meter_t *m, const uint8_t *p, size_t n)
{
    if (n == 0) {
        return;
    }

    tx_meter_model_flush(m);

    if (n > TX_METER_MODEL_MAX - 1 - m->model_pos) {
        n = TX_METER_MODEL_MAX - 1 - m->model_pos;
    }

    memcpy(m->u.model + m->model_pos, p, n);
    m->model_pos += n;
}


/* characters in n plain bytes: every byte but UTF-8 continuation bytes */

static uint64_t
tx_meter_chars(const uint8_t *p, size_t n)
{
    size_t   i;
    uint64_t chars;

    chars = 0;

    for (i = 0; i < n; i++) {
        chars += (p[i] & 0xc0) != 0x80;
    }

    return chars;
}


/* one decoded character of a string, from an escape */

static void
tx_meter_str_char(tx_meter_t *m, uint32_t cp)
{
    switch (m->str_kind) {
    case TX_MS_KEY:
        if (cp < 0x80) {
            tx_meter_key_put(m, (uint8_t) cp);

        } else {
            m->key_bad = 1;
        }

        break;

    case TX_MS_MODEL:
        if (cp >= 0xdc00 && cp <= 0xdfff && m->hi) {
            cp = 0x10000 + ((m->hi - 0xd800) << 10) + (cp - 0xdc00);
            m->hi = 0;
            tx_meter_model_cp(m, cp);
            break;
        }

        tx_meter_model_flush(m);

        if (cp >= 0xd800 && cp <= 0xdbff) {
            m->hi = cp;

        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            tx_meter_model_cp(m, 0xfffd);

        } else {
            tx_meter_model_cp(m, cp);
        }

        break;

    case TX_MS_COUNT:
        /* a surrogate pair is one character: count its high half */
        if (cp < 0xdc00 || cp > 0xdfff) {
            m->u.out_chars++;
        }

        break;

    default:
        break;
    }
}


/* a key's closing quote: the key (n bytes at k, or bad) names its level */

static void
tx_meter_key_end(tx_meter_t *m, const char *k, size_t n, int bad)
{
    if (m->depth <= TX_METER_DEPTH) {
        m->path[m->depth - 1] = bad ? TX_MK_NONE : tx_meter_intern(k, n);
    }

    m->state = TX_MJ_COLON;
}


static void
tx_meter_str_end(tx_meter_t *m)
{
    switch (m->str_kind) {
    case TX_MS_KEY:
        tx_meter_key_end(m, m->key, m->key_len, m->key_bad);
        return;

    case TX_MS_MODEL:
        tx_meter_model_flush(m);

        if (m->model_pos > 0 && m->u.model_len == 0) {
            m->u.model_len = m->model_pos;
            m->u.model[m->model_pos] = '\0';
        }

        break;

    default:
        break;
    }

    tx_meter_value_done(m);
}


static void
tx_meter_key_start(tx_meter_t *m)
{
    m->state = TX_MJ_STRING;
    m->str_kind = TX_MS_KEY;
    m->key_len = 0;
    m->key_bad = 0;
}


static void
tx_meter_json(tx_meter_t *m, const uint8_t *p, size_t len)
{
    int      h, rc;
    size_t   i, j;
    uint8_t  c;
    uint32_t cp;

    i = 0;

    while (i < len) {
        c = p[i];

        switch (m->state) {
        case TX_MJ_STRING:
            /*
             * a string, and straight on into the next one where the bytes
             * between are the usual '":"' or '","': most of a response is
             * keys and string values in a row, and going round the state
             * switch for each of them costs a mispredicted jump
             */
            for (;;) {
                j = tx_json_plain(p, i, len);

                switch (m->str_kind) {
                case TX_MS_SKIP:
                    break;

                case TX_MS_COUNT:
                    m->u.out_chars += tx_meter_chars(p + i, j - i);
                    break;

                case TX_MS_KEY:
                    if (m->key_len == 0 && j < len && p[j] == '"') {
                        /* the whole key in this buffer: no copy */
                        tx_meter_key_end(m, (const char *) p + i, j - i,
                                         j - i > TX_METER_KEY_MAX);
                        i = j + 1;
                        goto key_done;
                    }

                    tx_meter_key_add(m, p + i, j - i);
                    break;

                default: /* TX_MS_MODEL */
                    tx_meter_model_add(m, p + i, j - i);
                    break;
                }

                i = j;

                if (i == len) {
                    return;
                }

                c = p[i++];

                if (c == '\\') {
                    m->state = TX_MJ_ESC;
                    break;
                }

                if (c != '"') {
                    goto failed;
                }

                tx_meter_str_end(m);

            key_done:

                if (i + 1 >= len) {
                    break;
                }

                if (m->state == TX_MJ_COLON && p[i] == ':' && p[i + 1] == '"') {
                    i += 2;
                    m->state = TX_MJ_VALUE;

                    if (tx_meter_value(m, '"') != TX_OK) {
                        goto failed;
                    }

                    continue;
                }

                if (m->state == TX_MJ_AFTER && p[i] == ',' && p[i + 1] == '"'
                    && !tx_meter_is_array(m))
                {
                    i += 2;
                    tx_meter_key_start(m);
                    continue;
                }

                break;
            }

            break;

        case TX_MJ_ESC:
            i++;

            switch (c) {
            case '"':
            case '\\':
            case '/':
                cp = c;
                break;
            case 'b':
                cp = '\b';
                break;
            case 'f':
                cp = '\f';
                break;
            case 'n':
                cp = '\n';
                break;
            case 'r':
                cp = '\r';
                break;
            case 't':
                cp = '\t';
                break;

            case 'u':
                m->state = TX_MJ_UNI;
                m->uni = 0;
                m->uni_left = 4;
                continue;

            default:
                goto failed;
            }

            tx_meter_str_char(m, cp);
            m->state = TX_MJ_STRING;
            break;

        case TX_MJ_UNI:
            h = tx_meter_hex(c);

            if (h < 0) {
                goto failed;
            }

            i++;
            m->uni = m->uni << 4 | (uint32_t) h;

            if (--m->uni_left == 0) {
                tx_meter_str_char(m, m->uni);
                m->state = TX_MJ_STRING;
            }

            break;

        case TX_MJ_NUMBER:
            do {
                rc = tx_meter_number(m, p[i]);

                if (rc < 0) {
                    goto failed;
                }

                if (rc == 0) {
                    /* the number ended before p[i], looked at again */
                    tx_meter_number_done(m);
                    break;
                }

                i++;
            } while (i < len);

            break;

        case TX_MJ_LITERAL:
            if (c != (uint8_t) tx_meter_literals[m->lit][m->lit_pos]) {
                goto failed;
            }

            i++;

            if (tx_meter_literals[m->lit][++m->lit_pos] == '\0') {
                tx_meter_value_done(m);
            }

            break;

        case TX_MJ_FAIL:
            return;

        default:
            /* the structural states: whitespace is skipped in all of them */

            if (tx_meter_ws(c)) {
                i++;
                break;
            }

            i++;

            switch (m->state) {
            case TX_MJ_VALUE:
                if (tx_meter_value(m, c) != TX_OK) {
                    goto failed;
                }

                break;

            case TX_MJ_OBJ_FIRST:
                if (c == '}') {
                    tx_meter_pop(m);
                    break;
                }

                /* fall through */

            case TX_MJ_KEY:
                if (c != '"') {
                    goto failed;
                }

                tx_meter_key_start(m);
                break;

            case TX_MJ_ARR_FIRST:
                if (c == ']') {
                    tx_meter_pop(m);
                    break;
                }

                if (tx_meter_value(m, c) != TX_OK) {
                    goto failed;
                }

                break;

            case TX_MJ_COLON:
                if (c != ':') {
                    goto failed;
                }

                m->state = TX_MJ_VALUE;
                break;

            case TX_MJ_AFTER:
                if (c == ',') {
                    m->state = tx_meter_is_array(m) ? TX_MJ_VALUE : TX_MJ_KEY;
                    break;
                }

                if (c == (tx_meter_is_array(m) ? ']' : '}')) {
                    tx_meter_pop(m);
                    break;
                }

                goto failed;

            default: /* TX_MJ_END */
                goto failed;
            }

            break;
        }
    }

    return;

failed:

    tx_meter_fail(m);
}


/*
 * The fast path: a JSON value whole in one buffer (a response read in one
 * go, an SSE data line), parsed straight through: no state kept between
 * bytes, no switch on a state per token, and the target of a value looked
 * up only when its own key is one the meter knows.  It changes m only when
 * it reaches the end of the value with nothing but whitespace after it;
 * anything else (the value goes on past the buffer, an escape in a key or
 * in the model, malformed JSON, nesting deeper than TX_METER_NEST) returns
 * 0 with m untouched, and the caller gives the same bytes to
 * tx_meter_json(), which would have left m exactly as this does whenever
 * this returns 1 (fuzz_usage and test_whole_random compare the two).
 *
 * m must be where tx_meter_json() starts a value: TX_MJ_VALUE at depth 0.
 *
 * Bounds: only a buffer whose last byte but whitespace is '}' or ']' is
 * tried, and len is cut to that byte.  A closing bracket ends a run of
 * whitespace and is never part of a token, so a whitespace scan started
 * before len stops before it, and the only way to len is through a closing
 * bracket, at "after".  Strings, escapes and numbers are bounded by the
 * request scanner's own helpers (tx_json_plain, tx_json_escape,
 * tx_json_number_len), which also define what they accept.
 */

static int
tx_meter_whole(tx_meter_t *m, const uint8_t *p, size_t len)
{
    int            h, arr, depth, target, choices, usage, model_free;
    size_t         i, j, n, model_len;
    uint8_t        c, d;
    uint32_t       cp;
    uint64_t       v, chars;
    unsigned       seen;
    const uint8_t *model;
    uint8_t        path[TX_METER_DEPTH];
    uint8_t        close[TX_METER_NEST]; /* per level: '}' or ']' */
    uint64_t       raw[8];

/* whitespace is rare in a response: one test for the usual byte */
#define tx_meter_skip_ws()                                                     \
    while (p[i] <= ' ' && tx_meter_ws(p[i])) {                                 \
        i++;                                                                   \
    }

/* the value starting now has a target only if its own key is known */
#define tx_meter_whole_target()                                                \
    ((depth > 0 && depth <= TX_METER_DEPTH && path[depth - 1] != TX_MK_NONE)   \
         ? tx_meter_path_target(path, depth)                                   \
         : TX_MT_NONE)

    while (len && tx_meter_ws(p[len - 1])) {
        len--;
    }

    if (len == 0 || (p[len - 1] != '}' && p[len - 1] != ']')) {
        return 0;
    }

    i = 0;
    depth = 0;
    choices = m->ev_choices;
    usage = 0;
    seen = m->raw_seen;
    chars = 0;
    model = NULL;
    model_len = 0;
    model_free = (m->u.model_len == 0);
    memcpy(raw, m->raw, sizeof(raw));

value:

    tx_meter_skip_ws();

    if (choices == TX_MC_OPEN && depth == 2) {
        choices = TX_MC_ITEMS;
    }

    c = p[i];

    switch (c) {
    case '{':
    case '[':
        if (depth == TX_METER_NEST) {
            return 0;
        }

        arr = (c == '[');

        if (arr && depth == 1 && path[0] == TX_MK_CHOICES && close[0] == '}') {
            choices = TX_MC_OPEN;
        }

        /* '}' and ']' are two past '{' and '[' */
        close[depth] = (uint8_t) (c + 2);

        if (depth < TX_METER_DEPTH) {
            path[depth] = arr ? TX_MK_ARRAY : TX_MK_NONE;
        }

        depth++;
        i++;
        tx_meter_skip_ws();

        if (p[i] == close[depth - 1]) {
            i++;
            goto pop;
        }

        if (arr) {
            goto value;
        }

        goto key;

    case '"':
        i++;
        target = tx_meter_whole_target();

        if (target == TX_MT_MODEL && model_free) {
            j = tx_json_plain(p, i, len);

            if (j == len || p[j] != '"') {
                return 0;
            }

            n = j - i;

            if (n > 0) {
                model = p + i;
                model_len =
                    n < TX_METER_MODEL_MAX - 1 ? n : TX_METER_MODEL_MAX - 1;
                model_free = 0;
            }

            i = j + 1;
            goto after;
        }

        for (;;) {
            j = tx_json_plain(p, i, len);

            if (target == TX_MT_COUNT) {
                chars += tx_meter_chars(p + i, j - i);
            }

            if (j == len) {
                return 0;
            }

            if (p[j] == '"') {
                i = j + 1;
                break;
            }

            if (p[j] != '\\') {
                return 0;
            }

            n = tx_json_escape(p + j, len - j, &cp);

            if (n == 0) {
                return 0;
            }

            i = j + n;

            /* a surrogate pair is one character: count its high half */
            chars += (target == TX_MT_COUNT && (cp < 0xdc00 || cp > 0xdfff));
        }

        goto after;

    case 't':
    case 'f':
    case 'n':
        h = (c == 't') ? 0 : (c == 'f') ? 1 : 2;
        n = strlen(tx_meter_literals[h]);

        if (len - i < n || memcmp(p + i, tx_meter_literals[h], n) != 0) {
            return 0;
        }

        i += n;
        goto after;

    default:
        n = tx_json_number_len(p + i, len - i);

        if (n == 0) {
            return 0;
        }

        /* a usage count: a plain integer that fits, as tx_meter_number */
        target = (c == '-') ? TX_MT_NONE : tx_meter_whole_target();

        if (target >= TX_MT_RAW) {
            v = 0;

            for (j = i; j < i + n && tx_json_digit(p[j]); j++) {
                d = p[j] - '0';

                if (v > (UINT64_MAX - d) / 10) {
                    break;
                }

                v = v * 10 + d;
            }

            if (j == i + n) {
                raw[target - TX_MT_RAW] = v;
                seen |= 1u << (target - TX_MT_RAW);
                usage = 1;
            }
        }

        i += n;
        goto after;
    }

key:

    /* at a key's opening quote, whitespace skipped */

    if (p[i] != '"') {
        return 0;
    }

    i++;
    j = tx_json_plain(p, i, len);

    if (j == len || p[j] != '"') {
        return 0;
    }

    if (depth <= TX_METER_DEPTH) {
        n = j - i;
        path[depth - 1] = n > TX_METER_KEY_MAX
                              ? TX_MK_NONE
                              : tx_meter_intern((const char *) p + i, n);
    }

    i = j + 1;
    tx_meter_skip_ws();

    if (p[i] != ':') {
        return 0;
    }

    i++;
    goto value;

after:

    /* a value ended before p[i]; i is len only after a closing bracket */

    if (i == len) {
        if (depth) {
            return 0;
        }

        /* the value is whole: what it gave, as tx_meter_json() gives it */

        memcpy(m->raw, raw, sizeof(raw));
        m->raw_seen = seen;

        if (usage) {
            m->u.has_usage = 1;
            m->ev_usage = 1;
        }

        m->u.out_chars += chars;
        m->ev_choices = choices;

        if (model) {
            memcpy(m->u.model, model, model_len);
            m->u.model[model_len] = '\0';
            m->u.model_len = model_len;
        }

        m->state = TX_MJ_END;

        return 1;
    }

    if (depth == 0) {
        /* more than whitespace after the value */
        return 0;
    }

    tx_meter_skip_ws();
    c = p[i++];

    if (c == ',') {
        if (close[depth - 1] == ']') {
            goto value;
        }

        tx_meter_skip_ws();
        goto key;
    }

    if (c != close[depth - 1]) {
        return 0;
    }

pop:

    if (depth == 2 && choices == TX_MC_OPEN) {
        choices = TX_MC_EMPTY;
    }

    depth--;
    goto after;

#undef tx_meter_skip_ws
#undef tx_meter_whole_target
}


void
tx_meter_init(tx_meter_t *m, int format, int provider)
{
    memset(m, 0, sizeof(tx_meter_t));

    m->format = format;
    m->provider = provider;
    m->sse_state = TX_ME_BOM;

    tx_meter_json_reset(m);

    if (format != TX_METER_JSON && format != TX_METER_SSE) {
        m->failed = 1;
        m->state = TX_MJ_FAIL;
    }
}


static void
tx_meter_event_reset(tx_meter_t *m)
{
    m->sse_reset = 0;
    m->sse_lines = 0;
    m->sse_name_len = 0;
    m->ev_data_lines = 0;
    m->ev_failed = 0;
    m->ev_choices = TX_MC_NONE;
    m->ev_usage = 0;
    m->ev_not_done = 0;
    m->done_match = 0;

    tx_meter_json_reset(m);
}


static int
tx_meter_event_end(tx_meter_t *m)
{
    m->sse_reset = 1;

    if (m->ev_data_lines == 1 && !m->ev_not_done && m->done_match == 6) {
        return TX_METER_EV_DONE;
    }

    if (m->ev_choices == TX_MC_EMPTY && m->ev_usage && !m->ev_failed
        && m->state == TX_MJ_END)
    {
        return TX_METER_EV_END_USAGE;
    }

    return TX_METER_EV_END;
}


/* the field name is complete (at ':' or at the end of the line) */

static void
tx_meter_field_start(tx_meter_t *m)
{
    size_t n;

    n = m->sse_fname_len;

    if (n == 4 && memcmp(m->sse_fname, "data", 4) == 0) {
        m->sse_field = TX_MF_DATA;

        if (++m->ev_data_lines > 1) {
            /* data lines join with LF */
            m->ev_not_done = 1;
            tx_meter_json(m, (const uint8_t *) "\n", 1);
        }

    } else if (n == 5 && memcmp(m->sse_fname, "event", 5) == 0) {
        m->sse_field = TX_MF_EVENT;
        m->sse_name_len = 0;

    } else {
        m->sse_field = TX_MF_OTHER;
    }
}


/* len bytes of a field's value; whole: the line ends after them */

static void
tx_meter_field_value(tx_meter_t *m, const uint8_t *p, size_t len, int whole)
{
    size_t n;

    if (len == 0) {
        return;
    }

    if (m->sse_field == TX_MF_DATA) {
        if (!m->ev_not_done) {
            if (len > 6 - m->done_match
                || memcmp(p, &"[DONE]"[m->done_match], len) != 0) {
                m->ev_not_done = 1;

            } else {
                m->done_match += len;
            }
        }

        if (!(whole && m->state == TX_MJ_VALUE && m->depth == 0
              && tx_meter_whole(m, p, len)))
        {
            tx_meter_json(m, p, len);
        }

        return;
    }

    if (m->sse_field == TX_MF_EVENT) {
        n = sizeof(m->sse_name) - m->sse_name_len;
        n = len < n ? len : n;
        memcpy(m->sse_name + m->sse_name_len, p, n);
        m->sse_name_len += n;
    }
}


/*
 * The first CR or LF at or after i, or len: a line of an event, most of it
 * a data line's JSON, sixteen bytes a test where SSE2 is there.
 */

static size_t
tx_meter_eol(const uint8_t *p, size_t i, size_t len)
{
#if defined(__SSE2__)
    unsigned bits;
    __m128i  v;

    while (i + 16 <= len) {
        v = _mm_loadu_si128((const __m128i *) (p + i));
        bits = (unsigned) _mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\n')),
                         _mm_cmpeq_epi8(v, _mm_set1_epi8('\r'))));

        if (bits) {
            return i + (size_t) __builtin_ctz(bits);
        }

        i += 16;
    }
#endif

    while (i < len && p[i] != '\n' && p[i] != '\r') {
        i++;
    }

    return i;
}


static size_t
tx_meter_sse(tx_meter_t *m, const uint8_t *p, size_t len, int *ev)
{
    size_t  i, j;
    uint8_t c;

    static const uint8_t bom[3] = {0xef, 0xbb, 0xbf};

    i = 0;

    while (i < len) {
        c = p[i];

        switch (m->sse_state) {
        case TX_ME_BOM:
            if (c == bom[m->sse_bom]) {
                i++;

                if (++m->sse_bom == 3) {
                    m->sse_state = TX_ME_LINE;
                }

                break;
            }

            if (m->sse_bom == 0) {
                m->sse_state = TX_ME_LINE;
                break;
            }

            /* a partial BOM: the first field name is garbage */
            m->sse_lines = 1;
            m->sse_fname_len = sizeof(m->sse_fname) + 1;
            m->sse_state = TX_ME_FIELD;
            break;

        case TX_ME_LINE:
            if (m->sse_cr) {
                m->sse_cr = 0;

                if (c == '\n') {
                    i++;
                    break;
                }
            }

            if (m->sse_reset) {
                tx_meter_event_reset(m);
            }

            if (c == '\n' || c == '\r') {
                m->sse_cr = (c == '\r');
                i++;

                if (m->sse_lines) {
                    *ev = tx_meter_event_end(m);
                    return i;
                }

                break;
            }

            m->sse_lines++;

            if (c == ':') {
                m->sse_state = TX_ME_IGNORE;
                i++;
                break;
            }

            m->sse_fname_len = 0;
            m->sse_state = TX_ME_FIELD;
            break;

        case TX_ME_FIELD:
            if (c == ':') {
                tx_meter_field_start(m);
                m->sse_state = TX_ME_VSTART;
                i++;
                break;
            }

            if (c == '\n' || c == '\r') {
                /* a field name alone: an empty value */
                tx_meter_field_start(m);
                m->sse_cr = (c == '\r');
                m->sse_state = TX_ME_LINE;
                i++;
                break;
            }

            if (m->sse_fname_len < sizeof(m->sse_fname)) {
                m->sse_fname[m->sse_fname_len] = (char) c;
            }

            if (m->sse_fname_len <= sizeof(m->sse_fname)) {
                m->sse_fname_len++;
            }

            i++;
            break;

        case TX_ME_VSTART:
            m->sse_state = TX_ME_VALUE;

            if (c == ' ') {
                i++;
            }

            break;

        default: /* TX_ME_VALUE, TX_ME_IGNORE */
            j = tx_meter_eol(p, i, len);

            if (m->sse_state == TX_ME_VALUE) {
                tx_meter_field_value(m, p + i, j - i, j < len);
            }

            i = j;

            if (j < len) {
                m->sse_cr = (p[j] == '\r');
                m->sse_state = TX_ME_LINE;
                i++;
            }

            break;
        }
    }

    return len;
}


size_t
tx_meter_feed(tx_meter_t *m, const uint8_t *p, size_t len, int *ev)
{
    int dummy;

    if (ev == NULL) {
        ev = &dummy;
    }

    *ev = TX_METER_EV_NONE;

    if (m->format == TX_METER_SSE) {
        return tx_meter_sse(m, p, len, ev);
    }

    if (m->state == TX_MJ_VALUE && m->depth == 0 && tx_meter_whole(m, p, len)) {
        return len;
    }

    if (m->state != TX_MJ_FAIL) {
        tx_meter_json(m, p, len);
    }

    return len;
}


static uint64_t
tx_meter_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}


void
tx_meter_result(const tx_meter_t *m, tx_usage_t *out)
{
    uint64_t in;

#define tx_meter_seen(f) (m->raw_seen & (1u << (f)))

    *out = m->u;
    out->model[out->model_len] = '\0';

    in = tx_meter_seen(TX_MR_PROMPT)  ? m->raw[TX_MR_PROMPT]
         : tx_meter_seen(TX_MR_INPUT) ? m->raw[TX_MR_INPUT]
                                      : 0;

    if (tx_meter_seen(TX_MR_CACHE_READ) || tx_meter_seen(TX_MR_CACHE_WRITE)) {
        out->cache_read = m->raw[TX_MR_CACHE_READ];
        out->cache_write = m->raw[TX_MR_CACHE_WRITE];
        in = tx_meter_add(in, out->cache_read);
        in = tx_meter_add(in, out->cache_write);

    } else {
        out->cache_read = m->raw[TX_MR_CACHED];
        out->cache_write = 0;
    }

    out->input = in;
    out->output = m->raw[TX_MR_OUTPUT];
    out->reasoning = m->raw[TX_MR_REASONING];

#undef tx_meter_seen
}


void
tx_meter_event_name(const tx_meter_t *m, tx_str_t *name)
{
    name->data = (const uint8_t *) m->sse_name;
    name->len = m->sse_name_len;
}


int
tx_meter_known_key(const char *k, size_t n)
{
    return tx_meter_intern(k, n) != TX_MK_NONE;
}

/*
 * Torrix PII masking (see tx_pii.h).
 *
 * The text is cut into segments (string contents between quotes and escape
 * sequences); every detector runs over each segment and reports spans; the
 * earliest-longest of overlapping spans is kept and the output written with
 * the tokens in place.  A span glued to a token ([NAME_n]) is rejected, as
 * its neighbour in the original text was glued to it too: masking a value
 * never turns its neighbours into values, which keeps masking idempotent.
 */

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tx_pii.h"


#define TX_PII_MIN_SK     20
#define TX_PII_MIN_GH     20
#define TX_PII_MIN_SLACK  10
#define TX_PII_MIN_BEARER 20
#define TX_PII_GROUPS_MAX 8
#define TX_PII_PASSES     8


struct tx_pii_s {
    unsigned kinds;
    int      nrules;
    char     names[TX_PII_RULES_MAX][TX_PII_NAME_MAX + 1];
    regex_t  rules[TX_PII_RULES_MAX];
};


typedef struct {
    size_t   start;
    size_t   end;
    int      kind;
    unsigned num;
} tx_pii_span_t;


typedef struct {
    const uint8_t *data; /* NULL: an empty slot */
    size_t         len;
    int            kind;
    unsigned       num;
} tx_pii_val_t;


typedef struct {
    const tx_pii_t *pii;
    tx_pii_span_t  *spans;
    size_t          nspans;
    size_t          spans_cap;
    const uint8_t  *text; /* the text of this pass */
    size_t          len;
    int             builtins_only;
    tx_pii_val_t   *vals; /* open addressing, by value */
    size_t          nvals;
    size_t          vals_cap;
    char           *scratch; /* a segment, NUL-terminated */
    size_t          scratch_cap;
    int             oom;
    int             regerr;
} tx_pii_ctx_t;


static const char *const tx_pii_builtin_names[] = {"EMAIL", "PHONE", "CARD",
                                                   "IBAN", "SECRET"};

/* tie-break between matches of the same start and length: lower first */
static const int tx_pii_rank[] = {3, 4, 2, 1, 0};


static void
tx_pii_errmsg(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) {
        snprintf(err, errlen, "%s", msg);
    }
}


static int
tx_pii_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}


static int
tx_pii_upper(uint8_t c)
{
    return c >= 'A' && c <= 'Z';
}


static int
tx_pii_alpha(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}


static int
tx_pii_alnum(uint8_t c)
{
    return tx_pii_alpha(c) || tx_pii_digit(c);
}


static int
tx_pii_local(uint8_t c)
{
    return tx_pii_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+'
           || c == '-';
}


static int
tx_pii_domain(uint8_t c)
{
    return tx_pii_alnum(c) || c == '.' || c == '-';
}


/* key characters: sk-..., ghp_..., AIza... */
static int
tx_pii_keych(uint8_t c)
{
    return tx_pii_alnum(c) || c == '-' || c == '_';
}


static int
tx_pii_bearerch(uint8_t c)
{
    return tx_pii_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~'
           || c == '+' || c == '/' || c == '=';
}


static int
tx_pii_sep_bit(uint8_t c)
{
    switch (c) {
    case ' ':
        return 1;
    case '-':
        return 2;
    case '.':
        return 4;
    case '/':
        return 8;
    default:
        return 0;
    }
}


static int
tx_pii_tokch(uint8_t c)
{
    return tx_pii_upper(c) || tx_pii_digit(c) || c == '_';
}


/* s[a..p) ends with a token: '[' [A-Z0-9_]+ '_' [0-9]+ ']' */

static int
tx_pii_token_before(const uint8_t *s, size_t a, size_t p)
{
    size_t i, d, n;

    if (p == a || s[p - 1] != ']') {
        return 0;
    }

    for (i = p - 1, d = 0; i > a && tx_pii_digit(s[i - 1]); i--, d++) {
        /* void */
    }

    if (d == 0 || i == a || s[i - 1] != '_') {
        return 0;
    }

    for (i--, n = 0; i > a && tx_pii_tokch(s[i - 1]); i--, n++) {
        /* void */
    }

    return n > 0 && i > a && s[i - 1] == '[';
}


/* s[p..b) starts with a token */

static int
tx_pii_token_after(const uint8_t *s, size_t p, size_t b)
{
    size_t i, d;

    if (p == b || s[p] != '[') {
        return 0;
    }

    for (i = p + 1; i < b && tx_pii_tokch(s[i]); i++) {
        /* void */
    }

    if (i == b || s[i] != ']') {
        return 0;
    }

    /* [A-Z0-9_]+ _ [0-9]+ */
    for (d = 0; i > p + 1 && tx_pii_digit(s[i - 1]); i--, d++) {
        /* void */
    }

    return d > 0 && i > p + 2 && s[i - 1] == '_';
}


static void
tx_pii_push(tx_pii_ctx_t *cx, size_t start, size_t end, int kind)
{
    size_t         n;
    tx_pii_span_t *sp;

    if (tx_pii_token_before(cx->text, 0, start)
        || tx_pii_token_after(cx->text, end, cx->len))
    {
        return;
    }

    /* a group of digits next to a token may have been part of its value */

    if (kind == TX_PII_K_PHONE || kind == TX_PII_K_CARD
        || kind == TX_PII_K_IBAN) {
        if ((start > 0 && tx_pii_sep_bit(cx->text[start - 1])
             && tx_pii_token_before(cx->text, 0, start - 1))
            || (end < cx->len && tx_pii_sep_bit(cx->text[end])
                && tx_pii_token_after(cx->text, end + 1, cx->len)))
        {
            return;
        }
    }

    if (cx->nspans == cx->spans_cap) {
        n = cx->spans_cap ? cx->spans_cap * 2 : 64;
        sp = realloc(cx->spans, n * sizeof(tx_pii_span_t));

        if (sp == NULL) {
            cx->oom = 1;
            return;
        }

        cx->spans = sp;
        cx->spans_cap = n;
    }

    sp = &cx->spans[cx->nspans++];
    sp->start = start;
    sp->end = end;
    sp->kind = kind;
    sp->num = 0;
}


/* EMAIL: anchored at each '@', grown both ways */

static void
tx_pii_email(tx_pii_ctx_t *cx, const uint8_t *s, size_t a, size_t b)
{
    size_t i, l, r, k, label, dots;
    int    alpha;

    for (i = a; i < b; i++) {
        if (s[i] != '@') {
            continue;
        }

        for (l = i; l > a && tx_pii_local(s[l - 1]); l--) {
            /* void */
        }

        while (l < i && s[l] == '.') {
            l++;
        }

        if (l == i || s[i - 1] == '.') {
            continue;
        }

        for (r = i + 1; r < b && tx_pii_domain(s[r]); r++) {
            /* void */
        }

        while (r > i + 1 && (s[r - 1] == '.' || s[r - 1] == '-')) {
            r--;
        }

        /* labels not empty, 2 at least, the last 2+ letters */

        label = 0;
        dots = 0;
        alpha = 1;

        for (k = i + 1; k < r; k++) {
            if (s[k] == '.') {
                if (label == 0) {
                    break;
                }

                dots++;
                label = 0;
                alpha = 1;
                continue;
            }

            label++;
            alpha = alpha && tx_pii_alpha(s[k]);
        }

        if (k != r || dots == 0 || label < 2 || !alpha) {
            continue;
        }

        tx_pii_push(cx, l, r, TX_PII_K_EMAIL);
        i = r - 1;
    }
}


static int
tx_pii_luhn(const uint8_t *s, size_t a, size_t b)
{
    int    d, sum, dbl;
    size_t i;

    sum = 0;
    dbl = 0;

    for (i = b; i > a; i--) {
        if (!tx_pii_digit(s[i - 1])) {
            continue;
        }

        d = s[i - 1] - '0';

        if (dbl) {
            d *= 2;
            d -= (d > 9) ? 9 : 0;
        }

        sum += d;
        dbl = !dbl;
    }

    return sum % 10 == 0;
}


typedef struct {
    size_t end; /* after the last digit or ')' */
    size_t ndigits;
    size_t ngroups;
    size_t glen[TX_PII_GROUPS_MAX];
    int    plus;
    int    parens; /* a balanced (...) */
    int    open;
    int    seps; /* bit set: 1 ' ', 2 '-', 4 '.', 8 '/' */
    int    too_many;
} tx_pii_run_t;


static void
tx_pii_group_end(tx_pii_run_t *rn, size_t len)
{
    if (len == 0) {
        return;
    }

    if (rn->ngroups == TX_PII_GROUPS_MAX) {
        rn->too_many = 1;
        return;
    }

    rn->glen[rn->ngroups++] = len;
}


/* a run of digits, separators, one (...) and a leading '+', from i */

static void
tx_pii_run(const uint8_t *s, size_t i, size_t b, tx_pii_run_t *rn)
{
    int     bit;
    size_t  j, cur;
    uint8_t c;

    memset(rn, 0, sizeof(tx_pii_run_t));

    j = i;
    rn->end = i;

    if (s[j] == '+') {
        rn->plus = 1;
        j++;
    }

    cur = 0;

    while (j < b) {
        c = s[j];

        if (tx_pii_digit(c)) {
            cur++;
            rn->ndigits++;
            j++;
            rn->end = j;
            continue;
        }

        if (c == '(' && !rn->open && !rn->parens && cur == 0 && j + 1 < b
            && tx_pii_digit(s[j + 1]))
        {
            rn->open = 1;
            j++;
            continue;
        }

        if (c == ')' && rn->open && cur > 0) {
            tx_pii_group_end(rn, cur);
            cur = 0;
            rn->open = 0;
            rn->parens = 1;
            j++;
            rn->end = j;
            continue;
        }

        bit = tx_pii_sep_bit(c);

        if (bit && !rn->open && (cur > 0 || (j > i && s[j - 1] == ')'))
            && j + 1 < b && (tx_pii_digit(s[j + 1]) || s[j + 1] == '('))
        {
            tx_pii_group_end(rn, cur);
            cur = 0;
            rn->seps |= bit;
            j++;
            continue;
        }

        break;
    }

    tx_pii_group_end(rn, cur);
}


static int
tx_pii_is_card(const uint8_t *s, size_t a, size_t b, size_t ndigits, int seps)
{
    size_t i;

    for (i = a; i < b && !tx_pii_digit(s[i]); i++) {
        /* void */
    }

    return ndigits >= 13 && ndigits <= 19
           && (seps == 0 || seps == 1 || seps == 2) && i < b && s[i] >= '2'
           && s[i] <= '6' && tx_pii_luhn(s, a, b);
}


static int
tx_pii_is_phone(const tx_pii_run_t *rn)
{
    size_t        i, n;
    const size_t *g;

    n = rn->ngroups;
    g = rn->glen;

    if (rn->open || rn->too_many || rn->ndigits < 7 || rn->ndigits > 15) {
        return 0;
    }

    if (rn->plus) {
        return 1;
    }

    if (rn->seps == 0 && !rn->parens) {
        return 0; /* a plain number: an id, a timestamp */
    }

    for (i = 0; i < n; i++) {
        if (g[i] > 8) {
            return 0;
        }
    }

    /* dates: 2024-11-22, 22/11/2024, 2024-11-22 10 */
    if (n >= 3 && g[0] == 4 && g[1] <= 2 && g[2] <= 2) {
        return 0;
    }

    if (n == 3 && g[0] <= 2 && g[1] <= 2 && g[2] == 4) {
        return 0;
    }

    /* an IPv4 address */
    if (rn->seps == 4 && n == 4 && g[0] <= 3 && g[1] <= 3 && g[2] <= 3
        && g[3] <= 3) {
        return 0;
    }

    /* thousands: 1 000 000, 12.345.678 */
    if (!rn->parens && g[0] <= 2) {
        for (i = 1; i < n && g[i] == 3; i++) {
            /* void */
        }

        if (i == n) {
            return 0;
        }
    }

    /* one separator: 555-1234, 030/1234567, not 1234.5678 or 3/1234567 */
    if (n == 2 && !rn->parens && (rn->seps == 4 || g[0] < 3 || g[1] < 3)) {
        return 0;
    }

    return 1;
}


/* PHONE and CARD over the numeric runs of a segment */

static void
tx_pii_numbers(tx_pii_ctx_t *cx, const uint8_t *s, size_t a, size_t b)
{
    int          phone, card;
    size_t       i, gs, ge;
    uint8_t      c, p;
    tx_pii_run_t rn;

    phone = cx->pii->kinds & TX_PII_PHONE;
    card = cx->pii->kinds & TX_PII_CARD;

    i = a;

    while (i < b) {
        c = s[i];

        if (!(tx_pii_digit(c) || c == '+' || c == '(')) {
            i++;
            continue;
        }

        if (i > a) {
            p = s[i - 1];

            if (tx_pii_alnum(p) || p == '+' || p == '-' || p == '.' || p == '/'
                || p == '_' || p == ')' || p == '(')
            {
                i++;
                continue;
            }
        }

        tx_pii_run(s, i, b, &rn);

        if (rn.ndigits == 0) {
            i++;
            continue;
        }

        /* glued to a letter, a time (10:30), a decimal (12.5), a % */
        if (rn.end < b
            && (tx_pii_alnum(s[rn.end]) || s[rn.end] == ':' || s[rn.end] == '%'
                || s[rn.end] == '_'
                || (rn.end + 1 < b && tx_pii_digit(s[rn.end + 1])
                    && (s[rn.end] == '.' || s[rn.end] == ','))))
        {
            i = rn.end;
            continue;
        }

        if (card && !rn.plus && !rn.parens && !rn.too_many
            && tx_pii_is_card(s, i, rn.end, rn.ndigits, rn.seps))
        {
            tx_pii_push(cx, i, rn.end, TX_PII_K_CARD);

        } else if (phone && tx_pii_is_phone(&rn)) {
            tx_pii_push(cx, i, rn.end, TX_PII_K_PHONE);

        } else if (card) {
            /* cards side by side: "4111111111111111 5500005555555559";
               every digit group of the run, however many */
            for (gs = i; gs < rn.end; gs = ge + 1) {
                for (ge = gs; ge < rn.end && tx_pii_digit(s[ge]); ge++) {
                    /* void */
                }

                if (ge - gs >= 13 && ge - gs <= 19
                    && (gs == i || s[gs - 1] == ' ' || s[gs - 1] == '-')
                    && (ge == rn.end || s[ge] == ' ' || s[ge] == '-')
                    && tx_pii_is_card(s, gs, ge, ge - gs, 0))
                {
                    tx_pii_push(cx, gs, ge, TX_PII_K_CARD);
                }
            }
        }

        i = rn.end > i ? rn.end : i + 1;
    }
}


static unsigned
tx_pii_mod97_step(unsigned r, uint8_t c)
{
    if (tx_pii_digit(c)) {
        return (r * 10 + (unsigned) (c - '0')) % 97;
    }

    if (tx_pii_upper(c)) {
        return (r * 100 + (unsigned) (c - 'A' + 10)) % 97;
    }

    return r; /* a group space */
}


/* the BBAN, then the country code and check digits (no space in those) */

static int
tx_pii_mod97(const uint8_t *s, size_t a, size_t b)
{
    size_t   i;
    unsigned r;

    r = 0;

    for (i = a + 4; i < b; i++) {
        r = tx_pii_mod97_step(r, s[i]);
    }

    for (i = a; i < a + 4; i++) {
        r = tx_pii_mod97_step(r, s[i]);
    }

    return r == 1;
}


/* IBAN: CC + 2 digits + BBAN, compact or in groups of 4 */

static void
tx_pii_iban(tx_pii_ctx_t *cx, const uint8_t *s, size_t a, size_t b)
{
    int    spaced;
    size_t i, j, n, glen, ng, ends[10], k;

    for (i = a; i + 4 <= b; i++) {
        if (!(tx_pii_upper(s[i]) && tx_pii_upper(s[i + 1])
              && tx_pii_digit(s[i + 2]) && tx_pii_digit(s[i + 3])))
        {
            continue;
        }

        if (i > a && tx_pii_alnum(s[i - 1])) {
            continue;
        }

        j = i + 4;
        n = 4;
        glen = 4;
        spaced = 0;
        ng = 0;

        while (j < b && n < 34) {
            if (tx_pii_upper(s[j]) || tx_pii_digit(s[j])) {
                n++;
                glen++;
                j++;
                continue;
            }

            if (s[j] == ' ' && glen == 4 && (spaced || n == 4) && j + 1 < b
                && (tx_pii_upper(s[j + 1]) || tx_pii_digit(s[j + 1])))
            {
                if (ng < 10) {
                    ends[ng++] = j;
                }

                spaced = 1;
                glen = 0;
                j++;
                continue;
            }

            break;
        }

        if (spaced && glen > 4) {
            continue;
        }

        /* the longest that ends on a boundary and checks */

        for (;;) {
            if (n >= 15 && (j == b || !tx_pii_alnum(s[j]))
                && tx_pii_mod97(s, i, j)) {
                tx_pii_push(cx, i, j, TX_PII_K_IBAN);
                i = j - 1;
                break;
            }

            if (!spaced || ng < 2) {
                break;
            }

            /* drop the last group */
            k = ends[--ng];
            n -= (j - k - 1);
            j = k;
        }
    }
}


static size_t
tx_pii_span_of(const uint8_t *s, size_t i, size_t b, int (*ok)(uint8_t))
{
    size_t j;

    for (j = i; j < b && ok(s[j]); j++) {
        /* void */
    }

    return j - i;
}


static int
tx_pii_prefix(const uint8_t *s, size_t i, size_t b, const char *p)
{
    size_t n;

    n = strlen(p);

    return b - i >= n && memcmp(s + i, p, n) == 0;
}


static size_t
tx_pii_upper_digits(const uint8_t *s, size_t i, size_t b)
{
    size_t j;

    for (j = i; j < b && (tx_pii_upper(s[j]) || tx_pii_digit(s[j])); j++) {
        /* void */
    }

    return j - i;
}


static int
tx_pii_alnum_ok(uint8_t c)
{
    return tx_pii_alnum(c);
}


/* SECRET: API key shapes at a word start */

static void
tx_pii_secret(tx_pii_ctx_t *cx, const uint8_t *s, size_t a, size_t b)
{
    size_t i, n, p, min;

    for (i = a; i < b; i++) {
        if (i > a && tx_pii_keych(s[i - 1])) {
            continue;
        }

        p = 0;
        min = 0;
        n = 0;

        switch (s[i]) {
        case 's':
            if (tx_pii_prefix(s, i, b, "sk-")) {
                p = 3;
                min = TX_PII_MIN_SK;
                n = tx_pii_span_of(s, i + p, b, tx_pii_keych);
            }

            break;

        case 'A':
            if (tx_pii_prefix(s, i, b, "AKIA")
                || tx_pii_prefix(s, i, b, "ASIA")) {
                p = 4;
                n = tx_pii_upper_digits(s, i + p, b);

                if (n == 16 && (i + 20 == b || !tx_pii_keych(s[i + 20]))) {
                    min = 16;

                } else {
                    n = 0;
                }

            } else if (tx_pii_prefix(s, i, b, "AIza")) {
                p = 4;
                n = tx_pii_span_of(s, i + p, b, tx_pii_keych);
                min = 35;

                if (n != 35) {
                    n = 0;
                }
            }

            break;

        case 'g':
            if (tx_pii_prefix(s, i, b, "github_pat_")) {
                p = 11;
                min = TX_PII_MIN_GH;
                n = tx_pii_span_of(s, i + p, b, tx_pii_keych);

            } else if (b - i >= 4 && s[i + 1] == 'h' && s[i + 3] == '_'
                       && s[i + 2] && strchr("pousr", s[i + 2]) != NULL)
            {
                p = 4;
                min = TX_PII_MIN_GH;
                n = tx_pii_span_of(s, i + p, b, tx_pii_alnum_ok);

                if (i + p + n < b && tx_pii_keych(s[i + p + n])) {
                    n = 0;
                }
            }

            break;

        case 'x':
            if (b - i >= 5 && s[i + 1] == 'o' && s[i + 2] == 'x' && s[i + 3]
                && strchr("baprs", s[i + 3]) != NULL && s[i + 4] == '-')
            {
                p = 5;
                min = TX_PII_MIN_SLACK;
                n = tx_pii_span_of(s, i + p, b, tx_pii_keych);
            }

            break;

        case 'B':
        case 'b':
            if (tx_pii_prefix(s, i + 1, b, "earer ")) {
                n = tx_pii_span_of(s, i + 7, b, tx_pii_bearerch);

                if (n >= TX_PII_MIN_BEARER) {
                    tx_pii_push(cx, i + 7, i + 7 + n, TX_PII_K_SECRET);
                    i += 7 + n - 1;
                }

                continue;
            }

            break;

        default:
            break;
        }

        if (p && n >= min && min) {
            tx_pii_push(cx, i, i + p + n, TX_PII_K_SECRET);
            i += p + n - 1;
        }
    }
}


/*
 * Custom rules see a NUL-terminated copy of the segment: regexec(3) may
 * look for the NUL even with REG_STARTEND (sanitizer interceptors do), and
 * the text is not terminated.  REG_STARTEND keeps NUL bytes inside the
 * segment matchable.
 */

static void
tx_pii_custom(tx_pii_ctx_t *cx, const uint8_t *s, size_t a, size_t b)
{
    int        r, rc, flags;
    char      *p;
    size_t     at, n;
    regmatch_t m;

    n = b - a;

    if (n + 1 > cx->scratch_cap) {
        p = realloc(cx->scratch, n + 1);

        if (p == NULL) {
            cx->oom = 1;
            return;
        }

        cx->scratch = p;
        cx->scratch_cap = n + 1;
    }

    memcpy(cx->scratch, s + a, n);
    cx->scratch[n] = '\0';

    for (r = 0; r < cx->pii->nrules; r++) {
        at = 0;

        while (at <= n) {
            /* offsets from the segment start, where '^' matches */
            m.rm_so = (regoff_t) at;
            m.rm_eo = (regoff_t) n;
            flags = REG_STARTEND | (at > 0 ? REG_NOTBOL : 0);

            rc = regexec(&cx->pii->rules[r], cx->scratch, 1, &m, flags);

            if (rc == REG_NOMATCH) {
                break;
            }

            if (rc != 0) {
                cx->regerr = 1;
                return;
            }

            if (m.rm_eo > m.rm_so) {
                tx_pii_push(cx, a + (size_t) m.rm_so, a + (size_t) m.rm_eo,
                            TX_PII_K_CUSTOM + r);
                at = (size_t) m.rm_eo;

            } else {
                at = (size_t) m.rm_so + 1;
            }
        }
    }
}


static void
tx_pii_segment(tx_pii_ctx_t *cx, const uint8_t *s, size_t a, size_t b)
{
    unsigned k;

    if (b <= a) {
        return;
    }

    k = cx->pii->kinds;

    if (k & TX_PII_EMAIL) {
        tx_pii_email(cx, s, a, b);
    }

    if (k & (TX_PII_PHONE | TX_PII_CARD)) {
        tx_pii_numbers(cx, s, a, b);
    }

    if (k & TX_PII_IBAN) {
        tx_pii_iban(cx, s, a, b);
    }

    if (k & TX_PII_SECRET) {
        tx_pii_secret(cx, s, a, b);
    }

    if (cx->pii->nrules && !cx->builtins_only) {
        tx_pii_custom(cx, s, a, b);
    }
}


static int
tx_pii_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}


/* '{' or '[', then what a JSON value can start with, ... '}' or ']' */

static int
tx_pii_is_json(const uint8_t *s, size_t len)
{
    size_t i, j, e;

    for (i = 0; i < len && tx_pii_ws(s[i]); i++) {
        /* void */
    }

    for (e = len; e > i && tx_pii_ws(s[e - 1]); e--) {
        /* void */
    }

    if (e - i < 2 || (s[i] != '{' && s[i] != '[')
        || (s[e - 1] != '}' && s[e - 1] != ']'))
    {
        return 0;
    }

    for (j = i + 1; j < e && tx_pii_ws(s[j]); j++) {
        /* void */
    }

    return s[j] != '\0' && strchr("\"{}[]-0123456789tfn", s[j]) != NULL;
}


/* cut the text into segments: strings (JSON) or all of it, minus quotes
   and escape sequences */

static void
tx_pii_detect(tx_pii_ctx_t *cx, const uint8_t *s, size_t len, int json)
{
    int    in_str;
    size_t i, seg, k;

    cx->text = s;
    cx->len = len;
    in_str = !json;
    seg = 0;
    i = 0;

    while (i < len) {
        if (s[i] == '"') {
            if (in_str) {
                tx_pii_segment(cx, s, seg, i);
            }

            in_str = json ? !in_str : 1;
            seg = ++i;
            continue;
        }

        if (s[i] == '\\') {
            if (in_str) {
                tx_pii_segment(cx, s, seg, i);
            }

            i++;

            if (i < len && s[i] == 'u') {
                i++;

                for (k = 0;
                     k < 4 && i < len
                     && (tx_pii_digit(s[i])
                         || ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'f'));
                     k++)
                {
                    i++;
                }

            } else if (i < len) {
                i++;
            }

            seg = i;
            continue;
        }

        i++;
    }

    if (in_str) {
        tx_pii_segment(cx, s, seg, len);
    }
}


static int
tx_pii_span_cmp(const void *a, const void *b)
{
    const tx_pii_span_t *x, *y;
    int                  rx, ry;

    x = a;
    y = b;

    if (x->start != y->start) {
        return x->start < y->start ? -1 : 1;
    }

    if (x->end != y->end) {
        return x->end > y->end ? -1 : 1;
    }

    rx = x->kind < TX_PII_K_CUSTOM ? tx_pii_rank[x->kind] : x->kind;
    ry = y->kind < TX_PII_K_CUSTOM ? tx_pii_rank[y->kind] : y->kind;

    return rx - ry;
}


static uint64_t
tx_pii_hash(int kind, const uint8_t *p, size_t len)
{
    size_t   i;
    uint64_t h;

    h = 14695981039346656037ULL ^ (uint64_t) kind;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }

    return h;
}


static int
tx_pii_vals_grow(tx_pii_ctx_t *cx)
{
    size_t        i, j, cap;
    tx_pii_val_t *v, *old;

    cap = cx->vals_cap ? cx->vals_cap * 2 : 64;
    v = calloc(cap, sizeof(tx_pii_val_t));

    if (v == NULL) {
        return TX_ERROR;
    }

    old = cx->vals;

    for (i = 0; i < cx->vals_cap; i++) {
        if (old[i].data == NULL) {
            continue;
        }

        j = tx_pii_hash(old[i].kind, old[i].data, old[i].len) & (cap - 1);

        while (v[j].data) {
            j = (j + 1) & (cap - 1);
        }

        v[j] = old[i];
    }

    free(old);
    cx->vals = v;
    cx->vals_cap = cap;

    return TX_OK;
}


/* the token number of a value, a new one at its first appearance */

static int
tx_pii_number(tx_pii_ctx_t *cx, int kind, const uint8_t *p, size_t len,
              tx_pii_result_t *res, unsigned *num)
{
    size_t        j;
    tx_pii_val_t *v;

    if (2 * (cx->nvals + 1) > cx->vals_cap && tx_pii_vals_grow(cx) != TX_OK) {
        return TX_ERROR;
    }

    j = tx_pii_hash(kind, p, len) & (cx->vals_cap - 1);

    for (;;) {
        v = &cx->vals[j];

        if (v->data == NULL) {
            break;
        }

        if (v->kind == kind && v->len == len && memcmp(v->data, p, len) == 0) {
            *num = v->num;
            return TX_OK;
        }

        j = (j + 1) & (cx->vals_cap - 1);
    }

    v->data = p;
    v->len = len;
    v->kind = kind;
    v->num = ++res->distinct[kind];
    cx->nvals++;

    *num = v->num;

    return TX_OK;
}


static size_t
tx_pii_token(const tx_pii_t *pii, int kind, unsigned num, char *buf,
             size_t size)
{
    int n;

    n = snprintf(buf, size, "[%s_%u]", tx_pii_kind_name(pii, kind), num);

    return n < 0 ? 0 : (size_t) n;
}


/* keeps the first of overlapping spans (they are sorted), numbers them */

static int
tx_pii_resolve(tx_pii_ctx_t *cx, const uint8_t *s, tx_pii_result_t *res)
{
    size_t         i, n, last;
    tx_pii_span_t *sp;

    qsort(cx->spans, cx->nspans, sizeof(tx_pii_span_t), tx_pii_span_cmp);

    n = 0;
    last = 0;

    for (i = 0; i < cx->nspans; i++) {
        sp = &cx->spans[i];

        if (n && sp->start < last) {
            continue;
        }

        if (tx_pii_number(cx, sp->kind, s + sp->start, sp->end - sp->start, res,
                          &sp->num)
            != TX_OK)
        {
            return TX_ERROR;
        }

        res->found[sp->kind]++;
        res->total++;
        last = sp->end;
        cx->spans[n++] = *sp;
    }

    cx->nspans = n;

    return TX_OK;
}


/* writes the text with the kept spans replaced */

static uint8_t *
tx_pii_build(tx_pii_ctx_t *cx, const uint8_t *s, size_t len, size_t *outlen)
{
    char           tok[TX_PII_NAME_MAX + 16];
    size_t         i, j, n, size, pos, tl;
    uint8_t       *out;
    tx_pii_span_t *sp;

    size = len;

    for (i = 0; i < cx->nspans; i++) {
        sp = &cx->spans[i];
        size += tx_pii_token(cx->pii, sp->kind, sp->num, tok, sizeof(tok));
        size -= sp->end - sp->start;
    }

    out = malloc(size + 1);

    if (out == NULL) {
        return NULL;
    }

    pos = 0;
    n = 0;

    for (j = 0; j <= cx->nspans; j++) {
        i = (j < cx->nspans) ? cx->spans[j].start : len;

        memcpy(out + pos, s + n, i - n);
        pos += i - n;

        if (j == cx->nspans) {
            break;
        }

        sp = &cx->spans[j];
        tl = tx_pii_token(cx->pii, sp->kind, sp->num, tok, sizeof(tok));
        memcpy(out + pos, tok, tl);
        pos += tl;
        n = sp->end;
    }

    out[pos] = '\0';
    *outlen = pos;

    return out;
}


int
tx_pii_create(tx_pii_t **pii, unsigned kinds, char *err, size_t errlen)
{
    tx_pii_t *p;

    p = calloc(1, sizeof(tx_pii_t));

    if (p == NULL) {
        tx_pii_errmsg(err, errlen, "out of memory");
        return TX_ERROR;
    }

    p->kinds = kinds & TX_PII_ALL;
    *pii = p;

    return TX_OK;
}


int
tx_pii_add_rule(tx_pii_t *pii, const char *name, const char *regex, char *err,
                size_t errlen)
{
    int             rc;
    char            msg[128], tok[TX_PII_NAME_MAX + 16];
    size_t          i, n;
    tx_pii_t        probe;
    tx_pii_ctx_t    cx;
    tx_pii_result_t res;

    if (pii->nrules == TX_PII_RULES_MAX) {
        tx_pii_errmsg(err, errlen, "too many rules");
        return TX_ERROR;
    }

    n = name ? strlen(name) : 0;

    if (n == 0 || n > TX_PII_NAME_MAX) {
        tx_pii_errmsg(err, errlen, "rule name: 1 to 32 characters");
        return TX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (!tx_pii_alnum((uint8_t) name[i]) && name[i] != '_') {
            tx_pii_errmsg(err, errlen, "rule name: letters, digits, '_'");
            return TX_ERROR;
        }

        pii->names[pii->nrules][i] = (name[i] >= 'a' && name[i] <= 'z')
                                         ? (char) (name[i] - 'a' + 'A')
                                         : name[i];
    }

    pii->names[pii->nrules][n] = '\0';

    /* the token must not look like a secret itself, or masking would not
       settle */

    memset(&probe, 0, sizeof(probe));
    probe.kinds = TX_PII_ALL;
    memset(&cx, 0, sizeof(cx));
    memset(&res, 0, sizeof(res));
    cx.pii = &probe;

    n = (size_t) snprintf(tok, sizeof(tok), "%s_1", pii->names[pii->nrules]);
    cx.text = (const uint8_t *) tok;
    cx.len = n;
    tx_pii_segment(&cx, (const uint8_t *) tok, 0, n);
    free(cx.spans);

    if (cx.nspans || cx.oom) {
        tx_pii_errmsg(err, errlen, "rule name looks like a detected value");
        return TX_ERROR;
    }

    if (regex == NULL) {
        tx_pii_errmsg(err, errlen, "no regex");
        return TX_ERROR;
    }

    rc = regcomp(&pii->rules[pii->nrules], regex, REG_EXTENDED);

    if (rc != 0) {
        regerror(rc, &pii->rules[pii->nrules], msg, sizeof(msg));

        if (err && errlen) {
            snprintf(err, errlen, "rule \"%s\": %s", name, msg);
        }

        return TX_ERROR;
    }

    pii->nrules++;

    return TX_OK;
}


void
tx_pii_free(tx_pii_t *pii)
{
    int i;

    if (pii == NULL) {
        return;
    }

    for (i = 0; i < pii->nrules; i++) {
        regfree(&pii->rules[i]);
    }

    free(pii);
}


int
tx_pii_kinds(const tx_pii_t *pii)
{
    return TX_PII_K_CUSTOM + pii->nrules;
}


const char *
tx_pii_kind_name(const tx_pii_t *pii, int kind)
{
    if (kind < 0 || kind >= TX_PII_K_CUSTOM + pii->nrules) {
        return NULL;
    }

    if (kind < TX_PII_K_CUSTOM) {
        return tx_pii_builtin_names[kind];
    }

    return pii->names[kind - TX_PII_K_CUSTOM];
}


/*
 * A value dropped for overlapping a kept one may leave a part that is a
 * value on its own once its neighbour is a token (a phone run whose last
 * group was an email's local part): further passes, built-in detectors only,
 * mask those until nothing is found.
 */

int
tx_pii_mask(const tx_pii_t *pii, const uint8_t *in, size_t len,
            tx_pii_result_t *res, char *err, size_t errlen)
{
    int            json, pass, rc;
    size_t         curlen, outlen, i;
    uint8_t       *bufs[TX_PII_PASSES], *out;
    const uint8_t *cur;
    tx_pii_ctx_t   cx;

    memset(res, 0, sizeof(tx_pii_result_t));
    memset(&cx, 0, sizeof(tx_pii_ctx_t));
    memset(bufs, 0, sizeof(bufs));

    cx.pii = pii;
    rc = TX_ERROR;

    if (in == NULL) {
        len = 0;
        in = (const uint8_t *) "";
    }

    json = tx_pii_is_json(in, len);
    cur = in;
    curlen = len;

    for (pass = 0; pass < TX_PII_PASSES; pass++) {
        cx.nspans = 0;
        cx.builtins_only = (pass > 0);
        tx_pii_detect(&cx, cur, curlen, json);

        if (cx.oom) {
            tx_pii_errmsg(err, errlen, "out of memory");
            goto failed;
        }

        if (cx.regerr) {
            tx_pii_errmsg(err, errlen, "regexec failed");
            goto failed;
        }

        if (cx.nspans == 0) {
            break;
        }

        if (tx_pii_resolve(&cx, cur, res) != TX_OK) {
            tx_pii_errmsg(err, errlen, "out of memory");
            goto failed;
        }

        out = tx_pii_build(&cx, cur, curlen, &outlen);

        if (out == NULL) {
            tx_pii_errmsg(err, errlen, "out of memory");
            goto failed;
        }

        bufs[pass] = out;
        cur = out;
        curlen = outlen;
    }

    if (cur == in) {
        out = malloc(len + 1);

        if (out == NULL) {
            tx_pii_errmsg(err, errlen, "out of memory");
            goto failed;
        }

        memcpy(out, in, len);
        out[len] = '\0';

    } else {
        out = (uint8_t *) cur;

        for (i = 0; i < TX_PII_PASSES; i++) {
            if (bufs[i] == out) {
                bufs[i] = NULL;
            }
        }
    }

    res->data = out;
    res->len = curlen;
    rc = TX_OK;

failed:

    for (i = 0; i < TX_PII_PASSES; i++) {
        free(bufs[i]);
    }

    free(cx.spans);
    free(cx.vals);
    free(cx.scratch);

    if (rc != TX_OK) {
        memset(res, 0, sizeof(tx_pii_result_t));
    }

    return rc;
}


void
tx_pii_result_free(tx_pii_result_t *res)
{
    free(res->data);
    res->data = NULL;
    res->len = 0;
}

/*
 * Torrix PII masking: replaces personal data and secrets in a text (a
 * stored request or response body, usually JSON) by labeled tokens before
 * it is written anywhere.
 *
 *     mail a.b@example.com or a.b@example.com, call +44 20 7946 0958
 *  -> mail [EMAIL_1] or [EMAIL_1], call [PHONE_1]
 *
 * Each distinct value gets a token numbered per kind in order of first
 * appearance; the same value again gets the same token.  Detectors:
 *
 *   EMAIL   local@domain.tld (ASCII; the TLD is 2+ letters)
 *   PHONE   7..15 digits with a leading '+', or parentheses, or separators
 *           (space - . /) between groups; plain digit strings (ids,
 *           timestamps), dates (2024-11-22, 22/11/2024), IPv4 addresses,
 *           thousands groups (1 000 000) and decimals are not phones
 *   CARD    13..19 digits, optionally grouped by spaces or dashes, first
 *           digit 2..6 (the card networks' ranges), Luhn check
 *   IBAN    2 capital letters, 2 check digits, 11..30 capitals or digits,
 *           optionally in space-separated groups of 4, mod-97 == 1
 *   SECRET  sk-... (sk-proj-, sk-ant-, sk-torrix-, 20+ chars), AKIA/ASIA +
 *           16, ghp_/gho_/ghu_/ghs_/ghr_ and github_pat_ (20+), xox[baprs]-
 *           (10+), AIza + 35, and the token of "Bearer <20+ chars>" (the
 *           word "Bearer " is kept)
 *   custom  POSIX extended regexes, each with a NAME: [NAME_1]
 *
 * A match needs a boundary on both sides: no letter or digit glued to it,
 * and no token either ("a@b.co+14155552671" masks the email only; the phone
 * is glued to it); a PHONE, CARD or IBAN also not one separator away from a
 * token (in "[EMAIL_1] 555-1234" the digits may have been part of a longer
 * run that was no phone).  Where matches overlap the earliest wins, then the
 * longest; the part of a dropped value left outside the kept one is looked
 * at again (further passes over the output, built-in detectors only, at
 * most 8; their values are numbered after the first pass's).  Masking is
 * idempotent: masking the output again finds nothing with the built-in
 * detectors.
 *
 * JSON: when the text looks like JSON (after whitespace it starts with '{'
 * or '[' followed by what a value starts with, and ends with '}' or ']';
 * "[INFO] ..." does not), only the contents of strings are examined, keys
 * included; numbers, literals and structure are never touched (a card
 * number sent as a bare JSON number is not masked).  Otherwise the whole
 * text is examined.  In both cases quotes and backslash escape sequences
 * (\n, \", \u00e9) are boundaries that no match spans, and tokens contain
 * only [A-Z0-9_] and brackets, so the output of valid JSON is valid JSON
 * with the same structure.
 *
 * Custom rules run over the same segments: a match never spans a quote or
 * an escape, and '^' matches at the start of a segment (a string's start,
 * or right after an escape such as \n).
 *
 * Cost: the built-in detectors are linear in the input (per pass); custom
 * rules cost what regexec(3) costs.  A tx_pii_t is immutable once built and
 * may be shared by threads.
 */

#ifndef TX_PII_H
#define TX_PII_H


#include "tx_core.h"


#define TX_PII_EMAIL  0x01
#define TX_PII_PHONE  0x02
#define TX_PII_CARD   0x04
#define TX_PII_IBAN   0x08
#define TX_PII_SECRET 0x10
#define TX_PII_ALL    0x1f

/* kind indexes (counts[], tx_pii_kind_name): the built-ins by bit order,
   then the custom rules in the order they were added */
#define TX_PII_K_EMAIL  0
#define TX_PII_K_PHONE  1
#define TX_PII_K_CARD   2
#define TX_PII_K_IBAN   3
#define TX_PII_K_SECRET 4
#define TX_PII_K_CUSTOM 5

#define TX_PII_RULES_MAX 32
#define TX_PII_KINDS     (TX_PII_K_CUSTOM + TX_PII_RULES_MAX)
#define TX_PII_NAME_MAX  32


typedef struct tx_pii_s tx_pii_t;


typedef struct {
    uint8_t *data;                   /* malloc'd, NUL-terminated */
    size_t   len;                    /* without the NUL */
    unsigned total;                  /* values replaced, all kinds */
    unsigned found[TX_PII_KINDS];    /* values replaced, per kind */
    unsigned distinct[TX_PII_KINDS]; /* distinct values: the highest
                                          token number, per kind */
} tx_pii_result_t;


/*
 * Creates a detector set with the built-in kinds in `kinds` (TX_PII_*
 * bits; 0 for custom rules only).  *pii is allocated; release it with
 * tx_pii_free.  TX_OK or TX_ERROR (out of memory).
 */
int tx_pii_create(tx_pii_t **pii, unsigned kinds, char *err, size_t errlen);

/*
 * Adds a custom rule: `regex` is a POSIX extended regular expression
 * (regcomp(3) with REG_EXTENDED), compiled now; `name` is 1..TX_PII_NAME_MAX
 * of [A-Za-z0-9_], uppercased for the token ("employee" -> [EMPLOYEE_1]).
 * Both strings are copied.  TX_ERROR with a message when the regex does not
 * compile, the name is invalid or would itself be detected as a secret, or
 * TX_PII_RULES_MAX rules exist.  Not safe while another thread masks with
 * the same set.
 */
int tx_pii_add_rule(tx_pii_t *pii, const char *name, const char *regex,
                    char *err, size_t errlen);

/* Releases the set and its compiled rules.  NULL is ignored. */
void tx_pii_free(tx_pii_t *pii);

/* The number of kinds in use: TX_PII_K_CUSTOM + the rules added. */
int tx_pii_kinds(const tx_pii_t *pii);

/* "EMAIL", "PHONE", "CARD", "IBAN", "SECRET", or a rule's uppercased name;
   NULL for an index out of range.  Borrowed from pii. */
const char *tx_pii_kind_name(const tx_pii_t *pii, int kind);

/*
 * Masks len bytes of `in` (not modified, need not be NUL-terminated).  On
 * TX_OK res->data is a malloc'd copy with the tokens in place (an unchanged
 * copy when nothing was found) and res counts what was replaced; the caller
 * releases it with tx_pii_result_free.  TX_ERROR (out of memory, a regexec
 * failure) leaves res->data NULL.
 */
int tx_pii_mask(const tx_pii_t *pii, const uint8_t *in, size_t len,
                tx_pii_result_t *res, char *err, size_t errlen);

/* Frees res->data and clears it; safe to call twice. */
void tx_pii_result_free(tx_pii_result_t *res);


#endif /* TX_PII_H */

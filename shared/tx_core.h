/*
 * Torrix shared library: common types and return codes.
 *
 * Everything in shared/ is plain C99 + POSIX: no nginx types, no global
 * state, no allocation unless a function says so.  Functions return TX_OK on
 * success and a negative TX_* code otherwise; where a caller needs the reason,
 * it passes a buffer (char *err, size_t errlen) that receives a NUL-terminated
 * message.
 */

#ifndef TX_CORE_H
#define TX_CORE_H


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


#define TX_OK       0
#define TX_ERROR    -1
#define TX_AGAIN    -2 /* nothing yet: try again later */
#define TX_DONE     -3 /* end reached (sealed file, end of list) */
#define TX_DECLINED -5 /* not applicable / not found */


/*
 * A small function on a per-token path, inlined into its callers even where
 * the compiler would split it (a call per key of a response cost ~15
 * instructions more than the work); plain inline elsewhere.
 */
#if defined(__GNUC__)
#define TX_HOT_INLINE inline __attribute__((always_inline))
#else
#define TX_HOT_INLINE inline
#endif


/* A borrowed byte string: never owns its bytes, never NUL-terminated. */
typedef struct {
    size_t         len;
    const uint8_t *data;
} tx_str_t;


#define tx_str_eq(s, lit)                                                      \
    ((s)->len == sizeof(lit) - 1                                               \
     && memcmp((s)->data, lit, sizeof(lit) - 1) == 0)


/*
 * Money: int64 micro-cents, i.e. 1e-8 USD ("microcent precision").
 * INT64_MAX is about 92 billion USD.  Never a double.
 */
typedef int64_t tx_money_t;

#define TX_MONEY_PER_USD 100000000LL


/*
 * Formats a money amount as a decimal USD string with 8 decimals, trailing
 * zeros trimmed to at least 2 ("12.50", "0.00000125").  buf must hold 32
 * bytes.  Returns buf.
 */
char *tx_money_format(tx_money_t m, char *buf, size_t len);

/*
 * Parses a decimal USD amount ("12", "12.5", "0.00000001", "-3") exactly,
 * with at most 8 decimals.  Returns TX_OK or TX_ERROR (syntax, too many
 * decimals, overflow).  The syntax is that of a JSON number, so an exponent
 * is accepted ("1e-05", as Python's json writes 0.00001); "decimals" means
 * significant ones: "0.100000000" is 0.1, "1.123456789" is an error.  No
 * whitespace, no leading '+', no ".5" or "5.".
 */
int tx_money_parse(const char *s, size_t len, tx_money_t *out);


/*
 * Decodes len hex characters (upper or lower case; len even) into len / 2
 * bytes at out.  TX_OK, or TX_ERROR on an odd length or a non-hex character
 * (out may then be partly written).
 */
int tx_unhex(const char *s, size_t len, uint8_t *out);

/*
 * Parses an optional decimal exponent ("e-05", "E+3") at s[*i] up to len,
 * advancing *i; the value is capped at +-cap.  TX_OK (no exponent: *exp = 0)
 * or TX_ERROR (an 'e' without digits).
 */
int tx_decimal_exponent(const char *s, size_t len, size_t *i, int64_t cap,
                        int64_t *exp);


#endif /* TX_CORE_H */

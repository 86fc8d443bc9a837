/*
 * Torrix pricing: per-model prices and the cost of a run, in integer money
 * (tx_core.h: micro-cents, 1e-8 USD).
 *
 * Prices are stored per million tokens, in money units: $2.50 per 1M input
 * tokens is 250000000.  A LiteLLM per-token price p (USD) converts exactly
 * as llround(p * 1e14) for every price with at most 14 decimals.
 *
 * Cost of a run (tx_price_cost):
 *
 *   uncached  = input - cache_read - cache_write      (never below 0)
 *   sum       = uncached    * in
 *             + cache_read  * (cache_read_price  or in when unset)
 *             + cache_write * (cache_write_price or in when unset)
 *             + output      * out
 *   cost      = (sum + 500000) / 1000000              (round half up, once)
 *
 * Reasoning tokens are part of output and priced as output.  When the
 * model has a tier (tier_threshold > 0) and input > tier_threshold, the
 * *_above prices replace the base prices for the whole request (LiteLLM's
 * "*_above_200k_tokens" semantics); an unset cache price above the tier
 * falls back to in_above, as the base one falls back to in.  `input` is the
 * normalised input of tx_usage.h (cached tokens included).  The sum is
 * computed in 128 bits; a model with `free` set costs 0.
 *
 * In the snapshot (database "prices", key = model name) a price is a TLV
 * record with the TX_PRICE_* tags below; a model with TX_PRICE_FREE costs 0
 * (Ollama, self-hosted).
 */

#ifndef TX_PRICE_H
#define TX_PRICE_H


#include "tx_core.h"
#include "tx_record.h"


#define TX_PRICE_IN                1  /* i64 money per 1M input tokens */
#define TX_PRICE_OUT               2  /* i64 per 1M output tokens */
#define TX_PRICE_CACHE_READ        3  /* i64, absent: = IN */
#define TX_PRICE_CACHE_WRITE       4  /* i64, absent: = IN */
#define TX_PRICE_TIER              5  /* u64 input tokens threshold, 0 none */
#define TX_PRICE_IN_ABOVE          6  /* i64 */
#define TX_PRICE_OUT_ABOVE         7  /* i64 */
#define TX_PRICE_CACHE_READ_ABOVE  8  /* i64 */
#define TX_PRICE_CACHE_WRITE_ABOVE 9  /* i64 */
#define TX_PRICE_PROVIDER          10 /* str: "openai", "anthropic", ... */
#define TX_PRICE_FREE              11 /* u64 1: zero cost */
#define TX_PRICE_SOURCE            12 /* u64 TX_PRICE_SRC_* */

#define TX_PRICE_SRC_DEFAULT 1 /* the table shipped with Torrix */
#define TX_PRICE_SRC_CATALOG 2 /* imported LiteLLM catalog */
#define TX_PRICE_SRC_CUSTOM  3 /* set through the API: wins */


typedef struct {
    tx_money_t in;
    tx_money_t out;
    tx_money_t cache_read;  /* -1: unset */
    tx_money_t cache_write; /* -1: unset */
    uint64_t   tier;
    tx_money_t in_above;
    tx_money_t out_above;
    tx_money_t cache_read_above;  /* -1: unset */
    tx_money_t cache_write_above; /* -1: unset */
    tx_str_t   provider;
    int        free;
    uint64_t   source;
} tx_price_t;


/* Decodes a price record; missing fields 0 (cache prices -1).  TX_OK/ERROR */
int tx_price_decode(const void *val, size_t len, tx_price_t *p);

/* Encodes a price record into wb (unset cache prices are left out). */
void tx_price_encode(tx_wbuf_t *wb, const tx_price_t *p);

/*
 * The cost of a run with these token counts (see the formula above).
 * Returns TX_OK, or TX_ERROR when the result would overflow int64 or a price
 * in use is negative (other than -1, "unset", for cache prices).
 */
int tx_price_cost(const tx_price_t *p, uint64_t input, uint64_t output,
                  uint64_t cache_read, uint64_t cache_write, tx_money_t *cost);

/*
 * Converts a per-token USD price written as a decimal string ("2.5e-06",
 * "0.0000025", "0") exactly into money per 1M tokens, i.e. value * 1e14,
 * without floating point.  JSON number syntax; a price below the unit (more
 * than 14 decimals, "1.234e-15") is rounded half up to a whole unit, so
 * "5e-15" is 1 and "4.9e-15" is 0.  TX_ERROR for a negative price, bad
 * syntax, trailing bytes or a result above INT64_MAX.
 */
int tx_price_from_per_token(const char *s, size_t len, tx_money_t *out);


#endif /* TX_PRICE_H */

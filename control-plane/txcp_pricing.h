/*
 * torrix-cp pricing catalog: per-model prices in the store ("prices"
 * database), merged from three layers and published to the snapshot
 * "prices" database as tx_price.h TLV records.
 *
 * Store record (JSON, key = model name, 1..127 bytes):
 *
 *   {"model":"gpt-4o", "default":{layer}, "catalog":{layer},
 *    "custom":{layer}, "updated_at":"..."}
 *
 * Each layer is optional.  A layer holds the API fields below (money as
 * strings of int64 micro-cents per 1M tokens, like every TXCP_F_MONEY):
 * input_per_mtok_usd, output_per_mtok_usd, cache_read_per_mtok_usd,
 * cache_write_per_mtok_usd (absent: priced as input), tier_threshold,
 * input_above_per_mtok_usd, output_above_per_mtok_usd,
 * cache_read_above_per_mtok_usd, cache_write_above_per_mtok_usd, provider,
 * free.
 *
 * Precedence: the effective price of a model is its highest layer as a
 * whole, custom > catalog > default (layers are not mixed field by field, so
 * a custom price never inherits a stale catalog cache price).  Models named
 * "ollama/..." and layers of provider "ollama" are free.
 *
 *   default   the table compiled into torrix-cp (txcp_prices_default.c),
 *             re-synced at every start
 *   catalog   imported LiteLLM model_prices_and_context_window.json
 *   custom    PUT /api/v1/pricing/{model}
 */

#ifndef TXCP_PRICING_H
#define TXCP_PRICING_H


#include "tx_price.h"

#include "txcp.h"
#include "txcp_http.h"


#define TXCP_MODEL_MAX 127


/* One entry of the shipped default table (USD per 1M tokens, x 1e8). */
typedef struct {
    const char *model;
    const char *provider;
    tx_money_t  in;
    tx_money_t  out;
    tx_money_t  cache_read;  /* -1: none */
    tx_money_t  cache_write; /* -1: none */
    uint64_t    tier;        /* 0: none */
    tx_money_t  in_above;
    tx_money_t  out_above;
    tx_money_t  cache_read_above;  /* -1: none */
    tx_money_t  cache_write_above; /* -1: none */
} txcp_price_default_t;


/* The shipped table, terminated by a NULL model. */
extern const txcp_price_default_t txcp_prices_default[];


/*
 * Brings the "default" layer of every store record in line with the
 * shipped table, in one store txn (audited as "system" when anything
 * changed).  Called at start before the snapshot resync.  TX_OK/TX_ERROR.
 */
int txcp_pricing_init(void);

/*
 * The effective price of a store record (JSON tree) of model `model`.
 * Returns TX_OK with *p filled (p->provider borrows from rec), TX_DECLINED
 * when the record has no layer.
 */
int txcp_pricing_effective(const cJSON *rec, const char *model, tx_price_t *p,
                           const char **source);

/*
 * Imports a LiteLLM catalog (JSON text of len bytes) into the catalog layer
 * in one store txn audited as `actor`, then publishes the changed models.
 * Returns TX_OK with *out = {"imported":N,"skipped":M,"errors":[...]} (the
 * caller owns it), TX_DECLINED with a message in err for a body that is not
 * a JSON object, TX_ERROR on a store failure.
 */
int txcp_pricing_import(const char *text, size_t len, const char *actor,
                        cJSON **out, char *err, size_t errlen);

/* torrix-cp pricing import FILE --data DIR: exit status. */
int txcp_pricing_cli(int argc, char **argv);

/* /api/v1/pricing handlers */
void txcp_api_pricing_list(txcp_req_t *r);
void txcp_api_pricing_get(txcp_req_t *r);
void txcp_api_pricing_put(txcp_req_t *r);
void txcp_api_pricing_delete(txcp_req_t *r);
void txcp_api_pricing_import(txcp_req_t *r);


#endif /* TXCP_PRICING_H */

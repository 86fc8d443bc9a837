/*
 * torrix-cp routing: model router rules, fallback chains, the routing
 * strategy, agent configurations and the available-models list.
 *
 * Store records (cJSON, txcp_store.h):
 *   routes     "rt_..." -> {"id","org_id"|null,"pattern","target",
 *                           "created_at","updated_at"}
 *   fallbacks  primary model -> {"model","chain":[...],"weights":[...]|null,
 *                                "created_at","updated_at"}
 *   agents     agent id -> {"agent_id","name","role","normal","heavy","max",
 *                           "created_at","updated_at"}
 *
 * Each is published to the snapshot db of the same name (tx_snapshot.h
 * TX_RT_*, TX_FB_*, TX_AG_*) by the functions below, which txcp_publish.c
 * calls for TXCP_PUB_ROUTE / _FALLBACK / _AGENT items and at resync.
 */

#ifndef TXCP_ROUTING_H
#define TXCP_ROUTING_H


#include "txcp.h"
#include "txcp_http.h"


/*
 * Publishers: read the record `id` from the committed store (rtxn) and put
 * it into the snapshot write txn, or delete it there when the store has
 * none.  Return an LMDB rc, 0 on success.
 */
int txcp_pub_route(MDB_txn *rtxn, MDB_txn *txn, const char *id);
int txcp_pub_fallback(MDB_txn *rtxn, MDB_txn *txn, const char *model);
int txcp_pub_agent(MDB_txn *rtxn, MDB_txn *txn, const char *id);

/*
 * Returns 1 when the instance can route `model`: it has a price in the
 * catalog, or carries the prefix of a configured provider ("anthropic/...",
 * "ollama/...", a compat provider's name), or is the exact pattern of a
 * router rule or the primary of a fallback chain; else 0.
 */
int txcp_model_known(MDB_txn *txn, const char *model);

/* txcp_routes.c: /api/v1/routes, /api/v1/fallbacks, /api/v1/models */
void txcp_api_routes_create(txcp_req_t *r);
void txcp_api_routes_list(txcp_req_t *r);
void txcp_api_routes_get(txcp_req_t *r);
void txcp_api_routes_patch(txcp_req_t *r);
void txcp_api_routes_delete(txcp_req_t *r);
void txcp_api_fallbacks_list(txcp_req_t *r);
void txcp_api_fallbacks_get(txcp_req_t *r);
void txcp_api_fallbacks_put(txcp_req_t *r);
void txcp_api_fallbacks_delete(txcp_req_t *r);
void txcp_api_models(txcp_req_t *r);

/* txcp_agents.c: /api/v1/agents, `torrix-cp agents import|export` */
void txcp_api_agents_list(txcp_req_t *r);
void txcp_api_agents_get(txcp_req_t *r);
void txcp_api_agents_delete(txcp_req_t *r);
void txcp_api_agents_import(txcp_req_t *r);
void txcp_api_agents_export(txcp_req_t *r);
int  txcp_agents_cli(int argc, char **argv);

/*
 * Parses a model_config.yaml (text, len bytes, not necessarily
 * NUL-terminated) as an import would, without the store (so no check of
 * duplicate ids or unknown models), and frees everything.  Returns TX_OK,
 * or TX_ERROR with "line N: ..." in err (errlen > 0 bytes, always
 * NUL-terminated; "out of memory" when that was the cause).  For the fuzzer.
 */
int txcp_agents_parse_text(const char *text, size_t len, char *err,
                           size_t errlen);

/* txcp_vault.c: /api/v1/vault */
void txcp_api_vault_get(txcp_req_t *r);
void txcp_api_vault_rotate(txcp_req_t *r);


#endif /* TXCP_ROUTING_H */

/*
 * torrix-cp model router rules, fallback chains, available models
 * (see txcp_routing.h).  STUB: being written.
 */

#include "txcp.h"
#include "txcp_routing.h"
#include "txcp_store.h"

int txcp_pub_route(MDB_txn *rtxn, MDB_txn *txn, const char *id) { return 0; }
int txcp_pub_fallback(MDB_txn *rtxn, MDB_txn *txn, const char *m) { return 0; }
int txcp_model_known(MDB_txn *txn, const char *model) { return 1; }
void txcp_api_routes_create(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_routes_list(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_routes_get(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_routes_patch(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_routes_delete(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_fallbacks_list(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_fallbacks_get(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_fallbacks_put(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_fallbacks_delete(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_models(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }

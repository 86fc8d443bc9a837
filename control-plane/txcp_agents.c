/*
 * torrix-cp agent configurations (see txcp_routing.h).  STUB: being written.
 */

#include "txcp.h"
#include "txcp_routing.h"
#include "txcp_store.h"

int txcp_pub_agent(MDB_txn *rtxn, MDB_txn *txn, const char *id) { return 0; }
void txcp_api_agents_list(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_agents_get(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_agents_delete(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_agents_import(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_agents_export(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
int txcp_agents_cli(int argc, char **argv) { return 2; }

/*
 * torrix-cp credential vault (see txcp_vault.h).  STUB: being written.
 */

#include "txcp.h"
#include "txcp_routing.h"

void txcp_api_vault_get(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }
void txcp_api_vault_rotate(txcp_req_t *r) { txcp_http_error(r, 501, "not yet"); }

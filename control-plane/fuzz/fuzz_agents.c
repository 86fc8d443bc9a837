/*
 * libFuzzer: the agents importer's model_config.yaml parser (libyaml and the
 * checks of txcp_agents.c), without the store.
 *
 * The input is parsed twice, with a roomy and with a tiny error buffer: the
 * results must agree, a refusal must carry "line N" with N within the text.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txcp.h"
#include "txcp_routing.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* txcp_main.c, not linked here, defines the daemon's state */
txcp_t txcp;


#define TX_FUZZ_ERR_LEN   256
#define TX_FUZZ_SMALL_LEN 7


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                rc, rc2;
    char              *text, *err, *small;
    size_t             line;
    unsigned long long n;

    text = malloc(size ? size : 1);
    err = malloc(TX_FUZZ_ERR_LEN);
    small = malloc(TX_FUZZ_SMALL_LEN);

    if (text == NULL || err == NULL || small == NULL) {
        abort();
    }

    /* an exact-size copy, not NUL-terminated: ASan sees a read past it */
    memcpy(text, data, size);

    rc = txcp_agents_parse_text(text, size, err, TX_FUZZ_ERR_LEN);

    if (memchr(err, '\0', TX_FUZZ_ERR_LEN) == NULL) {
        abort();
    }

    if (rc == TX_OK) {
        if (err[0] != '\0') {
            abort();
        }

    } else if (rc == TX_ERROR) {
        if (strcmp(err, "out of memory") != 0) {
            if (sscanf(err, "line %llu", &n) != 1) {
                abort();
            }

            line = (size_t) n;

            if (line == 0 || line > size + 1) {
                abort();
            }
        }

    } else {
        abort();
    }

    rc2 = txcp_agents_parse_text(text, size, small, TX_FUZZ_SMALL_LEN);

    if (rc2 != rc || memchr(small, '\0', TX_FUZZ_SMALL_LEN) == NULL
        || strncmp(small, err, TX_FUZZ_SMALL_LEN - 1) != 0)
    {
        abort();
    }

    free(small);
    free(err);
    free(text);

    return 0;
}

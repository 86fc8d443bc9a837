/*
 * libFuzzer: URL parsing and the allowlist.  The input is split at the first
 * NUL: a target URL, then a pattern list (the default list when absent).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tx_url.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
tx_fuzz_in(const tx_str_t *s, const uint8_t *base, size_t size)
{
    if (s->len && (s->data < base || s->data + s->len > base + size)) {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t         ulen;
    uint8_t       *copy;
    tx_str_t       pats;
    tx_url_t       u;
    const uint8_t *nul;

    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);

    nul = memchr(copy, '\0', size);
    ulen = nul ? (size_t) (nul - copy) : size;

    if (nul) {
        pats.data = nul + 1;
        pats.len = size - ulen - 1;

    } else {
        pats.data = (const uint8_t *) tx_url_default_targets;
        pats.len = strlen(tx_url_default_targets);
    }

    if (tx_url_parse(copy, ulen, &u) == TX_OK) {
        tx_fuzz_in(&u.host, copy, ulen);
        tx_fuzz_in(&u.path, copy, ulen);
        tx_fuzz_in(&u.query, copy, ulen);
        tx_fuzz_in(&u.hostport, copy, ulen);

        if (u.host.len == 0 || u.port == 0
            || memchr(u.host.data, '@', u.host.len) != NULL)
        {
            abort();
        }

        (void) tx_url_allowed(&u, &pats);
    }

    /* every pattern line is also parsed as a URL */
    (void) tx_url_parse(pats.data, pats.len, &u);

    free(copy);

    return 0;
}

/*
 * libFuzzer: reading a spool file from arbitrary bytes, then a write/read
 * round trip of the frames found.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tx_record.h"
#include "tx_spool.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            rc, n;
    size_t         off, prev, len, woff, cap;
    uint8_t       *copy, *out;
    uint16_t       tag;
    tx_str_t       v;
    tx_rec_iter_t  it;
    const uint8_t *pl;

    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);
    (void) tx_spool_hdr_check(copy, size);

    cap = 2 * size + 4096;
    out = calloc(1, cap);
    if (out == NULL) {
        free(copy);
        return 0;
    }

    tx_spool_hdr_init(out, 1, 2, cap);
    woff = TX_SPOOL_HDR_LEN;
    off = TX_SPOOL_HDR_LEN;
    n = 0;

    for (;;) {
        prev = off;
        rc = tx_spool_read(copy, size, &off, &pl, &len);

        if (rc == TX_OK) {
            if (off <= prev || off > size || pl < copy
                || pl + len > copy + size) {
                abort();
            }

            tx_rec_iter_init(&it, pl, len);

            while (tx_rec_next(&it, &tag, &v) == TX_OK) {
                /* void */
            }

            if (tx_spool_append(out, cap, &woff, pl, len) != TX_OK) {
                abort();
            }

            n++;
            continue;
        }

        if (rc == TX_ERROR && off != prev) {
            if (off <= prev || off > size) {
                abort();
            }

            continue;
        }

        break;
    }

    tx_spool_seal(out, cap, woff);

    /* what was copied reads back identically, then sealed */
    off = TX_SPOOL_HDR_LEN;

    while (n-- > 0) {
        if (tx_spool_read(out, cap, &off, &pl, &len) != TX_OK) {
            abort();
        }
    }

    if (tx_spool_read(out, cap, &off, &pl, &len) != TX_DONE) {
        abort();
    }

    free(out);
    free(copy);

    return 0;
}

/*
 * libFuzzer: the JSON request scanner and the model string decoder.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tx_json.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
tx_fuzz_span(const uint8_t *data, size_t size, const tx_json_span_t *sp)
{
    if (sp->off < 0) {
        return;
    }

    if ((size_t) sp->off > size || sp->len > size - (size_t) sp->off
        || sp->len == 0)
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char          err[64];
    uint8_t      *copy, out[256];
    ssize_t       n;
    tx_json_req_t req;

    /* an exact-size heap copy, so ASan sees any read past the end */
    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);

    if (tx_json_scan_request(copy, size, &req, err, sizeof(err)) == TX_OK) {
        tx_fuzz_span(copy, size, &req.model);
        tx_fuzz_span(copy, size, &req.stream);
        tx_fuzz_span(copy, size, &req.max_tokens);
        tx_fuzz_span(copy, size, &req.max_completion_tokens);
        tx_fuzz_span(copy, size, &req.max_output_tokens);
        tx_fuzz_span(copy, size, &req.stream_options);
        tx_fuzz_span(copy, size, &req.include_usage);

        if (req.include_usage.off >= 0 && req.stream_options.off < 0) {
            abort();
        }

        if (req.model_is_string) {
            n = tx_json_unescape(copy + req.model.off, req.model.len, out,
                                 sizeof(out));

            /* a scanned string without escapes decodes to its bytes */
            if (!req.model_has_escape && req.model.len - 2 <= sizeof(out)
                && (n != (ssize_t) req.model.len - 2
                    || memcmp(out, copy + req.model.off + 1, (size_t) n)))
            {
                abort();
            }
        }

    } else if (err[0] == '\0') {
        abort();
    }

    /* the decoder on its own, on arbitrary bytes */
    (void) tx_json_unescape(copy, size, out, sizeof(out));

    free(copy);

    return 0;
}

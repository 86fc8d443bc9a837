/*
 * libFuzzer: the usage meter, JSON and SSE.
 *
 * Input: byte 0 picks the format (bit 0), bytes 1..4 two split points, the
 * rest is the response.  The response is fed whole, then in three parts at
 * the split points, then a byte at a time; usage, events and their offsets
 * must be the same.  Fed whole, a response (or an SSE data line) takes the
 * meter's fast path for a value whole in one buffer; a byte at a time, it
 * never does: the two paths are compared on every input.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tx_usage.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


typedef struct {
    tx_usage_t u;
    int        failed;
    size_t     nev;
    uint64_t   evsum;
} tx_fuzz_run_t;


static void
tx_fuzz_feed(int format, const uint8_t *p, size_t len, size_t c1, size_t c2,
             size_t step, tx_fuzz_run_t *r)
{
    int        ev;
    size_t     pos, end, n, k, want, cuts[3];
    tx_meter_t m;

    memset(r, 0, sizeof(tx_fuzz_run_t));
    tx_meter_init(&m, format, TX_METER_OPENAI);

    cuts[0] = c1;
    cuts[1] = c2;
    cuts[2] = len;
    pos = 0;

    for (k = 0; k < 3; k++) {
        end = cuts[k];

        while (pos < end) {
            n = end - pos;

            if (step && n > step) {
                n = step;
            }

            want = n;
            n = tx_meter_feed(&m, p + pos, want, &ev);

            if (n == 0 || n > want) {
                abort();
            }

            pos += n;

            if (ev != TX_METER_EV_NONE) {
                if (format != TX_METER_SSE || ev < TX_METER_EV_END
                    || ev > TX_METER_EV_DONE) {
                    abort();
                }

                r->nev++;
                r->evsum = r->evsum * 31 + pos * 4 + (uint64_t) ev;

            } else if (n != want) {
                /* only the end of an event stops a feed short */
                abort();
            }
        }
    }

    tx_meter_result(&m, &r->u);
    r->failed = m.failed;

    if (r->u.model_len >= TX_METER_MODEL_MAX
        || r->u.model[r->u.model_len] != '\0') {
        abort();
    }

    if (format == TX_METER_SSE && m.failed) {
        abort();
    }
}


static void
tx_fuzz_same(const tx_fuzz_run_t *a, const tx_fuzz_run_t *b)
{
    if (a->u.input != b->u.input || a->u.output != b->u.output
        || a->u.cache_read != b->u.cache_read
        || a->u.cache_write != b->u.cache_write
        || a->u.reasoning != b->u.reasoning || a->u.out_chars != b->u.out_chars
        || a->u.has_usage != b->u.has_usage || a->u.model_len != b->u.model_len
        || memcmp(a->u.model, b->u.model, a->u.model_len) != 0
        || a->failed != b->failed || a->nev != b->nev || a->evsum != b->evsum)
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int           format;
    size_t        len, c1, c2, t;
    uint8_t      *copy;
    tx_fuzz_run_t a, b;

    if (size < 5) {
        return 0;
    }

    format = (data[0] & 1) ? TX_METER_SSE : TX_METER_JSON;
    len = size - 5;

    /* an exact-size heap copy, so ASan sees any read past the end */
    copy = malloc(len ? len : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data + 5, len);

    c1 = (size_t) (data[1] | data[2] << 8) % (len + 1);
    c2 = (size_t) (data[3] | data[4] << 8) % (len + 1);

    if (c1 > c2) {
        t = c1;
        c1 = c2;
        c2 = t;
    }

    tx_fuzz_feed(format, copy, len, len, len, 0, &a);
    tx_fuzz_feed(format, copy, len, c1, c2, 0, &b);
    tx_fuzz_same(&a, &b);

    tx_fuzz_feed(format, copy, len, len, len, 1, &b);
    tx_fuzz_same(&a, &b);

    free(copy);

    return 0;
}

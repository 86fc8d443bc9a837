/*
 * bench_meter: the usage meter's cost per response (a benchmark, not a
 * test: it prints figures and asserts only that the meter read the usage).
 *
 *   bench_meter
 *
 * Meters, in a loop on one CPU, (1) bench.py's ~400-byte chat.completion
 * JSON response, fed whole as the gateway gets it, and (2) an OpenAI stream
 * of 200 content chunks (~230 bytes each) and a usage chunk, fed whole, and
 * prints the nanoseconds per response and per SSE event.
 *
 * Build (from the repository root, after make):
 *   cc -O2 -D_GNU_SOURCE -Ishared -o build/bench_meter bench/bench_meter.c \
 *      build/libtxshared.a
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tx_usage.h"


#define BENCH_CHUNKS 200


static const char bench_json[] =
    "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1,"
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,"
    "\"finish_reason\":\"stop\",\"message\":{\"role\":\"assistant\","
    "\"content\":\"Benchmarks are measured, not guessed.\"}}],\"usage\":{"
    "\"prompt_tokens\":250,\"completion_tokens\":12,\"total_tokens\":262,"
    "\"prompt_tokens_details\":{\"cached_tokens\":0},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}";


/* n times the response at p metered whole: the seconds it took */
static double
bench_run(int format, const char *p, size_t len, int n, tx_usage_t *u)
{
    int             i, ev;
    size_t          pos;
    tx_meter_t      m;
    struct timespec t0, t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (i = 0; i < n; i++) {
        tx_meter_init(&m, format, TX_METER_OPENAI);

        for (pos = 0; pos < len; /* void */) {
            pos += tx_meter_feed(&m, (const uint8_t *) p + pos, len - pos, &ev);
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);
    tx_meter_result(&m, u);

    return (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
}


int
main(void)
{
    int        i, n;
    char      *sse;
    size_t     len, jlen;
    double     t;
    tx_usage_t u;

    sse = malloc(BENCH_CHUNKS * 300 + 1024);
    if (sse == NULL) {
        return 1;
    }

    len = 0;

    for (i = 0; i < BENCH_CHUNKS; i++) {
        len += (size_t) sprintf(
            sse + len,
            "data: {\"id\":\"chatcmpl-AbC123\",\"object\":"
            "\"chat.completion.chunk\",\"created\":1741570283,\"model\":"
            "\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":"
            "\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":"
            "{\"content\":\" word%d\"},\"logprobs\":null,\"finish_reason\":"
            "null}]}\n\n",
            i);
    }

    len += (size_t)
        sprintf(sse + len,
                "data: {\"id\":\"chatcmpl-AbC123\",\"object\":"
                "\"chat.completion.chunk\",\"created\":1741570283,\"model\":"
                "\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{"
                "\"prompt_tokens\":250,\"completion_tokens\":200,"
                "\"total_tokens\":450}}\n\ndata: [DONE]\n\n");

    jlen = strlen(bench_json);
    n = 400000;
    t = bench_run(TX_METER_JSON, bench_json, jlen, n, &u);

    if (u.input != 250 || u.output != 12) {
        fprintf(stderr, "JSON: usage not read\n");
        return 1;
    }

    printf("JSON response (%zu bytes): %.0f ns\n", jlen, t * 1e9 / n);

    n = 2000;
    t = bench_run(TX_METER_SSE, sse, len, n, &u);

    if (u.input != 250 || u.output != 200) {
        fprintf(stderr, "SSE: usage not read\n");
        return 1;
    }

    printf("SSE stream (%d events, %zu bytes): %.0f ns per event\n",
           BENCH_CHUNKS + 2, len, t * 1e9 / n / (BENCH_CHUNKS + 2));

    free(sse);

    return 0;
}

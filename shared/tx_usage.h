/*
 * Torrix usage metering: an incremental parser of provider responses that
 * finds token usage in JSON bodies and SSE streams of OpenAI (chat
 * completions, completions, embeddings, responses), Anthropic (messages) and
 * OpenAI-compatible servers (Ollama), fed buffer by buffer as they pass
 * through nginx.
 *
 * It never buffers the response: a push JSON tokenizer keeps its state (a
 * key path stack, the partial token) across chunk boundaries, so feeding a
 * response split at any byte gives the same result as feeding it whole.  Its
 * memory is the fixed-size tx_meter_t, embeddable in a request context; no
 * allocation.
 *
 * What it extracts (last occurrence wins: Anthropic's message_delta usage is
 * cumulative, so the last one is the total):
 *
 *   path (any prefix, e.g. "response." or "message.")    -> field
 *   usage.prompt_tokens | usage.input_tokens              -> input
 *   usage.completion_tokens | usage.output_tokens         -> output
 *   usage.prompt_tokens_details.cached_tokens
 *   | usage.input_tokens_details.cached_tokens
 *   | usage.cache_read_input_tokens                       -> cache_read
 *   usage.cache_creation_input_tokens                     -> cache_write
 *   usage.completion_tokens_details.reasoning_tokens
 *   | usage.output_tokens_details.reasoning_tokens        -> reasoning
 *   model at the top level, message.model, response.model -> model
 *   choices[].delta.content, choices[].text (streams),
 *   delta.text, delta.thinking, delta.partial_json        -> out_chars
 *     (decoded characters delivered, to estimate output tokens of a stream
 *     cut before its usage frame)
 *
 * Normalisation (tx_meter_result): `input` counts every input token, cached
 * ones included.  OpenAI's prompt_tokens already include cached tokens;
 * Anthropic's input_tokens exclude cache reads and writes, so those are added.
 */

#ifndef TX_USAGE_H
#define TX_USAGE_H


#include "tx_core.h"


#define TX_METER_JSON        1   /* one JSON document (the whole body) */
#define TX_METER_SSE         2   /* text/event-stream */

#define TX_METER_OPENAI      1   /* OpenAI and OpenAI-compatible shapes */
#define TX_METER_ANTHROPIC   2

#define TX_METER_DEPTH       12  /* key path levels tracked */
#define TX_METER_KEY_MAX     48  /* longer keys are tracked as "unknown" */
#define TX_METER_MODEL_MAX   128

/* events reported by tx_meter_feed (SSE only) */
#define TX_METER_EV_NONE        0
#define TX_METER_EV_END         1  /* the byte consumed last ended an event */
#define TX_METER_EV_END_USAGE   2  /* ... and that event was a usage-only
                                      chunk: OpenAI "choices":[] + "usage" */
#define TX_METER_EV_DONE        3  /* ... and that event was "data: [DONE]" */


typedef struct {
    uint64_t  input;        /* all input tokens, cached included */
    uint64_t  output;       /* output tokens, reasoning included */
    uint64_t  cache_read;
    uint64_t  cache_write;
    uint64_t  reasoning;
    uint64_t  out_chars;    /* delivered output characters (streams) */
    int       has_usage;    /* a usage object with token counts was seen */
    size_t    model_len;
    char      model[TX_METER_MODEL_MAX];
} tx_usage_t;


/*
 * Parser state.  Treat as opaque; it is a plain struct so callers can embed
 * it (sizeof is a few hundred bytes).  Fields are the implementation's.
 */
typedef struct {
    int        format;
    int        provider;
    int        failed;                /* gave up: not JSON / not SSE */

    /* SSE framing */
    int        sse_state;
    int        sse_field;             /* which field the current line is */
    size_t     sse_name_len;
    char       sse_name[16];
    int        ev_has_data;
    int        ev_choices_empty;
    int        ev_has_usage;
    int        ev_done;
    size_t     done_match;

    /* JSON tokenizer */
    int        depth;
    int        state;
    int        in_string;
    int        escape;
    int        uni_left;
    uint32_t   uni;
    int        str_is_key;
    int        str_target;            /* what the current string feeds */
    size_t     key_len;
    char       key[TX_METER_KEY_MAX];
    uint8_t    path[TX_METER_DEPTH];  /* interned key ids per level */
    uint8_t    is_array[TX_METER_DEPTH + 1];
    int        num_target;
    int        num_valid;
    uint64_t   num;
    int        lit_left;

    tx_usage_t u;

    /* raw values as seen, normalised by tx_meter_result */
    uint64_t   raw_prompt;            /* OpenAI-style input (incl. cached) */
    uint64_t   raw_input;             /* Anthropic/responses input_tokens */
    int        input_is_openai;
} tx_meter_t;


/* Starts a parser for one response; format TX_METER_*, provider TX_METER_*. */
void tx_meter_init(tx_meter_t *m, int format, int provider);

/*
 * Feeds up to len bytes.  Returns the number of bytes consumed: all of them,
 * except that in SSE mode it stops right after the byte that ends an event
 * (the blank line), reporting the event in *ev (may be NULL), so a caller
 * can act on event boundaries.  Malformed input never fails the call: the
 * parser stops extracting (m->failed) and keeps consuming.
 */
size_t tx_meter_feed(tx_meter_t *m, const uint8_t *p, size_t len, int *ev);

/* The usage seen so far, normalised (see above). */
void tx_meter_result(const tx_meter_t *m, tx_usage_t *out);


#endif /* TX_USAGE_H */

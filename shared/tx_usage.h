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
 *   path (prefix "", "message." or "response.")          -> field
 *   usage.prompt_tokens | usage.input_tokens              -> input
 *   usage.completion_tokens | usage.output_tokens         -> output
 *   usage.prompt_tokens_details.cached_tokens
 *   | usage.input_tokens_details.cached_tokens
 *   | usage.cache_read_input_tokens                       -> cache_read
 *   usage.cache_creation_input_tokens                     -> cache_write
 *   usage.completion_tokens_details.reasoning_tokens
 *   | usage.output_tokens_details.reasoning_tokens        -> reasoning
 *   model at the top level, message.model, response.model -> model
 *     (a string; the first non-empty one wins, later ones are ignored)
 *   choices[].delta.content, choices[].text,
 *   choices[].delta.reasoning_content, choices[].delta.reasoning,
 *   choices[].delta.tool_calls[].function.arguments,
 *   delta.text, delta.thinking, delta.partial_json,
 *   delta (a top-level string: responses API *.delta events) -> out_chars
 *     (decoded characters, i.e. code points, delivered so far: counted as
 *     the bytes pass, so a stream cut mid-string counts what was sent; used
 *     to estimate output tokens of a stream cut before its usage frame)
 *
 * Paths are anchored at the top of the document (array indices are
 * ignored): a "usage" object anywhere else, e.g. inside an Anthropic
 * tool_use input, or a "model" key inside choices, is not read.  Key names
 * are compared after unescaping.  A usage field is taken only when its value
 * is a non-negative integer that fits 64 bits (no fraction, no exponent);
 * null or anything else is ignored.
 *
 * Normalisation (tx_meter_result): `input` counts every input token, cached
 * ones included.  OpenAI's prompt_tokens (and the responses API's
 * input_tokens) already include cached tokens, reported in *_details;
 * Anthropic's input_tokens exclude cache reads and writes, so when
 * cache_read_input_tokens or cache_creation_input_tokens were seen they are
 * added (saturating).  The decision follows the shape of the usage object,
 * not the provider argument.
 *
 * SSE (WHATWG framing): lines end with LF, CRLF or CR; a leading UTF-8 BOM is
 * skipped; ":" lines are comments; "data:" and "event:" are read (one
 * optional space after the colon), other fields ignored.  The data lines of
 * one event are joined with LF and parsed as one JSON document; the JSON
 * tokenizer restarts at every event.  An event ends at a blank line that
 * follows at least one line (comment lines included); extra blank lines are
 * consumed silently.  With CRLF line ends the event ends at the CR of the
 * blank line: the LF after it is skipped as the first byte of the next
 * event's bytes, so dropping one event's byte range from a stream (the
 * usage-only chunk) keeps the rest well formed.
 *
 * Malformed JSON: in TX_METER_JSON mode m->failed is set, extraction stops
 * (values taken before the error stay) and input is still consumed.  In
 * TX_METER_SSE mode a malformed event (or a non-JSON one, such as [DONE])
 * only stops extraction for that event; m->failed stays 0 and later events
 * are metered normally.
 */

#ifndef TX_USAGE_H
#define TX_USAGE_H


#include "tx_core.h"


#define TX_METER_JSON 1 /* one JSON document (the whole body) */
#define TX_METER_SSE  2 /* text/event-stream */

#define TX_METER_OPENAI    1 /* OpenAI and OpenAI-compatible shapes */
#define TX_METER_ANTHROPIC 2

#define TX_METER_DEPTH     12 /* key path levels tracked */
#define TX_METER_KEY_MAX   48 /* longer keys are tracked as "unknown" */
#define TX_METER_MODEL_MAX 128

/* events reported by tx_meter_feed (SSE only) */
#define TX_METER_EV_NONE 0
#define TX_METER_EV_END  1 /* the byte consumed last ended an event */
#define TX_METER_EV_END_USAGE                                                  \
    2                      /* ... and that event was a usage-only
                                      chunk: OpenAI "choices":[] + "usage" */
#define TX_METER_EV_DONE 3 /* ... and that event was "data: [DONE]" */


typedef struct {
    uint64_t input;  /* all input tokens, cached included */
    uint64_t output; /* output tokens, reasoning included */
    uint64_t cache_read;
    uint64_t cache_write;
    uint64_t reasoning;
    uint64_t out_chars; /* delivered output characters (streams) */
    int      has_usage; /* a usage object with token counts was seen */
    size_t   model_len;
    char     model[TX_METER_MODEL_MAX];
} tx_usage_t;


#define TX_METER_NEST     256 /* deeper JSON nesting is malformed */
#define TX_METER_NAME_MAX 32  /* event names kept (longer truncated) */


/*
 * Parser state.  Treat as opaque; it is a plain struct so callers can embed
 * it (sizeof is under 600 bytes).  Fields are the implementation's and may
 * change; read results through the functions below.
 */
typedef struct {
    int format;
    int provider;
    int failed; /* JSON mode: gave up, not JSON */

    /* SSE framing */
    int      sse_state;
    int      sse_field; /* which field the current line is */
    int      sse_cr;    /* the last line ended with a CR */
    int      sse_reset; /* start a new event at next line */
    unsigned sse_lines; /* lines in the current event */
    unsigned sse_bom;   /* BOM bytes matched */
    size_t   sse_fname_len;
    char     sse_fname[8];
    size_t   sse_name_len;
    char     sse_name[TX_METER_NAME_MAX];
    unsigned ev_data_lines;
    int      ev_failed;  /* this event's JSON is malformed */
    int      ev_choices; /* top-level "choices": [] state */
    int      ev_usage;   /* this event had usage numbers */
    int      ev_not_done;
    size_t   done_match;

    /* JSON tokenizer */
    int      state;
    int      depth;
    int      str_kind; /* what the current string feeds */
    int      num_state;
    int      num_target;
    int      num_ok;
    int      lit;
    int      lit_pos;
    int      uni_left;
    uint32_t uni;
    uint32_t hi; /* pending high surrogate (model) */
    int      key_bad;
    size_t   key_len;
    size_t   model_pos;
    uint64_t num;
    char     key[TX_METER_KEY_MAX];
    uint8_t  path[TX_METER_DEPTH];       /* interned key ids per level */
    uint32_t arrays[TX_METER_NEST / 32]; /* 1 bit a level: array */

    tx_usage_t u; /* model, out_chars, has_usage */

    /* raw values as seen, normalised by tx_meter_result */
    uint64_t raw[8];
    unsigned raw_seen;
} tx_meter_t;


/* Starts a parser for one response; format TX_METER_*, provider TX_METER_*. */
void tx_meter_init(tx_meter_t *m, int format, int provider);

/*
 * Feeds up to len bytes.  Returns the number of bytes consumed: all of them,
 * except that in SSE mode it stops right after the byte that ends an event
 * (the blank line), reporting the event in *ev (may be NULL), so a caller
 * can act on event boundaries.  With len > 0 it consumes at least one byte.
 * Malformed input never fails the call: the parser stops extracting and
 * keeps consuming (see above).  TX_METER_EV_END_USAGE is reported only for
 * a complete, well-formed event.
 */
size_t tx_meter_feed(tx_meter_t *m, const uint8_t *p, size_t len, int *ev);

/*
 * The usage seen so far, normalised (see above).  out->model is
 * NUL-terminated.  Can be called at any time, e.g. for a stream cut midway:
 * then has_usage is 0 and out_chars counts what was delivered.
 */
void tx_meter_result(const tx_meter_t *m, tx_usage_t *out);

/*
 * SSE: the "event:" name of the event tx_meter_feed just reported (e.g.
 * "message_start", "response.completed"), truncated to TX_METER_NAME_MAX
 * bytes; empty when the event had none.  Borrowed from m, valid until the
 * next tx_meter_feed call.
 */
void tx_meter_event_name(const tx_meter_t *m, tx_str_t *name);

/*
 * 1 when the n bytes at k are a key the meter looks for ("usage",
 * "prompt_tokens", ...), else 0: the unit tests check its lookup table
 * against every key.
 */
int tx_meter_known_key(const char *k, size_t n);


#endif /* TX_USAGE_H */

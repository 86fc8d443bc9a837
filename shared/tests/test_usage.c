/*
 * Unit tests: usage metering of JSON bodies and SSE streams.
 *
 * Every golden case is fed whole, split in two at every byte, and byte by
 * byte; the usage and the events (with the offsets they end at) must be the
 * same each time.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tx_usage.h"


#define EVMAX 64


typedef struct {
    tx_usage_t u;
    int        failed;
    size_t     nev;
    int        ev[EVMAX];
    size_t     at[EVMAX];
    char       evs[EVMAX + 1]; /* one letter an event: E, U (usage), D */
} run_t;


typedef struct {
    uint64_t    input;
    uint64_t    output;
    uint64_t    cache_read;
    uint64_t    cache_write;
    uint64_t    reasoning;
    uint64_t    out_chars;
    int         has_usage;
    const char *model;
    const char *events; /* SSE only */
} want_t;


/* feeds s[0..len) in pieces ending at the cut offsets (cuts ascending) */

static void
feed_cuts(int format, const char *s, size_t len, const size_t *cuts,
          size_t ncuts, run_t *r)
{
    int            ev;
    size_t         pos, end, n, k;
    tx_meter_t     m;
    const uint8_t *p;

    memset(r, 0, sizeof(run_t));
    tx_meter_init(&m, format, TX_METER_OPENAI);

    p = (const uint8_t *) s;
    pos = 0;

    for (k = 0; k <= ncuts; k++) {
        end = k < ncuts ? cuts[k] : len;

        while (pos < end) {
            n = tx_meter_feed(&m, p + pos, end - pos, &ev);
            assert_true(n >= 1 && n <= end - pos);
            pos += n;

            if (ev != TX_METER_EV_NONE) {
                assert_true(r->nev < EVMAX);
                assert_true(format == TX_METER_SSE);
                r->ev[r->nev] = ev;
                r->at[r->nev] = pos;
                r->evs[r->nev] = ev == TX_METER_EV_END_USAGE ? 'U'
                                 : ev == TX_METER_EV_DONE    ? 'D'
                                                             : 'E';
                r->nev++;

            } else if (format == TX_METER_SSE) {
                assert_int_equal(pos, end);
            }
        }
    }

    tx_meter_result(&m, &r->u);
    r->failed = m.failed;
}


static void
assert_same(const run_t *a, const run_t *b)
{
    size_t i;

    assert_true(a->u.input == b->u.input);
    assert_true(a->u.output == b->u.output);
    assert_true(a->u.cache_read == b->u.cache_read);
    assert_true(a->u.cache_write == b->u.cache_write);
    assert_true(a->u.reasoning == b->u.reasoning);
    assert_true(a->u.out_chars == b->u.out_chars);
    assert_int_equal(a->u.has_usage, b->u.has_usage);
    assert_string_equal(a->u.model, b->u.model);
    assert_int_equal(a->failed, b->failed);
    assert_int_equal(a->nev, b->nev);

    for (i = 0; i < a->nev; i++) {
        assert_int_equal(a->ev[i], b->ev[i]);
        assert_int_equal(a->at[i], b->at[i]);
    }
}


static void
assert_want(const run_t *r, const want_t *w)
{
    assert_int_equal(r->u.input, w->input);
    assert_int_equal(r->u.output, w->output);
    assert_int_equal(r->u.cache_read, w->cache_read);
    assert_int_equal(r->u.cache_write, w->cache_write);
    assert_int_equal(r->u.reasoning, w->reasoning);
    assert_int_equal(r->u.out_chars, w->out_chars);
    assert_int_equal(r->u.has_usage, w->has_usage);
    assert_string_equal(r->u.model, w->model);
    assert_int_equal(r->u.model_len, strlen(w->model));
    assert_int_equal(r->failed, 0);

    if (w->events) {
        assert_string_equal(r->evs, w->events);
    }
}


/* whole, every two-part split, byte by byte: the same result */

static void
golden(int format, const char *s, const want_t *w)
{
    size_t len, i, *cuts;
    run_t  whole, part;

    len = strlen(s);

    feed_cuts(format, s, len, NULL, 0, &whole);
    assert_want(&whole, w);

    for (i = 1; i < len; i++) {
        feed_cuts(format, s, len, &i, 1, &part);
        assert_same(&whole, &part);
    }

    cuts = malloc(len * sizeof(size_t));
    assert_non_null(cuts);

    for (i = 0; i + 1 < len; i++) {
        cuts[i] = i + 1;
    }

    feed_cuts(format, s, len, cuts, len ? len - 1 : 0, &part);
    assert_same(&whole, &part);

    free(cuts);
}


static void
run(int format, const char *s, run_t *r)
{
    feed_cuts(format, s, strlen(s), NULL, 0, r);
}


/* golden cases from provider wire formats */

static const char openai_chat_json[] =
    "{\n"
    "  \"id\": \"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\n"
    "  \"object\": \"chat.completion\",\n"
    "  \"created\": 1741570283,\n"
    "  \"model\": \"o3-mini-2025-01-31\",\n"
    "  \"choices\": [\n"
    "    {\n"
    "      \"index\": 0,\n"
    "      \"message\": {\n"
    "        \"role\": \"assistant\",\n"
    "        \"content\": \"The \\\"usage\\\" is {\\\"prompt_tokens\\\": 7}"
    " \\u2014 caf\\u00e9\",\n"
    "        \"refusal\": null,\n"
    "        \"annotations\": []\n"
    "      },\n"
    "      \"logprobs\": null,\n"
    "      \"finish_reason\": \"stop\"\n"
    "    }\n"
    "  ],\n"
    "  \"usage\": {\n"
    "    \"prompt_tokens\": 1117,\n"
    "    \"completion_tokens\": 246,\n"
    "    \"total_tokens\": 1363,\n"
    "    \"prompt_tokens_details\": {\n"
    "      \"cached_tokens\": 1024,\n"
    "      \"audio_tokens\": 0\n"
    "    },\n"
    "    \"completion_tokens_details\": {\n"
    "      \"reasoning_tokens\": 192,\n"
    "      \"audio_tokens\": 0,\n"
    "      \"accepted_prediction_tokens\": 0,\n"
    "      \"rejected_prediction_tokens\": 0\n"
    "    }\n"
    "  },\n"
    "  \"service_tier\": \"default\",\n"
    "  \"system_fingerprint\": \"fp_fc9f1d7035\"\n"
    "}\n";


#define CHUNK_HEAD                                                             \
    "data: {\"id\":\"chatcmpl-AbC\",\"object\":\"chat.completion.chunk\","     \
    "\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\","             \
    "\"system_fingerprint\":\"fp_44709d6fcb\","

static const char openai_chat_sse[] = CHUNK_HEAD
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\",\"refusal\":null},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}\n"
    "\n" CHUNK_HEAD
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},"
    "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n"
    "\n" CHUNK_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\" w\xc3\xb6rld \\ud83d\\ude00\\n\"},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}\n"
    "\n" CHUNK_HEAD "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
    "\"finish_reason\":\"stop\"}],\"usage\":null}\n"
    "\n" CHUNK_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
    "\"completion_tokens\":12,\"total_tokens\":21,\"prompt_tokens_details\":"
    "{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":"
    "{\"reasoning_tokens\":0,\"audio_tokens\":0,"
    "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n"
    "\n"
    "data: [DONE]\n"
    "\n";


static const char openai_responses_json[] =
    "{\"id\":\"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b\","
    "\"object\":\"response\",\"created_at\":1741476542,"
    "\"status\":\"completed\",\"error\":null,\"incomplete_details\":null,"
    "\"instructions\":null,\"max_output_tokens\":null,"
    "\"model\":\"gpt-4.1-2025-04-14\",\"output\":[{\"type\":\"message\","
    "\"id\":\"msg_67ccd2bf17f0819081ff3bb2cf6508e6\",\"status\":"
    "\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":"
    "\"output_text\",\"text\":\"In a peaceful grove beneath a silver moon, "
    "a unicorn named Lumina discovered a hidden pool.\",\"annotations\":[]}]"
    "}],\"parallel_tool_calls\":true,\"previous_response_id\":null,"
    "\"reasoning\":{\"effort\":null,\"summary\":null},\"store\":true,"
    "\"temperature\":1.0,\"text\":{\"format\":{\"type\":\"text\"}},"
    "\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":1.0,"
    "\"truncation\":\"disabled\",\"usage\":{\"input_tokens\":36,"
    "\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens\":87,"
    "\"output_tokens_details\":{\"reasoning_tokens\":0},"
    "\"total_tokens\":123},\"user\":null,\"metadata\":{}}";


static const char openai_responses_sse[] =
    "event: response.created\n"
    "data: {\"type\":\"response.created\",\"sequence_number\":0,"
    "\"response\":{\"id\":\"resp_1\",\"object\":\"response\","
    "\"created_at\":1741290958,\"status\":\"in_progress\",\"error\":null,"
    "\"model\":\"o4-mini-2025-04-16\",\"output\":[],\"usage\":null}}\n"
    "\n"
    "event: response.in_progress\n"
    "data: {\"type\":\"response.in_progress\",\"sequence_number\":1,"
    "\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\","
    "\"model\":\"o4-mini-2025-04-16\",\"usage\":null}}\n"
    "\n"
    "event: response.output_text.delta\n"
    "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,"
    "\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,"
    "\"delta\":\"Hi\"}\n"
    "\n"
    "event: response.output_text.delta\n"
    "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":5,"
    "\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,"
    "\"delta\":\" there\"}\n"
    "\n"
    "event: response.output_text.done\n"
    "data: {\"type\":\"response.output_text.done\",\"sequence_number\":6,"
    "\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,"
    "\"text\":\"Hi there\"}\n"
    "\n"
    "event: response.completed\n"
    "data: {\"type\":\"response.completed\",\"sequence_number\":9,"
    "\"response\":{\"id\":\"resp_1\",\"object\":\"response\","
    "\"status\":\"completed\",\"model\":\"o4-mini-2025-04-16\","
    "\"output\":[{\"type\":\"message\",\"content\":[{\"type\":"
    "\"output_text\",\"text\":\"Hi there\"}]}],\"usage\":{"
    "\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":5},"
    "\"output_tokens\":75,\"output_tokens_details\":"
    "{\"reasoning_tokens\":64},\"total_tokens\":112}}}\n"
    "\n";


static const char openai_embeddings_json[] =
    "{\n"
    "  \"object\": \"list\",\n"
    "  \"data\": [\n"
    "    {\n"
    "      \"object\": \"embedding\",\n"
    "      \"index\": 0,\n"
    "      \"embedding\": [\n"
    "        -0.006929283495992422,\n"
    "        -0.005336422007530928,\n"
    "        -4.547132266452536e-05,\n"
    "        -0.024047505110502243,\n"
    "        0, 1E+2, 0.5\n"
    "      ]\n"
    "    }\n"
    "  ],\n"
    "  \"model\": \"text-embedding-3-small\",\n"
    "  \"usage\": {\n"
    "    \"prompt_tokens\": 5,\n"
    "    \"total_tokens\": 5\n"
    "  }\n"
    "}\n";


static const char anthropic_json[] =
    "{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\","
    "\"role\":\"assistant\",\"model\":\"claude-sonnet-4-20250514\","
    "\"content\":[{\"type\":\"text\",\"text\":\"Let me check.\"},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_01A09q90qw90lq917835lq9\","
    "\"name\":\"get_weather\",\"input\":{\"location\":\"San Francisco\","
    "\"usage\":{\"input_tokens\":999999,\"output_tokens\":888888,"
    "\"cache_creation_input_tokens\":777777},\"model\":\"evil\"}}],"
    "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":2095,\"cache_creation_input_tokens\":100,"
    "\"cache_read_input_tokens\":2000,\"output_tokens\":503,"
    "\"service_tier\":\"standard\"}}";


static const char anthropic_sse[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":"
    "\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\","
    "\"role\":\"assistant\",\"content\":[],\"model\":"
    "\"claude-3-5-sonnet-20241022\",\"stop_reason\":null,"
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,"
    "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":12,"
    "\"output_tokens\":1}}}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,"
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n"
    "\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,"
    "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,"
    "\"delta\":{\"type\":\"text_delta\",\"text\":\"!\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n"
    "\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";


/* thinking and tool input deltas, CRLF line ends, a comment */

static const char anthropic_sse_tools[] =
    ": hello\r\n"
    "\r\n"
    "event: message_start\r\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\","
    "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],"
    "\"model\":\"claude-opus-4-1-20250805\",\"usage\":{\"input_tokens\":"
    "410,\"cache_creation_input_tokens\":1500,\"cache_read_input_tokens\":"
    "0,\"output_tokens\":2}}}\r\n"
    "\r\n"
    "event: content_block_delta\r\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"thinking_delta\",\"thinking\":\"Let me think\"}}\r\n"
    "\r\n"
    "event: content_block_delta\r\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}}\r\n"
    "\r\n"
    "event: content_block_delta\r\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
    "{\"type\":\"input_json_delta\",\"partial_json\":"
    "\"{\\\"location\\\": \\\"Par\"}}\r\n"
    "\r\n"
    "event: message_delta\r\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"tool_use\"},\"usage\":{\"input_tokens\":410,"
    "\"cache_creation_input_tokens\":1500,\"cache_read_input_tokens\":0,"
    "\"output_tokens\":89}}\r\n"
    "\r\n"
    "event: message_stop\r\n"
    "data: {\"type\":\"message_stop\"}\r\n"
    "\r\n";


static const char ollama_json[] =
    "{\"id\":\"chatcmpl-123\",\"object\":\"chat.completion\","
    "\"created\":1720000000,\"model\":\"llama3.2\","
    "\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"Hi!\"},"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":26,"
    "\"completion_tokens\":10,\"total_tokens\":36}}\n";


static const char ollama_sse[] =
    "data: {\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\","
    "\"created\":1720000000,\"model\":\"qwen3:0.6b\",\"system_fingerprint\":"
    "\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
    "\"assistant\",\"content\":\"\",\"reasoning\":\"Hmm\"},"
    "\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\","
    "\"created\":1720000000,\"model\":\"qwen3:0.6b\",\"system_fingerprint\":"
    "\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
    "\"assistant\",\"content\":\"Hey\"},\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\","
    "\"created\":1720000000,\"model\":\"qwen3:0.6b\",\"system_fingerprint\":"
    "\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
    "\"assistant\",\"content\":\"\"},\"finish_reason\":\"stop\"}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\","
    "\"created\":1720000000,\"model\":\"qwen3:0.6b\",\"system_fingerprint\":"
    "\"fp_ollama\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,"
    "\"completion_tokens\":5,\"total_tokens\":16}}\n"
    "\n"
    "data: [DONE]\n"
    "\n";


static const char completions_sse_tools[] =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":"
    "0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":"
    "\"get_weather\",\"arguments\":\"\"}}]}}],\"model\":\"gpt-4.1\"}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":"
    "0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\"abc\"}]}\n\n";


static void
test_openai_chat_json(void **state)
{
    want_t w = {1117, 246, 1024, 0, 192, 0, 1, "o3-mini-2025-01-31", NULL};

    golden(TX_METER_JSON, openai_chat_json, &w);
}


static void
test_openai_chat_sse(void **state)
{
    run_t  r;
    size_t i;
    want_t w = {9, 12, 0, 0, 0, 5 + 9, 1, "gpt-4o-mini-2024-07-18", "EEEEUD"};

    /* "Hello", then " wörld 😀\n": 9 characters */
    golden(TX_METER_SSE, openai_chat_sse, &w);

    /* the usage event ends right before "data: [DONE]" */
    run(TX_METER_SSE, openai_chat_sse, &r);
    i = r.at[4];
    assert_memory_equal(openai_chat_sse + i, "data: [DONE]\n\n", 14);
    assert_int_equal(r.at[5], strlen(openai_chat_sse));
}


static void
test_openai_responses_json(void **state)
{
    want_t w = {36, 87, 4, 0, 0, 0, 1, "gpt-4.1-2025-04-14", NULL};

    golden(TX_METER_JSON, openai_responses_json, &w);
}


static void
test_openai_responses_sse(void **state)
{
    want_t w = {37, 75, 5, 0, 64, 8, 1, "o4-mini-2025-04-16", "EEEEEE"};

    golden(TX_METER_SSE, openai_responses_sse, &w);
}


static void
test_embeddings_json(void **state)
{
    want_t w = {5, 0, 0, 0, 0, 0, 1, "text-embedding-3-small", NULL};

    golden(TX_METER_JSON, openai_embeddings_json, &w);
}


static void
test_anthropic_json(void **state)
{
    /* input: 2095 + 100 written + 2000 read; the tool input's "usage" and
     * "model" are the model's output, not ours */
    want_t w = {4195, 503, 2000, 100, 0, 0, 1, "claude-sonnet-4-20250514",
                NULL};

    golden(TX_METER_JSON, anthropic_json, &w);
}


static void
test_anthropic_sse(void **state)
{
    /* output_tokens 1 at message_start, 15 cumulative at message_delta */
    want_t w = {25 + 12,   15, 12, 0, 0, 6, 1, "claude-3-5-sonnet-20241022",
                "EEEEEEEE"};

    golden(TX_METER_SSE, anthropic_sse, &w);
}


static void
test_anthropic_sse_tools(void **state)
{
    /* thinking 12 + partial_json 17 characters; the signature is not
     * output text */
    want_t w = {1910,     89,      0, 1500,
                0,        12 + 17, 1, "claude-opus-4-1-20250805",
                "EEEEEEE"};

    golden(TX_METER_SSE, anthropic_sse_tools, &w);
}


static void
test_ollama(void **state)
{
    want_t wj = {26, 10, 0, 0, 0, 0, 1, "llama3.2", NULL};
    want_t ws = {11, 5, 0, 0, 0, 6, 1, "qwen3:0.6b", "EEEUD"};

    golden(TX_METER_JSON, ollama_json, &wj);
    golden(TX_METER_SSE, ollama_sse, &ws);
}


/* DeepSeek-style reasoning deltas: "reasoning_content" counts like "content" */
static const char reasoning_content_sse[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\","
    "\"model\":\"deepseek-reasoner\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":null,"
    "\"reasoning_content\":\"Think\"},\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\","
    "\"model\":\"deepseek-reasoner\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"Hi \\u00e9\"},\"finish_reason\":null}]}\n"
    "\n"
    "data: [DONE]\n"
    "\n";


static void
test_reasoning_content(void **state)
{
    /* "Think" (5) + "Hi " (3) + one escaped character */
    want_t w = {0, 0, 0, 0, 0, 9, 0, "deepseek-reasoner", "EED"};

    golden(TX_METER_SSE, reasoning_content_sse, &w);
}


static void
test_tool_call_deltas(void **state)
{
    /* arguments "" + "{\"city\":" (8) + completions text "abc" (3) */
    want_t w = {0, 0, 0, 0, 0, 11, 0, "gpt-4.1", "EEE"};

    golden(TX_METER_SSE, completions_sse_tools, &w);
}


static void
test_event_names(void **state)
{
    int        ev;
    size_t     n, pos, len;
    tx_str_t   name;
    tx_meter_t m;

    static const char *names[] =
        {"message_start",       "content_block_start", "ping",
         "content_block_delta", "content_block_delta", "content_block_stop",
         "message_delta",       "message_stop"};

    tx_meter_init(&m, TX_METER_SSE, TX_METER_ANTHROPIC);

    len = strlen(anthropic_sse);
    pos = 0;
    n = 0;

    while (pos < len) {
        pos += tx_meter_feed(&m, (const uint8_t *) anthropic_sse + pos,
                             len - pos, &ev);

        if (ev != TX_METER_EV_NONE) {
            assert_true(n < 8);
            tx_meter_event_name(&m, &name);
            assert_int_equal(name.len, strlen(names[n]));
            assert_memory_equal(name.data, names[n], name.len);
            n++;
        }
    }

    assert_int_equal(n, 8);
}


/* a stream cut midway: no usage, the characters delivered so far */

static void
test_cut_stream(void **state)
{
    run_t       r, a;
    size_t      cut, i;
    const char *s;

    s = openai_chat_sse;
    cut = strstr(s, "Hello") + 3 - s;

    feed_cuts(TX_METER_SSE, s, cut, NULL, 0, &r);
    assert_int_equal(r.u.has_usage, 0);
    assert_int_equal(r.u.out_chars, 3);
    assert_int_equal(r.u.input, 0);
    assert_int_equal(r.u.output, 0);
    assert_string_equal(r.u.model, "gpt-4o-mini-2024-07-18");
    assert_string_equal(r.evs, "E");

    /* right before the usage chunk */
    cut = strstr(s, "\"choices\":[]") - s;
    feed_cuts(TX_METER_SSE, s, cut, NULL, 0, &r);
    assert_int_equal(r.u.has_usage, 0);
    assert_int_equal(r.u.out_chars, 14);

    /* inside the emoji escape: the high half counts */
    cut = strstr(s, "\\ude00") + 3 - s;
    feed_cuts(TX_METER_SSE, s, cut, NULL, 0, &r);
    assert_int_equal(r.u.out_chars, 5 + 8);

    /* Anthropic: cut after the first text delta */
    s = anthropic_sse;
    cut = strstr(s, "\"!\"") - s;
    feed_cuts(TX_METER_SSE, s, cut, NULL, 0, &r);
    assert_int_equal(r.u.out_chars, 5);
    assert_int_equal(r.u.output, 1);

    /* every prefix: out_chars never decreases, the split does not matter */
    s = openai_chat_sse;

    for (cut = 1, i = 0; cut < strlen(s); cut++) {
        feed_cuts(TX_METER_SSE, s, cut, NULL, 0, &r);
        feed_cuts(TX_METER_SSE, s, cut, &(size_t){cut / 2}, 1, &a);
        assert_same(&r, &a);
        assert_true(r.u.out_chars >= i);
        i = r.u.out_chars;
    }
}


static void
test_not_usage(void **state)
{
    run_t r;

    /* "usage" inside a string value */
    run(TX_METER_JSON,
        "{\"choices\":[{\"message\":{\"content\":\"{\\\"usage\\\":"
        "{\\\"prompt_tokens\\\":5}}\"}}],\"x\":\"usage\"}",
        &r);
    assert_int_equal(r.u.has_usage, 0);
    assert_int_equal(r.u.input, 0);
    assert_int_equal(r.failed, 0);

    /* "model" nested in choices does not set the model */
    run(TX_METER_JSON, "{\"choices\":[{\"model\":\"evil\"}]}", &r);
    assert_int_equal(r.u.model_len, 0);
    assert_string_equal(r.u.model, "");

    run(TX_METER_JSON,
        "{\"choices\":[{\"model\":\"evil\",\"delta\":{\"model\":\"x\"}}],"
        "\"model\":\"good\"}",
        &r);
    assert_string_equal(r.u.model, "good");

    /* usage not at the top, under message or response */
    run(TX_METER_JSON,
        "{\"data\":{\"usage\":{\"prompt_tokens\":5}},"
        "\"choices\":[{\"usage\":{\"prompt_tokens\":6}}],"
        "\"message\":{\"content\":{\"usage\":{\"prompt_tokens\":7}}}}",
        &r);
    assert_int_equal(r.u.has_usage, 0);

    /* a non-string model, an empty model */
    run(TX_METER_JSON, "{\"model\":{\"model\":\"x\"},\"m\":1}", &r);
    assert_int_equal(r.u.model_len, 0);

    run(TX_METER_JSON, "{\"model\":\"\",\"message\":{\"model\":\"b\"}}", &r);
    assert_string_equal(r.u.model, "b");
}


static void
test_numbers(void **state)
{
    run_t r;

    run(TX_METER_JSON,
        "{\"usage\":{\"prompt_tokens\":1.5,\"completion_tokens\":-3,"
        "\"cache_read_input_tokens\":1e3,\"cache_creation_input_tokens\":"
        "\"12\",\"output_tokens\":18446744073709551616,"
        "\"input_tokens\":null}}",
        &r);
    assert_int_equal(r.u.has_usage, 0);
    assert_int_equal(r.failed, 0);

    run(TX_METER_JSON,
        "{\"usage\":{\"prompt_tokens\":18446744073709551615,"
        "\"completion_tokens\":0}}",
        &r);
    assert_int_equal(r.u.has_usage, 1);
    assert_true(r.u.input == UINT64_MAX);
    assert_int_equal(r.u.output, 0);

    /* last occurrence wins */
    run(TX_METER_JSON, "{\"usage\":{\"prompt_tokens\":3,\"prompt_tokens\":4}}",
        &r);
    assert_int_equal(r.u.input, 4);

    /* saturating normalisation */
    run(TX_METER_JSON,
        "{\"usage\":{\"input_tokens\":18446744073709551615,"
        "\"cache_read_input_tokens\":2}}",
        &r);
    assert_true(r.u.input == UINT64_MAX);
    assert_int_equal(r.u.cache_read, 2);
}


static void
test_escaped_keys(void **state)
{
    run_t r;

    run(TX_METER_JSON,
        "{\"us\\u0061ge\":{\"prompt\\u005ftokens\":7},"
        "\"m\\u006fdel\":\"g\\u00e9\\ud83d\\ude00\\ud800x\\/\"}",
        &r);
    assert_int_equal(r.u.input, 7);
    assert_string_equal(r.u.model, "g\xc3\xa9\xf0\x9f\x98\x80\xef\xbf\xbdx/");

    /* a non-ASCII escape makes a key unknown */
    run(TX_METER_JSON, "{\"usag\\u00e9\":{\"prompt_tokens\":7}}", &r);
    assert_int_equal(r.u.has_usage, 0);
}


static void
test_long_model(void **state)
{
    char  buf[512];
    run_t r;

    memset(buf, 0, sizeof(buf));
    strcpy(buf, "{\"model\":\"");
    memset(buf + 10, 'a', 300);
    strcat(buf, "\",\"usage\":{\"prompt_tokens\":1}}");

    run(TX_METER_JSON, buf, &r);
    assert_int_equal(r.u.model_len, TX_METER_MODEL_MAX - 1);
    assert_int_equal(strlen(r.u.model), TX_METER_MODEL_MAX - 1);
    assert_int_equal(r.u.input, 1);
}


static void
test_nesting(void **state)
{
    int   i;
    char  buf[4096];
    run_t r;

    /* deeper than the path stack: still parsed, usage after it found */
    strcpy(buf, "{\"x\":");

    for (i = 0; i < 100; i++) {
        strcat(buf, i % 2 ? "{\"a\":" : "[");
    }

    strcat(buf, "1");

    for (i = 99; i >= 0; i--) {
        strcat(buf, i % 2 ? "}" : "]");
    }

    strcat(buf, ",\"usage\":{\"prompt_tokens\":3}}");

    run(TX_METER_JSON, buf, &r);
    assert_int_equal(r.failed, 0);
    assert_int_equal(r.u.input, 3);

    /* too deep is malformed */
    buf[0] = '\0';

    for (i = 0; i < TX_METER_NEST + 1; i++) {
        strcat(buf, "[");
    }

    run(TX_METER_JSON, buf, &r);
    assert_int_equal(r.failed, 1);
}


static void
test_malformed_json(void **state)
{
    size_t i;
    run_t  r;

    static const char *good[] = {
        " {\"a\": [1, -0.5e+7, 2E-3, true, false, null, \"\", {}, []]} \n",
        "[]",
        "\"s\"",
        "0",
        "{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\"}",
    };

    static const char *bad[] = {
        "{\"usage\":{\"prompt_tokens\":3}} x",
        "{\"a\":1,}",
        "[1,]",
        "{\"a\" 1}",
        "{\"a\":tru}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":-}",
        "{\"a\":1e}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"\x01\"}",
        "{\"a\":1]",
        "[1}",
        "}",
        "{1:2}",
        "{\"a\":1}{}",
        "<html>502 Bad Gateway</html>",
    };

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        run(TX_METER_JSON, bad[i], &r);
        assert_int_equal(r.failed, 1);
    }

    /* values taken before the error stay */
    run(TX_METER_JSON, "{\"usage\":{\"prompt_tokens\":3}} x", &r);
    assert_int_equal(r.u.input, 3);

    /* nothing after the failure is taken */
    run(TX_METER_JSON, "{\"a\":[1,],\"usage\":{\"prompt_tokens\":3}}", &r);
    assert_int_equal(r.failed, 1);
    assert_int_equal(r.u.has_usage, 0);

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        run(TX_METER_JSON, good[i], &r);
        assert_int_equal(r.failed, 0);
    }
}


static void
test_sse_framing(void **state)
{
    run_t r;

    /* CR line ends, "data:" without a space, a BOM, comments, "id:",
     * multi-line data joined with LF */
    run(TX_METER_SSE,
        "\xef\xbb\xbf: comment\r"
        "id: 1\r"
        "data:{\"model\":\"m1\",\r"
        "data: \"usage\":{\"prompt_tokens\":4},\"choices\":[]}\r"
        "\r"
        "\r\n\n"
        "retry: 100\n"
        "data\n"
        "\n"
        "data: [DONE]\r\n"
        "\r\n",
        &r);
    assert_string_equal(r.evs, "UED");
    assert_int_equal(r.u.input, 4);
    assert_string_equal(r.u.model, "m1");

    /* [DONE] must be the whole data */
    run(TX_METER_SSE,
        "data: [DONE] \n\n"
        "data: [DON\n\n"
        "data: [DONE]\ndata: [DONE]\n\n"
        "data:  [DONE]\n\n"
        "data:[DONE]\n\n",
        &r);
    assert_string_equal(r.evs, "EEEED");

    /* choices:[] without usage, usage with choices, an unfinished JSON */
    run(TX_METER_SSE,
        "data: {\"choices\":[]}\n\n"
        "data: {\"choices\":[{}],\"usage\":{\"prompt_tokens\":1}}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":null}}\n\n"
        "data: {\"x\":{\"choices\":[]},\"usage\":{\"prompt_tokens\":3}}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\n\n",
        &r);
    assert_string_equal(r.evs, "EEEEEU");
    assert_int_equal(r.u.input, 5);

    /* a partial BOM makes the first line junk */
    run(TX_METER_SSE,
        "\xef\xbb"
        "data: {\"model\":\"x\"}\n\ndata: 1\n\n",
        &r);
    assert_string_equal(r.evs, "EE");
    assert_int_equal(r.u.model_len, 0);

    /* blank lines alone are no events */
    run(TX_METER_SSE, "\n\n\r\n\r\r", &r);
    assert_int_equal(r.nev, 0);
}


static void
test_sse_bad_event(void **state)
{
    run_t r;

    /* a malformed event does not stop the metering of the next ones */
    run(TX_METER_SSE,
        "data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":1}\n\n"
        "data: {\"usage\":{\"prompt_tokens\":x2}}\n\n"
        "event: error\n"
        "data: upstream exploded\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
        "\"completion_tokens\":4}}\n\n"
        "data: [DONE]\n\n",
        &r);
    assert_string_equal(r.evs, "EEEUD");
    assert_int_equal(r.failed, 0);
    assert_int_equal(r.u.input, 3);
    assert_int_equal(r.u.output, 4);
    assert_string_equal(r.u.model, "m");

    /* a JSON body fed as SSE: no events, no usage */
    run(TX_METER_SSE, openai_chat_json, &r);
    assert_int_equal(r.u.has_usage, 0);
}


static void
test_model_first_wins(void **state)
{
    run_t r;

    run(TX_METER_SSE,
        "data: {\"model\":\"a\"}\n\n"
        "data: {\"model\":\"b\"}\n\n"
        "data: {\"message\":{\"model\":\"c\"}}\n\n",
        &r);
    assert_string_equal(r.u.model, "a");

    /* an event cut inside the model string sets nothing */
    run(TX_METER_SSE,
        "data: {\"model\":\"ab\n\n"
        "data: {\"model\":\"c\"}\n\n",
        &r);
    assert_string_equal(r.u.model, "c");

    run(TX_METER_JSON, "{\"model\":\"abc", &r);
    assert_int_equal(r.u.model_len, 0);
}


static void
test_bad_format(void **state)
{
    int        ev;
    tx_meter_t m;
    tx_usage_t u;

    tx_meter_init(&m, 0, 0);
    assert_int_equal(tx_meter_feed(&m, (const uint8_t *) "{}", 2, &ev), 2);
    assert_int_equal(ev, TX_METER_EV_NONE);
    tx_meter_result(&m, &u);
    assert_int_equal(u.has_usage, 0);
    assert_int_equal(m.failed, 1);
}


/* the meter's perfect hash finds every key it looks for, and nothing else */
static void
test_known_keys(void **state)
{
    size_t i, n;
    char   k[64];

    static const char *keys[] = {"text",
                                 "usage",
                                 "model",
                                 "delta",
                                 "choices",
                                 "message",
                                 "content",
                                 "response",
                                 "thinking",
                                 "function",
                                 "arguments",
                                 "reasoning",
                                 "tool_calls",
                                 "partial_json",
                                 "input_tokens",
                                 "output_tokens",
                                 "prompt_tokens",
                                 "cached_tokens",
                                 "reasoning_tokens",
                                 "completion_tokens",
                                 "reasoning_content",
                                 "input_tokens_details",
                                 "output_tokens_details",
                                 "prompt_tokens_details",
                                 "cache_read_input_tokens",
                                 "completion_tokens_details",
                                 "cache_creation_input_tokens"};

    static const char *others[] = {"",
                                   "x",
                                   "id",
                                   "object",
                                   "created",
                                   "index",
                                   "finish_reason",
                                   "role",
                                   "total_tokens",
                                   "Usage",
                                   "usagE",
                                   "models",
                                   "mode",
                                   "tokens",
                                   "input_tokens_detail",
                                   "cache_creation_input_tokenz"};

    (void) state;

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        n = strlen(keys[i]);
        assert_int_equal(tx_meter_known_key(keys[i], n), 1);

        /* one byte changed anywhere: not the key */
        memcpy(k, keys[i], n);
        k[n / 2] ^= 0x20;
        assert_int_equal(tx_meter_known_key(k, n), 0);
    }

    for (i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        assert_int_equal(tx_meter_known_key(others[i], strlen(others[i])), 0);
    }
}


/*
 * Random documents, valid and then mutated: fed whole (a value whole in one
 * buffer takes the meter's fast path) and byte by byte (never the fast
 * path), and split at a random byte, the results must be the same.
 */

#define GEN_MAX 8192

static uint64_t gen_seed = 0x9e3779b97f4a7c15ULL;


static uint32_t
gen_rand(void)
{
    gen_seed ^= gen_seed << 13;
    gen_seed ^= gen_seed >> 7;
    gen_seed ^= gen_seed << 17;

    return (uint32_t) (gen_seed >> 11);
}


typedef struct {
    char   b[GEN_MAX];
    size_t n;
    int    sse; /* no line breaks in whitespace */
} gen_t;


static void
gen_put(gen_t *g, const char *s)
{
    size_t n;

    n = strlen(s);

    if (g->n + n < GEN_MAX) {
        memcpy(g->b + g->n, s, n);
        g->n += n;
    }
}


static void
gen_ws(gen_t *g)
{
    static const char *ws[] = {" ", "\t", "\n", "\r\n", "  "};

    while (gen_rand() % 4 == 0) {
        gen_put(g, ws[gen_rand() % (g->sse ? 2 : 5)]);
    }
}


static void
gen_value(gen_t *g, int depth)
{
    int    i, n, r, obj;
    size_t k;

    static const char *keys[] =
        {"usage",
         "model",
         "message",
         "response",
         "choices",
         "delta",
         "content",
         "text",
         "thinking",
         "partial_json",
         "reasoning_content",
         "reasoning",
         "tool_calls",
         "function",
         "arguments",
         "prompt_tokens",
         "input_tokens",
         "completion_tokens",
         "output_tokens",
         "cached_tokens",
         "reasoning_tokens",
         "cache_read_input_tokens",
         "cache_creation_input_tokens",
         "prompt_tokens_details",
         "input_tokens_details",
         "completion_tokens_details",
         "output_tokens_details",
         "id",
         "x",
         "mod\\u0065l",
         "usag\\u00e9",
         "a_key_longer_than_the_forty_eight_bytes_the_meter_tracks"};

    static const char *strs[] = {"a",
                                 "hello world",
                                 "caf\xc3\xa9",
                                 "\\n",
                                 "\\\"",
                                 "\\\\",
                                 "\\/",
                                 "\\t",
                                 "\\u00e9",
                                 "\\ud83d\\ude00",
                                 "\\udc00",
                                 "\\ud800",
                                 "\\u0041",
                                 "\xf0\x9f\x98\x80",
                                 "gpt-4o",
                                 "\\b\\f\\r",
                                 "1234567890123456789"};

    static const char *nums[] = {"0",
                                 "7",
                                 "123",
                                 "-5",
                                 "-0",
                                 "1.5",
                                 "1e3",
                                 "2E+2",
                                 "3e-1",
                                 "0.25",
                                 "-1.5e10",
                                 "18446744073709551615",
                                 "18446744073709551616",
                                 "99999999999999999999",
                                 "42"};

    static const char *lits[] = {"true", "false", "null"};

    r = gen_rand() % 10;

    if (depth > 5 && r < 5) {
        r += 5;
    }

    if (depth == 2 && r < 7 && gen_rand() % 4) {
        r = 7 + r % 2; /* a number: a token count */
    }

    if (r < 5 || depth == 0) {
        /* an object (always at the top), or an array */
        obj = (r < 3 || depth == 0);
        gen_put(g, obj ? "{" : "[");
        gen_ws(g);
        n = gen_rand() % (obj ? 5 : 4);

        for (i = 0; i < n; i++) {
            if (i) {
                gen_put(g, ",");
                gen_ws(g);
            }

            if (obj) {
                /* mostly the keys of a usage object, one level down */
                k = gen_rand() % (sizeof(keys) / sizeof(keys[0]));

                if (depth == 0 && gen_rand() % 2) {
                    k = 0;

                } else if (depth == 1 && gen_rand() % 2) {
                    k = 15 + gen_rand() % 12;
                }

                gen_put(g, "\"");
                gen_put(g, keys[k]);
                gen_put(g, "\"");
                gen_ws(g);
                gen_put(g, ":");
                gen_ws(g);
            }

            gen_value(g, depth + 1);
            gen_ws(g);
        }

        gen_put(g, obj ? "}" : "]");
        return;
    }

    if (r < 7) {
        gen_put(g, "\"");
        n = gen_rand() % 4;

        for (i = 0; i < n; i++) {
            gen_put(g, strs[gen_rand() % (sizeof(strs) / sizeof(strs[0]))]);
        }

        gen_put(g, "\"");
        return;
    }

    if (r < 9) {
        gen_put(g, nums[gen_rand() % (sizeof(nums) / sizeof(nums[0]))]);
        return;
    }

    gen_put(g, lits[gen_rand() % 3]);
}


/* a top-level object, mostly of the keys the meter looks for */

static void
gen_doc(gen_t *g)
{
    do {
        g->n = 0;
        gen_ws(g);
        gen_value(g, 0);
        gen_ws(g);
    } while (g->n == 0 || g->b[0] == '"');

    /* one in three: a byte changed, dropped or the end cut */

    switch (gen_rand() % 9) {
    case 0:
        g->b[gen_rand() % g->n] = "{}[]\",:\\ 0a-e.u"[gen_rand() % 16];
        break;

    case 1:
        g->n = gen_rand() % g->n;
        break;

    case 2:
        if (g->n > 1) {
            size_t at = gen_rand() % g->n;

            memmove(g->b + at, g->b + at + 1, g->n - at - 1);
            g->n--;
        }

        break;

    default:
        break;
    }

    g->b[g->n] = '\0';
}


static void
test_whole_random(void **state)
{
    int    i, format, usage, events;
    size_t cut, len, *cuts;
    gen_t  g, sse;
    run_t  whole, part;

    (void) state;

    cuts = malloc(2 * GEN_MAX * sizeof(size_t));
    assert_non_null(cuts);

    for (i = 0; i < 2 * GEN_MAX; i++) {
        cuts[i] = i + 1;
    }

    usage = 0;
    events = 0;

    for (i = 0; i < 20000; i++) {
        format = (i & 1) ? TX_METER_SSE : TX_METER_JSON;
        g.sse = (format == TX_METER_SSE);
        gen_doc(&g);

        if (format == TX_METER_SSE) {
            /* two events of one data line each */
            sse.n = 0;
            gen_put(&sse, "data: ");
            gen_put(&sse, g.b);
            gen_put(&sse, "\n\n");
            gen_doc(&g);
            gen_put(&sse, "data:");
            gen_put(&sse, g.b);
            gen_put(&sse, "\r\n\r\n");
            sse.b[sse.n] = '\0';
            g = sse;
        }

        len = g.n;
        feed_cuts(format, g.b, len, NULL, 0, &whole);

        if (len > 1) {
            feed_cuts(format, g.b, len, cuts, len - 1, &part);
            assert_same(&whole, &part);

            cut = 1 + gen_rand() % (len - 1);
            feed_cuts(format, g.b, len, &cut, 1, &part);
            assert_same(&whole, &part);
        }

        usage += whole.u.has_usage;
        events += (int) whole.nev;
    }

    print_message("%d of 20000 with usage, %d events\n", usage, events);

    /* the documents reach the values the meter takes */
    assert_true(usage > 1000);
    assert_true(events > 10000);

    free(cuts);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_chat_json),
        cmocka_unit_test(test_openai_chat_sse),
        cmocka_unit_test(test_openai_responses_json),
        cmocka_unit_test(test_openai_responses_sse),
        cmocka_unit_test(test_embeddings_json),
        cmocka_unit_test(test_anthropic_json),
        cmocka_unit_test(test_anthropic_sse),
        cmocka_unit_test(test_anthropic_sse_tools),
        cmocka_unit_test(test_ollama),
        cmocka_unit_test(test_reasoning_content),
        cmocka_unit_test(test_tool_call_deltas),
        cmocka_unit_test(test_event_names),
        cmocka_unit_test(test_cut_stream),
        cmocka_unit_test(test_not_usage),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_escaped_keys),
        cmocka_unit_test(test_long_model),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_sse_framing),
        cmocka_unit_test(test_sse_bad_event),
        cmocka_unit_test(test_model_first_wins),
        cmocka_unit_test(test_bad_format),
        cmocka_unit_test(test_known_keys),
        cmocka_unit_test(test_whole_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

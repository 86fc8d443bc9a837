// The real OpenAI and Anthropic SDKs against the Torrix gateway.
// Usage: node sdk_calls.mjs GATEWAY_URL TORRIX_KEY
// Prints one JSON line: {"results": [{name, ok, run_id, ...}]}; exit 0
// even when a call fails (the Python test judges), 2 on bad arguments.

import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";

const [gateway, key] = process.argv.slice(2);
if (!gateway || !key) {
  console.error("usage: node sdk_calls.mjs GATEWAY_URL TORRIX_KEY");
  process.exit(2);
}

const openai = new OpenAI({ apiKey: key, baseURL: gateway + "/v1",
                            maxRetries: 0, timeout: 15000 });
const anthropic = new Anthropic({ apiKey: key, baseURL: gateway,
                                  maxRetries: 0, timeout: 15000 });
const results = [];

async function run(name, fn) {
  try {
    results.push({ name, ok: true, ...(await fn()) });
  } catch (e) {
    results.push({ name, ok: false, error: String(e && e.stack || e) });
  }
}

await run("openai.chat", async () => {
  const { data, response } = await openai.chat.completions
    .create({ model: "gpt-4o-mini",
              messages: [{ role: "user", content: "hi" }] })
    .withResponse();
  return { run_id: response.headers.get("x-torrix-run-id"),
           text: data.choices[0].message.content,
           usage: data.usage };
});

await run("openai.chat.stream", async () => {
  const { data: stream, response } = await openai.chat.completions
    .create({ model: "gpt-4o-mini", stream: true,
              messages: [{ role: "user", content: "hi" }] })
    .withResponse();
  let text = "";
  let usageChunks = 0;
  let chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usageChunks++;
    if (c.choices.length) text += c.choices[0].delta.content || "";
  }
  return { run_id: response.headers.get("x-torrix-run-id"), text, chunks,
           usage_chunks: usageChunks };
});

await run("openai.chat.stream.include_usage", async () => {
  const { data: stream, response } = await openai.chat.completions
    .create({ model: "gpt-4o-mini", stream: true,
              stream_options: { include_usage: true },
              messages: [{ role: "user", content: "hi" }] })
    .withResponse();
  let usage = null;
  for await (const c of stream) {
    if (c.usage) usage = c.usage;
  }
  return { run_id: response.headers.get("x-torrix-run-id"), usage };
});

await run("anthropic.messages", async () => {
  const { data, response } = await anthropic.messages
    .create({ model: "claude-3-5-haiku-latest", max_tokens: 16,
              messages: [{ role: "user", content: "hi" }] })
    .withResponse();
  return { run_id: response.headers.get("x-torrix-run-id"),
           text: data.content[0].text, usage: data.usage };
});

await run("anthropic.messages.stream", async () => {
  const stream = anthropic.messages.stream({
    model: "claude-3-5-haiku-latest", max_tokens: 16,
    messages: [{ role: "user", content: "hi" }] });
  const { response } = await stream.withResponse();
  const msg = await stream.finalMessage();
  return { run_id: response.headers.get("x-torrix-run-id"),
           text: msg.content[0].text, usage: msg.usage };
});

await run("openai.bad_key", async () => {
  const bad = new OpenAI({ apiKey: "sk-torrix-invalid", maxRetries: 0,
                           baseURL: gateway + "/v1" });
  try {
    await bad.chat.completions.create({
      model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
    return { status: 200 };
  } catch (e) {
    return { status: e.status, type: e.constructor.name,
             code: e.code ?? null };
  }
});

console.log(JSON.stringify({ results }));

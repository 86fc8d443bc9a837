/*
 * torrix-cp: the price table shipped with Torrix (the "default" layer of
 * the pricing catalog, see txcp_pricing.h).
 *
 * Public list prices in USD per 1M tokens (standard tier, 5-minute cache
 * writes for Anthropic), written in thousandths of a dollar: P(2500) is
 * $2.50 per 1M tokens.  Cross-checked against LiteLLM's
 * model_prices_and_context_window.json (2026-07-24) for every model listed
 * there.  An imported catalog or a custom price overrides any entry.
 */

#include "txcp_pricing.h"


#define P(mills) ((tx_money_t) (mills) * (TX_MONEY_PER_USD / 1000))


const txcp_price_default_t txcp_prices_default[] = {

    /* model, provider, in, out, cache read, cache write,
       tier, in above, out above, cache read above, cache write above */

    {"gpt-4o", "openai", P(2500), P(10000), P(1250), -1, 0, 0, 0, -1, -1},
    {"gpt-4o-2024-08-06", "openai", P(2500), P(10000), P(1250), -1, 0, 0, 0, -1, -1},
    {"gpt-4o-2024-11-20", "openai", P(2500), P(10000), P(1250), -1, 0, 0, 0, -1, -1},
    {"gpt-4o-2024-05-13", "openai", P(5000), P(15000), -1, -1, 0, 0, 0, -1, -1},
    {"gpt-4o-mini", "openai", P(150), P(600), P(75), -1, 0, 0, 0, -1, -1},
    {"gpt-4o-mini-2024-07-18", "openai", P(150), P(600), P(75), -1, 0, 0, 0, -1, -1},
    {"gpt-4.1", "openai", P(2000), P(8000), P(500), -1, 0, 0, 0, -1, -1},
    {"gpt-4.1-2025-04-14", "openai", P(2000), P(8000), P(500), -1, 0, 0, 0, -1, -1},
    {"gpt-4.1-mini", "openai", P(400), P(1600), P(100), -1, 0, 0, 0, -1, -1},
    {"gpt-4.1-mini-2025-04-14", "openai", P(400), P(1600), P(100), -1, 0, 0, 0, -1, -1},
    {"gpt-4.1-nano", "openai", P(100), P(400), P(25), -1, 0, 0, 0, -1, -1},
    {"gpt-4.1-nano-2025-04-14", "openai", P(100), P(400), P(25), -1, 0, 0, 0, -1, -1},
    {"o1", "openai", P(15000), P(60000), P(7500), -1, 0, 0, 0, -1, -1},
    {"o1-2024-12-17", "openai", P(15000), P(60000), P(7500), -1, 0, 0, 0, -1, -1},
    {"o1-mini", "openai", P(1100), P(4400), P(550), -1, 0, 0, 0, -1, -1},
    {"o1-mini-2024-09-12", "openai", P(1100), P(4400), P(550), -1, 0, 0, 0, -1, -1},
    {"o1-pro", "openai", P(150000), P(600000), -1, -1, 0, 0, 0, -1, -1},
    {"o1-pro-2025-03-19", "openai", P(150000), P(600000), -1, -1, 0, 0, 0, -1, -1},
    {"o3", "openai", P(2000), P(8000), P(500), -1, 0, 0, 0, -1, -1},
    {"o3-2025-04-16", "openai", P(2000), P(8000), P(500), -1, 0, 0, 0, -1, -1},
    {"o3-mini", "openai", P(1100), P(4400), P(550), -1, 0, 0, 0, -1, -1},
    {"o3-mini-2025-01-31", "openai", P(1100), P(4400), P(550), -1, 0, 0, 0, -1, -1},
    {"o3-pro", "openai", P(20000), P(80000), -1, -1, 0, 0, 0, -1, -1},
    {"o3-pro-2025-06-10", "openai", P(20000), P(80000), -1, -1, 0, 0, 0, -1, -1},
    {"o4-mini", "openai", P(1100), P(4400), P(275), -1, 0, 0, 0, -1, -1},
    {"o4-mini-2025-04-16", "openai", P(1100), P(4400), P(275), -1, 0, 0, 0, -1, -1},
    {"gpt-5", "openai", P(1250), P(10000), P(125), -1, 0, 0, 0, -1, -1},
    {"gpt-5-2025-08-07", "openai", P(1250), P(10000), P(125), -1, 0, 0, 0, -1, -1},
    {"gpt-5-chat-latest", "openai", P(1250), P(10000), P(125), -1, 0, 0, 0, -1, -1},
    {"gpt-5-codex", "openai", P(1250), P(10000), P(125), -1, 0, 0, 0, -1, -1},
    {"gpt-5.1", "openai", P(1250), P(10000), P(125), -1, 0, 0, 0, -1, -1},
    {"gpt-5.1-2025-11-13", "openai", P(1250), P(10000), P(125), -1, 0, 0, 0, -1, -1},
    {"gpt-5.1-chat-latest", "openai", P(1250), P(10000), P(125), -1, 0, 0, 0, -1, -1},
    {"gpt-5.1-codex", "openai", P(1250), P(10000), P(125), -1, 0, 0, 0, -1, -1},
    {"gpt-5-mini", "openai", P(250), P(2000), P(25), -1, 0, 0, 0, -1, -1},
    {"gpt-5-mini-2025-08-07", "openai", P(250), P(2000), P(25), -1, 0, 0, 0, -1, -1},
    {"gpt-5.1-codex-mini", "openai", P(250), P(2000), P(25), -1, 0, 0, 0, -1, -1},
    {"gpt-5-nano", "openai", P(50), P(400), P(5), -1, 0, 0, 0, -1, -1},
    {"gpt-5-nano-2025-08-07", "openai", P(50), P(400), P(5), -1, 0, 0, 0, -1, -1},
    {"gpt-5-pro", "openai", P(15000), P(120000), -1, -1, 0, 0, 0, -1, -1},
    {"gpt-5-pro-2025-10-06", "openai", P(15000), P(120000), -1, -1, 0, 0, 0, -1, -1},
    {"gpt-4-turbo", "openai", P(10000), P(30000), -1, -1, 0, 0, 0, -1, -1},
    {"gpt-4-turbo-2024-04-09", "openai", P(10000), P(30000), -1, -1, 0, 0, 0, -1, -1},
    {"gpt-4", "openai", P(30000), P(60000), -1, -1, 0, 0, 0, -1, -1},
    {"gpt-3.5-turbo", "openai", P(500), P(1500), -1, -1, 0, 0, 0, -1, -1},
    {"gpt-3.5-turbo-0125", "openai", P(500), P(1500), -1, -1, 0, 0, 0, -1, -1},
    {"text-embedding-3-small", "openai", P(20), P(0), -1, -1, 0, 0, 0, -1, -1},
    {"text-embedding-3-large", "openai", P(130), P(0), -1, -1, 0, 0, 0, -1, -1},
    {"text-embedding-ada-002", "openai", P(100), P(0), -1, -1, 0, 0, 0, -1, -1},
    {"claude-3-haiku-20240307", "anthropic", P(250), P(1250), P(30), P(300), 0, 0, 0, -1, -1},
    {"claude-3-opus-20240229", "anthropic", P(15000), P(75000), P(1500), P(18750), 0, 0, 0, -1, -1},
    {"claude-3-opus-latest", "anthropic", P(15000), P(75000), P(1500), P(18750), 0, 0, 0, -1, -1},
    {"claude-3-5-haiku-20241022", "anthropic", P(800), P(4000), P(80), P(1000), 0, 0, 0, -1, -1},
    {"claude-3-5-haiku-latest", "anthropic", P(800), P(4000), P(80), P(1000), 0, 0, 0, -1, -1},
    {"claude-3-5-sonnet-20240620", "anthropic", P(3000), P(15000), P(300), P(3750), 0, 0, 0, -1, -1},
    {"claude-3-5-sonnet-20241022", "anthropic", P(3000), P(15000), P(300), P(3750), 0, 0, 0, -1, -1},
    {"claude-3-5-sonnet-latest", "anthropic", P(3000), P(15000), P(300), P(3750), 0, 0, 0, -1, -1},
    {"claude-3-7-sonnet-20250219", "anthropic", P(3000), P(15000), P(300), P(3750), 0, 0, 0, -1, -1},
    {"claude-3-7-sonnet-latest", "anthropic", P(3000), P(15000), P(300), P(3750), 0, 0, 0, -1, -1},
    {"claude-sonnet-4-20250514", "anthropic", P(3000), P(15000), P(300), P(3750), 200000, P(6000), P(22500), P(600), P(7500)},
    {"claude-sonnet-4-0", "anthropic", P(3000), P(15000), P(300), P(3750), 200000, P(6000), P(22500), P(600), P(7500)},
    {"claude-4-sonnet-20250514", "anthropic", P(3000), P(15000), P(300), P(3750), 200000, P(6000), P(22500), P(600), P(7500)},
    {"claude-sonnet-4-5", "anthropic", P(3000), P(15000), P(300), P(3750), 200000, P(6000), P(22500), P(600), P(7500)},
    {"claude-sonnet-4-5-20250929", "anthropic", P(3000), P(15000), P(300), P(3750), 200000, P(6000), P(22500), P(600), P(7500)},
    {"claude-sonnet-4-6", "anthropic", P(3000), P(15000), P(300), P(3750), 0, 0, 0, -1, -1},
    {"claude-opus-4-20250514", "anthropic", P(15000), P(75000), P(1500), P(18750), 0, 0, 0, -1, -1},
    {"claude-opus-4-0", "anthropic", P(15000), P(75000), P(1500), P(18750), 0, 0, 0, -1, -1},
    {"claude-4-opus-20250514", "anthropic", P(15000), P(75000), P(1500), P(18750), 0, 0, 0, -1, -1},
    {"claude-opus-4-1", "anthropic", P(15000), P(75000), P(1500), P(18750), 0, 0, 0, -1, -1},
    {"claude-opus-4-1-20250805", "anthropic", P(15000), P(75000), P(1500), P(18750), 0, 0, 0, -1, -1},
    {"claude-opus-4-5", "anthropic", P(5000), P(25000), P(500), P(6250), 0, 0, 0, -1, -1},
    {"claude-opus-4-5-20251101", "anthropic", P(5000), P(25000), P(500), P(6250), 0, 0, 0, -1, -1},
    {"claude-opus-4-6", "anthropic", P(5000), P(25000), P(500), P(6250), 0, 0, 0, -1, -1},
    {"claude-opus-4-6-20260205", "anthropic", P(5000), P(25000), P(500), P(6250), 0, 0, 0, -1, -1},
    {"claude-haiku-4-5", "anthropic", P(1000), P(5000), P(100), P(1250), 0, 0, 0, -1, -1},
    {"claude-haiku-4-5-20251001", "anthropic", P(1000), P(5000), P(100), P(1250), 0, 0, 0, -1, -1},

    {NULL, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0}};

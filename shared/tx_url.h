/*
 * Torrix URL parsing and the /proxy target allowlist.
 *
 * Only absolute http and https URLs are accepted.  Userinfo ("user@host"),
 * fragments, control characters, spaces and backslashes are refused: they
 * are the classic ways an allowlist check and the HTTP client disagree about
 * which host a URL names.
 *
 * An allowlist entry is a URL pattern:
 *
 *     https://api.openai.com          any path on that host, port 443
 *     https://STAR.openai.azure.com   any subdomain (not the bare domain),
 *                                     STAR being a literal '*'
 *     http://127.0.0.1:9000/v1/       that host and port, paths under /v1/
 *
 * Scheme and port must match exactly (default ports 80/443); the host
 * compares case-insensitively; a path prefix matches on a segment boundary
 * ("/v1" allows "/v1" and "/v1/x", not "/v10").
 *
 * Also refused by tx_url_parse: a path with "." or ".." segments (also as
 * %2e), encoded '/' or '\' (%2f, %5c), a host with characters other than
 * [A-Za-z0-9._-], an empty label, or over 255 bytes, an empty or zero port.
 * Pattern lines are trimmed of blanks and a trailing '\r'; a pattern with a
 * query never matches.
 */

#ifndef TX_URL_H
#define TX_URL_H


#include "tx_core.h"


typedef struct {
    int      https;    /* 1 https, 0 http */
    tx_str_t host;     /* without brackets for IPv6 literals */
    uint16_t port;     /* explicit or default */
    int      port_set; /* port was written in the URL */
    tx_str_t path;     /* from the first '/', query excluded; may be "" */
    tx_str_t query;    /* after '?', may be empty */
    tx_str_t hostport; /* the authority as written (for Host:) */
} tx_url_t;


/* Parses an absolute URL; borrowed spans into s.  TX_OK or TX_ERROR. */
int tx_url_parse(const uint8_t *s, size_t len, tx_url_t *u);

/*
 * Returns 1 when the target URL is allowed by one of the '\n'-separated
 * patterns, else 0.  Malformed patterns never match.
 */
int tx_url_allowed(const tx_url_t *target, const tx_str_t *patterns);

/* The default allowlist: well-known provider API hosts ('\n'-separated). */
extern const char tx_url_default_targets[];


#endif /* TX_URL_H */

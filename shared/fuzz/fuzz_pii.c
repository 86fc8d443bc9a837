/*
 * libFuzzer: PII masking.
 *
 * For any input: masking the output again finds nothing and changes
 * nothing; quotes and escape sequences are kept in order; for JSON-looking
 * input everything outside strings is kept byte for byte; the counts add up.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tx_pii.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int
tx_fuzz_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}


/* the same test as tx_pii.c's */

static int
tx_fuzz_json(const uint8_t *s, size_t len)
{
    size_t i, j, e;

    for (i = 0; i < len && tx_fuzz_ws(s[i]); i++) {
        /* void */
    }

    for (e = len; e > i && tx_fuzz_ws(s[e - 1]); e--) {
        /* void */
    }

    if (e - i < 2 || (s[i] != '{' && s[i] != '[')
        || (s[e - 1] != '}' && s[e - 1] != ']'))
    {
        return 0;
    }

    for (j = i + 1; j < e && tx_fuzz_ws(s[j]); j++) {
        /* void */
    }

    return s[j] != '\0' && strchr("\"{}[]-0123456789tfn", s[j]) != NULL;
}


/* quotes, escapes (backslash and the byte after it), and in JSON mode all
   bytes outside strings */

static size_t
tx_fuzz_skeleton(const uint8_t *s, size_t len, int json, uint8_t *out)
{
    int    in_str;
    size_t i, n;

    in_str = 0;
    n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '\\') {
            out[n++] = s[i];

            if (i + 1 < len) {
                out[n++] = s[++i];
            }

            continue;
        }

        if (s[i] == '"') {
            out[n++] = s[i];
            in_str = !in_str;
            continue;
        }

        if (json && !in_str) {
            out[n++] = s[i];
        }
    }

    return n;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int              json, k;
    char             err[128];
    size_t           n1, n2;
    unsigned         sum;
    uint8_t         *copy, *sk1, *sk2;
    tx_pii_result_t  res, again;
    static tx_pii_t *pii;

    if (pii == NULL) {
        if (tx_pii_create(&pii, TX_PII_ALL, err, sizeof(err)) != TX_OK
            || tx_pii_add_rule(pii, "employee", "EMP-[0-9]{6}", err,
                               sizeof(err))
                   != TX_OK)
        {
            abort();
        }
    }

    /* an exact-size heap copy, so ASan sees any read past the end */
    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);

    if (tx_pii_mask(pii, copy, size, &res, err, sizeof(err)) != TX_OK) {
        abort();
    }

    if (res.data == NULL || res.data[res.len] != '\0') {
        abort();
    }

    sum = 0;

    for (k = 0; k < tx_pii_kinds(pii); k++) {
        if (res.distinct[k] > res.found[k]) {
            abort();
        }

        sum += res.found[k];
    }

    if (sum != res.total
        || (res.total == 0
            && (res.len != size || memcmp(res.data, copy, size) != 0)))
    {
        abort();
    }

    /* idempotent */

    if (tx_pii_mask(pii, res.data, res.len, &again, err, sizeof(err)) != TX_OK)
    {
        abort();
    }

    if (again.total != 0 || again.len != res.len
        || memcmp(again.data, res.data, res.len) != 0)
    {
        abort();
    }

    tx_pii_result_free(&again);

    /* the structure is kept */

    json = tx_fuzz_json(copy, size);
    sk1 = malloc(size + 1);
    sk2 = malloc(res.len + 1);

    if (sk1 && sk2) {
        n1 = tx_fuzz_skeleton(copy, size, json, sk1);
        n2 = tx_fuzz_skeleton(res.data, res.len, json, sk2);

        if (n1 != n2 || memcmp(sk1, sk2, n1) != 0) {
            abort();
        }
    }

    free(sk1);
    free(sk2);
    tx_pii_result_free(&res);
    free(copy);

    return 0;
}

/*
 * libFuzzer: sealed blobs and seal keys.
 *
 * The input is given whole to tx_unseal() under a fixed key and AD (the
 * blob framing: version, alg, nonce, tag) and to tx_seal_key_parse().  A
 * key that parses is written back as hex and base64 and must parse to the
 * same bytes; a fixed message and the input itself are sealed under it with
 * each algorithm and must open to the same bytes, and no longer open once
 * truncated, changed by one byte or given another AD.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "tx_seal.h"


int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


#define TX_FUZZ_AD     "openai"
#define TX_FUZZ_AD_LEN (sizeof(TX_FUZZ_AD) - 1)
#define TX_FUZZ_MSG    "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz"


/* the key the seed corpus blobs are sealed under: bytes 0x00..0x1f */
static uint8_t tx_fuzz_key[TX_SEAL_KEY_LEN];


static int
tx_fuzz_zero(const uint8_t *p, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }

    return 1;
}


/* Parses an exact-size heap copy of text (ASan sees a read past its end). */
static int
tx_fuzz_key_parse(const char *text, size_t len, uint8_t key[TX_SEAL_KEY_LEN])
{
    int   rc;
    char *copy;

    copy = malloc(len ? len : 1);
    if (copy == NULL) {
        abort();
    }

    memcpy(copy, text, len);
    memset(key, 0xa5, TX_SEAL_KEY_LEN);

    rc = tx_seal_key_parse(copy, len, key);

    if (rc != TX_OK && (rc != TX_ERROR || !tx_fuzz_zero(key, TX_SEAL_KEY_LEN)))
    {
        abort();
    }

    free(copy);

    return rc;
}


/* tx_unseal() into an exact-size heap buffer; checks the error contract. */
static int
tx_fuzz_unseal(const uint8_t key[TX_SEAL_KEY_LEN], const uint8_t *ad,
               size_t adlen, const uint8_t *c, size_t clen, uint8_t **m,
               size_t *mlen)
{
    int      rc;
    size_t   cap;
    uint8_t *out;

    cap = clen ? clen : 1;

    out = calloc(1, cap);
    if (out == NULL) {
        abort();
    }

    *mlen = (size_t) -1;

    rc = tx_unseal(key, ad, adlen, c, clen, out, clen, mlen);

    if (rc == TX_OK) {
        if (clen < 2
            || *mlen
                   != clen - 2 - (c[1] == TX_SEAL_AES256GCM ? 12 : 24)
                          - TX_SEAL_TAG_LEN
            || (c[1] != TX_SEAL_AES256GCM && c[1] != TX_SEAL_XCHACHA))
        {
            abort();
        }

        *m = out;
        return TX_OK;
    }

    if (rc != TX_ERROR || *mlen != 0 || !tx_fuzz_zero(out, cap)) {
        abort();
    }

    free(out);
    *m = NULL;

    return rc;
}


/* Seals m under key with alg; every check of the round trip. */
static void
tx_fuzz_round_trip(int alg, const uint8_t key[TX_SEAL_KEY_LEN],
                   const uint8_t *m, size_t mlen, size_t pick)
{
    int      rc;
    size_t   cap, clen, olen, i;
    uint8_t *c, *o;

    cap = tx_seal_len(mlen);

    c = malloc(cap);
    if (c == NULL) {
        abort();
    }

    rc = tx_seal_alg(alg, key, (const uint8_t *) TX_FUZZ_AD, TX_FUZZ_AD_LEN, m,
                     mlen, c, cap, &clen);

    if (rc == TX_DECLINED && alg == TX_SEAL_AES256GCM
        && !crypto_aead_aes256gcm_is_available())
    {
        free(c);
        return;
    }

    if (rc != TX_OK || clen > cap || c[0] != TX_SEAL_VERSION || c[1] != alg) {
        abort();
    }

    /* one byte short of what it needs: refused */

    if (tx_seal_alg(alg, key, (const uint8_t *) TX_FUZZ_AD, TX_FUZZ_AD_LEN, m,
                    mlen, c, clen - 1, &olen)
        != TX_ERROR)
    {
        abort();
    }

    /* sealed again: the refused call may have written to c */

    rc = tx_seal_alg(alg, key, (const uint8_t *) TX_FUZZ_AD, TX_FUZZ_AD_LEN, m,
                     mlen, c, cap, &clen);
    if (rc != TX_OK) {
        abort();
    }

    if (tx_fuzz_unseal(key, (const uint8_t *) TX_FUZZ_AD, TX_FUZZ_AD_LEN, c,
                       clen, &o, &olen)
        != TX_OK)
    {
        abort();
    }

    if (olen != mlen || (mlen && memcmp(o, m, mlen) != 0)) {
        abort();
    }

    free(o);

    /* another AD */

    if (tx_fuzz_unseal(key, (const uint8_t *) TX_FUZZ_AD, TX_FUZZ_AD_LEN - 1, c,
                       clen, &o, &olen)
        != TX_ERROR)
    {
        abort();
    }

    /* truncated */

    if (tx_fuzz_unseal(key, (const uint8_t *) TX_FUZZ_AD, TX_FUZZ_AD_LEN, c,
                       pick % clen, &o, &olen)
        != TX_ERROR)
    {
        abort();
    }

    /* one byte changed */

    i = pick % clen;
    c[i] ^= (uint8_t) (1 + pick / clen % 255);

    if (tx_fuzz_unseal(key, (const uint8_t *) TX_FUZZ_AD, TX_FUZZ_AD_LEN, c,
                       clen, &o, &olen)
        != TX_ERROR)
    {
        abort();
    }

    free(c);
}


/* The key written back as hex and as the four base64 forms. */
static void
tx_fuzz_key_forms(const uint8_t key[TX_SEAL_KEY_LEN])
{
    int     i;
    char    text[2 * TX_SEAL_KEY_LEN + 1];
    uint8_t again[TX_SEAL_KEY_LEN];

    static const int variants[] = {sodium_base64_VARIANT_ORIGINAL,
                                   sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                                   sodium_base64_VARIANT_URLSAFE,
                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING};

    sodium_bin2hex(text, sizeof(text), key, TX_SEAL_KEY_LEN);

    if (tx_fuzz_key_parse(text, 2 * TX_SEAL_KEY_LEN, again) != TX_OK
        || memcmp(again, key, TX_SEAL_KEY_LEN) != 0)
    {
        abort();
    }

    for (i = 0; i < (int) (sizeof(variants) / sizeof(variants[0])); i++) {
        sodium_bin2base64(text, sizeof(text), key, TX_SEAL_KEY_LEN,
                          variants[i]);

        if (tx_fuzz_key_parse(text, strlen(text), again) != TX_OK
            || memcmp(again, key, TX_SEAL_KEY_LEN) != 0)
        {
            abort();
        }
    }
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    size_t i;

    if (sodium_init() < 0) {
        abort();
    }

    for (i = 0; i < TX_SEAL_KEY_LEN; i++) {
        tx_fuzz_key[i] = (uint8_t) i;
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t   i, pick, mlen;
    uint8_t *copy, *m;
    uint8_t  key[TX_SEAL_KEY_LEN];

    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);

    /* the blob parser: the seeds' blobs open, anything else must not */

    if (tx_fuzz_unseal(tx_fuzz_key, (const uint8_t *) TX_FUZZ_AD,
                       TX_FUZZ_AD_LEN, copy, size, &m, &mlen)
        == TX_OK)
    {
        free(m);
    }

    if (tx_fuzz_key_parse((const char *) data, size, key) == TX_OK) {
        pick = 0;

        for (i = 0; i < size; i++) {
            pick = pick * 31 + data[i];
        }

        tx_fuzz_key_forms(key);

        tx_fuzz_round_trip(TX_SEAL_AES256GCM, key,
                           (const uint8_t *) TX_FUZZ_MSG,
                           sizeof(TX_FUZZ_MSG) - 1, pick);
        tx_fuzz_round_trip(TX_SEAL_XCHACHA, key, (const uint8_t *) TX_FUZZ_MSG,
                           sizeof(TX_FUZZ_MSG) - 1, pick);
        tx_fuzz_round_trip(tx_seal_default_alg(), key, copy, size, pick);
    }

    free(copy);

    return 0;
}

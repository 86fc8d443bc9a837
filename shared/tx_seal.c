/*
 * Torrix sealed blobs (see tx_seal.h).
 */

#include <string.h>

#include <sodium.h>

#include "tx_seal.h"


#define TX_SEAL_HDR_LEN 2


static size_t
tx_seal_nonce_len(int alg)
{
    switch (alg) {
    case TX_SEAL_AES256GCM:
        return crypto_aead_aes256gcm_NPUBBYTES;

    case TX_SEAL_XCHACHA:
        return crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    }

    return 0;
}


int
tx_seal_default_alg(void)
{
    return crypto_aead_aes256gcm_is_available() ? TX_SEAL_AES256GCM
                                                : TX_SEAL_XCHACHA;
}


const char *
tx_seal_alg_name(int alg)
{
    switch (alg) {
    case TX_SEAL_AES256GCM:
        return "aes256gcm";

    case TX_SEAL_XCHACHA:
        return "xchacha20poly1305";
    }

    return "unknown";
}


int
tx_seal_alg(int alg, const uint8_t key[TX_SEAL_KEY_LEN], const uint8_t *ad,
            size_t adlen, const uint8_t *m, size_t mlen, uint8_t *out,
            size_t outcap, size_t *outlen)
{
    int                rc;
    size_t             nlen;
    uint8_t           *nonce, *c;
    unsigned long long clen;

    nlen = tx_seal_nonce_len(alg);

    if (nlen == 0
        || (alg == TX_SEAL_AES256GCM && !crypto_aead_aes256gcm_is_available()))
    {
        return TX_DECLINED;
    }

    if (outcap < TX_SEAL_HDR_LEN + nlen + TX_SEAL_TAG_LEN
        || mlen > outcap - TX_SEAL_HDR_LEN - nlen - TX_SEAL_TAG_LEN)
    {
        return TX_ERROR;
    }

    out[0] = TX_SEAL_VERSION;
    out[1] = (uint8_t) alg;
    nonce = out + TX_SEAL_HDR_LEN;
    c = nonce + nlen;

    randombytes_buf(nonce, nlen);

    if (alg == TX_SEAL_AES256GCM) {
        rc = crypto_aead_aes256gcm_encrypt(c, &clen, m, mlen, ad, adlen, NULL,
                                           nonce, key);

    } else {
        rc =
            crypto_aead_xchacha20poly1305_ietf_encrypt(c, &clen, m, mlen, ad,
                                                       adlen, NULL, nonce, key);
    }

    if (rc != 0) {
        sodium_memzero(out, outcap);
        return TX_ERROR;
    }

    *outlen = TX_SEAL_HDR_LEN + nlen + (size_t) clen;

    return TX_OK;
}


int
tx_seal(const uint8_t key[TX_SEAL_KEY_LEN], const uint8_t *ad, size_t adlen,
        const uint8_t *m, size_t mlen, uint8_t *out, size_t outcap,
        size_t *outlen)
{
    return tx_seal_alg(tx_seal_default_alg(), key, ad, adlen, m, mlen, out,
                       outcap, outlen);
}


int
tx_unseal(const uint8_t key[TX_SEAL_KEY_LEN], const uint8_t *ad, size_t adlen,
          const uint8_t *c, size_t clen, uint8_t *out, size_t outcap,
          size_t *outlen)
{
    int                rc, alg;
    size_t             nlen, mlen;
    const uint8_t     *nonce, *ct;
    unsigned long long n;

    *outlen = 0;

    if (clen < TX_SEAL_HDR_LEN || c[0] != TX_SEAL_VERSION) {
        return TX_ERROR;
    }

    alg = c[1];
    nlen = tx_seal_nonce_len(alg);

    if (nlen == 0 || clen < TX_SEAL_HDR_LEN + nlen + TX_SEAL_TAG_LEN) {
        return TX_ERROR;
    }

    mlen = clen - TX_SEAL_HDR_LEN - nlen - TX_SEAL_TAG_LEN;

    if (outcap < mlen) {
        return TX_ERROR;
    }

    nonce = c + TX_SEAL_HDR_LEN;
    ct = nonce + nlen;

    if (alg == TX_SEAL_AES256GCM) {
        if (!crypto_aead_aes256gcm_is_available()) {
            return TX_ERROR;
        }

        rc = crypto_aead_aes256gcm_decrypt(out, &n, NULL, ct,
                                           mlen + TX_SEAL_TAG_LEN, ad, adlen,
                                           nonce, key);

    } else {
        rc = crypto_aead_xchacha20poly1305_ietf_decrypt(out, &n, NULL, ct,
                                                        mlen + TX_SEAL_TAG_LEN,
                                                        ad, adlen, nonce, key);
    }

    if (rc != 0 || n != mlen) {
        sodium_memzero(out, mlen);
        return TX_ERROR;
    }

    *outlen = mlen;

    return TX_OK;
}


int
tx_seal_key_parse(const char *text, size_t len, uint8_t key[TX_SEAL_KEY_LEN])
{
    int         variant;
    size_t      i, n;
    const char *end, *b64end;

    while (len > 0
           && (text[0] == ' ' || text[0] == '\t' || text[0] == '\n'
               || text[0] == '\r'))
    {
        text++;
        len--;
    }

    while (len > 0
           && (text[len - 1] == ' ' || text[len - 1] == '\t'
               || text[len - 1] == '\n' || text[len - 1] == '\r'))
    {
        len--;
    }

    if (len == 2 * TX_SEAL_KEY_LEN) {
        if (tx_unhex(text, len, key) == TX_OK) {
            return TX_OK;
        }

        goto failed;
    }

    if (len != 43 && len != 44) {
        goto failed;
    }

    if (len == 44 && text[43] != '=') {
        goto failed;
    }

    variant = 0;

    for (i = 0; i < len; i++) {
        if (text[i] == '-' || text[i] == '_') {
            variant = 1;
        }
    }

    if (variant) {
        variant = len == 44 ? sodium_base64_VARIANT_URLSAFE
                            : sodium_base64_VARIANT_URLSAFE_NO_PADDING;

    } else {
        variant = len == 44 ? sodium_base64_VARIANT_ORIGINAL
                            : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
    }

    end = text + len;

    if (sodium_base642bin(key, TX_SEAL_KEY_LEN, text, len, NULL, &n, &b64end,
                          variant)
            != 0
        || n != TX_SEAL_KEY_LEN || b64end != end)
    {
        goto failed;
    }

    return TX_OK;

failed:

    sodium_memzero(key, TX_SEAL_KEY_LEN);

    return TX_ERROR;
}

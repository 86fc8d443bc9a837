/*
 * Torrix sealed blobs: authenticated encryption of small secrets (provider
 * credentials) under a 32-byte key, shared by torrix-cp (which seals them
 * into its store and into the snapshot) and the nginx module (which opens
 * the snapshot's blobs in memory).
 *
 * Format of a sealed blob (all lengths in bytes):
 *
 *   version (1) = 1 | alg (1) | nonce | ciphertext (mlen) | tag (16)
 *
 *   alg 1  TX_SEAL_AES256GCM  crypto_aead_aes256gcm, 12-byte nonce
 *   alg 2  TX_SEAL_XCHACHA    crypto_aead_xchacha20poly1305_ietf, 24-byte
 *                             nonce
 *
 * The nonce is random.  The associated data (AD) is not stored: the caller
 * binds the blob to its context (a provider name) by giving the same AD to
 * tx_seal() and tx_unseal(); a blob moved to another provider does not open.
 * A changed version or alg byte makes tx_unseal() fail.
 *
 * tx_seal() uses AES-256-GCM where the CPU has AES-NI + PCLMUL
 * (crypto_aead_aes256gcm_is_available()), XChaCha20-Poly1305 elsewhere;
 * tx_unseal() reads both, except that an AES-GCM blob cannot be opened on a
 * machine without AES-NI (TX_ERROR, never a wrong plaintext).
 *
 * libsodium's sodium_init() must have run before any function here.
 */

#ifndef TX_SEAL_H
#define TX_SEAL_H


#include "tx_core.h"


#define TX_SEAL_KEY_LEN 32

#define TX_SEAL_VERSION   1
#define TX_SEAL_AES256GCM 1 /* when crypto_aead_aes256gcm_is_available() */
#define TX_SEAL_XCHACHA   2 /* crypto_aead_xchacha20poly1305_ietf otherwise */

#define TX_SEAL_TAG_LEN      16
#define TX_SEAL_OVERHEAD_MAX (2 + 24 + 16)

/* Length of the sealed form of an mlen-byte message (at most). */
#define tx_seal_len(mlen) ((size_t) (mlen) + TX_SEAL_OVERHEAD_MAX)


/*
 * Seals m (mlen bytes) under key with the associated data ad (adlen bytes,
 * may be NULL when 0) into out (outcap bytes; tx_seal_len(mlen) is always
 * enough), setting *outlen.  Returns TX_OK, or TX_ERROR when out is too
 * small.
 */
int tx_seal(const uint8_t key[TX_SEAL_KEY_LEN], const uint8_t *ad, size_t adlen,
            const uint8_t *m, size_t mlen, uint8_t *out, size_t outcap,
            size_t *outlen);

/*
 * tx_seal() with a chosen algorithm (TX_SEAL_AES256GCM or TX_SEAL_XCHACHA).
 * Returns TX_OK, TX_DECLINED when alg is not available on this machine
 * (AES-GCM without AES-NI) or unknown, TX_ERROR when out is too small.
 */
int tx_seal_alg(int alg, const uint8_t key[TX_SEAL_KEY_LEN], const uint8_t *ad,
                size_t adlen, const uint8_t *m, size_t mlen, uint8_t *out,
                size_t outcap, size_t *outlen);

/*
 * Opens the sealed blob c (clen bytes) under key and ad into out (outcap
 * bytes; clen is always enough), setting *outlen.  Returns TX_OK, or
 * TX_ERROR for a wrong key or AD, a changed byte, a truncated blob, an
 * unknown version or algorithm, an AES-GCM blob on a machine without
 * AES-NI, or a too small out; out holds nothing of value then (zeroed).
 */
int tx_unseal(const uint8_t key[TX_SEAL_KEY_LEN], const uint8_t *ad,
              size_t adlen, const uint8_t *c, size_t clen, uint8_t *out,
              size_t outcap, size_t *outlen);

/* The algorithm tx_seal() uses on this machine (TX_SEAL_*). */
int tx_seal_default_alg(void);

/* "aes256gcm", "xchacha20poly1305" or "unknown". */
const char *tx_seal_alg_name(int alg);

/*
 * Parses a key from text (len bytes, not necessarily NUL-terminated):
 * 64 hex characters (either case) or the base64 of 32 bytes, standard or
 * URL-safe alphabet, 43 characters or 44 with the '=' padding.  Whitespace
 * around the key (a trailing newline of a key file) is ignored.  Returns
 * TX_OK, or TX_ERROR (key then zeroed).
 */
int tx_seal_key_parse(const char *text, size_t len,
                      uint8_t key[TX_SEAL_KEY_LEN]);


#endif /* TX_SEAL_H */

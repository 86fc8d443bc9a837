/*
 * Torrix virtual keys and ids.
 *
 * A secret is "sk-torrix-" followed by 43 base64url characters (32 random
 * bytes): TX_KEY_SECRET_LEN characters in all.  It is shown once and stored
 * only as a keyed BLAKE2b-256 hash (libsodium crypto_generichash) under the
 * instance's 32-byte hash key, which torrix-cp creates at first start and
 * publishes in the snapshot (meta "hash_key") so the data plane can hash a
 * presented secret the same way.
 *
 * Public ids are a prefix ("key_", "org_", "prj_", "usr_", "adm_") and 20
 * lowercase base32 characters (100 random bits).
 */

#ifndef TX_KEY_H
#define TX_KEY_H


#include "tx_core.h"


#define TX_KEY_PREFIX      "sk-torrix-"
#define TX_KEY_PREFIX_LEN  (sizeof(TX_KEY_PREFIX) - 1)
#define TX_KEY_SECRET_LEN  (TX_KEY_PREFIX_LEN + 43)
#define TX_KEY_HASH_LEN    32
#define TX_KEY_HASHKEY_LEN 32
#define TX_ID_RAND_LEN     20
#define TX_ID_MAX_LEN      32


/*
 * Writes a new random secret and its NUL into out (TX_KEY_SECRET_LEN + 1
 * bytes).  Needs sodium_init() done.
 */
void tx_key_generate(char *out);

/*
 * Returns 1 when s has the shape of a secret (prefix, length, alphabet),
 * else 0.  Cheap: lets the data plane refuse garbage before hashing.
 */
int tx_key_shape_ok(const uint8_t *s, size_t len);

/* out = BLAKE2b-256 keyed with hash_key over the secret bytes. */
int tx_key_hash(const uint8_t *hash_key, const uint8_t *secret, size_t len,
                uint8_t *out);

/*
 * Writes prefix + 20 random base32 characters + NUL into out, which must
 * hold strlen(prefix) + 21 bytes.
 */
void tx_id_generate(const char *prefix, char *out);

/*
 * A 16-byte run id: 48-bit big-endian unix milliseconds then 10 random
 * bytes, so byte order is time order.  `rnd` supplies the 10 random bytes
 * (the caller's generator: libsodium in torrix-cp, a per-worker PRNG in
 * nginx).
 */
void tx_run_id_make(uint8_t *out, int64_t unix_ms, const uint8_t *rnd);

/* 32 lowercase hex characters + NUL into out (33 bytes). */
void tx_run_id_hex(const uint8_t *id, char *out);

/* Parses 32 hex characters; TX_OK or TX_ERROR. */
int tx_run_id_parse(const char *hex, size_t len, uint8_t *out);


#endif /* TX_KEY_H */

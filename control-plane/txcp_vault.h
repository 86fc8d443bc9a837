/*
 * torrix-cp credential vault: provider credentials and webhook signing
 * secrets are never stored in plaintext, provider credentials never
 * published in plaintext.
 *
 * Two keys, both 32 bytes held in sodium_malloc memory:
 *
 *   master key     seals credentials in the store (record field
 *                  "<name>_sealed" = base64 of tx_seal(), AD = the record
 *                  id: providers' "api_key_sealed" with the provider name,
 *                  webhooks' "secret_sealed" with the webhook id) and the
 *                  store's check value
 *                  (meta "vault_check" = tx_seal() of TXCP_VAULT_CHECK with
 *                  AD "torrix-vault-check").  Its source, first found wins:
 *                  the master_key_file option (file), env TORRIX_MASTER_KEY
 *                  (env), $DATA/master.key (generated: torrix-cp creates it,
 *                  0600, on the first start of a store that has no check
 *                  value yet).  Files hold the key as 64 hex characters or
 *                  base64 (tx_seal_key_parse()); torrix-cp writes
 *                  64 lowercase hex characters and "\n".
 *   data-plane key $DATA/dataplane.key (64 lowercase hex characters and
 *                  "\n", mode 0640, group of dataplane_user): the snapshot's
 *                  provider records carry the credential as TX_PRV_SEALED =
 *                  tx_seal() under this key with AD = the provider name.
 *                  nginx's master reads the file at start.
 *
 * Store meta also holds "vault_rotated_at" (int64 LE unix microseconds) of
 * the last rotation.
 */

#ifndef TXCP_VAULT_H
#define TXCP_VAULT_H


#include "tx_seal.h"

#include "txcp.h"


#define TXCP_VAULT_SRC_FILE 1 /* master_key_file */
#define TXCP_VAULT_SRC_ENV  2 /* TORRIX_MASTER_KEY */
#define TXCP_VAULT_SRC_DATA 3 /* $DATA/master.key, made by torrix-cp */

#define TXCP_VAULT_ENV      "TORRIX_MASTER_KEY"
#define TXCP_VAULT_CHECK    "torrix vault check v1"
#define TXCP_VAULT_CHECK_AD "torrix-vault-check"


/*
 * Loads the master key from its source (see above).  When the source is
 * $DATA/master.key and the file is missing: with `create`, makes a random
 * key in memory that txcp_vault_store_open() saves once it finds a store
 * without a check value; without it, fails.  With `create`, also loads
 * $DATA/dataplane.key, creating it on first start.  Returns TX_OK or
 * TX_ERROR (logged, naming the source; never the key).
 */
int txcp_vault_init(int create);

/* Returns 1 once txcp_vault_init() succeeded, else 0. */
int txcp_vault_loaded(void);

/* Wipes and frees both keys. */
void txcp_vault_free(void);

/*
 * Called by txcp_store_open() inside its write txn, before any migration:
 * opens the store's check value with the master key, or, on a store that
 * has none yet, writes it (and saves a generated master key to
 * $DATA/master.key first).  Completes or discards a file rotation that a
 * crash interrupted (see txcp_vault_rotate()).  Returns TX_OK, or TX_ERROR
 * after logging an error that names the key's source ("master key from
 * TORRIX_MASTER_KEY does not open this store: wrong key?"): the caller
 * refuses to start.
 */
int txcp_vault_store_open(MDB_txn *txn);

/*
 * Migration step (txcp_store_migrate(), schema 3 -> 4 and 4 -> 5): seals
 * every plaintext credential in txn, providers' "api_key" and webhooks'
 * "secret"; values already sealed are left alone, so running it again is
 * harmless.  Needs the master key (TX_ERROR, logged, when it is not loaded:
 * offline subcommands do not load it).
 */
int txcp_vault_migrate(MDB_txn *txn);

/*
 * Moves the plaintext string member `name` of rec into "<name>_sealed"
 * (base64 of tx_seal() under the master key, AD = ad), wiping the
 * plaintext.  A missing or null member removes both.  Returns TX_OK or
 * TX_ERROR (allocation, no key).
 */
int txcp_vault_seal_member(cJSON *rec, const char *name, const char *ad);

/*
 * The reverse, for a transient copy (an audit diff): adds the plaintext of
 * "<name>_sealed" as member `name`.  The caller wipes it with
 * txcp_vault_wipe_member() before deleting rec.  TX_OK, TX_DECLINED (no
 * sealed member) or TX_ERROR (does not open, logged).
 */
int txcp_vault_open_member(cJSON *rec, const char *name, const char *ad);

/* Zeroes the string member `name` of rec in place (absent is fine). */
void txcp_vault_wipe_member(cJSON *rec, const char *name);

/*
 * Opens a store value (base64 of tx_seal() under the master key, AD = ad).
 * Returns the NUL-terminated plaintext in sodium_malloc memory that the
 * caller releases with txcp_vault_strfree(), or NULL (logged) when it does
 * not open.
 */
char *txcp_vault_open_b64(const char *b64, const char *ad);

/* Copies s into sodium_malloc memory; NULL on allocation failure. */
char *txcp_vault_strdup(const char *s);

/* Zeroes and frees a secret from this API (NULL is fine). */
void txcp_vault_strfree(char *s);

/*
 * Seals m (mlen bytes) under the data-plane key with AD ad (a provider
 * name) into out (tx_seal_len(mlen) bytes suffice).  Returns TX_OK, or
 * TX_ERROR (no data-plane key loaded, out too small).
 */
int txcp_vault_dp_seal(const char *ad, const uint8_t *m, size_t mlen,
                       uint8_t *out, size_t outcap, size_t *outlen);

/*
 * Returns 1 when blob (a TX_PRV_SEALED value) opens under the data-plane
 * key and ad to exactly m, else 0: the publisher then keeps the blob
 * instead of resealing with a new nonce.
 */
int txcp_vault_dp_same(const char *ad, const uint8_t *blob, size_t len,
                       const uint8_t *m, size_t mlen);

/*
 * Re-encrypts every sealed store value (provider credentials and webhook
 * secrets) and the check value under new_key
 * in one store write txn with its audit record ("vault.rotate", actor),
 * then swaps the key in memory.  A file source gets the new key: written
 * to "<file>.new" (0600, fsync) before the commit and renamed over the file
 * after it, so a crash leaves either key findable (txcp_vault_store_open()
 * finishes the rename).  *count gets the number of values resealed.
 * Returns TX_OK, or TX_ERROR with a message in err (nothing changed unless
 * the final rename failed, which err then says).
 */
int txcp_vault_rotate(const uint8_t new_key[TX_SEAL_KEY_LEN], const char *actor,
                      size_t *count, char *err, size_t errlen);

/*
 * `torrix-cp vault rotate [--new-key-file F] [--data DIR] [--config FILE]`
 * with torrix-cp stopped: rotates to the key in F, or to a random key when
 * the master key is in a file.  Exit 0, 1 (refused: store in use, env key
 * without --new-key-file, bad key file, wrong key) or 2 (failure).
 */
int txcp_vault_cli(int argc, char **argv);

/* Path of the data-plane key file into buf. */
void txcp_vault_dp_path(char *buf, size_t len);


#endif /* TXCP_VAULT_H */

/*
 * torrix-cp REST API handlers (under /api/v1) and the provider/settings
 * model they share with the publisher.
 *
 * Every handler takes the request (txcp_http.h), sets r->status and
 * r->resp (or calls txcp_http_error) and returns nothing.  Writes happen in
 * one store txn together with their audit record, then are published.
 */

#ifndef TXCP_API_H
#define TXCP_API_H


#include "txcp.h"
#include "txcp_http.h"


/*
 * The merged (env + store) view of one provider.  Strings are borrowed.
 * The credential is never here in plaintext: txcp_provider_api_key()
 * opens it.
 */
typedef struct {
    const char *name;
    const char *kind; /* "openai", "anthropic", "compat", "ollama" */
    const char *base_url;
    const char *api_key_sealed; /* stored credential (txcp_vault.h), or NULL */
    const char *api_key_env;    /* built-in: env credential, or NULL */
    int         api_key_set;    /* one of them is there */
    const char *source;         /* "store", "env" or "default" */
    int         builtin;
} txcp_provider_t;


/* Captures the provider env variables (once, at start). */
int txcp_providers_init(void);

/* Frees what txcp_providers_init() captured. */
void txcp_providers_free(void);

/*
 * Fills *p for provider name from the store record (read in txn; returned
 * in *rec, the caller deletes it) merged over env and defaults.  Returns
 * TX_OK, or TX_DECLINED when the provider does not exist.
 */
int txcp_provider_get(MDB_txn *txn, const char *name, cJSON **rec,
                      txcp_provider_t *p);

/*
 * The plaintext credential of p (filled by txcp_provider_get() with its
 * record still alive): the stored one, else the env one.  Returns it
 * NUL-terminated in sodium_malloc memory the caller releases with
 * txcp_vault_strfree(), or NULL when p has none or the stored one does not
 * open (logged).
 */
char *txcp_provider_api_key(const txcp_provider_t *p);

/* Built-in provider names, NULL-terminated. */
extern const char *const txcp_builtin_providers[];

/* TX_PROVIDER_* of a kind name, 0 when unknown. */
uint64_t txcp_provider_kind(const char *kind);

/*
 * Effective settings from the store: *targets ('\n'-joined, malloc'd, the
 * caller frees) and *sample_ppm.  Returns TX_OK or TX_ERROR.
 */
int txcp_settings_get(MDB_txn *txn, char **targets, uint64_t *sample_ppm);


#define TXCP_RETENTION_DEFAULT 30 /* days */

/* The instance settings that are not lists. */
typedef struct {
    uint64_t   sample_ppm;
    int        pii_masking;        /* mask stored run bodies (tx_pii) */
    int64_t    retention_days;     /* raw runs kept that long, 0 = forever */
    uint64_t   default_max_tokens; /* published for the module, 0 = none */
    tx_money_t instance_daily_cap; /* hard cap per UTC day, 0 = none */
    tx_money_t instance_soft_cap;  /* soft alert threshold, 0 = none */
} txcp_settings_t;

/* Reads the settings record (defaults where unset).  TX_OK. */
int txcp_settings_read(MDB_txn *txn, txcp_settings_t *st);


/*
 * API form of one stored record (a new tree the caller owns).  In a list,
 * NULL skips the record (filtered out).
 */
typedef cJSON *(*txcp_list_pt)(txcp_req_t *r, const cJSON *rec);

/*
 * Lists store db in id order from ?cursor= (exclusive), ?limit= records
 * that `out` keeps, as {"data":[...],"next_cursor":...}.
 */
void txcp_api_list(txcp_req_t *r, int db, txcp_list_pt out);

/*
 * Begins a read txn of the store (*txn) and opens a cursor on store db
 * (*cur) for a list handler; the caller closes both (mdb_cursor_close,
 * mdb_txn_abort).  Returns TX_OK, or TX_ERROR after replying 500 (nothing
 * is left open).
 */
int txcp_api_cursor(txcp_req_t *r, int db, MDB_txn **txn, MDB_cursor **cur);

/*
 * Replies 200 with out(r, rec) for record r->id of store db, 404 "no <what>
 * <id>" when there is none, 500 when the store fails.  The record read is
 * freed with free_rec (cJSON_Delete, or a function that wipes secrets
 * first).
 */
void txcp_api_get(txcp_req_t *r, int db, const char *what, txcp_list_pt out,
                  void (*free_rec)(cJSON *rec));

/*
 * Begins a store write txn (*txn) and reads record r->id of store db into
 * *rec, for a handler that changes it: the caller owns both (ends *txn,
 * cJSON_Delete()s *rec).  Returns TX_OK, or TX_ERROR after replying 404
 * "no <what> <id>" when there is no such record or 500 when the store
 * fails; then *txn and *rec are NULL.
 */
int txcp_api_get_for_write(txcp_req_t *r, int db, const char *what,
                           MDB_txn **txn, cJSON **rec);

/*
 * Ends a write of the API: stores rec under id in db (deletes id when rec
 * is NULL), appends the audit record (r->actor, action, target type, id,
 * diff) and commits txn.  txn is always ended: committed on TX_OK, aborted
 * on TX_ERROR (a failed write, audit append or commit, logged).  Replies
 * nothing; rec and diff stay the caller's.
 */
int txcp_api_commit(txcp_req_t *r, MDB_txn *txn, int db, const char *id,
                    const cJSON *rec, const char *action, const char *type,
                    const cJSON *diff);

/* Parses the body as a JSON object; replies 400 and returns NULL if not. */
cJSON *txcp_api_body(txcp_req_t *r);

/* health */
void txcp_api_health(txcp_req_t *r);

/* keys */
void txcp_api_keys_create(txcp_req_t *r);
void txcp_api_keys_list(txcp_req_t *r);
void txcp_api_keys_get(txcp_req_t *r);
void txcp_api_keys_patch(txcp_req_t *r);
void txcp_api_keys_revoke(txcp_req_t *r);
void txcp_api_keys_rotate(txcp_req_t *r);

/*
 * Expiry sweep: handles timers due at `now` (unix seconds): audits key
 * expiry once, drops rotated-out secrets after their grace.  Called every
 * second by the loop.
 */
void txcp_keys_sweep(int64_t now);

/*
 * `torrix-cp keys seed N --data DIR [--project ID] [--config FILE]`
 * (txcp_seed.c): creates N keys offline, the first through
 * txcp_api_keys_create() (actor "cli"), the others from its record and
 * audit diff, 10,000 per store txn, each batch published.  Refuses (exit 1)
 * a store another process has open.  Prints one JSON line
 * {"count","seconds","last_id","last_key"}: only the last secret is kept.
 * Exit 0, 1 (refused, bad --project, or snapshot left for the next start to
 * resync) or 2 (usage, store missing, write failed).
 */
int txcp_seed_cli(int argc, char **argv);

/* orgs, users, projects: r->resource says which */
void txcp_api_tenant_create(txcp_req_t *r);
void txcp_api_tenant_list(txcp_req_t *r);
void txcp_api_tenant_get(txcp_req_t *r);
void txcp_api_tenant_patch(txcp_req_t *r);
void txcp_api_tenant_delete(txcp_req_t *r);

/* providers and settings */
void txcp_api_providers_list(txcp_req_t *r);
void txcp_api_providers_get(txcp_req_t *r);
void txcp_api_providers_put(txcp_req_t *r);
void txcp_api_providers_delete(txcp_req_t *r);
void txcp_api_settings_get(txcp_req_t *r);
void txcp_api_settings_patch(txcp_req_t *r);

/* runs */
void txcp_api_runs_list(txcp_req_t *r);
void txcp_api_runs_get(txcp_req_t *r);
void txcp_api_logs(txcp_req_t *r);
void txcp_api_errors(txcp_req_t *r);
void txcp_api_user_activity_csv(txcp_req_t *r);

/* spend and usage (rollups) */
void txcp_api_spend(txcp_req_t *r);
void txcp_api_spend_scopes(txcp_req_t *r);
void txcp_api_usage_users(txcp_req_t *r);

/* webhooks and alerts */
void txcp_api_webhooks_create(txcp_req_t *r);
void txcp_api_webhooks_list(txcp_req_t *r);
void txcp_api_webhooks_get(txcp_req_t *r);
void txcp_api_webhooks_patch(txcp_req_t *r);
void txcp_api_webhooks_delete(txcp_req_t *r);
void txcp_api_alerts_list(txcp_req_t *r);

/* audit */
void txcp_api_audit_list(txcp_req_t *r);
void txcp_api_audit_verify(txcp_req_t *r);


#endif /* TXCP_API_H */

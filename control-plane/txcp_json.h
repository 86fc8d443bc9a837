/*
 * torrix-cp JSON: declarative field tables that validate API bodies and
 * apply them to store records, the store -> API output conversion, and
 * typed getters over store records.
 *
 * Store representation of a field (the record is a cJSON object keyed by
 * the API field name; names starting with '_' are internal):
 *
 *   TXCP_F_STR, TXCP_F_ENUM, TXCP_F_REF   string
 *   TXCP_F_INT                            number (integer), or null
 *   TXCP_F_BOOL                           true/false
 *   TXCP_F_MONEY                          string of int64 micro-cents
 *                                         (1e-8 USD), or null; API: a USD
 *                                         number
 *   TXCP_F_TIME                           number, unix seconds, or null;
 *                                         API: RFC 3339 string (input also
 *                                         unix seconds)
 *   TXCP_F_MODELS                         "*" or array of strings
 *   TXCP_F_STRMAP                         object of strings
 *   TXCP_F_STRLIST                        array of strings
 *   TXCP_F_RATE                           number, parts per million;
 *                                         API: 0..1
 */

#ifndef TXCP_JSON_H
#define TXCP_JSON_H


#include "txcp.h"


#define TXCP_F_STR     1
#define TXCP_F_INT     2
#define TXCP_F_BOOL    3
#define TXCP_F_MONEY   4
#define TXCP_F_ENUM    5
#define TXCP_F_REF     6
#define TXCP_F_TIME    7
#define TXCP_F_MODELS  8
#define TXCP_F_STRMAP  9
#define TXCP_F_STRLIST 10
#define TXCP_F_RATE    11

#define TXCP_FF_REQUIRED 0x01 /* must be given on create */
#define TXCP_FF_NULLABLE 0x02 /* null accepted (= unset) */
#define TXCP_FF_READONLY 0x04 /* output only; 400 when sent */
#define TXCP_FF_CREATE   0x08 /* settable on create only */
#define TXCP_FF_SLUG     0x10 /* STR: [a-z0-9-] only */
#define TXCP_FF_EMAIL    0x20 /* STR: has one '@' inside */
#define TXCP_FF_URL      0x40 /* STR: http:// or https:// URL */
#define TXCP_FF_SECRET   0x80 /* never output; "[redacted]" in diffs */


typedef struct {
    const char        *name;
    int                type;
    unsigned           flags;
    int64_t            min; /* INT: value; STR: length; lists: count */
    int64_t            max;
    const char *const *enums;  /* ENUM: NULL-terminated */
    int                ref_db; /* REF: TXCP_DB_* the id must exist in */
    const char        *dflt;   /* JSON text (store form) set on create */
} txcp_field_t;


/*
 * Validates body (a JSON object) against the NULL-name-terminated table and
 * applies it to rec (store form).  For every changed field, adds
 * field: [old, new] (API form) to diff when diff is not NULL.  create: fill
 * defaults first, allow TXCP_FF_CREATE fields, check required ones.  REF
 * fields are looked up in txn.  Returns 0, or 400 with a message in err
 * (rec may then be half-changed: the caller drops it).
 */
int txcp_json_apply(const txcp_field_t *fields, const cJSON *body, cJSON *rec,
                    cJSON *diff, int create, MDB_txn *txn, char *err,
                    size_t errlen);

/*
 * Builds the API form of a store record: every member in order, '_'
 * members and TXCP_FF_SECRET fields left out, typed fields converted.
 * Returns a new tree the caller owns, NULL on allocation failure.
 */
cJSON *txcp_json_output(const txcp_field_t *fields, const cJSON *rec);

/* API form of one store value of a field; a new tree the caller owns. */
cJSON *txcp_json_api_value(const txcp_field_t *f, const cJSON *v);

/*
 * Adds to diff (txcp_audit_diff(), in API form) each field of the table,
 * TXCP_FF_READONLY ones aside, that differs between the records old and nw.
 * Either may be NULL (a created or a deleted record); a JSON null counts as
 * absent.  Both records stay the caller's.
 */
void txcp_json_diff(const txcp_field_t *fields, const cJSON *old,
                    const cJSON *nw, cJSON *diff);

/*
 * Parses a request body: must be one JSON object and nothing else.
 * Returns the tree (caller owns) or NULL with a message in err.
 */
cJSON *txcp_json_parse_body(const char *body, size_t len, char *err,
                            size_t errlen);


/* Typed getters over store records; absent or null gives the fallback. */
const char *txcp_json_str(const cJSON *rec, const char *name);
int64_t     txcp_json_int(const cJSON *rec, const char *name, int64_t dflt);
int         txcp_json_bool(const cJSON *rec, const char *name, int dflt);
tx_money_t  txcp_json_money(const cJSON *rec, const char *name);

/* Sets rec[name] = v (replacing), taking ownership of v. */
void txcp_json_set(cJSON *rec, const char *name, cJSON *v);

/* A JSON number of USD from micro-cents, exact decimal text (raw). */
cJSON *txcp_json_money_value(tx_money_t m);


#endif /* TXCP_JSON_H */

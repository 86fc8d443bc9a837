/*
 * torrix-cp: /api/v1/orgs, /users, /projects (one table-driven engine),
 * the generic list pager and the reads and write commit every resource
 * shares.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_audit.h"
#include "txcp_http.h"
#include "txcp_json.h"
#include "txcp_publish.h"
#include "txcp_store.h"


typedef struct {
    const char         *resource; /* URL segment */
    const char         *type;     /* audit target_type */
    const char         *prefix;   /* id prefix */
    int                 db;
    int                 pub;
    const txcp_field_t *fields;
} txcp_tenant_t;


static const char *const txcp_role_enum[] = {"member", "admin", NULL};
static const char *const txcp_ustatus_enum[] = {"active", "disabled", NULL};


#define TXCP_RO(name)                                                          \
    {                                                                          \
        name, TXCP_F_STR, TXCP_FF_READONLY, 0, 0, NULL, 0, NULL                \
    }
#define TXCP_MONEY(name)                                                       \
    {                                                                          \
        name, TXCP_F_MONEY, TXCP_FF_NULLABLE, 0, 0, NULL, 0, NULL              \
    }
#define TXCP_END                                                               \
    {                                                                          \
        NULL, 0, 0, 0, 0, NULL, 0, NULL                                        \
    }


static const txcp_field_t txcp_org_fields[] =
    {TXCP_RO("id"),
     {"name", TXCP_F_STR, TXCP_FF_REQUIRED, 1, 200, NULL, 0, NULL},
     {"owner_user_id", TXCP_F_REF, TXCP_FF_NULLABLE, 0, 0, NULL, TXCP_DB_USERS,
      NULL},
     TXCP_MONEY("spend_cap_usd"),
     {"rollover", TXCP_F_BOOL, 0, 0, 0, NULL, 0, "false"},
     {"rpm", TXCP_F_INT, TXCP_FF_NULLABLE, 0, 1000000000LL, NULL, 0, NULL},
     {"tpm", TXCP_F_INT, TXCP_FF_NULLABLE, 0, 1000000000000LL, NULL, 0, NULL},
     {"soft_alert_pct", TXCP_F_INT, 0, 1, 100, NULL, 0, "80"},
     {"dlp", TXCP_F_BOOL, 0, 0, 0, NULL, 0, "false"},
     {"pii_masking", TXCP_F_BOOL, 0, 0, 0, NULL, 0, "false"},
     TXCP_RO("created_at"),
     TXCP_RO("updated_at"),
     TXCP_END};


static const txcp_field_t txcp_user_fields[] =
    {TXCP_RO("id"),
     {"email", TXCP_F_STR, TXCP_FF_REQUIRED | TXCP_FF_EMAIL, 3, 254, NULL, 0,
      NULL},
     {"name", TXCP_F_STR, 0, 0, 200, NULL, 0, "\"\""},
     {"org_id", TXCP_F_REF, TXCP_FF_NULLABLE, 0, 0, NULL, TXCP_DB_ORGS, NULL},
     {"role", TXCP_F_ENUM, 0, 0, 0, txcp_role_enum, 0, "\"member\""},
     {"status", TXCP_F_ENUM, 0, 0, 0, txcp_ustatus_enum, 0, "\"active\""},
     TXCP_MONEY("weekly_cap_usd"),
     {"soft_alert_pct", TXCP_F_INT, 0, 1, 100, NULL, 0, "80"},
     TXCP_RO("created_at"),
     TXCP_RO("updated_at"),
     TXCP_END};


static const txcp_field_t txcp_project_fields[] =
    {TXCP_RO("id"),
     {"slug", TXCP_F_STR, TXCP_FF_REQUIRED | TXCP_FF_SLUG, 1, 64, NULL, 0,
      NULL},
     {"name", TXCP_F_STR, 0, 0, 200, NULL, 0, "\"\""},
     {"org_id", TXCP_F_REF, TXCP_FF_NULLABLE, 0, 0, NULL, TXCP_DB_ORGS, NULL},
     {"contact", TXCP_F_STR, 0, 0, 254, NULL, 0, "\"\""},
     {"active", TXCP_F_BOOL, 0, 0, 0, NULL, 0, "true"},
     {"dlp", TXCP_F_BOOL, 0, 0, 0, NULL, 0, "false"},
     {"pii_masking", TXCP_F_BOOL, 0, 0, 0, NULL, 0, "false"},
     {"rpm", TXCP_F_INT, TXCP_FF_NULLABLE, 0, 1000000000LL, NULL, 0, NULL},
     {"tpm", TXCP_F_INT, TXCP_FF_NULLABLE, 0, 1000000000000LL, NULL, 0, NULL},
     TXCP_MONEY("daily_cap_usd"),
     TXCP_MONEY("monthly_cap_usd"),
     {"soft_alert_pct", TXCP_F_INT, 0, 1, 100, NULL, 0, "80"},
     TXCP_RO("created_at"),
     TXCP_RO("updated_at"),
     TXCP_END};


static const txcp_tenant_t txcp_tenants[] =
    {{"orgs", "org", "org_", TXCP_DB_ORGS, TXCP_PUB_ORG, txcp_org_fields},
     {"users", "user", "usr_", TXCP_DB_USERS, TXCP_PUB_USER, txcp_user_fields},
     {"projects", "project", "prj_", TXCP_DB_PROJECTS, TXCP_PUB_PROJECT,
      txcp_project_fields},
     {NULL, NULL, NULL, 0, 0, NULL}};


/* References that block a delete: (db, field) pairs per tenant db. */
typedef struct {
    int         owner_db;
    int         db;
    const char *field;
} txcp_ref_t;


static const txcp_ref_t txcp_refs[] =
    {{TXCP_DB_ORGS, TXCP_DB_USERS, "org_id"},
     {TXCP_DB_ORGS, TXCP_DB_PROJECTS, "org_id"},
     {TXCP_DB_ORGS, TXCP_DB_KEYS, "org_id"},
     {TXCP_DB_USERS, TXCP_DB_KEYS, "user_id"},
     {TXCP_DB_USERS, TXCP_DB_ORGS, "owner_user_id"},
     {TXCP_DB_PROJECTS, TXCP_DB_KEYS, "project_id"},
     {-1, 0, NULL}};


static const txcp_tenant_t *
txcp_tenant(txcp_req_t *r)
{
    const txcp_tenant_t *t;

    for (t = txcp_tenants; t->resource; t++) {
        if (strcmp(t->resource, r->resource) == 0) {
            return t;
        }
    }

    return NULL;
}


/* Slug index upkeep; returns 0, 409 on a duplicate, 500. */
static int
txcp_slug_set(MDB_txn *txn, const char *old, const char *slug, const char *id)
{
    int     rc;
    MDB_val k, v;

    if (old && slug && strcmp(old, slug) == 0) {
        return 0;
    }

    if (slug) {
        k.mv_data = (void *) slug;
        k.mv_size = strlen(slug);
        v.mv_data = (void *) id;
        v.mv_size = strlen(id);

        rc = mdb_put(txn, txcp.db[TXCP_DB_SLUGS], &k, &v, MDB_NOOVERWRITE);

        if (rc == MDB_KEYEXIST) {
            return 409;
        }

        if (rc != 0) {
            return 500;
        }
    }

    if (old) {
        k.mv_data = (void *) old;
        k.mv_size = strlen(old);

        rc = mdb_del(txn, txcp.db[TXCP_DB_SLUGS], &k, NULL);

        if (rc != 0 && rc != MDB_NOTFOUND) {
            return 500;
        }
    }

    return 0;
}


void
txcp_api_tenant_create(txcp_req_t *r)
{
    int                  rc;
    char                 id[TX_ID_MAX_LEN], ts[40], err[256];
    cJSON               *body, *rec, *diff;
    MDB_txn             *txn;
    const txcp_tenant_t *t;

    t = txcp_tenant(r);

    body = txcp_api_body(r);
    if (body == NULL) {
        return;
    }

    txn = NULL;
    diff = cJSON_CreateObject();
    rec = cJSON_CreateObject();

    tx_id_generate(t->prefix, id);
    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));
    cJSON_AddStringToObject(rec, "id", id);

    if (txcp_store_begin(0, &txn) != 0) {
        txn = NULL;
        goto internal;
    }

    rc = txcp_json_apply(t->fields, body, rec, diff, 1, txn, err, sizeof(err));
    if (rc != 0) {
        txcp_http_error(r, rc, "%s", err);
        goto done;
    }

    if (t->db == TXCP_DB_PROJECTS) {
        rc = txcp_slug_set(txn, NULL, txcp_json_str(rec, "slug"), id);

        if (rc == 409) {
            txcp_http_error(r, 409, "slug '%s' is taken",
                            txcp_json_str(rec, "slug"));
            goto done;
        }

        if (rc != 0) {
            goto internal;
        }
    }

    txcp_json_set(rec, "created_at", cJSON_CreateString(ts));
    txcp_json_set(rec, "updated_at", cJSON_CreateString(ts));

    rc = txcp_api_commit(r, txn, t->db, id, rec, "create", t->type, diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(t->pub, id);

    txcp_http_reply(r, 201, txcp_json_output(t->fields, rec));

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    cJSON_Delete(body);
    cJSON_Delete(rec);
    cJSON_Delete(diff);
}


static cJSON *
txcp_tenant_output(txcp_req_t *r, const cJSON *rec)
{
    return txcp_json_output(txcp_tenant(r)->fields, rec);
}


static cJSON *
txcp_tenant_list_item(txcp_req_t *r, const cJSON *rec)
{
    const txcp_tenant_t *t;
    const char          *f, *v;

    t = txcp_tenant(r);

    f = txcp_http_arg(r, "org_id");

    if (f && t->db != TXCP_DB_ORGS) {
        v = txcp_json_str(rec, "org_id");

        if (v == NULL || strcmp(v, f) != 0) {
            return NULL;
        }
    }

    return txcp_json_output(t->fields, rec);
}


void
txcp_api_tenant_list(txcp_req_t *r)
{
    txcp_api_list(r, txcp_tenant(r)->db, txcp_tenant_list_item);
}


void
txcp_api_tenant_get(txcp_req_t *r)
{
    const txcp_tenant_t *t;

    t = txcp_tenant(r);

    txcp_api_get(r, t->db, t->type, txcp_tenant_output, cJSON_Delete);
}


void
txcp_api_tenant_patch(txcp_req_t *r)
{
    int                  rc;
    char                 ts[40], err[256], *old_slug;
    const char          *s;
    cJSON               *body, *rec, *diff;
    MDB_txn             *txn;
    const txcp_tenant_t *t;

    t = txcp_tenant(r);

    body = txcp_api_body(r);
    if (body == NULL) {
        return;
    }

    rec = NULL;
    old_slug = NULL;
    diff = cJSON_CreateObject();

    if (txcp_api_get_for_write(r, t->db, t->type, &txn, &rec) != TX_OK) {
        goto done;
    }

    s = txcp_json_str(rec, "slug");
    old_slug = s ? strdup(s) : NULL;

    rc = txcp_json_apply(t->fields, body, rec, diff, 0, txn, err, sizeof(err));
    if (rc != 0) {
        txcp_http_error(r, rc, "%s", err);
        goto done;
    }

    if (cJSON_GetArraySize(diff) == 0) {
        txcp_http_reply(r, 200, txcp_json_output(t->fields, rec));
        goto done;
    }

    if (t->db == TXCP_DB_PROJECTS) {
        rc = txcp_slug_set(txn, old_slug, txcp_json_str(rec, "slug"), r->id);

        if (rc == 409) {
            txcp_http_error(r, 409, "slug '%s' is taken",
                            txcp_json_str(rec, "slug"));
            goto done;
        }

        if (rc != 0) {
            goto internal;
        }
    }

    txcp_time_format(txcp_now_us(), 0, ts, sizeof(ts));
    txcp_json_set(rec, "updated_at", cJSON_CreateString(ts));

    rc = txcp_api_commit(r, txn, t->db, r->id, rec, "edit", t->type, diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(t->pub, r->id);

    txcp_http_reply(r, 200, txcp_json_output(t->fields, rec));

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    free(old_slug);
    cJSON_Delete(body);
    cJSON_Delete(rec);
    cJSON_Delete(diff);
}


void
txcp_api_tenant_delete(txcp_req_t *r)
{
    int                  rc;
    const txcp_ref_t    *ref;
    cJSON               *rec, *diff, *out;
    MDB_txn             *txn;
    const txcp_tenant_t *t;

    t = txcp_tenant(r);
    rec = NULL;
    diff = cJSON_CreateObject();

    if (txcp_api_get_for_write(r, t->db, t->type, &txn, &rec) != TX_OK) {
        goto done;
    }

    for (ref = txcp_refs; ref->owner_db >= 0; ref++) {
        if (ref->owner_db == t->db
            && txcp_store_ref_used(txn, ref->db, ref->field, r->id))
        {
            txcp_http_error(r, 409, "%s %s is still referenced by %s", t->type,
                            r->id, txcp_store_db_name(ref->db));
            goto done;
        }
    }

    if (t->db == TXCP_DB_PROJECTS
        && txcp_slug_set(txn, txcp_json_str(rec, "slug"), NULL, r->id) != 0)
    {
        goto internal;
    }

    txcp_json_diff(t->fields, rec, NULL, diff);

    rc = txcp_api_commit(r, txn, t->db, r->id, NULL, "delete", t->type, diff);
    txn = NULL;

    if (rc != TX_OK) {
        goto internal;
    }

    txcp_publish_one(t->pub, r->id);

    out = txcp_json_output(t->fields, rec);
    cJSON_AddBoolToObject(out, "deleted", 1);
    txcp_http_reply(r, 200, out);

    goto done;

internal:

    txcp_http_error(r, 500, "internal error");

done:

    if (txn) {
        mdb_txn_abort(txn);
    }

    cJSON_Delete(rec);
    cJSON_Delete(diff);
}


int
txcp_api_cursor(txcp_req_t *r, int db, MDB_txn **txn, MDB_cursor **cur)
{
    if (txcp_store_begin(1, txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return TX_ERROR;
    }

    if (mdb_cursor_open(*txn, txcp.db[db], cur) != 0) {
        mdb_txn_abort(*txn);
        txcp_http_error(r, 500, "internal error");
        return TX_ERROR;
    }

    return TX_OK;
}


void
txcp_api_list(txcp_req_t *r, int db, txcp_list_pt out)
{
    int           rc, limit, count;
    const char   *cursor;
    char          last[128];
    cJSON        *items, *rec, *o;
    MDB_txn      *txn;
    MDB_val       k, v;
    MDB_cursor   *cur;
    MDB_cursor_op op;

    if (txcp_http_limit(r, &limit) != 0) {
        return;
    }

    cursor = txcp_http_arg(r, "cursor");

    if (cursor && (strlen(cursor) == 0 || strlen(cursor) >= sizeof(last))) {
        txcp_http_error(r, 400, "bad cursor");
        return;
    }

    if (txcp_api_cursor(r, db, &txn, &cur) != TX_OK) {
        return;
    }

    items = cJSON_CreateArray();
    count = 0;
    last[0] = '\0';

    if (cursor) {
        k.mv_data = (void *) cursor;
        k.mv_size = strlen(cursor);
        op = MDB_SET_RANGE;

    } else {
        op = MDB_FIRST;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, op); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (cursor && k.mv_size == strlen(cursor)
            && memcmp(k.mv_data, cursor, k.mv_size) == 0)
        {
            continue;
        }

        rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);
        if (rec == NULL) {
            continue;
        }

        o = out(r, rec);
        cJSON_Delete(rec);

        if (o == NULL) {
            continue;
        }

        if (count == limit) {
            /* one more match exists: there is a next page */
            cJSON_Delete(o);
            break;
        }

        cJSON_AddItemToArray(items, o);
        count++;

        if (k.mv_size < sizeof(last)) {
            memcpy(last, k.mv_data, k.mv_size);
            last[k.mv_size] = '\0';
        }
    }

    mdb_cursor_close(cur);
    mdb_txn_abort(txn);

    txcp_http_reply(r, 200,
                    txcp_http_page(items,
                                   rc == 0 && count == limit ? last : NULL));
}


void
txcp_api_get(txcp_req_t *r, int db, const char *what, txcp_list_pt out,
             void (*free_rec)(cJSON *rec))
{
    cJSON   *rec;
    MDB_txn *txn;

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    rec = txcp_store_get(txn, db, r->id);
    mdb_txn_abort(txn);

    if (rec == NULL) {
        txcp_http_error(r, 404, "no %s %s", what, r->id);
        return;
    }

    txcp_http_reply(r, 200, out(r, rec));
    free_rec(rec);
}


int
txcp_api_get_for_write(txcp_req_t *r, int db, const char *what, MDB_txn **txn,
                       cJSON **rec)
{
    *rec = NULL;

    if (txcp_store_begin(0, txn) != 0) {
        *txn = NULL;
        txcp_http_error(r, 500, "internal error");
        return TX_ERROR;
    }

    *rec = txcp_store_get(*txn, db, r->id);

    if (*rec == NULL) {
        mdb_txn_abort(*txn);
        *txn = NULL;
        txcp_http_error(r, 404, "no %s %s", what, r->id);
        return TX_ERROR;
    }

    return TX_OK;
}


int
txcp_api_commit(txcp_req_t *r, MDB_txn *txn, int db, const char *id,
                const cJSON *rec, const char *action, const char *type,
                const cJSON *diff)
{
    int rc;

    rc = rec ? txcp_store_put(txn, db, id, rec) : txcp_store_del(txn, db, id);

    if (rc != TX_OK
        || txcp_audit_append(txn, r->actor, action, type, id, diff) != TX_OK)
    {
        mdb_txn_abort(txn);
        return TX_ERROR;
    }

    return txcp_store_commit(txn) == 0 ? TX_OK : TX_ERROR;
}

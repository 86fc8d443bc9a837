/*
 * torrix-cp JSON field tables and conversions (see txcp_json.h).
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txcp.h"
#include "txcp_json.h"
#include "tx_url.h"
#include "txcp_store.h"
#include "txcp_audit.h"


#define TXCP_MONEY_MAX_USD 1e9
#define TXCP_TIME_MAX      253402300799LL /* 9999-12-31T23:59:59Z */


static const txcp_field_t *
txcp_field_find(const txcp_field_t *fields, const char *name)
{
    for (/* void */; fields->name; fields++) {
        if (strcmp(fields->name, name) == 0) {
            return fields;
        }
    }

    return NULL;
}


/*
 * TX_OK when an allowlist entry is a URL the data plane's tx_url_parse
 * accepts once a leading "*." of the host stands for one label, and has no
 * query (a pattern with one never matches).
 */
static int
txcp_url_pattern_ok(const char *s)
{
    char     buf[2048 + 1];
    char    *host;
    size_t   len;
    tx_url_t u;

    len = strlen(s);

    if (len >= sizeof(buf)) {
        return TX_ERROR;
    }

    memcpy(buf, s, len + 1);

    host = strstr(buf, "://");
    if (host && host[3] == '*' && host[4] == '.') {
        host[3] = 'x';
    }

    if (tx_url_parse((const uint8_t *) buf, len, &u) != TX_OK || u.query.len
        || strchr(buf, '?'))
    {
        return TX_ERROR;
    }

    return TX_OK;
}


/*
 * 1 when s is valid UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF) without control characters (but \n when allow_nl), else 0:
 * what the API stores it returns, and it must stay valid JSON text.
 */
static int
txcp_str_clean(const char *s, int allow_nl)
{
    size_t               n, i;
    uint32_t             cp, min;
    const unsigned char *p;

    for (p = (const unsigned char *) s; *p; p += n + 1) {
        if ((*p < 0x20 && !(allow_nl && *p == '\n')) || *p == 0x7f) {
            return 0;
        }

        if (*p < 0x80) {
            n = 0;
            continue;
        }

        if (*p >= 0xc2 && *p <= 0xdf) {
            n = 1;
            cp = *p & 0x1f;
            min = 0x80;

        } else if (*p >= 0xe0 && *p <= 0xef) {
            n = 2;
            cp = *p & 0x0f;
            min = 0x800;

        } else if (*p >= 0xf0 && *p <= 0xf4) {
            n = 3;
            cp = *p & 0x07;
            min = 0x10000;

        } else {
            return 0;
        }

        for (i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (p[i] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


/* llround() for 0 <= d < 2^62, without libm (not linked) */
static int64_t
txcp_round(double d)
{
    return (int64_t) (d + 0.5);
}


static int
txcp_is_integral(double d, int64_t min, int64_t max)
{
    return isfinite(d) && d >= (double) min && d <= (double) max
           && d == (double) (int64_t) d;
}


cJSON *
txcp_json_money_value(tx_money_t m)
{
    char buf[32];

    tx_money_format(m, buf, sizeof(buf));

    return cJSON_CreateRaw(buf);
}


cJSON *
txcp_json_api_value(const txcp_field_t *f, const cJSON *v)
{
    char      buf[40];
    long long n;

    if (v == NULL || cJSON_IsNull(v)) {
        return cJSON_CreateNull();
    }

    if (f && (f->flags & TXCP_FF_SECRET)) {
        return cJSON_CreateString("[redacted]");
    }

    switch (f ? f->type : 0) {
    case TXCP_F_MONEY:
        if (!cJSON_IsString(v)) {
            break;
        }

        n = strtoll(v->valuestring, NULL, 10);

        return txcp_json_money_value((tx_money_t) n);

    case TXCP_F_TIME:
        if (!cJSON_IsNumber(v)) {
            break;
        }

        txcp_time_format((int64_t) v->valuedouble * 1000000, 0, buf,
                         sizeof(buf));

        return cJSON_CreateString(buf);

    case TXCP_F_RATE:
        if (!cJSON_IsNumber(v)) {
            break;
        }

        return cJSON_CreateNumber(v->valuedouble / 1e6);
    }

    return cJSON_Duplicate(v, 1);
}


void
txcp_json_diff(const txcp_field_t *fields, const cJSON *old, const cJSON *nw,
               cJSON *diff)
{
    const txcp_field_t *f;
    const cJSON        *a, *b;

    for (f = fields; f->name; f++) {
        if (f->flags & TXCP_FF_READONLY) {
            continue;
        }

        a = cJSON_GetObjectItemCaseSensitive(old, f->name);
        b = cJSON_GetObjectItemCaseSensitive(nw, f->name);

        a = a && cJSON_IsNull(a) ? NULL : a;
        b = b && cJSON_IsNull(b) ? NULL : b;

        if ((a == NULL && b == NULL) || (a && b && cJSON_Compare(a, b, 1))) {
            continue;
        }

        txcp_audit_diff(diff, f->name, txcp_json_api_value(f, a),
                        txcp_json_api_value(f, b));
    }
}


/* Returns the new store value, or NULL with err set. */
static cJSON *
txcp_field_value(const txcp_field_t *f, const cJSON *v, MDB_txn *txn, char *err,
                 size_t errlen)
{
    const cJSON *it;
    size_t       len, count;
    double       d;
    int64_t      t;
    int          i;
    char         buf[32];
    const char  *s, *at;

    switch (f->type) {
    case TXCP_F_STR:
    case TXCP_F_ENUM:
    case TXCP_F_REF:
        if (!cJSON_IsString(v)) {
            snprintf(err, errlen, "field '%s' must be a string", f->name);
            return NULL;
        }

        s = v->valuestring;
        len = strlen(s);

        if (!txcp_str_clean(s, 0)) {
            snprintf(err, errlen,
                     "field '%s' must be valid UTF-8 without control "
                     "characters",
                     f->name);
            return NULL;
        }

        if (f->type == TXCP_F_ENUM) {
            for (i = 0; f->enums[i]; i++) {
                if (strcmp(f->enums[i], s) == 0) {
                    return cJSON_CreateString(s);
                }
            }

            snprintf(err, errlen, "field '%s' has an unknown value", f->name);
            return NULL;
        }

        if (f->type == TXCP_F_REF) {
            if (!txcp_store_exists(txn, f->ref_db, s)) {
                snprintf(err, errlen, "field '%s': no such id", f->name);
                return NULL;
            }

            return cJSON_CreateString(s);
        }

        if ((int64_t) len < f->min || (int64_t) len > f->max) {
            snprintf(err, errlen, "field '%s' must be %lld..%lld characters",
                     f->name, (long long) f->min, (long long) f->max);
            return NULL;
        }

        if (f->flags & TXCP_FF_SLUG) {
            for (i = 0; s[i]; i++) {
                if (!((s[i] >= 'a' && s[i] <= 'z')
                      || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                {
                    snprintf(err, errlen,
                             "field '%s' may only hold a-z, 0-9 and '-'",
                             f->name);
                    return NULL;
                }
            }
        }

        if (f->flags & TXCP_FF_EMAIL) {
            at = strchr(s, '@');

            if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@')
                || strchr(s, ' '))
            {
                snprintf(err, errlen, "field '%s' is not an email address",
                         f->name);
                return NULL;
            }
        }

        if ((f->flags & TXCP_FF_URL) && strncmp(s, "http://", 7) != 0
            && strncmp(s, "https://", 8) != 0)
        {
            snprintf(err, errlen, "field '%s' must be an http(s) URL", f->name);
            return NULL;
        }

        if ((f->flags & TXCP_FF_URL)
            && (strchr(s, ' ') || strchr(s, '\\') || strchr(s, '#')))
        {
            snprintf(err, errlen, "field '%s' is not a valid URL", f->name);
            return NULL;
        }

        return cJSON_CreateString(s);

    case TXCP_F_INT:
        if (!cJSON_IsNumber(v)) {
            snprintf(err, errlen, "field '%s' must be an integer", f->name);
            return NULL;
        }

        if (!txcp_is_integral(v->valuedouble, f->min, f->max)) {
            snprintf(err, errlen, "field '%s' must be an integer in %lld..%lld",
                     f->name, (long long) f->min, (long long) f->max);
            return NULL;
        }

        return cJSON_CreateNumber(v->valuedouble);

    case TXCP_F_BOOL:
        if (!cJSON_IsBool(v)) {
            snprintf(err, errlen, "field '%s' must be a boolean", f->name);
            return NULL;
        }

        return cJSON_CreateBool(cJSON_IsTrue(v));

    case TXCP_F_MONEY:
        if (!cJSON_IsNumber(v)) {
            snprintf(err, errlen, "field '%s' must be a number (USD)", f->name);
            return NULL;
        }

        d = v->valuedouble;

        if (!isfinite(d) || d < 0 || d >= TXCP_MONEY_MAX_USD) {
            snprintf(err, errlen, "field '%s' must be >= 0 and < 1e9 USD",
                     f->name);
            return NULL;
        }

        snprintf(buf, sizeof(buf), "%lld", (long long) txcp_round(d * 1e8));

        return cJSON_CreateString(buf);

    case TXCP_F_TIME:
        if (cJSON_IsString(v)) {
            if (txcp_time_parse(v->valuestring, &t) != TX_OK
                || t > TXCP_TIME_MAX) {
                snprintf(err, errlen,
                         "field '%s' must be an RFC 3339 time or unix seconds",
                         f->name);
                return NULL;
            }

            return cJSON_CreateNumber((double) t);
        }

        if (cJSON_IsNumber(v)
            && txcp_is_integral(v->valuedouble, 0, TXCP_TIME_MAX)) {
            return cJSON_CreateNumber(v->valuedouble);
        }

        snprintf(err, errlen,
                 "field '%s' must be an RFC 3339 time or unix seconds",
                 f->name);
        return NULL;

    case TXCP_F_RATE:
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)
            || v->valuedouble < 0 || v->valuedouble > 1)
        {
            snprintf(err, errlen, "field '%s' must be a number in 0..1",
                     f->name);
            return NULL;
        }

        return cJSON_CreateNumber((double) txcp_round(v->valuedouble * 1e6));

    case TXCP_F_MODELS:
        if (cJSON_IsString(v) && strcmp(v->valuestring, "*") == 0) {
            return cJSON_CreateString("*");
        }

        /* fall through */

    case TXCP_F_STRLIST:
        if (!cJSON_IsArray(v)) {
            snprintf(err, errlen, "field '%s' must be an array of strings%s",
                     f->name, f->type == TXCP_F_MODELS ? " or \"*\"" : "");
            return NULL;
        }

        count = 0;

        cJSON_ArrayForEach(it, v)
        {
            count++;

            if (!cJSON_IsString(it)) {
                snprintf(err, errlen, "field '%s' must be an array of strings",
                         f->name);
                return NULL;
            }

            len = strlen(it->valuestring);

            if (len == 0 || len > 2048 || !txcp_str_clean(it->valuestring, 0)
                || strchr(it->valuestring, ' '))
            {
                snprintf(err, errlen, "field '%s' has an invalid entry",
                         f->name);
                return NULL;
            }

            if ((f->flags & TXCP_FF_URL)
                && txcp_url_pattern_ok(it->valuestring) != TX_OK) {
                snprintf(err, errlen,
                         "field '%s': '%s' is not an http(s) URL pattern the "
                         "gateway can match (no user info, query, fragment "
                         "or dot segments; '*.' only as a host prefix)",
                         f->name, it->valuestring);
                return NULL;
            }
        }

        if ((int64_t) count < f->min || (int64_t) count > f->max) {
            snprintf(err, errlen, "field '%s' must have %lld..%lld entries",
                     f->name, (long long) f->min, (long long) f->max);
            return NULL;
        }

        return cJSON_Duplicate(v, 1);

    case TXCP_F_STRMAP:
        if (!cJSON_IsObject(v)) {
            snprintf(err, errlen, "field '%s' must be an object of strings",
                     f->name);
            return NULL;
        }

        count = 0;

        cJSON_ArrayForEach(it, v)
        {
            count++;

            if (!cJSON_IsString(it)) {
                snprintf(err, errlen, "field '%s' values must be strings",
                         f->name);
                return NULL;
            }

            len = strlen(it->string);

            if (len == 0 || len > 128 || strchr(it->string, '=')
                || !txcp_str_clean(it->string, 0)
                || strlen(it->valuestring) > 1024
                || !txcp_str_clean(it->valuestring, 0))
            {
                snprintf(err, errlen, "field '%s' has an invalid entry",
                         f->name);
                return NULL;
            }

            if (cJSON_GetObjectItemCaseSensitive(v, it->string) != it) {
                snprintf(err, errlen, "field '%s' has a duplicate entry",
                         f->name);
                return NULL;
            }
        }

        if ((int64_t) count > f->max) {
            snprintf(err, errlen, "field '%s' has too many entries", f->name);
            return NULL;
        }

        return cJSON_Duplicate(v, 1);
    }

    snprintf(err, errlen, "field '%s' has an unsupported type", f->name);

    return NULL;
}


static void
txcp_json_diff_add(cJSON *diff, const txcp_field_t *f, const cJSON *old,
                   const cJSON *nv)
{
    txcp_audit_diff(diff, f->name, txcp_json_api_value(f, old),
                    txcp_json_api_value(f, nv));
}


int
txcp_json_apply(const txcp_field_t *fields, const cJSON *body, cJSON *rec,
                cJSON *diff, int create, MDB_txn *txn, char *err, size_t errlen)
{
    const txcp_field_t *f;
    const cJSON        *m;
    cJSON              *nv, *old, *d;

    if (!cJSON_IsObject(body)) {
        snprintf(err, errlen, "the body must be a JSON object");
        return 400;
    }

    if (create) {
        for (f = fields; f->name; f++) {
            if (f->dflt && !cJSON_GetObjectItemCaseSensitive(rec, f->name)) {
                d = cJSON_Parse(f->dflt);
                if (d) {
                    cJSON_AddItemToObject(rec, f->name, d);
                }
            }
        }
    }

    cJSON_ArrayForEach(m, body)
    {
        if (cJSON_GetObjectItemCaseSensitive(body, m->string) != m) {
            snprintf(err, errlen, "duplicate field '%s'", m->string);
            return 400;
        }

        f = txcp_field_find(fields, m->string);

        if (f == NULL) {
            snprintf(err, errlen, "unknown field '%.100s'", m->string);
            return 400;
        }

        if (f->flags & TXCP_FF_READONLY) {
            snprintf(err, errlen, "field '%s' is read-only", f->name);
            return 400;
        }

        if ((f->flags & TXCP_FF_CREATE) && !create) {
            snprintf(err, errlen, "field '%s' cannot be changed", f->name);
            return 400;
        }

        if (cJSON_IsNull(m)) {
            if (!(f->flags & TXCP_FF_NULLABLE)) {
                snprintf(err, errlen, "field '%s' must not be null", f->name);
                return 400;
            }

            nv = cJSON_CreateNull();

        } else {
            nv = txcp_field_value(f, m, txn, err, errlen);
            if (nv == NULL) {
                return 400;
            }
        }

        old = cJSON_GetObjectItemCaseSensitive(rec, f->name);

        if (old && cJSON_Compare(old, nv, 1)) {
            cJSON_Delete(nv);
            continue;
        }

        if (old == NULL && cJSON_IsNull(nv)) {
            cJSON_AddItemToObject(rec, f->name, nv);
            continue;
        }

        if (diff && !create) {
            txcp_json_diff_add(diff, f, old, nv);
        }

        txcp_json_set(rec, f->name, nv);
    }

    if (create) {
        for (f = fields; f->name; f++) {
            old = cJSON_GetObjectItemCaseSensitive(rec, f->name);

            if ((f->flags & TXCP_FF_REQUIRED)
                && (old == NULL || cJSON_IsNull(old))) {
                snprintf(err, errlen, "missing field '%s'", f->name);
                return 400;
            }

            if (diff && old && !cJSON_IsNull(old)
                && !(f->flags & TXCP_FF_READONLY)) {
                txcp_json_diff_add(diff, f, NULL, old);
            }
        }
    }

    return 0;
}


cJSON *
txcp_json_output(const txcp_field_t *fields, const cJSON *rec)
{
    const txcp_field_t *f;
    const cJSON        *v;
    cJSON              *out;

    out = cJSON_CreateObject();
    if (out == NULL) {
        return NULL;
    }

    for (f = fields; f->name; f++) {
        if (f->flags & TXCP_FF_SECRET) {
            continue;
        }

        v = cJSON_GetObjectItemCaseSensitive(rec, f->name);

        cJSON_AddItemToObject(out, f->name, txcp_json_api_value(f, v));
    }

    return out;
}


cJSON *
txcp_json_parse_body(const char *body, size_t len, char *err, size_t errlen)
{
    cJSON      *j;
    const char *end;

    if (body == NULL || len == 0) {
        snprintf(err, errlen, "a JSON object body is required");
        return NULL;
    }

    if (memchr(body, '\0', len) != NULL) {
        snprintf(err, errlen, "the body contains a NUL byte");
        return NULL;
    }

    /* cJSON would cut a string at an escaped NUL: refuse those */

    if (memmem(body, len, "\\u0000", 6) != NULL) {
        snprintf(err, errlen, "strings must not contain NUL characters");
        return NULL;
    }

    /* body[len] is a NUL kept by the HTTP layer */

    end = NULL;
    j = cJSON_ParseWithLengthOpts(body, len + 1, &end, 1);

    if (j == NULL) {
        end = cJSON_GetErrorPtr();
        snprintf(err, errlen, "malformed JSON at offset %ld",
                 end && end >= body && end <= body + len ? (long) (end - body)
                                                         : 0L);
        return NULL;
    }

    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(err, errlen, "the body must be a JSON object");
        return NULL;
    }

    return j;
}


const char *
txcp_json_str(const cJSON *rec, const char *name)
{
    const cJSON *v;

    v = cJSON_GetObjectItemCaseSensitive(rec, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}


int64_t
txcp_json_int(const cJSON *rec, const char *name, int64_t dflt)
{
    const cJSON *v;

    v = cJSON_GetObjectItemCaseSensitive(rec, name);

    return cJSON_IsNumber(v) ? (int64_t) v->valuedouble : dflt;
}


int
txcp_json_bool(const cJSON *rec, const char *name, int dflt)
{
    const cJSON *v;

    v = cJSON_GetObjectItemCaseSensitive(rec, name);

    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}


tx_money_t
txcp_json_money(const cJSON *rec, const char *name)
{
    const cJSON *v;

    v = cJSON_GetObjectItemCaseSensitive(rec, name);

    return cJSON_IsString(v) ? (tx_money_t) strtoll(v->valuestring, NULL, 10)
                             : 0;
}


void
txcp_json_set(cJSON *rec, const char *name, cJSON *v)
{
    if (cJSON_GetObjectItemCaseSensitive(rec, name)) {
        cJSON_ReplaceItemInObjectCaseSensitive(rec, name, v);

    } else {
        cJSON_AddItemToObject(rec, name, v);
    }
}

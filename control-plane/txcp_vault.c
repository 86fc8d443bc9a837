/*
 * torrix-cp credential vault (see txcp_vault.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_audit.h"
#include "txcp_http.h"
#include "txcp_json.h"
#include "txcp_routing.h"
#include "txcp_store.h"
#include "txcp_vault.h"


#define TXCP_VAULT_KEYFILE_MAX 1024


typedef struct {
    uint8_t *key;        /* master key, sodium_malloc */
    uint8_t *dp_key;     /* data-plane key, sodium_malloc; NULL offline */
    int      source;     /* TXCP_VAULT_SRC_* */
    int      generated;  /* key made in memory, not saved yet */
    char     path[4096]; /* the key file of a file source */
    char     what[4200]; /* the source, for messages */
} txcp_vault_t;


/* Sealed store values: member "<name>_sealed" of every record of db. */
typedef struct {
    int         db;
    const char *name;
} txcp_vault_member_t;


static const txcp_vault_member_t txcp_vault_members[] =
    {{TXCP_DB_PROVIDERS, "api_key"}, /* AD: the provider name */
     {TXCP_DB_WEBHOOKS, "secret"},   /* AD: the webhook id */
     {-1, NULL}};


static txcp_vault_t txcp_vlt;


char *
txcp_vault_strdup(const char *s)
{
    char  *p;
    size_t n;

    n = strlen(s);
    p = sodium_malloc(n + 1);

    if (p) {
        memcpy(p, s, n + 1);
    }

    return p;
}


void
txcp_vault_strfree(char *s)
{
    if (s) {
        sodium_memzero(s, strlen(s));
        sodium_free(s);
    }
}


static int
txcp_vault_fsync_dir(const char *path)
{
    int  fd, rc;
    char dir[4096];

    snprintf(dir, sizeof(dir), "%s", path);

    fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1) {
        return TX_ERROR;
    }

    rc = fsync(fd);
    close(fd);

    return rc == 0 ? TX_OK : TX_ERROR;
}


/* Reads and parses a key file into key (TX_SEAL_KEY_LEN bytes). */
static int
txcp_vault_read_key(const char *path, uint8_t *key, int warn_mode)
{
    int         fd, rc;
    char       *buf;
    ssize_t     n;
    struct stat st;

    fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd == -1) {
        return errno == ENOENT ? TX_DECLINED : TX_ERROR;
    }

    buf = sodium_malloc(TXCP_VAULT_KEYFILE_MAX);

    if (buf == NULL || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = TX_ERROR;
        goto done;
    }

    if (warn_mode && (st.st_mode & 077)) {
        txcp_log(TXCP_LOG_WARN, "master key file is readable by others",
                 "path=%s mode=%03o", path, (unsigned) (st.st_mode & 0777));
    }

    n = read(fd, buf, TXCP_VAULT_KEYFILE_MAX);

    rc = n > 0 && n < TXCP_VAULT_KEYFILE_MAX
             ? tx_seal_key_parse(buf, (size_t) n, key)
             : TX_ERROR;

done:

    if (buf) {
        sodium_memzero(buf, TXCP_VAULT_KEYFILE_MAX);
        sodium_free(buf);
    }

    close(fd);

    return rc;
}


/*
 * Writes key as 64 lowercase hex + "\n" to "<path>.new" (mode, fsync) and,
 * when `rename_now`, renames it over path.
 */
static int
txcp_vault_write_key(const char *path, const uint8_t *key, mode_t mode,
                     int rename_now)
{
    int  fd, rc;
    char tmp[4200], *hex;

    snprintf(tmp, sizeof(tmp), "%s.new", path);

    hex = sodium_malloc(2 * TX_SEAL_KEY_LEN + 2);
    if (hex == NULL) {
        return TX_ERROR;
    }

    sodium_bin2hex(hex, 2 * TX_SEAL_KEY_LEN + 1, key, TX_SEAL_KEY_LEN);
    hex[2 * TX_SEAL_KEY_LEN] = '\n';

    (void) unlink(tmp);

    rc = TX_ERROR;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

    if (fd == -1) {
        goto failed;
    }

    if (fchmod(fd, mode) != 0
        || write(fd, hex, 2 * TX_SEAL_KEY_LEN + 1) != 2 * TX_SEAL_KEY_LEN + 1
        || fsync(fd) != 0)
    {
        close(fd);
        unlink(tmp);
        goto failed;
    }

    close(fd);

    if (rename_now) {
        if (rename(tmp, path) != 0) {
            unlink(tmp);
            goto failed;
        }

        (void) txcp_vault_fsync_dir(path);
    }

    rc = TX_OK;
    goto done;

failed:

    txcp_log(TXCP_LOG_ERROR, "cannot write key file", "path=%s err=\"%s\"", tmp,
             strerror(errno));

done:

    sodium_memzero(hex, 2 * TX_SEAL_KEY_LEN + 2);
    sodium_free(hex);

    return rc;
}


void
txcp_vault_dp_path(char *buf, size_t len)
{
    snprintf(buf, len, "%s/dataplane.key", txcp.conf.data_dir);
}


static int
txcp_vault_dp_load(void)
{
    int  rc;
    char path[4096];

    txcp_vault_dp_path(path, sizeof(path));

    txcp_vlt.dp_key = sodium_malloc(TX_SEAL_KEY_LEN);
    if (txcp_vlt.dp_key == NULL) {
        return TX_ERROR;
    }

    rc = txcp_vault_read_key(path, txcp_vlt.dp_key, 0);

    if (rc == TX_OK) {
        return TX_OK;
    }

    if (rc == TX_DECLINED) {
        randombytes_buf(txcp_vlt.dp_key, TX_SEAL_KEY_LEN);

        if (txcp_vault_write_key(path, txcp_vlt.dp_key, 0640, 1) != TX_OK) {
            return TX_ERROR;
        }

        txcp_log(TXCP_LOG_INFO, "data-plane key created", "path=%s", path);

        return TX_OK;
    }

    txcp_log(TXCP_LOG_ERROR,
             "data-plane key file unreadable or not a key (64 hex "
             "characters)",
             "path=%s", path);

    return TX_ERROR;
}


int
txcp_vault_init(int create)
{
    int         rc;
    const char *env;

    txcp_vault_free();

    txcp_vlt.key = sodium_malloc(TX_SEAL_KEY_LEN);
    if (txcp_vlt.key == NULL) {
        return TX_ERROR;
    }

    env = getenv(TXCP_VAULT_ENV);

    if (txcp.conf.master_key_file && txcp.conf.master_key_file[0]) {
        txcp_vlt.source = TXCP_VAULT_SRC_FILE;
        snprintf(txcp_vlt.path, sizeof(txcp_vlt.path), "%s",
                 txcp.conf.master_key_file);
        snprintf(txcp_vlt.what, sizeof(txcp_vlt.what), "master_key_file %s",
                 txcp_vlt.path);

    } else if (env && *env) {
        txcp_vlt.source = TXCP_VAULT_SRC_ENV;
        snprintf(txcp_vlt.what, sizeof(txcp_vlt.what), "%s", TXCP_VAULT_ENV);

    } else {
        txcp_vlt.source = TXCP_VAULT_SRC_DATA;
        snprintf(txcp_vlt.path, sizeof(txcp_vlt.path), "%s/master.key",
                 txcp.conf.data_dir);
        snprintf(txcp_vlt.what, sizeof(txcp_vlt.what), "%s", txcp_vlt.path);
    }

    if (txcp_vlt.source == TXCP_VAULT_SRC_ENV) {
        rc = tx_seal_key_parse(env, strlen(env), txcp_vlt.key);

        /* out of /proc/PID/environ: the key lives in sodium memory only */

        sodium_memzero((char *) env, strlen(env));
        unsetenv(TXCP_VAULT_ENV);

    } else {
        rc = txcp_vault_read_key(txcp_vlt.path, txcp_vlt.key, 1);
    }

    if (rc == TX_DECLINED && txcp_vlt.source == TXCP_VAULT_SRC_DATA && create) {
        randombytes_buf(txcp_vlt.key, TX_SEAL_KEY_LEN);
        txcp_vlt.generated = 1;
        rc = TX_OK;
    }

    if (rc != TX_OK) {
        txcp_log(TXCP_LOG_ERROR,
                 rc == TX_DECLINED
                     ? "no master key: the key file is missing (set "
                       "master_key_file or " TXCP_VAULT_ENV ")"
                     : "master key unreadable: expected 64 hex characters "
                       "or the base64 of 32 bytes",
                 "source=\"%s\"", txcp_vlt.what);
        txcp_vault_free();
        return TX_ERROR;
    }

    if (create && txcp_vault_dp_load() != TX_OK) {
        txcp_vault_free();
        return TX_ERROR;
    }

    return TX_OK;
}


int
txcp_vault_loaded(void)
{
    return txcp_vlt.key != NULL;
}


void
txcp_vault_free(void)
{
    if (txcp_vlt.key) {
        sodium_memzero(txcp_vlt.key, TX_SEAL_KEY_LEN);
        sodium_free(txcp_vlt.key);
    }

    if (txcp_vlt.dp_key) {
        sodium_memzero(txcp_vlt.dp_key, TX_SEAL_KEY_LEN);
        sodium_free(txcp_vlt.dp_key);
    }

    memset(&txcp_vlt, 0, sizeof(txcp_vlt));
}


/* base64 (malloc'd, not secret) of tx_seal(key, ad, m). */
static char *
txcp_vault_seal_b64(const uint8_t *key, const char *ad, const uint8_t *m,
                    size_t mlen)
{
    char    *b64;
    size_t   cap, clen, blen;
    uint8_t *c;

    cap = tx_seal_len(mlen);
    c = malloc(cap);
    if (c == NULL) {
        return NULL;
    }

    b64 = NULL;

    if (tx_seal(key, (const uint8_t *) ad, strlen(ad), m, mlen, c, cap, &clen)
        == TX_OK)
    {
        blen = sodium_base64_ENCODED_LEN(clen, sodium_base64_VARIANT_ORIGINAL);
        b64 = malloc(blen);

        if (b64) {
            sodium_bin2base64(b64, blen, c, clen,
                              sodium_base64_VARIANT_ORIGINAL);
        }
    }

    free(c);

    return b64;
}


/* Plaintext (sodium_malloc'd, NUL-terminated) of a base64 sealed value. */
static char *
txcp_vault_unseal_b64(const uint8_t *key, const char *b64, const char *ad)
{
    size_t   blen, clen, mlen;
    uint8_t *c;
    char    *m;

    blen = strlen(b64);
    c = malloc(blen + 1);
    m = sodium_malloc(blen + 1);

    if (c == NULL || m == NULL) {
        goto failed;
    }

    if (sodium_base642bin(c, blen + 1, b64, blen, NULL, &clen, NULL,
                          sodium_base64_VARIANT_ORIGINAL)
            != 0
        || tx_unseal(key, (const uint8_t *) ad, strlen(ad), c, clen,
                     (uint8_t *) m, blen, &mlen)
               != TX_OK)
    {
        goto failed;
    }

    m[mlen] = '\0';
    free(c);

    return m;

failed:

    free(c);

    if (m) {
        sodium_memzero(m, blen + 1);
        sodium_free(m);
    }

    return NULL;
}


char *
txcp_vault_open_b64(const char *b64, const char *ad)
{
    char *m;

    if (txcp_vlt.key == NULL) {
        txcp_log(TXCP_LOG_ERROR, "vault not loaded", "id=%s", ad);
        return NULL;
    }

    m = txcp_vault_unseal_b64(txcp_vlt.key, b64, ad);

    if (m == NULL) {
        txcp_log(TXCP_LOG_ERROR, "sealed credential does not open", "id=%s",
                 ad);
    }

    return m;
}


static const char *
txcp_vault_sealed_name(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s_sealed", name);
    return buf;
}


void
txcp_vault_wipe_member(cJSON *rec, const char *name)
{
    cJSON *s;

    s = cJSON_GetObjectItemCaseSensitive(rec, name);

    if (cJSON_IsString(s) && s->valuestring) {
        sodium_memzero(s->valuestring, strlen(s->valuestring));
    }
}


int
txcp_vault_seal_member(cJSON *rec, const char *name, const char *ad)
{
    char   sname[64], *b64;
    cJSON *s;

    txcp_vault_sealed_name(name, sname, sizeof(sname));

    s = cJSON_GetObjectItemCaseSensitive(rec, name);

    if (!cJSON_IsString(s) || s->valuestring == NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(rec, name);
        cJSON_DeleteItemFromObjectCaseSensitive(rec, sname);
        return TX_OK;
    }

    if (txcp_vlt.key == NULL) {
        txcp_log(TXCP_LOG_ERROR, "vault not loaded", "id=%s", ad);
        return TX_ERROR;
    }

    b64 =
        txcp_vault_seal_b64(txcp_vlt.key, ad, (const uint8_t *) s->valuestring,
                            strlen(s->valuestring));
    if (b64 == NULL) {
        return TX_ERROR;
    }

    txcp_vault_wipe_member(rec, name);
    cJSON_DeleteItemFromObjectCaseSensitive(rec, name);
    txcp_json_set(rec, sname, cJSON_CreateString(b64));
    free(b64);

    return cJSON_GetObjectItemCaseSensitive(rec, sname) ? TX_OK : TX_ERROR;
}


int
txcp_vault_open_member(cJSON *rec, const char *name, const char *ad)
{
    char        sname[64], *m;
    const char *b64;
    cJSON      *s;

    b64 =
        txcp_json_str(rec, txcp_vault_sealed_name(name, sname, sizeof(sname)));
    if (b64 == NULL) {
        return TX_DECLINED;
    }

    m = txcp_vault_open_b64(b64, ad);
    if (m == NULL) {
        return TX_ERROR;
    }

    s = cJSON_CreateString(m);
    txcp_vault_strfree(m);

    if (s == NULL) {
        return TX_ERROR;
    }

    txcp_json_set(rec, name, s);

    return TX_OK;
}


int
txcp_vault_dp_seal(const char *ad, const uint8_t *m, size_t mlen, uint8_t *out,
                   size_t outcap, size_t *outlen)
{
    if (txcp_vlt.dp_key == NULL) {
        txcp_log(TXCP_LOG_ERROR, "data-plane key not loaded", "id=%s", ad);
        return TX_ERROR;
    }

    return tx_seal(txcp_vlt.dp_key, (const uint8_t *) ad, strlen(ad), m, mlen,
                   out, outcap, outlen);
}


int
txcp_vault_dp_same(const char *ad, const uint8_t *blob, size_t len,
                   const uint8_t *m, size_t mlen)
{
    int      same;
    size_t   n;
    uint8_t *buf;

    if (txcp_vlt.dp_key == NULL || len < mlen || len > mlen + 64) {
        return 0;
    }

    buf = sodium_malloc(len + 1);
    if (buf == NULL) {
        return 0;
    }

    same = tx_unseal(txcp_vlt.dp_key, (const uint8_t *) ad, strlen(ad), blob,
                     len, buf, len, &n)
               == TX_OK
           && n == mlen && sodium_memcmp(buf, m, mlen) == 0;

    sodium_memzero(buf, len + 1);
    sodium_free(buf);

    return same;
}


/*
 * The ids of the records of db that have member `sname` (a cJSON array of
 * strings the caller deletes), or NULL on an LMDB error.
 */
static cJSON *
txcp_vault_ids(MDB_txn *txn, int db, const char *sname)
{
    int                        rc;
    char                       id[160];
    cJSON                     *ids, *rec;
    MDB_val                    k, v;
    MDB_cursor                *cur;
    const txcp_vault_member_t *vm;

    if (mdb_cursor_open(txn, txcp.db[db], &cur) != 0) {
        return NULL;
    }

    ids = cJSON_CreateArray();

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size == 0 || k.mv_size >= sizeof(id)) {
            continue;
        }

        rec = cJSON_ParseWithLength(v.mv_data, v.mv_size);

        if (cJSON_GetObjectItemCaseSensitive(rec, sname)) {
            memcpy(id, k.mv_data, k.mv_size);
            id[k.mv_size] = '\0';
            cJSON_AddItemToArray(ids, cJSON_CreateString(id));
        }

        if (rec) {
            for (vm = txcp_vault_members; vm->name; vm++) {
                if (vm->db == db) {
                    txcp_vault_wipe_member(rec, vm->name);
                }
            }

            cJSON_Delete(rec);
        }
    }

    mdb_cursor_close(cur);

    if (rc != MDB_NOTFOUND) {
        cJSON_Delete(ids);
        return NULL;
    }

    return ids;
}


/* Number of sealed store values, -1 on error. */
static long
txcp_vault_count(MDB_txn *txn)
{
    long                       n;
    char                       sname[64];
    cJSON                     *ids;
    const txcp_vault_member_t *vm;

    n = 0;

    for (vm = txcp_vault_members; vm->name; vm++) {
        ids = txcp_vault_ids(txn, vm->db,
                             txcp_vault_sealed_name(vm->name, sname,
                                                    sizeof(sname)));
        if (ids == NULL) {
            return -1;
        }

        n += cJSON_GetArraySize(ids);
        cJSON_Delete(ids);
    }

    return n;
}


/*
 * Re-seals every sealed store value from key `from` to key `to` (NULL:
 * only checks that each opens under `from`).  *count gets their number.
 * TX_OK, or TX_ERROR with err (a value that does not open, LMDB).
 */
static int
txcp_vault_reseal(MDB_txn *txn, const uint8_t *from, const uint8_t *to,
                  size_t *count, char *err, size_t errlen)
{
    int                        rc;
    char                       sname[64], *m, *b64;
    const char                *id, *old;
    cJSON                     *ids, *it, *rec;
    const txcp_vault_member_t *vm;

    *count = 0;
    rc = TX_OK;

    for (vm = txcp_vault_members; vm->name && rc == TX_OK; vm++) {
        txcp_vault_sealed_name(vm->name, sname, sizeof(sname));

        ids = txcp_vault_ids(txn, vm->db, sname);
        if (ids == NULL) {
            snprintf(err, errlen, "cannot read the %s db",
                     txcp_store_db_name(vm->db));
            return TX_ERROR;
        }

        cJSON_ArrayForEach(it, ids)
        {
            id = it->valuestring;
            rec = txcp_store_get(txn, vm->db, id);
            old = txcp_json_str(rec, sname);
            m = old ? txcp_vault_unseal_b64(from, old, id) : NULL;

            if (m == NULL) {
                snprintf(err, errlen, "the sealed %s of %s %s does not open",
                         vm->name, txcp_store_db_name(vm->db), id);
                cJSON_Delete(rec);
                rc = TX_ERROR;
                break;
            }

            if (to) {
                b64 =
                    txcp_vault_seal_b64(to, id, (const uint8_t *) m, strlen(m));

                if (b64 == NULL) {
                    snprintf(err, errlen, "out of memory");
                    rc = TX_ERROR;

                } else {
                    txcp_json_set(rec, sname, cJSON_CreateString(b64));
                    free(b64);

                    if (txcp_store_put(txn, vm->db, id, rec) != TX_OK) {
                        snprintf(err, errlen, "store write failed");
                        rc = TX_ERROR;
                    }
                }
            }

            txcp_vault_strfree(m);
            cJSON_Delete(rec);

            if (rc != TX_OK) {
                break;
            }

            (*count)++;
        }

        cJSON_Delete(ids);
    }

    return rc;
}


static int
txcp_vault_put_check(MDB_txn *txn, const uint8_t *key)
{
    int     rc;
    size_t  clen;
    uint8_t c[64];
    MDB_val k, v;

    if (tx_seal(key, (const uint8_t *) TXCP_VAULT_CHECK_AD,
                sizeof(TXCP_VAULT_CHECK_AD) - 1,
                (const uint8_t *) TXCP_VAULT_CHECK,
                sizeof(TXCP_VAULT_CHECK) - 1, c, sizeof(c), &clen)
        != TX_OK)
    {
        return TX_ERROR;
    }

    k.mv_data = "vault_check";
    k.mv_size = sizeof("vault_check") - 1;
    v.mv_data = c;
    v.mv_size = clen;

    rc = mdb_put(txn, txcp.db[TXCP_DB_META], &k, &v, 0);

    if (rc != 0) {
        txcp_log(TXCP_LOG_ERROR, "store put failed", "err=\"%s\"",
                 mdb_strerror(rc));
        return TX_ERROR;
    }

    return TX_OK;
}


/* TX_OK when the check value c opens under key, else TX_ERROR. */
static int
txcp_vault_check_opens(const uint8_t *key, const MDB_val *c)
{
    int     rc;
    size_t  n;
    uint8_t m[64];

    rc = tx_unseal(key, (const uint8_t *) TXCP_VAULT_CHECK_AD,
                   sizeof(TXCP_VAULT_CHECK_AD) - 1, c->mv_data, c->mv_size, m,
                   sizeof(m), &n);

    if (rc == TX_OK
        && (n != sizeof(TXCP_VAULT_CHECK) - 1
            || memcmp(m, TXCP_VAULT_CHECK, n) != 0))
    {
        rc = TX_ERROR;
    }

    sodium_memzero(m, sizeof(m));

    return rc;
}


/*
 * A rotation of a file key that crashed between the store commit and the
 * rename left "<file>.new": use it when it opens the store, drop it when
 * the current key does.
 */
static int
txcp_vault_pending(const MDB_val *check, int current_ok)
{
    int      rc;
    char     tmp[4200];
    uint8_t *key;

    if (txcp_vlt.source == TXCP_VAULT_SRC_ENV || txcp_vlt.generated) {
        return TX_DECLINED;
    }

    snprintf(tmp, sizeof(tmp), "%s.new", txcp_vlt.path);

    if (access(tmp, F_OK) != 0) {
        return TX_DECLINED;
    }

    if (current_ok) {
        txcp_log(TXCP_LOG_WARN,
                 "discarding the key file of an unfinished rotation", "path=%s",
                 tmp);
        (void) unlink(tmp);
        return TX_DECLINED;
    }

    key = sodium_malloc(TX_SEAL_KEY_LEN);
    if (key == NULL) {
        return TX_ERROR;
    }

    rc = TX_DECLINED;

    if (txcp_vault_read_key(tmp, key, 0) == TX_OK
        && txcp_vault_check_opens(key, check) == TX_OK)
    {
        if (rename(tmp, txcp_vlt.path) == 0) {
            (void) txcp_vault_fsync_dir(txcp_vlt.path);
            memcpy(txcp_vlt.key, key, TX_SEAL_KEY_LEN);
            txcp_log(TXCP_LOG_WARN,
                     "completed an interrupted master key rotation", "path=%s",
                     txcp_vlt.path);
            rc = TX_OK;

        } else {
            txcp_log(TXCP_LOG_ERROR, "cannot rename key file",
                     "path=%s err=\"%s\"", tmp, strerror(errno));
            rc = TX_ERROR;
        }
    }

    sodium_memzero(key, TX_SEAL_KEY_LEN);
    sodium_free(key);

    return rc;
}


int
txcp_vault_store_open(MDB_txn *txn)
{
    int     rc;
    size_t  n;
    char    err[256];
    MDB_val k, v;

    k.mv_data = "vault_check";
    k.mv_size = sizeof("vault_check") - 1;

    rc = mdb_get(txn, txcp.db[TXCP_DB_META], &k, &v);

    if (rc == 0) {
        if (txcp_vlt.generated) {
            txcp_log(TXCP_LOG_ERROR,
                     "this store is sealed with a master key, but the key "
                     "file is missing: restore it, or set master_key_file "
                     "or " TXCP_VAULT_ENV,
                     "path=%s", txcp_vlt.path);
            fprintf(stderr,
                    "torrix-cp: the store in %s is sealed, but the master "
                    "key file %s is missing\n",
                    txcp.conf.data_dir, txcp_vlt.path);
            return TX_ERROR;
        }

        if (txcp_vault_check_opens(txcp_vlt.key, &v) == TX_OK) {
            (void) txcp_vault_pending(&v, 1);
            return TX_OK;
        }

        rc = txcp_vault_pending(&v, 0);

        if (rc == TX_OK) {
            return TX_OK;
        }

        txcp_log(TXCP_LOG_ERROR,
                 "master key does not open this store: wrong key?",
                 "source=\"%s\"", txcp_vlt.what);
        fprintf(stderr,
                "torrix-cp: FATAL: master key from %s does not open this "
                "store: wrong key? (the store in %s was sealed with another "
                "master key; refusing to start)\n",
                txcp_vlt.what, txcp.conf.data_dir);
        return TX_ERROR;
    }

    if (rc != MDB_NOTFOUND) {
        txcp_log(TXCP_LOG_ERROR, "store get failed", "err=\"%s\"",
                 mdb_strerror(rc));
        return TX_ERROR;
    }

    /*
     * No check value: a new store, one from before the vault, or one whose
     * check was lost; sealed values already there must open.
     */

    if (txcp_vault_reseal(txn, txcp_vlt.key, NULL, &n, err, sizeof(err))
        != TX_OK) {
        txcp_log(TXCP_LOG_ERROR, "vault check failed",
                 "source=\"%s\" err=\"%s\"", txcp_vlt.what, err);
        fprintf(stderr,
                "torrix-cp: FATAL: master key from %s does not open this "
                "store: wrong key? (%s)\n",
                txcp_vlt.what, err);
        return TX_ERROR;
    }

    if (txcp_vlt.generated) {
        if (txcp_vault_write_key(txcp_vlt.path, txcp_vlt.key, 0600, 1) != TX_OK)
        {
            return TX_ERROR;
        }

        txcp_vlt.generated = 0;
        txcp_log(TXCP_LOG_INFO, "master key created at", "path=%s",
                 txcp_vlt.path);
    }

    if (txcp_vault_put_check(txn, txcp_vlt.key) != TX_OK) {
        return TX_ERROR;
    }

    txcp_log(TXCP_LOG_INFO, "vault check written", "source=\"%s\"",
             txcp_vlt.what);

    return TX_OK;
}


int
txcp_vault_migrate(MDB_txn *txn)
{
    int                        rc;
    const char                *id;
    cJSON                     *ids, *it, *rec;
    const txcp_vault_member_t *vm;

    if (txcp_vlt.key == NULL) {
        txcp_log(TXCP_LOG_ERROR,
                 "the store needs its credentials sealed: start torrix-cp "
                 "once before this command",
                 NULL);
        return TX_ERROR;
    }

    for (vm = txcp_vault_members; vm->name; vm++) {
        ids = txcp_vault_ids(txn, vm->db, vm->name);
        if (ids == NULL) {
            return TX_ERROR;
        }

        rc = TX_OK;

        cJSON_ArrayForEach(it, ids)
        {
            id = it->valuestring;
            rec = txcp_store_get(txn, vm->db, id);

            if (rec == NULL) {
                continue;
            }

            rc = txcp_vault_seal_member(rec, vm->name, id);

            if (rc == TX_OK) {
                rc = txcp_store_put(txn, vm->db, id, rec);
            }

            txcp_vault_wipe_member(rec, vm->name);
            cJSON_Delete(rec);

            if (rc != TX_OK) {
                break;
            }

            txcp_log(TXCP_LOG_INFO, "credential sealed", "db=%s id=%s",
                     txcp_store_db_name(vm->db), id);
        }

        cJSON_Delete(ids);

        if (rc != TX_OK) {
            return TX_ERROR;
        }
    }

    return TX_OK;
}


int
txcp_vault_rotate(const uint8_t new_key[TX_SEAL_KEY_LEN], const char *actor,
                  size_t *count, char *err, size_t errlen)
{
    int      rc, file;
    char     tmp[4200];
    uint8_t  us[8];
    cJSON   *diff;
    MDB_txn *txn;
    MDB_val  k, v;

    if (txcp_vlt.key == NULL) {
        snprintf(err, errlen, "vault not loaded");
        return TX_ERROR;
    }

    file = txcp_vlt.source != TXCP_VAULT_SRC_ENV;
    snprintf(tmp, sizeof(tmp), "%s.new", txcp_vlt.path);

    if (txcp_store_begin(0, &txn) != 0) {
        snprintf(err, errlen, "store txn failed");
        return TX_ERROR;
    }

    diff = cJSON_CreateObject();

    if (txcp_vault_reseal(txn, txcp_vlt.key, new_key, count, err, errlen)
        != TX_OK) {
        goto failed;
    }

    txcp_put_le64(us, (uint64_t) txcp_now_us());
    k.mv_data = "vault_rotated_at";
    k.mv_size = sizeof("vault_rotated_at") - 1;
    v.mv_data = us;
    v.mv_size = 8;

    txcp_audit_diff(diff, "master_key", cJSON_CreateString("[redacted]"),
                    cJSON_CreateString("[redacted]"));
    txcp_audit_diff(diff, "resealed", NULL,
                    cJSON_CreateNumber((double) *count));

    if (txcp_vault_put_check(txn, new_key) != TX_OK
        || mdb_put(txn, txcp.db[TXCP_DB_META], &k, &v, 0) != 0
        || txcp_audit_append(txn, actor, "vault.rotate", "vault", "master_key",
                             diff)
               != TX_OK)
    {
        snprintf(err, errlen, "store write failed");
        goto failed;
    }

    if (file && txcp_vault_write_key(txcp_vlt.path, new_key, 0600, 0) != TX_OK)
    {
        snprintf(err, errlen, "cannot write %s", tmp);
        goto failed;
    }

    rc = txcp_store_commit(txn);
    txn = NULL;

    if (rc != 0) {
        if (file) {
            (void) unlink(tmp);
        }

        snprintf(err, errlen, "store commit failed");
        goto failed;
    }

    memcpy(txcp_vlt.key, new_key, TX_SEAL_KEY_LEN);
    cJSON_Delete(diff);

    txcp_log(TXCP_LOG_INFO, "master key rotated",
             "source=\"%s\" resealed=%zu actor=%s", txcp_vlt.what, *count,
             actor);

    if (file) {
        if (rename(tmp, txcp_vlt.path) != 0) {
            snprintf(err, errlen,
                     "the store is sealed under the new key, but renaming "
                     "%s over %s failed (%s): rename it by hand",
                     tmp, txcp_vlt.path, strerror(errno));
            txcp_log(TXCP_LOG_ERROR, "cannot rename key file",
                     "path=%s err=\"%s\"", tmp, strerror(errno));
            return TX_ERROR;
        }

        (void) txcp_vault_fsync_dir(txcp_vlt.path);
    }

    return TX_OK;

failed:

    if (txn) {
        mdb_txn_abort(txn);
    }

    cJSON_Delete(diff);
    txcp_log(TXCP_LOG_ERROR, "master key rotation failed", "err=\"%s\"", err);

    return TX_ERROR;
}


static const char *
txcp_vault_source_name(void)
{
    switch (txcp_vlt.source) {
    case TXCP_VAULT_SRC_FILE:
        return "file";
    case TXCP_VAULT_SRC_ENV:
        return "env";
    }

    return "generated";
}


static cJSON *
txcp_vault_status(MDB_txn *txn)
{
    long    n;
    char    ts[40];
    cJSON  *out;
    MDB_val k, v;

    n = txcp_vault_count(txn);

    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "algorithm",
                            tx_seal_alg_name(tx_seal_default_alg()));
    cJSON_AddStringToObject(out, "master_key_source", txcp_vault_source_name());
    cJSON_AddNumberToObject(out, "credentials", (double) (n < 0 ? 0 : n));

    k.mv_data = "vault_rotated_at";
    k.mv_size = sizeof("vault_rotated_at") - 1;

    if (mdb_get(txn, txcp.db[TXCP_DB_META], &k, &v) == 0 && v.mv_size == 8) {
        txcp_time_format((int64_t) txcp_get_le64(v.mv_data), 3, ts, sizeof(ts));
        cJSON_AddStringToObject(out, "rotated_at", ts);

    } else {
        cJSON_AddNullToObject(out, "rotated_at");
    }

    return out;
}


void
txcp_api_vault_get(txcp_req_t *r)
{
    MDB_txn *txn;

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    txcp_http_reply(r, 200, txcp_vault_status(txn));
    mdb_txn_abort(txn);
}


void
txcp_api_vault_rotate(txcp_req_t *r)
{
    char     err[512];
    size_t   count;
    cJSON   *body, *it, *out;
    uint8_t *key;
    MDB_txn *txn;

    body = NULL;
    it = NULL;

    key = sodium_malloc(TX_SEAL_KEY_LEN);
    if (key == NULL) {
        txcp_http_error(r, 500, "internal error");
        return;
    }

    if (r->body && r->len > 0) {
        body = txcp_json_parse_body(r->body, r->len, err, sizeof(err));
        sodium_memzero(r->body, r->len);

        if (body == NULL) {
            txcp_http_error(r, 400, "%s", err);
            goto done;
        }
    }

    if (body) {
        cJSON_ArrayForEach(it, body)
        {
            if (strcmp(it->string, "new_key") != 0) {
                txcp_http_error(r, 400, "unknown field '%.100s'", it->string);
                goto done;
            }
        }

        it = cJSON_GetObjectItemCaseSensitive(body, "new_key");
    }

    if (it && !cJSON_IsNull(it)) {
        if (!cJSON_IsString(it)
            || tx_seal_key_parse(it->valuestring, strlen(it->valuestring), key)
                   != TX_OK)
        {
            txcp_http_error(r, 400,
                            "new_key must be 64 hex characters or the base64 "
                            "of 32 bytes");
            goto done;
        }

        if (sodium_memcmp(key, txcp_vlt.key, TX_SEAL_KEY_LEN) == 0) {
            txcp_http_error(r, 400, "new_key is the current master key");
            goto done;
        }

    } else if (txcp_vlt.source == TXCP_VAULT_SRC_ENV) {
        txcp_http_error(r, 409,
                        "the master key comes from " TXCP_VAULT_ENV
                        ": torrix-cp cannot change it; send {\"new_key\": "
                        "...} and set " TXCP_VAULT_ENV
                        " to that key before the next start");
        goto done;

    } else {
        randombytes_buf(key, TX_SEAL_KEY_LEN);
    }

    if (txcp_vault_rotate(key, r->actor, &count, err, sizeof(err)) != TX_OK) {
        txcp_http_error(r, 500, "rotation failed: %s", err);
        goto done;
    }

    if (txcp_store_begin(1, &txn) != 0) {
        txcp_http_error(r, 500, "internal error");
        goto done;
    }

    out = txcp_vault_status(txn);
    mdb_txn_abort(txn);

    cJSON_AddBoolToObject(out, "rotated", 1);
    cJSON_AddNumberToObject(out, "resealed", (double) count);

    if (txcp_vlt.source == TXCP_VAULT_SRC_ENV) {
        cJSON_AddStringToObject(out, "action_required",
                                "set " TXCP_VAULT_ENV " to the new key "
                                "before the next start of torrix-cp");

    } else {
        cJSON_AddStringToObject(out, "master_key_file", txcp_vlt.path);
    }

    txcp_http_reply(r, 200, out);

done:

    if (it && cJSON_IsString(it)) {
        sodium_memzero(it->valuestring, strlen(it->valuestring));
    }

    cJSON_Delete(body);
    sodium_memzero(key, TX_SEAL_KEY_LEN);
    sodium_free(key);
}


int
txcp_vault_cli(int argc, char **argv)
{
    int         i, rc;
    long        pid;
    char        err[512];
    size_t      count;
    uint8_t    *key;
    const char *newfile;

    if (argc < 3 || strcmp(argv[2], "rotate") != 0) {
        fprintf(stderr, "usage: torrix-cp vault rotate [--new-key-file F] "
                        "[--data DIR] [--config FILE]\n");
        return 2;
    }

    if (txcp_config_defaults(&txcp.conf) != 0) {
        return 2;
    }

    txcp.conf.log_level = TXCP_LOG_WARN;
    newfile = NULL;
    key = NULL;
    rc = 2;

    for (i = 3; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--new-key-file") == 0) {
            newfile = argv[++i];
            continue;
        }

        if (i + 1 < argc
            && (strcmp(argv[i], "--master-key-file") == 0
                || strcmp(argv[i], "--master_key_file") == 0))
        {
            if (txcp_config_set(&txcp.conf, "master_key_file", argv[++i], err,
                                sizeof(err))
                != 0)
            {
                fprintf(stderr, "torrix-cp: %s\n", err);
                goto done;
            }

            continue;
        }

        if (txcp_config_cli_opt(&txcp.conf, argc, argv, &i, err, sizeof(err))
            != 0) {
            fprintf(stderr, "torrix-cp: %s\n", err);
            goto done;
        }
    }

    pid = txcp_store_user();

    if (pid != 0) {
        fprintf(stderr,
                pid > 0 ? "torrix-cp: the store in %s is in use by pid %ld "
                          "(stop torrix-cp first, or use POST "
                          "/api/v1/vault/rotate)\n"
                        : "torrix-cp: cannot check the lock of the store in "
                          "%s\n",
                txcp.conf.data_dir, pid);
        rc = 1;
        goto done;
    }

    if (sodium_init() < 0) {
        goto done;
    }

    key = sodium_malloc(TX_SEAL_KEY_LEN);
    if (key == NULL) {
        goto done;
    }

    if (txcp_vault_init(0) != TX_OK) {
        fprintf(stderr, "torrix-cp: no usable master key\n");
        rc = 1;
        goto done;
    }

    if (newfile) {
        if (txcp_vault_read_key(newfile, key, 0) != TX_OK) {
            fprintf(stderr,
                    "torrix-cp: %s: not a key (64 hex characters or the "
                    "base64 of 32 bytes)\n",
                    newfile);
            rc = 1;
            goto done;
        }

    } else if (txcp_vlt.source == TXCP_VAULT_SRC_ENV) {
        fprintf(stderr, "torrix-cp: the master key comes from " TXCP_VAULT_ENV
                        ": give the new key with --new-key-file F, then "
                        "set " TXCP_VAULT_ENV " to it\n");
        rc = 1;
        goto done;

    } else {
        randombytes_buf(key, TX_SEAL_KEY_LEN);
    }

    if (sodium_memcmp(key, txcp_vlt.key, TX_SEAL_KEY_LEN) == 0) {
        fprintf(stderr, "torrix-cp: the new key is the current key\n");
        rc = 1;
        goto done;
    }

    if (txcp_store_open(0) != TX_OK) {
        fprintf(stderr, "torrix-cp: cannot open the store in %s\n",
                txcp.conf.data_dir);
        rc = 1;
        goto done;
    }

    if (txcp_vault_rotate(key, "cli", &count, err, sizeof(err)) != TX_OK) {
        fprintf(stderr, "torrix-cp: rotation failed: %s\n", err);
        txcp_store_close();
        goto done;
    }

    txcp_store_close();

    if (txcp_vlt.source == TXCP_VAULT_SRC_ENV) {
        printf("vault rotated: %zu credentials resealed; set " TXCP_VAULT_ENV
               " to the key in %s before starting torrix-cp\n",
               count, newfile);

    } else {
        printf("vault rotated: %zu credentials resealed; new master key "
               "in %s\n",
               count, txcp_vlt.path);
    }

    rc = 0;

done:

    if (key) {
        sodium_memzero(key, TX_SEAL_KEY_LEN);
        sodium_free(key);
    }

    txcp_vault_free();
    txcp_config_free(&txcp.conf);

    return rc;
}

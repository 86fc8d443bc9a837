/*
 * torrix-cp spool ingest (see txcp_ingest.h).
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tx_record.h"
#include "tx_spool.h"

#include "txcp.h"
#include "txcp_ingest.h"
#include "txcp_store.h"


#define TXCP_SPOOL_NAME_MAX 200
#define TXCP_SPOOL_JUNK_AGE                                                    \
    10 /* seconds before a headerless file is
                                        considered abandoned */


typedef struct {
    char name[TXCP_SPOOL_NAME_MAX + 1];
} txcp_spool_name_t;


static int
txcp_spool_path(char *buf, size_t len, const char *name)
{
    int n;

    n = snprintf(buf, len, "%s/spool/%s", txcp.conf.data_dir, name);

    return n > 0 && (size_t) n < len ? TX_OK : TX_ERROR;
}


int
txcp_ingest_init(void)
{
    int         rc;
    char        path[4096], name[TXCP_SPOOL_NAME_MAX + 1];
    MDB_txn    *txn;
    MDB_val     k, v;
    MDB_cursor *cur;
    struct stat st;

    snprintf(path, sizeof(path), "%s/spool", txcp.conf.data_dir);

    if (stat(path, &st) != 0 && mkdir(path, 0750) != 0) {
        txcp_log(TXCP_LOG_ERROR, "mkdir failed", "path=%s err=\"%s\"", path,
                 strerror(errno));
        return TX_ERROR;
    }

    if (txcp_store_begin(0, &txn) != 0) {
        return TX_ERROR;
    }

    rc = mdb_cursor_open(txn, txcp.db[TXCP_DB_SPOOL_CURSOR], &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return TX_ERROR;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size > 0 && k.mv_size <= TXCP_SPOOL_NAME_MAX) {
            memcpy(name, k.mv_data, k.mv_size);
            name[k.mv_size] = '\0';

            if (txcp_spool_path(path, sizeof(path), name) == TX_OK
                && (stat(path, &st) == 0 || errno != ENOENT))
            {
                continue;
            }
        }

        txcp_log(TXCP_LOG_INFO, "spool cursor dropped", "file=%.*s",
                 (int) k.mv_size, (char *) k.mv_data);

        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            break;
        }
    }

    mdb_cursor_close(cur);

    if (rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return TX_ERROR;
    }

    return txcp_store_commit(txn) == 0 ? TX_OK : TX_ERROR;
}


static int
txcp_spool_cmp(const void *a, const void *b)
{
    return strcmp(((const txcp_spool_name_t *) a)->name,
                  ((const txcp_spool_name_t *) b)->name);
}


static int
txcp_ingest_cursor_del(const char *name)
{
    MDB_txn *txn;

    if (txcp_store_begin(0, &txn) != 0) {
        return TX_ERROR;
    }

    if (txcp_store_del(txn, TXCP_DB_SPOOL_CURSOR, name) == TX_ERROR) {
        mdb_txn_abort(txn);
        return TX_ERROR;
    }

    return txcp_store_commit(txn) == 0 ? TX_OK : TX_ERROR;
}


/* Takes the writer's flock if the writer is gone: 1 taken, 0 not. */
static int
txcp_ingest_lock(int fd, int *locked)
{
    if (!*locked && flock(fd, LOCK_EX | LOCK_NB) == 0) {
        *locked = 1;
    }

    return *locked;
}


/*
 * Ingests what is readable in one file, in transactions of ingest_batch
 * runs.  Returns 1 when more work remains in it (deadline reached), 0
 * otherwise, -1 on error.
 */
static int
txcp_ingest_file(const char *name, int64_t deadline_us)
{
    int            fd, rc, finished, locked, more, retried;
    size_t         off, prev, start, fsize, plen, n;
    uint64_t       ingested, dups, torn;
    uint8_t       *base, ob[8];
    const uint8_t *payload;
    char           path[4096];
    struct stat    st;
    tx_str_t       id;
    MDB_txn       *txn;
    MDB_val        k, v;

    if (txcp_spool_path(path, sizeof(path), name) != TX_OK) {
        return -1;
    }

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return errno == ENOENT ? 0 : -1;
    }

    base = NULL;
    fsize = 0;
    locked = 0;
    finished = 0;
    more = 0;

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }

    if (st.st_size < TX_SPOOL_HDR_LEN + TX_SPOOL_FRAME_HDR) {
        goto junk;
    }

    fsize = (size_t) st.st_size;
    base = mmap(NULL, fsize, PROT_READ, MAP_SHARED, fd, 0);

    if (base == MAP_FAILED) {
        base = NULL;
        close(fd);
        return -1;
    }

    if (tx_spool_hdr_check(base, fsize) != TX_OK) {
        goto junk;
    }

    for (;;) {
        if (txcp_store_begin(0, &txn) != 0) {
            goto failed;
        }

        k.mv_data = (void *) name;
        k.mv_size = strlen(name);
        off = TX_SPOOL_HDR_LEN;

        rc = mdb_get(txn, txcp.db[TXCP_DB_SPOOL_CURSOR], &k, &v);

        if (rc == 0 && v.mv_size == 8) {
            off = (size_t) txcp_get_le64(v.mv_data);
        }

        if (off < TX_SPOOL_HDR_LEN || off > fsize || (off & 7) != 0) {
            txcp_log(TXCP_LOG_ERROR, "spool cursor out of range",
                     "file=%s off=%zu", name, off);
            mdb_txn_abort(txn);
            goto failed;
        }

        start = off;
        n = 0;
        ingested = 0;
        dups = 0;
        torn = 0;
        retried = 0;

        while (n < (size_t) txcp.conf.ingest_batch) {
            prev = off;
            rc = tx_spool_read(base, fsize, &off, &payload, &plen);

            if (rc == TX_OK) {
                n++;

                if (tx_rec_find(payload, plen, TX_RUN_ID, &id) != TX_OK
                    || id.len != 16) {
                    torn++;
                    continue;
                }

                k.mv_data = (void *) id.data;
                k.mv_size = 16;
                v.mv_data = (void *) payload;
                v.mv_size = plen;

                rc = mdb_put(txn, txcp.db[TXCP_DB_RUNS], &k, &v,
                             MDB_NOOVERWRITE);

                if (rc == MDB_KEYEXIST) {
                    dups++;
                    continue;
                }

                if (rc != 0) {
                    txcp_log(TXCP_LOG_ERROR, "run insert failed",
                             "file=%s err=\"%s\"", name, mdb_strerror(rc));
                    mdb_txn_abort(txn);
                    goto failed;
                }

                ingested++;
                continue;
            }

            if (rc == TX_DONE) {
                finished = 1;
                break;
            }

            if (rc == TX_ERROR) {
                if (off != prev) {
                    /* a torn frame (bad crc) skipped */
                    n++;
                    torn++;
                    continue;
                }

                /* the rest is unreadable: give up once the writer is gone */

                if (txcp_ingest_lock(fd, &locked)) {
                    txcp_log(TXCP_LOG_WARN, "spool file unreadable after",
                             "file=%s off=%zu", name, off);
                    torn++;
                    finished = 1;
                }

                break;
            }

            /*
             * TX_AGAIN: nothing more yet.  If the writer is gone, read once
             * more under its lock (a frame may have landed just before it
             * exited); still nothing means the file is finished.
             */

            if (!retried && txcp_ingest_lock(fd, &locked)) {
                retried = 1;
                continue;
            }

            if (locked) {
                finished = 1;
            }

            break;
        }

        if (off == start && !finished) {
            /* nothing new: no write txn (and no fsync) for an idle file */
            mdb_txn_abort(txn);
            break;
        }

        txcp_put_le64(ob, off);
        k.mv_data = (void *) name;
        k.mv_size = strlen(name);
        v.mv_data = ob;
        v.mv_size = 8;

        rc = mdb_put(txn, txcp.db[TXCP_DB_SPOOL_CURSOR], &k, &v, 0);

        if (rc != 0) {
            txcp_log(TXCP_LOG_ERROR, "spool cursor put failed",
                     "file=%s err=\"%s\"", name, mdb_strerror(rc));
            mdb_txn_abort(txn);
            goto failed;
        }

        if (txcp_store_commit(txn) != 0) {
            goto failed;
        }

        txcp.ingest.ingested += ingested;
        txcp.ingest.duplicates += dups;
        txcp.ingest.torn += torn;

        if (ingested || dups || torn) {
            txcp_log(TXCP_LOG_DEBUG, "ingested",
                     "file=%s runs=%llu duplicates=%llu torn=%llu off=%zu",
                     name, (unsigned long long) ingested,
                     (unsigned long long) dups, (unsigned long long) torn, off);
        }

        if (finished || n < (size_t) txcp.conf.ingest_batch) {
            break;
        }

        if (txcp_now_us() >= deadline_us) {
            more = 1;
            break;
        }
    }

    munmap(base, fsize);

    if (finished) {
        /* the commit above covers the end of the file */

        if (unlink(path) != 0 && errno != ENOENT) {
            txcp_log(TXCP_LOG_ERROR, "spool unlink failed",
                     "file=%s err=\"%s\"", name, strerror(errno));
            close(fd);
            return -1;
        }

        close(fd);

        txcp.ingest.files_done++;
        txcp_log(TXCP_LOG_INFO, "spool file done", "file=%s", name);

        return txcp_ingest_cursor_del(name) == TX_OK ? 0 : -1;
    }

    close(fd);

    return more;

junk:

    /*
     * No valid header.  A writer creates the file, takes its flock, then
     * sizes it and writes the header: only a file that old and unlocked is
     * abandoned.
     */

    if (time(NULL) - st.st_mtime >= TXCP_SPOOL_JUNK_AGE
        && txcp_ingest_lock(fd, &locked))
    {
        txcp_log(TXCP_LOG_WARN, "spool file without a valid header removed",
                 "file=%s size=%lld", name, (long long) st.st_size);

        if (unlink(path) == 0) {
            txcp_ingest_cursor_del(name);
        }
    }

    if (base) {
        munmap(base, fsize);
    }

    close(fd);

    return 0;

failed:

    if (base) {
        munmap(base, fsize);
    }

    close(fd);

    return -1;
}


void
txcp_ingest_run(long budget_ms)
{
    DIR               *dir;
    struct dirent     *de;
    txcp_spool_name_t *names, *p;
    size_t             n, cap, i, len, sfx;
    int64_t            deadline;
    char               path[4096];

    snprintf(path, sizeof(path), "%s/spool", txcp.conf.data_dir);

    dir = opendir(path);
    if (dir == NULL) {
        return;
    }

    names = NULL;
    n = 0;
    cap = 0;
    sfx = strlen(TX_SPOOL_SUFFIX);

    while ((de = readdir(dir)) != NULL) {
        len = strlen(de->d_name);

        if (de->d_name[0] == '.' || len <= sfx || len > TXCP_SPOOL_NAME_MAX
            || strcmp(de->d_name + len - sfx, TX_SPOOL_SUFFIX) != 0)
        {
            continue;
        }

        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            p = realloc(names, cap * sizeof(txcp_spool_name_t));

            if (p == NULL) {
                break;
            }

            names = p;
        }

        memcpy(names[n].name, de->d_name, len + 1);
        n++;
    }

    closedir(dir);

    if (n == 0) {
        free(names);
        return;
    }

    qsort(names, n, sizeof(txcp_spool_name_t), txcp_spool_cmp);

    deadline = txcp_now_us() + budget_ms * 1000;

    for (i = 0; i < n; i++) {
        if (txcp_ingest_file(names[i].name, deadline) < 0) {
            txcp_log(TXCP_LOG_WARN, "spool file not ingested", "file=%s",
                     names[i].name);
        }

        if (txcp_now_us() >= deadline) {
            break;
        }
    }

    free(names);
}

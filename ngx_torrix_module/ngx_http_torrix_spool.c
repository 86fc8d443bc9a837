/*
 * ngx_torrix_module: the per-worker spool of run records (format in
 * shared/tx_spool.h).
 *
 * The file is created lazily at the first record, sized up front and mapped
 * MAP_SHARED: appending is a memcpy with no system call, and what was written
 * survives the worker being killed because the pages belong to the page
 * cache.  The worker holds an exclusive flock on its file; torrix-cp reads
 * files while they grow and, once sealed (or orphaned) and ingested, moves
 * a few into <dir>/free/ for reuse (tx_spool.h) and deletes the rest.  A
 * timer seals a file after `rotate` so none stays open forever.
 *
 * A finished file stays mapped for a few seconds: when the worker takes it
 * back from free/, its pages are still mapped writable and writing it costs
 * the kernel nothing (mapping a file afresh costs a write fault per 4 KB
 * page, ~1.4 us each on ext4 even with the pages in the page cache: a third
 * of a microsecond per run record).  Files torrix-cp deleted meanwhile keep
 * their blocks until the mapping goes, at most NGX_HTTP_TORRIX_KEEP_MS.
 *
 * A mapping that goes is unmapped a stretch at a time, one stretch a
 * millisecond timer: unmapping a whole 8 MB file at once (2048 written
 * pages) stalled the worker's event loop 0.5-7 ms, and with it every
 * request the worker was serving.
 */

#include "ngx_http_torrix_module.h"

#include <dirent.h>
#include <sys/file.h>
#include <sys/mman.h>


#define NGX_HTTP_TORRIX_POPULATE (256 * 1024)
#define NGX_HTTP_TORRIX_KEEP     4            /* finished files kept mapped */
#define NGX_HTTP_TORRIX_KEEP_MS  5000         /* for at most this long */
#define NGX_HTTP_TORRIX_UNMAP    (512 * 1024) /* unmapped a timer tick */
#define NGX_HTTP_TORRIX_UNMAPS   (NGX_HTTP_TORRIX_KEEP + 2)


typedef struct {
    dev_t      dev;
    ino_t      ino;
    u_char    *base;
    size_t     populated;
    ngx_msec_t closed;
} ngx_http_torrix_kept_t;


/* a mapping on its way out: [base, base + left) still mapped */
typedef struct {
    u_char *base;
    size_t  left;
} ngx_http_torrix_unmap_t;


typedef struct {
    ngx_str_t               dir;
    size_t                  size;
    ngx_msec_t              rotate;
    ngx_fd_t                fd;
    dev_t                   dev; /* of the file mapped at base */
    ino_t                   ino;
    u_char                 *base;
    size_t                  off;
    size_t                  populated; /* pages mapped writable up to here */
    ngx_uint_t              no_populate;
    ngx_msec_t              opened;
    ngx_uint_t              records;
    ngx_event_t             timer;
    ngx_connection_t        dumb; /* timer data, for ngx_event_ident() */
    ngx_uint_t              failed;
    ngx_uint_t              nkept;
    ngx_http_torrix_kept_t  kept[NGX_HTTP_TORRIX_KEEP];
    ngx_uint_t              nunmap;
    ngx_http_torrix_unmap_t unmap[NGX_HTTP_TORRIX_UNMAPS];
    ngx_event_t             unmap_timer;
    u_char                  name[NGX_MAX_PATH];
} ngx_http_torrix_spool_t;


static ngx_int_t ngx_http_torrix_spool_open(ngx_log_t *log);
static ngx_int_t ngx_http_torrix_spool_reuse(ngx_http_torrix_spool_t *sp,
                                             int64_t now, ngx_log_t *log);
static ngx_int_t ngx_http_torrix_spool_map(ngx_http_torrix_spool_t *sp,
                                           int64_t                  now);
static void      ngx_http_torrix_spool_populate(ngx_http_torrix_spool_t *sp,
                                                size_t                   need);
static void      ngx_http_torrix_spool_close(ngx_log_t *log);
static ngx_int_t ngx_http_torrix_spool_take(ngx_http_torrix_spool_t *sp,
                                            const char *name, int64_t now,
                                            ngx_log_t *log);
static void      ngx_http_torrix_spool_keep(ngx_http_torrix_spool_t *sp);
static ngx_http_torrix_kept_t *ngx_http_torrix_spool_kept(
    ngx_http_torrix_spool_t *sp, dev_t dev, ino_t ino);
static void ngx_http_torrix_spool_drop(ngx_http_torrix_spool_t *sp,
                                       ngx_msec_t               age);
static void ngx_http_torrix_spool_tick(ngx_event_t *ev);
static void ngx_http_torrix_spool_unmap(ngx_http_torrix_spool_t *sp,
                                        u_char                  *base);
static void ngx_http_torrix_spool_unmap_step(ngx_event_t *ev);


static ngx_http_torrix_spool_t ngx_http_torrix_spool;


ngx_int_t
ngx_http_torrix_spool_init_process(ngx_cycle_t *cycle)
{
    ngx_http_torrix_spool_t     *sp;
    ngx_http_torrix_main_conf_t *tmcf;

    sp = &ngx_http_torrix_spool;

    tmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_torrix_module);
    if (tmcf == NULL || tmcf->spool_path.len == 0) {
        return NGX_OK;
    }

    if (tmcf->spool_path.len + 64 > NGX_MAX_PATH) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "torrix: spool path too long");
        return NGX_ERROR;
    }

    sp->dir = tmcf->spool_path;
    sp->size = tmcf->spool_size;
    sp->rotate = tmcf->spool_rotate;
    sp->fd = NGX_INVALID_FILE;

    sp->timer.handler = ngx_http_torrix_spool_tick;
    sp->timer.log = cycle->log;
    sp->timer.data = &sp->dumb;
    sp->dumb.fd = (ngx_socket_t) -1;
    sp->timer.cancelable = 1;

    sp->unmap_timer.handler = ngx_http_torrix_spool_unmap_step;
    sp->unmap_timer.log = cycle->log;
    sp->unmap_timer.data = &sp->dumb;
    sp->unmap_timer.cancelable = 1;

    ngx_add_timer(&sp->timer, ngx_min(sp->rotate, 1000));

    return NGX_OK;
}


void
ngx_http_torrix_spool_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t               i;
    ngx_http_torrix_spool_t *sp;

    sp = &ngx_http_torrix_spool;

    ngx_http_torrix_spool_close(cycle->log);
    ngx_http_torrix_spool_drop(sp, 0);

    /* no more steps: what is left goes now */
    for (i = 0; i < sp->nunmap; i++) {
        (void) munmap(sp->unmap[i].base, sp->unmap[i].left);
    }

    sp->nunmap = 0;
}


static ngx_int_t
ngx_http_torrix_spool_open(ngx_log_t *log)
{
    u_char                  *p;
    int64_t                  now;
    ngx_http_torrix_spool_t *sp;

    sp = &ngx_http_torrix_spool;

    now = ngx_http_torrix_now_us();

    p = ngx_sprintf(sp->name, "%V/%016xL-%P" TX_SPOOL_SUFFIX "%Z", &sp->dir,
                    (uint64_t) now, ngx_pid);
    (void) p;

    if (ngx_http_torrix_spool_reuse(sp, now, log) == NGX_OK) {
        return NGX_OK;
    }

    sp->fd = ngx_open_file(sp->name, NGX_FILE_RDWR,
                           NGX_FILE_CREATE_OR_OPEN | O_EXCL, 0640);
    if (sp->fd == NGX_INVALID_FILE) {
        goto failed;
    }

    if (flock(sp->fd, LOCK_EX | LOCK_NB) == -1) {
        goto failed;
    }

    if (ngx_http_torrix_spool_map(sp, now) != NGX_OK) {
        goto failed;
    }

    return NGX_OK;

failed:

    if (sp->failed++ % 1000 == 0) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "torrix: cannot create spool file \"%s\"", sp->name);
    }

    if (sp->fd != NGX_INVALID_FILE) {
        (void) ngx_delete_file(sp->name);
        (void) ngx_close_file(sp->fd);
        sp->fd = NGX_INVALID_FILE;
    }

    return NGX_ERROR;
}


/*
 * Sizes and maps the locked file sp->fd and writes a new header and a zero
 * first length (the file may be a recycled one).
 */
static ngx_int_t
ngx_http_torrix_spool_map(ngx_http_torrix_spool_t *sp, int64_t now)
{
    struct stat             st;
    ngx_http_torrix_kept_t *k;

    if (fstat(sp->fd, &st) == -1) {
        return NGX_ERROR;
    }

    if ((size_t) st.st_size != sp->size && ftruncate(sp->fd, sp->size) == -1) {
        return NGX_ERROR;
    }

    sp->dev = st.st_dev;
    sp->ino = st.st_ino;

    k = ngx_http_torrix_spool_kept(sp, st.st_dev, st.st_ino);

    if (k) {
        /* taken again: its mapping is ours as it was */
        sp->base = k->base;
        sp->populated = k->populated;
        *k = sp->kept[--sp->nkept];

    } else {
        sp->base =
            mmap(NULL, sp->size, PROT_READ | PROT_WRITE, MAP_SHARED, sp->fd, 0);
        if (sp->base == MAP_FAILED) {
            sp->base = NULL;
            return NGX_ERROR;
        }

        sp->populated = 0;
    }

    ngx_http_torrix_spool_populate(sp, TX_SPOOL_HDR_LEN + TX_SPOOL_FRAME_HDR);

    tx_spool_hdr_init(sp->base, (uint32_t) ngx_pid, now, sp->size);
    ngx_memzero(sp->base + TX_SPOOL_HDR_LEN, TX_SPOOL_FRAME_HDR);

    sp->off = TX_SPOOL_HDR_LEN;
    sp->opened = ngx_current_msec;
    sp->records = 0;
    sp->failed = 0;

    return NGX_OK;
}


/*
 * Takes a file torrix-cp left in <dir>/free/ (tx_spool.h): its pages are in
 * the page cache and its blocks allocated, so writing it costs the kernel
 * neither; one this worker still has mapped first.  NGX_DECLINED when there
 * is none to take.
 */
static ngx_int_t
ngx_http_torrix_spool_reuse(ngx_http_torrix_spool_t *sp, int64_t now,
                            ngx_log_t *log)
{
    DIR           *dir;
    size_t         len;
    ngx_int_t      rc;
    ngx_uint_t     tries, pass;
    struct dirent *de;
    u_char         path[NGX_MAX_PATH];

    ngx_sprintf(path, "%V/free%Z", &sp->dir);

    dir = opendir((char *) path);
    if (dir == NULL) {
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;
    tries = 0;

    /* pass 0: the files still mapped here; pass 1: any */
    for (pass = sp->nkept ? 0 : 1; pass < 2 && rc != NGX_OK; pass++) {
        if (pass == 1 && sp->nkept) {
            rewinddir(dir);
        }

        while (tries < 8 && (de = readdir(dir)) != NULL) {
            len = ngx_strlen(de->d_name);

            if ((pass == 0 && !ngx_http_torrix_spool_kept(sp, 0, de->d_ino))
                || len <= sizeof(TX_SPOOL_SUFFIX) - 1
                || ngx_strcmp(de->d_name + len - (sizeof(TX_SPOOL_SUFFIX) - 1),
                              TX_SPOOL_SUFFIX)
                       != 0
                || len + sp->dir.len + 7 >= NGX_MAX_PATH)
            {
                continue;
            }

            tries++;

            rc = ngx_http_torrix_spool_take(sp, de->d_name, now, log);
            if (rc == NGX_OK) {
                break;
            }
        }
    }

    (void) closedir(dir);

    return rc;
}


/* takes free/<name>: NGX_DECLINED when another worker was quicker */
static ngx_int_t
ngx_http_torrix_spool_take(ngx_http_torrix_spool_t *sp, const char *name,
                           int64_t now, ngx_log_t *log)
{
    u_char path[NGX_MAX_PATH], claim[NGX_MAX_PATH];

    ngx_sprintf(path, "%V/free/%s%Z", &sp->dir, name);
    ngx_sprintf(claim, "%V/free/.claim-%P" TX_SPOOL_SUFFIX "%Z", &sp->dir,
                ngx_pid);

    /* only the worker whose rename succeeds goes on with the file */
    if (ngx_strcmp(path, claim) != 0
        && rename((char *) path, (char *) claim) == -1) {
        return NGX_DECLINED;
    }

    sp->fd = ngx_open_file(claim, NGX_FILE_RDWR, NGX_FILE_OPEN, 0);
    if (sp->fd == NGX_INVALID_FILE) {
        return NGX_DECLINED;
    }

    if (flock(sp->fd, LOCK_EX | LOCK_NB) == 0
        && ngx_http_torrix_spool_map(sp, now) == NGX_OK)
    {
        /* live only now, with its new header, under our lock */
        if (rename((char *) claim, (char *) sp->name) == 0) {
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                      "torrix: rename(\"%s\", \"%s\") failed", claim, sp->name);
    }

    if (sp->base) {
        (void) munmap(sp->base, sp->size);
        sp->base = NULL;
    }

    (void) ngx_close_file(sp->fd);
    sp->fd = NGX_INVALID_FILE;

    return NGX_DECLINED;
}


static void
ngx_http_torrix_spool_close(ngx_log_t *log)
{
    ngx_http_torrix_spool_t *sp;

    sp = &ngx_http_torrix_spool;

    if (sp->base) {
        tx_spool_seal(sp->base, sp->size, sp->off);
        ngx_http_torrix_spool_keep(sp);
        sp->base = NULL;
    }

    if (sp->fd != NGX_INVALID_FILE) {
        /*
         * torrix-cp may now finish the file; unlocked explicitly, since a
         * kept mapping holds the open file, and with it a lock close would
         * leave in place
         */
        (void) flock(sp->fd, LOCK_UN);
        (void) ngx_close_file(sp->fd);
        sp->fd = NGX_INVALID_FILE;
    }
}


ngx_int_t
ngx_http_torrix_spool_write(ngx_log_t *log, const u_char *rec, size_t len)
{
    ngx_http_torrix_spool_t *sp;

    sp = &ngx_http_torrix_spool;

    if (sp->dir.len == 0) {
        return NGX_DECLINED;
    }

    if (tx_spool_frame_size(len) + TX_SPOOL_HDR_LEN + TX_SPOOL_FRAME_HDR
        > sp->size) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "torrix: run record of %uz bytes exceeds the spool "
                      "file size",
                      len);
        return NGX_ERROR;
    }

    if (sp->base == NULL && ngx_http_torrix_spool_open(log) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_torrix_spool_populate(sp, sp->off + tx_spool_frame_size(len));

    if (tx_spool_append(sp->base, sp->size, &sp->off, rec, len) != TX_OK) {
        ngx_http_torrix_spool_close(log);

        if (ngx_http_torrix_spool_open(log) != NGX_OK) {
            return NGX_ERROR;
        }

        if (tx_spool_append(sp->base, sp->size, &sp->off, rec, len) != TX_OK) {
            return NGX_ERROR;
        }
    }

    sp->records++;

    return NGX_OK;
}


static void
ngx_http_torrix_spool_tick(ngx_event_t *ev)
{
    ngx_http_torrix_spool_t *sp;

    sp = &ngx_http_torrix_spool;

    if (sp->base && sp->records && ngx_current_msec - sp->opened >= sp->rotate)
    {
        ngx_http_torrix_spool_close(ev->log);
    }

    ngx_http_torrix_spool_drop(sp, NGX_HTTP_TORRIX_KEEP_MS);

    if (ngx_exiting) {
        return;
    }

    ngx_add_timer(ev, ngx_min(sp->rotate, 1000));
}


/* the finished file at sp->base stays mapped (the oldest kept one goes) */
static void
ngx_http_torrix_spool_keep(ngx_http_torrix_spool_t *sp)
{
    ngx_uint_t              i, old;
    ngx_http_torrix_kept_t *k;

    if (sp->nkept == NGX_HTTP_TORRIX_KEEP) {
        old = 0;

        for (i = 1; i < sp->nkept; i++) {
            if ((ngx_msec_int_t) (sp->kept[i].closed - sp->kept[old].closed)
                < 0) {
                old = i;
            }
        }

        ngx_http_torrix_spool_unmap(sp, sp->kept[old].base);
        sp->kept[old] = sp->kept[--sp->nkept];
    }

    k = &sp->kept[sp->nkept++];

    k->dev = sp->dev;
    k->ino = sp->ino;
    k->base = sp->base;
    k->populated = sp->populated;
    k->closed = ngx_current_msec;
}


/*
 * The kept mapping of the file with inode ino (and device dev, unless 0:
 * readdir() tells no device, and free/ is on the spool's own), or NULL.
 */
static ngx_http_torrix_kept_t *
ngx_http_torrix_spool_kept(ngx_http_torrix_spool_t *sp, dev_t dev, ino_t ino)
{
    ngx_uint_t i;

    for (i = 0; i < sp->nkept; i++) {
        if (sp->kept[i].ino == ino && (dev == 0 || sp->kept[i].dev == dev)) {
            return &sp->kept[i];
        }
    }

    return NULL;
}


/* unmaps the finished files kept longer than age */
static void
ngx_http_torrix_spool_drop(ngx_http_torrix_spool_t *sp, ngx_msec_t age)
{
    ngx_uint_t i;

    for (i = 0; i < sp->nkept; /* void */) {
        if (ngx_current_msec - sp->kept[i].closed < age) {
            i++;
            continue;
        }

        ngx_http_torrix_spool_unmap(sp, sp->kept[i].base);
        sp->kept[i] = sp->kept[--sp->nkept];
    }
}


/*
 * Queues the file mapping at base (sp->size bytes) to be unmapped a stretch
 * a timer tick; with the queue full, it goes at once.
 */
static void
ngx_http_torrix_spool_unmap(ngx_http_torrix_spool_t *sp, u_char *base)
{
    if (sp->nunmap == NGX_HTTP_TORRIX_UNMAPS || ngx_exiting) {
        (void) munmap(base, sp->size);
        return;
    }

    sp->unmap[sp->nunmap].base = base;
    sp->unmap[sp->nunmap].left = sp->size;
    sp->nunmap++;

    if (!sp->unmap_timer.timer_set) {
        ngx_add_timer(&sp->unmap_timer, 1);
    }
}


static void
ngx_http_torrix_spool_unmap_step(ngx_event_t *ev)
{
    size_t                   len;
    ngx_http_torrix_unmap_t *u;
    ngx_http_torrix_spool_t *sp;

    sp = &ngx_http_torrix_spool;

    if (sp->nunmap == 0) {
        return;
    }

    /* the oldest first; a stretch from its start (munmap may split it) */
    u = &sp->unmap[0];
    len = ngx_min(u->left, NGX_HTTP_TORRIX_UNMAP);

    (void) munmap(u->base, len);

    u->base += len;
    u->left -= len;

    if (u->left == 0) {
        ngx_memmove(&sp->unmap[0], &sp->unmap[1],
                    --sp->nunmap * sizeof(ngx_http_torrix_unmap_t));
    }

    if (sp->nunmap) {
        ngx_add_timer(ev, 1);
    }
}


/*
 * Maps the next stretch of the file writable in one call
 * (MADV_POPULATE_WRITE, Linux 5.14+) rather than taking a page fault per
 * fresh page on the request path; older kernels just fault as before.
 */
static void
ngx_http_torrix_spool_populate(ngx_http_torrix_spool_t *sp, size_t need)
{
#ifdef MADV_POPULATE_WRITE
    size_t len;

    while (!sp->no_populate && need > sp->populated && sp->populated < sp->size)
    {
        len = ngx_min(NGX_HTTP_TORRIX_POPULATE, sp->size - sp->populated);

        if (madvise(sp->base + sp->populated, len, MADV_POPULATE_WRITE) == -1) {
            sp->no_populate = 1;
            return;
        }

        sp->populated += len;
    }
#endif
}

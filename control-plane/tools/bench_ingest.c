/*
 * bench_ingest: figures for torrix-cp (a benchmark, not a test: it prints
 * numbers and asserts nothing).
 *
 *   bench_ingest TORRIX_CP N [PORT] [WORKDIR]
 *
 * Writes N synthetic run records into sealed spool files (tx_spool_append,
 * as nginx workers do) under WORKDIR/data/spool, starts TORRIX_CP on that
 * data dir, and measures:
 *   - ingest: wall time and daemon CPU time until /api/v1/health reports N
 *     runs ingested (runs/s on the daemon's one thread)
 *   - GET /api/v1/spend?by=model and ?by=key with the N runs in the store
 *     (best and median of 7)
 *
 * BENCH_KEYS=n in the environment: n keys instead of 1000 (and at most n
 * projects, users and orgs).  BENCH_SHAPE=gateway: the gateway benchmark's
 * runs instead (bench/bench.py): one key, project, user and org, one model,
 * no tags, no errors, 1% sampled, started 30 us apart up to now.
 * BENCH_WORKERS=w: the runs written by w workers side by side (in turn, into
 * w files at a time, their ids interleaved), as nginx with w workers does.
 *
 * Runs: 1000 keys, 100 projects, 500 users, 10 orgs, 12 models of 2
 * providers, 3 tags each (team, agent, env), 5% errors, 10% sampled with a
 * small body, start times spread over the last 29 days in order (all kept by the
 * default 30-day retention).
 *
 * Build (from the repository root, after make):
 *   cc -O2 -D_GNU_SOURCE -Ishared -o build/bench_ingest \
 *      control-plane/tools/bench_ingest.c build/libtxshared.a -llmdb -lsodium
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "tx_key.h"
#include "tx_record.h"
#include "tx_spool.h"


#define BENCH_MIN(a, b) ((a) < (b) ? (a) : (b))

#define SPOOL_CAP (64 * 1024 * 1024)


static unsigned long long bench_keys = 1000;
#define BENCH_WRITERS_MAX 16


static int bench_gateway;
static int bench_writers = 1;


static const char *models[] = {"gpt-4o",
                               "gpt-4o-mini",
                               "gpt-4.1",
                               "gpt-4.1-mini",
                               "o3",
                               "o4-mini",
                               "gpt-5",
                               "gpt-5-mini",
                               "claude-sonnet-4-5",
                               "claude-opus-4-1",
                               "claude-haiku-4-5",
                               "claude-3-5-haiku-latest"};


static int64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);

    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static double
mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;

    return *s;
}


static int
write_spool(const char *dir, long n)
{
    char      path[4096], buf[64], tags[128];
    int       fd, file, w, nw, wfd[BENCH_WRITERS_MAX];
    long      i;
    size_t    off, len, woff[BENCH_WRITERS_MAX];
    uint8_t  *base, *wbase[BENCH_WRITERS_MAX], rec[2048], id[16], rb[10];
    uint64_t  s, m, in, out, status;
    int64_t   t0, span, start;
    tx_wbuf_t wb;

    s = 0x9e3779b97f4a7c15ULL;
    span = 29LL * 86400 * 1000000; /* inside the 30-day retention */

    if (bench_gateway) {
        span = (int64_t) n * 30;
    }
    t0 = now_us() - span;
    file = 0;
    nw = bench_writers;

    for (w = 0; w < nw; w++) {
        wbase[w] = NULL;
        wfd[w] = -1;
        woff[w] = 0;
    }

    for (i = 0; i < n; i++) {
        /* the writers take the runs in turn, as workers side by side */
        w = (int) (i % nw);
        base = wbase[w];
        fd = wfd[w];
        off = woff[w];

        if (base == NULL) {
            snprintf(path, sizeof(path), "%s/%016llx-%d.txs", dir,
                     (unsigned long long) (t0 + file), 90000 + w);
            file++;

            fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);

            if (fd < 0 || ftruncate(fd, SPOOL_CAP) != 0) {
                perror(path);
                return -1;
            }

            base = mmap(NULL, SPOOL_CAP, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                        0);
            if (base == MAP_FAILED) {
                perror("mmap");
                return -1;
            }

            tx_spool_hdr_init(base, 90000 + w, t0, SPOOL_CAP);
            off = TX_SPOOL_HDR_LEN;
            wbase[w] = base;
            wfd[w] = fd;
        }

        start = t0 + (int64_t) ((double) span * i / n);
        m = bench_gateway ? 1 : rnd(&s) % 12;
        in = 50 + rnd(&s) % 4000;
        out = 10 + rnd(&s) % 800;
        status = !bench_gateway && rnd(&s) % 20 == 0 ? 500 : 200;

        randombytes_buf(rb, sizeof(rb));
        tx_run_id_make(id, start / 1000, rb);

        tx_wbuf_init_compact(&wb, rec, sizeof(rec));
        tx_rec_put_bytes(&wb, TX_RUN_ID, id, 16);
        tx_rec_put_i64(&wb, TX_RUN_START_US, start);

        snprintf(buf, sizeof(buf), "key_bench%04llu",
                 (unsigned long long) (rnd(&s) % bench_keys));
        tx_rec_put_cstr(&wb, TX_RUN_KEY_ID, buf);
        snprintf(buf, sizeof(buf), "prj_bench%03llu",
                 (unsigned long long) (rnd(&s) % BENCH_MIN(bench_keys, 100)));
        tx_rec_put_cstr(&wb, TX_RUN_PROJECT, buf);
        snprintf(buf, sizeof(buf), "usr_bench%03llu",
                 (unsigned long long) (rnd(&s) % BENCH_MIN(bench_keys, 500)));
        tx_rec_put_cstr(&wb, TX_RUN_USER, buf);
        snprintf(buf, sizeof(buf), "org_bench%llu",
                 (unsigned long long) (rnd(&s) % BENCH_MIN(bench_keys, 10)));
        tx_rec_put_cstr(&wb, TX_RUN_ORG, buf);

        tx_rec_put_u64(&wb, TX_RUN_ENDPOINT,
                       m >= 8 ? TX_EP_MESSAGES : TX_EP_CHAT);
        tx_rec_put_cstr(&wb, TX_RUN_MODEL_REQ, models[m]);
        tx_rec_put_cstr(&wb, TX_RUN_MODEL, models[m]);
        tx_rec_put_cstr(&wb, TX_RUN_PROVIDER, m >= 8 ? "anthropic" : "openai");
        tx_rec_put_u64(&wb, TX_RUN_STATUS, status);
        tx_rec_put_u64(&wb, TX_RUN_UPSTREAM_STATUS, status);
        tx_rec_put_u64(&wb, TX_RUN_LATENCY_US, 200000 + rnd(&s) % 5000000);
        tx_rec_put_u64(&wb, TX_RUN_TTFT_US, 100000 + rnd(&s) % 500000);
        tx_rec_put_u64(&wb, TX_RUN_TOKENS_IN, in);
        tx_rec_put_u64(&wb, TX_RUN_TOKENS_OUT, out);
        tx_rec_put_i64(&wb, TX_RUN_COST, (int64_t) (in * 250 + out * 1000));
        tx_rec_put_u64(&wb, TX_RUN_FLAGS,
                       (i % (bench_gateway ? 100 : 10) == 0 ? TX_RUNF_SAMPLED
                                                            : 0)
                           | (status == 500 ? TX_RUNF_ERROR : 0));

        snprintf(tags, sizeof(tags), "team=t%llu,agent=a%llu,env=%s",
                 (unsigned long long) (rnd(&s) % 20),
                 (unsigned long long) (rnd(&s) % 50),
                 rnd(&s) % 2 ? "prod" : "ci");
        if (!bench_gateway) {
            tx_rec_put_cstr(&wb, TX_RUN_TAGS, tags);
        }
        tx_rec_put_cstr(&wb, TX_RUN_METHOD, "POST");

        if (status == 500) {
            tx_rec_put_cstr(&wb, TX_RUN_ERROR_TYPE, "upstream_error");
            tx_rec_put_cstr(&wb, TX_RUN_ERROR, "upstream returned 500");
        }

        if (i % (bench_gateway ? 100 : 10) == 0) {
            tx_rec_put_cstr(&wb, TX_RUN_REQ_BODY,
                            "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":"
                            "\"user\",\"content\":\"summarize the report\"}]}");
        }

        len = wb.pos - wb.start;

        if (tx_spool_append(base, SPOOL_CAP, &off, rec, len) == TX_AGAIN) {
            tx_spool_seal(base, SPOOL_CAP, off);
            munmap(base, SPOOL_CAP);
            close(fd);
            wbase[w] = NULL;
            i--;
            continue;
        }

        woff[w] = off;
    }

    for (w = 0; w < nw; w++) {
        if (wbase[w]) {
            tx_spool_seal(wbase[w], SPOOL_CAP, woff[w]);
            munmap(wbase[w], SPOOL_CAP);
            close(wfd[w]);
        }
    }

    return file;
}


/* GET path; the body (malloc'd) in *body; returns the status or -1. */
static int
http_get(int port, const char *key, const char *path, char **body)
{
    int                fd, status;
    char               req[1024], *buf, *p;
    size_t             len, cap;
    ssize_t            r;
    struct sockaddr_in sa;

    *body = NULL;
    fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        if (fd >= 0) {
            close(fd);
        }

        return -1;
    }

    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
             "%s\r\nConnection: close\r\n\r\n",
             path, key);

    if (write(fd, req, strlen(req)) != (ssize_t) strlen(req)) {
        close(fd);
        return -1;
    }

    cap = 65536;
    len = 0;
    buf = malloc(cap);

    while ((r = read(fd, buf + len, cap - len - 1)) > 0) {
        len += r;

        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }

    close(fd);
    buf[len] = '\0';

    status = -1;
    sscanf(buf, "HTTP/1.1 %d", &status);

    p = strstr(buf, "\r\n\r\n");
    *body = strdup(p ? p + 4 : "");
    free(buf);

    return status;
}


static double
cpu_seconds(pid_t pid)
{
    char               path[64], buf[4096], *p;
    FILE              *f;
    unsigned long long ut, st;
    int                i;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    f = fopen(path, "r");

    if (f == NULL || fgets(buf, sizeof(buf), f) == NULL) {
        if (f) {
            fclose(f);
        }

        return 0;
    }

    fclose(f);

    p = strrchr(buf, ')');

    for (i = 0; p && i < 12; i++) {
        p = strchr(p + 1, ' ');
    }

    if (p == NULL || sscanf(p + 1, "%llu %llu", &ut, &st) != 2) {
        return 0;
    }

    return (double) (ut + st) / sysconf(_SC_CLK_TCK);
}


static int
dcmp(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}


static void
bench_query(int port, const char *key, const char *path)
{
    int    i, status;
    char  *body;
    double t[7], t0;

    status = 0;
    body = NULL;

    for (i = 0; i < 7; i++) {
        t0 = mono();
        status = http_get(port, key, path, &body);
        t[i] = (mono() - t0) * 1000;

        if (i < 6) {
            free(body);
        }
    }

    qsort(t, 7, sizeof(double), dcmp);

    printf("GET %-28s status %d  best %.1f ms  median %.1f ms  (%zu bytes)\n",
           path, status, t[0], t[3], body ? strlen(body) : 0);

    free(body);
}


int
main(int argc, char **argv)
{
    long   n, ingested;
    int    port, files;
    char   work[3900], path[4096], key[4096], listen_arg[64], *body, *p;
    double t0, t1, c0, c1;
    pid_t  pid;
    FILE  *f;

    if (argc < 3) {
        fprintf(stderr, "usage: bench_ingest TORRIX_CP N [PORT] [WORKDIR]\n");
        return 2;
    }

    if (getenv("BENCH_WORKERS") != NULL) {
        bench_writers = atoi(getenv("BENCH_WORKERS"));

        if (bench_writers < 1 || bench_writers > BENCH_WRITERS_MAX) {
            fprintf(stderr, "BENCH_WORKERS: 1..%d\n", BENCH_WRITERS_MAX);
            return 2;
        }
    }

    if (getenv("BENCH_SHAPE") != NULL
        && strcmp(getenv("BENCH_SHAPE"), "gateway") == 0)
    {
        bench_gateway = 1;
        bench_keys = 1;
    }

    if (getenv("BENCH_KEYS") != NULL && atoll(getenv("BENCH_KEYS")) > 0) {
        bench_keys = (unsigned long long) atoll(getenv("BENCH_KEYS"));
    }

    if (sodium_init() < 0) {
        return 2;
    }

    n = atol(argv[2]);
    port = argc > 3 ? atoi(argv[3]) : 18399;

    if (argc > 4) {
        snprintf(work, sizeof(work), "%s", argv[4]);

    } else {
        snprintf(work, sizeof(work), "/tmp/txcp-bench.XXXXXX");

        if (mkdtemp(work) == NULL) {
            perror("mkdtemp");
            return 2;
        }
    }

    snprintf(path, sizeof(path), "%s/data", work);
    mkdir(path, 0711);
    snprintf(path, sizeof(path), "%s/data/spool", work);
    mkdir(path, 0750);

    t0 = mono();
    files = write_spool(path, n);

    if (files < 0) {
        return 2;
    }

    printf("spooled %ld runs in %d files in %.2f s\n", n, files, mono() - t0);
    fflush(stdout);

    snprintf(listen_arg, sizeof(listen_arg), "127.0.0.1:%d", port);
    snprintf(path, sizeof(path), "%s/data", work);

    t0 = mono();
    pid = fork();

    if (pid == 0) {
        snprintf(key, sizeof(key), "%s/cp.log", work);
        freopen(key, "w", stderr);
        freopen("/dev/null", "w", stdout);
        execl(argv[1], argv[1], "--data", path, "--listen", listen_arg,
              "--foreground", "--log-level", "warn",
              getenv("BENCH_BATCH") ? "--ingest-batch" : NULL,
              getenv("BENCH_BATCH"), (char *) NULL);
        _exit(127);
    }

    snprintf(path, sizeof(path), "%s/data/admin.key", work);
    key[0] = '\0';

    for (ingested = 0; ingested < n;) {
        usleep(20000);

        if (key[0] == '\0') {
            f = fopen(path, "r");

            if (f == NULL || fgets(key, sizeof(key), f) == NULL) {
                key[0] = '\0';

                if (f) {
                    fclose(f);
                }

                continue;
            }

            fclose(f);
            key[strcspn(key, "\r\n")] = '\0';
        }

        if (http_get(port, key, "/api/v1/health", &body) != 200) {
            free(body);

            if (waitpid(pid, NULL, WNOHANG) == pid) {
                fprintf(stderr, "torrix-cp exited (see %s/cp.log)\n", work);
                return 1;
            }

            continue;
        }

        p = strstr(body, "\"ingested\":");
        ingested = p ? atol(p + 11) : 0;
        free(body);
    }

    t1 = mono();
    c1 = cpu_seconds(pid);
    c0 = 0;

    printf("ingested %ld runs in %.2f s wall (start-up included), "
           "%.2f s daemon CPU: %.0f runs/s wall, %.0f runs/CPU-s\n",
           n, t1 - t0, c1 - c0, n / (t1 - t0), n / (c1 - c0));

    bench_query(port, key, "/api/v1/spend?by=model");
    bench_query(port, key, "/api/v1/spend?by=key");
    bench_query(port, key, "/api/v1/spend?by=tag");
    bench_query(port, key, "/api/v1/usage/users");
    bench_query(port, key, "/api/v1/runs?limit=100");
    bench_query(port, key, "/api/v1/runs?key_id=key_bench0042&limit=100");

    snprintf(path, sizeof(path), "du -sh %s/data/store | cut -f1", work);
    printf("store size: ");
    fflush(stdout);
    if (system(path) != 0) {
        printf("?\n");
    }

    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);

    printf("work dir: %s\n", work);

    return 0;
}

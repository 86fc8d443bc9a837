/*
 * torrix-cp: process start-up, subcommands and shutdown.
 *
 *   torrix-cp [--config FILE] [--data DIR] [--listen HOST:PORT]
 *             [--dataplane-user USER] [--foreground] [--OPTION VALUE]...
 *   torrix-cp audit verify --data DIR
 *   torrix-cp pricing import FILE --data DIR      (LiteLLM JSON catalog)
 *   torrix-cp audit tamper --data DIR --seq N     (test aid, TORRIX_TEST=1)
 *   torrix-cp keys seed N --data DIR [--project ID]   (offline, benchmarks)
 *   torrix-cp vault rotate [--new-key-file F] --data DIR   (stopped daemon)
 *   torrix-cp agents import FILE [--replace] --data DIR   (model_config.yaml)
 *   torrix-cp agents export --data DIR
 */

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "txcp.h"
#include "txcp_api.h"
#include "txcp_audit.h"
#include "txcp_http.h"
#include "txcp_ingest.h"
#include "txcp_loop.h"
#include "txcp_pricing.h"
#include "txcp_publish.h"
#include "txcp_rollup.h"
#include "txcp_routing.h"
#include "txcp_store.h"
#include "txcp_vault.h"
#include "txcp_webhook.h"


txcp_t txcp;


static int
txcp_mkdir(const char *path, mode_t mode)
{
    char        parent[4096], *slash;
    struct stat st;

    /* parents first, like mkdir -p (they get 0755) */

    snprintf(parent, sizeof(parent), "%s", path);
    slash = strrchr(parent, '/');

    if (slash && slash != parent) {
        *slash = '\0';

        if (stat(parent, &st) != 0 && txcp_mkdir(parent, 0755) != TX_OK) {
            return TX_ERROR;
        }
    }

    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            txcp_log(TXCP_LOG_ERROR, "not a directory", "path=%s", path);
            return TX_ERROR;
        }

        return TX_OK;
    }

    if (mkdir(path, mode) != 0 || chmod(path, mode) != 0) {
        txcp_log(TXCP_LOG_ERROR, "mkdir failed", "path=%s err=\"%s\"", path,
                 strerror(errno));
        return TX_ERROR;
    }

    return TX_OK;
}


/* Gives the nginx worker user what it needs: snapshot rw lock, spool dir. */
static int
txcp_dataplane_chown(void)
{
    struct passwd *pw;
    char           path[4096];
    const char *files[] = {"snapshot", "snapshot/data.mdb", "snapshot/lock.mdb",
                           "spool",    "spool/free",        NULL};
    int         i;

    if (txcp.conf.dataplane_user[0] == '\0') {
        return TX_OK;
    }

    if (geteuid() != 0) {
        txcp_log(TXCP_LOG_WARN, "dataplane_user ignored: not running as root",
                 "user=%s", txcp.conf.dataplane_user);
        return TX_OK;
    }

    pw = getpwnam(txcp.conf.dataplane_user);
    if (pw == NULL) {
        txcp_log(TXCP_LOG_ERROR, "unknown dataplane_user", "user=%s",
                 txcp.conf.dataplane_user);
        return TX_ERROR;
    }

    for (i = 0; files[i]; i++) {
        snprintf(path, sizeof(path), "%s/%s", txcp.conf.data_dir, files[i]);

        if (chown(path, pw->pw_uid, pw->pw_gid) != 0) {
            if (errno == ENOENT && strcmp(files[i], "spool/free") == 0) {
                continue; /* optional: workers then create every file */
            }

            txcp_log(TXCP_LOG_ERROR, "chown failed", "path=%s err=\"%s\"", path,
                     strerror(errno));
            return TX_ERROR;
        }
    }

    /* the data-plane key: readable by the workers' group, never writable */

    txcp_vault_dp_path(path, sizeof(path));

    if (chown(path, (uid_t) -1, pw->pw_gid) != 0) {
        txcp_log(TXCP_LOG_ERROR, "chown failed", "path=%s err=\"%s\"", path,
                 strerror(errno));
        return TX_ERROR;
    }

    txcp_log(TXCP_LOG_INFO, "data plane files chowned", "user=%s",
             txcp.conf.dataplane_user);

    return TX_OK;
}


static int
txcp_cli_audit(int argc, char **argv)
{
    int         i, rc;
    const char *cmd, *seqs;
    char       *end, err[256], reason[128];
    uint64_t    seq, records, broken;
    MDB_txn    *txn;

    if (argc < 3) {
        fprintf(stderr, "usage: torrix-cp audit verify --data DIR\n");
        return 2;
    }

    cmd = argv[2];
    seqs = NULL;

    if (txcp_config_defaults(&txcp.conf) != 0) {
        return 2;
    }

    txcp.conf.log_level = TXCP_LOG_WARN;

    for (i = 3; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--seq") == 0) {
            seqs = argv[++i];
            continue;
        }

        if (txcp_config_cli_opt(&txcp.conf, argc, argv, &i, err, sizeof(err))
            != 0) {
            fprintf(stderr, "torrix-cp: %s\n", err);
            return 2;
        }
    }

    if (strcmp(cmd, "verify") != 0 && strcmp(cmd, "tamper") != 0) {
        fprintf(stderr, "torrix-cp: unknown audit command \"%s\"\n", cmd);
        return 2;
    }

    if (sodium_init() < 0 || txcp_store_open(0) != TX_OK) {
        fprintf(stderr, "torrix-cp: cannot open the store in %s\n",
                txcp.conf.data_dir);
        return 2;
    }

    rc = 0;

    if (strcmp(cmd, "verify") == 0) {
        if (txcp_store_begin(1, &txn) != 0) {
            rc = 2;
            goto done;
        }

        records = 0;
        broken = 0;

        switch (
            txcp_audit_verify(txn, &records, &broken, reason, sizeof(reason))) {
        case TX_OK:
            printf("audit log intact: %llu records\n",
                   (unsigned long long) records);
            break;

        case TX_DECLINED:
            printf("audit log broken at seq %llu: %s\n",
                   (unsigned long long) broken, reason);
            rc = 1;
            break;

        default:
            fprintf(stderr, "torrix-cp: audit verify failed\n");
            rc = 2;
        }

        mdb_txn_abort(txn);
        goto done;
    }

    /* tamper: a test aid only */

    if (getenv("TORRIX_TEST") == NULL
        || strcmp(getenv("TORRIX_TEST"), "1") != 0) {
        fprintf(stderr, "torrix-cp: audit tamper is a test aid; "
                        "set TORRIX_TEST=1\n");
        rc = 2;
        goto done;
    }

    errno = 0;
    seq = seqs ? strtoull(seqs, &end, 10) : 0;

    if (seqs == NULL || errno || *end || seq == 0) {
        fprintf(stderr, "torrix-cp: audit tamper needs --seq N\n");
        rc = 2;
        goto done;
    }

    if (txcp_store_begin(0, &txn) != 0) {
        rc = 2;
        goto done;
    }

    rc = txcp_audit_tamper(txn, seq);

    if (rc == TX_OK && txcp_store_commit(txn) == 0) {
        printf("audit record %llu tampered\n", (unsigned long long) seq);
        rc = 0;

    } else {
        if (rc != TX_OK) {
            mdb_txn_abort(txn);
        }

        fprintf(stderr, "torrix-cp: no audit record %llu\n",
                (unsigned long long) seq);
        rc = 1;
    }

done:

    txcp_store_close();
    txcp_config_free(&txcp.conf);

    return rc;
}


int
main(int argc, char **argv)
{
    int  i, rc;
    char err[512];

    if (argc >= 2 && strcmp(argv[1], "audit") == 0) {
        return txcp_cli_audit(argc, argv);
    }

    if (argc >= 2 && strcmp(argv[1], "pricing") == 0) {
        return txcp_pricing_cli(argc, argv);
    }

    if (argc >= 2 && strcmp(argv[1], "keys") == 0) {
        return txcp_seed_cli(argc, argv);
    }

    if (argc >= 2 && strcmp(argv[1], "vault") == 0) {
        return txcp_vault_cli(argc, argv);
    }

    if (argc >= 2 && strcmp(argv[1], "agents") == 0) {
        return txcp_agents_cli(argc, argv);
    }

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            txcp_config_usage();
            return 0;
        }

        if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("torrix-cp %s\n", TXCP_VERSION);
            return 0;
        }
    }

    if (txcp_config_defaults(&txcp.conf) != 0) {
        fprintf(stderr, "torrix-cp: out of memory\n");
        return 1;
    }

    if (txcp_config_args(&txcp.conf, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "torrix-cp: %s\n", err);
        txcp_config_usage();
        return 1;
    }

    /*
     * Before any thread exists (a thread's niceness is its own on Linux,
     * and new threads inherit it).
     */

    if (setpriority(PRIO_PROCESS, 0, (int) txcp.conf.nice) != 0) {
        txcp_log(TXCP_LOG_WARN, "setpriority failed", "nice=%lld err=\"%s\"",
                 txcp.conf.nice, strerror(errno));
    }

    if (sodium_init() < 0) {
        txcp_log(TXCP_LOG_ERROR, "sodium_init failed", NULL);
        return 1;
    }

    /*
     * The snapshot's files are 0660 (owner and group: the nginx workers),
     * never world-readable; the provider credentials in it are sealed
     * under $DATA/dataplane.key all the same (txcp_vault.h).
     */

    umask(007);

    rc = 1;

    /*
     * The master key before the store: txcp_store_open() checks it against
     * the store's check value (and exits here on a wrong key) before any
     * migration seals with it.
     */

    if (txcp_mkdir(txcp.conf.data_dir, 0711) != TX_OK
        || txcp_providers_init() != TX_OK || txcp_vault_init(1) != TX_OK
        || txcp_store_open(1) != TX_OK)
    {
        goto done;
    }

    if (txcp_snapshot_open() != TX_OK || txcp_ingest_init() != TX_OK
        || txcp_pricing_init() != TX_OK
        || txcp_spend_prune(txcp_now_us() / 1000000) != TX_OK
        || txcp_publish_resync() != TX_OK || txcp_dataplane_chown() != TX_OK
        || txcp_webhook_init() != TX_OK || txcp_http_start() != TX_OK)
    {
        goto done;
    }

    txcp_loop_signals();

    if (txcp.conf.daemonize && daemon(1, 1) != 0) {
        txcp_log(TXCP_LOG_ERROR, "daemon failed", "err=\"%s\"",
                 strerror(errno));
        goto done;
    }

    txcp_log(TXCP_LOG_INFO, "started",
             "version=%s data=%s listen=%s pid=%d snapshot_gen=%llu",
             TXCP_VERSION, txcp.conf.data_dir, txcp.conf.listen, (int) getpid(),
             (unsigned long long) txcp.gen);

    txcp_loop_run();

    txcp_log(TXCP_LOG_INFO, "stopping", NULL);

    rc = 0;

done:

    txcp_http_stop();
    txcp_webhook_free();
    txcp_ingest_free();
    txcp_snapshot_close();
    txcp_store_close();
    txcp_vault_free();
    txcp_providers_free();

    if (rc == 0) {
        txcp_log(TXCP_LOG_INFO, "stopped", NULL);
    }

    txcp_config_free(&txcp.conf);

    return rc;
}

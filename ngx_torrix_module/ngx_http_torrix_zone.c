/*
 * ngx_torrix_module: limits and budgets in shared memory.
 *
 * One slab zone per nginx instance holds a node per scope (instance, org,
 * project, user, key) in an rbtree with an LRU queue, as limit_req does, and
 * is reused across reloads.  A node carries:
 *
 *   - RPM and TPM token buckets (keys only), in thousandths;
 *   - the money reserved by requests in flight, one slot per worker, so a
 *     worker that dies cannot pin a phantom spend: its successor (same slot)
 *     clears the slot in init_process; and their running total, kept with
 *     the slots under the lock, which admission reads;
 *   - the money settled by this edge per window (day, week, month) in
 *     10 ms buckets of settle time (taken after the run's spool frame is
 *     written), so that with the snapshot's ingest watermark W
 *
 *       spend(scope, window) = ingested(snapshot, window)
 *                            + settled here at or after W (same window)
 *                            + reserved in flight
 *
 *     counts every run once: runs settled before W are in the snapshot's
 *     figure, runs settled since are not; a run settled in W's own 10 ms
 *     tick counts twice for the moment (over, never under).  Buckets that age out
 *     of the ring while still at or after W are folded into one overflow
 *     amount kept until W passes its newest second, so the sum can only be
 *     over, never under.
 *
 * Admission takes the zone lock once, checks every scope and reserves the
 * request's worst-case cost in all of them atomically; the log phase settles
 * to the metered cost on every exit path.
 */

#include "ngx_http_torrix_module.h"


#define NGX_HTTP_TORRIX_SLOTS    64
#define NGX_HTTP_TORRIX_BUCKETS  32
#define NGX_HTTP_TORRIX_TICK_US  10000 /* settled-bucket width: 10 ms */
#define NGX_HTTP_TORRIX_IDLE_MS  (10 * 60 * 1000)
#define NGX_HTTP_TORRIX_TOUCH_MS 1000 /* LRU move of a node in use, at most */


typedef struct {
    int64_t    tick; /* settle time / NGX_HTTP_TORRIX_TICK_US */
    tx_money_t amount;
} ngx_http_torrix_bucket_t;


/*
 * The settled spend of one window of a node.  sum is the total of the
 * buckets whose tick is at or past sum_tick (the watermark's tick last
 * asked for), kept up to date as runs settle: a request reads it instead of
 * going over the buckets, which happens once per new watermark.  All zero
 * is consistent (no bucket holds anything).
 */
typedef struct {
    uint32_t                 index;
    uint32_t                 pad;
    tx_money_t               overflow;
    int64_t                  overflow_tick;
    tx_money_t               sum;
    int64_t                  sum_tick;
    ngx_http_torrix_bucket_t b[NGX_HTTP_TORRIX_BUCKETS];
} ngx_http_torrix_settled_t;


struct ngx_http_torrix_node_s {
    u_char                    color;
    u_char                    scope;
    u_char                    idlen;
    u_char                    pad;
    ngx_queue_t               queue;
    ngx_msec_t                last;
    int64_t                   rpm_tokens; /* thousandths of a request */
    int64_t                   tpm_tokens; /* thousandths of a token */
    int64_t                   rate_ms;
    uint64_t                  rpm;
    uint64_t                  tpm;
    tx_money_t                reserved_sum; /* of reserved[] */
    tx_money_t                reserved[NGX_HTTP_TORRIX_SLOTS];
    ngx_http_torrix_settled_t settled[3]; /* day, week, month */
    u_char                    id[TX_ID_MAX_LEN];
};


/*
 * Observed latency per model (time to the response header of attempts that
 * served), an exponentially weighted mean kept lock-free: a slot is the
 * model's hash and its mean; a colliding model takes the slot over.  A lost
 * update under a race costs one observation, never a torn value (each word
 * is written whole).
 */
#define NGX_HTTP_TORRIX_LATENCY_SLOTS 512

typedef struct {
    ngx_atomic_t hash;
    ngx_atomic_t us;
} ngx_http_torrix_latency_t;


typedef struct {
    ngx_rbtree_t              rbtree;
    ngx_rbtree_node_t         sentinel;
    ngx_queue_t               queue;
    ngx_http_torrix_latency_t latency[NGX_HTTP_TORRIX_LATENCY_SLOTS];
} ngx_http_torrix_shctx_t;


typedef struct {
    ngx_http_torrix_shctx_t *sh;
    ngx_slab_pool_t         *shpool;
} ngx_http_torrix_zone_t;


static ngx_int_t ngx_http_torrix_zone_init(ngx_shm_zone_t *shm_zone,
                                           void           *data);
static void      ngx_http_torrix_rbtree_insert_value(ngx_rbtree_node_t *temp,
                                                     ngx_rbtree_node_t *node,
                                                     ngx_rbtree_node_t *sentinel);
static ngx_http_torrix_node_t *ngx_http_torrix_node(ngx_http_torrix_zone_t *z,
                                                    ngx_uint_t scope,
                                                    ngx_str_t *id,
                                                    ngx_uint_t create);
static void ngx_http_torrix_expire(ngx_http_torrix_zone_t *z, ngx_uint_t n);
static tx_money_t ngx_http_torrix_local(ngx_http_torrix_node_t *lr,
                                        ngx_uint_t kind, uint32_t index,
                                        int64_t wm_tick);
static void       ngx_http_torrix_settle_add(ngx_http_torrix_node_t *lr,
                                             ngx_uint_t kind, uint32_t index,
                                             int64_t tick, tx_money_t amount);
static void       ngx_http_torrix_tpm_correct(ngx_http_torrix_ctx_t *ctx,
                                              uint64_t               tokens);
static void ngx_http_torrix_refill(ngx_http_torrix_node_t *lr, uint64_t rpm,
                                   uint64_t tpm, int64_t now_ms);


static ngx_shm_zone_t        *ngx_http_torrix_shm_zone;
static ngx_http_torrix_zone_t ngx_http_torrix_zone;

static const u_char ngx_http_torrix_kinds[3] = {TX_WIN_DAY, TX_WIN_WEEK,
                                                TX_WIN_MONTH};


static ngx_uint_t
ngx_http_torrix_kind_slot(ngx_uint_t kind)
{
    return kind == TX_WIN_DAY ? 0 : (kind == TX_WIN_WEEK ? 1 : 2);
}


ngx_int_t
ngx_http_torrix_zone_add(ngx_conf_t *cf, size_t size)
{
    ngx_str_t name;

    ngx_str_set(&name, "torrix_limits");

    ngx_http_torrix_shm_zone =
        ngx_shared_memory_add(cf, &name, size, &ngx_http_torrix_module);
    if (ngx_http_torrix_shm_zone == NULL) {
        return NGX_ERROR;
    }

    ngx_http_torrix_shm_zone->init = ngx_http_torrix_zone_init;

    return NGX_OK;
}


static ngx_int_t
ngx_http_torrix_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_torrix_zone_t *ozone = data;

    size_t                  len;
    ngx_http_torrix_zone_t *z;

    /* one zone per process image: static, so no cycle's pool owns it */
    z = &ngx_http_torrix_zone;

    if (ozone) {
        /* a reload: keep the counters */
        z->sh = ozone->sh;
        z->shpool = ozone->shpool;
        shm_zone->data = z;
        return NGX_OK;
    }

    z->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        z->sh = z->shpool->data;
        shm_zone->data = z;
        return NGX_OK;
    }

    z->sh = ngx_slab_alloc(z->shpool, sizeof(ngx_http_torrix_shctx_t));
    if (z->sh == NULL) {
        return NGX_ERROR;
    }

    z->shpool->data = z->sh;
    ngx_memzero(z->sh->latency, sizeof(z->sh->latency));

    ngx_rbtree_init(&z->sh->rbtree, &z->sh->sentinel,
                    ngx_http_torrix_rbtree_insert_value);
    ngx_queue_init(&z->sh->queue);

    len = sizeof(" in torrix limits zone \"\"") + shm_zone->shm.name.len;

    z->shpool->log_ctx = ngx_slab_alloc(z->shpool, len);
    if (z->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(z->shpool->log_ctx, " in torrix limits zone \"%V\"%Z",
                &shm_zone->shm.name);

    shm_zone->data = z;

    return NGX_OK;
}


static void
ngx_http_torrix_rbtree_insert_value(ngx_rbtree_node_t *temp,
                                    ngx_rbtree_node_t *node,
                                    ngx_rbtree_node_t *sentinel)
{
    ngx_int_t               rc;
    ngx_rbtree_node_t     **p;
    ngx_http_torrix_node_t *lrn, *lrnt;

    for (;;) {
        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            lrn = (ngx_http_torrix_node_t *) &node->color;
            lrnt = (ngx_http_torrix_node_t *) &temp->color;

            rc = (ngx_int_t) lrn->scope - (ngx_int_t) lrnt->scope;
            if (rc == 0) {
                rc = ngx_memn2cmp(lrn->id, lrnt->id, lrn->idlen, lrnt->idlen);
            }

            p = (rc < 0) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* Called in init_process: a new worker clears the slot its dead or
 * retired predecessor may have left reservations in. */
void
ngx_http_torrix_zone_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t              i, slot;
    ngx_queue_t            *q;
    ngx_shm_zone_t         *shm_zone;
    ngx_list_part_t        *part;
    ngx_http_torrix_zone_t *z;
    ngx_http_torrix_node_t *lr;

    /*
     * find the zone in the cycle this worker runs (the pointer kept while
     * parsing may belong to a configuration that failed to load)
     */
    ngx_http_torrix_shm_zone = NULL;

    part = &cycle->shared_memory.part;
    shm_zone = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            shm_zone = part->elts;
            i = 0;
        }

        if (shm_zone[i].tag == &ngx_http_torrix_module) {
            ngx_http_torrix_shm_zone = &shm_zone[i];
            break;
        }
    }

    if (ngx_http_torrix_shm_zone == NULL) {
        return;
    }

    z = ngx_http_torrix_shm_zone->data;
    slot = ngx_worker % NGX_HTTP_TORRIX_SLOTS;

    ngx_shmtx_lock(&z->shpool->mutex);

    for (q = ngx_queue_head(&z->sh->queue);
         q != ngx_queue_sentinel(&z->sh->queue); q = ngx_queue_next(q))
    {
        lr = ngx_queue_data(q, ngx_http_torrix_node_t, queue);
        lr->reserved_sum -= lr->reserved[slot];
        lr->reserved[slot] = 0;
    }

    ngx_shmtx_unlock(&z->shpool->mutex);
}


static ngx_http_torrix_node_t *
ngx_http_torrix_node(ngx_http_torrix_zone_t *z, ngx_uint_t scope, ngx_str_t *id,
                     ngx_uint_t create)
{
    size_t                  n, idlen;
    uint32_t                hash;
    ngx_int_t               rc;
    ngx_rbtree_node_t      *node, *sentinel;
    ngx_http_torrix_node_t *lr;
    u_char                  sc;

    idlen = ngx_min(id->len, TX_ID_MAX_LEN);

    /* CRC-32C, the instruction where there is one: scope byte, then id */
    sc = (u_char) scope;
    hash = tx_crc32(tx_crc32(0, &sc, 1), id->data, idlen);

    node = z->sh->rbtree.root;
    sentinel = z->sh->rbtree.sentinel;

    while (node != sentinel) {
        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        lr = (ngx_http_torrix_node_t *) &node->color;

        rc = (ngx_int_t) scope - (ngx_int_t) lr->scope;
        if (rc == 0) {
            rc = ngx_memn2cmp(id->data, lr->id, idlen, lr->idlen);
        }

        if (rc == 0) {
            /*
             * a node in use goes back to the head of the queue at most once
             * a second: each move writes the head and both neighbours,
             * cache lines every other worker then fetches back.  The queue
             * stays in the order of `last`, which lags a busy node's use by
             * under a second, next to NGX_HTTP_TORRIX_IDLE_MS (signed: see
             * ngx_http_torrix_expire)
             */
            if ((ngx_msec_int_t) (ngx_current_msec - lr->last)
                >= NGX_HTTP_TORRIX_TOUCH_MS) {
                ngx_queue_remove(&lr->queue);
                ngx_queue_insert_head(&z->sh->queue, &lr->queue);
                lr->last = ngx_current_msec;
            }

            return lr;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    if (!create) {
        return NULL;
    }

    n = offsetof(ngx_rbtree_node_t, color) + sizeof(ngx_http_torrix_node_t);

    node = ngx_slab_alloc_locked(z->shpool, n);

    if (node == NULL) {
        ngx_http_torrix_expire(z, 0);

        node = ngx_slab_alloc_locked(z->shpool, n);
        if (node == NULL) {
            return NULL;
        }
    }

    ngx_memzero(node, n);

    node->key = hash;

    lr = (ngx_http_torrix_node_t *) &node->color;

    lr->scope = (u_char) scope;
    lr->idlen = (u_char) idlen;

    if (idlen) {
        ngx_memcpy(lr->id, id->data, idlen);
    }
    lr->last = ngx_current_msec;
    lr->rate_ms = -1;

    ngx_rbtree_insert(&z->sh->rbtree, node);
    ngx_queue_insert_head(&z->sh->queue, &lr->queue);

    return lr;
}


/*
 * Frees least recently used nodes that hold no reservation and were idle for
 * NGX_HTTP_TORRIX_IDLE_MS (their settled money is long in the snapshot);
 * n == 0 frees up to two to make room.
 */
static void
ngx_http_torrix_expire(ngx_http_torrix_zone_t *z, ngx_uint_t n)
{
    ngx_uint_t              freed;
    ngx_queue_t            *q, *prev;
    ngx_rbtree_node_t      *node;
    ngx_http_torrix_node_t *lr;

    freed = 0;

    for (q = ngx_queue_last(&z->sh->queue);
         q != ngx_queue_sentinel(&z->sh->queue) && freed < (n ? n : 2);
         q = prev)
    {
        prev = ngx_queue_prev(q);
        lr = ngx_queue_data(q, ngx_http_torrix_node_t, queue);

        /*
         * signed: another worker's cached clock may be a little ahead of
         * ours, and an unsigned difference would then look like ages and
         * evict a busy node (resetting its buckets mid-burst)
         */
        if ((ngx_msec_int_t) (ngx_current_msec - lr->last)
            < NGX_HTTP_TORRIX_IDLE_MS) {
            return;
        }

        if (lr->reserved_sum) {
            continue;
        }

        ngx_queue_remove(q);

        node = (ngx_rbtree_node_t *) ((u_char *) lr
                                      - offsetof(ngx_rbtree_node_t, color));

        ngx_rbtree_delete(&z->sh->rbtree, node);
        ngx_slab_free_locked(z->shpool, node);
        freed++;
    }
}


static tx_money_t
ngx_http_torrix_local(ngx_http_torrix_node_t *lr, ngx_uint_t kind,
                      uint32_t index, int64_t wm_tick)
{
    tx_money_t                 sum;
    ngx_uint_t                 i;
    ngx_http_torrix_settled_t *st;

    st = &lr->settled[ngx_http_torrix_kind_slot(kind)];

    if (st->index != index) {
        return 0;
    }

    if (st->sum_tick != wm_tick) {
        /* a new watermark: the buckets at or past it, once */
        sum = 0;

        for (i = 0; i < NGX_HTTP_TORRIX_BUCKETS; i++) {
            if (st->b[i].tick && st->b[i].tick >= wm_tick) {
                sum += st->b[i].amount;
            }
        }

        st->sum = sum;
        st->sum_tick = wm_tick;
    }

    sum = st->sum;

    if (st->overflow_tick >= wm_tick) {
        sum += st->overflow;

    } else {
        st->overflow = 0;
        st->overflow_tick = 0;
    }

    return sum;
}


static void
ngx_http_torrix_settle_add(ngx_http_torrix_node_t *lr, ngx_uint_t kind,
                           uint32_t index, int64_t tick, tx_money_t amount)
{
    ngx_http_torrix_bucket_t  *b;
    ngx_http_torrix_settled_t *st;

    st = &lr->settled[ngx_http_torrix_kind_slot(kind)];

    if (st->index != index) {
        if (index < st->index) {
            /* a run of a window already over: nothing to count it against */
            return;
        }

        ngx_memzero(st, sizeof(ngx_http_torrix_settled_t));
        st->index = index;
    }

    b = &st->b[tick % NGX_HTTP_TORRIX_BUCKETS];

    if (b->tick != tick) {
        if (b->tick) {
            /* the slot's previous tick ages out: fold it, never drop it */
            st->overflow += b->amount;
            st->overflow_tick = ngx_max(st->overflow_tick, b->tick);

            if (b->tick >= st->sum_tick) {
                st->sum -= b->amount;
            }
        }

        b->tick = tick;
        b->amount = 0;
    }

    b->amount += amount;

    if (tick >= st->sum_tick) {
        st->sum += amount;
    }
}


static void
ngx_http_torrix_refill(ngx_http_torrix_node_t *lr, uint64_t rpm, uint64_t tpm,
                       int64_t now_ms)
{
    int64_t dt;

    if (lr->rate_ms < 0 || lr->rpm != rpm || lr->tpm != tpm) {
        /* a new bucket, or the limit changed: start full */
        lr->rpm = rpm;
        lr->tpm = tpm;
        lr->rpm_tokens = (int64_t) rpm * 1000;
        lr->tpm_tokens = (int64_t) tpm * 1000;
        lr->rate_ms = now_ms;
        return;
    }

    dt = now_ms - lr->rate_ms;
    if (dt <= 0) {
        return;
    }

    lr->rate_ms = now_ms;

    /* per minute: cap per 60000 ms, in thousandths */
    lr->rpm_tokens =
        ngx_min((int64_t) rpm * 1000, lr->rpm_tokens + dt * (int64_t) rpm / 60);
    lr->tpm_tokens =
        ngx_min((int64_t) tpm * 1000, lr->tpm_tokens + dt * (int64_t) tpm / 60);
}


static const char *
ngx_http_torrix_scope_name(ngx_uint_t scope)
{
    switch (scope) {
    case TX_SCOPE_INSTANCE:
        return "instance";
    case TX_SCOPE_ORG:
        return "organization";
    case TX_SCOPE_PROJECT:
        return "project";
    case TX_SCOPE_USER:
        return "user";
    default:
        return "key";
    }
}


static const char *
ngx_http_torrix_kind_name(ngx_uint_t kind)
{
    return kind == TX_WIN_DAY ? "daily"
                              : (kind == TX_WIN_WEEK ? "weekly" : "monthly");
}


/*
 * Admission: checks the key's rate limits and every budget of the plan in
 * ctx, and reserves the estimated cost in all of them, under one lock.
 * Returns NGX_OK, or an HTTP status with the refusal recorded in ctx.
 */
ngx_int_t
ngx_http_torrix_admit(ngx_http_request_t *r, ngx_http_torrix_ctx_t *ctx)
{
    int64_t                 now_ms, wait_ms, need;
    tx_money_t              spent, reserved;
    ngx_uint_t              i, j, slot;
    ngx_http_torrix_cap_t  *cap;
    ngx_http_torrix_zone_t *z;
    ngx_http_torrix_node_t *lr, *key;
    char                    spent_s[32], cap_s[32];

    if (ngx_http_torrix_shm_zone == NULL
        || (ctx->ncaps == 0 && ctx->rpm == 0 && ctx->tpm == 0))
    {
        return NGX_OK;
    }

    z = ngx_http_torrix_shm_zone->data;
    slot = ngx_worker % NGX_HTTP_TORRIX_SLOTS;
    now_ms = ngx_http_torrix_now_us() / 1000;

    ngx_shmtx_lock(&z->shpool->mutex);

    ngx_http_torrix_expire(z, 1);

    key = NULL;

    if (ctx->rpm || ctx->tpm) {
        key = ngx_http_torrix_node(z, TX_SCOPE_KEY, &ctx->key_id, 1);
        if (key == NULL) {
            goto full;
        }

        ngx_http_torrix_refill(key, ctx->rpm, ctx->tpm, now_ms);

        ctx->rl_key = key;

        if (ctx->rpm && key->rpm_tokens < 1000) {
            wait_ms = (1000 - key->rpm_tokens) * 60 / (int64_t) ctx->rpm + 1;
            ngx_shmtx_unlock(&z->shpool->mutex);

            ctx->retry_after = (wait_ms + 999) / 1000;
            ngx_http_torrix_limit_headers(ctx);
            return ngx_http_torrix_reject(ctx, r->pool,
                                          NGX_HTTP_TOO_MANY_REQUESTS,
                                          "rate_limit_exceeded",
                                          "Rate limit reached for requests: "
                                          "key %V allows %uL requests per "
                                          "minute",
                                          &ctx->key_id, ctx->rpm);
        }

        need = (int64_t) ngx_min(ctx->est_tokens, ctx->tpm) * 1000;

        if (ctx->tpm && key->tpm_tokens < need) {
            wait_ms = (need - key->tpm_tokens) * 60 / (int64_t) ctx->tpm + 1;
            ngx_shmtx_unlock(&z->shpool->mutex);

            ctx->retry_after = (wait_ms + 999) / 1000;
            ctx->limit_tokens = 1;
            ngx_http_torrix_limit_headers(ctx);
            return ngx_http_torrix_reject(ctx, r->pool,
                                          NGX_HTTP_TOO_MANY_REQUESTS,
                                          "rate_limit_exceeded",
                                          "Rate limit reached for tokens: "
                                          "key %V allows %uL tokens per "
                                          "minute, this request needs about "
                                          "%uL",
                                          &ctx->key_id, ctx->tpm,
                                          ctx->est_tokens);
        }
    }

    for (i = 0; i < ctx->ncaps; i++) {
        cap = &ctx->caps[i];

        /* caps of one scope (a key's daily and monthly) share its node */
        lr = NULL;

        if (i > 0 && ctx->caps[i - 1].scope == cap->scope
            && ctx->caps[i - 1].id.data == cap->id.data)
        {
            lr = ctx->caps[i - 1].node;

        } else if (key && cap->scope == TX_SCOPE_KEY) {
            lr = key;
        }

        if (lr == NULL) {
            lr = ngx_http_torrix_node(z, cap->scope, &cap->id, 1);
            if (lr == NULL) {
                goto full;
            }
        }

        cap->node = lr;

        reserved = lr->reserved_sum;

        spent =
            cap->ingested
            + ngx_http_torrix_local(lr, cap->kind, cap->index,
                                    ctx->watermark_us / NGX_HTTP_TORRIX_TICK_US)
            + reserved;

        if (spent >= cap->cap || spent + ctx->est_cost > cap->cap) {
            ngx_shmtx_unlock(&z->shpool->mutex);

            ctx->retry_after = tx_window_left(cap->kind, ctx->now_s);
            ctx->limit_scope = cap;

            (void) tx_money_format(spent, spent_s, sizeof(spent_s));
            (void) tx_money_format(cap->cap, cap_s, sizeof(cap_s));

            return ngx_http_torrix_reject(ctx, r->pool,
                                          NGX_HTTP_TOO_MANY_REQUESTS,
                                          "budget_exceeded",
                                          "Budget exceeded: %s %V %s cap of "
                                          "$%s (spent or reserved $%s; this "
                                          "request may cost up to $%s)",
                                          ngx_http_torrix_scope_name(
                                              cap->scope),
                                          &cap->id,
                                          ngx_http_torrix_kind_name(cap->kind),
                                          cap_s, spent_s,
                                          tx_money_format(ctx->est_cost,
                                                          ctx->est_s,
                                                          sizeof(ctx->est_s)));
        }
    }

    /* admitted: take the rate tokens and reserve in every scope, once */

    if (key) {
        if (ctx->rpm) {
            key->rpm_tokens -= 1000;
        }

        if (ctx->tpm) {
            key->tpm_tokens -= (int64_t) ctx->est_tokens * 1000;
            ctx->tpm_taken = ctx->est_tokens;
        }
    }

    for (i = 0; i < ctx->ncaps; i++) {
        lr = ctx->caps[i].node;

        for (j = 0; j < i; j++) {
            if (ctx->caps[j].node == lr) {
                break;
            }
        }

        if (j < i) {
            ctx->caps[i].node = NULL; /* settled through caps[j] */
            continue;
        }

        lr->reserved[slot] += ctx->est_cost;
        lr->reserved_sum += ctx->est_cost;
    }

    ctx->reserved = 1;
    ctx->slot = slot;

    ngx_shmtx_unlock(&z->shpool->mutex);

    ngx_http_torrix_limit_headers(ctx);

    return NGX_OK;

full:

    ngx_shmtx_unlock(&z->shpool->mutex);

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "torrix: limits zone is full; refusing rather than "
                  "letting a budget go unchecked");

    return ngx_http_torrix_reject(ctx, r->pool, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "limits_unavailable",
                                  "The gateway cannot track limits right "
                                  "now; try again");
}


/*
 * Settles an admitted request: releases its reservation everywhere and
 * counts its metered cost and tokens.  Runs once, from the log phase, on
 * every end of the request.
 */
void
ngx_http_torrix_settle(ngx_http_torrix_ctx_t *ctx, tx_money_t cost,
                       uint64_t tokens)
{
    int64_t                 tick;
    tx_money_t              released;
    ngx_uint_t              i, k;
    ngx_http_torrix_zone_t *z;
    ngx_http_torrix_node_t *lr;

    if (!ctx->reserved || ngx_http_torrix_shm_zone == NULL) {
        return;
    }

    ctx->reserved = 0;

    z = ngx_http_torrix_shm_zone->data;
    /* torrix-cp's clock: the watermark is real time, never the test clock */
    tick = ngx_http_torrix_real_us() / NGX_HTTP_TORRIX_TICK_US;

    ngx_shmtx_lock(&z->shpool->mutex);

    for (i = 0; i < ctx->ncaps; i++) {
        lr = ctx->caps[i].node;
        if (lr == NULL) {
            continue;
        }

        /* a reload's new worker may have cleared the slot meanwhile */
        released = ngx_min(ctx->est_cost, lr->reserved[ctx->slot]);

        if (released > 0) {
            lr->reserved[ctx->slot] -= released;
            lr->reserved_sum -= released;
        }

        if (cost > 0) {
            for (k = 0; k < 3; k++) {
                ngx_http_torrix_settle_add(lr, ngx_http_torrix_kinds[k],
                                           ctx->windows[k], tick, cost);
            }
        }
    }

    ngx_http_torrix_tpm_correct(ctx, tokens);

    ngx_shmtx_unlock(&z->shpool->mutex);
}


/*
 * Corrects the TPM estimate with the metered tokens as soon as they are
 * known (the response's last buffer passing the body filter), else at
 * settle; once.
 */
void
ngx_http_torrix_tpm_return(ngx_http_torrix_ctx_t *ctx, uint64_t tokens)
{
    ngx_http_torrix_zone_t *z;

    if (ctx->rl_key == NULL || ctx->tpm_taken == 0
        || ngx_http_torrix_shm_zone == NULL)
    {
        return;
    }

    z = ngx_http_torrix_shm_zone->data;

    ngx_shmtx_lock(&z->shpool->mutex);
    ngx_http_torrix_tpm_correct(ctx, tokens);
    ngx_shmtx_unlock(&z->shpool->mutex);
}


/* under the zone lock */
static void
ngx_http_torrix_tpm_correct(ngx_http_torrix_ctx_t *ctx, uint64_t tokens)
{
    if (ctx->rl_key && ctx->tpm_taken) {
        ctx->rl_key->tpm_tokens +=
            ((int64_t) ctx->tpm_taken - (int64_t) tokens) * 1000;
        ctx->tpm_taken = 0;
    }
}


/* Fills the x-ratelimit-* values from the key's buckets (lock not needed:
 * a racy read of two integers is fine for advisory headers). */
void
ngx_http_torrix_limit_headers(ngx_http_torrix_ctx_t *ctx)
{
    ngx_http_torrix_node_t *lr;

    lr = ctx->rl_key;
    if (lr == NULL) {
        return;
    }

    ctx->rl_set = 1;

    if (ctx->rpm) {
        ctx->rl_req_remaining = lr->rpm_tokens > 0 ? lr->rpm_tokens / 1000 : 0;
        ctx->rl_req_reset_ms = ((int64_t) ctx->rpm * 1000 - lr->rpm_tokens) * 60
                               / (int64_t) ctx->rpm;
    }

    if (ctx->tpm) {
        ctx->rl_tok_remaining = lr->tpm_tokens > 0 ? lr->tpm_tokens / 1000 : 0;
        ctx->rl_tok_reset_ms = ((int64_t) ctx->tpm * 1000 - lr->tpm_tokens) * 60
                               / (int64_t) ctx->tpm;
    }
}


static ngx_http_torrix_latency_t *
ngx_http_torrix_latency_slot(ngx_str_t *model, ngx_atomic_uint_t *hash)
{
    if (ngx_http_torrix_zone.sh == NULL) {
        return NULL;
    }

    *hash = tx_crc32(0, model->data, model->len) | 1;

    return &ngx_http_torrix_zone.sh
                ->latency[*hash % NGX_HTTP_TORRIX_LATENCY_SLOTS];
}


uint64_t
ngx_http_torrix_latency_get(ngx_str_t *model)
{
    ngx_atomic_uint_t          hash, us;
    ngx_http_torrix_latency_t *l;

    l = ngx_http_torrix_latency_slot(model, &hash);
    if (l == NULL) {
        return 0;
    }

    us = l->us;

    return l->hash == hash ? us : 0;
}


void
ngx_http_torrix_latency_put(ngx_str_t *model, uint64_t us)
{
    ngx_atomic_uint_t          hash, old;
    ngx_http_torrix_latency_t *l;

    l = ngx_http_torrix_latency_slot(model, &hash);
    if (l == NULL) {
        return;
    }

    if (us == 0) {
        us = 1;
    }

    old = l->us;

    if (l->hash != hash || old == 0) {
        l->hash = hash;
        l->us = us;
        return;
    }

    /* weight 1/4 for the new observation */
    l->us = old - old / 4 + us / 4;
}

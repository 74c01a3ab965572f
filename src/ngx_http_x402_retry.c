
/*
 * ngx_http_x402_retry.c: no settlement lost (x402_settle async).
 *
 * A settlement served on credit is queued in the zone before the response
 * goes out (ngx_http_x402_store_op_async_begin), leased to the worker that
 * served it, which lists its first attempt here (ngx_http_x402_retry_first)
 * and starts it at the end of the event-loop iteration on a request of its
 * own, as a retry: never on the client's request, whose keep-alive
 * connection nginx would hold until the facilitator answered. If that
 * settle fails, or never reports back (the worker exited), the entry stays
 * in the zone and every worker's timer picks up due entries: a lease, then
 * a POST of the stored body to the stored settle location, issued as an
 * in-memory subrequest of a request of our own (background.c: a request on
 * a connection that is never polled), so the facilitator location's proxy
 * settings apply exactly as for live traffic.
 * Backoff doubles from 1s to 60s; past validBefore the settlement cannot
 * happen any more: it is logged and counted as lost.
 *
 * Over 800 lines as one concern: the first attempts, the timer, each
 * attempt's subrequest, its report and the chain lookup (retry_chain)
 * share the lease's lifetime; the request they run from is background.c's.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <fcntl.h>

#include "ngx_http_x402_module.h"
#include "ngx_http_x402_store_int.h"
#include "ngx_http_x402_metrics.h"


#define NGX_HTTP_X402_RETRY_INFLIGHT  16


typedef struct {
    u_char                      id[32];
    ngx_uint_t                  attempts;
    time_t                      valid_before;
    uint64_t                    scope;
    time_t                      expire;
    time_t                      keep;
    ngx_uint_t                  redis;
    ngx_http_request_t         *r;
    ngx_uint_t                  status;
    ngx_str_t                   body;
    ngx_str_t                   sent;       /* the /settle body, metrics */
    ngx_str_t                   uri;        /* the /settle location */
    ngx_str_t                   rpc_uri;    /* the JSON-RPC location */
    ngx_str_t                   rpc_body;
    ngx_uint_t                  mode;       /* NGX_HTTP_X402_RETRY_* */
    ngx_uint_t                  unknown;
    u_char                      reason_len;
    u_char                      reason[63];
    unsigned                    asking:1;   /* the JSON-RPC call runs */
    unsigned                    got_response:1;
    unsigned                    finished:1;
    unsigned                    counted:1;
    unsigned                    chain_only:1;   /* no /settle from here */
    ngx_msec_t                  start;
    struct ngx_http_x402_first_s  *first;   /* a first attempt's, or NULL */
} ngx_http_x402_retry_t;


/*
 * The first attempt of a settlement queued by a client request (store
 * hooks): what that request's own settlement logged and counted, copied,
 * and its store op (a copy: the request may be gone when the answer
 * comes). Listed per worker until the end of the event-loop iteration.
 */
typedef struct ngx_http_x402_first_s  ngx_http_x402_first_t;

struct ngx_http_x402_first_s {
    ngx_http_x402_first_t      *next;
    ngx_http_x402_store_op_t    op;
    ngx_uint_t                  log_level;
    ngx_str_t                   network;
    ngx_str_t                   asset;
    ngx_str_t                   pay_to;
    ngx_str_t                   amount;
    ngx_str_t                   payer;
    ngx_str_t                   context;    /* the client request's */
    u_char                      data[1];
};


/* what a job does */
#define NGX_HTTP_X402_RETRY_SETTLE    0   /* POST /settle */
#define NGX_HTTP_X402_RETRY_ASK       1   /* ask the chain, then /settle */
#define NGX_HTTP_X402_RETRY_FINAL     2   /* expired: ask the chain only */


/* a due entry, copied out of the zone under the lock */
typedef struct {
    u_char                      id[32];
    ngx_uint_t                  attempts;
    time_t                      valid_before;
    uint64_t                    scope;
    time_t                      expire;
    time_t                      keep;
    ngx_uint_t                  redis;
    uint64_t                    server;
    ngx_uint_t                  unknown;
    ngx_uint_t                  mode;
    ngx_uint_t                  rq;
    ngx_uint_t                  first;      /* a first attempt */
    u_char                      reason_len;
    u_char                      reason[63];
    size_t                      uri_len;
    size_t                      body_len;
    u_char                      data[1];
} ngx_http_x402_retry_job_t;


static void ngx_http_x402_retry_tick(ngx_event_t *ev);
static ngx_int_t ngx_http_x402_retry_start(ngx_cycle_t *cycle,
    ngx_http_x402_retry_job_t *p, ngx_str_t *rpc, ngx_http_x402_retry_t **prt);
static ngx_int_t ngx_http_x402_retry_subrequest(ngx_http_request_t *r,
    ngx_http_x402_retry_t *rt, ngx_str_t *uri, ngx_str_t *body);
static void ngx_http_x402_retry_give_up(ngx_log_t *log, u_char *id,
    ngx_uint_t unknown, ngx_uint_t attempts, u_char *reason,
    size_t reason_len, ngx_str_t *uri, ngx_str_t *body);
static ngx_int_t ngx_http_x402_retry_post(ngx_http_request_t *sr, void *data,
    ngx_int_t rc);
static void ngx_http_x402_retry_finish(ngx_http_request_t *r);
static void ngx_http_x402_retry_gone(void *data);
static void ngx_http_x402_retry_report(ngx_http_x402_retry_t *rt,
    ngx_log_t *log);
static ngx_http_x402_retry_job_t *ngx_http_x402_retry_job(
    ngx_http_x402_pending_t *p, ngx_log_t *log);
static void ngx_http_x402_first_run(ngx_event_t *ev);
static void ngx_http_x402_first_report(ngx_http_x402_retry_t *rt,
    ngx_log_t *log);
static u_char *ngx_http_x402_first_log(ngx_log_t *log, u_char *buf,
    size_t len);
static void ngx_http_x402_retry_record(ngx_http_x402_retry_t *rt,
    ngx_uint_t state, ngx_str_t *text);
static ngx_int_t ngx_http_x402_retry_chain(ngx_http_x402_retry_t *rt,
    ngx_log_t *log);
static void *ngx_http_x402_retry_alloc(void *pool, size_t size);
static void ngx_http_x402_retry_nowhere(ngx_log_t *log,
    ngx_http_x402_retry_job_t *p, ngx_str_t *prefix);


#define ngx_http_x402_due_pending(n)                                          \
    ((ngx_http_x402_pending_t *) ((u_char *) (n)                              \
                                  - offsetof(ngx_http_x402_pending_t, due)))


/*
 * First attempts in flight per worker (each holds a request of ours and
 * an upstream connection): at most this, and a quarter of
 * worker_connections; the others wait in the list, as long as their lease
 * has time left (FIRST_WAIT), then go back to the queue, due at once.
 */
#define NGX_HTTP_X402_FIRST_INFLIGHT  256
#define NGX_HTTP_X402_FIRST_WAIT      10000


static ngx_event_t             ngx_http_x402_first_event;
static ngx_http_x402_first_t  *ngx_http_x402_first_head;
static ngx_http_x402_first_t **ngx_http_x402_first_tail;
static ngx_uint_t              ngx_http_x402_first_inflight;

static ngx_event_t   ngx_http_x402_retry_timer;
static ngx_uint_t    ngx_http_x402_retry_inflight;
static ngx_uint_t    ngx_http_x402_retry_exiting;
static ngx_uint_t    ngx_http_x402_retry_draining;
static uint64_t      ngx_http_x402_retry_deadline;


/* ---- the timer ---- */

ngx_int_t
ngx_http_x402_retry_init_process(ngx_cycle_t *cycle)
{
    ngx_http_x402_retry_exiting = 0;
    ngx_http_x402_retry_inflight = 0;
    ngx_http_x402_retry_draining = 0;

    ngx_memzero(&ngx_http_x402_retry_timer, sizeof(ngx_event_t));

    ngx_http_x402_retry_timer.handler = ngx_http_x402_retry_tick;
    ngx_http_x402_retry_timer.data = cycle;
    ngx_http_x402_retry_timer.log = cycle->log;
    ngx_http_x402_retry_timer.cancelable = 1;

    ngx_memzero(&ngx_http_x402_first_event, sizeof(ngx_event_t));

    ngx_http_x402_first_event.handler = ngx_http_x402_first_run;
    ngx_http_x402_first_event.data = cycle;
    ngx_http_x402_first_event.log = cycle->log;
    ngx_http_x402_first_head = NULL;
    ngx_http_x402_first_tail = &ngx_http_x402_first_head;
    ngx_http_x402_first_inflight = 0;

    /* spread the workers' scans */
    ngx_add_timer(&ngx_http_x402_retry_timer,
                  NGX_HTTP_X402_ASYNC_TICK + ngx_random() % 100);

    return NGX_OK;
}


/* something is owed now: a graceful stop waits for the drain */
void
ngx_http_x402_retry_owed(void)
{
    ngx_http_x402_retry_timer.cancelable = 0;
}


void
ngx_http_x402_retry_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_x402_retry_exiting = 1;

    if (ngx_http_x402_retry_timer.timer_set) {
        ngx_del_timer(&ngx_http_x402_retry_timer);
    }
}


/* ---- first attempts ---- */

ngx_int_t
ngx_http_x402_retry_first(ngx_http_x402_store_op_t *op,
    ngx_http_x402_first_info_t *info, ngx_log_t *log)
{
    u_char                 *d;
    size_t                  size;
    ngx_http_x402_first_t  *f;

    if (ngx_http_x402_first_event.handler == NULL
        || ngx_http_x402_retry_exiting)
    {
        return NGX_DECLINED;
    }

    size = offsetof(ngx_http_x402_first_t, data) + info->network.len
           + info->asset.len + info->pay_to.len + info->amount.len
           + info->payer.len + info->context.len;

    f = ngx_alloc(size, log);
    if (f == NULL) {
        return NGX_ERROR;
    }

    f->next = NULL;
    f->op = *op;
    f->op.request = NULL;
    f->op.pending = NULL;
    f->op.cleanup_set = 0;
    ngx_memzero(&f->op.resume, sizeof(ngx_event_t));
    f->log_level = info->log_level;

    d = f->data;

#define ngx_http_x402_first_copy(field)                                       \
    f->field.data = d;                                                        \
    f->field.len = info->field.len;                                           \
    d = ngx_cpymem(d, info->field.data, info->field.len)

    ngx_http_x402_first_copy(network);
    ngx_http_x402_first_copy(asset);
    ngx_http_x402_first_copy(pay_to);
    ngx_http_x402_first_copy(amount);
    ngx_http_x402_first_copy(payer);
    ngx_http_x402_first_copy(context);

#undef ngx_http_x402_first_copy

    *ngx_http_x402_first_tail = f;
    ngx_http_x402_first_tail = &f->next;

    if (!ngx_http_x402_first_event.posted) {
        /* after this iteration's requests: their attempts go out together */
        ngx_post_event(&ngx_http_x402_first_event, &ngx_posted_events);
    }

    return NGX_OK;
}


/*
 * The listed first attempts, each from a background request as a retry's:
 * still queued on its first lease, ours (else the queue decides), within
 * the bound.
 */
static void
ngx_http_x402_first_run(ngx_event_t *ev)
{
    uint64_t                          now;
    ngx_int_t                         rc;
    ngx_str_t                         text;
    ngx_uint_t                        bound, unstarted;
    ngx_cycle_t                      *cycle;
    ngx_http_x402_shm_t              *zone;
    ngx_http_x402_first_t            *f;
    ngx_http_x402_retry_t            *rt;
    ngx_http_x402_pending_t          *p;
    ngx_http_x402_retry_job_t        *job;
    ngx_http_x402_store_main_conf_t  *smcf;

    cycle = ev->data;
    zone = ngx_http_x402_store_zone;

    if (ngx_http_x402_retry_exiting || zone == NULL) {
        return;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_x402_store_module);
    if (smcf == NULL) {
        return;
    }

    /*
     * each attempt holds two connections (its request's and the
     * facilitator's): together at most a quarter of worker_connections
     */
    bound = ngx_max(cycle->connection_n / 8, 4);
    bound = ngx_min(bound, NGX_HTTP_X402_FIRST_INFLIGHT);

    while (ngx_http_x402_first_head
           && ngx_http_x402_first_inflight < bound)
    {
        f = ngx_http_x402_first_head;
        ngx_http_x402_first_head = f->next;

        if (ngx_http_x402_first_head == NULL) {
            ngx_http_x402_first_tail = &ngx_http_x402_first_head;
        }

        now = ngx_http_x402_queue_now();
        job = NULL;
        unstarted = 0;

        ngx_shmtx_lock(&zone->shpool->mutex);

        p = ngx_http_x402_queue_find(zone->sh, f->op.id);

        /*
         * Still its first lease, ours: a lease that ran out may be ours
         * again, a retry's (the timer counts its attempts), in flight
         */
        if (p && p->lease_pid == ngx_pid && p->attempts == 1
            && p->lease_until > now)
        {
            if (p->lease_until > now + NGX_HTTP_X402_ASYNC_LEASE
                                    - NGX_HTTP_X402_FIRST_WAIT
                && !(ngx_http_x402_retry_draining
                     && now >= ngx_http_x402_retry_deadline))
            {
                job = ngx_http_x402_retry_job(p, ev->log);

            } else if (p->rq != NGX_HTTP_X402_RQ_HELD
                       && !zone->sh->superseded)
            {
                /*
                 * Never sent: owed as any other, due now. Its lease held
                 * it back up to 90 s, from the new workers too after a
                 * reload: past a short validBefore it was lost.
                 */
                p->lease_until = 0;
                p->next_try = now;
                ngx_http_x402_queue_reschedule_locked(zone->sh, p);

            } else if (p->rq == NGX_HTTP_X402_RQ_HELD) {
                /* Redis holds it: due there at once, below */
                unstarted = 1;

            } else {
                /*
                 * The same in a zone a resizing reload replaced: the new
                 * one holds it leased to us (the reconcile); "free" gives
                 * it back to its queue, nothing was sent (this worker
                 * retries nothing any more)
                 */
                (void) ngx_http_x402_spool_free_locked(zone, p->id, 0);
            }
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);

        if (unstarted) {
            ngx_http_x402_redis_queue_unstarted(zone, f->op.id);
        }

        if (job == NULL) {
            /* gone, a retry's, or given back to the queue */
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                           "x402: first settlement attempt not started");
            ngx_free(f);
            continue;
        }

        job->first = 1;

        rc = ngx_http_x402_retry_start(cycle, job, &smcf->rpc, &rt);

        ngx_free(job);

        if (rc != NGX_OK) {
            if (rc == NGX_DECLINED) {
                ngx_str_set(&text, "no server uses its facilitator");

            } else {
                ngx_str_set(&text, "could not start a settlement");
            }

            ngx_http_x402_store_op_async_end(&f->op,
                                             NGX_HTTP_X402_SETTLE_RETRY,
                                             &text, ev->log);
            ngx_free(f);
            continue;
        }

        rt->first = f;
        rt->start = ngx_current_msec;
        rt->r->connection->log->handler = ngx_http_x402_first_log;
        ngx_http_x402_first_inflight++;

        ngx_http_run_posted_requests(rt->r->connection);
    }
}


/* an owed settlement that can no longer happen: logged, counted, gone */
static void
ngx_http_x402_retry_give_up(ngx_log_t *log, u_char *id, ngx_uint_t unknown,
    ngx_uint_t attempts, u_char *reason, size_t reason_len, ngx_str_t *uri,
    ngx_str_t *body)
{
    u_char  hex[64];

    (void) ngx_hex_dump(hex, id, 32);

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "x402: async settlement of payment %*s %s: the "
                  "authorization expired after %ui attempt(s), last error: "
                  "\"%*s\"; to settle it by hand, or to look it up, the "
                  "settle request follows", (size_t) 64, hex,
                  unknown ? "UNKNOWN (an answer was lost, it may have "
                            "settled)"
                          : "GIVEN UP",
                  attempts, reason_len, reason);

    ngx_http_x402_retry_log_body(log, hex, uri, body);
}


static ngx_http_x402_retry_job_t *
ngx_http_x402_retry_job(ngx_http_x402_pending_t *p, ngx_log_t *log)
{
    size_t                      size;
    ngx_http_x402_retry_job_t  *job;

    size = offsetof(ngx_http_x402_retry_job_t, data) + p->uri_len
           + p->body_len;

    job = ngx_alloc(size, log);
    if (job == NULL) {
        return NULL;
    }

    ngx_memcpy(job->id, p->id, 32);
    job->scope = p->scope;
    job->expire = p->expire;
    job->keep = p->keep;
    job->redis = p->redis;
    job->valid_before = p->valid_before;
    job->server = p->server;
    job->attempts = p->attempts;
    job->unknown = p->unknown;
    job->mode = NGX_HTTP_X402_RETRY_SETTLE;
    job->rq = p->rq;
    job->first = 0;
    job->reason_len = p->reason_len;
    ngx_memcpy(job->reason, p->reason, p->reason_len);
    job->uri_len = p->uri_len;
    job->body_len = p->body_len;
    ngx_memcpy(job->data, p->data, p->uri_len + p->body_len);

    return job;
}


/*
 * A graceful stop (or the old workers of a reload): what is owed is tried
 * once more at once, then with the usual backoff, until x402_async_drain
 * has passed; what is left stays in the spool for the next start.
 */
static void
ngx_http_x402_retry_drain_begin(ngx_http_x402_shm_t *zone)
{
    uint64_t                  now;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_http_x402_pending_t  *p;

    now = ngx_http_x402_queue_now();

    ngx_shmtx_lock(&zone->shpool->mutex);

    sentinel = zone->sh->pending.sentinel;

    if (zone->sh->pending.root != sentinel) {
        for (node = ngx_rbtree_min(zone->sh->pending.root, sentinel);
             node;
             node = ngx_rbtree_next(&zone->sh->pending, node))
        {
            p = (ngx_http_x402_pending_t *) node;

            if (p->lease_until == 0 && p->next_try > now) {
                p->next_try = now;
                ngx_http_x402_queue_reschedule_locked(zone->sh, p);
            }
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


static void
ngx_http_x402_retry_tick(ngx_event_t *ev)
{
    u_char                            hex[64];
    uint64_t                          now;
    ngx_int_t                         rc;
    ngx_str_t                         text, uri, body;
    ngx_uint_t                        i, ngiven, njobs, pending, expired;
    ngx_cycle_t                      *cycle;
    ngx_rbtree_node_t                *node;
    ngx_http_x402_shm_t              *zone;
    ngx_http_x402_retry_t            *rt;
    ngx_http_x402_pending_t          *p;
    ngx_http_x402_retry_job_t        *job, *jobs[NGX_HTTP_X402_ASYNC_BATCH];
    ngx_http_x402_retry_job_t        *given[NGX_HTTP_X402_ASYNC_BATCH];
    ngx_http_x402_store_main_conf_t  *smcf;

    cycle = ev->data;
    zone = ngx_http_x402_store_zone;

    if (ngx_http_x402_retry_exiting || zone == NULL) {
        return;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_x402_store_module);
    now = ngx_http_x402_queue_now();

    if (smcf->redis) {
        /* what Redis must forget goes out first, whatever follows */
        ngx_http_x402_redis_queue_flush();
    }

    if (zone->sh->superseded) {
        /*
         * A resizing reload: the new zone has them and retries them from
         * now on; this worker, until it is told to stop, would send the
         * same settlements again (t/82). The timer goes on, not holding a
         * stop: a reload that fails after the resize gives the old zone
         * back to this worker (t/42).
         */
        ev->cancelable = 1;
        ngx_add_timer(ev, NGX_HTTP_X402_ASYNC_TICK);
        return;
    }

    if (ngx_exiting && !ngx_http_x402_retry_draining) {
        ngx_http_x402_retry_draining = 1;
        ngx_http_x402_retry_deadline = now + smcf->async_drain;
        ngx_http_x402_retry_drain_begin(zone);
    }

    if (ngx_http_x402_retry_draining
        && (now >= ngx_http_x402_retry_deadline
            || zone->sh->counters.pending == 0))
    {
        pending = zone->sh->counters.pending;

        if (pending && zone->spool) {
            ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                          "x402: exiting with %ui async settlement(s) still "
                          "owed, left in the spool \"%V\" for the next start",
                          pending, &zone->spool->name);

        } else if (pending) {
            ngx_log_error(NGX_LOG_ALERT, ev->log, 0,
                          "x402: exiting with %ui async settlement(s) still "
                          "owed, in shared memory only (x402_spool off): "
                          "lost if nginx stops now", pending);
        }

        return;
    }

    ngiven = 0;
    njobs = 0;

    if (zone->sh->counters.pending == 0) {
        goto next;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    while (zone->sh->due.root != zone->sh->due.sentinel) {

        node = ngx_rbtree_min(zone->sh->due.root, zone->sh->due.sentinel);

        if ((uint64_t) node->key > now) {
            break;
        }

        p = ngx_http_x402_due_pending(node);

        if (p->rq == NGX_HTTP_X402_RQ_HELD
            && (p->lease_until
                || p->rq_lease < now + NGX_HTTP_X402_ASYNC_LEASE))
        {
            /*
             * Kept in Redis: an attempt here died (its lease ran out), or
             * our claim there is about to: Redis gives it to whoever
             * claims it next; not sent from here without a claim.
             */
            ngx_http_x402_queue_free_locked(zone, p);
            continue;
        }

        expired = ((uint64_t) p->valid_before * 1000 <= now);

        if (expired && !(p->unknown && smcf->rpc.len)) {
            /* the authorization is void: nothing can settle it now */
            if (ngiven == NGX_HTTP_X402_ASYNC_BATCH) {
                break;
            }

            job = ngx_http_x402_retry_job(p, ev->log);
            if (job == NULL) {
                break;
            }

            given[ngiven++] = job;

            if (p->rq != NGX_HTTP_X402_RQ_HELD) {
                (void) ngx_http_x402_spool_done_locked(zone, p->id,
                                        p->unknown ? "unknown" : "given-up");
            }

            if (p->unknown) {
                ngx_http_x402_count(zone->sh, async_unknown, 1);

            } else {
                ngx_http_x402_count(zone->sh, async_lost, 1);
            }

            ngx_http_x402_queue_free_locked(zone, p);
            continue;
        }

        if (njobs == NGX_HTTP_X402_ASYNC_BATCH
            || ngx_http_x402_retry_inflight + njobs
               >= NGX_HTTP_X402_RETRY_INFLIGHT
            || (ngx_http_x402_retry_draining
                && now >= ngx_http_x402_retry_deadline))
        {
            break;
        }

        /* ours for the lease: no other worker sends it meanwhile */
        p->lease_until = now + NGX_HTTP_X402_ASYNC_LEASE;
        p->lease_pid = ngx_pid;
        p->attempts++;

        job = ngx_http_x402_retry_job(p, ev->log);
        if (job == NULL) {
            p->attempts--;
            p->lease_until = 0;
            break;
        }

        /*
         * An answer was lost before: the money may have moved. With a
         * JSON-RPC location the chain says so, before anything is sent
         * again; once expired, the chain has the last word.
         */
        job->mode = expired ? NGX_HTTP_X402_RETRY_FINAL
                    : (p->unknown && smcf->rpc.len) ? NGX_HTTP_X402_RETRY_ASK
                    : NGX_HTTP_X402_RETRY_SETTLE;

        ngx_http_x402_queue_reschedule_locked(zone->sh, p);
        ngx_http_x402_count(zone->sh, async_retries, 1);

        jobs[njobs++] = job;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    for (i = 0; i < ngiven; i++) {
        job = given[i];
        uri.data = job->data;
        uri.len = job->uri_len;
        body.data = job->data + job->uri_len;
        body.len = job->body_len;
        ngx_http_x402_retry_give_up(ev->log, job->id, job->unknown,
                                    job->attempts, job->reason,
                                    job->reason_len, &uri, &body);

        if (job->rq != NGX_HTTP_X402_RQ_NONE) {
            ngx_http_x402_redis_queue_remove(job->id);
        }

        ngx_free(job);
    }

    for (i = 0; i < njobs; i++) {
        job = jobs[i];

        (void) ngx_hex_dump(hex, job->id, 32);
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "x402: %s async settlement of payment %*s "
                      "(attempt %ui)",
                      job->mode == NGX_HTTP_X402_RETRY_SETTLE
                      ? "retrying" : "asking the chain about",
                      (size_t) 64, hex, job->attempts);

        rc = ngx_http_x402_retry_start(cycle, job, &smcf->rpc, &rt);

        if (rc != NGX_OK) {
            if (rc == NGX_DECLINED) {
                ngx_str_set(&text, "no server uses its facilitator");

            } else {
                ngx_str_set(&text, "could not start a retry");
            }

            ngx_http_x402_redis_queue_done(zone, job->id,
                                           NGX_HTTP_X402_SETTLE_RETRY, &text,
                                           ev->log);
            ngx_free(job);
            continue;
        }

        ngx_free(job);

        ngx_http_x402_retry_inflight++;
        rt->counted = 1;

        ngx_http_run_posted_requests(rt->r->connection);
    }

next:

    if (smcf->redis && !ngx_http_x402_retry_draining
        && zone->sh->counters.pending < smcf->async_limit
        && ngx_http_x402_retry_inflight < NGX_HTTP_X402_RETRY_INFLIGHT)
    {
        /* what the fleet owes in Redis: due entries come to this zone */
        ngx_http_x402_redis_queue_poll(NGX_HTTP_X402_ASYNC_BATCH);
    }

    ngx_http_x402_spool_reconcile(zone, ev->log);

    if (ngx_http_x402_retry_exiting) {
        return;
    }

    /*
     * While something is owed the timer keeps a stopping worker alive
     * until the drain above has run; otherwise it does not delay a stop.
     */
    ev->cancelable = (zone->sh->counters.pending == 0
                      && !ngx_http_x402_retry_draining);

    ngx_add_timer(ev, ngx_http_x402_retry_draining
                      ? NGX_HTTP_X402_ASYNC_DRAIN_TICK
                      : NGX_HTTP_X402_ASYNC_TICK);
}


/*
 * No server block of this configuration settles through the facilitator
 * the payment is owed to (a reload removed it, or this nginx of the fleet
 * has none): kept and retried with the usual backoff, never sent to
 * another facilitator. Said once per facilitator and worker, at error: a
 * reload that gives it back settles what waits; what expires meanwhile is
 * given up with its settle request in the log.
 */
#define NGX_HTTP_X402_RETRY_NOWHERE  8

static void
ngx_http_x402_retry_nowhere(ngx_log_t *log, ngx_http_x402_retry_job_t *p,
    ngx_str_t *prefix)
{
    u_char             hex[64];
    uint32_t           h;
    ngx_uint_t         i;
    static uint32_t    said[NGX_HTTP_X402_RETRY_NOWHERE];
    static ngx_uint_t  nsaid;

    h = ngx_murmur_hash2(prefix->data, prefix->len)
        ^ (uint32_t) ngx_http_x402_server_name_hash(p->server);

    for (i = 0; i < nsaid; i++) {
        if (said[i] == h) {
            return;
        }
    }

    if (nsaid < NGX_HTTP_X402_RETRY_NOWHERE) {
        said[nsaid++] = h;
    }

    (void) ngx_hex_dump(hex, p->id, 32);

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "x402: async settlement of payment %*s is owed through "
                  "the facilitator \"%V\" of a server block that no priced "
                  "location of this configuration uses (x402_facilitator): "
                  "kept and retried, not sent to another facilitator; "
                  "payments owed there are given up when their "
                  "authorization expires", (size_t) 64, hex, prefix);
}


/* ---- a settle without a client ---- */

/* Builds the request and posts its subrequest; the caller runs it. */
static ngx_int_t
ngx_http_x402_retry_start(ngx_cycle_t *cycle, ngx_http_x402_retry_job_t *p,
    ngx_str_t *rpc, ngx_http_x402_retry_t **prt)
{
    u_char                           *data;
    ngx_str_t                         uri, body;
    x402_str_t                        sb, xnet, xreq;
    x402_allocator_t                  a;
    ngx_pool_t                       *pool;
    ngx_http_cleanup_t               *cln;
    ngx_http_request_t               *r;
    ngx_uint_t                        chain_only;
    ngx_http_x402_retry_t            *rt;
    ngx_http_core_srv_conf_t         *cscf;
    ngx_http_x402_store_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_x402_store_module);

    if (smcf == NULL) {
        return NGX_ERROR;
    }

    /*
     * The /settle goes where the payment was to settle: a server block
     * using the facilitator its uri names (<prefix>settle), the one it
     * was paid in if it is still there. A block found by its index alone
     * could be another one after a reload, or on another nginx of the
     * fleet (Redis), with a facilitator location of the same name that
     * reaches another facilitator.
     */
    uri.data = p->data;
    uri.len = p->uri_len;
    cscf = NULL;

    if (uri.len > sizeof("settle") - 1
        && ngx_strncmp(uri.data + uri.len - (sizeof("settle") - 1), "settle",
                       sizeof("settle") - 1) == 0)
    {
        uri.len -= sizeof("settle") - 1;
        cscf = ngx_http_x402_supported_server(cycle, &uri, p->server);
    }

    chain_only = 0;

    if (cscf == NULL) {
        ngx_http_x402_retry_nowhere(cycle->log, p, &uri);

        if (p->mode == NGX_HTTP_X402_RETRY_SETTLE || rpc->len == 0) {
            return NGX_DECLINED;
        }

        /*
         * A lost answer: the chain's word needs no facilitator, and only
         * it can end an expired one (never given up without it, t/77).
         * Asked in the block it was paid in (x402_rpc's locations);
         * nothing is sent to a facilitator from there.
         */
        cscf = ngx_http_x402_background_server(cycle, p->server);
        if (cscf == NULL) {
            return NGX_DECLINED;
        }

        chain_only = 1;
    }

    r = ngx_http_x402_background_request(cycle, cscf, NGX_HTTP_POST,
                                         p->first
                                         ? "POST x402-settlement HTTP/1.1"
                                         : "POST x402-settlement-retry "
                                           "HTTP/1.1",
                                         p->first
                                         ? "settling an x402 payment"
                                         : "retrying an x402 settlement", 0,
                                         ngx_http_x402_retry_finish);
    if (r == NULL) {
        return NGX_ERROR;
    }

    pool = r->pool;

    rt = ngx_alloc(sizeof(ngx_http_x402_retry_t), cycle->log);
    if (rt == NULL) {
        goto failed_req;
    }

    ngx_memzero(rt, sizeof(ngx_http_x402_retry_t));
    ngx_memcpy(rt->id, p->id, 32);
    rt->mode = p->mode;
    rt->unknown = p->unknown;
    rt->reason_len = p->reason_len;
    ngx_memcpy(rt->reason, p->reason, p->reason_len);
    rt->attempts = p->attempts;
    rt->valid_before = p->valid_before;
    rt->scope = p->scope;
    rt->expire = p->expire;
    rt->keep = p->keep;
    rt->redis = p->redis;
    rt->chain_only = chain_only;
    rt->r = r;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ngx_free(rt);
        rt = NULL;
        goto failed_req;
    }

    cln->handler = ngx_http_x402_retry_gone;
    cln->data = rt;

    data = ngx_pnalloc(pool, p->uri_len + p->body_len);
    if (data == NULL) {
        goto failed_req;
    }

    ngx_memcpy(data, p->data, p->uri_len + p->body_len);

    rt->sent.data = data + p->uri_len;
    rt->sent.len = p->body_len;

    uri.data = data;
    uri.len = p->uri_len;
    rt->uri = uri;

    r->uri = uri;
    r->unparsed_uri = uri;

    if (p->mode != NGX_HTTP_X402_RETRY_SETTLE) {
        /* the JSON-RPC call: <x402_rpc><CAIP-2 network> */
        a.alloc = ngx_http_x402_retry_alloc;
        a.ctx = pool;
        sb.data = (const char *) rt->sent.data;
        sb.len = rt->sent.len;

        if (x402_authorization_state_request(sb, &a, &xnet, &xreq) == 0) {
            rt->rpc_uri.len = rpc->len + xnet.len;
            rt->rpc_uri.data = ngx_pnalloc(pool, rt->rpc_uri.len);
            if (rt->rpc_uri.data == NULL) {
                goto failed_req;
            }

            ngx_memcpy(ngx_cpymem(rt->rpc_uri.data, rpc->data, rpc->len),
                       xnet.data, xnet.len);
            rt->rpc_body.data = (u_char *) xreq.data;
            rt->rpc_body.len = xreq.len;
            rt->asking = 1;

            if (ngx_http_x402_retry_subrequest(r, rt, &rt->rpc_uri,
                                               &rt->rpc_body)
                != NGX_OK)
            {
                goto failed_req;
            }

            *prt = rt;
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "x402: no authorizationState call can be made from "
                      "the settle body of this payment");

        if (p->mode == NGX_HTTP_X402_RETRY_FINAL || chain_only) {
            goto failed_req;
        }

        rt->mode = NGX_HTTP_X402_RETRY_SETTLE;
    }

    body = rt->sent;

    if (ngx_http_x402_retry_subrequest(r, rt, &uri, &body) != NGX_OK) {
        goto failed_req;
    }

    *prt = rt;

    return NGX_OK;

failed_req:

    if (rt) {
        /* the caller reports this attempt; the cleanup only frees rt */
        rt->finished = 1;
    }

    ngx_http_x402_background_close(r);

    return NGX_ERROR;
}


/* a POST of body to uri, in memory, as a subrequest of the fake request */
static ngx_int_t
ngx_http_x402_retry_subrequest(ngx_http_request_t *r,
    ngx_http_x402_retry_t *rt, ngx_str_t *uri, ngx_str_t *body)
{
    ngx_http_request_t  *sr;

    rt->got_response = 0;
    rt->status = 0;
    ngx_str_null(&rt->body);

    return ngx_http_x402_facilitator_request(r, uri, body,
                                             NGX_HTTP_SUBREQUEST_WAITED,
                                             ngx_http_x402_retry_post, rt,
                                             &sr);
}


static ngx_int_t
ngx_http_x402_retry_post(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    ngx_http_x402_retry_t  *rt = data;

    if (!rt->finished) {
        rt->got_response = ngx_http_x402_facilitator_answer(sr, rc,
                                                            &rt->status,
                                                            &rt->body);
    }

    return rc;
}


/* the background request's write handler: its subrequest is done */
static void
ngx_http_x402_retry_finish(ngx_http_request_t *r)
{
    ngx_str_t               text;
    ngx_connection_t       *c;
    ngx_http_cleanup_t     *cln;
    ngx_http_x402_retry_t  *rt;

    c = r->connection;

    for (cln = r->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_x402_retry_gone) {
            break;
        }
    }

    if (cln == NULL) {
        return;
    }

    rt = cln->data;

    if (r->count > 1) {
        /* still waiting for the subrequest */
        return;
    }

    if (rt->asking && !rt->finished) {
        rt->asking = 0;

        if (ngx_http_x402_retry_chain(rt, c->log) == NGX_AGAIN) {

            if (rt->chain_only) {
                /* not used: kept for a block that uses its facilitator */
                ngx_str_set(&text, "no server uses its facilitator");
                rt->finished = 1;
                ngx_http_x402_redis_queue_done(ngx_http_x402_store_zone,
                                               rt->id,
                                               NGX_HTTP_X402_SETTLE_RETRY,
                                               &text, c->log);

            /* not used on chain: the /settle goes out again */
            } else if (ngx_http_x402_retry_subrequest(r, rt, &rt->uri,
                                                      &rt->sent)
                       == NGX_OK)
            {
                ngx_http_run_posted_requests(c);
                return;
            }

            /* the cleanup reports it: kept for a retry */
        }
    }

    if (!rt->finished) {
        ngx_http_x402_retry_report(rt, c->log);
    }

    /* frees rt through the cleanup */
    ngx_http_x402_background_close(r);
}


/* the request is freed: by us, or by nginx's terminate path */
static void
ngx_http_x402_retry_gone(void *data)
{
    ngx_http_x402_retry_t  *rt = data;

    if (!rt->finished) {
        ngx_http_x402_retry_report(rt, ngx_cycle->log);
    }

    if (rt->counted && ngx_http_x402_retry_inflight) {
        ngx_http_x402_retry_inflight--;
    }

    if (rt->first) {
        ngx_free(rt->first);
        ngx_http_x402_first_inflight--;

        if (ngx_http_x402_first_head && !ngx_http_x402_first_event.posted
            && !ngx_http_x402_retry_exiting)
        {
            /* a slot is free: the next listed ones go */
            ngx_post_event(&ngx_http_x402_first_event, &ngx_posted_events);
        }
    }

    ngx_free(rt);
}


static void *
ngx_http_x402_retry_alloc(void *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


/*
 * The chain's answer about a payment whose /settle answer was lost.
 * NGX_AGAIN: send the /settle (not used, or no usable answer, and the
 * authorization still valid); NGX_OK: resolved (settled on chain, given
 * up, unknown), rt->finished.
 */
static ngx_int_t
ngx_http_x402_retry_chain(ngx_http_x402_retry_t *rt, ngx_log_t *log)
{
    int                state;
    u_char             hex[64];
    ngx_str_t          text;
    x402_str_t         body, why;
    x402_allocator_t   a;

    a.alloc = ngx_http_x402_retry_alloc;
    a.ctx = rt->r->pool;
    body.data = (const char *) rt->body.data;
    body.len = rt->body.len;
    ngx_memzero(&why, sizeof(x402_str_t));

    state = rt->got_response
            ? x402_authorization_state_parse((int) rt->status, body, &a, &why)
            : X402_AUTH_ERROR;

    if (!rt->got_response) {
        why.data = "JSON-RPC location unreachable";
        why.len = sizeof("JSON-RPC location unreachable") - 1;
    }

    (void) ngx_hex_dump(hex, rt->id, 32);

    if (state == X402_AUTH_USED) {
        ngx_str_set(&text, "authorization used on chain");
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "x402: payment %*s: the chain (%V) says its "
                      "authorization was used: settled", (size_t) 64, hex,
                      &rt->rpc_uri);

        rt->finished = 1;
        ngx_http_x402_redis_queue_done(ngx_http_x402_store_zone, rt->id,
                                       NGX_HTTP_X402_SETTLE_CHAIN, &text,
                                       log);
        ngx_http_x402_retry_record(rt, NGX_HTTP_X402_REC_SETTLED, &text);

        return NGX_OK;
    }

    if (state == X402_AUTH_UNUSED) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "x402: payment %*s: the chain (%V) says its "
                      "authorization was not used", (size_t) 64, hex,
                      &rt->rpc_uri);

        if (rt->mode == NGX_HTTP_X402_RETRY_FINAL) {
            /* expired and unused: it can never settle now */
            rt->finished = 1;
            ngx_str_set(&text, "authorization expired unused");
            ngx_http_x402_retry_give_up(log, rt->id, 0, rt->attempts,
                                        rt->reason, rt->reason_len, &rt->uri,
                                        &rt->sent);
            ngx_http_x402_redis_queue_done(ngx_http_x402_store_zone, rt->id,
                                           NGX_HTTP_X402_SETTLE_GIVEN_UP,
                                           &text, log);
            return NGX_OK;
        }

        return NGX_AGAIN;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "x402: payment %*s: no usable answer from the chain "
                  "(%V): %*s", (size_t) 64, hex, &rt->rpc_uri, why.len,
                  why.data);

    if (rt->mode == NGX_HTTP_X402_RETRY_FINAL) {
        rt->finished = 1;
        ngx_str_set(&text, "expired, the chain did not answer");
        ngx_http_x402_retry_give_up(log, rt->id, 1, rt->attempts,
                                    rt->reason, rt->reason_len, &rt->uri,
                                    &rt->sent);
        ngx_http_x402_redis_queue_done(ngx_http_x402_store_zone, rt->id,
                                       NGX_HTTP_X402_SETTLE_UNKNOWN, &text,
                                       log);
        return NGX_OK;
    }

    return NGX_AGAIN;
}


/*
 * A final outcome of a payment kept in Redis goes there too: the fleet
 * learns it (a settled record carries grants elsewhere).
 */
static void
ngx_http_x402_retry_record(ngx_http_x402_retry_t *rt, ngx_uint_t state,
    ngx_str_t *text)
{
    ngx_http_x402_store_op_t  op;

    if (!rt->redis) {
        return;
    }

    ngx_memzero(&op, sizeof(ngx_http_x402_store_op_t));
    ngx_memcpy(op.id, rt->id, 32);
    op.scope = rt->scope;
    op.expire = rt->expire;

    if (state == NGX_HTTP_X402_REC_SETTLED) {
        op.settled_at = ngx_time();

        if (rt->keep) {
            /*
             * kept from its settlement, as a first attempt's: a grant
             * holds its length (an entry of an earlier version says
             * nothing of it: the reservation's expiry then)
             */
            op.expire = ngx_max(op.expire,
                                ngx_http_x402_queue_settled_expire(
                                    op.settled_at, rt->keep,
                                    rt->valid_before));
        }
    }

    ngx_http_x402_redis_set(&op, state, text);
}


static void
ngx_http_x402_retry_report(ngx_http_x402_retry_t *rt, ngx_log_t *log)
{
    int                         outcome;
    ngx_str_t                   text;
    ngx_pool_t                 *pool;
    x402_str_t                  body;
    x402_allocator_t            a;
    x402_facilitator_result_t   res;

    rt->finished = 1;

    if (ngx_http_x402_store_zone == NULL) {
        return;
    }

    if (rt->first) {
        ngx_http_x402_first_report(rt, log);
        return;
    }

    if (rt->asking) {
        /* the request went away during the chain lookup */
        ngx_str_set(&text, "chain lookup did not finish");
        ngx_http_x402_redis_queue_done(ngx_http_x402_store_zone, rt->id,
                                       NGX_HTTP_X402_SETTLE_RETRY, &text,
                                       log);
        return;
    }

    if (!rt->got_response || rt->status == 0) {
        ngx_str_set(&text, "facilitator unreachable");
        ngx_http_x402_redis_queue_done(ngx_http_x402_store_zone, rt->id,
                                       NGX_HTTP_X402_SETTLE_RETRY, &text,
                                       log);
        return;
    }

    pool = rt->r ? rt->r->pool : NULL;

    if (pool == NULL) {
        ngx_str_set(&text, "no memory");
        ngx_http_x402_redis_queue_done(ngx_http_x402_store_zone, rt->id,
                                       NGX_HTTP_X402_SETTLE_RETRY, &text,
                                       log);
        return;
    }

    a.alloc = ngx_http_x402_retry_alloc;
    a.ctx = pool;
    body.data = (const char *) rt->body.data;
    body.len = rt->body.len;

    ngx_memzero(&res, sizeof(x402_facilitator_result_t));

    outcome = x402_facilitator_parse_settle((int) rt->status, body, &a, &res);

    if (outcome == X402_FAC_OK) {
        text.data = (u_char *) res.transaction.data;
        text.len = res.transaction.len;
        ngx_http_x402_metrics_settled_request(&rt->sent);
        ngx_http_x402_redis_queue_done(ngx_http_x402_store_zone, rt->id,
                                       NGX_HTTP_X402_SETTLE_OK, &text, log);

        ngx_http_x402_retry_record(rt, NGX_HTTP_X402_REC_SETTLED, &text);

        return;
    }

    if (outcome == X402_FAC_REFUSED || outcome == X402_FAC_BROKEN) {
        text.data = (u_char *) res.reason.data;
        text.len = res.reason.len;

        if (text.len == 0) {
            ngx_str_set(&text, "settlement refused");
        }

    } else {
        ngx_str_set(&text, "no memory");
    }

    if (outcome == X402_FAC_REFUSED && rt->status < 500
        && !(rt->unknown && rt->rpc_uri.len))
    {
        /* refused by the facilitator: final, never retried */
        ngx_http_x402_redis_queue_done(ngx_http_x402_store_zone, rt->id,
                                       NGX_HTTP_X402_SETTLE_REFUSED, &text,
                                       log);

        ngx_http_x402_retry_record(rt, NGX_HTTP_X402_REC_FAILED, &text);

        return;
    }

    /*
     * An answer that says nothing (it may have settled); or a refusal
     * after an earlier answer was lost, which may only say that this
     * earlier /settle landed meanwhile (nonce used: seen in the soak, t/82,
     * a /settle in flight at a restart landing after the chain said "not
     * used"): with x402_rpc the chain decides at the next look, before
     * anything is sent again.
     */
    ngx_http_x402_redis_queue_done(ngx_http_x402_store_zone, rt->id,
                                   NGX_HTTP_X402_SETTLE_RETRY, &text, log);
}


/*
 * A first attempt's answer: logged and counted as the client request's own
 * settlement was (settle.c: the same lines, the facilitator's call timed,
 * x402_settlements_total with the option's labels and revenue), then the
 * store learns it from the op (grants, Redis) as async_end says.
 */
static void
ngx_http_x402_first_report(ngx_http_x402_retry_t *rt, ngx_log_t *log)
{
    int                         outcome;
    ngx_str_t                   text, detail;
    ngx_uint_t                  result, status;
    ngx_msec_t                  elapsed;
    x402_str_t                  body;
    x402_allocator_t            a;
    ngx_http_x402_first_t      *f;
    x402_facilitator_result_t   res;

    f = rt->first;
    elapsed = ngx_current_msec - rt->start;
    status = rt->got_response ? rt->status : 0;

    ngx_memzero(&res, sizeof(x402_facilitator_result_t));

    if (!rt->got_response || rt->r == NULL) {
        outcome = X402_FAC_BROKEN;
        res.reason.data = "no response";
        res.reason.len = sizeof("no response") - 1;

    } else {
        a.alloc = ngx_http_x402_retry_alloc;
        a.ctx = rt->r->pool;
        body.data = (const char *) rt->body.data;
        body.len = rt->body.len;

        outcome = x402_facilitator_parse_settle((int) status, body, &a, &res);
    }

    if (outcome == X402_FAC_OK || outcome == X402_FAC_REFUSED) {
        result = NGX_HTTP_X402_METRICS_FAC_OK;

    } else if (status == 0 || status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        result = NGX_HTTP_X402_METRICS_FAC_UNAVAILABLE;

    } else {
        result = NGX_HTTP_X402_METRICS_FAC_MALFORMED;
    }

    ngx_http_x402_metrics_facilitator(NGX_HTTP_X402_METRICS_SETTLE, elapsed,
                                      result);

    switch (outcome) {

    case X402_FAC_OK:
        text.data = (u_char *) res.transaction.data;
        text.len = res.transaction.len;

        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "x402: settled %V from %V on %V, tx %V, asset %V, "
                      "in %Mms", &f->amount, &f->payer, &f->network, &text,
                      &f->asset, elapsed);

        ngx_http_x402_metrics_settlement(NGX_HTTP_X402_METRICS_SETTLE_OK,
                                         &f->network, &f->asset, &f->pay_to,
                                         &f->amount);

        ngx_http_x402_store_op_async_end(&f->op, NGX_HTTP_X402_SETTLE_OK,
                                         &text, log);
        return;

    case X402_FAC_REFUSED:
        ngx_http_x402_clean_str(rt->r, &text, &res.reason);
        ngx_http_x402_clean_str(rt->r, &detail, &res.message);

        ngx_http_x402_metrics_settlement(NGX_HTTP_X402_METRICS_SETTLE_FAILED,
                                         &f->network, &f->asset, &f->pay_to,
                                         NULL);

        ngx_log_error(f->log_level, log, 0,
                      "x402: settlement of %V from %V refused: %V%s%V",
                      &f->amount, &f->payer, &text,
                      detail.len ? ": " : "", &detail);

        /* refused by the facilitator: final; its 5xx says nothing */
        ngx_http_x402_store_op_async_end(&f->op,
                                         status < NGX_HTTP_INTERNAL_SERVER_ERROR
                                         ? NGX_HTTP_X402_SETTLE_REFUSED
                                         : NGX_HTTP_X402_SETTLE_RETRY,
                                         &text, log);
        return;

    case X402_FAC_BROKEN:
        if (rt->r) {
            ngx_http_x402_clean_str(rt->r, &text, &res.reason);

        } else {
            ngx_str_set(&text, "no response");
        }

        /* served on credit, the store keeps it for a retry */
        ngx_http_x402_metrics_settlement(
                                       NGX_HTTP_X402_METRICS_SETTLE_PENDING,
                                       &f->network, &f->asset, &f->pay_to,
                                       NULL);

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "x402: settlement of %V from %V failed, facilitator "
                      "\"%V\" status %ui: %V", &f->amount, &f->payer,
                      &rt->uri, status, &text);

        ngx_http_x402_store_op_async_end(&f->op, NGX_HTTP_X402_SETTLE_RETRY,
                                         &text, log);
        return;

    default:
        /* no memory: kept for a retry */
        ngx_str_set(&text, "no memory");
        ngx_http_x402_store_op_async_end(&f->op, NGX_HTTP_X402_SETTLE_RETRY,
                                         &text, log);
        return;
    }
}


/*
 * A first attempt's log lines (its answer, the facilitator location's
 * errors) end with the context of the client request that paid, as when
 * they came from that request's own subrequest: which client, which
 * request. Its log->data stays nginx's (ngx_http_log_ctx_t).
 */
static u_char *
ngx_http_x402_first_log(ngx_log_t *log, u_char *buf, size_t len)
{
    ngx_http_cleanup_t     *cln;
    ngx_http_log_ctx_t     *lctx;
    ngx_http_x402_retry_t  *rt;

    lctx = log->data;

    if (lctx == NULL || lctx->request == NULL) {
        return buf;
    }

    for (cln = lctx->request->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_x402_retry_gone) {
            rt = cln->data;

            if (rt->first) {
                len = ngx_min(len, rt->first->context.len);
                buf = ngx_cpymem(buf, rt->first->context.data, len);
            }

            break;
        }
    }

    return buf;
}

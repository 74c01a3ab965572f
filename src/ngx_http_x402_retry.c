
/*
 * ngx_http_x402_retry.c: no settlement lost (x402_settle async).
 *
 * A settlement served on credit is queued in the zone before the response
 * goes out (ngx_http_x402_store_op_async_begin), leased to the worker that
 * settles it in the background. If that settle fails, or never reports back
 * (the request died, the worker exited), the entry stays in the zone and
 * every worker's timer picks up due entries: a lease, then a POST of the
 * stored body to the stored settle location, issued as an in-memory
 * subrequest of a request of our own (a "fake" request on a connection that
 * is never polled, as lua-nginx-module and nchan do for timers), so the
 * facilitator location's proxy settings apply exactly as for live traffic.
 * Backoff doubles from 1s to 60s; past validBefore the settlement cannot
 * happen any more: it is logged and counted as lost.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <fcntl.h>

#include "ngx_http_x402_store_int.h"
#include "ngx_http_x402_metrics.h"


#define NGX_HTTP_X402_RETRY_INFLIGHT  16


typedef struct {
    u_char                      id[32];
    ngx_uint_t                  attempts;
    time_t                      valid_before;
    uint64_t                    scope;
    time_t                      expire;
    ngx_uint_t                  redis;
    ngx_http_request_t         *r;
    ngx_uint_t                  status;
    ngx_str_t                   body;
    ngx_str_t                   sent;       /* the /settle body, metrics */
    unsigned                    got_response:1;
    unsigned                    finished:1;
    unsigned                    counted:1;
} ngx_http_x402_retry_t;


typedef struct {
    u_char                      id[32];
    ngx_uint_t                  attempts;
    u_char                      reason_len;
    u_char                      reason[63];
} ngx_http_x402_lost_t;


/* a due entry, copied out of the zone under the lock */
typedef struct {
    u_char                      id[32];
    ngx_uint_t                  attempts;
    time_t                      valid_before;
    uint64_t                    scope;
    time_t                      expire;
    ngx_uint_t                  redis;
    ngx_uint_t                  server;
    size_t                      uri_len;
    size_t                      body_len;
    u_char                      data[1];
} ngx_http_x402_retry_job_t;


static void ngx_http_x402_retry_tick(ngx_event_t *ev);
static ngx_int_t ngx_http_x402_retry_start(ngx_cycle_t *cycle,
    ngx_http_x402_retry_job_t *p, ngx_http_x402_retry_t **prt);
/* not static: ngx_http_x402_own_subrequest() knows our subrequests by it */
ngx_int_t ngx_http_x402_retry_post(ngx_http_request_t *sr, void *data,
    ngx_int_t rc);
static void ngx_http_x402_retry_finish(ngx_http_request_t *r);
static void ngx_http_x402_retry_gone(void *data);
static void ngx_http_x402_retry_report(ngx_http_x402_retry_t *rt,
    ngx_log_t *log);
static ngx_msec_t ngx_http_x402_retry_backoff(ngx_uint_t attempts);


static ngx_event_t   ngx_http_x402_retry_timer;
static ngx_uint_t    ngx_http_x402_retry_inflight;
static ngx_uint_t    ngx_http_x402_retry_exiting;


static ngx_str_t  ngx_http_x402_post_method = ngx_string("POST");
static ngx_str_t  ngx_http_x402_content_type = ngx_string("Content-Type");
static ngx_str_t  ngx_http_x402_json = ngx_string("application/json");


static ngx_msec_t
ngx_http_x402_retry_backoff(ngx_uint_t attempts)
{
    ngx_msec_t  delay;

    delay = NGX_HTTP_X402_ASYNC_FIRST;

    while (attempts-- > 1 && delay < NGX_HTTP_X402_ASYNC_BACKOFF) {
        delay *= 2;
    }

    return ngx_min(delay, NGX_HTTP_X402_ASYNC_BACKOFF);
}


/* ---- the queue in the zone ---- */

static ngx_http_x402_pending_t *
ngx_http_x402_pending_find(ngx_http_x402_shm_sh_t *sh, u_char *id)
{
    ngx_queue_t              *q;
    ngx_http_x402_pending_t  *p;

    for (q = ngx_queue_head(&sh->pending);
         q != ngx_queue_sentinel(&sh->pending);
         q = ngx_queue_next(q))
    {
        p = ngx_queue_data(q, ngx_http_x402_pending_t, queue);

        if (ngx_memcmp(p->id, id, 32) == 0) {
            return p;
        }
    }

    return NULL;
}


static void
ngx_http_x402_pending_free_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_pending_t *p)
{
    ngx_http_x402_rec_t  *rec;

    rec = ngx_http_x402_shm_lookup(zone->sh, p->id);
    if (rec) {
        rec->async = 0;
    }

    ngx_queue_remove(&p->queue);
    ngx_slab_free_locked(zone->shpool, p);

    ngx_http_x402_count(zone->sh, pending, -1);
}


ngx_int_t
ngx_http_x402_shm_pending_add(ngx_http_x402_shm_t *zone,
    ngx_http_x402_store_op_t *op, ngx_uint_t limit, ngx_uint_t server,
    ngx_str_t *uri, ngx_str_t *body)
{
    size_t                    size;
    ngx_http_x402_rec_t      *rec;
    ngx_http_x402_pending_t  *p;

    size = offsetof(ngx_http_x402_pending_t, data) + uri->len + body->len;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* the bound on unsettled credit: beyond it, settle synchronously */
    if (zone->sh->counters.pending >= limit) {
        ngx_http_x402_count(zone->sh, async_sync, 1);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    p = ngx_slab_alloc_locked(zone->shpool, size);

    if (p == NULL) {
        ngx_http_x402_count(zone->sh, async_sync, 1);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_memcpy(p->id, op->id, 32);
    p->scope = op->scope;
    p->expire = op->expire;
    p->redis = (op->backend == NGX_HTTP_X402_BACKEND_REDIS);
    p->valid_before = op->valid_before;
    p->lease_until = ngx_current_msec + NGX_HTTP_X402_ASYNC_LEASE;
    p->lease_pid = ngx_pid;
    p->next_try = p->lease_until;
    p->attempts = 1;
    p->server = server;
    p->uri_len = uri->len;
    p->body_len = body->len;
    p->reason_len = 0;
    ngx_memcpy(p->data, uri->data, uri->len);
    ngx_memcpy(p->data + uri->len, body->data, body->len);

    ngx_queue_insert_tail(&zone->sh->pending, &p->queue);

    rec = ngx_http_x402_shm_lookup(zone->sh, op->id);
    if (rec) {
        rec->async = 1;
    }

    ngx_http_x402_count(zone->sh, pending, 1);
    ngx_http_x402_count(zone->sh, async_queued, 1);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


/*
 * An attempt ended: settled (the entry goes, the record says settled), or
 * not (the entry stays, with a backoff; every worker may pick it up).
 */
void
ngx_http_x402_shm_pending_done(ngx_http_x402_shm_t *zone, u_char *id,
    ngx_uint_t outcome, ngx_str_t *text, ngx_log_t *log)
{
    u_char                    hex[64];
    size_t                    len;
    ngx_uint_t                attempts, found;
    ngx_msec_t                delay;
    ngx_http_x402_rec_t      *rec;
    ngx_http_x402_pending_t  *p;

    delay = 0;
    attempts = 0;
    found = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    p = ngx_http_x402_pending_find(zone->sh, id);

    if (p) {
        found = 1;
        attempts = p->attempts;

        if (outcome == NGX_HTTP_X402_SETTLE_OK) {
            ngx_http_x402_pending_free_locked(zone, p);
            ngx_http_x402_count(zone->sh, async_settled, 1);

        } else if (outcome == NGX_HTTP_X402_SETTLE_REFUSED) {
            /* refused by the facilitator: final, nothing to retry */
            ngx_http_x402_pending_free_locked(zone, p);

        } else {
            delay = ngx_http_x402_retry_backoff(p->attempts);
            p->next_try = ngx_current_msec + delay;
            p->lease_until = 0;

            if (text) {
                len = ngx_min(text->len, sizeof(p->reason));
                ngx_memcpy(p->reason, text->data, len);
                p->reason_len = (u_char) len;
            }
        }
    }

    if (outcome == NGX_HTTP_X402_SETTLE_OK) {
        rec = ngx_http_x402_shm_lookup(zone->sh, id);

        if (rec && rec->state != NGX_HTTP_X402_REC_SETTLED) {
            rec->state = NGX_HTTP_X402_REC_SETTLED;
            rec->settled_at = ngx_time();

            if (text) {
                len = ngx_min(text->len, NGX_HTTP_X402_REC_TEXT_LEN);
                ngx_memcpy(rec->text, text->data, len);
                rec->text_len = (u_char) len;
            }

            ngx_http_x402_count(zone->sh, settled, 1);
        }
    }

    if (outcome == NGX_HTTP_X402_SETTLE_REFUSED) {
        rec = ngx_http_x402_shm_lookup(zone->sh, id);

        if (rec && rec->state != NGX_HTTP_X402_REC_SETTLED) {
            /* served on credit: kept (not evictable) until it expires */
            rec->state = NGX_HTTP_X402_REC_FAILED;

            if (text) {
                len = ngx_min(text->len, NGX_HTTP_X402_REC_TEXT_LEN);
                ngx_memcpy(rec->text, text->data, len);
                rec->text_len = (u_char) len;
            }
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    (void) ngx_hex_dump(hex, id, 32);

    if (!found) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "x402: async settlement of payment %*s finished "
                      "but was no longer queued", (size_t) 64, hex);
        return;
    }

    if (outcome == NGX_HTTP_X402_SETTLE_OK) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "x402: async settlement of payment %*s settled "
                      "after %ui attempt(s): %V", (size_t) 64, hex, attempts,
                      text);

    } else if (outcome == NGX_HTTP_X402_SETTLE_REFUSED) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "x402: async settlement of payment %*s refused by "
                      "the facilitator (attempt %ui: %V): final, not "
                      "retried", (size_t) 64, hex, attempts, text);

    } else {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "x402: async settlement of payment %*s failed "
                      "(attempt %ui: %V), retrying in %Mms", (size_t) 64,
                      hex, attempts, text, delay);
    }
}


/* ---- the timer ---- */

ngx_int_t
ngx_http_x402_retry_init_process(ngx_cycle_t *cycle)
{
    ngx_http_x402_retry_exiting = 0;
    ngx_http_x402_retry_inflight = 0;

    ngx_memzero(&ngx_http_x402_retry_timer, sizeof(ngx_event_t));

    ngx_http_x402_retry_timer.handler = ngx_http_x402_retry_tick;
    ngx_http_x402_retry_timer.data = cycle;
    ngx_http_x402_retry_timer.log = cycle->log;
    /* a graceful shutdown does not wait for the next scan */
    ngx_http_x402_retry_timer.cancelable = 1;

    /* spread the workers' scans */
    ngx_add_timer(&ngx_http_x402_retry_timer,
                  NGX_HTTP_X402_ASYNC_TICK + ngx_random() % 100);

    return NGX_OK;
}


void
ngx_http_x402_retry_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_x402_retry_exiting = 1;

    if (ngx_http_x402_retry_timer.timer_set) {
        ngx_del_timer(&ngx_http_x402_retry_timer);
    }
}


static void
ngx_http_x402_retry_tick(ngx_event_t *ev)
{
    u_char                      hex[64];
    size_t                      size;
    ngx_str_t                   text;
    ngx_uint_t                  i, nlost, njobs;
    ngx_msec_t                  now;
    ngx_cycle_t                *cycle;
    ngx_queue_t                *q, *next;
    ngx_http_x402_shm_t        *zone;
    ngx_http_x402_retry_t      *rt;
    ngx_http_x402_pending_t    *p;
    ngx_http_x402_retry_job_t  *job, *jobs[NGX_HTTP_X402_ASYNC_BATCH];
    ngx_http_x402_lost_t        lost[NGX_HTTP_X402_ASYNC_BATCH];

    cycle = ev->data;
    zone = ngx_http_x402_store_zone;

    if (ngx_exiting || ngx_http_x402_retry_exiting || zone == NULL) {
        return;
    }

    nlost = 0;
    njobs = 0;

    if (zone->sh->counters.pending == 0) {
        goto next;
    }

    now = ngx_current_msec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&zone->sh->pending);
         q != ngx_queue_sentinel(&zone->sh->pending);
         q = next)
    {
        next = ngx_queue_next(q);
        p = ngx_queue_data(q, ngx_http_x402_pending_t, queue);

        if (p->lease_until && (ngx_msec_int_t) (p->lease_until - now) > 0) {
            continue;
        }

        if (p->valid_before <= ngx_time()) {
            /* the authorization is void: nothing can settle it now */
            if (nlost == NGX_HTTP_X402_ASYNC_BATCH) {
                continue;
            }

            ngx_memcpy(lost[nlost].id, p->id, 32);
            lost[nlost].attempts = p->attempts;
            lost[nlost].reason_len = p->reason_len;
            ngx_memcpy(lost[nlost].reason, p->reason, p->reason_len);
            nlost++;

            ngx_http_x402_pending_free_locked(zone, p);
            ngx_http_x402_count(zone->sh, async_lost, 1);
            continue;
        }

        if ((ngx_msec_int_t) (p->next_try - now) > 0
            || njobs == NGX_HTTP_X402_ASYNC_BATCH
            || ngx_http_x402_retry_inflight + njobs
               >= NGX_HTTP_X402_RETRY_INFLIGHT)
        {
            continue;
        }

        size = offsetof(ngx_http_x402_retry_job_t, data)
               + p->uri_len + p->body_len;

        job = ngx_alloc(size, ev->log);
        if (job == NULL) {
            break;
        }

        ngx_memcpy(job->id, p->id, 32);
        job->scope = p->scope;
        job->expire = p->expire;
        job->redis = p->redis;
        job->valid_before = p->valid_before;
        job->server = p->server;
        job->uri_len = p->uri_len;
        job->body_len = p->body_len;
        ngx_memcpy(job->data, p->data, p->uri_len + p->body_len);

        /* ours for the lease: no other worker sends it meanwhile */
        p->lease_until = now + NGX_HTTP_X402_ASYNC_LEASE;
        p->lease_pid = ngx_pid;
        p->attempts++;
        job->attempts = p->attempts;
        ngx_http_x402_count(zone->sh, async_retries, 1);

        jobs[njobs++] = job;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    for (i = 0; i < nlost; i++) {
        (void) ngx_hex_dump(hex, lost[i].id, 32);
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "x402: async settlement of payment %*s LOST: the "
                      "authorization expired after %ui attempt(s), last "
                      "error: \"%*s\"", (size_t) 64, hex, lost[i].attempts,
                      (size_t) lost[i].reason_len, lost[i].reason);
    }

    for (i = 0; i < njobs; i++) {
        job = jobs[i];

        (void) ngx_hex_dump(hex, job->id, 32);
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "x402: retrying async settlement of payment %*s "
                      "(attempt %ui)", (size_t) 64, hex, job->attempts);

        if (ngx_http_x402_retry_start(cycle, job, &rt) != NGX_OK) {
            ngx_str_set(&text, "could not start a retry");
            ngx_http_x402_shm_pending_done(zone, job->id,
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

    if (!ngx_exiting && !ngx_http_x402_retry_exiting) {
        ngx_add_timer(ev, NGX_HTTP_X402_ASYNC_TICK);
    }
}


/* ---- a settle without a client ---- */

/* Builds the request and posts its subrequest; the caller runs it. */
static ngx_int_t
ngx_http_x402_retry_start(ngx_cycle_t *cycle, ngx_http_x402_retry_job_t *p,
    ngx_http_x402_retry_t **prt)
{
    u_char                           *data;
    ngx_fd_t                          fd;
    ngx_buf_t                        *b;
    ngx_str_t                         uri;
    ngx_log_t                        *log;
    ngx_pool_t                       *cpool, *pool;
    ngx_chain_t                      *cl;
    ngx_table_elt_t                  *h;
    ngx_connection_t                 *c;
    ngx_http_log_ctx_t               *lctx;
    ngx_http_cleanup_t               *cln;
    ngx_http_request_t               *r, *sr;
    ngx_http_x402_retry_t            *rt;
    ngx_http_core_srv_conf_t        **cscfp, *cscf;
    ngx_http_core_main_conf_t        *cmcf;
    ngx_http_post_subrequest_t       *ps;
    ngx_http_x402_store_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_x402_store_module);
    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module);

    if (smcf == NULL || cmcf == NULL || cmcf->servers.nelts == 0) {
        return NGX_ERROR;
    }

    cscfp = cmcf->servers.elts;
    cscf = cscfp[p->server < cmcf->servers.nelts ? p->server : 0];

    /*
     * A real descriptor nobody polls: whatever path closes the connection
     * (ours, or nginx's terminate path) closes it cleanly.
     */
    fd = ngx_open_file("/dev/null", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    c = ngx_get_connection((ngx_socket_t) fd, cycle->log);
    if (c == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    cpool = ngx_create_pool(1024, cycle->log);
    if (cpool == NULL) {
        goto failed_conn;
    }

    c->pool = cpool;

    log = ngx_pcalloc(cpool, sizeof(ngx_log_t));
    lctx = ngx_pcalloc(cpool, sizeof(ngx_http_log_ctx_t));
    if (log == NULL || lctx == NULL) {
        goto failed_conn;
    }

    *log = *cycle->log;
    log->handler = NULL;
    log->data = lctx;
    log->action = "retrying an x402 settlement";
    lctx->connection = c;

    c->log = log;
    c->log_error = NGX_ERROR_INFO;
    c->read->log = log;
    c->write->log = log;
    /* never registered with epoll: nobody may try to add them */
    c->read->active = 1;
    c->write->active = 1;
    /*
     * but nginx may put timers on them: ngx_http_finalize_connection()
     * adds lingering_timeout to c->read while the settle is in flight
     */
    c->read->handler = ngx_http_empty_handler;
    c->write->handler = ngx_http_empty_handler;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    c->requests = 1;
    c->start_time = ngx_current_msec;

#if (NGX_STAT_STUB)
    /* ngx_http_close_connection() takes it off again */
    (void) ngx_atomic_fetch_add(ngx_stat_active, 1);
#endif

    pool = ngx_create_pool(cscf->request_pool_size, log);
    if (pool == NULL) {
        goto failed_conn;
    }

    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    if (r == NULL) {
        ngx_destroy_pool(pool);
        goto failed_conn;
    }

    r->pool = pool;
    r->signature = NGX_HTTP_MODULE;
    r->connection = c;
    r->main = r;
    r->count = 1;
    r->main_conf = cscf->ctx->main_conf;
    r->srv_conf = cscf->ctx->srv_conf;
    r->loc_conf = cscf->ctx->loc_conf;

    r->ctx = ngx_pcalloc(pool, sizeof(void *) * ngx_http_max_module);
    r->variables = ngx_pcalloc(pool, cmcf->variables.nelts
                                     * sizeof(ngx_http_variable_value_t));
    rt = ngx_alloc(sizeof(ngx_http_x402_retry_t), cycle->log);

    if (r->ctx == NULL || r->variables == NULL || rt == NULL) {
        if (rt) {
            ngx_free(rt);
            rt = NULL;
        }

        goto failed_req;
    }

    ngx_memzero(rt, sizeof(ngx_http_x402_retry_t));
    ngx_memcpy(rt->id, p->id, 32);
    rt->attempts = p->attempts;
    rt->valid_before = p->valid_before;
    rt->scope = p->scope;
    rt->expire = p->expire;
    rt->redis = p->redis;
    rt->r = r;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ngx_free(rt);
        rt = NULL;
        goto failed_req;
    }

    cln->handler = ngx_http_x402_retry_gone;
    cln->data = rt;

    if (ngx_list_init(&r->headers_out.headers, pool, 1,
                      sizeof(ngx_table_elt_t))
        != NGX_OK
        || ngx_list_init(&r->headers_in.headers, pool, 2,
                         sizeof(ngx_table_elt_t))
           != NGX_OK)
    {
        goto failed_req;
    }

    data = ngx_pnalloc(pool, p->uri_len + p->body_len);
    if (data == NULL) {
        goto failed_req;
    }

    ngx_memcpy(data, p->data, p->uri_len + p->body_len);

    rt->sent.data = data + p->uri_len;
    rt->sent.len = p->body_len;

    uri.data = data;
    uri.len = p->uri_len;

    r->uri = uri;
    r->unparsed_uri = uri;
    r->method = NGX_HTTP_POST;
    r->method_name = ngx_http_x402_post_method;
    r->http_version = NGX_HTTP_VERSION_11;
    ngx_str_set(&r->http_protocol, "HTTP/1.1");
    ngx_str_set(&r->request_line, "POST x402-settlement-retry HTTP/1.1");
    ngx_str_set(&r->schema, "http");
    r->headers_in.content_length_n = p->body_len;
    r->headers_in.keep_alive_n = -1;
    r->uri_changes = NGX_HTTP_MAX_URI_CHANGES + 1;
    r->subrequests = NGX_HTTP_MAX_SUBREQUESTS + 1;
    r->http_state = NGX_HTTP_PROCESS_REQUEST_STATE;
    r->discard_body = 1;
    r->logged = 1;                  /* not an access-log entry */
    r->start_sec = ngx_time();
    r->start_msec = ((ngx_time_t *) ngx_timeofday())->msec;
    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_x402_retry_finish;

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        goto failed_req;
    }

    h->key = ngx_http_x402_content_type;
    h->value = ngx_http_x402_json;
    h->lowcase_key = (u_char *) "content-type";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    r->headers_in.content_type = h;

    c->data = r;
    lctx->request = r;
    lctx->current_request = r;

    ps = ngx_palloc(pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        goto failed_req;
    }

    ps->handler = ngx_http_x402_retry_post;
    ps->data = rt;

    if (ngx_http_subrequest(r, &uri, NULL, &sr, ps,
                            NGX_HTTP_SUBREQUEST_IN_MEMORY
                            |NGX_HTTP_SUBREQUEST_WAITED)
        != NGX_OK)
    {
        goto failed_req;
    }

    /* the stored body, POSTed as is */
    b = ngx_calloc_buf(pool);
    cl = ngx_alloc_chain_link(pool);
    sr->request_body = ngx_pcalloc(pool, sizeof(ngx_http_request_body_t));

    if (b == NULL || cl == NULL || sr->request_body == NULL) {
        goto failed_req;
    }

    b->start = data + p->uri_len;
    b->pos = b->start;
    b->last = b->start + p->body_len;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    cl->buf = b;
    cl->next = NULL;

    sr->request_body->bufs = cl;
    sr->method = NGX_HTTP_POST;
    sr->method_name = r->method_name;
    sr->header_only = 0;

    *prt = rt;

    return NGX_OK;

failed_req:

    if (rt) {
        /* the caller reports this attempt; the cleanup only frees rt */
        rt->finished = 1;
    }

    ngx_http_free_request(r, 0);

failed_conn:

    ngx_http_close_connection(c);

    return NGX_ERROR;
}


ngx_int_t
ngx_http_x402_retry_post(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    ngx_http_x402_retry_t  *rt = data;

    ngx_buf_t  *b;

    if (rt->finished) {
        return rc;
    }

    if (rc == NGX_ERROR || sr->connection->error) {
        rt->got_response = 0;
        return rc;
    }

    rt->got_response = 1;
    rt->status = sr->headers_out.status;

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* nginx's own error (502, 504): its error page comes next */
        rt->status = rc;
    }

    if (sr->out && sr->out->buf) {
        b = sr->out->buf;
        rt->body.data = b->pos;
        rt->body.len = b->last - b->pos;

    } else {
        ngx_str_null(&rt->body);
    }

    return rc;
}


/* the fake request's write handler: its subrequest is done */
static void
ngx_http_x402_retry_finish(ngx_http_request_t *r)
{
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

    ngx_http_x402_retry_report(rt, c->log);

    /* frees rt through the cleanup */
    ngx_http_free_request(r, 0);
    ngx_http_close_connection(c);
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

    ngx_free(rt);
}


static void *
ngx_http_x402_retry_alloc(void *pool, size_t size)
{
    return ngx_palloc(pool, size);
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
    ngx_http_x402_store_op_t    op;

    rt->finished = 1;

    if (ngx_http_x402_store_zone == NULL) {
        return;
    }

    if (!rt->got_response || rt->status == 0) {
        ngx_str_set(&text, "facilitator unreachable");
        ngx_http_x402_shm_pending_done(ngx_http_x402_store_zone, rt->id,
                                       NGX_HTTP_X402_SETTLE_RETRY, &text,
                                       log);
        return;
    }

    pool = rt->r ? rt->r->pool : NULL;

    if (pool == NULL) {
        ngx_str_set(&text, "no memory");
        ngx_http_x402_shm_pending_done(ngx_http_x402_store_zone, rt->id,
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
        ngx_http_x402_shm_pending_done(ngx_http_x402_store_zone, rt->id,
                                       NGX_HTTP_X402_SETTLE_OK, &text, log);

        if (rt->redis) {
            /* the fleet learns it too (grants elsewhere) */
            ngx_memzero(&op, sizeof(ngx_http_x402_store_op_t));
            ngx_memcpy(op.id, rt->id, 32);
            op.scope = rt->scope;
            op.expire = rt->expire;
            op.settled_at = ngx_time();
            ngx_http_x402_redis_set(&op, NGX_HTTP_X402_REC_SETTLED, &text);
        }

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

    if (outcome == X402_FAC_REFUSED) {
        ngx_http_x402_shm_pending_done(ngx_http_x402_store_zone, rt->id,
                                       NGX_HTTP_X402_SETTLE_REFUSED, &text,
                                       log);

        if (rt->redis) {
            ngx_memzero(&op, sizeof(ngx_http_x402_store_op_t));
            ngx_memcpy(op.id, rt->id, 32);
            op.scope = rt->scope;
            op.expire = rt->expire;
            ngx_http_x402_redis_set(&op, NGX_HTTP_X402_REC_FAILED, &text);
        }

        return;
    }

    ngx_http_x402_shm_pending_done(ngx_http_x402_store_zone, rt->id,
                                   NGX_HTTP_X402_SETTLE_RETRY, &text, log);
}

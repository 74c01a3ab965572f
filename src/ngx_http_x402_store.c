
/*
 * ngx_http_x402_store.c: the authorization store's operation API
 * (ngx_http_x402_store.h; src/README.md, layer 4): every reservation is
 * taken in the shared-memory zone first (microseconds, no I/O; catches
 * replays on this host, and keeps protecting it when Redis loses data),
 * then, with x402_redis, in Redis (one round trip, atomic server-side
 * script) so that a fleet shares it. Its directives, variables and worker
 * start are in ngx_http_x402_store_module.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_x402_module.h"
#include "ngx_http_x402_store_int.h"


static void ngx_http_x402_store_cleanup(void *data);
static void ngx_http_x402_store_resume(ngx_event_t *ev);
static ngx_int_t ngx_http_x402_store_unavailable(ngx_http_x402_store_op_t *op,
    ngx_log_t *log);
static void ngx_http_x402_store_distrusted(ngx_http_x402_store_op_t *op,
    ngx_http_x402_store_main_conf_t *smcf, ngx_log_t *log);
static ngx_int_t ngx_http_x402_store_reserve_op(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op, const x402_verdict_t *v,
    time_t max_timeout);
static time_t ngx_http_x402_store_expire(ngx_http_x402_store_op_t *op,
    time_t from, time_t keep);


static ngx_int_t
ngx_http_x402_hex_decode(u_char *dst, const char *src, size_t len)
{
    u_char      c, v;
    ngx_uint_t  i;

    for (i = 0; i < len; i++) {
        c = (u_char) src[i];

        if (c >= '0' && c <= '9') {
            v = c - '0';

        } else {
            c |= 0x20;

            if (c >= 'a' && c <= 'f') {
                v = c - 'a' + 10;

            } else {
                return NGX_ERROR;
            }
        }

        if (i & 1) {
            dst[i / 2] |= v;

        } else {
            dst[i / 2] = (u_char) (v << 4);
        }
    }

    return NGX_OK;
}


/*
 * The scope a grant is valid for: the virtual host (the server block's
 * first server_name, and the host name asked for), the location and what
 * was paid there (network, asset, payTo, amount). A 64-bit digest of those
 * strings. Names, not configuration pointers or listen addresses: the
 * scope holds across reloads and across a fleet sharing Redis.
 */
/*
 * A worker's last scopes, by the bytes they hash: a location's are the
 * same at every request (only a Host or an offer differs), and a Keccak
 * is 5-6k instructions of the request path.
 */
#define NGX_HTTP_X402_SCOPE_CACHE      4
#define NGX_HTTP_X402_SCOPE_CACHE_LEN  512

typedef struct {
    uint64_t  scope;
    size_t    len;
    u_char    data[NGX_HTTP_X402_SCOPE_CACHE_LEN];
} ngx_http_x402_scope_cache_t;

static ngx_http_x402_scope_cache_t
    ngx_http_x402_scope_cache[NGX_HTTP_X402_SCOPE_CACHE];
static ngx_uint_t  ngx_http_x402_scope_next;


static uint64_t
ngx_http_x402_store_scope(ngx_http_request_t *r, const x402_verdict_t *v)
{
    u_char                       *p, *buf, stack[NGX_HTTP_X402_SCOPE_CACHE_LEN];
    size_t                        len;
    uint64_t                      scope;
    ngx_uint_t                    i;
    unsigned char                 md[32];
    ngx_http_core_srv_conf_t     *cscf;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_x402_scope_cache_t  *c;

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    len = cscf->server_name.len + r->headers_in.server.len + clcf->name.len
          + v->network.len + v->asset.len + v->pay_to.len + v->value.len + 7;

    if (len <= NGX_HTTP_X402_SCOPE_CACHE_LEN) {
        buf = stack;

    } else {
        buf = ngx_pnalloc(r->pool, len);
        if (buf == NULL) {
            return 0;
        }
    }

    /* NUL separators: no two field lists hash the same bytes */
    p = ngx_cpymem(buf, cscf->server_name.data, cscf->server_name.len);
    *p++ = '\0';
    p = ngx_cpymem(p, r->headers_in.server.data, r->headers_in.server.len);
    *p++ = '\0';
    p = ngx_cpymem(p, clcf->name.data, clcf->name.len);
    *p++ = '\0';
    p = ngx_cpymem(p, v->network.data, v->network.len);
    *p++ = '\0';
    p = ngx_cpymem(p, v->asset.data, v->asset.len);
    *p++ = '\0';
    p = ngx_cpymem(p, v->pay_to.data, v->pay_to.len);
    *p++ = '\0';
    p = ngx_cpymem(p, v->value.data, v->value.len);
    *p++ = '\0';

    if (buf == stack) {
        for (i = 0; i < NGX_HTTP_X402_SCOPE_CACHE; i++) {
            c = &ngx_http_x402_scope_cache[i];

            if (c->len == len && ngx_memcmp(c->data, buf, len) == 0) {
                return c->scope;
            }
        }
    }

    x402_keccak256(buf, p - buf, md);
    ngx_memcpy(&scope, md, sizeof(uint64_t));

    if (buf == stack) {
        c = &ngx_http_x402_scope_cache[ngx_http_x402_scope_next++
                                       % NGX_HTTP_X402_SCOPE_CACHE];
        c->scope = scope;
        c->len = len;
        ngx_memcpy(c->data, buf, len);
    }

    return scope;
}


/*
 * When a record may go: the server's window (maxTimeoutSeconds + margin, or
 * the grant when longer) from `from`, or validBefore + slack if sooner.
 * validBefore is a client's number: it only ever shortens the life.
 */
static time_t
ngx_http_x402_store_expire(ngx_http_x402_store_op_t *op, time_t from,
    time_t keep)
{
    time_t  end;

    end = from + ngx_max(op->window, keep);

    if (op->valid_before < end - NGX_HTTP_X402_EXPIRE_SLACK) {
        end = op->valid_before + NGX_HTTP_X402_EXPIRE_SLACK;
    }

    return end;
}


ngx_int_t
ngx_http_x402_store_op_reserve(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op, const x402_verdict_t *v, time_t max_timeout)
{
    ngx_int_t  rc;

    ngx_http_x402_timing_start();

    rc = ngx_http_x402_store_reserve_op(r, op, v, max_timeout);

    ngx_http_x402_timing_end(NGX_HTTP_X402_T_RESERVE);

    return rc;
}


static ngx_int_t
ngx_http_x402_store_reserve_op(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op, const x402_verdict_t *v, time_t max_timeout)
{
    ngx_int_t                         rc;
    ngx_pool_cleanup_t               *cln;
    ngx_http_x402_store_loc_conf_t   *slcf;
    ngx_http_x402_store_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_x402_store_module);
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_x402_store_module);

    if (smcf == NULL || smcf->zone == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: no authorization store");
        return NGX_ERROR;
    }

    if (op->cleanup_set) {
        /* a second reservation on one op would orphan the first */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "x402: payment reserved twice in one request");
        return NGX_ERROR;
    }

    ngx_memzero(op, sizeof(ngx_http_x402_store_op_t));

    if (ngx_strlen(v->payment_id) != 64
        || ngx_http_x402_hex_decode(op->id, v->payment_id, 64) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "x402: malformed payment id");
        return NGX_ERROR;
    }

    /*
     * validBefore is a uint256 the client chose (the core saturates it at
     * UINT64_MAX): clamped here far below any sum that could overflow.
     */
    if (v->valid_before > (uint64_t) NGX_MAX_INT32_VALUE * 4) {
        op->valid_before = (time_t) NGX_MAX_INT32_VALUE * 4;

    } else {
        op->valid_before = (time_t) v->valid_before;
    }

    if (max_timeout <= 0 || max_timeout > 86400) {
        max_timeout = 86400;
    }

    op->window = max_timeout + NGX_HTTP_X402_WINDOW_MARGIN;
    op->grant = (slcf->grant > 0) ? slcf->grant : 0;
    op->expire = ngx_http_x402_store_expire(op, ngx_time(), 0);
    op->scope = ngx_http_x402_store_scope(r, v);
    op->request = r;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_x402_store_cleanup;
    cln->data = op;
    op->cleanup_set = 1;

    ngx_http_set_ctx(r, op, ngx_http_x402_store_module);

    ngx_http_x402_shm_reserve(smcf->zone, op, slcf->grant,
                              r->connection->log);

    op->backend = NGX_HTTP_X402_BACKEND_ZONE;

    if (op->result != NGX_HTTP_X402_STORE_FRESH || smcf->redis == NULL) {
        return NGX_OK;
    }

    /* the zone let it through: now the fleet */

    op->done = 0;
    op->resume.handler = ngx_http_x402_store_resume;
    op->resume.data = op;
    op->resume.log = r->connection->log;

    rc = ngx_http_x402_redis_reserve(op);

    if (rc == NGX_AGAIN) {
        /*
         * Notice a client that goes away meanwhile (as limit_req's delay
         * does): the request is finalized, its pool cleanup detaches the
         * command, and the reply finds no request.
         */
        r->read_event_handler = ngx_http_test_reading;
        return NGX_AGAIN;
    }

    return ngx_http_x402_store_unavailable(op, r->connection->log);
}


/* Redis could not be asked: the configured fail mode decides. */
static ngx_int_t
ngx_http_x402_store_unavailable(ngx_http_x402_store_op_t *op, ngx_log_t *log)
{
    ngx_http_x402_store_main_conf_t  *smcf;

    static time_t  logged;

    smcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_x402_store_module);

    if (smcf->redis->fail_open) {
        /* the zone's reservation stands: replay-proof on this host */
        op->fallback = 1;
        op->result = NGX_HTTP_X402_STORE_FRESH;

        if (ngx_time() < smcf->zone->sh->distrust_until) {
            /* it lost its data lately: see ngx_http_x402_store_distrusted */
            op->verify_forced = 1;
        }

        ngx_http_x402_shm_set(smcf->zone, op, NGX_HTTP_X402_REC_RESERVED,
                              NULL);
        (void) ngx_atomic_fetch_add(
                          &smcf->zone->sh->counters.redis_fallback, 1);

        if (logged != ngx_time()) {
            logged = ngx_time();
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "x402: redis unavailable, fail=open: payment "
                          "recorded in the local zone only");
        }

    } else {
        ngx_http_x402_shm_delete(smcf->zone, op->id);
        op->reserved = 0;
        op->result = NGX_HTTP_X402_STORE_UNAVAILABLE;
        ngx_str_set(&op->reason, "authorization store unavailable");
        (void) ngx_atomic_fetch_add(
                          &smcf->zone->sh->counters.redis_refused, 1);

        if (logged != ngx_time()) {
            logged = ngx_time();
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "x402: redis unavailable, fail=closed: payment "
                          "refused with 503");
        }
    }

    op->done = 1;

    return NGX_OK;
}


/*
 * A payment Redis says it never saw, while Redis cannot vouch for that
 * (it lost its data less than the longest record life ago): fail=closed
 * refuses it (503), fail=open serves it as when Redis is away, and has it
 * verified by the facilitator (a settled payment's nonce is used on chain).
 * Either way the Redis reservation stays for the fleet to see... unless
 * refused, then it is taken back.
 */
static void
ngx_http_x402_store_distrusted(ngx_http_x402_store_op_t *op,
    ngx_http_x402_store_main_conf_t *smcf, ngx_log_t *log)
{
    static time_t  logged;

    ngx_http_x402_count(smcf->zone->sh, redis_distrusted, 1);

    if (smcf->redis->fail_open) {
        op->verify_forced = 1;

    } else {
        ngx_http_x402_redis_release(op);
        ngx_http_x402_shm_delete(smcf->zone, op->id);
        op->reserved = 0;
        op->result = NGX_HTTP_X402_STORE_UNAVAILABLE;
        ngx_str_set(&op->reason, "authorization store lost its data lately");
    }

    if (logged != ngx_time()) {
        logged = ngx_time();
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "x402: redis lost its data %T s ago or less and cannot "
                      "vouch for a payment it has not seen: %s",
                      smcf->redis->horizon,
                      smcf->redis->fail_open
                      ? "fail=open, verified by the facilitator"
                      : "fail=closed, refused with 503");
    }
}


/* The reply to a reservation sent to Redis, from the hiredis callback. */
void
ngx_http_x402_store_redis_done(ngx_http_x402_store_op_t *op, ngx_int_t rc,
    ngx_str_t *value)
{
    time_t                            now, settled_at, expire, grant;
    uint64_t                          scope;
    ngx_str_t                         text;
    ngx_uint_t                        state;
    ngx_log_t                        *log;
    ngx_http_request_t               *r;
    ngx_http_x402_store_loc_conf_t   *slcf;
    ngx_http_x402_store_main_conf_t  *smcf;

    r = op->request;
    log = r->connection->log;
    op->pending = NULL;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_x402_store_module);

    if (rc != NGX_OK) {
        (void) ngx_http_x402_store_unavailable(op, log);

        if (rc == NGX_DECLINED && op->result == NGX_HTTP_X402_STORE_FRESH) {
            /* it has just forgotten: as in ngx_http_x402_store_distrusted */
            op->verify_forced = 1;
        }

        goto resume;
    }

    if (value->len == 0) {
        /* SET NX took: the fleet has never seen this payment */
        op->backend = NGX_HTTP_X402_BACKEND_REDIS;
        op->result = NGX_HTTP_X402_STORE_FRESH;
        op->done = 1;

        if (ngx_time() < smcf->zone->sh->distrust_until) {
            /*
             * ...or Redis lost its data lately and forgot that it has:
             * until every record made before the loss has expired, it
             * cannot vouch. Replays it refuses stay refused.
             */
            ngx_http_x402_store_distrusted(op, smcf, log);
        }

        goto resume;
    }

    if (ngx_http_x402_store_parse_value(value, &state, &scope, &settled_at,
                                        &expire, &text)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "x402: malformed record in redis: \"%V\"", value);
        (void) ngx_atomic_fetch_add(&smcf->zone->sh->counters.redis_errors,
                                    1);
        (void) ngx_http_x402_store_unavailable(op, log);
        goto resume;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_x402_store_module);
    grant = slcf->grant;
    now = ngx_time();

    if (ngx_http_x402_grant_applies(state, scope, settled_at, op->scope,
                                    op->valid_before, grant, now))
    {
        op->result = NGX_HTTP_X402_STORE_REUSED;
        op->settled_at = settled_at;
        text.len = ngx_min(text.len, NGX_HTTP_X402_REC_TEXT_LEN);
        ngx_memcpy(op->text, text.data, text.len);
        op->tx.data = op->text;
        op->tx.len = text.len;

        /* remember it here too: the next reuse costs no round trip */
        ngx_http_x402_shm_set(smcf->zone, op, NGX_HTTP_X402_REC_SETTLED,
                              &op->tx);
        op->reserved = 0;
        (void) ngx_atomic_fetch_add(&smcf->zone->sh->counters.reused, 1);

    } else {
        op->result = NGX_HTTP_X402_STORE_REPLAYED;

        if (state == NGX_HTTP_X402_REC_FAILED) {
            text.len = ngx_min(text.len, NGX_HTTP_X402_REC_TEXT_LEN);
            ngx_memcpy(op->text, text.data, text.len);
            op->reason.data = op->text;
            op->reason.len = text.len;

        } else if (state == NGX_HTTP_X402_REC_SETTLED) {
            ngx_str_set(&op->reason, "payment already settled");

        } else {
            ngx_str_set(&op->reason, "payment already in use");
        }

        ngx_http_x402_shm_delete(smcf->zone, op->id);
        op->reserved = 0;
        (void) ngx_atomic_fetch_add(&smcf->zone->sh->counters.replayed, 1);
    }

    op->done = 1;

resume:

    /* not from inside hiredis: finalizing could re-enter it */
    ngx_post_event(&op->resume, &ngx_posted_events);
}


static void
ngx_http_x402_store_resume(ngx_event_t *ev)
{
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_x402_store_op_t  *op;

    op = ev->data;
    r = op->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "x402 store resume: result %ui", op->result);

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler(r);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_x402_store_cleanup(void *data)
{
    ngx_http_x402_store_op_t  *op = data;

    if (op->resume.posted) {
        ngx_delete_posted_event(&op->resume);

        /*
         * Redis answered, but the request ended before it could act on
         * the answer (the client's hang-up came in the same event batch
         * as the reply): nothing was served, the reservation goes, as
         * when the request leaves before the answer.
         */
        if (op->reserved && op->result == NGX_HTTP_X402_STORE_FRESH
            && op->request)
        {
            ngx_http_x402_store_op_release(op->request, op);
        }
    }

    if (op->pending) {
        /*
         * Gone while Redis had not answered: nothing was served. The
         * command stays with hiredis, its reply finds no request and
         * takes the Redis reservation back; the local one goes now.
         */
        ngx_http_x402_redis_detach(op);

        if (op->reserved && ngx_http_x402_store_zone) {
            ngx_http_x402_shm_delete(ngx_http_x402_store_zone, op->id);
            op->reserved = 0;
        }
    }

    /*
     * A reservation that was neither settled nor released stays reserved
     * until it expires: whatever happened to the request, the payment is
     * not served twice.
     */
    op->request = NULL;
}


void
ngx_http_x402_store_op_settled(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op, ngx_str_t *tx)
{
    ngx_http_x402_store_main_conf_t  *smcf;

    ngx_http_x402_timing_start();

    if (!op->reserved) {
        return;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_x402_store_module);

    op->settled_at = ngx_time();
    /* a grant keeps it for its length; else the server's window */
    op->expire = ngx_http_x402_store_expire(op, op->settled_at, op->grant);
    ngx_http_x402_shm_set(smcf->zone, op, NGX_HTTP_X402_REC_SETTLED, tx);
    ngx_http_x402_count(smcf->zone->sh, settled, 1);

    if (op->backend == NGX_HTTP_X402_BACKEND_REDIS) {
        ngx_http_x402_redis_set(op, NGX_HTTP_X402_REC_SETTLED, tx);
    }

    op->reserved = 0;

    ngx_http_x402_timing_end(NGX_HTTP_X402_T_SETTLED);
}


void
ngx_http_x402_store_op_failed(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op, ngx_str_t *reason)
{
    ngx_http_x402_store_main_conf_t  *smcf;

    if (!op->reserved) {
        return;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_x402_store_module);

    /* nothing was served: evictable, and kept no longer than the window */
    op->expire = ngx_http_x402_store_expire(op, ngx_time(), 0);
    ngx_http_x402_shm_set(smcf->zone, op, NGX_HTTP_X402_REC_FAILED, reason);
    ngx_http_x402_count(smcf->zone->sh, failed, 1);

    if (op->backend == NGX_HTTP_X402_BACKEND_REDIS) {
        ngx_http_x402_redis_set(op, NGX_HTTP_X402_REC_FAILED, reason);
    }

    op->reserved = 0;
}


void
ngx_http_x402_store_op_release(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op)
{
    ngx_http_x402_store_main_conf_t  *smcf;

    if (!op->reserved || op->async) {
        return;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_x402_store_module);

    ngx_http_x402_shm_delete(smcf->zone, op->id);
    ngx_http_x402_count(smcf->zone->sh, released, 1);

    if (op->backend == NGX_HTTP_X402_BACKEND_REDIS) {
        ngx_http_x402_redis_release(op);
    }

    op->reserved = 0;
}


ngx_int_t
ngx_http_x402_store_op_async_begin(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op, ngx_str_t *uri, ngx_str_t *body)
{
    uint64_t                          server;
    ngx_int_t                         rc;
    ngx_http_core_srv_conf_t         *cscf;
    ngx_http_core_main_conf_t        *cmcf;
    ngx_http_x402_store_main_conf_t  *smcf;

    if (!op->reserved || op->async) {
        return NGX_ERROR;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_x402_store_module);

    if (smcf->async_limit == 0
        || uri->len > NGX_HTTP_X402_ASYNC_URI_MAX
        || body->len > NGX_HTTP_X402_ASYNC_BODY_MAX)
    {
        ngx_http_x402_count(smcf->zone->sh, async_sync, 1);
        return NGX_DECLINED;
    }

    /*
     * The retry is issued in a server using the facilitator the uri
     * names: this one, found again by its key in a later configuration
     */
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);
    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
    server = ngx_http_x402_background_server_key(cmcf, cscf);

    rc = ngx_http_x402_shm_pending_add(smcf->zone, op, smcf->async_limit,
                                       server, uri, body,
                                       r->connection->log);

    if (rc == NGX_OK) {
        op->async = 1;

        if (smcf->redis) {
            /* the fleet's durable copy; the spool has it meanwhile */
            ngx_http_x402_redis_queue_owe(smcf->zone, op, server, uri, body);
        }
    }

    return rc;
}


/*
 * No request here: the first attempt runs after its client request may
 * have ended (retry.c), from a copy of the op made when it was queued.
 */
void
ngx_http_x402_store_op_async_end(ngx_http_x402_store_op_t *op,
    ngx_uint_t outcome, ngx_str_t *text, ngx_log_t *log)
{
    if (!op->async || !op->reserved || ngx_http_x402_store_zone == NULL) {
        return;
    }

    ngx_http_x402_redis_queue_done(ngx_http_x402_store_zone, op->id, outcome,
                                   text, log);

    if (outcome == NGX_HTTP_X402_SETTLE_OK) {
        op->settled_at = ngx_time();
        op->expire = ngx_http_x402_store_expire(op, op->settled_at,
                                                op->grant);

        if (op->backend == NGX_HTTP_X402_BACKEND_REDIS) {
            ngx_http_x402_redis_set(op, NGX_HTTP_X402_REC_SETTLED, text);
        }

        op->reserved = 0;

    } else if (outcome == NGX_HTTP_X402_SETTLE_REFUSED) {
        /* final; served on credit, so kept (not evictable) for the window */
        op->expire = ngx_http_x402_store_expire(op, ngx_time(), 0);

        if (op->backend == NGX_HTTP_X402_BACKEND_REDIS) {
            ngx_http_x402_redis_set(op, NGX_HTTP_X402_REC_FAILED, text);
        }

        op->reserved = 0;
    }
}


ngx_http_x402_store_counters_t *
ngx_http_x402_store_counters(ngx_http_request_t *r)
{
    ngx_http_x402_store_main_conf_t  *smcf;

    if (r) {
        smcf = ngx_http_get_module_main_conf(r, ngx_http_x402_store_module);

    } else {
        smcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_http_x402_store_module);
    }

    if (smcf == NULL || smcf->zone == NULL || smcf->zone->sh == NULL) {
        return NULL;
    }

    return &smcf->zone->sh->counters;
}


/*
 * Redis record: "<state>|<scope hex16>|<settled_at>|<expire>|<text>", state
 * R (reserved: text is the owner token), S (settled: tx), F (failed: reason).
 */
ngx_uint_t
ngx_http_x402_store_parse_value(ngx_str_t *value, ngx_uint_t *state,
    uint64_t *scope, time_t *settled_at, time_t *expire, ngx_str_t *text)
{
    u_char  *p, *last, *f;
    u_char   buf[8];

    p = value->data;
    last = p + value->len;

    if (value->len < 2 + 16 + 1 + 1 + 1 + 1 + 1 || p[1] != '|') {
        return NGX_ERROR;
    }

    switch (p[0]) {
    case 'R':
        *state = NGX_HTTP_X402_REC_RESERVED;
        break;
    case 'S':
        *state = NGX_HTTP_X402_REC_SETTLED;
        break;
    case 'F':
        *state = NGX_HTTP_X402_REC_FAILED;
        break;
    default:
        return NGX_ERROR;
    }

    p += 2;

    if (p[16] != '|'
        || ngx_http_x402_hex_decode(buf, (char *) p, 16) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(scope, buf, 8);
    p += 17;

    f = ngx_strlchr(p, last, '|');
    if (f == NULL) {
        return NGX_ERROR;
    }

    *settled_at = ngx_atotm(p, f - p);
    if (*settled_at == NGX_ERROR) {
        return NGX_ERROR;
    }

    p = f + 1;

    f = ngx_strlchr(p, last, '|');
    if (f == NULL) {
        return NGX_ERROR;
    }

    *expire = ngx_atotm(p, f - p);
    if (*expire == NGX_ERROR) {
        return NGX_ERROR;
    }

    text->data = f + 1;
    text->len = last - (f + 1);

    return NGX_OK;
}


/*
 * Copyright (C) ngx_http_x402_module authors
 *
 * ngx_http_x402_redis_conn.c: hiredis (0.14) async on nginx's event loop
 * (src/README.md, layer 2). It knows nothing of records: the record
 * protocol (ngx_http_x402_redis.c) sends its commands on
 * ngx_http_x402_redis_conn.ac and is called back through the two handlers
 * it gave at init, for a new connection and for a connection ready.
 *
 * One connection per worker. hiredis's socket is wrapped in an nginx
 * connection (ngx_get_connection) and its addRead/delRead/addWrite/delWrite/
 * cleanup hooks become nginx event calls. What hiredis 0.14 lacks is added
 * here: the address is resolved at configuration time (no getaddrinfo on a
 * name in a worker), an nginx timer bounds the connect, a stalled server is
 * dropped and reconnected with backoff on a cancelable timer, and under
 * edge-triggered events the socket is drained.
 *
 * Commands are not written one by one: a command queued on a ready
 * connection posts one flush event, which nginx runs after the events of
 * this iteration (ngx_posted_events), so every command the iteration's
 * requests queued leaves in one write, and Redis reads and answers them as
 * one pipeline. Only a write the socket cannot take whole waits for the
 * write event. A command nobody waits for (queued with queue_lazily set:
 * the settled record) posts nothing: it leaves with the next flush, the
 * next payment's reserve under load, or after NGX_HTTP_X402_REDIS_LAZY_MS;
 * Redis then reads one batch per payment, not two. Before each write the
 * protocol's writing() hook may add a last command (the epoch record's
 * GET that answers for every reserve of the batch).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/ioctl.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_http_x402_store_int.h"


#define NGX_HTTP_X402_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_X402_REDIS_BACKOFF_MAX  2000
#define NGX_HTTP_X402_REDIS_LAZY_MS      5


static void ngx_http_x402_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_http_x402_redis_connect_timeout(ngx_event_t *ev);
static void ngx_http_x402_redis_read_handler(ngx_event_t *ev);
static void ngx_http_x402_redis_write_handler(ngx_event_t *ev);
static void ngx_http_x402_redis_flush_handler(ngx_event_t *ev);
static void ngx_http_x402_redis_write(ngx_http_x402_redis_conn_t *rd);
static void ngx_http_x402_redis_add_read(void *privdata);
static void ngx_http_x402_redis_del_read(void *privdata);
static void ngx_http_x402_redis_add_write(void *privdata);
static void ngx_http_x402_redis_del_write(void *privdata);
static void ngx_http_x402_redis_cleanup(void *privdata);
static void ngx_http_x402_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_x402_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_http_x402_redis_setup_reply(redisAsyncContext *ac,
    void *reply, void *privdata);


ngx_http_x402_redis_conn_t  ngx_http_x402_redis_conn;

/* set while the protocol adds to a write about to be made: no flush */
static ngx_uint_t  ngx_http_x402_redis_adding;


/*
 * The worker's connection to rcf; connecting() queues the first commands
 * of every new connection (after AUTH and SELECT), ready() runs when one
 * is established. Non-blocking: the worker serves while this connects.
 */

void
ngx_http_x402_redis_conn_init(ngx_cycle_t *cycle,
    ngx_http_x402_redis_conf_t *rcf, void (*connecting)(void),
    void (*ready)(void))
{
    ngx_http_x402_redis_conn_t  *rd;

    rd = &ngx_http_x402_redis_conn;

    ngx_memzero(rd, sizeof(ngx_http_x402_redis_conn_t));

    rd->conf = rcf;
    rd->log = cycle->log;
    rd->backoff = NGX_HTTP_X402_REDIS_BACKOFF_MIN;
    rd->connecting = connecting;
    rd->ready = ready;

    rd->reconnect.handler = ngx_http_x402_redis_reconnect_handler;
    rd->reconnect.data = rd;
    rd->reconnect.log = cycle->log;
    rd->reconnect.cancelable = 1;

    rd->connect_timer.handler = ngx_http_x402_redis_connect_timeout;
    rd->connect_timer.data = rd;
    rd->connect_timer.log = cycle->log;
    rd->connect_timer.cancelable = 1;

    rd->flush.handler = ngx_http_x402_redis_flush_handler;
    rd->flush.data = rd;
    rd->flush.log = cycle->log;

    rd->lazy.handler = ngx_http_x402_redis_flush_handler;
    rd->lazy.data = rd;
    rd->lazy.log = cycle->log;
    rd->lazy.cancelable = 1;

    ngx_http_x402_redis_connect();
}


void
ngx_http_x402_redis_conn_exit(void)
{
    ngx_http_x402_redis_conn_t  *rd;

    rd = &ngx_http_x402_redis_conn;

    rd->exiting = 1;

    if (rd->reconnect.timer_set) {
        ngx_del_timer(&rd->reconnect);
    }

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }

    if (rd->ac && rd->state == NGX_HTTP_X402_REDIS_READY) {
        /* what is still queued (a settled record, lazily) goes out */
        rd->flushing = 1;
        ngx_http_x402_redis_write(rd);
        rd->flushing = 0;
    }

    ngx_http_x402_redis_drop();

    rd->conf = NULL;
}


void
ngx_http_x402_redis_log_down(ngx_uint_t level, const char *what,
    const char *err)
{
    ngx_http_x402_redis_conn_t  *rd;

    rd = &ngx_http_x402_redis_conn;

    /* once a second at most: an outage must not flood the log */
    if (rd->conf == NULL || rd->logged == ngx_time()) {
        return;
    }

    rd->logged = ngx_time();

    if (rd->conf->unix_path.len) {
        ngx_log_error(level, rd->log, 0, "x402: redis unix:%V: %s%s%s",
                      &rd->conf->unix_path, what, err ? ": " : "",
                      err ? err : "");

    } else {
        ngx_log_error(level, rd->log, 0, "x402: redis %V:%d: %s%s%s",
                      &rd->conf->host, (int) rd->conf->port, what,
                      err ? ": " : "", err ? err : "");
    }
}


void
ngx_http_x402_redis_connect(void)
{
    ngx_connection_t       *c;
    redisAsyncContext      *ac;
    ngx_http_x402_redis_conn_t  *rd;

    rd = &ngx_http_x402_redis_conn;

    if (rd->exiting || rd->ac) {
        return;
    }

    /*
     * An IP literal or a unix path: hiredis's getaddrinfo() resolves
     * nothing, and the socket is non-blocking (EINPROGRESS).
     */
    if (rd->conf->unix_path.len) {
        ac = redisAsyncConnectUnix((char *) rd->conf->unix_path.data);

    } else {
        ac = redisAsyncConnect((char *) rd->conf->host.data,
                               (int) rd->conf->port);
    }

    if (ac == NULL) {
        ngx_http_x402_redis_log_down(NGX_LOG_ERR, "connect failed",
                                     "out of memory");
        ngx_http_x402_redis_schedule();
        return;
    }

    if (ac->err) {
        ngx_http_x402_redis_log_down(NGX_LOG_ERR, "connect failed",
                                     ac->errstr);
        redisAsyncFree(ac);
        ngx_http_x402_redis_schedule();
        return;
    }

    c = ngx_get_connection(ac->c.fd, rd->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_x402_redis_schedule();
        return;
    }

    c->data = rd;
    c->read->handler = ngx_http_x402_redis_read_handler;
    c->write->handler = ngx_http_x402_redis_write_handler;
    c->read->log = rd->log;
    c->write->log = rd->log;

    ac->data = rd;
    ac->ev.data = c;
    ac->ev.addRead = ngx_http_x402_redis_add_read;
    ac->ev.delRead = ngx_http_x402_redis_del_read;
    ac->ev.addWrite = ngx_http_x402_redis_add_write;
    ac->ev.delWrite = ngx_http_x402_redis_del_write;
    ac->ev.cleanup = ngx_http_x402_redis_cleanup;

    redisAsyncSetConnectCallback(ac, ngx_http_x402_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_http_x402_redis_disconnected);

    rd->ac = ac;
    rd->c = c;
    rd->state = NGX_HTTP_X402_REDIS_CONNECTING;

    /*
     * The connect completes with writability (hiredis's connect callback
     * setter asks for the write event already; this is idempotent).
     */
    ngx_http_x402_redis_add_write(c);

    if (!c->write->active) {
        ngx_http_x402_redis_drop();
        ngx_http_x402_redis_schedule();
        return;
    }

    ngx_add_timer(&rd->connect_timer, rd->conf->connect_timeout);

    /* queued before any command: hiredis sends them first, in order */
    if (rd->conf->password.len) {
        (void) redisAsyncCommand(ac, ngx_http_x402_redis_setup_reply,
                                 (void *) "AUTH", "AUTH %b",
                                 rd->conf->password.data,
                                 rd->conf->password.len);
    }

    if (rd->conf->db) {
        (void) redisAsyncCommand(ac, ngx_http_x402_redis_setup_reply,
                                 (void *) "SELECT", "SELECT %d",
                                 (int) rd->conf->db);
    }

    /* the protocol's first command on this connection (the epoch) */
    if (rd->connecting) {
        rd->connecting();
    }
}


void
ngx_http_x402_redis_schedule(void)
{
    ngx_http_x402_redis_conn_t  *rd;

    rd = &ngx_http_x402_redis_conn;

    rd->state = NGX_HTTP_X402_REDIS_DOWN;
    rd->was_down = 1;

    if (rd->exiting || rd->reconnect.timer_set) {
        return;
    }

    ngx_add_timer(&rd->reconnect, rd->backoff);

    rd->backoff *= 2;

    if (rd->backoff > NGX_HTTP_X402_REDIS_BACKOFF_MAX) {
        rd->backoff = NGX_HTTP_X402_REDIS_BACKOFF_MAX;
    }
}


/* Drops the connection: every queued command's callback gets NULL. */
void
ngx_http_x402_redis_drop(void)
{
    redisAsyncContext      *ac;
    ngx_http_x402_redis_conn_t  *rd;

    rd = &ngx_http_x402_redis_conn;

    ac = rd->ac;

    if (ac == NULL) {
        return;
    }

    rd->ac = NULL;
    rd->state = NGX_HTTP_X402_REDIS_DOWN;

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }

    redisAsyncFree(ac);
}


static void
ngx_http_x402_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_http_x402_redis_connect();
}


static void
ngx_http_x402_redis_connect_timeout(ngx_event_t *ev)
{
    ngx_http_x402_redis_log_down(NGX_LOG_ERR, "connect timed out", NULL);

    ngx_http_x402_redis_drop();
    ngx_http_x402_redis_schedule();
}


static void
ngx_http_x402_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_x402_redis_conn_t  *rd;

    rd = &ngx_http_x402_redis_conn;

    if (rd->connect_timer.timer_set) {
        ngx_del_timer(&rd->connect_timer);
    }

    if (status != REDIS_OK) {
        /* hiredis frees ac after this returns */
        ngx_http_x402_redis_log_down(NGX_LOG_ERR, "connect failed",
                                     ac->errstr);
        rd->ac = NULL;
        ngx_http_x402_redis_schedule();
        return;
    }

    rd->state = NGX_HTTP_X402_REDIS_READY;
    rd->backoff = NGX_HTTP_X402_REDIS_BACKOFF_MIN;

    if (rd->ready) {
        rd->ready();
    }

    if (rd->was_down) {
        rd->was_down = 0;
        rd->logged = 0;
        ngx_http_x402_redis_log_down(NGX_LOG_NOTICE, "connected again", NULL);

    } else {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "x402 redis connected");
    }
}


static void
ngx_http_x402_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_http_x402_redis_conn_t  *rd;

    rd = &ngx_http_x402_redis_conn;

    if (rd->ac != ac) {
        /* dropped by us: drop() already forgot it */
        if (!rd->exiting) {
            ngx_http_x402_redis_schedule();
        }

        return;
    }

    rd->ac = NULL;

    if (!rd->exiting) {
        ngx_http_x402_redis_log_down(NGX_LOG_ERR, "connection lost",
                                     status == REDIS_OK ? NULL : ac->errstr);
        ngx_http_x402_redis_schedule();
    }
}


static void
ngx_http_x402_redis_setup_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply  *rr = reply;

    if (rr == NULL) {
        return;
    }

    if (rr->type == REDIS_REPLY_ERROR) {
        ngx_http_x402_redis_log_down(NGX_LOG_ERR, (char *) privdata,
                                     rr->str);
        /* commands queued behind get errors: the fail mode applies */
        redisAsyncDisconnect(ac);
    }
}


static void
ngx_http_x402_redis_add_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_int_t  event;

    if (c->read->active) {
        return;
    }

    event = (ngx_event_flags & NGX_USE_CLEAR_EVENT) ? NGX_CLEAR_EVENT
                                                    : NGX_LEVEL_EVENT;

    if (ngx_add_event(c->read, NGX_READ_EVENT, event) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "x402: redis: adding a read event failed");
    }
}


static void
ngx_http_x402_redis_del_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_x402_redis_add_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_int_t                    event;
    ngx_http_x402_redis_conn_t  *rd;

    if (c->write->active || ngx_http_x402_redis_adding) {
        return;
    }

    rd = &ngx_http_x402_redis_conn;

    if (rd->state == NGX_HTTP_X402_REDIS_READY && !rd->flushing
        && rd->c == c)
    {
        if (rd->queue_lazily) {
            if (!rd->flush.posted && !rd->lazy.timer_set) {
                ngx_add_timer(&rd->lazy, NGX_HTTP_X402_REDIS_LAZY_MS);
            }

            return;
        }

        /* a command queued: written at the end of this iteration */
        if (!rd->flush.posted) {
            ngx_post_event(&rd->flush, &ngx_posted_events);
        }

        return;
    }

    event = (ngx_event_flags & NGX_USE_CLEAR_EVENT) ? NGX_CLEAR_EVENT
                                                    : NGX_LEVEL_EVENT;

    if (ngx_add_event(c->write, NGX_WRITE_EVENT, event) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "x402: redis: adding a write event failed");
    }
}


static void
ngx_http_x402_redis_del_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


/* hiredis closes the fd itself, right after this */
static void
ngx_http_x402_redis_cleanup(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_http_x402_redis_conn_t  *rd;

    rd = &ngx_http_x402_redis_conn;

    if (rd->c == c) {
        rd->c = NULL;

        if (rd->flush.posted) {
            ngx_delete_posted_event(&rd->flush);
        }

        if (rd->lazy.timer_set) {
            ngx_del_timer(&rd->lazy);
        }
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    ngx_free_connection(c);

    /* marks events still queued by epoll for this fd as stale */
    c->fd = (ngx_socket_t) -1;
}


static void
ngx_http_x402_redis_read_handler(ngx_event_t *ev)
{
    int                     n;
    ngx_socket_t            fd;
    ngx_connection_t       *c;
    redisAsyncContext      *ac;
    ngx_http_x402_redis_conn_t  *rd;

    ngx_http_x402_timing_start();

    c = ev->data;
    rd = &ngx_http_x402_redis_conn;
    ac = rd->ac;

    if (ac == NULL || rd->c != c) {
        return;
    }

    /* saved: the context (and c) may be gone after a read */
    fd = c->fd;

    for ( ;; ) {
        redisAsyncHandleRead(ac);

        if (rd->ac != ac) {
            break;
        }

        if (!(ngx_event_flags & NGX_USE_CLEAR_EVENT)) {
            break;
        }

        /*
         * Edge-triggered: hiredis reads 16k at a time, and what is left
         * in the socket would never raise another event.
         */
        if (ioctl(fd, FIONREAD, &n) == -1) {
            break;
        }

        if (n > 0) {
            continue;
        }

        if (ev->pending_eof) {
            /* read the EOF now: the peer is gone */
            ev->pending_eof = 0;
            continue;
        }

        break;
    }

    ngx_http_x402_timing_end(NGX_HTTP_X402_T_REDIS_READ);
}


static void
ngx_http_x402_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t       *c;
    ngx_http_x402_redis_conn_t  *rd;

    c = ev->data;
    rd = &ngx_http_x402_redis_conn;

    if (rd->ac == NULL || rd->c != c) {
        return;
    }

    ngx_http_x402_timing_start();

    ngx_http_x402_redis_write(rd);

    ngx_http_x402_timing_end(NGX_HTTP_X402_T_REDIS_WRITE);
}


/*
 * Every write goes through here: the protocol may queue one last command
 * first (the epoch record's GET answering for the reserves of the batch).
 * The commands it adds only go out with this write, as it is flushing.
 */
static void
ngx_http_x402_redis_write(ngx_http_x402_redis_conn_t *rd)
{
    if (rd->writing) {
        ngx_http_x402_redis_adding = 1;
        rd->writing();
        ngx_http_x402_redis_adding = 0;

        if (rd->ac == NULL) {
            return;
        }
    }

    redisAsyncHandleWrite(rd->ac);
}


static void
ngx_http_x402_redis_flush_handler(ngx_event_t *ev)
{
    ngx_http_x402_redis_conn_t  *rd;

    rd = &ngx_http_x402_redis_conn;

    if (rd->lazy.timer_set) {
        ngx_del_timer(&rd->lazy);
    }

    if (rd->ac == NULL || rd->c == NULL) {
        return;
    }

    ngx_http_x402_timing_start();

    /* what the socket does not take now asks for the write event */
    rd->flushing = 1;
    ngx_http_x402_redis_write(rd);
    rd->flushing = 0;

    ngx_http_x402_timing_end(NGX_HTTP_X402_T_REDIS_WRITE);
}

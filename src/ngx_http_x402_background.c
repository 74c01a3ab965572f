
/*
 * ngx_http_x402_background.c: a request without a client, for the calls a
 * worker's timer makes (retry.c's owed settlements, supported.c's GET
 * /supported). The facilitator call is an in-memory subrequest of it, so
 * the facilitator location's proxy settings apply as for live traffic (as
 * lua-nginx-module and nchan do for timers).
 *
 * Its connection has a real descriptor (/dev/null) that is never polled:
 * whatever path closes it (the caller's, or nginx's terminate path)
 * closes it cleanly.
 *
 * The facilitator subrequest runs the server's phases and filters, and
 * whatever an operator configured there reads the connection and the
 * request as nginx made them: the request is set up field by field as
 * ngx_http_alloc_request() does, and the connection gets a local address
 * as a unix-socket listener's connections have ("unix:"), so
 * $remote_addr, $binary_remote_addr (limit_req_zone, limit_conn_zone),
 * $server_addr and the access module find one (a NULL c->sockaddr
 * crashed the worker at every retry and probe, t/76).
 */

#include "ngx_http_x402_module.h"


/* the modules' own values (private to their .c files, 1 since 1.17.6) */
#define NGX_HTTP_X402_LIMIT_REQ_PASSED   1
#define NGX_HTTP_X402_LIMIT_CONN_PASSED  1


static ngx_str_t  ngx_http_x402_background_get = ngx_string("GET");
static ngx_str_t  ngx_http_x402_background_post = ngx_string("POST");
static ngx_str_t  ngx_http_x402_background_addr = ngx_string("unix:");

/* the worker's /dev/null, opened at its first background request */
static ngx_fd_t   ngx_http_x402_background_null = NGX_INVALID_FILE;
static ngx_pid_t  ngx_http_x402_background_pid;


/*
 * The request, on cscf's configuration: method (NGX_HTTP_GET or _POST) and
 * line name it in logs and $request_method; action is the log's "while
 * ..."; quiet keeps the facilitator location's own errors out of the log
 * (a probe whose caller logs each failure once); finish is its write
 * handler, run when its subrequest is done. The caller sets r->uri, adds
 * its cleanup and issues the subrequest; on failure it calls
 * ngx_http_x402_background_close().
 */

ngx_http_request_t *
ngx_http_x402_background_request(ngx_cycle_t *cycle,
    ngx_http_core_srv_conf_t *cscf, ngx_uint_t method, char *line,
    char *action, ngx_uint_t quiet, ngx_http_event_handler_pt finish)
{
    ngx_fd_t                    fd;
    ngx_buf_t                  *b;
    ngx_log_t                  *log;
    struct sockaddr            *sa;
    ngx_pool_t                 *cpool, *pool;
    ngx_connection_t           *c;
    ngx_http_log_ctx_t         *lctx;
    ngx_http_request_t         *r;
    ngx_http_connection_t      *hc;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module);

    /* the pool first: ngx_http_close_connection() destroys c->pool */
    cpool = ngx_create_pool(1024, cycle->log);
    if (cpool == NULL) {
        return NULL;
    }

    /*
     * A copy of the worker's one /dev/null descriptor: an async
     * settlement's first attempt makes one such request per payment, and
     * dup() costs the kernel less than a path walk and a device open.
     */
    if (ngx_http_x402_background_null == NGX_INVALID_FILE
        || ngx_http_x402_background_pid != ngx_pid)
    {
        ngx_http_x402_background_null = ngx_open_file("/dev/null",
                                                      NGX_FILE_RDONLY,
                                                      NGX_FILE_OPEN, 0);
        ngx_http_x402_background_pid = ngx_pid;
    }

    fd = (ngx_http_x402_background_null == NGX_INVALID_FILE)
         ? NGX_INVALID_FILE : dup(ngx_http_x402_background_null);

    if (fd == NGX_INVALID_FILE) {
        ngx_destroy_pool(cpool);
        return NULL;
    }

    c = ngx_get_connection((ngx_socket_t) fd, cycle->log);
    if (c == NULL) {
        (void) ngx_close_file(fd);
        ngx_destroy_pool(cpool);
        return NULL;
    }

    c->pool = cpool;

#if (NGX_STAT_STUB)
    /* ngx_http_close_connection() takes it off again */
    (void) ngx_atomic_fetch_add(ngx_stat_active, 1);
#endif

    log = ngx_pcalloc(cpool, sizeof(ngx_log_t));
    lctx = ngx_pcalloc(cpool, sizeof(ngx_http_log_ctx_t));
    if (log == NULL || lctx == NULL) {
        goto failed_conn;
    }

    *log = *cycle->log;
    log->handler = NULL;
    log->data = lctx;
    log->action = action;

    if (quiet && log->log_level > NGX_LOG_CRIT) {
        log->log_level = NGX_LOG_CRIT;
    }

    lctx->connection = c;

    c->log = log;
    c->log_error = NGX_ERROR_INFO;
    c->read->log = log;
    c->write->log = log;
    /*
     * Never registered with epoll: nobody may try to add them (the
     * upstream's check for a client that went away would).
     */
    c->read->active = 1;
    c->write->active = 1;
    /*
     * But nginx may put timers on them: ngx_http_finalize_connection()
     * adds lingering_timeout to c->read while the call is in flight, and
     * a NULL handler crashed the worker when it fired (t/80).
     */
    c->read->handler = ngx_http_empty_handler;
    c->write->handler = ngx_http_empty_handler;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    c->requests = 1;
    c->start_time = ngx_current_msec;

    /*
     * Both ends "unix:" (an unnamed AF_UNIX address): no client address
     * an allow/deny rule or a limit key could mistake for a real one.
     */
    sa = ngx_pcalloc(cpool, sizeof(struct sockaddr_un));
    hc = ngx_pcalloc(cpool, sizeof(ngx_http_connection_t));
    b = ngx_calloc_buf(cpool);
    if (sa == NULL || hc == NULL || b == NULL) {
        goto failed_conn;
    }

    sa->sa_family = AF_UNIX;
    c->sockaddr = sa;
    c->socklen = sizeof(struct sockaddr_un);
    c->local_sockaddr = sa;
    c->local_socklen = sizeof(struct sockaddr_un);
    c->addr_text = ngx_http_x402_background_addr;
    c->type = SOCK_STREAM;

    /* an empty read buffer: nothing was read from this "client" */
    c->buffer = b;

    hc->conf_ctx = cscf->ctx;

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
    r->http_connection = hc;
    r->signature = NGX_HTTP_MODULE;
    r->connection = c;
    r->header_in = b;
    r->main = r;
    r->count = 1;
    r->main_conf = cscf->ctx->main_conf;
    r->srv_conf = cscf->ctx->srv_conf;
    r->loc_conf = cscf->ctx->loc_conf;

    r->ctx = ngx_pcalloc(pool, sizeof(void *) * ngx_http_max_module);
    r->variables = ngx_pcalloc(pool, cmcf->variables.nelts
                                     * sizeof(ngx_http_variable_value_t));

    if (r->ctx == NULL || r->variables == NULL) {
        goto failed_req;
    }

    /* empty: the subrequest gets headers of its own (facilitator.c) */
    if (ngx_list_init(&r->headers_out.headers, pool, 1,
                      sizeof(ngx_table_elt_t))
        != NGX_OK
        || ngx_list_init(&r->headers_out.trailers, pool, 1,
                         sizeof(ngx_table_elt_t))
           != NGX_OK
        || ngx_list_init(&r->headers_in.headers, pool, 1,
                         sizeof(ngx_table_elt_t))
           != NGX_OK)
    {
        goto failed_req;
    }

    r->method = method;
    r->method_name = (method == NGX_HTTP_POST)
                     ? ngx_http_x402_background_post
                     : ngx_http_x402_background_get;
    r->http_version = NGX_HTTP_VERSION_11;
    ngx_str_set(&r->http_protocol, "HTTP/1.1");
    r->request_line.data = (u_char *) line;
    r->request_line.len = ngx_strlen(line);
    ngx_str_set(&r->schema, "http");
    r->headers_in.content_length_n = -1;
    r->headers_in.keep_alive_n = -1;
    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;
    r->uri_changes = NGX_HTTP_MAX_URI_CHANGES + 1;
    r->subrequests = NGX_HTTP_MAX_SUBREQUESTS + 1;
    r->http_state = NGX_HTTP_PROCESS_REQUEST_STATE;
    r->discard_body = 1;
    r->logged = 1;                  /* not an access-log entry */

    /*
     * Not client traffic: limit_req and limit_conn, at http or server
     * level, see it as already counted (they look at r->main) and let
     * the facilitator call through; a delay would never end, nobody
     * drives this connection's events.
     */
    r->limit_req_status = NGX_HTTP_X402_LIMIT_REQ_PASSED;
    r->limit_conn_status = NGX_HTTP_X402_LIMIT_CONN_PASSED;
    r->start_sec = ngx_time();
    r->start_msec = ((ngx_time_t *) ngx_timeofday())->msec;
    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = finish;

    c->data = r;
    lctx->request = r;
    lctx->current_request = r;

    return r;

failed_req:

    ngx_http_free_request(r, 0);

failed_conn:

    ngx_http_close_connection(c);

    return NULL;
}


/* the request's end, ours or a failed start: its cleanups run first */

void
ngx_http_x402_background_close(ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_http_free_request(r, 0);
    ngx_http_close_connection(c);
}


/*
 * Which server block an owed settlement was paid in, in terms that still
 * mean something after a reload, on another nginx of the fleet (Redis) or
 * at the next start (the spool): its first server_name, and its index to
 * tell apart blocks of one name. retry.c runs the retry in a server that
 * uses the same facilitator (supported.c), preferring this one.
 */
uint64_t
ngx_http_x402_background_server_key(ngx_http_core_main_conf_t *cmcf,
    ngx_http_core_srv_conf_t *cscf)
{
    uint64_t                    key;
    ngx_uint_t                  i;
    ngx_http_core_srv_conf_t  **cscfp;

    key = NGX_HTTP_X402_SERVER_KEYED
          | ((uint64_t) ngx_murmur_hash2(cscf->server_name.data,
                                         cscf->server_name.len) << 16);

    cscfp = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        if (cscfp[i] == cscf) {
            key |= (i & 0xffff);
            break;
        }
    }

    return key;
}


/*
 * The block a key names, whatever facilitator it uses: the same key, else
 * the first of its server_name, else (a bare index of an older entry) the
 * block at that index, else the first block. For a call that needs the
 * block's other locations, not its facilitator (retry.c: x402_rpc).
 */
ngx_http_core_srv_conf_t *
ngx_http_x402_background_server(ngx_cycle_t *cycle, uint64_t key)
{
    uint64_t                    k;
    ngx_uint_t                  i;
    ngx_http_core_srv_conf_t  **cscfp, *found;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module);

    if (cmcf == NULL || cmcf->servers.nelts == 0) {
        return NULL;
    }

    cscfp = cmcf->servers.elts;

    if (!(key & NGX_HTTP_X402_SERVER_KEYED)) {
        return cscfp[key < cmcf->servers.nelts ? key : 0];
    }

    found = NULL;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        k = ngx_http_x402_background_server_key(cmcf, cscfp[i]);

        if (k == key) {
            return cscfp[i];
        }

        if (found == NULL
            && ngx_http_x402_server_name_hash(k)
               == ngx_http_x402_server_name_hash(key))
        {
            found = cscfp[i];
        }
    }

    return found ? found : cscfp[0];
}

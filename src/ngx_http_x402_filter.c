
/*
 * ngx_http_x402_module: response filters.
 *
 * x402_settle sync: the settlement is known before the content runs; the
 * header filter adds PAYMENT-RESPONSE (v2) or X-PAYMENT-RESPONSE (v1).
 *
 * x402_settle after: the content runs first. Once its status is known the
 * header filter decides: >= 400 passes through unsettled (nobody pays for
 * a 404 or an upstream error; a 304 is settled, as the reference does), as
 * does a redirect nginx makes itself (a directory's 301), and so does a
 * response of a location other than the one paid for (an internal
 * redirect; a named location without a price is the paid one's content);
 * otherwise it holds the header, and the body filter holds the body until
 * its last buffer: only a complete response is settled. Memory bodies are
 * copied (upstream buffers are not pinned) up to x402_hold_buffer_size,
 * then spilled to a temporary file under client_body_temp_path, the way
 * proxy buffering does, up to x402_hold_max_size in all (past it the
 * response is refused as a broken one); file buffers are kept as they
 * are. Once the last buffer is held /settle starts; the response is
 * released, with the settlement header, at the first filter call after it
 * finished (the subrequest's end posts the main request, whose writer
 * calls the body filter); a refused or failed settlement replaces it with
 * a 402 or a 5xx and drops the content. A response that ends before its
 * last buffer (upstream reset or premature close, a timeout, a filter
 * error) is never settled: nginx finalizes the request at once and closes
 * the connection, and the request's cleanup releases the reservation.
 *
 * Over 800 lines as one concern, like nginx's own body filters (gunzip,
 * sub): the hold, its spill to a temporary file and its release share one
 * buffer state, and splitting them would export that state.
 *
 * Our body filter sits above the postpone filter, so held output never
 * reaches it; r->buffered tells nginx we still hold data, from the last
 * buffer on (before it, only the content can end the hold).
 */


#include "ngx_http_x402_module.h"


/* the bit is the image filter's, which sits below us and so never sees
 * anything while we hold */
#define NGX_HTTP_X402_BUFFERED  0x08


static ngx_int_t ngx_http_x402_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_x402_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_x402_hold(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_x402_release(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_x402_replace(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_int_t outcome);
static void ngx_http_x402_drop(ngx_chain_t *in);
static ngx_int_t ngx_http_x402_add_settle_header(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static void ngx_http_x402_release_handler(ngx_event_t *ev);
static void ngx_http_x402_filter_wake(ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_settle_held(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_spill(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_buf_t *b);
static ngx_int_t ngx_http_x402_send_held(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_chain_t *out);
static ngx_uint_t ngx_http_x402_named_content(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static void ngx_http_x402_not_settled(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, const char *why);
static void ngx_http_x402_not_settled_at(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_uint_t level, const char *why);
static off_t ngx_http_x402_held_bytes(ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_too_big(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, size_t more);
static void ngx_http_x402_held_cleanup(void *data);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_str_t  ngx_http_x402_response_key = ngx_string("PAYMENT-RESPONSE");
static ngx_str_t  ngx_http_x402_v1_response_key =
    ngx_string("X-PAYMENT-RESPONSE");
static ngx_str_t  ngx_http_x402_expose_key =
    ngx_string("Access-Control-Expose-Headers");
static ngx_str_t  ngx_http_x402_expose_value =
    ngx_string("PAYMENT-RESPONSE, X-PAYMENT-RESPONSE");
static ngx_str_t  ngx_http_x402_cache_key = ngx_string("Cache-Control");
static ngx_str_t  ngx_http_x402_cache_value = ngx_string("no-store");


ngx_int_t
ngx_http_x402_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_x402_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_x402_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_x402_header_filter(ngx_http_request_t *r)
{
    ngx_http_x402_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_x402_get_ctx(r);

    if (ctx && ctx->preflight) {
        /* a preflight into a priced location: no body, like HEAD */
        r->header_only = 1;
        r->headers_out.content_length_n = 0;

        if (r->headers_out.content_length) {
            r->headers_out.content_length->hash = 0;
            r->headers_out.content_length = NULL;
        }

        return ngx_http_next_header_filter(r);
    }

    if (ctx == NULL || ctx->state != NGX_HTTP_X402_STATE_PASSED) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx->header_held && !ctx->released) {

        /*
         * A second header while the first is held: the content failed
         * after its header (a special response for an error). Nothing of
         * the held response is sent, nor settled.
         */

        ctx->held = NULL;
        ctx->held_last = &ctx->held;
        ctx->held_tail = NULL;
        r->buffered &= ~NGX_HTTP_X402_BUFFERED;

        ngx_http_x402_not_settled(r, ctx,
                                  "response ended before its last byte");

        return ngx_http_next_header_filter(r);
    }

    if (ctx->settle_mode != NGX_HTTP_X402_SETTLE_AFTER
        || ctx->status != NGX_HTTP_X402_VERIFIED
        || ctx->header_held || ctx->released)
    {
        if (ngx_http_x402_add_settle_header(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_next_header_filter(r);
    }

    if (ctx->paid_conf
        != ngx_http_get_module_loc_conf(r, ngx_http_x402_module)
        && !ngx_http_x402_named_content(r, ctx))
    {
        /* redirected from the paid location to one it did not pay for */

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "x402: response of \"%V\", not of the location "
                      "paid for, payment of %V from %V not settled",
                      &r->uri, &ctx->amount, &ctx->payer);

        ctx->released = 1;

        ngx_http_x402_set_reason(r, ctx, "not_settled",
                                 sizeof("not_settled") - 1);
        ngx_http_x402_outcome(r, ctx);

        if (ctx->err_status && r->headers_out.status < NGX_HTTP_BAD_REQUEST) {
            /* the error_page status kept aside at the paid location */
            r->err_status = ctx->err_status;
            r->headers_out.status = ctx->err_status;
            r->headers_out.status_line.len = 0;
        }

        return ngx_http_next_header_filter(r);
    }

    /*
     * >= 400: the client got an error. A 3xx nginx made itself (r->err_status
     * set by its special response: the static module's 301 to a directory's
     * slash, a "return" reached by error_page) delivers none of the content
     * either; the handler cleared err_status at the paid location, so one
     * set now came from its content phase. An upstream's 3xx (a link to a
     * download, say) is the product and is settled, as the reference does.
     */

    if (r->headers_out.status >= NGX_HTTP_BAD_REQUEST
        || (r->err_status >= NGX_HTTP_SPECIAL_RESPONSE
            && r->err_status < NGX_HTTP_BAD_REQUEST))
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "x402: response status %ui%s, payment of %V from %V "
                      "not settled", r->headers_out.status,
                      r->headers_out.status < NGX_HTTP_BAD_REQUEST
                      ? " made by nginx" : "", &ctx->amount, &ctx->payer);

        ctx->released = 1;

        ngx_http_x402_set_reason(r, ctx, "not_settled",
                                 sizeof("not_settled") - 1);
        ngx_http_x402_outcome(r, ctx);

        return ngx_http_next_header_filter(r);
    }

    if (r->headers_out.status == NGX_HTTP_SWITCHING_PROTOCOLS) {

        /*
         * An upgraded connection (WebSocket) is relayed by the upstream
         * module beneath every filter: its bytes would reach the client
         * before the held 101 and any settlement, and a session the client
         * ends is never complete, so never settled (t/78). Under "after"
         * it is refused: the connection closes, nothing is settled.
         */

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: \"%V\" answered 101 (protocol upgrade) in a "
                      "location with \"x402_settle after\": an upgraded "
                      "connection cannot be held until settled, refused "
                      "(use \"x402_settle sync\" there)", &r->uri);

        ctx->discard = 1;
        ngx_http_x402_not_settled(r, ctx, "protocol upgrade refused");

        return NGX_ERROR;
    }

    /*
     * The range filter runs after us: it would turn this settled 200 into
     * a 416 with nothing served. The whole resource is served instead.
     */

    r->allow_ranges = 0;

    /* paid content reached by error_page: the status it named */

    if (ctx->err_status) {
        r->err_status = ctx->err_status;
        r->headers_out.status = ctx->err_status;
        r->headers_out.status_line.len = 0;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "x402: holding the %ui response until complete and settled",
                   r->headers_out.status);

    ctx->header_held = 1;
    ctx->hold_limit =
        ((ngx_http_x402_loc_conf_t *) ctx->paid_conf)->hold_buffer_size;
    ctx->hold_max =
        ((ngx_http_x402_loc_conf_t *) ctx->paid_conf)->hold_max_size;

    if (ctx->hold_max == 0) {
        /* no temporary file: memory only */
        ctx->hold_max = ctx->hold_limit;
    }

    /*
     * Until the last buffer is held, the content producer drives the
     * request, and a finalization before it means the response broke
     * (upstream reset, premature close, timeout): nginx must go on to close
     * the connection at once, as it does when the header has left. So
     * r->buffered is set only from the last buffer on (nginx's writer
     * would wait for ever on a hold only the producer can end), and the
     * connection is not kept alive unless the response is released: the
     * client got nothing of it.
     */

    ctx->keepalive = r->keepalive;
    r->keepalive = 0;

    if (r->header_only) {
        /* no body follows */
        ctx->last_held = 1;
        r->buffered |= NGX_HTTP_X402_BUFFERED;
        return ngx_http_x402_settle_held(r, ctx);
    }

    return NGX_OK;
}


/*
 * The client closed its connection while the response was produced: with
 * proxy_ignore_client_abort (or fastcgi_…) on, or a content handler that
 * does not watch the client, nobody noticed. Asked the way nginx's
 * upstream asks (ngx_http_upstream_check_broken_connection).
 */
static ngx_uint_t
ngx_http_x402_client_gone(ngx_http_request_t *r)
{
    int                n;
    char               buf[1];
    ngx_err_t          err;
    ngx_connection_t  *c;

    c = r->connection;

    if (c->error || c->read->eof) {
        return 1;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return 0;
    }
#endif

    n = recv(c->fd, buf, 1, MSG_PEEK);

    if (n == 0) {
        return 1;
    }

    if (n == -1) {
        err = ngx_socket_errno;
        return (err != NGX_EAGAIN && err != NGX_EINTR);
    }

    return 0;
}


static ngx_int_t
ngx_http_x402_settle_held(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    if (ngx_http_x402_client_gone(r)) {
        /* nothing was delivered: not settled, the reservation goes (said
         * once: the request's end then finds it released) */
        ctx->discard = 1;
        ngx_http_x402_not_settled(r, ctx, "client closed the connection "
                                  "before the response was sent");
        r->connection->error = 1;
        return NGX_ERROR;
    }

    if (ngx_http_x402_facilitator_call(r, ctx, &ctx->settle,
                                       &ctx->settle_uri,
                                       ngx_http_x402_filter_wake)
        != NGX_OK)
    {
        /* nothing was sent yet: close rather than serve unsettled */
        ctx->status = NGX_HTTP_X402_ERROR;
        ngx_http_x402_outcome(r, ctx);
        return NGX_ERROR;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "x402: the held response is complete, settling");

    return NGX_OK;
}


/* a held response that will not be sent: its payment is not settled */

/*
 * A named location without a price of its own (try_files $uri @app,
 * error_page 404 = @fallback, X-Accel-Redirect: @app) has no URI a client
 * could ask for: it is reached only through the location that sent the
 * request there, and what it sends is that location's content, settled as
 * such. It was served free and the payment released (reusable for more),
 * while a request without a payment got the 402 (t/76). "x402 off" there
 * keeps it free.
 */
static ngx_uint_t
ngx_http_x402_named_content(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_x402_loc_conf_t  *xlcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    xlcf = ngx_http_get_module_loc_conf(r, ngx_http_x402_module);

    if (!xlcf->enable || xlcf->priced || ctx->named_conf == NULL) {
        return 0;
    }

    /* sent there by the paid location itself (handler.c), not through a
     * free location whose own fallback it is (t/77) */

    if (clcf->named) {
        return ctx->named_conf == xlcf;
    }

    /*
     * An "if" taken (or a limit_except) inside that named location switches
     * the request to the block's own configuration: not named, another x402
     * conf, but the named location's name (nginx copies it to the block).
     * Its response is still that location's content (t/78): an "if" on a
     * client's header served it unsettled, the payment reusable.
     */

    return clcf->noname
           && clcf->name.len == ctx->named_name.len
           && clcf->name.len > 0 && clcf->name.data[0] == '@'
           && ngx_strncmp(clcf->name.data, ctx->named_name.data,
                          clcf->name.len) == 0;
}


static void
ngx_http_x402_not_settled(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    const char *why)
{
    ngx_http_x402_not_settled_at(r, ctx, NGX_LOG_INFO, why);
}


static void
ngx_http_x402_not_settled_at(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    ngx_uint_t level, const char *why)
{
    ctx->released = 1;
    r->buffered &= ~NGX_HTTP_X402_BUFFERED;

    if (ctx->settle.issued) {
        if (ctx->settle.done && !ctx->settle.failed) {
            /* the facilitator answered meanwhile: recorded as it said */
            (void) ngx_http_x402_settle_result(r, ctx);
        }

        /*
         * else the settlement is in flight, or its answer lost with the
         * request: the outcome is unknown, and the reservation keeps the
         * payment from being served again until it expires
         */

        return;
    }

    ngx_log_error(level, r->connection->log, 0,
                  "x402: %s, payment of %V from %V not settled",
                  why, &ctx->amount, &ctx->payer);

    ngx_http_x402_set_reason(r, ctx, "not_settled",
                             sizeof("not_settled") - 1);
    ngx_http_x402_outcome(r, ctx);
}


/*
 * The access phase passed a payment to be settled after the content: the
 * request's end is watched from now on, as a header may never reach us
 * (the client hangs up while the upstream has not answered, "return 444").
 * A request cleanup runs before the log phase, also when terminated.
 */

ngx_int_t
ngx_http_x402_filter_watch(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    ngx_http_cleanup_t  *cln;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_x402_held_cleanup;
    cln->data = ctx;

    return NGX_OK;
}


/*
 * The request ends (finalized, terminated) with its response still held,
 * or before any header: nothing of it was sent
 */

static void
ngx_http_x402_held_cleanup(void *data)
{
    ngx_http_x402_ctx_t  *ctx = data;

    /* released, passed through unsettled, or no longer this payment's */

    if (ctx->released || ctx->status != NGX_HTTP_X402_VERIFIED) {
        return;
    }

    ctx->discard = 1;

    ngx_http_x402_not_settled(ctx->request, ctx,
                              "response ended before its last byte");
}


static ngx_int_t
ngx_http_x402_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_http_x402_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_x402_get_ctx(r);

    if (ctx && ctx->preflight) {
        ngx_http_x402_drop(in);
        return NGX_OK;
    }

    if (ctx == NULL || !ctx->header_held) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->released) {
        if (ctx->discard) {
            ngx_http_x402_drop(in);
            return NGX_OK;
        }

        if (ctx->output) {
            return ngx_http_x402_send_held(r, ctx, in);
        }

        return ngx_http_next_body_filter(r, in);
    }

    if (!ctx->settle.done) {
        if (ngx_http_x402_hold(r, ctx, in) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ctx->last_held && !ctx->settle.issued) {
            /* complete: now the settlement drives the request */
            r->buffered |= NGX_HTTP_X402_BUFFERED;
            return ngx_http_x402_settle_held(r, ctx);
        }

        return NGX_OK;
    }

    return ngx_http_x402_release(r, ctx, in);
}


/*
 * Keeps a copy of what arrives while settling and marks the originals
 * consumed, so that whoever produced them can reuse their buffers.
 */

static ngx_int_t
ngx_http_x402_hold(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t        size;
    ngx_buf_t    *b, *nb;
    ngx_chain_t  *cl;

    for ( /* void */ ; in; in = in->next) {
        b = in->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos
            && ngx_http_x402_held_bytes(ctx) + (b->last - b->pos)
               > ctx->hold_max)
        {
            return ngx_http_x402_too_big(r, ctx, b->last - b->pos);
        }

        if (ngx_buf_in_memory(b) && b->last > b->pos
            && (ctx->temp_file
                || ctx->held_size + (size_t) (b->last - b->pos)
                   > ctx->hold_limit))
        {
            /* past the memory bound: to the temporary file */

            if (ngx_http_x402_spill(r, ctx, b) != NGX_OK) {
                return NGX_ERROR;
            }

            b->pos = b->last;

            if (!(b->last_buf || b->last_in_chain || b->flush)) {
                continue;
            }

            nb = ngx_calloc_buf(r->pool);
            if (nb == NULL) {
                return NGX_ERROR;
            }

        } else if (ngx_buf_in_memory(b) && b->last > b->pos) {
            size = b->last - b->pos;
            ctx->held_size += size;

            nb = ngx_create_temp_buf(r->pool, size);
            if (nb == NULL) {
                return NGX_ERROR;
            }

            nb->last = ngx_cpymem(nb->pos, b->pos, size);

        } else if (b->in_file && b->file_last > b->file_pos) {
            nb = ngx_alloc_buf(r->pool);
            if (nb == NULL) {
                return NGX_ERROR;
            }

            *nb = *b;
            nb->shadow = NULL;
            nb->recycled = 0;
            nb->temporary = 0;
            nb->memory = 0;
            nb->mmap = 0;
            nb->pos = NULL;
            nb->last = NULL;

        } else if (b->last_buf || b->last_in_chain || b->flush || b->sync) {
            nb = ngx_calloc_buf(r->pool);
            if (nb == NULL) {
                return NGX_ERROR;
            }

            nb->sync = b->sync
                       || !(b->last_buf || b->last_in_chain || b->flush);

        } else {
            continue;
        }

        nb->tag = (ngx_buf_tag_t) &ngx_http_x402_module;
        nb->last_buf = b->last_buf;
        nb->last_in_chain = b->last_in_chain;
        nb->flush = b->flush;

        if (b->last_buf) {
            ctx->last_held = 1;
        }

        b->pos = b->last;

        if (b->in_file) {
            b->file_pos = b->file_last;
        }

        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = nb;
        cl->next = NULL;

        *ctx->held_last = cl;
        ctx->held_last = &cl->next;
        ctx->held_tail = nb;
    }

    return NGX_OK;
}


/*
 * What the hold keeps of its own: the copies in memory and the temporary
 * file. File buffers held as they are (a static file, the upstream's own
 * temporary file, bounded by proxy_max_temp_file_size) take no new space
 * and are not counted; the copy filter above us passes them only under
 * sendfile on, otherwise they arrive read into memory, and count.
 */

static off_t
ngx_http_x402_held_bytes(ngx_http_x402_ctx_t *ctx)
{
    return (off_t) ctx->held_size
           + (ctx->temp_file ? ctx->temp_file->offset : 0);
}


/*
 * The held body would pass x402_hold_max_size: an endless stream (SSE, long
 * polling) under "after" would otherwise fill the disk while nothing is
 * settled. Refused as a response that breaks before its last byte: nothing
 * of it is sent, nor settled, the reservation is released, the connection
 * closed (HTTP/2: the stream reset), and its temporary file goes now, not
 * with the request.
 */

static ngx_int_t
ngx_http_x402_too_big(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    size_t more)
{
    u_char                    *p, why[NGX_MAX_ERROR_STR];
    ngx_fd_t                   fd;
    ngx_pool_cleanup_t        *c;
    ngx_http_x402_loc_conf_t  *xlcf;

    xlcf = ctx->paid_conf;

    if (xlcf->hold_max_size) {
        p = ngx_snprintf(why, sizeof(why) - 1,
                         "the response held until its settlement passed "
                         "\"x402_hold_max_size %O\" of its location at "
                         "%O bytes held and %uz more, refused (use "
                         "\"x402_settle sync\" for streams, or raise "
                         "x402_hold_max_size)",
                         xlcf->hold_max_size, ngx_http_x402_held_bytes(ctx),
                         more);

    } else {
        p = ngx_snprintf(why, sizeof(why) - 1,
                         "the response held until its settlement passed "
                         "\"x402_hold_buffer_size %uz\" of its location "
                         "(\"x402_hold_max_size 0\": no temporary file) at "
                         "%O bytes held and %uz more, refused (use "
                         "\"x402_settle sync\" for streams, or raise "
                         "x402_hold_max_size)",
                         ctx->hold_limit, ngx_http_x402_held_bytes(ctx),
                         more);
    }

    *p = '\0';

    ctx->held = NULL;
    ctx->held_last = &ctx->held;
    ctx->held_tail = NULL;

    if (ctx->temp_file && ctx->temp_file->file.fd != NGX_INVALID_FILE) {

        /* its pool cleanup, run now: ngx_pool_run_cleanup_file() would
         * miss it, it runs only ngx_pool_cleanup_file() handlers */

        fd = ctx->temp_file->file.fd;

        for (c = r->pool->cleanup; c; c = c->next) {
            if ((c->handler == ngx_pool_delete_file
                 || c->handler == ngx_pool_cleanup_file)
                && ((ngx_pool_cleanup_file_t *) c->data)->fd == fd)
            {
                c->handler(c->data);
                c->handler = NULL;
                ctx->temp_file->file.fd = NGX_INVALID_FILE;
                break;
            }
        }
    }

    ctx->discard = 1;
    ngx_http_x402_not_settled_at(r, ctx, NGX_LOG_ERR, (char *) why);

    return NGX_ERROR;
}


/*
 * Appends b's bytes to the held response's temporary file, extending the
 * held file buffer that ends where they start.
 */

static ngx_int_t
ngx_http_x402_spill(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    ngx_buf_t *b)
{
    off_t                      offset;
    ssize_t                    n;
    ngx_buf_t                 *nb;
    ngx_chain_t                out, *cl;
    ngx_temp_file_t           *tf;
    ngx_http_core_loc_conf_t  *clcf;

    tf = ctx->temp_file;

    if (tf == NULL) {
        tf = ngx_pcalloc(r->pool, sizeof(ngx_temp_file_t));
        if (tf == NULL) {
            return NGX_ERROR;
        }

        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        tf->file.fd = NGX_INVALID_FILE;
        tf->file.log = r->connection->log;
        tf->path = clcf->client_body_temp_path;
        tf->pool = r->pool;
        tf->warn = "a response held until its settlement is buffered to "
                   "a temporary file";
        tf->log_level = NGX_LOG_INFO;
        tf->clean = 1;

        ctx->temp_file = tf;
    }

    offset = tf->offset;

    out.buf = b;
    out.next = NULL;

    n = ngx_write_chain_to_temp_file(tf, &out);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    tf->offset += n;

    nb = (ctx->held && ctx->held_tail) ? ctx->held_tail : NULL;

    if (nb && nb->in_file && nb->file == &tf->file
        && nb->file_last == offset && !nb->last_buf)
    {
        nb->file_last += n;
        return NGX_OK;
    }

    nb = ngx_calloc_buf(r->pool);
    if (nb == NULL) {
        return NGX_ERROR;
    }

    nb->in_file = 1;
    nb->file = &tf->file;
    nb->file_pos = offset;
    nb->file_last = offset + n;
    nb->tag = (ngx_buf_tag_t) &ngx_http_x402_module;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = nb;
    cl->next = NULL;

    *ctx->held_last = cl;
    ctx->held_last = &cl->next;
    ctx->held_tail = nb;

    return NGX_OK;
}


/*
 * The released response goes down like the copy filter sends it: file
 * buffers (ours, spilled, or held from above before the filters below had
 * said what they need) are read into memory where sendfile cannot be used
 * or a filter needs the bytes.
 */

static ngx_int_t
ngx_http_x402_send_held(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    ngx_chain_t *out)
{
    ngx_int_t                  rc;
    ngx_output_chain_ctx_t    *oc;
    ngx_http_core_loc_conf_t  *clcf;

    oc = ctx->output;

    if (oc == NULL) {
        oc = ngx_pcalloc(r->pool, sizeof(ngx_output_chain_ctx_t));
        if (oc == NULL) {
            return NGX_ERROR;
        }

        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        oc->sendfile = r->connection->sendfile;
        oc->need_in_memory = r->main_filter_need_in_memory
                             || r->filter_need_in_memory;
        oc->need_in_temp = r->filter_need_temporary;
        oc->alignment = clcf->directio_alignment;
        oc->pool = r->pool;
        oc->bufs.num = 2;
        oc->bufs.size = 32768;
        /* not the held buffers' tag: those are not to be reused */
        oc->tag = (ngx_buf_tag_t) &ngx_http_x402_send_held;
        oc->output_filter = (ngx_output_chain_filter_pt)
                                ngx_http_next_body_filter;
        oc->filter_ctx = r;

        ctx->output = oc;
    }

    rc = ngx_output_chain(oc, out);

    if (oc->in || oc->busy) {
        r->buffered |= NGX_HTTP_X402_BUFFERED;

    } else {
        r->buffered &= ~NGX_HTTP_X402_BUFFERED;
    }

    return rc;
}


static ngx_int_t
ngx_http_x402_release(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_int_t     rc, outcome;
    ngx_chain_t  *out, *cl;

    ctx->released = 1;
    r->buffered &= ~NGX_HTTP_X402_BUFFERED;
    r->keepalive = ctx->keepalive;

    outcome = ngx_http_x402_settle_result(r, ctx);

    if (outcome != X402_FAC_OK) {
        ngx_http_x402_drop(in);
        ctx->discard = 1;

        return ngx_http_x402_replace(r, ctx, outcome);
    }

    if (ngx_http_x402_add_settle_header(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_x402_drop(in);
        ctx->discard = 1;
        return rc;
    }

    /* what was held, then what this call brought */

    *ctx->held_last = in;
    out = ctx->held;

    ctx->held = NULL;
    ctx->held_last = &ctx->held;
    ctx->held_tail = NULL;

    if (out == NULL) {
        return NGX_OK;
    }

    /* what was held back is late already: no postpone_output delay */

    for (cl = out; cl->next; cl = cl->next) { /* void */ }

    if (!cl->buf->last_buf) {
        cl->buf->flush = 1;
    }

    return ngx_http_x402_send_held(r, ctx, out);
}


/*
 * The settlement was refused (402, with PAYMENT-RESPONSE success false for
 * v2) or the facilitator failed (502/503/504): the held response is
 * replaced, its content dropped.
 */

static ngx_int_t
ngx_http_x402_replace(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    ngx_int_t outcome)
{
    u_char           *p;
    ngx_int_t         rc;
    ngx_str_t         body, *reason;
    ngx_buf_t        *b;
    ngx_uint_t        i, status;
    ngx_chain_t       out;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    /* forget the content's headers */

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        h[i].hash = 0;
    }

    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_location(r);
    ngx_http_clear_etag(r);

    r->headers_out.content_encoding = NULL;
    r->headers_out.content_type.len = 0;
    r->headers_out.content_type_len = 0;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;
    r->headers_out.status_line.len = 0;
    r->headers_out.www_authenticate = NULL;
    r->headers_out.refresh = NULL;
    r->headers_out.expires = NULL;
#if (nginx_version >= 1023000)
    r->headers_out.cache_control = NULL;
    r->headers_out.link = NULL;
#else
    r->headers_out.cache_control.nelts = 0;
    r->headers_out.link.nelts = 0;
#endif
    r->headers_out.content_range = NULL;

    if (outcome == X402_FAC_REFUSED) {
        if (ngx_http_x402_send_402(r, ctx, &ctx->reason, &body) != NGX_OK) {
            return NGX_ERROR;
        }

        status = NGX_HTTP_PAYMENT_REQUIRED;

    } else {
        ctx->state = NGX_HTTP_X402_STATE_FINAL;

        status = (outcome == X402_FAC_BROKEN)
                 ? (ngx_uint_t) ngx_http_x402_facilitator_broken_status(
                                                                 &ctx->settle)
                 : NGX_HTTP_INTERNAL_SERVER_ERROR;

        reason = &ctx->reason;

        body.len = sizeof("{\"error\":\"facilitator_unavailable\","
                          "\"message\":\"\"}") - 1
                   + reason->len
                   + ngx_escape_json(NULL, reason->data, reason->len);

        body.data = ngx_pnalloc(r->pool, body.len);
        if (body.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(body.data,
                       "{\"error\":\"facilitator_unavailable\",\"message\":\"",
                       sizeof("{\"error\":\"facilitator_unavailable\","
                              "\"message\":\"") - 1);
        p = (u_char *) ngx_escape_json(p, reason->data, reason->len);
        *p++ = '"';
        *p++ = '}';

        body.len = p - body.data;

        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
        r->headers_out.content_length_n = body.len;

        if (ngx_http_x402_push_header(r, &ngx_http_x402_cache_key,
                                      &ngx_http_x402_cache_value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    r->headers_out.status = status;
    r->err_status = 0;

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body.data;
    b->last = body.data + body.len;
    b->memory = body.len ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static void
ngx_http_x402_drop(ngx_chain_t *in)
{
    for ( /* void */ ; in; in = in->next) {
        in->buf->pos = in->buf->last;

        if (in->buf->in_file) {
            in->buf->file_pos = in->buf->file_last;
        }
    }
}


static ngx_int_t
ngx_http_x402_add_settle_header(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx)
{
    if (ctx->header_added || ctx->settle_header.len == 0
        || ctx->status != NGX_HTTP_X402_SETTLED)
    {
        return NGX_OK;
    }

    ctx->header_added = 1;

    if (ngx_http_x402_push_header(r, ctx->version == 1
                                     ? &ngx_http_x402_v1_response_key
                                     : &ngx_http_x402_response_key,
                                  &ctx->settle_header)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_x402_push_header(r, &ngx_http_x402_expose_key,
                                     &ngx_http_x402_expose_value);
}


/*
 * The settlement of a held response finished. If the content is complete,
 * the main request's writer releases it as soon as the subrequest is gone;
 * a response still streaming (an upstream) would wait for its next buffer,
 * so a posted event pushes what is held out now. The ctx cleanup removes
 * the event if the request goes away first.
 */

static void
ngx_http_x402_filter_wake(ngx_http_x402_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    if (!ctx->header_held || ctx->released || ctx->release.posted) {
        return;
    }

    r = ctx->request;

    ctx->release.handler = ngx_http_x402_release_handler;
    ctx->release.data = ctx;
    ctx->release.log = r->connection->log;

    ngx_post_event(&ctx->release, &ngx_posted_events);
}


static void
ngx_http_x402_release_handler(ngx_event_t *ev)
{
    ngx_http_x402_ctx_t *ctx = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    /* released by the writer already, or another request is active */

    if (ctx->released || c->data != r || c->destroyed) {
        return;
    }

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "x402: releasing the held response");

    if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
        /*
         * the producer gave its last buffer already and may have nothing
         * more to write that would show it the error: end the request here
         * (its cleanups stop a producer still running)
         */
        c->error = 1;
        ngx_http_finalize_request(r, NGX_ERROR);
    }

    ngx_http_run_posted_requests(c);
}

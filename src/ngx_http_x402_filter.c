
/*
 * ngx_http_x402_module: response filters.
 *
 * x402_settle sync: the settlement is known before the content runs; the
 * header filter adds PAYMENT-RESPONSE (v2) or X-PAYMENT-RESPONSE (v1).
 *
 * x402_settle after: the content runs first. Once its status is known the
 * header filter decides: >= 400 passes through unsettled (nobody pays for
 * a 404 or an upstream error); otherwise it holds the header, starts /settle
 * and the body filter holds what arrives meanwhile (copied, so upstream
 * buffers are not pinned; file buffers are kept as they are). The response
 * is released, with the settlement header, at the first filter call after
 * the settlement finished (the subrequest's end posts the main request,
 * whose writer calls the body filter); a refused or failed settlement
 * replaces it with a 402 or a 5xx and drops the content. Settling on the
 * header rather than at the end avoids buffering whole bodies.
 *
 * Our body filter sits above the postpone filter, so held output never
 * reaches it; r->buffered tells nginx we still hold data.
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

    if (ctx->settle_mode != NGX_HTTP_X402_SETTLE_AFTER
        || ctx->status != NGX_HTTP_X402_VERIFIED
        || ctx->header_held || ctx->released)
    {
        if (ngx_http_x402_add_settle_header(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_next_header_filter(r);
    }

    if (r->headers_out.status >= NGX_HTTP_BAD_REQUEST) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "x402: response status %ui, payment of %V from %V "
                      "not settled", r->headers_out.status, &ctx->amount,
                      &ctx->payer);

        ctx->released = 1;

        ngx_http_x402_set_reason(r, ctx, "not_settled",
                                 sizeof("not_settled") - 1);
        ngx_http_x402_outcome(r, ctx);

        return ngx_http_next_header_filter(r);
    }

    /*
     * The range filter runs after us: it would turn this settled 200 into
     * a 416 with nothing served. The whole resource is served instead.
     */

    r->allow_ranges = 0;

    if (ngx_http_x402_facilitator_call(r, ctx, &ctx->settle,
                                       &ctx->settle_uri, 0)
        != NGX_OK)
    {
        /* nothing was sent yet: close rather than serve unsettled */
        ctx->status = NGX_HTTP_X402_ERROR;
        ngx_http_x402_outcome(r, ctx);
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "x402: holding the %ui response until settled",
                   r->headers_out.status);

    ctx->header_held = 1;
    r->buffered |= NGX_HTTP_X402_BUFFERED;

    return NGX_OK;
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

        return ngx_http_next_body_filter(r, in);
    }

    if (!ctx->settle.done) {
        if (ngx_http_x402_hold(r, ctx, in) != NGX_OK) {
            return NGX_ERROR;
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

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            size = b->last - b->pos;

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
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_x402_release(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_int_t     rc, outcome;
    ngx_chain_t  *out, *cl;

    ctx->released = 1;
    r->buffered &= ~NGX_HTTP_X402_BUFFERED;

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

    if (out == NULL) {
        return NGX_OK;
    }

    /* what was held back is late already: no postpone_output delay */

    for (cl = out; cl->next; cl = cl->next) { /* void */ }

    if (!cl->buf->last_buf) {
        cl->buf->flush = 1;
    }

    return ngx_http_next_body_filter(r, out);
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

void
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
        /* whoever produces the content sees the error on its next write */
        c->error = 1;
    }

    ngx_http_run_posted_requests(c);
}


/*
 * ngx_http_x402_module: /verify and /settle as subrequests.
 *
 * The facilitator is an internal location of the operator's (typically
 * "internal; proxy_pass https://facilitator/;"), so TLS, keepalive,
 * timeouts, retries and auth headers are ordinary nginx configuration. The
 * subrequest is a POST carrying the JSON built by the core, with a fresh
 * header list: nothing of the client's request (cookies, authorization,
 * the payment header itself) reaches the facilitator. Its answer is read
 * in memory (subrequest_output_buffer_size bounds it).
 */


#include "ngx_http_x402_module.h"


static ngx_int_t ngx_http_x402_facilitator_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static ngx_int_t ngx_http_x402_facilitator_body(ngx_http_request_t *r,
    ngx_http_request_t *sr, ngx_str_t *body);


static ngx_str_t  ngx_http_x402_post_method = { 4, (u_char *) "POST " };

/* once per worker: a configuration mistake, not a per-request event */
static ngx_uint_t  ngx_http_x402_warned_internal;


ngx_int_t
ngx_http_x402_facilitator_call(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_http_x402_call_t *call, ngx_str_t *uri,
    ngx_uint_t background)
{
    ngx_uint_t                   flags;
    ngx_http_request_t          *sr;
    ngx_http_post_subrequest_t  *ps;

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_http_x402_facilitator_done;
    ps->data = ctx;

    flags = NGX_HTTP_SUBREQUEST_IN_MEMORY;
    flags |= background ? NGX_HTTP_SUBREQUEST_BACKGROUND
                        : NGX_HTTP_SUBREQUEST_WAITED;

    ngx_memzero(call, sizeof(ngx_http_x402_call_t));

    if (ngx_http_subrequest(r, uri, NULL, &sr, ps, flags) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: cannot create the \"%V\" subrequest", uri);
        return NGX_ERROR;
    }

    call->sr = sr;
    call->issued = 1;
    call->start = ngx_current_msec;

    if (ngx_http_x402_facilitator_body(r, sr, &ctx->fac_body) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "x402: POST \"%V\"%s, %uz bytes", uri,
                   background ? " in the background" : "",
                   ctx->fac_body.len);

    return NGX_OK;
}


/* a /verify or /settle of ours, a settlement retry, a GET /supported:
 * never priced */

ngx_uint_t
ngx_http_x402_own_subrequest(ngx_http_request_t *sr)
{
    ngx_http_post_subrequest_t  *ps;

    ps = sr->post_subrequest;

    return ps != NULL
           && (ps->handler == ngx_http_x402_facilitator_done
               || ps->handler == ngx_http_x402_retry_post
               || ps->handler == ngx_http_x402_supported_post);
}


/*
 * Turns the subrequest into a POST with our body, the way
 * ngx.location.capture does: the request body is a memory buffer that the
 * proxy module sends as is, with Content-Length from content_length_n;
 * headers_in is a struct copy of the parent's, so it gets a list of its
 * own instead of sharing (and pushing onto) the parent's.
 */

static ngx_int_t
ngx_http_x402_facilitator_body(ngx_http_request_t *r, ngx_http_request_t *sr,
    ngx_str_t *body)
{
    ngx_buf_t                *b;
    ngx_chain_t              *cl;
    ngx_table_elt_t          *h;
    ngx_http_request_body_t  *rb;

    sr->method = NGX_HTTP_POST;
    sr->method_name = ngx_http_x402_post_method;
    sr->header_only = 0;

    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    if (rb == NULL) {
        return NGX_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->start = b->pos;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    rb->bufs = cl;
    rb->buf = b;

    sr->request_body = rb;

    /*
     * headers_in is a struct copy of the client's: besides the list, its
     * pointers and arrays (Cookie, X-Forwarded-For read by
     * $proxy_add_x_forwarded_for, Host, User-Agent ...) would hand the
     * client's headers to the facilitator location's variables. Nothing of
     * them is kept.
     */

    ngx_memzero(&sr->headers_in, sizeof(ngx_http_headers_in_t));

    sr->headers_in.content_length_n = body->len;
    sr->headers_in.keep_alive_n = -1;

    if (ngx_list_init(&sr->headers_in.headers, r->pool, 2,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    h = ngx_list_push(&sr->headers_in.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&h->key, "Content-Type");
    ngx_str_set(&h->value, "application/json");
    h->lowcase_key = (u_char *) "content-type";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    sr->headers_in.content_type = h;

    h = ngx_list_push(&sr->headers_in.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&h->key, "Accept");
    ngx_str_set(&h->value, "application/json");
    h->lowcase_key = (u_char *) "accept";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * Called at every finalization of the subrequest: with an HTTP error code
 * before nginx sends its error page (then again), with NGX_OK (or
 * NGX_AGAIN) once the answer is in memory, with NGX_ERROR when it failed
 * (nginx then terminates the whole request: nothing is served).
 */

static ngx_int_t
ngx_http_x402_facilitator_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_x402_ctx_t *ctx = data;

    ngx_buf_t                 *b;
    ngx_http_x402_call_t      *call;
    ngx_http_core_loc_conf_t  *clcf;

    if (sr == ctx->verify.sr) {
        call = &ctx->verify;

    } else if (sr == ctx->settle.sr) {
        call = &ctx->settle;

    } else {
        return rc;
    }

    if (call->done) {
        return rc;
    }

    if (rc == NGX_ERROR || sr->connection->error) {
        call->failed = 1;
        call->done = 1;

        /*
         * nginx terminates the client's request now (an answer too big for
         * subrequest_output_buffer_size, the client gone): nothing is
         * served and the payment stays reserved until it expires, but the
         * facilitator may have settled it, so that gets a record here.
         */

        if (call == &ctx->settle && !sr->background) {
            ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                          "x402: settlement of %V from %V, payment %V: "
                          "answer lost, outcome unknown, nothing served",
                          &ctx->amount, &ctx->payer, &ctx->payment_id);
        }

    } else if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {

        /* nginx's own error (502, 504 ...): the error page comes next */

        call->status = rc;
        call->failed = 1;
        return rc;

    } else {
        if (!call->failed) {
            call->status = sr->headers_out.status;
        }

        if (sr->out && sr->out->buf) {
            b = sr->out->buf;
            call->body.data = b->pos;
            call->body.len = b->last - b->pos;
        }

        call->done = 1;
    }

    call->elapsed = ngx_current_msec - call->start;

    clcf = ngx_http_get_module_loc_conf(sr, ngx_http_core_module);

    if (!clcf->internal && !ngx_http_x402_warned_internal) {
        ngx_http_x402_warned_internal = 1;

        ngx_log_error(NGX_LOG_WARN, sr->connection->log, 0,
                      "x402: the facilitator location serving \"%V\" is "
                      "not \"internal\": clients can reach the facilitator "
                      "through it", &sr->uri);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, sr->connection->log, 0,
                   "x402: facilitator \"%V\" done: rc %i status %ui "
                   "%uz bytes", &sr->uri, rc, call->status,
                   call->body.len);

    if (call == &ctx->settle) {

        if (sr->background) {
            /* async settlement: nobody waits for it, handle it right here */
            (void) ngx_http_x402_settle_result(ctx->request, ctx);

        } else {
            /* x402_settle after: the held response may go now */
            ngx_http_x402_filter_wake(ctx);
        }
    }

    return rc;
}


/* what the client gets when the facilitator could not answer */

ngx_int_t
ngx_http_x402_facilitator_broken_status(ngx_http_x402_call_t *call)
{
    if (call->status == NGX_HTTP_GATEWAY_TIME_OUT
        || call->status == NGX_HTTP_SERVICE_UNAVAILABLE)
    {
        return call->status;
    }

    return NGX_HTTP_BAD_GATEWAY;
}

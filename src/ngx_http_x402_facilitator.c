
/*
 * ngx_http_x402_module: /verify and /settle as subrequests.
 *
 * The facilitator is an internal location of the operator's (typically
 * "internal; proxy_pass https://facilitator/;"), so TLS, keepalive,
 * timeouts, retries and auth headers are ordinary nginx configuration. The
 * subrequest is a POST carrying the JSON built by the core (or, for GET
 * /supported, a GET), with a fresh header list: nothing of the client's
 * request (cookies, authorization, the payment header itself) reaches the
 * facilitator. Its answer is read in memory (subrequest_output_buffer_size
 * bounds it).
 */


#include "ngx_http_x402_module.h"
#include "ngx_http_x402_metrics.h"


/* the caller's post-subrequest handler, behind our one (own_subrequest) */
typedef struct {
    ngx_http_post_subrequest_pt  handler;
    void                        *data;
} ngx_http_x402_post_t;


static ngx_int_t ngx_http_x402_facilitator_posted(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static ngx_int_t ngx_http_x402_facilitator_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_x402_count_call(ngx_uint_t endpoint,
    ngx_http_x402_call_t *call, int outcome);
static ngx_int_t ngx_http_x402_facilitator_headers(ngx_http_request_t *r,
    ngx_http_request_t *sr, ngx_str_t *body);
static ngx_int_t ngx_http_x402_facilitator_body(ngx_http_request_t *r,
    ngx_http_request_t *sr, ngx_str_t *body);


static ngx_str_t  ngx_http_x402_get_method = { 3, (u_char *) "GET " };
static ngx_str_t  ngx_http_x402_post_method = { 4, (u_char *) "POST " };

/* once per worker: a configuration mistake, not a per-request event */
static ngx_uint_t  ngx_http_x402_warned_internal;


/*
 * Every facilitator subrequest (/verify, /settle, a settlement retry and
 * its authorizationState call, GET /supported) starts here: a POST of body
 * to uri (a GET of uri when body is NULL), in memory, with fresh headers;
 * handler(sr, data, rc) is the caller's post-subrequest handler.
 */

ngx_int_t
ngx_http_x402_facilitator_request(ngx_http_request_t *r, ngx_str_t *uri,
    ngx_str_t *body, ngx_uint_t flags, ngx_http_post_subrequest_pt handler,
    void *data, ngx_http_request_t **psr)
{
    ngx_http_x402_post_t        *post;
    ngx_http_post_subrequest_t  *ps;

    *psr = NULL;

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    post = ngx_palloc(r->pool, sizeof(ngx_http_x402_post_t));

    if (ps == NULL || post == NULL) {
        return NGX_ERROR;
    }

    post->handler = handler;
    post->data = data;

    ps->handler = ngx_http_x402_facilitator_posted;
    ps->data = post;

    if (ngx_http_subrequest(r, uri, NULL, psr, ps,
                            flags | NGX_HTTP_SUBREQUEST_IN_MEMORY)
        != NGX_OK)
    {
        *psr = NULL;
        return NGX_ERROR;
    }

    return ngx_http_x402_facilitator_headers(r, *psr, body);
}


static ngx_int_t
ngx_http_x402_facilitator_posted(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_x402_post_t  *post = data;

    return post->handler(sr, post->data, rc);
}


/*
 * A /verify or /settle for the request's ctx, waited for; done(ctx), if
 * given, runs once the answer is in call (or lost). An async settlement
 * is never one: it runs from a request of its own (retry.c).
 */

ngx_int_t
ngx_http_x402_facilitator_call(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_http_x402_call_t *call, ngx_str_t *uri,
    ngx_http_x402_call_done_pt done)
{
    ngx_int_t            rc;
    ngx_http_request_t  *sr;

    ngx_memzero(call, sizeof(ngx_http_x402_call_t));

    call->handler = done;

    rc = ngx_http_x402_facilitator_request(r, uri, &ctx->fac_body,
                                        NGX_HTTP_SUBREQUEST_WAITED,
                                        ngx_http_x402_facilitator_done, ctx,
                                        &sr);

    if (sr == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: cannot create the \"%V\" subrequest", uri);
        return NGX_ERROR;
    }

    call->sr = sr;
    call->issued = 1;
    call->start = ngx_current_msec;

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "x402: POST \"%V\", %uz bytes", uri, ctx->fac_body.len);

    return NGX_OK;
}


/* a /verify or /settle of ours, a settlement retry, a GET /supported:
 * never priced */

ngx_uint_t
ngx_http_x402_own_subrequest(ngx_http_request_t *sr)
{
    ngx_http_post_subrequest_t  *ps;

    ps = sr->post_subrequest;

    return ps != NULL && ps->handler == ngx_http_x402_facilitator_posted;
}


/*
 * The answer of a call a background request made (a settlement retry,
 * GET /supported), for its post-subrequest handler: 0 when there is none
 * (status and body untouched), else the status (nginx's own error, 502,
 * 504, before its error page comes) and the body in memory.
 */

ngx_uint_t
ngx_http_x402_facilitator_answer(ngx_http_request_t *sr, ngx_int_t rc,
    ngx_uint_t *status, ngx_str_t *body)
{
    ngx_buf_t  *b;

    if (rc == NGX_ERROR || sr->connection->error) {
        return 0;
    }

    *status = (rc >= NGX_HTTP_SPECIAL_RESPONSE) ? (ngx_uint_t) rc
                                                : sr->headers_out.status;

    if (sr->out && sr->out->buf) {
        b = sr->out->buf;
        body->data = b->pos;
        body->len = b->last - b->pos;

    } else {
        ngx_str_null(body);
    }

    return 1;
}


/*
 * Gives the subrequest fresh headers: headers_in is a struct copy of the
 * parent's, so it gets a list of its own instead of sharing (and pushing
 * onto) the parent's. With a body, a POST (below); without, a GET.
 */

static ngx_int_t
ngx_http_x402_facilitator_headers(ngx_http_request_t *r,
    ngx_http_request_t *sr, ngx_str_t *body)
{
    ngx_table_elt_t  *h;

    sr->header_only = 0;

    /*
     * headers_in is a struct copy of the client's: besides the list, its
     * pointers and arrays (Cookie, X-Forwarded-For read by
     * $proxy_add_x_forwarded_for, Host, User-Agent ...) would hand the
     * client's headers to the facilitator location's variables. Nothing of
     * them is kept.
     */

    ngx_memzero(&sr->headers_in, sizeof(ngx_http_headers_in_t));

    sr->headers_in.content_length_n = -1;
    sr->headers_in.keep_alive_n = -1;

    if (ngx_list_init(&sr->headers_in.headers, r->pool, 2,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (body) {
        if (ngx_http_x402_facilitator_body(r, sr, body) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        sr->method = NGX_HTTP_GET;
        sr->method_name = ngx_http_x402_get_method;
        sr->request_body = NULL;
    }

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
 * Turns the subrequest into a POST with our body, the way
 * ngx.location.capture does: the request body is a memory buffer that the
 * proxy module sends as is, with Content-Length from content_length_n.
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
    sr->headers_in.content_length_n = body->len;

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

        if (call == &ctx->settle) {
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

    if (call->handler) {
        call->handler(ctx);
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


/*
 * A facilitator call's answer parsed by the core (no answer at all is
 * broken), and counted in the metrics: X402_FAC_OK, X402_FAC_REFUSED,
 * X402_FAC_BROKEN, or -1 on allocation failure.
 */

int
ngx_http_x402_parse_call(ngx_http_request_t *r, ngx_http_x402_call_t *call,
    ngx_http_x402_parse_pt parse, ngx_uint_t endpoint,
    x402_facilitator_result_t *res)
{
    int               rc;
    x402_str_t        body;
    x402_allocator_t  a;

    a.alloc = ngx_http_x402_alloc;
    a.ctx = r->pool;

    body.data = (const char *) call->body.data;
    body.len = call->body.len;

    ngx_memzero(res, sizeof(x402_facilitator_result_t));

    if (call->failed) {
        rc = X402_FAC_BROKEN;
        res->reason.data = "no response";
        res->reason.len = sizeof("no response") - 1;

    } else {
        rc = parse((int) call->status, body, &a, res);
    }

    ngx_http_x402_count_call(endpoint, call, rc);

    return rc;
}


static void
ngx_http_x402_count_call(ngx_uint_t endpoint, ngx_http_x402_call_t *call,
    int outcome)
{
    ngx_uint_t  result;

    if (outcome == X402_FAC_OK || outcome == X402_FAC_REFUSED) {
        result = NGX_HTTP_X402_METRICS_FAC_OK;

    } else if (call->failed || call->status == 0
               || call->status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
    {
        result = NGX_HTTP_X402_METRICS_FAC_UNAVAILABLE;

    } else {
        result = NGX_HTTP_X402_METRICS_FAC_MALFORMED;
    }

    ngx_http_x402_metrics_facilitator(endpoint, call->elapsed, result);
}

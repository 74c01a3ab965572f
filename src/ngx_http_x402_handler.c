
/*
 * ngx_http_x402_module: the access-phase state machine.
 *
 *   NEW --(no header)--------------------------------------> 402 FINAL
 *       --(local checks fail)------------------------------> 402 FINAL
 *       --(store: reserve)--> RESERVING (store pending)
 *       --(/verify needed)--> VERIFYING --(refused)--------> 402 FINAL
 *                                       --(broken)---------> 5xx FINAL
 *       --sync--> SETTLING --(ok)--> PASSED (content, PAYMENT-RESPONSE)
 *                          --(refused)---------------------> 402 FINAL
 *       --after--> PASSED (the filters hold the response and settle)
 *       --async--> PASSED (settled by a background subrequest)
 *
 * The ctx lives in an r->pool cleanup slot tagged with this module's
 * cleanup handler: the slot survives internal redirects (which zero
 * r->ctx), so a paid request is never charged twice, and the cleanup
 * releases the core objects when the request ends.
 */


#include "ngx_http_x402_module.h"
#include "ngx_http_x402_metrics.h"
#include "ngx_http_x402_paywall.h"


/* x402_facilitator_parse_verify or x402_facilitator_parse_settle */
typedef int (*ngx_http_x402_parse_pt)(int status, x402_str_t body,
    const x402_allocator_t *a, x402_facilitator_result_t *out);


static ngx_int_t ngx_http_x402_access(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf);
static ngx_int_t ngx_http_x402_start(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_check_payment(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_reserve(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_verify(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static int ngx_http_x402_parse_call(ngx_http_request_t *r,
    ngx_http_x402_call_t *call, ngx_http_x402_parse_pt parse,
    ngx_uint_t endpoint, x402_facilitator_result_t *res);
static ngx_int_t ngx_http_x402_verified(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_proceed(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_settled(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static void ngx_http_x402_ctx_cleanup(void *data);
static ngx_int_t ngx_http_x402_resolve_offer(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_location_offer(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, const x402_offer_t **out);
static void ngx_http_x402_offer_cleanup(void *data);
static ngx_int_t ngx_http_x402_redirected(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);
static ngx_uint_t ngx_http_x402_offer_covers(const x402_offer_t *offer,
    x402_verdict_t *vd);
static ngx_int_t ngx_http_x402_resource_url(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_absolute_host(ngx_http_request_t *r,
    ngx_str_t *host);
static ngx_int_t ngx_http_x402_refuse(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, const char *reason, const char *message);
static ngx_int_t ngx_http_x402_fail(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_uint_t status, const char *error,
    ngx_str_t *detail);
static ngx_int_t ngx_http_x402_finish(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *body, ngx_uint_t error_page);
static ngx_uint_t ngx_http_x402_has_error_page(ngx_http_request_t *r,
    ngx_uint_t status);
static ngx_int_t ngx_http_x402_copy_str(ngx_http_request_t *r,
    ngx_str_t *dst, x402_str_t *src);
static void ngx_http_x402_count_call(ngx_uint_t endpoint,
    ngx_http_x402_call_t *call, int outcome);


static ngx_str_t  ngx_http_x402_json_type = ngx_string("application/json");

static ngx_str_t  ngx_http_x402_required_key = ngx_string("PAYMENT-REQUIRED");
static ngx_str_t  ngx_http_x402_response_key = ngx_string("PAYMENT-RESPONSE");
static ngx_str_t  ngx_http_x402_expose_key =
    ngx_string("Access-Control-Expose-Headers");
static ngx_str_t  ngx_http_x402_expose_value =
    ngx_string("PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE");
static ngx_str_t  ngx_http_x402_cache_key = ngx_string("Cache-Control");
static ngx_str_t  ngx_http_x402_cache_value = ngx_string("no-store");


ngx_int_t
ngx_http_x402_access_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_http_x402_ctx_t       *ctx;
    ngx_http_x402_loc_conf_t  *xlcf;

    /* the access phase skips subrequests already; never charge them */

    if (r != r->main) {
        return NGX_DECLINED;
    }

    xlcf = ngx_http_get_module_loc_conf(r, ngx_http_x402_module);

    rc = ngx_http_x402_access(r, xlcf);

    if (rc != NGX_OK) {
        return rc;
    }

    /*
     * Access to this location's content, paid: the filters settle
     * (x402_settle after) only a response of this location. Reached by
     * error_page without "=code", the request carries the error's status
     * (r->err_status); it is kept aside until the content has shown its
     * own status, so that a paid body under "404" is settled while a
     * failing content handler's error is not.
     */

    ctx = ngx_http_x402_get_ctx(r);

    if (ctx) {
        ctx->paid_conf = xlcf;

        if (ctx->settle_mode == NGX_HTTP_X402_SETTLE_AFTER
            && ctx->status == NGX_HTTP_X402_VERIFIED && r->err_status)
        {
            ctx->err_status = r->err_status;
            r->err_status = 0;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_x402_access(ngx_http_request_t *r, ngx_http_x402_loc_conf_t *xlcf)
{
    ngx_http_x402_ctx_t  *ctx;

    ctx = ngx_http_x402_get_ctx(r);

    if (ctx == NULL || ctx->state == NGX_HTTP_X402_STATE_NEW) {

        if (!xlcf->enable || !xlcf->priced) {
            return NGX_DECLINED;
        }

        if (ngx_http_x402_preflight(r)) {
            /*
             * Not charged, but its handler may answer OPTIONS like GET
             * (an upstream framework, a script): the header filter sends
             * its status and headers only, as for HEAD.
             */
            if (ctx == NULL) {
                ctx = ngx_http_x402_create_ctx(r);
                if (ctx == NULL) {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }
            }

            ctx->preflight = 1;

            return NGX_DECLINED;
        }

        if (ctx) {
            /* a preflight redirected (error_page: now a GET) and charged */
            ctx->preflight = 0;
        }

        return ngx_http_x402_start(r, xlcf, ctx);
    }

    switch (ctx->state) {

    case NGX_HTTP_X402_STATE_RESERVING:
        return ngx_http_x402_reserve(r, ctx);

    case NGX_HTTP_X402_STATE_VERIFYING:
        if (!ctx->verify.done) {
            return NGX_AGAIN;
        }

        return ngx_http_x402_verified(r, ctx);

    case NGX_HTTP_X402_STATE_SETTLING:
        if (!ctx->settle.done) {
            return NGX_AGAIN;
        }

        return ngx_http_x402_settled(r, ctx);

    case NGX_HTTP_X402_STATE_PASSED:

        /*
         * Paid, then internally redirected (try_files, error_page, index,
         * rewrite ... last, X-Accel-Redirect): not charged again where the
         * payment matches this location's offer too.
         */

        if (!xlcf->enable || !xlcf->priced) {
            return NGX_DECLINED;
        }

        return ngx_http_x402_redirected(r, xlcf, ctx);

    default: /* NGX_HTTP_X402_STATE_FINAL */

        /* our own 402/5xx is being served through error_page */

        return NGX_DECLINED;
    }
}


/*
 * Subrequests skip the access phase, so an SSI include (or any subrequest
 * whose body joins the response) would read a priced location free: one
 * is served only when its client request paid (one payment per client
 * request), when the price is free for it, or when it is our own
 * facilitator call. A header_only subrequest (auth_request, mirror) sends
 * no body to the client and runs before the payment: let through.
 */

ngx_int_t
ngx_http_x402_subrequest_handler(ngx_http_request_t *r)
{
    u_char                     amount[X402_MAX_AMOUNT_DIGITS + 1];
    ngx_str_t                  price;
    const char                *err;
    const x402_offer_t        *offer;
    ngx_http_x402_ctx_t       *ctx;
    ngx_http_x402_loc_conf_t  *xlcf;

    if (r == r->main) {
        return NGX_DECLINED;
    }

    xlcf = ngx_http_get_module_loc_conf(r, ngx_http_x402_module);

    if (!xlcf->enable || !xlcf->priced || r->header_only
        || ngx_http_x402_own_subrequest(r))
    {
        return NGX_DECLINED;
    }

    ctx = ngx_http_x402_get_ctx(r);

    if (ctx && ctx->state == NGX_HTTP_X402_STATE_PASSED) {

        /* the client's payment covers what its offer matches only */

        switch (ngx_http_x402_location_offer(r, xlcf, &offer)) {

        case NGX_OK:
            if (offer == ctx->offer
                || ngx_http_x402_offer_covers(offer, &ctx->verdict))
            {
                return NGX_DECLINED;
            }

            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "x402: subrequest \"%V\" to a priced location "
                          "refused: its request's payment does not match "
                          "the location's offer", &r->uri);

            return NGX_HTTP_PAYMENT_REQUIRED;

        case NGX_DECLINED:
            return NGX_DECLINED;

        default:
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (xlcf->offer == NULL && xlcf->price->lengths) {
        switch (ngx_http_x402_variable_price(r, xlcf, amount, &price, &err)) {

        case NGX_ERROR:
            return NGX_HTTP_INTERNAL_SERVER_ERROR;

        case NGX_DECLINED:
            return NGX_DECLINED;

        default:
            break;
        }
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "x402: subrequest \"%V\" to a priced location refused: "
                  "its request did not pay", &r->uri);

    return NGX_HTTP_PAYMENT_REQUIRED;
}


static ngx_int_t
ngx_http_x402_start(ngx_http_request_t *r, ngx_http_x402_loc_conf_t *xlcf,
    ngx_http_x402_ctx_t *ctx)
{
    ngx_int_t  rc;

    if (ctx == NULL) {
        ctx = ngx_http_x402_create_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* $x402_status may have run the local checks already (preaccess) */

    if (ngx_http_x402_checked(r, xlcf, ctx)) {
        rc = ctx->checked_rc;

    } else {
        rc = ngx_http_x402_check(r, xlcf, ctx);
    }

    ctx->checked_conf = NULL;

    switch (rc) {

    case NGX_DECLINED:
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "x402: price is free for this request");
        return NGX_DECLINED;

    case NGX_HTTP_X402_CHECK_NONE:
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "x402: no payment header, 402");

        ctx->status = NGX_HTTP_X402_REQUIRED;

        return ngx_http_x402_send_402(r, ctx, NULL, NULL);

    case NGX_HTTP_X402_CHECK_FAILED:
        return ngx_http_x402_refuse(r, ctx, ctx->checked_reason,
                                    ctx->checked_message);

    case NGX_OK:
        ctx->state = NGX_HTTP_X402_STATE_RESERVING;
        return ngx_http_x402_reserve(r, ctx);

    default:
        ctx->status = NGX_HTTP_X402_ERROR;
        ctx->state = NGX_HTTP_X402_STATE_FINAL;

        if (ctx->reason.len == 0) {
            ngx_str_set(&ctx->reason, "configuration");
        }

        return rc;
    }
}


/*
 * Whether the ctx holds the local checks of this very request state: the
 * same location, URI and static offer (a variable price or payTo may have
 * changed since, so those are checked again), and fresh: limit_req may
 * have delayed the request since, and validBefore is checked against the
 * clock.
 */

ngx_uint_t
ngx_http_x402_checked(ngx_http_request_t *r, ngx_http_x402_loc_conf_t *xlcf,
    ngx_http_x402_ctx_t *ctx)
{
    return ctx->checked_conf == xlcf
           && xlcf->offer != NULL
           && ctx->checked_uri.data == r->uri.data
           && ctx->checked_uri.len == r->uri.len
           && ctx->checked_uri_changes == r->uri_changes
           && ngx_time() - ctx->checked_at <= 1;
}


/*
 * The local checks, no network and nothing sent: the offer, the payment
 * header, its decoding and its match against the offer. Returns
 * NGX_DECLINED (free here), NGX_HTTP_X402_CHECK_NONE (no payment header),
 * NGX_HTTP_X402_CHECK_FAILED (refused: ctx->checked_reason/_message),
 * NGX_OK (passed: the facilitator body is ready) or an HTTP error status.
 * The result is kept in the ctx (see ngx_http_x402_checked) so that an
 * early $x402_status and the access phase share one run.
 */

ngx_int_t
ngx_http_x402_check(ngx_http_request_t *r, ngx_http_x402_loc_conf_t *xlcf,
    ngx_http_x402_ctx_t *ctx)
{
    ngx_int_t  rc;

    /* a previous run's (another location, another URI) results go */

    if (ctx->payment) {
        x402_payment_free(ctx->payment);
        ctx->payment = NULL;
    }

    ngx_memzero(&ctx->verdict, sizeof(x402_verdict_t));
    ngx_str_null(&ctx->payer);
    ngx_str_null(&ctx->payment_id);
    ngx_str_null(&ctx->fac_body);
    ctx->version = 0;

    ctx->checked_conf = xlcf;
    ctx->checked_uri = r->uri;
    ctx->checked_uri_changes = r->uri_changes;
    ctx->checked_at = ngx_time();

    rc = ngx_http_x402_check_payment(r, xlcf, ctx);

    ctx->checked_rc = rc;

    return rc;
}


static ngx_int_t
ngx_http_x402_check_payment(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx)
{
    int                v;
    ngx_int_t          rc;
    ngx_str_t          header;
    const char        *msg;
    x402_str_t         in, body;
    x402_payment_t    *p;
    x402_verdict_t    *vd;
    x402_allocator_t   a;

    ctx->settle_mode = xlcf->settle;
    ctx->verify_mode = xlcf->verify;
    ctx->log_level = xlcf->log_level;
    ctx->verify_uri = xlcf->verify_uri;
    ctx->settle_uri = xlcf->settle_uri;

    rc = ngx_http_x402_resolve_offer(r, xlcf, ctx);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_x402_resource_url(r, xlcf, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_x402_find_payment(r, &header, &v);

    if (rc == NGX_DECLINED) {
        return NGX_HTTP_X402_CHECK_NONE;
    }

    if (rc == NGX_DONE) {
        ctx->checked_reason = "invalid_payload";
        ctx->checked_message = "more than one payment header of one name";
        return NGX_HTTP_X402_CHECK_FAILED;
    }

    ctx->version = v;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "x402: payment header v%d: \"%V\"", v, &header);

    /* local checks: decode, match, verify; no network */

    vd = &ctx->verdict;
    in.data = (const char *) header.data;
    in.len = header.len;

    p = x402_payment_decode(in, v, vd);

    if (p == NULL) {
        if (vd->reason == NULL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "x402: out of memory decoding a payment");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->checked_reason = vd->reason;
        ctx->checked_message = vd->message;
        return NGX_HTTP_X402_CHECK_FAILED;
    }

    ctx->payment = p;

    if (vd->version == 1 || vd->version == 2) {
        ctx->version = vd->version;
    }

    rc = x402_payment_verify(p, ctx->offer, (int64_t) ngx_time(), vd);

    if (ngx_http_x402_copy_str(r, &ctx->payer, &vd->payer) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (vd->payment_id[0] != '\0') {
        ctx->payment_id.data = (u_char *) vd->payment_id;
        ctx->payment_id.len = ngx_strlen(vd->payment_id);
    }

    if (rc != 0 || !vd->ok) {
        ctx->checked_reason = vd->reason ? vd->reason : "invalid_payload";
        ctx->checked_message = vd->message;
        return NGX_HTTP_X402_CHECK_FAILED;
    }

    if (ctx->verify_mode == NGX_HTTP_X402_VERIFY_LOCAL) {
        /* served on local checks: validBefore within the server's window */
        msg = ngx_http_x402_store_window_check(r, ctx);

        if (msg) {
            ctx->checked_reason =
                "invalid_exact_evm_payload_authorization_valid_before";
            ctx->checked_message = msg;
            return NGX_HTTP_X402_CHECK_FAILED;
        }
    }

    if (ngx_http_x402_copy_str(r, &ctx->network, &vd->network) != NGX_OK
        || ngx_http_x402_copy_str(r, &ctx->amount, &vd->value) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "x402: local checks passed, payer %V id %V%s",
                   &ctx->payer, &ctx->payment_id,
                   vd->signature_unchecked ? " (signature unchecked)" : "");

    /* the body of /verify and /settle: the same bytes to both */

    a.alloc = ngx_http_x402_alloc;
    a.ctx = r->pool;

    in.data = (const char *) ctx->resource_url.data;
    in.len = ctx->resource_url.len;

    if (x402_facilitator_request(p, ctx->offer, vd->requirement, in, &a,
                                 &body)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: cannot build the facilitator request");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->fac_body.data = (u_char *) body.data;
    ctx->fac_body.len = body.len;

    return NGX_OK;
}


/*
 * A paid request reached another priced location. A payment buys what it
 * matches: this location's offer must name the same scheme, network,
 * asset, amount and payTo as the authorization, else the request is
 * answered here as unpaid (402 with this location's requirements). Under
 * x402_settle after nothing was settled yet: the reservation is released.
 * Under sync (and async) the payment was settled (queued) for the first
 * location before its content ran; that stands.
 */

static ngx_int_t
ngx_http_x402_redirected(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx)
{
    ngx_int_t            rc;
    const x402_offer_t  *offer;

    rc = ngx_http_x402_location_offer(r, xlcf, &offer);

    if (rc == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    if (offer == ctx->offer || ngx_http_x402_offer_covers(offer, &ctx->verdict))
    {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "x402: already paid, not charged again");
        return NGX_OK;
    }

    ngx_log_error(ctx->log_level, r->connection->log, 0,
                  "x402: payment of %V from %V does not match the offer of "
                  "\"%V\", reached by an internal redirect: 402",
                  &ctx->amount, &ctx->payer, &r->uri);

    ctx->offer = offer;

    ngx_str_set(&ctx->reason, "no_matching_requirement");

    if (ctx->settle_mode == NGX_HTTP_X402_SETTLE_AFTER
        && ctx->status == NGX_HTTP_X402_VERIFIED)
    {
        ngx_http_x402_outcome(r, ctx);
        ctx->status = NGX_HTTP_X402_REQUIRED;
    }

    if (ngx_http_x402_resource_url(r, xlcf, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_x402_send_402(r, ctx, &ctx->reason, NULL);
}


static ngx_uint_t
ngx_http_x402_offer_covers(const x402_offer_t *offer, x402_verdict_t *vd)
{
    size_t                     i, n;
    const x402_requirement_t  *req;

#define ngx_http_x402_same(a, b)                                              \
    ((a).len == (b).len                                                       \
     && ngx_strncasecmp((u_char *) (a).data, (u_char *) (b).data, (a).len)   \
        == 0)

    n = x402_offer_count(offer);

    for (i = 0; i < n; i++) {
        req = x402_offer_get(offer, i);

        if (req == NULL || req->network == NULL) {
            continue;
        }

        if (ngx_http_x402_same(req->scheme, vd->scheme)
            && vd->network.len == ngx_strlen(req->network->caip2)
            && ngx_strncmp(vd->network.data, req->network->caip2,
                           vd->network.len) == 0
            && ngx_http_x402_same(req->asset, vd->asset)
            && ngx_http_x402_same(req->pay_to, vd->pay_to)
            && req->amount.len == vd->value.len
            && ngx_strncmp(req->amount.data, vd->value.data,
                           vd->value.len) == 0)
        {
            return 1;
        }
    }

#undef ngx_http_x402_same

    return 0;
}


static ngx_int_t
ngx_http_x402_reserve(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    ngx_int_t  rc;

    /*
     * The single place where a payment is reserved before anything is
     * served (replay protection, grants): see ngx_http_x402_store_reserve.
     */

    rc = ngx_http_x402_store_reserve(r, ctx);

    switch (rc) {

    case NGX_OK:
        ctx->reserved = 1;
        return ngx_http_x402_verify(r, ctx);

    case NGX_AGAIN:
        return NGX_AGAIN;

    case NGX_DONE:
        ctx->status = NGX_HTTP_X402_REUSED;
        ctx->state = NGX_HTTP_X402_STATE_PASSED;
        return NGX_OK;

    case NGX_DECLINED:
        ctx->status = NGX_HTTP_X402_REPLAYED;
        return ngx_http_x402_refuse(r, ctx, "payment_already_used",
                                    "this authorization was already "
                                    "presented");

    default:
        ctx->status = NGX_HTTP_X402_ERROR;
        ctx->state = NGX_HTTP_X402_STATE_FINAL;

        if (ctx->reason.len == 0) {
            ngx_str_set(&ctx->reason, "store");
        }

        return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
    }
}


static ngx_int_t
ngx_http_x402_verify(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    /* a signature we could not check locally always goes to /verify */

    if (ctx->verify_mode == NGX_HTTP_X402_VERIFY_LOCAL
        && !ctx->verdict.signature_unchecked)
    {
        ctx->status = NGX_HTTP_X402_VERIFIED;
        return ngx_http_x402_proceed(r, ctx);
    }

    if (ngx_http_x402_facilitator_call(r, ctx, &ctx->verify,
                                       &ctx->verify_uri, 0)
        != NGX_OK)
    {
        return ngx_http_x402_fail(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal_error", NULL);
    }

    ctx->state = NGX_HTTP_X402_STATE_VERIFYING;

    return NGX_AGAIN;
}


/*
 * A facilitator call's answer parsed by the core (no answer at all is
 * broken), and counted in the metrics: X402_FAC_OK, X402_FAC_REFUSED,
 * X402_FAC_BROKEN, or -1 on allocation failure.
 */

static int
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


static ngx_int_t
ngx_http_x402_verified(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    int                         rc;
    ngx_str_t                   detail;
    ngx_http_x402_call_t       *call;
    x402_facilitator_result_t   res;

    call = &ctx->verify;

    rc = ngx_http_x402_parse_call(r, call, x402_facilitator_parse_verify,
                                  NGX_HTTP_X402_METRICS_VERIFY, &res);

    switch (rc) {

    case X402_FAC_OK:
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "x402: facilitator verified in %Mms", call->elapsed);

        ctx->status = NGX_HTTP_X402_VERIFIED;
        return ngx_http_x402_proceed(r, ctx);

    case X402_FAC_REFUSED:
        ctx->status = NGX_HTTP_X402_INVALID;
        ngx_http_x402_set_reason(r, ctx, res.reason.data, res.reason.len);
        ngx_http_x402_clean_str(r, &detail, &res.message);

        ngx_log_error(ctx->log_level, r->connection->log, 0,
                      "x402: facilitator refused the payment of %V: "
                      "%V%s%V", &ctx->payer, &ctx->reason,
                      detail.len ? ": " : "", &detail);

        ngx_http_x402_outcome(r, ctx);

        return ngx_http_x402_send_402(r, ctx, &ctx->reason, NULL);

    case X402_FAC_BROKEN:
        ngx_http_x402_set_reason(r, ctx, res.reason.data, res.reason.len);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: facilitator \"%V\" failed: status %ui, %V",
                      &ctx->verify_uri, call->status, &ctx->reason);

        return ngx_http_x402_fail(r, ctx,
                                  ngx_http_x402_facilitator_broken_status(call),
                                  "facilitator_unavailable", NULL);

    default:
        return ngx_http_x402_fail(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal_error", NULL);
    }
}


static ngx_int_t
ngx_http_x402_proceed(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    switch (ctx->settle_mode) {

    case NGX_HTTP_X402_SETTLE_AFTER:

        /* the filters hold the response and settle below 400 */

        ctx->state = NGX_HTTP_X402_STATE_PASSED;
        return NGX_OK;

    case NGX_HTTP_X402_SETTLE_ASYNC:

        /*
         * credit advance: serve now, settle in the background; queued in
         * the store first, bounded: a full queue settles synchronously
         */

        if (ngx_http_x402_store_async(r, ctx) == NGX_OK) {

            if (ngx_http_x402_facilitator_call(r, ctx, &ctx->settle,
                                               &ctx->settle_uri, 1)
                != NGX_OK)
            {
                return ngx_http_x402_fail(r, ctx,
                                          NGX_HTTP_INTERNAL_SERVER_ERROR,
                                          "internal_error", NULL);
            }

            ctx->state = NGX_HTTP_X402_STATE_PASSED;
            return NGX_OK;
        }

        /* fall through */

    default: /* NGX_HTTP_X402_SETTLE_SYNC */

        if (ngx_http_x402_facilitator_call(r, ctx, &ctx->settle,
                                           &ctx->settle_uri, 0)
            != NGX_OK)
        {
            return ngx_http_x402_fail(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "internal_error", NULL);
        }

        ctx->state = NGX_HTTP_X402_STATE_SETTLING;
        return NGX_AGAIN;
    }
}


static ngx_int_t
ngx_http_x402_settled(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_x402_settle_result(r, ctx);

    switch (rc) {

    case X402_FAC_OK:
        ctx->state = NGX_HTTP_X402_STATE_PASSED;
        return NGX_OK;

    case X402_FAC_REFUSED:
        return ngx_http_x402_send_402(r, ctx, &ctx->reason, NULL);

    case X402_FAC_BROKEN:
        return ngx_http_x402_fail(r, ctx,
                          ngx_http_x402_facilitator_broken_status(&ctx->settle),
                          "facilitator_unavailable", NULL);

    default:
        return ngx_http_x402_fail(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal_error", NULL);
    }
}


/*
 * Parses the /settle answer into the ctx, logs the outcome and records it
 * in the store: every settlement, whatever the mode, ends here once.
 * Returns X402_FAC_OK, X402_FAC_REFUSED, X402_FAC_BROKEN or NGX_ERROR.
 */

ngx_int_t
ngx_http_x402_settle_result(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    int                         rc;
    ngx_str_t                   asset, pay_to, detail;
    x402_str_t                  reason, network, payer, header;
    x402_allocator_t            a;
    ngx_http_x402_call_t       *call;
    x402_facilitator_result_t   res;

    call = &ctx->settle;

    a.alloc = ngx_http_x402_alloc;
    a.ctx = r->pool;

    rc = ngx_http_x402_parse_call(r, call, x402_facilitator_parse_settle,
                                  NGX_HTTP_X402_METRICS_SETTLE, &res);

    switch (rc) {

    case X402_FAC_OK:
        ctx->status = NGX_HTTP_X402_SETTLED;

        if (ngx_http_x402_copy_str(r, &ctx->tx, &res.transaction) != NGX_OK) {
            return NGX_ERROR;
        }

        ctx->settle_header.data = (u_char *) res.response_header.data;
        ctx->settle_header.len = res.response_header.len;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "x402: settled %V from %V on %V, tx %V, in %Mms",
                      &ctx->amount, &ctx->payer, &ctx->network, &ctx->tx,
                      call->elapsed);

        asset.data = (u_char *) ctx->verdict.asset.data;
        asset.len = ctx->verdict.asset.len;
        pay_to.data = (u_char *) ctx->verdict.pay_to.data;
        pay_to.len = ctx->verdict.pay_to.len;

        ngx_http_x402_metrics_settlement(NGX_HTTP_X402_METRICS_SETTLE_OK,
                                         &ctx->network, &asset, &pay_to,
                                         &ctx->amount);
        break;

    case X402_FAC_REFUSED:
        ctx->status = NGX_HTTP_X402_INVALID;
        ngx_http_x402_set_reason(r, ctx, res.reason.data, res.reason.len);

        ngx_http_x402_metrics_settlement(NGX_HTTP_X402_METRICS_SETTLE_FAILED,
                                         NULL, NULL, NULL, NULL);

        ngx_http_x402_clean_str(r, &detail, &res.message);

        ngx_log_error(ctx->log_level, r->connection->log, 0,
                      "x402: settlement of %V from %V refused: %V%s%V",
                      &ctx->amount, &ctx->payer, &ctx->reason,
                      detail.len ? ": " : "", &detail);

        if (res.response_header.len) {
            ctx->settle_header.data = (u_char *) res.response_header.data;
            ctx->settle_header.len = res.response_header.len;
            break;
        }

        reason.data = (const char *) ctx->reason.data;
        reason.len = ctx->reason.len;
        network.data = (const char *) ctx->network.data;
        network.len = ctx->network.len;
        payer.data = (const char *) ctx->payer.data;
        payer.len = ctx->payer.len;

        if (x402_settle_failure_header(reason, network, payer, &a, &header)
            != 0)
        {
            return NGX_ERROR;
        }

        ctx->settle_header.data = (u_char *) header.data;
        ctx->settle_header.len = header.len;
        break;

    case X402_FAC_BROKEN:
        ctx->status = NGX_HTTP_X402_ERROR;
        ngx_http_x402_set_reason(r, ctx, res.reason.data, res.reason.len);

        /* served on credit, the store keeps it for a retry */

        ngx_http_x402_metrics_settlement(
                          ctx->settle_mode == NGX_HTTP_X402_SETTLE_ASYNC
                          ? NGX_HTTP_X402_METRICS_SETTLE_PENDING
                          : NGX_HTTP_X402_METRICS_SETTLE_FAILED,
                          NULL, NULL, NULL, NULL);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: settlement of %V from %V failed, facilitator "
                      "\"%V\" status %ui: %V", &ctx->amount, &ctx->payer,
                      &ctx->settle_uri, call->status, &ctx->reason);
        break;

    default:
        return NGX_ERROR;
    }

    ngx_http_x402_outcome(r, ctx);

    return rc;
}


/*
 * The store hooks ngx_http_x402_store_reserve(), ngx_http_x402_store_record()
 * and ngx_http_x402_store_async() are in ngx_http_x402_store_hooks.c.
 */


/* the outcome of a reserved payment goes to the store once */

void
ngx_http_x402_outcome(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    if (!ctx->reserved || ctx->recorded) {
        return;
    }

    ctx->recorded = 1;

    ngx_http_x402_store_record(r, ctx);
}


ngx_http_x402_ctx_t *
ngx_http_x402_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t   *cln;
    ngx_http_x402_ctx_t  *ctx;

    /* the cleanup first: it frees whatever the ctx comes to own */

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_x402_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;

    ngx_memzero(ctx, sizeof(ngx_http_x402_ctx_t));

    ctx->request = r;
    ctx->held_last = &ctx->held;

    cln->handler = ngx_http_x402_ctx_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_x402_module);

    return ctx;
}


static void
ngx_http_x402_ctx_cleanup(void *data)
{
    ngx_http_x402_ctx_t  *ctx = data;

    if (ctx->release.posted) {
        ngx_delete_posted_event(&ctx->release);
    }

    if (ctx->payment) {
        x402_payment_free(ctx->payment);
        ctx->payment = NULL;
    }

}


/*
 * The ctx of the main request, also after an internal redirect has zeroed
 * r->ctx: it is then found again through its tagged pool cleanup.
 */

ngx_http_x402_ctx_t *
ngx_http_x402_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t   *cln;
    ngx_http_x402_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_x402_module);

    /* r->ctx is zeroed by internal redirects and filter finalization (412) */

    if (ctx || !(r->internal || r->filter_finalize)) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_x402_ctx_cleanup) {
            ctx = cln->data;

            if (ctx->request == r) {
                ngx_http_set_ctx(r, ctx, ngx_http_x402_module);
                return ctx;
            }
        }
    }

    return NULL;
}


void *
ngx_http_x402_alloc(void *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


/*
 * A price given by variables, evaluated for this request into amount
 * (X402_MAX_AMOUNT_DIGITS + 1 bytes). Returns NGX_OK (priced),
 * NGX_DECLINED (free), NGX_ABORT (an invalid value: *price and *err say
 * which and why) or NGX_ERROR (the variables could not be evaluated).
 */

ngx_int_t
ngx_http_x402_variable_price(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, u_char *amount, ngx_str_t *price,
    const char **err)
{
    int         rc;
    x402_str_t  in;

    if (ngx_http_complex_value(r, xlcf->price, price) != NGX_OK) {
        return NGX_ERROR;
    }

    in.data = (const char *) price->data;
    in.len = price->len;

    rc = x402_amount_parse(in, (unsigned) xlcf->decimals,
                           (int) xlcf->price_atomic, (char *) amount, err);

    if (rc < 0) {
        return NGX_ABORT;
    }

    return (rc == 0) ? NGX_DECLINED : NGX_OK;
}


static ngx_int_t
ngx_http_x402_resolve_offer(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx)
{
    ngx_int_t                  rc;
    const x402_offer_t        *offer;
    const x402_requirement_t  *first;

    rc = ngx_http_x402_location_offer(r, xlcf, &offer);

    if (rc != NGX_OK) {
        return rc;
    }

    ctx->offer = offer;

    first = x402_offer_get(ctx->offer, 0);

    if (first) {
        ctx->amount.data = (u_char *) first->amount.data;
        ctx->amount.len = first->amount.len;
        ctx->network.data = (u_char *) first->network->caip2;
        ctx->network.len = ngx_strlen(first->network->caip2);
    }

    return NGX_OK;
}


/*
 * The offer of a location for this request: its static offer, or one made
 * from its variables, released with the request (a redirected request may
 * hold several: the payment's and the final location's). Returns NGX_OK,
 * NGX_DECLINED (free for this request) or an HTTP status.
 */

static ngx_int_t
ngx_http_x402_location_offer(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, const x402_offer_t **out)
{
    u_char                    *amount, *pay_to;
    ngx_int_t                  rc;
    ngx_str_t                  price, to;
    x402_str_t                 in, ext;
    const char                *err;
    x402_offer_t              *offer;
    x402_requirement_t         req;
    ngx_pool_cleanup_t        *cln;

    if (xlcf->offer) {
        *out = xlcf->offer;
        return NGX_OK;
    }

    amount = xlcf->static_amount;

    if (xlcf->price->lengths) {
        amount = ngx_pnalloc(r->pool, X402_MAX_AMOUNT_DIGITS + 1);
        if (amount == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_x402_variable_price(r, xlcf, amount, &price, &err);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_ABORT) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "x402: \"x402_price\" \"%V\" gave \"%V\": %s "
                          "(asset decimals: %ui)",
                          &xlcf->price->value, &price, err, xlcf->decimals);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_DECLINED) {
            return NGX_DECLINED;
        }
    }

    pay_to = xlcf->static_pay_to;

    if (xlcf->pay_to->lengths) {
        if (ngx_http_complex_value(r, xlcf->pay_to, &to) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        pay_to = ngx_pnalloc(r->pool, 43);
        if (pay_to == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        in.data = (const char *) to.data;
        in.len = to.len;

        if (x402_address_parse(in, (char *) pay_to, &err) != 0) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "x402: \"x402_pay_to\" \"%V\" gave \"%V\": %s",
                          &xlcf->pay_to->value, &to, err);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_http_x402_requirement(xlcf, amount, pay_to, &req);

    err = NULL;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ext.data = (const char *) xlcf->discovery.data;
    ext.len = xlcf->discovery.len;

    offer = x402_offer_create_ext(&req, 1, ext, &err);

    if (offer == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: cannot create the offer: %s",
                      err ? err : "out of memory");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_x402_offer_cleanup;
    cln->data = offer;

    *out = offer;

    return NGX_OK;
}


static void
ngx_http_x402_offer_cleanup(void *data)
{
    x402_offer_free(data);
}


static ngx_int_t
ngx_http_x402_resource_url(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx)
{
    u_char                    *p;
    size_t                     len;
    ngx_str_t                  scheme, host;
    ngx_uint_t                 port;
    ngx_http_core_srv_conf_t  *cscf;
    u_char                     addr[NGX_SOCKADDR_STRLEN];
    ngx_str_t                  s;

    if (xlcf->resource_url) {
        /* x402_resource_url: the public URL behind a proxy or TLS offload */

        if (ngx_http_complex_value(r, xlcf->resource_url, &ctx->resource_url)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ctx->resource_url.len == 0
            || ctx->resource_url.len > NGX_HTTP_X402_MAX_RESOURCE_URL)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "x402: \"x402_resource_url\" \"%V\" gave %uz "
                          "bytes: must be 1 to %d", &xlcf->resource_url->value,
                          ctx->resource_url.len,
                          NGX_HTTP_X402_MAX_RESOURCE_URL);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    ngx_str_set(&scheme, "http");
    port = 0;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https");
    }
#endif

    if (ngx_http_x402_absolute_host(r, &host) == NGX_OK) {
        /* an absolute-form request line names the host, not Host */

    } else if (r->headers_in.host && r->headers_in.host->value.len) {
        /* validated by nginx; carries the port the client used */
        host = r->headers_in.host->value;

    } else {
        cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
        host = cscf->server_name;

        /* no name, a regex or the catch-all "_": the address, with port */

        if (host.len == 0 || host.data[0] == '~'
            || (host.len == 1 && host.data[0] == '_'))
        {
            s.data = addr;
            s.len = NGX_SOCKADDR_STRLEN;

            if (ngx_connection_local_sockaddr(r->connection, &s, 1)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            host = s;

        } else if (ngx_connection_local_sockaddr(r->connection, NULL, 0)
                   == NGX_OK)
        {
            port = ngx_inet_get_port(r->connection->local_sockaddr);

            if ((port == 80 && scheme.len == 4)
                || (port == 443 && scheme.len == 5))
            {
                port = 0;
            }
        }
    }

    len = scheme.len + sizeof("://") - 1 + host.len + sizeof(":65535") - 1
          + r->unparsed_uri.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->resource_url.data = p;

    p = ngx_sprintf(p, "%V://%V", &scheme, &host);

    if (port) {
        p = ngx_sprintf(p, ":%ui", port);
    }

    p = ngx_cpymem(p, r->unparsed_uri.data, r->unparsed_uri.len);

    ctx->resource_url.len = p - ctx->resource_url.data;

    return NGX_OK;
}


/*
 * "GET http://host:port/path HTTP/1.1": nginx took the host from the
 * request line (and validated it, the port is digits); its authority is
 * read back from r->request_line, the parser's pointers being gone.
 */

static ngx_int_t
ngx_http_x402_absolute_host(ngx_http_request_t *r, ngx_str_t *host)
{
    u_char  *p, *last, *start;

    if (r->headers_in.server.len == 0 || r->request_line.len == 0) {
        return NGX_DECLINED;
    }

    p = r->request_line.data;
    last = p + r->request_line.len;

    p = ngx_strlchr(p, last, ' ');
    if (p == NULL) {
        return NGX_DECLINED;
    }

    p++;

    if (last - p > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        p += 7;

    } else if (last - p > 8
               && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0)
    {
        p += 8;

    } else {
        return NGX_DECLINED;
    }

    start = p;

    while (p < last && *p != '/' && *p != '?' && *p != ' ') {
        p++;
    }

    if (p == start) {
        return NGX_DECLINED;
    }

    host->data = start;
    host->len = p - start;

    return NGX_OK;
}


/*
 * PAYMENT-SIGNATURE (v2) or X-PAYMENT (v1), names compared
 * case-insensitively. Some wallets send both: PAYMENT-SIGNATURE wins, as in
 * the official v2 server. Returns NGX_OK, NGX_DECLINED (none) or NGX_DONE
 * (the chosen header repeated: ambiguous, refused).
 */

ngx_int_t
ngx_http_x402_find_payment(ngx_http_request_t *r, ngx_str_t *value,
    int *version)
{
    ngx_str_t         v1, v2;
    ngx_uint_t        i, n1, n2;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n1 = 0;
    n2 = 0;
    ngx_str_null(&v1);
    ngx_str_null(&v2);

    part = &r->headers_in.headers.part;
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

        if (h[i].key.len == sizeof("PAYMENT-SIGNATURE") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "PAYMENT-SIGNATURE",
                               sizeof("PAYMENT-SIGNATURE") - 1)
               == 0)
        {
            v2 = h[i].value;
            n2++;
            continue;
        }

        if (h[i].key.len == sizeof("X-PAYMENT") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-PAYMENT",
                               sizeof("X-PAYMENT") - 1)
               == 0)
        {
            v1 = h[i].value;
            n1++;
        }
    }

    if (n2) {
        *value = v2;
        *version = 2;
        return (n2 == 1) ? NGX_OK : NGX_DONE;
    }

    if (n1) {
        *value = v1;
        *version = 1;
        return (n1 == 1) ? NGX_OK : NGX_DONE;
    }

    return NGX_DECLINED;
}


/*
 * A CORS preflight (Fetch standard: OPTIONS with Origin and
 * Access-Control-Request-Method) carries no payment and gets no content:
 * it is never charged and reaches the location's own handling.
 */

ngx_uint_t
ngx_http_x402_preflight(ngx_http_request_t *r)
{
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->method != NGX_HTTP_OPTIONS) {
        return 0;
    }

    n = 0;

    part = &r->headers_in.headers.part;
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

        if (h[i].key.len == sizeof("Origin") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Origin",
                               sizeof("Origin") - 1)
               == 0)
        {
            n |= 1;

        } else if (h[i].key.len == sizeof("Access-Control-Request-Method") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                  (u_char *) "Access-Control-Request-Method",
                                  sizeof("Access-Control-Request-Method") - 1)
                      == 0)
        {
            n |= 2;
        }
    }

    return n == 3;
}


/* a client's payment failed a check: 402 with the reason, logged */

static ngx_int_t
ngx_http_x402_refuse(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    const char *reason, const char *message)
{
    if (ctx->status != NGX_HTTP_X402_REPLAYED) {
        ctx->status = NGX_HTTP_X402_INVALID;
    }

    ngx_http_x402_set_reason(r, ctx, reason, ngx_strlen(reason));

    ngx_log_error(ctx->log_level, r->connection->log, 0,
                  "x402: payment refused: %s%s%s%s%V",
                  reason, message ? ": " : "", message ? message : "",
                  ctx->payer.len ? ", payer " : "", &ctx->payer);

    return ngx_http_x402_send_402(r, ctx, &ctx->reason, NULL);
}


/* our side or the facilitator failed: nothing is served */

static ngx_int_t
ngx_http_x402_fail(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    ngx_uint_t status, const char *error, ngx_str_t *detail)
{
    ctx->status = NGX_HTTP_X402_ERROR;
    ctx->state = NGX_HTTP_X402_STATE_FINAL;

    if (ctx->reason.len == 0) {
        ngx_http_x402_set_reason(r, ctx, error, ngx_strlen(error));
    }

    ngx_http_x402_outcome(r, ctx);

    return ngx_http_x402_send_json_error(r, status, error,
                                         detail ? detail : &ctx->reason);
}


void
ngx_http_x402_set_reason(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    const char *reason, size_t len)
{
    x402_str_t  in;

    in.data = reason;
    in.len = reason ? len : 0;

    ngx_http_x402_clean_str(r, &ctx->reason, &in);
}


/*
 * A copy of text a facilitator sent, fit for logs, variables and headers:
 * at most 256 bytes, control characters and non-ASCII replaced by "?".
 */

void
ngx_http_x402_clean_str(ngx_http_request_t *r, ngx_str_t *dst,
    x402_str_t *src)
{
    size_t   i, len;
    u_char  *p, c;

    dst->len = 0;
    dst->data = NULL;

    if (src->data == NULL || src->len == 0) {
        return;
    }

    len = ngx_min(src->len, 256);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return;
    }

    for (i = 0; i < len; i++) {
        c = (u_char) src->data[i];
        p[i] = (c < 0x20 || c >= 0x7f) ? '?' : c;
    }

    dst->data = p;
    dst->len = len;
}


ngx_int_t
ngx_http_x402_push_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *key;
    h->value = *value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * The 402: PAYMENT-REQUIRED (v2) in the header, the v1 JSON in the body,
 * fresh requirements with `error` set to the reason (or "Payment
 * required"). After a refused settlement, PAYMENT-RESPONSE (v2) carries
 * success false. filter_body: called from the response filters
 * (x402_settle after), which send the response themselves: only the
 * headers are set and the body is returned there.
 */

ngx_int_t
ngx_http_x402_send_402(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    ngx_str_t *error, ngx_str_t *filter_body)
{
    x402_str_t         url, err, header, body;
    ngx_str_t          value, content;
    x402_allocator_t   a;

    ctx->state = NGX_HTTP_X402_STATE_FINAL;

    a.alloc = ngx_http_x402_alloc;
    a.ctx = r->pool;

    url.data = (const char *) ctx->resource_url.data;
    url.len = ctx->resource_url.len;

    err.data = error ? (const char *) error->data : NULL;
    err.len = error ? error->len : 0;

    if (x402_offer_render(ctx->offer, url, err, &a, &header, &body) != 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: cannot render the 402");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.data = (u_char *) header.data;
    value.len = header.len;

    if (ngx_http_x402_push_header(r, &ngx_http_x402_required_key, &value)
        != NGX_OK
        || ngx_http_x402_push_header(r, &ngx_http_x402_cache_key,
                                     &ngx_http_x402_cache_value)
           != NGX_OK
        || ngx_http_x402_push_header(r, &ngx_http_x402_expose_key,
                                     &ngx_http_x402_expose_value)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* v1 legacy servers send no X-PAYMENT-RESPONSE on failure */

    if (ctx->settle_header.len && ctx->version == 2) {
        if (ngx_http_x402_push_header(r, &ngx_http_x402_response_key,
                                      &ctx->settle_header)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->header_added = 1;
    }

    content.data = (u_char *) body.data;
    content.len = body.len;

    /*
     * A browser asking without a payment gets the paywall page (or the
     * operator's error_page 402); agents, and every refused payment, get
     * the JSON.
     */

    if (filter_body == NULL && error == NULL
        && ngx_http_x402_paywall_wanted(r))
    {
        return ngx_http_x402_paywall_send(r, ctx->offer, &ctx->resource_url,
                                          &content);
    }

    if (filter_body) {
        r->headers_out.status = NGX_HTTP_PAYMENT_REQUIRED;
        r->headers_out.content_type = ngx_http_x402_json_type;
        r->headers_out.content_type_len = ngx_http_x402_json_type.len;
        r->headers_out.content_length_n = content.len;

        *filter_body = content;

        return NGX_OK;
    }

    return ngx_http_x402_finish(r, NGX_HTTP_PAYMENT_REQUIRED, &content, 0);
}


ngx_int_t
ngx_http_x402_send_json_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *error, ngx_str_t *detail)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   body;

    len = sizeof("{\"error\":\"\",\"message\":\"\"}") - 1
          + ngx_strlen(error)
          + (detail ? detail->len + ngx_escape_json(NULL, detail->data,
                                                    detail->len)
                    : 0);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body.data = p;

    p = ngx_sprintf(p, "{\"error\":\"%s\",\"message\":\"", error);

    if (detail) {
        p = (u_char *) ngx_escape_json(p, detail->data, detail->len);
    }

    *p++ = '"';
    *p++ = '}';

    body.len = p - body.data;

    if (ngx_http_x402_push_header(r, &ngx_http_x402_cache_key,
                                  &ngx_http_x402_cache_value)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_x402_finish(r, status, &body, 1);
}


/*
 * Answers from the access phase. With error_page: where the operator set
 * error_page for the status, nginx's special response does the redirect
 * and keeps the headers pushed above (402s honour error_page for browsers
 * only, in the paywall). Otherwise the JSON is sent here, and NGX_HTTP_OK
 * (not NGX_OK, which would grant access) finalizes the request.
 */

static ngx_int_t
ngx_http_x402_finish(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body, ngx_uint_t error_page)
{
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_chain_t  out;

    if (error_page && ngx_http_x402_has_error_page(r, status)) {
        return status;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    r->headers_out.status = status;
    r->headers_out.content_type = ngx_http_x402_json_type;
    r->headers_out.content_type_len = ngx_http_x402_json_type.len;
    r->headers_out.content_length_n = body->len;

    /*
     * reached through error_page (404 -> a priced URI): the status it set
     * would replace ours, and a 402 a client can pay would read as a 404
     */
    r->err_status = 0;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = body->len ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return (rc == NGX_ERROR) ? NGX_ERROR : NGX_HTTP_OK;
    }

    rc = ngx_http_output_filter(r, &out);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_HTTP_OK;
}


static ngx_uint_t
ngx_http_x402_has_error_page(ngx_http_request_t *r, ngx_uint_t status)
{
    ngx_uint_t                 i;
    ngx_http_err_page_t       *err_page;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (r->error_page || clcf->error_pages == NULL || r->uri_changes == 0) {
        return 0;
    }

    err_page = clcf->error_pages->elts;

    for (i = 0; i < clcf->error_pages->nelts; i++) {
        if ((ngx_uint_t) err_page[i].status == status) {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_x402_copy_str(ngx_http_request_t *r, ngx_str_t *dst,
    x402_str_t *src)
{
    if (src->len == 0) {
        return NGX_OK;
    }

    dst->data = ngx_pnalloc(r->pool, src->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);
    dst->len = src->len;

    return NGX_OK;
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

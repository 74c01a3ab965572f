
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
 *       --async--> PASSED (queued; settled from a request of its own)
 *
 * The request ctx (ngx_http_x402_ctx.c) survives internal redirects, so a
 * paid request is never charged twice.
 */


#include "ngx_http_x402_module.h"
#include "ngx_http_x402_metrics.h"


static ngx_int_t ngx_http_x402_access(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf);
static ngx_int_t ngx_http_x402_start(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_reserve(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_verify(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static void ngx_http_x402_verify_abandoned(void *data);
static ngx_int_t ngx_http_x402_verified(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_proceed(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_settled(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_redirected(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_refuse(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, const char *reason, const char *message);
static ngx_int_t ngx_http_x402_fail(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_uint_t status, const char *error,
    ngx_str_t *detail);


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
        ctx->last_conf = xlcf;

        if (ctx->settle_mode == NGX_HTTP_X402_SETTLE_AFTER
            && ctx->status == NGX_HTTP_X402_VERIFIED && r->err_status)
        {
            ctx->err_status = r->err_status;
            r->err_status = 0;
        }
    }

    return NGX_OK;
}


/*
 * The rewrite phase of every location a paid request reaches (it runs
 * first there, before "return"): notes where the request comes from. An
 * unpriced named location is the paid location's content (filter.c) only
 * when the paid location, or a named location that is its content, sent
 * the request there: one reached through a free location (try_files
 * $uri /free/…, whose own fallback is @site) sends that free location's
 * content, not settled (t/77).
 */

ngx_int_t
ngx_http_x402_location_handler(ngx_http_request_t *r)
{
    ngx_http_x402_ctx_t       *ctx;
    ngx_http_x402_loc_conf_t  *xlcf;
    ngx_http_core_loc_conf_t  *clcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_x402_get_ctx(r);

    if (ctx == NULL || ctx->paid_conf == NULL) {
        return NGX_DECLINED;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    xlcf = ngx_http_get_module_loc_conf(r, ngx_http_x402_module);

    if (clcf->named && xlcf->enable && !xlcf->priced
        && ctx->last_conf != NULL
        && (ctx->last_conf == ctx->paid_conf
            || ctx->last_conf == ctx->named_conf))
    {
        ctx->named_conf = xlcf;
        ctx->named_name = clcf->name;
    }

    ctx->last_conf = xlcf;

    return NGX_DECLINED;
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

    switch (ngx_http_x402_location_offer(r, xlcf, &offer)) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        return NGX_DECLINED;

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
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
    ngx_pool_cleanup_t  *cln;

    /* a signature we could not check locally always goes to /verify */

    if (ctx->verify_mode == NGX_HTTP_X402_VERIFY_LOCAL
        && !ctx->verdict.signature_unchecked)
    {
        ctx->status = NGX_HTTP_X402_VERIFIED;
        return ngx_http_x402_proceed(r, ctx);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return ngx_http_x402_fail(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal_error", NULL);
    }

    cln->handler = ngx_http_x402_verify_abandoned;
    cln->data = ctx;

    if (ngx_http_x402_facilitator_call(r, ctx, &ctx->verify,
                                       &ctx->verify_uri, NULL)
        != NGX_OK)
    {
        return ngx_http_x402_fail(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal_error", NULL);
    }

    ctx->state = NGX_HTTP_X402_STATE_VERIFYING;

    return NGX_AGAIN;
}


/*
 * The request ends while /verify is in flight (the client hung up):
 * nothing was settled or served, so the reservation goes. Kept for the
 * window, it let anyone who signs with a throwaway key and hangs up fill
 * the store with unexpired reservations (503 for every payer, t/75). A
 * cleanup added after the ctx's runs before it (LIFO): the payment is
 * still there.
 */

static void
ngx_http_x402_verify_abandoned(void *data)
{
    ngx_http_x402_ctx_t  *ctx = data;

    if (ctx->state == NGX_HTTP_X402_STATE_VERIFYING) {
        ngx_http_x402_store_abandoned(ctx->request, ctx);
    }
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

        if (ngx_http_x402_filter_watch(r, ctx) != NGX_OK) {
            return ngx_http_x402_fail(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "internal_error", NULL);
        }

        ctx->state = NGX_HTTP_X402_STATE_PASSED;
        return NGX_OK;

    case NGX_HTTP_X402_SETTLE_ASYNC:

        /*
         * credit advance: serve now, settle in the background (retry.c,
         * from a request of its own, never this one: its client's next
         * keep-alive request would wait for the facilitator); queued in
         * the store first, bounded: a full queue settles synchronously
         */

        if (ngx_http_x402_store_async(r, ctx) == NGX_OK) {
            /* its outcome is the background attempt's to record */
            ctx->recorded = 1;
            ctx->state = NGX_HTTP_X402_STATE_PASSED;
            return NGX_OK;
        }

        /* fall through */

    default: /* NGX_HTTP_X402_SETTLE_SYNC */

        if (ngx_http_x402_facilitator_call(r, ctx, &ctx->settle,
                                           &ctx->settle_uri, NULL)
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
 * The store hooks ngx_http_x402_store_reserve(), ngx_http_x402_store_record()
 * and ngx_http_x402_store_async() are in ngx_http_x402_store_hooks.c.
 */


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



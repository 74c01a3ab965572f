
/*
 * ngx_http_x402_store_hooks.c: the glue's store hooks (declared in
 * ngx_http_x402_module.h, called from ngx_http_x402_handler.c), mapped onto
 * the store API of ngx_http_x402_store.h. The store op lives in the glue's
 * ctx (r->pool), which survives internal redirects.
 */

#include "ngx_http_x402_module.h"
#include "ngx_http_x402_store.h"


/*
 * Returns NGX_OK (reserved), NGX_DONE (grant), NGX_DECLINED (replayed),
 * NGX_AGAIN (Redis pending; the request is re-entered when done) or an
 * HTTP status.
 */
ngx_int_t
ngx_http_x402_store_reserve(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    ngx_int_t                  rc;
    const x402_requirement_t  *req;
    ngx_http_x402_store_op_t  *op;

    op = ctx->store;

    if (op == NULL) {
        op = ngx_pcalloc(r->pool, sizeof(ngx_http_x402_store_op_t));
        if (op == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->store = op;

        /* the matched requirement's maxTimeoutSeconds bounds the record */
        req = x402_offer_get(ctx->offer, ctx->verdict.requirement);

        rc = ngx_http_x402_store_op_reserve(r, op, &ctx->verdict,
                                            req ? (time_t) req->max_timeout
                                                : 0);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

    } else if (!op->done) {
        /* woken by something else while Redis answers */
        return NGX_AGAIN;
    }

    switch (op->result) {

    case NGX_HTTP_X402_STORE_FRESH:

        if (op->verify_forced
            && ctx->verify_mode != NGX_HTTP_X402_VERIFY_FACILITATOR)
        {
            /* Redis forgot lately: the chain refuses a used nonce */
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "x402: payment %V verified by the facilitator: "
                          "the fleet store lost its data lately",
                          &ctx->payment_id);
            ctx->verify_mode = NGX_HTTP_X402_VERIFY_FACILITATOR;
        }

        return NGX_OK;

    case NGX_HTTP_X402_STORE_REUSED:
        ctx->tx = op->tx;
        ngx_str_set(&ctx->reason, "grant");
        return NGX_DONE;

    case NGX_HTTP_X402_STORE_REPLAYED:
        ngx_log_error(ctx->log_level, r->connection->log, 0,
                      "x402: payment %V of %V refused: %V",
                      &ctx->payment_id, &ctx->payer, &op->reason);
        return NGX_DECLINED;

    default: /* NGX_HTTP_X402_STORE_UNAVAILABLE */
        ngx_str_set(&ctx->reason, "store_unavailable");
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }
}


/*
 * x402_settle async: queue the settlement (bounded) before serving.
 * NGX_OK: queued, settled in the background from a request of its own;
 * NGX_DECLINED: the queue of unsettled credit is full, settle
 * synchronously.
 */
ngx_int_t
ngx_http_x402_store_async(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    char                        *action;
    u_char                       context[NGX_HTTP_X402_FIRST_CONTEXT];
    ngx_int_t                    rc;
    ngx_log_t                   *log;
    ngx_http_x402_store_op_t    *op;
    ngx_http_x402_first_info_t   info;

    op = ctx->store;

    if (op == NULL) {
        return NGX_DECLINED;
    }

    rc = ngx_http_x402_store_op_async_begin(r, op, &ctx->settle_uri,
                                            &ctx->fac_body);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "x402: async settlement queue full, payment %V "
                      "settles synchronously", &ctx->payment_id);
    }

    if (rc != NGX_OK) {
        return NGX_DECLINED;
    }

    /* something is owed now: a graceful stop waits for the drain */
    ngx_http_x402_retry_owed();

    /*
     * The first attempt runs on a request of its own: on this one it held
     * the client's connection (its next keep-alive request) and access log
     * line until the facilitator answered.
     */
    info.network = ctx->network;
    info.asset.data = (u_char *) ctx->verdict.asset.data;
    info.asset.len = ctx->verdict.asset.len;
    info.pay_to.data = (u_char *) ctx->verdict.pay_to.data;
    info.pay_to.len = ctx->verdict.pay_to.len;
    info.amount = ctx->amount;
    info.payer = ctx->payer;
    info.log_level = ctx->log_level;

    /*
     * Its lines say which request paid, as this request's own settlement
     * did: nginx's context of this request (client, server, request,
     * host), without the request's current action
     */
    log = r->connection->log;
    ngx_str_null(&info.context);

    if (log->handler) {
        action = log->action;
        log->action = NULL;
        info.context.data = context;
        info.context.len = log->handler(log, context, sizeof(context))
                           - context;
        log->action = action;
    }

    if (ngx_http_x402_retry_first(op, &info, r->connection->log) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "x402: payment %V queued, its settlement starts once "
                      "its lease has run out", &ctx->payment_id);
    }

    return NGX_OK;
}


/*
 * The request ends while /verify is in flight (the client hung up):
 * nothing was settled or served, so the reservation goes. Kept for the
 * window, it let anyone who signs with a throwaway key and hangs up fill
 * the zone with unexpired reservations (503 for every payer).
 */
void
ngx_http_x402_store_abandoned(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    if (ctx->store != NULL) {
        ngx_http_x402_store_op_release(r, ctx->store);
    }
}


void
ngx_http_x402_store_record(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    ngx_http_x402_store_op_t  *op;

    op = ctx->store;

    if (op == NULL) {
        return;
    }

    if (op->async) {
        /* queued: its first attempt reports to the store (retry.c) */
        return;
    }

    switch (ctx->status) {

    case NGX_HTTP_X402_SETTLED:
        ngx_http_x402_store_op_settled(r, op, &ctx->tx);
        break;

    case NGX_HTTP_X402_INVALID:
        /* refused by the facilitator: so is every later presentation */
        ngx_http_x402_store_op_failed(r, op, &ctx->reason);
        break;

    default:
        /*
         * Facilitator broken (nothing served: sync) or a response >= 400
         * that was not settled (after): nothing was served and nothing
         * settled, the client may present the payment again.
         */
        ngx_http_x402_store_op_release(r, op);
        break;
    }
}


/*
 * x402_verify local serves on local checks alone: an authorization whose
 * validBefore lies beyond now + maxTimeoutSeconds + margin is refused, so
 * that the record of a served payment (bounded by that window) outlives
 * the authorization itself. Official clients sign validBefore = now +
 * maxTimeoutSeconds. Returns NULL, or the message for the 402.
 */
const char *
ngx_http_x402_store_window_check(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx)
{
    time_t                     now;
    const x402_requirement_t  *req;

    req = x402_offer_get(ctx->offer, ctx->verdict.requirement);
    now = ngx_time();

    if (req == NULL || now < 0) {
        return NULL;
    }

    /* uint64 on both sides: validBefore is saturated, the rest is small */
    if (ctx->verdict.valid_before
        <= (uint64_t) now + req->max_timeout + NGX_HTTP_X402_WINDOW_MARGIN)
    {
        return NULL;
    }

    return "authorization.validBefore is more than maxTimeoutSeconds + "
           NGX_HTTP_X402_WINDOW_MARGIN_TEXT " s ahead: x402_verify local "
           "serves only authorizations that end within the server's window";
}


ngx_http_x402_store_op_t *
ngx_http_x402_store_request_op(ngx_http_request_t *r)
{
    ngx_http_x402_ctx_t  *ctx;

    ctx = ngx_http_x402_get_ctx(r);

    return ctx ? ctx->store : NULL;
}

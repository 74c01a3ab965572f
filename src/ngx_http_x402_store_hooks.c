
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
    ngx_http_x402_store_op_t  *op;

    op = ctx->store;

    if (op == NULL) {
        op = ngx_pcalloc(r->pool, sizeof(ngx_http_x402_store_op_t));
        if (op == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->store = op;

        rc = ngx_http_x402_store_op_reserve(r, op, &ctx->verdict);

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
 * NGX_OK: queued, settle in the background; NGX_DECLINED: the queue of
 * unsettled credit is full, settle synchronously.
 */
ngx_int_t
ngx_http_x402_store_async(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_http_x402_store_op_t  *op;

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

    return (rc == NGX_OK) ? NGX_OK : NGX_DECLINED;
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
        /* queued: settled, or kept for the workers to retry */
        if (ctx->status == NGX_HTTP_X402_SETTLED) {
            ngx_http_x402_store_op_async_done(r, op, NGX_HTTP_X402_SETTLE_OK,
                                              &ctx->tx);

        } else {
            /* a refusal, or an answer lost (it may have settled) */
            ngx_http_x402_store_op_async_done(r, op,
                          (ctx->status == NGX_HTTP_X402_INVALID
                           && ctx->settle.status < 500)
                          ? NGX_HTTP_X402_SETTLE_REFUSED
                          : NGX_HTTP_X402_SETTLE_RETRY,
                          &ctx->reason);
        }

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

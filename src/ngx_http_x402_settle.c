
/*
 * ngx_http_x402_module: where a request's own settlement ends (sync, after,
 * and async's synchronous fallback when its queue is full): the /settle
 * answer parsed into the ctx, logged, counted, and the payment's outcome
 * recorded in the store once. An async settlement runs from a request of
 * its own and ends in retry.c, logged and counted the same way.
 */


#include "ngx_http_x402_module.h"
#include "ngx_http_x402_metrics.h"


/*
 * Parses the /settle answer into the ctx, logs the outcome and records it
 * in the store: every settlement a request waits for ends here once.
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

    /* the option paid: labels of the per-option settlement counters */
    asset.data = (u_char *) ctx->verdict.asset.data;
    asset.len = ctx->verdict.asset.len;
    pay_to.data = (u_char *) ctx->verdict.pay_to.data;
    pay_to.len = ctx->verdict.pay_to.len;

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
                      "x402: settled %V from %V on %V, tx %V, asset %V, "
                      "in %Mms", &ctx->amount, &ctx->payer, &ctx->network,
                      &ctx->tx, &ctx->asset, call->elapsed);

        ngx_http_x402_metrics_settlement(NGX_HTTP_X402_METRICS_SETTLE_OK,
                                         &ctx->network, &asset, &pay_to,
                                         &ctx->amount);
        break;

    case X402_FAC_REFUSED:
        ctx->status = NGX_HTTP_X402_INVALID;
        ngx_http_x402_set_reason(r, ctx, res.reason.data, res.reason.len);

        ngx_http_x402_metrics_settlement(NGX_HTTP_X402_METRICS_SETTLE_FAILED,
                                         &ctx->network, &asset, &pay_to,
                                         NULL);

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

        /* waited for: nothing is served, nothing owed (pending: retry.c) */

        ngx_http_x402_metrics_settlement(NGX_HTTP_X402_METRICS_SETTLE_FAILED,
                                         &ctx->network, &asset, &pay_to,
                                         NULL);

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

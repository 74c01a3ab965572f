
/*
 * Copyright (C) ngx_http_x402_module authors
 *
 * $x402_status before the access phase (see ngx_http_x402_early.h): the
 * access handler's first decision, local checks of the payment included,
 * taken now and kept in the ctx for the access phase.
 */


#include "ngx_http_x402_early.h"


ngx_int_t
ngx_http_x402_early_status(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_http_x402_ctx_t       *ctx;
    ngx_http_x402_loc_conf_t  *xlcf;

    if (r != r->main) {
        return NGX_HTTP_X402_NONE;
    }

    xlcf = ngx_http_get_module_loc_conf(r, ngx_http_x402_module);

    if (xlcf == NULL || !xlcf->enable || !xlcf->priced
        || ngx_http_x402_preflight(r))
    {
        return NGX_HTTP_X402_NONE;
    }

    ctx = ngx_http_x402_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_http_x402_create_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_X402_NONE;
        }
    }

    if (ctx->state != NGX_HTTP_X402_STATE_NEW) {
        return ctx->status;
    }

    if (ngx_http_x402_checked(r, xlcf, ctx)) {
        rc = ctx->checked_rc;

    } else {
        rc = ngx_http_x402_check(r, xlcf, ctx);
    }

    switch (rc) {

    case NGX_HTTP_X402_CHECK_NONE:
        return NGX_HTTP_X402_REQUIRED;

    case NGX_HTTP_X402_CHECK_FAILED:
        /* $x402_reason too, for the log line of a request refused early */
        if (ctx->reason.len == 0) {
            ngx_http_x402_set_reason(r, ctx, ctx->checked_reason,
                                     ngx_strlen(ctx->checked_reason));
        }

        return NGX_HTTP_X402_INVALID;

    case NGX_OK:
        /* passed the local checks: the facilitator decides */
        return NGX_DECLINED;

    default:
        /* free, or a bad price the access handler reports with a 500 */
        return NGX_HTTP_X402_NONE;
    }
}

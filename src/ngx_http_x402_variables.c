
/*
 * ngx_http_x402_module: $x402_* variables.
 *
 * They read the main request's ctx (found again after internal redirects),
 * so subrequests, the access log and maps agree, and are not cacheable: an
 * after/async settlement changes them after the content ran.
 */


#include "ngx_http_x402_module.h"


static ngx_int_t ngx_http_x402_early_status(ngx_http_request_t *r);


static ngx_int_t ngx_http_x402_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_x402_str_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_x402_vars[] = {

    { ngx_string("x402_status"), NULL,
      ngx_http_x402_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_reason"), NULL,
      ngx_http_x402_str_variable,
      offsetof(ngx_http_x402_ctx_t, reason),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_payer"), NULL,
      ngx_http_x402_str_variable,
      offsetof(ngx_http_x402_ctx_t, payer),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_amount"), NULL,
      ngx_http_x402_str_variable,
      offsetof(ngx_http_x402_ctx_t, amount),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_network"), NULL,
      ngx_http_x402_str_variable,
      offsetof(ngx_http_x402_ctx_t, network),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_asset"), NULL,
      ngx_http_x402_str_variable,
      offsetof(ngx_http_x402_ctx_t, asset),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_tx"), NULL,
      ngx_http_x402_str_variable,
      offsetof(ngx_http_x402_ctx_t, tx),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_payment_id"), NULL,
      ngx_http_x402_str_variable,
      offsetof(ngx_http_x402_ctx_t, payment_id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_x402_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_x402_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_x402_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_int_t             early;
    ngx_uint_t            status;
    ngx_http_x402_ctx_t  *ctx;

    ctx = ngx_http_x402_get_ctx(r);

    if (ctx && ctx->state != NGX_HTTP_X402_STATE_NEW) {
        status = (ngx_uint_t) ctx->status;

    } else {
        /* not decided yet (preaccess: limit_req): see
         * ngx_http_x402_early_status() */
        early = ngx_http_x402_early_status(r);

        if (early == NGX_DECLINED) {
            v->len = 0;
            v->data = (u_char *) "";
            v->valid = 1;
            v->no_cacheable = 1;
            v->not_found = 0;
            return NGX_OK;
        }

        status = (ngx_uint_t) early;
    }

    if (status > NGX_HTTP_X402_ERROR) {
        status = NGX_HTTP_X402_ERROR;
    }

    v->len = ngx_http_x402_status_names[status].len;
    v->data = ngx_http_x402_status_names[status].data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_x402_str_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t            *s;
    ngx_http_x402_ctx_t  *ctx;

    ctx = ngx_http_x402_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((char *) ctx + data);

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->data = s->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * $x402_status before the access phase: limit_req (preaccess) and maps
 * over it need an answer before the module has decided, and so does the
 * log line of a request refused before the access phase (a limit_req 503).
 *
 * For a request the access handler has not decided yet (no ctx, or a ctx
 * still NGX_HTTP_X402_STATE_NEW); the local checks run here once and their
 * result waits in the ctx for the access phase:
 *   NGX_HTTP_X402_REQUIRED  the location is priced for this request (a
 *                           variable price evaluated now) and there is no
 *                           payment header: the module will answer 402;
 *   NGX_HTTP_X402_INVALID   a payment header that fails the local checks
 *                           (malformed, wrong amount or payee, expired,
 *                           bad signature, repeated): a 402 too;
 *   NGX_HTTP_X402_NONE      free here, x402 off, a CORS preflight, or a
 *                           subrequest;
 *   NGX_DECLINED            a payment that passed the local checks: the
 *                           facilitator decides, $x402_status is "" until
 *                           the access phase.
 */

static ngx_int_t
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

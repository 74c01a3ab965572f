
/*
 * ngx_http_x402_module: $x402_* variables.
 *
 * They read the main request's ctx (found again after internal redirects),
 * so subrequests, the access log and maps agree, and are not cacheable: an
 * after/async settlement changes them after the content ran.
 */


#include "ngx_http_x402_module.h"
#include "ngx_http_x402_early.h"


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
        /* not decided yet (preaccess: limit_req), see ngx_http_x402_early.h */
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


/*
 * Copyright (C) ngx_http_x402_module authors
 *
 * $x402_status before the access phase (see ngx_http_x402_early.h): the
 * same decision the access handler takes first, from the configuration and
 * the request headers alone, without the payment's checks.
 */


#include "ngx_http_x402_early.h"


ngx_int_t
ngx_http_x402_early_status(ngx_http_request_t *r)
{
    int                        version;
    u_char                     amount[X402_MAX_AMOUNT_DIGITS + 1];
    ngx_str_t                  price, header;
    const char                *err;
    ngx_http_x402_loc_conf_t  *xlcf;

    if (r != r->main) {
        return NGX_HTTP_X402_NONE;
    }

    xlcf = ngx_http_get_module_loc_conf(r, ngx_http_x402_module);

    if (xlcf == NULL || !xlcf->enable || !xlcf->priced) {
        return NGX_HTTP_X402_NONE;
    }

    /* free, or a bad price the access handler reports with a 500 */

    if (xlcf->price != NULL && xlcf->price->lengths
        && ngx_http_x402_variable_price(r, xlcf, amount, &price, &err)
           != NGX_OK)
    {
        return NGX_HTTP_X402_NONE;
    }

    if (ngx_http_x402_find_payment(r, &header, &version) != NGX_DECLINED) {
        return NGX_DECLINED;
    }

    return NGX_HTTP_X402_REQUIRED;
}

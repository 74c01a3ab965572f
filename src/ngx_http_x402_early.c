
/*
 * Copyright (C) ngx_http_x402_module authors
 *
 * $x402_status before the access phase (see ngx_http_x402_early.h): the
 * same decision the access handler takes first, from the configuration and
 * the request headers alone, without the payment's checks.
 */


#include "ngx_http_x402_early.h"


static ngx_uint_t ngx_http_x402_early_has_payment(ngx_http_request_t *r);


ngx_int_t
ngx_http_x402_early_status(ngx_http_request_t *r)
{
    int                        rc;
    u_char                     amount[X402_MAX_AMOUNT_DIGITS + 1];
    ngx_str_t                  price;
    x402_str_t                 in;
    const char                *err;
    ngx_http_x402_loc_conf_t  *xlcf;

    if (r != r->main) {
        return NGX_HTTP_X402_NONE;
    }

    xlcf = ngx_http_get_module_loc_conf(r, ngx_http_x402_module);

    if (xlcf == NULL || !xlcf->enable || !xlcf->priced) {
        return NGX_HTTP_X402_NONE;
    }

    if (xlcf->price != NULL && xlcf->price->lengths) {
        if (ngx_http_complex_value(r, xlcf->price, &price) != NGX_OK) {
            return NGX_HTTP_X402_NONE;
        }

        in.data = (const char *) price.data;
        in.len = price.len;

        rc = x402_amount_parse(in, (unsigned) xlcf->decimals,
                               (int) xlcf->price_atomic, (char *) amount,
                               &err);

        /* free, or a bad price the access handler reports with a 500 */
        if (rc <= 0) {
            return NGX_HTTP_X402_NONE;
        }
    }

    if (ngx_http_x402_early_has_payment(r)) {
        return NGX_DECLINED;
    }

    return NGX_HTTP_X402_REQUIRED;
}


static ngx_uint_t
ngx_http_x402_early_has_payment(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if ((h[i].key.len == sizeof("PAYMENT-SIGNATURE") - 1
             && ngx_strncasecmp(h[i].key.data, (u_char *) "PAYMENT-SIGNATURE",
                                sizeof("PAYMENT-SIGNATURE") - 1) == 0)
            || (h[i].key.len == sizeof("X-PAYMENT") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "X-PAYMENT",
                                   sizeof("X-PAYMENT") - 1) == 0))
        {
            return 1;
        }
    }

    return 0;
}


/*
 * ngx_http_x402_paywall: the HTML 402 page for browsers.
 *
 * A request is a browser's when Accept contains "text/html" and User-Agent
 * contains "Mozilla" (the reference middleware's rule: coinbase/x402
 * typescript/packages/core/src/http/x402HTTPResourceServer.ts).
 * `x402_paywall on|off` (http, server, location; default on) switches the
 * built-in page; an operator replaces it with `error_page 402 /page;`,
 * which then serves browsers only: agents keep the JSON 402.
 */

#ifndef _NGX_HTTP_X402_PAYWALL_H_INCLUDED_
#define _NGX_HTTP_X402_PAYWALL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <x402/x402.h>


/* 1 when x402_paywall is on here and the client is a browser. */
ngx_uint_t ngx_http_x402_paywall_wanted(ngx_http_request_t *r);

/*
 * The built-in page for offer into out (r->pool). resource: the absolute
 * URL of the request; json: the v1 JSON 402 body, embedded for scripts
 * (may be NULL or empty). Every injected value is HTML-escaped, and the
 * JSON is escaped for a <script> element.
 */
ngx_int_t ngx_http_x402_paywall_render(ngx_http_request_t *r,
    const x402_offer_t *offer, ngx_str_t *resource, ngx_str_t *json,
    ngx_str_t *out);


#ifndef NGX_HTTP_PAYMENT_REQUIRED
#define NGX_HTTP_PAYMENT_REQUIRED  402
#endif


#endif /* _NGX_HTTP_X402_PAYWALL_H_INCLUDED_ */

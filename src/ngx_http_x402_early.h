
/*
 * $x402_status before the access phase: limit_req (preaccess) and maps
 * over it need an answer before the module has looked at the payment, and
 * so does the log line of a request refused before the access phase (a
 * limit_req 503).
 */

#ifndef _NGX_HTTP_X402_EARLY_H_INCLUDED_
#define _NGX_HTTP_X402_EARLY_H_INCLUDED_


#include "ngx_http_x402_module.h"


/*
 * For a request the access handler has not decided yet (no ctx):
 *   NGX_HTTP_X402_REQUIRED  the location is priced for this request (a
 *                           variable price evaluated now) and there is no
 *                           payment header: the module will answer 402;
 *   NGX_HTTP_X402_NONE      free here, x402 off, or a subrequest;
 *   NGX_DECLINED            a payment header is present: not checked yet,
 *                           $x402_status is "" until the access phase.
 */
ngx_int_t ngx_http_x402_early_status(ngx_http_request_t *r);


#endif /* _NGX_HTTP_X402_EARLY_H_INCLUDED_ */

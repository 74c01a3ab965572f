
/*
 * $x402_status before the access phase: limit_req (preaccess) and maps
 * over it need an answer before the module has decided, and so does the
 * log line of a request refused before the access phase (a limit_req 503).
 */

#ifndef _NGX_HTTP_X402_EARLY_H_INCLUDED_
#define _NGX_HTTP_X402_EARLY_H_INCLUDED_


#include "ngx_http_x402_module.h"


/*
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
ngx_int_t ngx_http_x402_early_status(ngx_http_request_t *r);


#endif /* _NGX_HTTP_X402_EARLY_H_INCLUDED_ */


/*
 * ngx_http_x402_metrics: counters of the x402 module in a shared memory
 * zone of its own ("x402_metrics", created automatically, fixed size),
 * summed over all workers with atomic adds, and the `x402_metrics` content
 * handler that prints them in the Prometheus text format 0.0.4.
 *
 * 402s and payment outcomes are counted by the metrics module itself in the
 * log phase of the main request, from $x402_status and $x402_reason, so the
 * counters agree with the access log. The glue reports what the variables
 * cannot say: facilitator calls and settlements. The store's own counters
 * (errors, fallbacks, pending settlements) are read from its zone at
 * scrape time. Every function is a no-op when the zone does not exist (no
 * http block), and none of them blocks or allocates.
 */

#ifndef _NGX_HTTP_X402_METRICS_H_INCLUDED_
#define _NGX_HTTP_X402_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* facilitator endpoints */
#define NGX_HTTP_X402_METRICS_VERIFY       0
#define NGX_HTTP_X402_METRICS_SETTLE       1

/* facilitator call results */
#define NGX_HTTP_X402_METRICS_FAC_OK           0  /* an answer, yes or no */
#define NGX_HTTP_X402_METRICS_FAC_UNAVAILABLE  1  /* no answer, 5xx, timeout */
#define NGX_HTTP_X402_METRICS_FAC_MALFORMED    2  /* unparseable answer */

/* settlement results */
#define NGX_HTTP_X402_METRICS_SETTLE_OK        0
#define NGX_HTTP_X402_METRICS_SETTLE_FAILED    1  /* refused: final */
#define NGX_HTTP_X402_METRICS_SETTLE_PENDING   2  /* kept for a retry */


/*
 * One facilitator subrequest finished: endpoint (VERIFY, SETTLE), how long
 * it took, and how (FAC_*). Feeds the latency histogram and the errors.
 */
void ngx_http_x402_metrics_facilitator(ngx_uint_t endpoint,
    ngx_msec_t elapsed, ngx_uint_t result);

/*
 * A settlement ended (SETTLE_OK, SETTLE_FAILED) or was recorded for a retry
 * (SETTLE_PENDING). On SETTLE_OK, amount (atomic units, decimal digits) is
 * added exactly to the revenue of (network, asset, pay_to); the strings may
 * be empty for the other results.
 */
void ngx_http_x402_metrics_settlement(ngx_uint_t result,
    ngx_str_t *network, ngx_str_t *asset, ngx_str_t *pay_to,
    ngx_str_t *amount);

/*
 * A settlement retried in the background succeeded: body is the /settle
 * request that was sent; its paymentRequirements (v1 or v2) give network,
 * asset, payTo and amount for the revenue. Counts SETTLE_OK.
 */
void ngx_http_x402_metrics_settled_request(ngx_str_t *body);


#endif /* _NGX_HTTP_X402_METRICS_H_INCLUDED_ */

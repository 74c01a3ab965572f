
/*
 * ngx_http_x402_module: every byte the module writes to a client.
 *
 * The 402 (the JSON body with PAYMENT-REQUIRED, or the HTML page
 * ngx_http_x402_paywall.c renders for a browser), JSON errors, the x402
 * headers, and the one finish that sends them, with its error_page probe.
 * The settle-after filter's replacement body is built here too
 * (ngx_http_x402_send_402() with filter_body) and sent by the filter.
 */


#include "ngx_http_x402_module.h"
#include "ngx_http_x402_paywall.h"


static ngx_int_t ngx_http_x402_finish(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *body, ngx_uint_t error_page);
static ngx_uint_t ngx_http_x402_has_error_page(ngx_http_request_t *r,
    ngx_uint_t status);
static ngx_int_t ngx_http_x402_paywall_send(ngx_http_request_t *r,
    const x402_offer_t *offer, ngx_str_t *resource, ngx_str_t *json);


static ngx_str_t  ngx_http_x402_json_type = ngx_string("application/json");

static ngx_str_t  ngx_http_x402_required_key = ngx_string("PAYMENT-REQUIRED");
static ngx_str_t  ngx_http_x402_response_key = ngx_string("PAYMENT-RESPONSE");
static ngx_str_t  ngx_http_x402_expose_key =
    ngx_string("Access-Control-Expose-Headers");
static ngx_str_t  ngx_http_x402_expose_value =
    ngx_string("PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE");
static ngx_str_t  ngx_http_x402_cache_key = ngx_string("Cache-Control");
static ngx_str_t  ngx_http_x402_cache_value = ngx_string("no-store");


ngx_int_t
ngx_http_x402_push_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *key;
    h->value = *value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * The 402: PAYMENT-REQUIRED (v2) in the header, the v1 JSON in the body,
 * fresh requirements with `error` set to the reason (or "Payment
 * required"). After a refused settlement, PAYMENT-RESPONSE (v2) carries
 * success false. filter_body: called from the response filters
 * (x402_settle after), which send the response themselves: only the
 * headers are set and the body is returned there.
 */

ngx_int_t
ngx_http_x402_send_402(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    ngx_str_t *error, ngx_str_t *filter_body)
{
    x402_str_t         url, err, header, body;
    ngx_str_t          value, content;
    x402_allocator_t   a;

    ctx->state = NGX_HTTP_X402_STATE_FINAL;

    a.alloc = ngx_http_x402_alloc;
    a.ctx = r->pool;

    url.data = (const char *) ctx->resource_url.data;
    url.len = ctx->resource_url.len;

    err.data = error ? (const char *) error->data : NULL;
    err.len = error ? error->len : 0;

    if (x402_offer_render(ctx->offer, url, err, &a, &header, &body) != 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: cannot render the 402");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.data = (u_char *) header.data;
    value.len = header.len;

    if (ngx_http_x402_push_header(r, &ngx_http_x402_required_key, &value)
        != NGX_OK
        || ngx_http_x402_push_header(r, &ngx_http_x402_cache_key,
                                     &ngx_http_x402_cache_value)
           != NGX_OK
        || ngx_http_x402_push_header(r, &ngx_http_x402_expose_key,
                                     &ngx_http_x402_expose_value)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* v1 legacy servers send no X-PAYMENT-RESPONSE on failure */

    if (ctx->settle_header.len && ctx->version == 2) {
        if (ngx_http_x402_push_header(r, &ngx_http_x402_response_key,
                                      &ctx->settle_header)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->header_added = 1;
    }

    content.data = (u_char *) body.data;
    content.len = body.len;

    /*
     * A browser asking without a payment gets the paywall page (or the
     * operator's error_page 402); agents, and every refused payment, get
     * the JSON.
     */

    if (filter_body == NULL && error == NULL
        && ngx_http_x402_paywall_wanted(r))
    {
        return ngx_http_x402_paywall_send(r, ctx->offer, &ctx->resource_url,
                                          &content);
    }

    if (filter_body) {
        r->headers_out.status = NGX_HTTP_PAYMENT_REQUIRED;
        r->headers_out.content_type = ngx_http_x402_json_type;
        r->headers_out.content_type_len = ngx_http_x402_json_type.len;
        r->headers_out.content_length_n = content.len;

        *filter_body = content;

        return NGX_OK;
    }

    return ngx_http_x402_finish(r, NGX_HTTP_PAYMENT_REQUIRED, &content, 0);
}


ngx_int_t
ngx_http_x402_send_json_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *error, ngx_str_t *detail)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   body;

    len = sizeof("{\"error\":\"\",\"message\":\"\"}") - 1
          + ngx_strlen(error)
          + (detail ? detail->len + ngx_escape_json(NULL, detail->data,
                                                    detail->len)
                    : 0);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body.data = p;

    p = ngx_sprintf(p, "{\"error\":\"%s\",\"message\":\"", error);

    if (detail) {
        p = (u_char *) ngx_escape_json(p, detail->data, detail->len);
    }

    *p++ = '"';
    *p++ = '}';

    body.len = p - body.data;

    if (ngx_http_x402_push_header(r, &ngx_http_x402_cache_key,
                                  &ngx_http_x402_cache_value)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_x402_finish(r, status, &body, 1);
}


/*
 * Answers from the access phase. With error_page: where the operator set
 * error_page for the status, nginx's special response does the redirect
 * and keeps the headers pushed above (402s honour error_page for browsers
 * only, in the paywall). Otherwise the JSON is sent here, and NGX_HTTP_OK
 * (not NGX_OK, which would grant access) finalizes the request.
 */

static ngx_int_t
ngx_http_x402_finish(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body, ngx_uint_t error_page)
{
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_chain_t  out;

    if (error_page && ngx_http_x402_has_error_page(r, status)) {
        return status;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    r->headers_out.status = status;
    r->headers_out.content_type = ngx_http_x402_json_type;
    r->headers_out.content_type_len = ngx_http_x402_json_type.len;
    r->headers_out.content_length_n = body->len;

    /*
     * reached through error_page (404 -> a priced URI): the status it set
     * would replace ours, and a 402 a client can pay would read as a 404
     */
    r->err_status = 0;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = body->len ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return (rc == NGX_ERROR) ? NGX_ERROR : NGX_HTTP_OK;
    }

    rc = ngx_http_output_filter(r, &out);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_HTTP_OK;
}


static ngx_uint_t
ngx_http_x402_has_error_page(ngx_http_request_t *r, ngx_uint_t status)
{
    ngx_uint_t                 i;
    ngx_http_err_page_t       *err_page;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (r->error_page || clcf->error_pages == NULL || r->uri_changes == 0) {
        return 0;
    }

    err_page = clcf->error_pages->elts;

    for (i = 0; i < clcf->error_pages->nelts; i++) {
        if ((ngx_uint_t) err_page[i].status == status) {
            return 1;
        }
    }

    return 0;
}


/*
 * The 402 for a browser, from the access phase, after the caller has set
 * PAYMENT-REQUIRED and any other headers. The handler returns what this
 * returns: NGX_HTTP_PAYMENT_REQUIRED when `error_page 402` applies here
 * (nginx then serves the operator's page, status 402 and headers kept);
 * NGX_HTTP_OK once the built-in page is sent (finalizes the request);
 * NGX_ERROR or another status on failure.
 */

static ngx_int_t
ngx_http_x402_paywall_send(ngx_http_request_t *r, const x402_offer_t *offer,
    ngx_str_t *resource, ngx_str_t *json)
{
    ngx_int_t                  rc;
    ngx_str_t                  page;
    ngx_buf_t                 *b;
    ngx_uint_t                 i;
    ngx_chain_t                out;
    ngx_http_err_page_t       *err_page;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    /* the conditions of ngx_http_special_response_handler() */
    if (!r->error_page && clcf->error_pages && r->uri_changes != 0) {
        err_page = clcf->error_pages->elts;

        for (i = 0; i < clcf->error_pages->nelts; i++) {
            if (err_page[i].status == NGX_HTTP_PAYMENT_REQUIRED) {
                return NGX_HTTP_PAYMENT_REQUIRED;
            }
        }
    }

    if (ngx_http_x402_paywall_render(r, offer, resource, json, &page)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = page.data;
    b->last = page.data + page.len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_PAYMENT_REQUIRED;
    r->err_status = 0;      /* reached through error_page: still a 402 */
    r->headers_out.content_length_n = page.len;
    ngx_str_set(&r->headers_out.content_type, "text/html; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/html") - 1;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return (rc == NGX_ERROR) ? NGX_ERROR : NGX_HTTP_OK;
    }

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_output_filter(r, &out);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* sent: NGX_HTTP_OK finalizes the request from the access phase */
    return NGX_HTTP_OK;
}

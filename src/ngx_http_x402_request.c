
/*
 * ngx_http_x402_module: what the request asks for and is offered.
 *
 * The payment headers, a CORS preflight, the price (static or from
 * variables), the location's offer, the resource URL and the local checks
 * of a payment against that offer. No I/O, nothing sent to the client.
 */


#include "ngx_http_x402_module.h"


static ngx_int_t ngx_http_x402_check_payment(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);
static ngx_int_t ngx_http_x402_resolve_offer(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);
static void ngx_http_x402_offer_cleanup(void *data);
static ngx_int_t ngx_http_x402_absolute_host(ngx_http_request_t *r,
    ngx_str_t *host);


/*
 * Whether the ctx holds the local checks of this very request state: the
 * same location, URI and static offer (a variable price or payTo may have
 * changed since, so those are checked again), and fresh: limit_req may
 * have delayed the request since, and validBefore is checked against the
 * clock.
 */

ngx_uint_t
ngx_http_x402_checked(ngx_http_request_t *r, ngx_http_x402_loc_conf_t *xlcf,
    ngx_http_x402_ctx_t *ctx)
{
    return ctx->checked_conf == xlcf
           && xlcf->offer != NULL
           && ctx->checked_uri.data == r->uri.data
           && ctx->checked_uri.len == r->uri.len
           && ctx->checked_uri_changes == r->uri_changes
           && ngx_time() - ctx->checked_at <= 1;
}


/*
 * The local checks, no network and nothing sent: the offer, the payment
 * header, its decoding and its match against the offer. Returns
 * NGX_DECLINED (free here), NGX_HTTP_X402_CHECK_NONE (no payment header),
 * NGX_HTTP_X402_CHECK_FAILED (refused: ctx->checked_reason/_message),
 * NGX_OK (passed: the facilitator body is ready) or an HTTP error status.
 * The result is kept in the ctx (see ngx_http_x402_checked) so that an
 * early $x402_status and the access phase share one run.
 */

ngx_int_t
ngx_http_x402_check(ngx_http_request_t *r, ngx_http_x402_loc_conf_t *xlcf,
    ngx_http_x402_ctx_t *ctx)
{
    ngx_int_t  rc;

    /* a previous run's (another location, another URI) results go */

    if (ctx->payment) {
        x402_payment_free(ctx->payment);
        ctx->payment = NULL;
    }

    ngx_memzero(&ctx->verdict, sizeof(x402_verdict_t));
    ngx_str_null(&ctx->payer);
    ngx_str_null(&ctx->payment_id);
    ngx_str_null(&ctx->fac_body);
    ctx->version = 0;

    ctx->checked_conf = xlcf;
    ctx->checked_uri = r->uri;
    ctx->checked_uri_changes = r->uri_changes;
    ctx->checked_at = ngx_time();

    rc = ngx_http_x402_check_payment(r, xlcf, ctx);

    ctx->checked_rc = rc;

    return rc;
}


static ngx_int_t
ngx_http_x402_check_payment(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx)
{
    int                v;
    ngx_int_t          rc;
    ngx_str_t          header;
    const char        *msg;
    x402_str_t         in, body;
    x402_payment_t    *p;
    x402_verdict_t    *vd;
    x402_allocator_t   a;

    ctx->settle_mode = xlcf->settle;
    ctx->verify_mode = xlcf->verify;
    ctx->log_level = xlcf->log_level;
    ctx->verify_uri = xlcf->verify_uri;
    ctx->settle_uri = xlcf->settle_uri;

    rc = ngx_http_x402_resolve_offer(r, xlcf, ctx);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_x402_resource_url(r, xlcf, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_x402_find_payment(r, &header, &v);

    if (rc == NGX_DECLINED) {
        return NGX_HTTP_X402_CHECK_NONE;
    }

    if (rc == NGX_DONE) {
        ctx->checked_reason = "invalid_payload";
        ctx->checked_message = "more than one payment header of one name";
        return NGX_HTTP_X402_CHECK_FAILED;
    }

    ctx->version = v;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "x402: payment header v%d: \"%V\"", v, &header);

    /* local checks: decode, match, verify; no network */

    vd = &ctx->verdict;
    in.data = (const char *) header.data;
    in.len = header.len;

    p = x402_payment_decode(in, v, vd);

    if (p == NULL) {
        if (vd->reason == NULL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "x402: out of memory decoding a payment");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->checked_reason = vd->reason;
        ctx->checked_message = vd->message;
        return NGX_HTTP_X402_CHECK_FAILED;
    }

    ctx->payment = p;

    if (vd->version == 1 || vd->version == 2) {
        ctx->version = vd->version;
    }

    rc = x402_payment_verify(p, ctx->offer, (int64_t) ngx_time(), vd);

    if (ngx_http_x402_copy_str(r, &ctx->payer, &vd->payer) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (vd->payment_id[0] != '\0') {
        ctx->payment_id.data = (u_char *) vd->payment_id;
        ctx->payment_id.len = ngx_strlen(vd->payment_id);
    }

    if (rc != 0 || !vd->ok) {
        ctx->checked_reason = vd->reason ? vd->reason : "invalid_payload";
        ctx->checked_message = vd->message;
        return NGX_HTTP_X402_CHECK_FAILED;
    }

    if (ctx->verify_mode == NGX_HTTP_X402_VERIFY_LOCAL) {
        /* served on local checks: validBefore within the server's window */
        msg = ngx_http_x402_store_window_check(r, ctx);

        if (msg) {
            ctx->checked_reason =
                "invalid_exact_evm_payload_authorization_valid_before";
            ctx->checked_message = msg;
            return NGX_HTTP_X402_CHECK_FAILED;
        }
    }

    if (ngx_http_x402_copy_str(r, &ctx->network, &vd->network) != NGX_OK
        || ngx_http_x402_copy_str(r, &ctx->amount, &vd->value) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "x402: local checks passed, payer %V id %V%s",
                   &ctx->payer, &ctx->payment_id,
                   vd->signature_unchecked ? " (signature unchecked)" : "");

    /* the body of /verify and /settle: the same bytes to both */

    a.alloc = ngx_http_x402_alloc;
    a.ctx = r->pool;

    in.data = (const char *) ctx->resource_url.data;
    in.len = ctx->resource_url.len;

    if (x402_facilitator_request(p, ctx->offer, vd->requirement, in, &a,
                                 &body)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: cannot build the facilitator request");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->fac_body.data = (u_char *) body.data;
    ctx->fac_body.len = body.len;

    return NGX_OK;
}


ngx_uint_t
ngx_http_x402_offer_covers(const x402_offer_t *offer, x402_verdict_t *vd)
{
    size_t                     i, n;
    const x402_requirement_t  *req;

#define ngx_http_x402_same(a, b)                                              \
    ((a).len == (b).len                                                       \
     && ngx_strncasecmp((u_char *) (a).data, (u_char *) (b).data, (a).len)   \
        == 0)

    n = x402_offer_count(offer);

    for (i = 0; i < n; i++) {
        req = x402_offer_get(offer, i);

        if (req == NULL || req->network == NULL) {
            continue;
        }

        if (ngx_http_x402_same(req->scheme, vd->scheme)
            && vd->network.len == ngx_strlen(req->network->caip2)
            && ngx_strncmp(vd->network.data, req->network->caip2,
                           vd->network.len) == 0
            && ngx_http_x402_same(req->asset, vd->asset)
            && ngx_http_x402_same(req->pay_to, vd->pay_to)
            && req->amount.len == vd->value.len
            && ngx_strncmp(req->amount.data, vd->value.data,
                           vd->value.len) == 0)
        {
            return 1;
        }
    }

#undef ngx_http_x402_same

    return 0;
}


/*
 * A price given by variables, evaluated for this request into amount
 * (X402_MAX_AMOUNT_DIGITS + 1 bytes). Returns NGX_OK (priced),
 * NGX_DECLINED (free), NGX_ABORT (an invalid value: *price and *err say
 * which and why) or NGX_ERROR (the variables could not be evaluated).
 */

ngx_int_t
ngx_http_x402_variable_price(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, u_char *amount, ngx_str_t *price,
    const char **err)
{
    int         rc;
    x402_str_t  in;

    if (ngx_http_complex_value(r, xlcf->price, price) != NGX_OK) {
        return NGX_ERROR;
    }

    in.data = (const char *) price->data;
    in.len = price->len;

    rc = x402_amount_parse(in, (unsigned) xlcf->decimals,
                           (int) xlcf->price_atomic, (char *) amount, err);

    if (rc < 0) {
        return NGX_ABORT;
    }

    return (rc == 0) ? NGX_DECLINED : NGX_OK;
}


static ngx_int_t
ngx_http_x402_resolve_offer(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx)
{
    ngx_int_t                  rc;
    const x402_offer_t        *offer;
    const x402_requirement_t  *first;

    rc = ngx_http_x402_location_offer(r, xlcf, &offer);

    if (rc != NGX_OK) {
        return rc;
    }

    ctx->offer = offer;

    first = x402_offer_get(ctx->offer, 0);

    if (first) {
        ctx->amount.data = (u_char *) first->amount.data;
        ctx->amount.len = first->amount.len;
        ctx->network.data = (u_char *) first->network->caip2;
        ctx->network.len = ngx_strlen(first->network->caip2);
    }

    return NGX_OK;
}


/*
 * The offer of a location for this request: its static offer, or one made
 * from its variables, released with the request (a redirected request may
 * hold several: the payment's and the final location's). Returns NGX_OK,
 * NGX_DECLINED (free for this request) or an HTTP status.
 */

ngx_int_t
ngx_http_x402_location_offer(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, const x402_offer_t **out)
{
    u_char                    *amount, *pay_to;
    ngx_int_t                  rc;
    ngx_str_t                  price, to;
    x402_str_t                 in;
    const char                *err;
    x402_offer_t              *offer;
    x402_requirement_t         req;
    ngx_pool_cleanup_t        *cln;

    if (xlcf->offer) {
        *out = xlcf->offer;
        return NGX_OK;
    }

    amount = xlcf->static_amount;

    if (xlcf->price->lengths) {
        amount = ngx_pnalloc(r->pool, X402_MAX_AMOUNT_DIGITS + 1);
        if (amount == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_x402_variable_price(r, xlcf, amount, &price, &err);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_ABORT) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "x402: \"x402_price\" \"%V\" gave \"%V\": %s "
                          "(asset decimals: %ui)",
                          &xlcf->price->value, &price, err, xlcf->decimals);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_DECLINED) {
            return NGX_DECLINED;
        }
    }

    pay_to = xlcf->static_pay_to;

    if (xlcf->pay_to->lengths) {
        if (ngx_http_complex_value(r, xlcf->pay_to, &to) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        pay_to = ngx_pnalloc(r->pool, 43);
        if (pay_to == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        in.data = (const char *) to.data;
        in.len = to.len;

        if (x402_address_parse(in, (char *) pay_to, &err) != 0) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "x402: \"x402_pay_to\" \"%V\" gave \"%V\": %s",
                          &xlcf->pay_to->value, &to, err);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_http_x402_requirement(xlcf, amount, pay_to, &req);

    err = NULL;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    offer = x402_offer_create(&req, 1, &err);

    if (offer == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: cannot create the offer: %s",
                      err ? err : "out of memory");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_x402_offer_cleanup;
    cln->data = offer;

    *out = offer;

    return NGX_OK;
}


static void
ngx_http_x402_offer_cleanup(void *data)
{
    x402_offer_free(data);
}


ngx_int_t
ngx_http_x402_resource_url(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx)
{
    u_char                    *p;
    size_t                     len;
    ngx_str_t                  scheme, host;
    ngx_uint_t                 port;
    ngx_http_core_srv_conf_t  *cscf;
    u_char                     addr[NGX_SOCKADDR_STRLEN];
    ngx_str_t                  s;

    if (xlcf->resource_url) {
        /* x402_resource_url: the public URL behind a proxy or TLS offload */

        if (ngx_http_complex_value(r, xlcf->resource_url, &ctx->resource_url)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ctx->resource_url.len == 0
            || ctx->resource_url.len > NGX_HTTP_X402_MAX_RESOURCE_URL)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "x402: \"x402_resource_url\" \"%V\" gave %uz "
                          "bytes: must be 1 to %d", &xlcf->resource_url->value,
                          ctx->resource_url.len,
                          NGX_HTTP_X402_MAX_RESOURCE_URL);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    ngx_str_set(&scheme, "http");
    port = 0;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https");
    }
#endif

    if (ngx_http_x402_absolute_host(r, &host) == NGX_OK) {
        /* an absolute-form request line names the host, not Host */

    } else if (r->headers_in.host && r->headers_in.host->value.len) {
        /* validated by nginx; carries the port the client used */
        host = r->headers_in.host->value;

    } else {
        cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
        host = cscf->server_name;

        /* no name, a regex or the catch-all "_": the address, with port */

        if (host.len == 0 || host.data[0] == '~'
            || (host.len == 1 && host.data[0] == '_'))
        {
            s.data = addr;
            s.len = NGX_SOCKADDR_STRLEN;

            if (ngx_connection_local_sockaddr(r->connection, &s, 1)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            host = s;

        } else if (ngx_connection_local_sockaddr(r->connection, NULL, 0)
                   == NGX_OK)
        {
            port = ngx_inet_get_port(r->connection->local_sockaddr);

            if ((port == 80 && scheme.len == 4)
                || (port == 443 && scheme.len == 5))
            {
                port = 0;
            }
        }
    }

    len = scheme.len + sizeof("://") - 1 + host.len + sizeof(":65535") - 1
          + r->unparsed_uri.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->resource_url.data = p;

    p = ngx_sprintf(p, "%V://%V", &scheme, &host);

    if (port) {
        p = ngx_sprintf(p, ":%ui", port);
    }

    p = ngx_cpymem(p, r->unparsed_uri.data, r->unparsed_uri.len);

    ctx->resource_url.len = p - ctx->resource_url.data;

    return NGX_OK;
}


/*
 * "GET http://host:port/path HTTP/1.1": nginx took the host from the
 * request line (and validated it, the port is digits); its authority is
 * read back from r->request_line, the parser's pointers being gone.
 */

static ngx_int_t
ngx_http_x402_absolute_host(ngx_http_request_t *r, ngx_str_t *host)
{
    u_char  *p, *last, *start;

    if (r->headers_in.server.len == 0 || r->request_line.len == 0) {
        return NGX_DECLINED;
    }

    p = r->request_line.data;
    last = p + r->request_line.len;

    p = ngx_strlchr(p, last, ' ');
    if (p == NULL) {
        return NGX_DECLINED;
    }

    p++;

    if (last - p > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        p += 7;

    } else if (last - p > 8
               && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0)
    {
        p += 8;

    } else {
        return NGX_DECLINED;
    }

    start = p;

    while (p < last && *p != '/' && *p != '?' && *p != ' ') {
        p++;
    }

    if (p == start) {
        return NGX_DECLINED;
    }

    host->data = start;
    host->len = p - start;

    return NGX_OK;
}


/*
 * PAYMENT-SIGNATURE (v2) or X-PAYMENT (v1), names compared
 * case-insensitively. Some wallets send both: PAYMENT-SIGNATURE wins, as in
 * the official v2 server. Returns NGX_OK, NGX_DECLINED (none) or NGX_DONE
 * (the chosen header repeated: ambiguous, refused).
 */

ngx_int_t
ngx_http_x402_find_payment(ngx_http_request_t *r, ngx_str_t *value,
    int *version)
{
    ngx_str_t         v1, v2;
    ngx_uint_t        i, n1, n2;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n1 = 0;
    n2 = 0;
    ngx_str_null(&v1);
    ngx_str_null(&v2);

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("PAYMENT-SIGNATURE") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "PAYMENT-SIGNATURE",
                               sizeof("PAYMENT-SIGNATURE") - 1)
               == 0)
        {
            v2 = h[i].value;
            n2++;
            continue;
        }

        if (h[i].key.len == sizeof("X-PAYMENT") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-PAYMENT",
                               sizeof("X-PAYMENT") - 1)
               == 0)
        {
            v1 = h[i].value;
            n1++;
        }
    }

    if (n2) {
        *value = v2;
        *version = 2;
        return (n2 == 1) ? NGX_OK : NGX_DONE;
    }

    if (n1) {
        *value = v1;
        *version = 1;
        return (n1 == 1) ? NGX_OK : NGX_DONE;
    }

    return NGX_DECLINED;
}


/*
 * A CORS preflight (Fetch standard: OPTIONS with Origin and
 * Access-Control-Request-Method) carries no payment and gets no content:
 * it is never charged and reaches the location's own handling.
 */

ngx_uint_t
ngx_http_x402_preflight(ngx_http_request_t *r)
{
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->method != NGX_HTTP_OPTIONS) {
        return 0;
    }

    n = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Origin") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Origin",
                               sizeof("Origin") - 1)
               == 0)
        {
            n |= 1;

        } else if (h[i].key.len == sizeof("Access-Control-Request-Method") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                  (u_char *) "Access-Control-Request-Method",
                                  sizeof("Access-Control-Request-Method") - 1)
                      == 0)
        {
            n |= 2;
        }
    }

    return n == 3;
}


/*
 * The location's one requirement, for an offer made at configuration time
 * or, when the price or payTo comes from variables, per request.
 */

void
ngx_http_x402_requirement(ngx_http_x402_loc_conf_t *xlcf, u_char *amount,
    u_char *pay_to, x402_requirement_t *req)
{
    ngx_memzero(req, sizeof(x402_requirement_t));

    req->scheme.data = "exact";
    req->scheme.len = sizeof("exact") - 1;
    req->network = xlcf->network;
    req->amount.data = (const char *) amount;
    req->amount.len = ngx_strlen(amount);
    req->asset.data = (const char *) xlcf->asset_address;
    req->asset.len = ngx_strlen(xlcf->asset_address);
    req->pay_to.data = (const char *) pay_to;
    req->pay_to.len = ngx_strlen(pay_to);
    req->asset_name.data = (const char *) xlcf->asset_name.data;
    req->asset_name.len = xlcf->asset_name.len;
    req->asset_version.data = (const char *) xlcf->asset_version.data;
    req->asset_version.len = xlcf->asset_version.len;
    req->asset_decimals = (unsigned) xlcf->decimals;
    req->max_timeout = (uint64_t) xlcf->max_timeout;
    req->description.data = (const char *) xlcf->description.data;
    req->description.len = xlcf->description.len;
    req->mime_type.data = (const char *) xlcf->mime_type.data;
    req->mime_type.len = xlcf->mime_type.len;
}

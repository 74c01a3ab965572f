
/*
 * Copyright (C) ngx_http_x402_module authors
 *
 * The browser 402 page: price in display units, asset, network, payTo and
 * what to do, built from the location's offer. Agents never see it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_x402_paywall.h"


/* an escaped byte takes at most 6 bytes: "&quot;" or "\u003c" */
#define NGX_HTTP_X402_PAYWALL_ESCAPE  6

/* requirements shown on one page; an offer rarely has more than two */
#define NGX_HTTP_X402_PAYWALL_MAX     8


typedef struct {
    ngx_flag_t             enable;
} ngx_http_x402_paywall_loc_conf_t;


static ngx_uint_t ngx_http_x402_paywall_header_has(ngx_http_request_t *r,
    ngx_str_t *name, char *needle, ngx_uint_t icase);
static u_char *ngx_http_x402_paywall_html(u_char *p, u_char *s, size_t len);
static u_char *ngx_http_x402_paywall_js(u_char *p, u_char *s, size_t len);
static u_char *ngx_http_x402_paywall_price(u_char *p,
    const x402_str_t *amount, unsigned decimals);
static void *ngx_http_x402_paywall_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_x402_paywall_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);


static ngx_command_t  ngx_http_x402_paywall_commands[] = {

    { ngx_string("x402_paywall"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_x402_paywall_loc_conf_t, enable),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_x402_paywall_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_x402_paywall_create_loc_conf, /* create location configuration */
    ngx_http_x402_paywall_merge_loc_conf   /* merge location configuration */
};


ngx_module_t  ngx_http_x402_paywall_module = {
    NGX_MODULE_V1,
    &ngx_http_x402_paywall_module_ctx,     /* module context */
    ngx_http_x402_paywall_commands,        /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static u_char  ngx_http_x402_paywall_head[] =
"<!DOCTYPE html>\n"
"<html lang=\"en\">\n"
"<head>\n"
"<meta charset=\"utf-8\">\n"
"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
"<meta name=\"robots\" content=\"noindex\">\n"
"<title>402 Payment Required</title>\n"
"<style>\n"
"body{margin:0;background:#f4f5f7;color:#1d2330;"
"font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\n"
"main{max-width:40rem;margin:3rem auto;background:#fff;border-radius:12px;"
"box-shadow:0 1px 4px rgba(0,0,0,.12);padding:2rem 2.5rem}\n"
"h1{font-size:1.4rem;margin:0 0 .25rem}\n"
".status{color:#6b7280;margin:0 0 1.5rem}\n"
".offer{border:1px solid #e5e7eb;border-radius:8px;padding:1rem 1.25rem;"
"margin:0 0 1rem}\n"
".price{font-size:2rem;font-weight:600;margin:0}\n"
".network{color:#374151;margin:0 0 .75rem}\n"
"dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;"
"margin:0;font-size:.9rem}\n"
"dt{color:#6b7280}\n"
"dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace;"
"word-break:break-all}\n"
".desc{margin:0 0 1.5rem}\n"
".todo{background:#eef2ff;border-radius:8px;padding:1rem 1.25rem}\n"
".todo h2{font-size:1rem;margin:0 0 .5rem}\n"
".todo p{margin:.25rem 0}\n"
"code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}\n"
"</style>\n";

static u_char  ngx_http_x402_paywall_body[] =
"</head>\n"
"<body>\n"
"<main>\n"
"<h1>Payment required</h1>\n"
"<p class=\"status\">HTTP 402 &middot; x402</p>\n";

static u_char  ngx_http_x402_paywall_todo[] =
"<section class=\"todo\">\n"
"<h2>What to do</h2>\n"
"<p>This content requires an x402 payment. "
"Use an x402-capable client or wallet to pay and retry the request: "
"it signs a stablecoin transfer authorization for the amount above and "
"sends it in the <code>PAYMENT-SIGNATURE</code> header "
"(<code>X-PAYMENT</code> for x402 v1).</p>\n"
"<p>The payment requirements are in this response's "
"<code>PAYMENT-REQUIRED</code> header, and in JSON for clients that do not "
"ask for HTML.</p>\n"
"</section>\n"
"</main>\n"
"</body>\n"
"</html>\n";


ngx_uint_t
ngx_http_x402_paywall_wanted(ngx_http_request_t *r)
{
    ngx_str_t                          accept, ua;
    ngx_http_x402_paywall_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_x402_paywall_module);

    if (!plcf->enable) {
        return 0;
    }

    ngx_str_set(&accept, "Accept");
    ngx_str_set(&ua, "User-Agent");

    /*
     * media types are case-insensitive; "Mozilla" is matched as the
     * reference middleware does, case-sensitively
     */
    return ngx_http_x402_paywall_header_has(r, &accept, "text/html", 1)
           && ngx_http_x402_paywall_header_has(r, &ua, "Mozilla", 0);
}


static ngx_uint_t
ngx_http_x402_paywall_header_has(ngx_http_request_t *r, ngx_str_t *name,
    char *needle, ngx_uint_t icase)
{
    size_t            n;
    u_char           *v, *last;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = ngx_strlen(needle);
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

        if (h[i].key.len != name->len
            || ngx_strncasecmp(h[i].key.data, name->data, name->len) != 0)
        {
            continue;
        }

        v = h[i].value.data;
        last = v + h[i].value.len;

        if (icase) {
            if (ngx_strlcasestrn(v, last, (u_char *) needle, n - 1)
                != NULL)
            {
                return 1;
            }

            continue;
        }

        for ( /* void */ ; v + n <= last; v++) {
            if (ngx_strncmp(v, needle, n) == 0) {
                return 1;
            }
        }
    }

    return 0;
}


ngx_int_t
ngx_http_x402_paywall_render(ngx_http_request_t *r,
    const x402_offer_t *offer, ngx_str_t *resource, ngx_str_t *json,
    ngx_str_t *out)
{
    size_t                     size;
    u_char                    *p, *start;
    ngx_uint_t                 i, n;
    const x402_network_t      *net;
    const x402_requirement_t  *req;

    n = x402_offer_count(offer);

    if (n == 0) {
        return NGX_ERROR;
    }

    if (n > NGX_HTTP_X402_PAYWALL_MAX) {
        n = NGX_HTTP_X402_PAYWALL_MAX;
    }

    size = sizeof(ngx_http_x402_paywall_head)
           + sizeof(ngx_http_x402_paywall_body)
           + sizeof(ngx_http_x402_paywall_todo)
           + 256
           + (resource ? resource->len : 0) * NGX_HTTP_X402_PAYWALL_ESCAPE
           + (json ? json->len : 0) * NGX_HTTP_X402_PAYWALL_ESCAPE;

    for (i = 0; i < n; i++) {
        req = x402_offer_get(offer, i);

        size += 1024
                + (req->amount.len + req->asset_decimals + 4
                   + req->asset_name.len + req->asset.len + req->pay_to.len
                   + req->description.len + req->mime_type.len + 2 * 64)
                  * NGX_HTTP_X402_PAYWALL_ESCAPE;
    }

    start = ngx_pnalloc(r->pool, size);
    if (start == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(start, ngx_http_x402_paywall_head,
                   sizeof(ngx_http_x402_paywall_head) - 1);

    if (json != NULL && json->len) {
        p = ngx_cpymem(p, "<script type=\"application/json\" "
                       "id=\"x402-payment-required\">",
                       sizeof("<script type=\"application/json\" "
                              "id=\"x402-payment-required\">") - 1);
        p = ngx_http_x402_paywall_js(p, json->data, json->len);
        p = ngx_cpymem(p, "</script>\n", sizeof("</script>\n") - 1);
    }

    p = ngx_cpymem(p, ngx_http_x402_paywall_body,
                   sizeof(ngx_http_x402_paywall_body) - 1);

    req = x402_offer_get(offer, 0);

    if (req->description.len) {
        p = ngx_cpymem(p, "<p class=\"desc\" id=\"x402-description\">",
                       sizeof("<p class=\"desc\" id=\"x402-description\">")
                       - 1);
        p = ngx_http_x402_paywall_html(p, (u_char *) req->description.data,
                                       req->description.len);
        p = ngx_cpymem(p, "</p>\n", sizeof("</p>\n") - 1);
    }

    if (n > 1) {
        p = ngx_cpymem(p, "<p>Pay with any one of:</p>\n",
                       sizeof("<p>Pay with any one of:</p>\n") - 1);
    }

    for (i = 0; i < n; i++) {
        req = x402_offer_get(offer, i);
        net = req->network;

        p = ngx_sprintf(p, "<section class=\"offer\" id=\"x402-offer-%ui\">\n"
                        "<p class=\"price\"><span class=\"x402-price\">", i);
        p = ngx_http_x402_paywall_price(p, &req->amount, req->asset_decimals);
        p = ngx_cpymem(p, "</span> <span class=\"x402-asset-name\">",
                       sizeof("</span> <span class=\"x402-asset-name\">")
                       - 1);

        if (net != NULL && net->usdc != NULL
            && req->asset.len == ngx_strlen(net->usdc)
            && ngx_strncasecmp((u_char *) req->asset.data,
                               (u_char *) net->usdc, req->asset.len) == 0)
        {
            /* the EIP-712 name of USDC differs by chain ("USD Coin") */
            p = ngx_cpymem(p, "USDC", 4);

        } else if (req->asset_name.len) {
            p = ngx_http_x402_paywall_html(p, (u_char *) req->asset_name.data,
                                           req->asset_name.len);

        } else {
            p = ngx_cpymem(p, "tokens", 6);
        }

        p = ngx_cpymem(p, "</span></p>\n<p class=\"network\">on ",
                       sizeof("</span></p>\n<p class=\"network\">on ") - 1);

        if (net != NULL) {
            p = ngx_http_x402_paywall_html(p, (u_char *) net->v1_name,
                                           ngx_strlen(net->v1_name));
            p = ngx_cpymem(p, " (", 2);
            p = ngx_http_x402_paywall_html(p, (u_char *) net->caip2,
                                           ngx_strlen(net->caip2));
            p = ngx_cpymem(p, ")", 1);

        } else {
            p = ngx_cpymem(p, "an unknown network", 18);
        }

        p = ngx_cpymem(p,
                       "</p>\n<dl>\n<dt>Pay to</dt><dd class=\"x402-pay-to\">",
                       sizeof("</p>\n<dl>\n<dt>Pay to</dt>"
                              "<dd class=\"x402-pay-to\">") - 1);
        p = ngx_http_x402_paywall_html(p, (u_char *) req->pay_to.data,
                                       req->pay_to.len);

        p = ngx_cpymem(p, "</dd>\n<dt>Asset</dt><dd>",
                       sizeof("</dd>\n<dt>Asset</dt><dd>") - 1);
        p = ngx_http_x402_paywall_html(p, (u_char *) req->asset.data,
                                       req->asset.len);

        p = ngx_sprintf(p, "</dd>\n<dt>Amount</dt><dd>");
        p = ngx_http_x402_paywall_html(p, (u_char *) req->amount.data,
                                       req->amount.len);
        p = ngx_sprintf(p, " atomic units (%ud decimals)</dd>\n",
                        req->asset_decimals);

        p = ngx_sprintf(p, "<dt>Scheme</dt><dd>");
        p = ngx_http_x402_paywall_html(p, (u_char *) req->scheme.data,
                                       req->scheme.len);
        p = ngx_sprintf(p, "</dd>\n<dt>Valid for</dt><dd>%uL seconds</dd>\n",
                        req->max_timeout);

        if (req->mime_type.len) {
            p = ngx_sprintf(p, "<dt>Content</dt><dd>");
            p = ngx_http_x402_paywall_html(p, (u_char *) req->mime_type.data,
                                           req->mime_type.len);
            p = ngx_sprintf(p, "</dd>\n");
        }

        if (i == 0 && resource != NULL && resource->len) {
            p = ngx_sprintf(p, "<dt>Resource</dt><dd id=\"x402-resource\">");
            p = ngx_http_x402_paywall_html(p, resource->data, resource->len);
            p = ngx_sprintf(p, "</dd>\n");
        }

        p = ngx_cpymem(p, "</dl>\n</section>\n",
                       sizeof("</dl>\n</section>\n") - 1);
    }

    p = ngx_cpymem(p, ngx_http_x402_paywall_todo,
                   sizeof(ngx_http_x402_paywall_todo) - 1);

    if ((size_t) (p - start) > size) {
        /* the bound above is wrong: never send a page past its buffer */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "x402: paywall page overflow");
        return NGX_ERROR;
    }

    out->data = start;
    out->len = p - start;

    return NGX_OK;
}


static u_char *
ngx_http_x402_paywall_html(u_char *p, u_char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        switch (s[i]) {

        case '&':
            p = ngx_cpymem(p, "&amp;", 5);
            break;

        case '<':
            p = ngx_cpymem(p, "&lt;", 4);
            break;

        case '>':
            p = ngx_cpymem(p, "&gt;", 4);
            break;

        case '"':
            p = ngx_cpymem(p, "&quot;", 6);
            break;

        case '\'':
            p = ngx_cpymem(p, "&#39;", 5);
            break;

        default:
            *p++ = s[i];
        }
    }

    return p;
}


/*
 * JSON inside <script>: "</script>", "<!--" and friends cannot appear once
 * <, > and & are \u-escaped, which JSON allows anywhere a string is; U+2028
 * and U+2029 are escaped for old JavaScript parsers.
 */
static u_char *
ngx_http_x402_paywall_js(u_char *p, u_char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        switch (s[i]) {

        case '<':
            p = ngx_cpymem(p, "\\u003c", 6);
            break;

        case '>':
            p = ngx_cpymem(p, "\\u003e", 6);
            break;

        case '&':
            p = ngx_cpymem(p, "\\u0026", 6);
            break;

        case 0xe2:
            if (i + 2 < len && s[i + 1] == 0x80
                && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))
            {
                p = ngx_cpymem(p, s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029",
                               6);
                i += 2;
                break;
            }

            /* fall through */

        default:
            *p++ = s[i];
        }
    }

    return p;
}


/* atomic units to display units: "1000", 6 -> "0.001" */
static u_char *
ngx_http_x402_paywall_price(u_char *p, const x402_str_t *amount,
    unsigned decimals)
{
    u_char  buf[2 * X402_MAX_AMOUNT_DIGITS + 2], *d;
    size_t  len, pad, ilen, flen;

    if (amount->len == 0 || amount->len > X402_MAX_AMOUNT_DIGITS
        || decimals > X402_MAX_AMOUNT_DIGITS)
    {
        return ngx_http_x402_paywall_html(p, (u_char *) amount->data,
                                          amount->len);
    }

    /* at least one integer digit: "1000", 6 -> "0001000" */
    pad = (amount->len <= decimals) ? decimals + 1 - amount->len : 0;

    ngx_memset(buf, '0', pad);
    ngx_memcpy(buf + pad, amount->data, amount->len);

    len = pad + amount->len;
    ilen = len - decimals;
    d = buf;

    while (ilen > 1 && *d == '0') {
        d++;
        ilen--;
    }

    flen = decimals;

    while (flen > 0 && d[ilen + flen - 1] == '0') {
        flen--;
    }

    p = ngx_http_x402_paywall_html(p, d, ilen);

    if (flen) {
        *p++ = '.';
        p = ngx_http_x402_paywall_html(p, d + ilen, flen);
    }

    return p;
}


static void *
ngx_http_x402_paywall_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_x402_paywall_loc_conf_t  *conf;

    conf = ngx_palloc(cf->pool, sizeof(ngx_http_x402_paywall_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_x402_paywall_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_x402_paywall_loc_conf_t  *prev = parent;
    ngx_http_x402_paywall_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 1);

    return NGX_CONF_OK;
}

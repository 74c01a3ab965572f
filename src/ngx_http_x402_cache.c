
/*
 * ngx_http_x402_module: paid responses are Cache-Control: private.
 *
 * Every response released for a payment (sync, after, async, a grant
 * reuse, HEAD) carries the payer's PAYMENT-RESPONSE and content a shared
 * cache must not hand to the next client. A module of its own because of
 * where its header filter sits: below the headers filter (expires,
 * add_header), so that what those set is merged too, while the settlement
 * filters stay above it (a response they replace with a 402 gets the
 * operator's "add_header ... always" headers). See ngx_module_order in
 * config.
 */


#include "ngx_http_x402_module.h"


static ngx_int_t ngx_http_x402_cache_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_x402_cache_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_x402_cache_private(ngx_http_request_t *r);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


static ngx_http_module_t  ngx_http_x402_cache_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_x402_cache_init,              /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_x402_cache_module = {
    NGX_MODULE_V1,
    &ngx_http_x402_cache_module_ctx,       /* module context */
    NULL,                                  /* module directives */
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


static ngx_int_t
ngx_http_x402_cache_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_x402_cache_header_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_x402_cache_header_filter(ngx_http_request_t *r)
{
    ngx_http_x402_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_x402_get_ctx(r);

    /* a 402 or 5xx that replaced the content is FINAL: no-store already */

    if (ctx && ctx->state == NGX_HTTP_X402_STATE_PASSED) {
        if (ngx_http_x402_cache_private(r) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_http_next_header_filter(r);
}


/*
 * "private" first, then the directives the content set (an upstream, and
 * expires or add_header: their filter runs before this one), without
 * "public" or another "private". Every Cache-Control
 * line is merged into the first: "public, max-age=60" becomes "private,
 * max-age=60", "no-store" becomes "private, no-store". Quoted strings
 * (no-cache="a, b") are kept whole.
 */

static ngx_int_t
ngx_http_x402_cache_private(ngx_http_request_t *r)
{
    size_t            len, n;
    u_char           *d, *p, *last, *start, *name_end;
    ngx_uint_t        i, quoted;
    ngx_table_elt_t  *h, *cc;
    ngx_list_part_t  *part;
#if (nginx_version < 1023000)
    ngx_table_elt_t **ccp;
#endif

    cc = NULL;
    len = sizeof("private") - 1;

    for (i = 0, part = &r->headers_out.headers.part, h = part->elts;
         /* void */ ;
         i++)
    {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0
            || h[i].key.len != sizeof("Cache-Control") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Cache-Control",
                               sizeof("Cache-Control") - 1)
               != 0)
        {
            continue;
        }

        if (cc == NULL) {
            cc = &h[i];
        }

        /* ", " before each directive: at most one per byte of the value */
        len += 2 * h[i].value.len + 2;
    }

    d = ngx_pnalloc(r->pool, len);
    if (d == NULL) {
        return NGX_ERROR;
    }

    if (cc == NULL) {
        cc = ngx_list_push(&r->headers_out.headers);
        if (cc == NULL) {
            return NGX_ERROR;
        }

        ngx_str_set(&cc->key, "Cache-Control");
        cc->value.len = 0;
        cc->value.data = NULL;
        cc->hash = 1;
    }

    p = ngx_cpymem(d, "private", sizeof("private") - 1);

    for (i = 0, part = &r->headers_out.headers.part, h = part->elts;
         /* void */ ;
         i++)
    {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0
            || h[i].key.len != sizeof("Cache-Control") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Cache-Control",
                               sizeof("Cache-Control") - 1)
               != 0)
        {
            continue;
        }

        start = h[i].value.data;
        last = start + h[i].value.len;

        while (start < last) {

            while (start < last && (*start == ' ' || *start == '\t'
                                    || *start == ','))
            {
                start++;
            }

            /* one directive: up to a comma outside quotes */

            quoted = 0;
            name_end = NULL;

            for (n = 0; start + n < last; n++) {
                if (start[n] == '"') {
                    quoted = !quoted;

                } else if (start[n] == '\\' && quoted
                           && start + n + 1 < last)
                {
                    n++;

                } else if (!quoted && start[n] == ',') {
                    break;

                } else if (!quoted && start[n] == '=' && name_end == NULL) {
                    name_end = start + n;
                }
            }

            if (n == 0) {
                break;
            }

            len = n;

            while (len && (start[len - 1] == ' ' || start[len - 1] == '\t')) {
                len--;
            }

            if (name_end == NULL) {
                name_end = start + len;
            }

            if (!((name_end - start == sizeof("public") - 1
                   && ngx_strncasecmp(start, (u_char *) "public",
                                      sizeof("public") - 1) == 0)
                  || (name_end - start == sizeof("private") - 1
                      && ngx_strncasecmp(start, (u_char *) "private",
                                         sizeof("private") - 1) == 0)))
            {
                *p++ = ',';
                *p++ = ' ';
                p = ngx_cpymem(p, start, len);
            }

            start += n;
        }

        if (&h[i] != cc) {
            h[i].hash = 0;
        }
    }

    cc->value.data = d;
    cc->value.len = p - d;

#if (nginx_version >= 1023000)
    cc->next = NULL;
    r->headers_out.cache_control = cc;
#else
    if (r->headers_out.cache_control.elts == NULL) {
        if (ngx_array_init(&r->headers_out.cache_control, r->pool, 1,
                           sizeof(ngx_table_elt_t *))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    r->headers_out.cache_control.nelts = 0;

    ccp = ngx_array_push(&r->headers_out.cache_control);
    if (ccp == NULL) {
        return NGX_ERROR;
    }

    *ccp = cc;
#endif

    return NGX_OK;
}

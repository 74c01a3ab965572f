
/*
 * ngx_http_x402_module: the request ctx.
 *
 * The ctx lives in an r->pool cleanup slot tagged with this module's
 * cleanup handler: the slot survives internal redirects (which zero
 * r->ctx), so a paid request is never charged twice, and the cleanup
 * releases the core objects when the request ends.
 *
 * Also here, for every file of the request path: the $x402_status names,
 * the reason and string helpers and the core's pool allocator.
 */


#include "ngx_http_x402_module.h"


static void ngx_http_x402_ctx_cleanup(void *data);


ngx_str_t  ngx_http_x402_status_names[] = {
    ngx_string("none"),
    ngx_string("required"),
    ngx_string("invalid"),
    ngx_string("verified"),
    ngx_string("settled"),
    ngx_string("reused"),
    ngx_string("replayed"),
    ngx_string("error")
};


ngx_http_x402_ctx_t *
ngx_http_x402_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t   *cln;
    ngx_http_x402_ctx_t  *ctx;

    /* the cleanup first: it frees whatever the ctx comes to own */

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_x402_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;

    ngx_memzero(ctx, sizeof(ngx_http_x402_ctx_t));

    ctx->request = r;
    ctx->held_last = &ctx->held;

    cln->handler = ngx_http_x402_ctx_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_x402_module);

    return ctx;
}


static void
ngx_http_x402_ctx_cleanup(void *data)
{
    ngx_http_x402_ctx_t  *ctx = data;

    if (ctx->release.posted) {
        ngx_delete_posted_event(&ctx->release);
    }

    if (ctx->payment) {
        x402_payment_free(ctx->payment);
        ctx->payment = NULL;
    }

}


/*
 * The ctx of the main request, also after an internal redirect has zeroed
 * r->ctx: it is then found again through its tagged pool cleanup.
 */

ngx_http_x402_ctx_t *
ngx_http_x402_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t   *cln;
    ngx_http_x402_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_x402_module);

    /* r->ctx is zeroed by internal redirects and filter finalization (412) */

    if (ctx || !(r->internal || r->filter_finalize)) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_x402_ctx_cleanup) {
            ctx = cln->data;

            if (ctx->request == r) {
                ngx_http_set_ctx(r, ctx, ngx_http_x402_module);
                return ctx;
            }
        }
    }

    return NULL;
}


void *
ngx_http_x402_alloc(void *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


void
ngx_http_x402_set_reason(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx,
    const char *reason, size_t len)
{
    x402_str_t  in;

    in.data = reason;
    in.len = reason ? len : 0;

    ngx_http_x402_clean_str(r, &ctx->reason, &in);
}


/*
 * A copy of text a facilitator sent, fit for logs, variables and headers:
 * at most 256 bytes, control characters and non-ASCII replaced by "?".
 */

void
ngx_http_x402_clean_str(ngx_http_request_t *r, ngx_str_t *dst,
    x402_str_t *src)
{
    size_t   i, len;
    u_char  *p, c;

    dst->len = 0;
    dst->data = NULL;

    if (src->data == NULL || src->len == 0) {
        return;
    }

    len = ngx_min(src->len, 256);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return;
    }

    for (i = 0; i < len; i++) {
        c = (u_char) src->data[i];
        p[i] = (c < 0x20 || c >= 0x7f) ? '?' : c;
    }

    dst->data = p;
    dst->len = len;
}


ngx_int_t
ngx_http_x402_copy_str(ngx_http_request_t *r, ngx_str_t *dst,
    x402_str_t *src)
{
    if (src->len == 0) {
        return NGX_OK;
    }

    dst->data = ngx_pnalloc(r->pool, src->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);
    dst->len = src->len;

    return NGX_OK;
}

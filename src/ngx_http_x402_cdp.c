
/*
 * ngx_http_x402_cdp.c: Coinbase's hosted facilitator wants
 * `Authorization: Bearer <JWT>` on every call (issue 12 item 4).
 *
 *   location /_x402_cdp/ {
 *       internal;
 *       x402_facilitator_auth cdp key_id=organizations/.../apiKeys/...
 *                                 key=/etc/nginx/cdp_api_key.pem;
 *       proxy_pass https://api.cdp.coinbase.com/platform/v2/x402/;
 *   }
 *
 * The key is read and parsed at configuration time (x402_cdp_key_load:
 * PEM EC P-256 -> ES256, base64 Ed25519 -> EdDSA). Every subrequest that
 * reaches the location (/verify, /settle, a settlement retry, the
 * background GET /supported) gets a token of its own, minted in the
 * PRECONTENT phase, before the proxy module builds its request: the
 * token binds the method and the facilitator URL's host and path
 * (url=, by default the hosted facilitator's), so it is made per call,
 * never cached. A client's own request that reaches the location (one
 * left without "internal") is never signed: our key only vouches for
 * our calls.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <x402/x402.h>


/* a CDP key file is a few hundred bytes; anything larger is not one */
#define NGX_HTTP_X402_CDP_MAX_KEY_FILE  16384


typedef struct {
    x402_cdp_key_t             *key;        /* NULL: off */
    ngx_str_t                   host;       /* "api.cdp.coinbase.com" */
    ngx_str_t                   base;       /* "/platform/v2/x402/" */
} ngx_http_x402_cdp_loc_conf_t;


static ngx_int_t ngx_http_x402_cdp_init(ngx_conf_t *cf);
static void *ngx_http_x402_cdp_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_x402_cdp_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_x402_facilitator_auth(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_x402_cdp_read_key(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *key_id, x402_cdp_key_t **key);
static ngx_int_t ngx_http_x402_cdp_url(ngx_conf_t *cf, ngx_str_t *url,
    ngx_http_x402_cdp_loc_conf_t *conf);
static void ngx_http_x402_cdp_key_cleanup(void *data);
static ngx_int_t ngx_http_x402_cdp_handler(ngx_http_request_t *r);
static void *ngx_http_x402_cdp_alloc(void *pool, size_t size);


static ngx_command_t  ngx_http_x402_cdp_commands[] = {

    { ngx_string("x402_facilitator_auth"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1234,
      ngx_http_x402_facilitator_auth,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_x402_cdp_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_x402_cdp_init,                /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_x402_cdp_create_loc_conf,     /* create location configuration */
    ngx_http_x402_cdp_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_x402_cdp_module = {
    NGX_MODULE_V1,
    &ngx_http_x402_cdp_module_ctx,         /* module context */
    ngx_http_x402_cdp_commands,            /* module directives */
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


static ngx_str_t  ngx_http_x402_cdp_default_url =
    ngx_string("https://api.cdp.coinbase.com/platform/v2/x402/");

/* once per worker: a configuration mistake, not a per-request event */
static ngx_uint_t  ngx_http_x402_cdp_warned_main;


static ngx_int_t
ngx_http_x402_cdp_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* PRECONTENT runs for subrequests too (ACCESS does not) */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_x402_cdp_handler;

    return NGX_OK;
}


static void *
ngx_http_x402_cdp_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_x402_cdp_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_x402_cdp_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->key = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_x402_cdp_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_x402_cdp_loc_conf_t  *prev = parent;
    ngx_http_x402_cdp_loc_conf_t  *conf = child;

    if (conf->key == NGX_CONF_UNSET_PTR) {
        conf->key = prev->key;
        conf->host = prev->host;
        conf->base = prev->base;
    }

    if (conf->key == NGX_CONF_UNSET_PTR) {
        conf->key = NULL;
    }

    return NGX_CONF_OK;
}


/*
 * x402_facilitator_auth cdp key_id=ID key=FILE [url=URL] | off
 */

static char *
ngx_http_x402_facilitator_auth(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_x402_cdp_loc_conf_t  *xcf = conf;

    ngx_str_t   *value, key_id, file, url;
    ngx_uint_t   i;

    if (xcf->key != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0 && cf->args->nelts == 2) {
        xcf->key = NULL;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "cdp") != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"x402_facilitator_auth\" scheme \"%V\": "
                           "only \"cdp\" (Coinbase Developer Platform) or "
                           "\"off\" are known", &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&key_id);
    ngx_str_null(&file);
    url = ngx_http_x402_cdp_default_url;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "key_id=", 7) == 0) {
            key_id.data = value[i].data + 7;
            key_id.len = value[i].len - 7;
            continue;
        }

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            file.data = value[i].data + 4;
            file.len = value[i].len - 4;
            continue;
        }

        if (ngx_strncmp(value[i].data, "url=", 4) == 0) {
            url.data = value[i].data + 4;
            url.len = value[i].len - 4;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"x402_facilitator_auth\" parameter "
                           "\"%V\": expected key_id=, key= or url=",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (key_id.len == 0 || file.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"x402_facilitator_auth cdp\" needs key_id=ID "
                           "and key=FILE (the CDP API key id and the file "
                           "holding its secret)");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_x402_cdp_url(cf, &url, xcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_x402_cdp_read_key(cf, &file, &key_id, &xcf->key) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "https://host[:port]/base/path/" -> host, "/base/path/" */

static ngx_int_t
ngx_http_x402_cdp_url(ngx_conf_t *cf, ngx_str_t *url,
    ngx_http_x402_cdp_loc_conf_t *conf)
{
    u_char  *p, *host, *last, *slash;
    size_t   skip;

    p = url->data;
    last = url->data + url->len;

    if (url->len > 8 && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0) {
        skip = 8;

    } else if (url->len > 7
               && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0)
    {
        skip = 7;

    } else {
        goto invalid;
    }

    host = p + skip;
    slash = ngx_strlchr(host, last, '/');

    if (slash == NULL) {
        slash = last;
    }

    if (slash == host) {
        goto invalid;
    }

    for (p = host; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f || *p == '?' || *p == '#') {
            goto invalid;
        }
    }

    conf->host.data = host;
    conf->host.len = slash - host;

    /* the base path, always ending in "/": the call's name follows it */

    conf->base.len = (last - slash) + 1;
    conf->base.data = ngx_pnalloc(cf->pool, conf->base.len);
    if (conf->base.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(conf->base.data, slash, last - slash);

    if (p == conf->base.data || p[-1] != '/') {
        *p++ = '/';
    }

    conf->base.len = p - conf->base.data;

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"x402_facilitator_auth\" url \"%V\": "
                       "expected http:// or https://, a host and a path, "
                       "e.g. \"%V\" (the facilitator's URL the tokens are "
                       "bound to)", url, &ngx_http_x402_cdp_default_url);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_x402_cdp_read_key(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *key_id, x402_cdp_key_t **key)
{
    u_char              *buf;
    ssize_t              n;
    ngx_fd_t             fd;
    ngx_str_t            name;
    x402_str_t           id, secret;
    ngx_file_info_t      fi;
    const char          *err;
    ngx_pool_cleanup_t  *cln;

    name = *file;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"x402_facilitator_auth\": cannot open the key "
                           "file \"%V\"", &name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_HTTP_X402_CDP_MAX_KEY_FILE)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"x402_facilitator_auth\": the key file \"%V\" "
                           "is not a CDP key (unreadable or larger than %d "
                           "bytes)", &name, NGX_HTTP_X402_CDP_MAX_KEY_FILE);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    buf = ngx_alloc(NGX_HTTP_X402_CDP_MAX_KEY_FILE + 1, cf->log);
    if (buf == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    n = ngx_read_fd(fd, buf, NGX_HTTP_X402_CDP_MAX_KEY_FILE + 1);

    (void) ngx_close_file(fd);

    if (n < 0 || n > NGX_HTTP_X402_CDP_MAX_KEY_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"x402_facilitator_auth\": cannot read the key "
                           "file \"%V\"", &name);
        ngx_free(buf);
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_explicit_memzero(buf, n);
        ngx_free(buf);
        return NGX_ERROR;
    }

    id.data = (const char *) key_id->data;
    id.len = key_id->len;
    secret.data = (const char *) buf;
    secret.len = (size_t) n;

    err = NULL;
    *key = x402_cdp_key_load(id, secret, &err);

    /* the secret lives on in the key object only */
    ngx_explicit_memzero(buf, n);
    ngx_free(buf);

    if (*key == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"x402_facilitator_auth\": key file \"%V\" with "
                           "key_id \"%V\": %s", &name, key_id,
                           err ? err : "out of memory");
        return NGX_ERROR;
    }

    cln->handler = ngx_http_x402_cdp_key_cleanup;
    cln->data = *key;

    ngx_conf_log_error(NGX_LOG_DEBUG, cf, 0,
                       "x402: CDP key \"%V\" (%s) from \"%V\"", key_id,
                       x402_cdp_key_alg(*key), &name);

    return NGX_OK;
}


static void
ngx_http_x402_cdp_key_cleanup(void *data)
{
    x402_cdp_key_free(data);
}


/*
 * Sets Authorization on a subrequest reaching a location with a key. The
 * path signed is the facilitator's: url='s base path followed by the
 * call's name ("/_x402_cdp/verify" -> "/platform/v2/x402/verify").
 */

static ngx_int_t
ngx_http_x402_cdp_handler(ngx_http_request_t *r)
{
    u_char                        *p;
    ngx_str_t                      tail, path;
    ngx_uint_t                     i;
    x402_str_t                     xm, xh, xp, out;
    ngx_list_t                     old;
    ngx_list_part_t               *part;
    ngx_table_elt_t               *h, *hh;
    const char                    *err;
    x402_allocator_t               a;
    ngx_http_x402_cdp_loc_conf_t  *xcf;

    xcf = ngx_http_get_module_loc_conf(r, ngx_http_x402_cdp_module);

    if (xcf->key == NULL) {
        return NGX_DECLINED;
    }

    if (r == r->main) {
        if (!ngx_http_x402_cdp_warned_main) {
            ngx_http_x402_cdp_warned_main = 1;
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "x402: a client request reached \"%V\", a "
                          "location with \"x402_facilitator_auth\": it is "
                          "not signed; make the location \"internal\"",
                          &r->uri);
        }

        return NGX_DECLINED;
    }

    /*
     * The call's name, whatever the location did to the URI on the way
     * ("/_x402_cdp/verify", or "/platform/v2/x402/verify" after a
     * "rewrite ... break" for a proxy_pass with a variable): the last
     * path segment. The module's calls are verify, settle and supported.
     */

    tail = r->uri;

    for (p = r->uri.data + r->uri.len; p > r->uri.data; p--) {
        if (p[-1] == '/') {
            tail.data = p;
            tail.len = r->uri.data + r->uri.len - p;
            break;
        }
    }

    path.len = xcf->base.len + tail.len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(path.data, xcf->base.data, xcf->base.len);
    ngx_memcpy(p, tail.data, tail.len);

    /* facilitator.c's method_name carries a trailing space: not ours */
    xm.data = (const char *) r->method_name.data;
    xm.len = r->method_name.len;

    while (xm.len && xm.data[xm.len - 1] == ' ') {
        xm.len--;
    }

    xh.data = (const char *) xcf->host.data;
    xh.len = xcf->host.len;
    xp.data = (const char *) path.data;
    xp.len = path.len;

    a.alloc = ngx_http_x402_cdp_alloc;
    a.ctx = r->pool;

    err = NULL;

    if (x402_cdp_authorization(xcf->key, xm, xh, xp, (int64_t) ngx_time(), 0,
                               &a, &out, &err)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: cannot sign the CDP token for %V %V: %s",
                      &r->method_name, &path, err ? err : "out of memory");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * A list of our own: the subrequest's may be shared with its parent
     * (a struct copy), and any Authorization already there is replaced.
     */

    old = r->headers_in.headers;

    if (ngx_list_init(&r->headers_in.headers, r->pool, 4,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    part = &old.part;
    hh = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            hh = part->elts;
            i = 0;
        }

        if (hh[i].key.len == sizeof("Authorization") - 1
            && ngx_strncasecmp(hh[i].key.data, (u_char *) "Authorization",
                               sizeof("Authorization") - 1)
               == 0)
        {
            continue;
        }

        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *h = hh[i];
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif

        if (r->headers_in.content_type == &hh[i]) {
            r->headers_in.content_type = h;
        }
    }

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&h->key, "Authorization");
    h->value.data = (u_char *) out.data;
    h->value.len = out.len;
    h->lowcase_key = (u_char *) "authorization";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    r->headers_in.authorization = h;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "x402: CDP token for %V %V%V", &r->method_name,
                   &xcf->host, &path);

    return NGX_DECLINED;
}


static void *
ngx_http_x402_cdp_alloc(void *pool, size_t size)
{
    return ngx_pnalloc(pool, size);
}

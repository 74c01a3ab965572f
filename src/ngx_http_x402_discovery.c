
/*
 * ngx_http_x402_discovery.c: x402_discovery bazaar ... (issue 12 item 5).
 *
 * A location declares how it is called and what it answers; the core
 * renders the bazaar extension (coinbase/x402 specs/extensions/bazaar.md)
 * exactly as @x402/extensions' declareDiscoveryExtension +
 * enrichDeclaration would, once, at configuration time, and the offer
 * carries it in the 402's `extensions`. Clients echo it in their payment,
 * which goes to the facilitator verbatim (a facilitator that catalogs
 * resources reads it there).
 *
 *   x402_discovery bazaar method=GET 'query={"city":"Paris"}'
 *                  input_schema_file=weather-query.schema.json
 *                  output_example_file=weather.json;
 *
 * Each JSON parameter comes inline (name=JSON) or from a file
 * (name_file=PATH, relative to the configuration prefix), at most 8192
 * bytes; the core checks the JSON and the bounds and names the rule.
 */

#include "ngx_http_x402_module.h"


#define NGX_HTTP_X402_DISCOVERY_MAX_JSON  8192


typedef struct {
    const char                 *name;
    size_t                      offset;     /* in x402_bazaar_t */
} ngx_http_x402_discovery_param_t;


static ngx_http_x402_discovery_param_t  ngx_http_x402_discovery_params[] = {
    { "method", offsetof(x402_bazaar_t, method) },
    { "query", offsetof(x402_bazaar_t, query_params) },
    { "body_type", offsetof(x402_bazaar_t, body_type) },
    { "body", offsetof(x402_bazaar_t, body) },
    { "input_schema", offsetof(x402_bazaar_t, input_schema) },
    { "output_example", offsetof(x402_bazaar_t, output_example) },
    { "output_schema", offsetof(x402_bazaar_t, output_schema) },
    { NULL, 0 }
};


static ngx_int_t ngx_http_x402_discovery_file(ngx_conf_t *cf,
    ngx_str_t *file, ngx_str_t *out);
static void *ngx_http_x402_discovery_alloc(void *pool, size_t size);


/* x402_discovery bazaar name=value ... | off */

char *
ngx_http_x402_discovery(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_loc_conf_t  *xlcf = conf;

    u_char                           *eq;
    size_t                            nlen;
    ngx_str_t                        *value, name, val, file;
    ngx_uint_t                        i, from_file;
    x402_str_t                       *slot, out;
    const char                       *err;
    x402_bazaar_t                     b;
    x402_allocator_t                  a;
    ngx_http_x402_discovery_param_t  *p;

    if (xlcf->discovery.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_set(&xlcf->discovery, "");
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "bazaar") != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"x402_discovery\" extension \"%V\": "
                           "only \"bazaar\" or \"off\" are known", &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&b, sizeof(x402_bazaar_t));

    for (i = 2; i < cf->args->nelts; i++) {

        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        if (eq == NULL) {
            goto unknown;
        }

        name.data = value[i].data;
        name.len = eq - value[i].data;
        val.data = eq + 1;
        val.len = value[i].len - name.len - 1;

        from_file = 0;

        if (name.len > 5
            && ngx_strncmp(name.data + name.len - 5, "_file", 5) == 0)
        {
            from_file = 1;
            name.len -= 5;
        }

        for (p = ngx_http_x402_discovery_params; p->name; p++) {
            nlen = ngx_strlen(p->name);

            if (nlen == name.len
                && ngx_strncmp(name.data, p->name, nlen) == 0)
            {
                break;
            }
        }

        if (p->name == NULL
            || (from_file
                && (p->offset == offsetof(x402_bazaar_t, method)
                    || p->offset == offsetof(x402_bazaar_t, body_type))))
        {
            goto unknown;
        }

        slot = (x402_str_t *) ((u_char *) &b + p->offset);

        if (slot->data != NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"x402_discovery\": \"%s\" is given twice "
                               "(\"%V\")", p->name, &value[i]);
            return NGX_CONF_ERROR;
        }

        if (from_file) {
            file = val;

            if (ngx_http_x402_discovery_file(cf, &file, &val) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
        }

        if (val.len > NGX_HTTP_X402_DISCOVERY_MAX_JSON) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"x402_discovery\": \"%s\" is %uz bytes, "
                               "at most %d are allowed (clients echo the "
                               "extension in their payment header)",
                               p->name, val.len,
                               NGX_HTTP_X402_DISCOVERY_MAX_JSON);
            return NGX_CONF_ERROR;
        }

        slot->data = (const char *) val.data;
        slot->len = val.len;
    }

    /* the method the 402 describes; the request's own is not known yet */
    if (b.method.data == NULL) {
        b.method.data = "GET";
        b.method.len = 3;
    }

    a.alloc = ngx_http_x402_discovery_alloc;
    a.ctx = cf->pool;

    err = NULL;

    if (x402_bazaar_render(&b, &a, &out, &err) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"x402_discovery bazaar\": %s",
                           err ? err : "out of memory");
        return NGX_CONF_ERROR;
    }

    xlcf->discovery.data = (u_char *) out.data;
    xlcf->discovery.len = out.len;

    return NGX_CONF_OK;

unknown:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"x402_discovery\" parameter \"%V\": "
                       "expected method=, body_type=, or query=, body=, "
                       "input_schema=, output_example=, output_schema= "
                       "(JSON, or name_file=PATH)", &value[i]);

    return NGX_CONF_ERROR;
}


/* a JSON document from a file, read at configuration time */

static ngx_int_t
ngx_http_x402_discovery_file(ngx_conf_t *cf, ngx_str_t *file, ngx_str_t *out)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_str_t        name;
    ngx_file_info_t  fi;

    name = *file;

    if (name.len == 0 || ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"x402_discovery\": invalid file name \"%V\"",
                           file);
        return NGX_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"x402_discovery\": cannot open \"%V\"", &name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_HTTP_X402_DISCOVERY_MAX_JSON)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"x402_discovery\": \"%V\" is unreadable or "
                           "larger than %d bytes", &name,
                           NGX_HTTP_X402_DISCOVERY_MAX_JSON);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(cf->pool, NGX_HTTP_X402_DISCOVERY_MAX_JSON + 1);
    if (out->data == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    n = ngx_read_fd(fd, out->data, NGX_HTTP_X402_DISCOVERY_MAX_JSON + 1);

    (void) ngx_close_file(fd);

    if (n < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"x402_discovery\": cannot read \"%V\"", &name);
        return NGX_ERROR;
    }

    out->len = (size_t) n;

    /* an editor's final newline is not part of the JSON */
    while (out->len
           && (out->data[out->len - 1] == '\n'
               || out->data[out->len - 1] == '\r'
               || out->data[out->len - 1] == ' '))
    {
        out->len--;
    }

    return NGX_OK;
}


static void *
ngx_http_x402_discovery_alloc(void *pool, size_t size)
{
    return ngx_pnalloc(pool, size);
}

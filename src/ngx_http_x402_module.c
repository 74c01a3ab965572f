
/*
 * ngx_http_x402_module: directives, configuration and initialization.
 *
 * Charges HTTP clients per request with x402 (HTTP 402 plus a signed
 * EIP-3009 stablecoin authorization), see README.md. The payment logic
 * lives in the C++ core behind <x402/x402.h>; this file only turns
 * configuration into core offers (src/README.md, layer 8: it wires the
 * handlers, filters and variables of the layers below).
 *
 * Over 800 lines as one concern, like nginx's own module files: the
 * command table, create/merge with the checks that name the offending
 * directive's line, and one setter per directive.
 */


#include "ngx_http_x402_module.h"


static ngx_int_t ngx_http_x402_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_x402_init(ngx_conf_t *cf);
static void *ngx_http_x402_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_x402_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_x402_resolve(ngx_conf_t *cf,
    ngx_http_x402_loc_conf_t *conf);
static char *ngx_http_x402_create_offer(ngx_conf_t *cf,
    ngx_http_x402_loc_conf_t *conf);
static void ngx_http_x402_offer_cleanup(void *data);
static void ngx_http_x402_conf_error_at(ngx_conf_t *cf,
    ngx_http_x402_conf_pos_t *pos, const char *fmt, ...);

static char *ngx_http_x402_price(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_x402_pay_to(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_x402_network(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_x402_asset(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_x402_facilitator(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_x402_max_timeout(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_x402_hold_max_size(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_x402_accept(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_x402_merge_accepts(ngx_conf_t *cf,
    ngx_http_x402_loc_conf_t *prev, ngx_http_x402_loc_conf_t *conf);
static char *ngx_http_x402_resolve_accepts(ngx_conf_t *cf,
    ngx_http_x402_loc_conf_t *conf);
static char *ngx_http_x402_implicit_option(ngx_conf_t *cf,
    ngx_http_x402_loc_conf_t *conf);
static char *ngx_http_x402_prefix_uris(ngx_conf_t *cf, ngx_str_t *prefix,
    ngx_str_t *verify_uri, ngx_str_t *settle_uri);


static ngx_conf_enum_t  ngx_http_x402_settle_modes[] = {
    { ngx_string("sync"), NGX_HTTP_X402_SETTLE_SYNC },
    { ngx_string("after"), NGX_HTTP_X402_SETTLE_AFTER },
    { ngx_string("async"), NGX_HTTP_X402_SETTLE_ASYNC },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_x402_verify_modes[] = {
    { ngx_string("facilitator"), NGX_HTTP_X402_VERIFY_FACILITATOR },
    { ngx_string("local"), NGX_HTTP_X402_VERIFY_LOCAL },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_x402_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_x402_commands[] = {

    { ngx_string("x402"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_x402_loc_conf_t, enable),
      NULL },

    { ngx_string("x402_price"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_x402_price,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("x402_accept"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_x402_accept,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("x402_pay_to"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_x402_pay_to,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("x402_network"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_x402_network,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("x402_asset"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_x402_asset,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("x402_description"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_x402_loc_conf_t, description),
      NULL },

    { ngx_string("x402_mime_type"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_x402_loc_conf_t, mime_type),
      NULL },

    { ngx_string("x402_max_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_x402_max_timeout,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("x402_hold_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_x402_loc_conf_t, hold_buffer_size),
      NULL },

    { ngx_string("x402_hold_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_x402_hold_max_size,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_x402_loc_conf_t, hold_max_size),
      NULL },

    { ngx_string("x402_facilitator"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_x402_facilitator,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("x402_resource_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_x402_loc_conf_t, resource_url),
      NULL },

    { ngx_string("x402_settle"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_x402_loc_conf_t, settle),
      &ngx_http_x402_settle_modes },

    { ngx_string("x402_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_x402_loc_conf_t, verify),
      &ngx_http_x402_verify_modes },

    { ngx_string("x402_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_x402_loc_conf_t, log_level),
      &ngx_http_x402_log_levels },

    /* issue 12: the bazaar extension (ngx_http_x402_discovery.c) */
    { ngx_string("x402_discovery"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_x402_discovery,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_x402_module_ctx = {
    ngx_http_x402_preconfiguration,        /* preconfiguration */
    ngx_http_x402_init,                    /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_x402_create_loc_conf,         /* create location configuration */
    ngx_http_x402_merge_loc_conf           /* merge location configuration */
};


ngx_module_t  ngx_http_x402_module = {
    NGX_MODULE_V1,
    &ngx_http_x402_module_ctx,             /* module context */
    ngx_http_x402_commands,                /* module directives */
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
ngx_http_x402_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_x402_add_variables(cf);
}


static ngx_int_t
ngx_http_x402_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h, *first;
    ngx_array_t                *handlers;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /*
     * The phase engine runs a phase's handlers in reverse order of
     * registration, so the handler at index 0 runs last. Payment must come
     * after every other access check (allow/deny, auth_basic,
     * auth_request, ...): nobody pays for a request that would then be
     * denied, and with "satisfy any" another module's OK lets the request
     * through without payment.
     */

    handlers = &cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers;

    h = ngx_array_push(handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    first = handlers->elts;

    ngx_memmove(first + 1, first,
                (handlers->nelts - 1) * sizeof(ngx_http_handler_pt));

    first[0] = ngx_http_x402_access_handler;

    /*
     * Where a paid request comes from, at each location it reaches: last
     * registered, so it runs before the rewrite module's "return"
     */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_x402_location_handler;

    /* subrequests skip the access phase: they are checked here instead */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_x402_subrequest_handler;

    return ngx_http_x402_filter_init(cf);
}


static void *
ngx_http_x402_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_x402_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_x402_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->price_pos = { { 0, NULL }, 0 };
     *     conf->description = { 0, NULL };
     *     conf->mime_type = { 0, NULL };
     *     conf->facilitator = { 0, NULL };
     *     conf->verify_uri = { 0, NULL };
     *     conf->settle_uri = { 0, NULL };
     *     conf->priced = 0;
     *     conf->offer = NULL;
     */

    conf->enable = NGX_CONF_UNSET;
    conf->price = NGX_CONF_UNSET_PTR;
    conf->price_atomic = NGX_CONF_UNSET;
    conf->pay_to = NGX_CONF_UNSET_PTR;
    conf->network = NGX_CONF_UNSET_PTR;
    conf->asset = NGX_CONF_UNSET_PTR;
    conf->max_timeout = NGX_CONF_UNSET;
    conf->hold_buffer_size = NGX_CONF_UNSET_SIZE;
    conf->hold_max_size = NGX_CONF_UNSET;
    conf->settle = NGX_CONF_UNSET_UINT;
    conf->verify = NGX_CONF_UNSET_UINT;
    conf->log_level = NGX_CONF_UNSET_UINT;
    conf->resource_url = NGX_CONF_UNSET_PTR;
    conf->accepts = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_x402_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_x402_loc_conf_t  *prev = parent;
    ngx_http_x402_loc_conf_t  *conf = child;

    ngx_uint_t               i;
    ngx_uint_t               inherited;
    ngx_http_x402_option_t  *opt;

    /* nothing that shapes the offer is set here: share the parent's */

    inherited = conf->accepts == NGX_CONF_UNSET_PTR
                && conf->price == NGX_CONF_UNSET_PTR
                && conf->pay_to == NGX_CONF_UNSET_PTR
                && conf->network == NGX_CONF_UNSET_PTR
                && conf->asset == NGX_CONF_UNSET_PTR
                && conf->description.data == NULL
                && conf->mime_type.data == NULL
                && conf->max_timeout == NGX_CONF_UNSET
                && conf->discovery.data == NULL;

    ngx_conf_merge_value(conf->enable, prev->enable, 1);

    /* before x402_network and x402_asset are merged: it reads this level's */

    if (ngx_http_x402_merge_accepts(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->price == NGX_CONF_UNSET_PTR) {
        conf->price = prev->price;
        conf->price_atomic = prev->price_atomic;
        conf->price_pos = prev->price_pos;
    }

    if (conf->price == NGX_CONF_UNSET_PTR) {
        conf->price = NULL;
    }

    ngx_conf_merge_value(conf->price_atomic, prev->price_atomic, 0);

    if (conf->pay_to == NGX_CONF_UNSET_PTR) {
        conf->pay_to = prev->pay_to;
        conf->pay_to_pos = prev->pay_to_pos;
        ngx_memcpy(conf->static_pay_to, prev->static_pay_to,
                   sizeof(conf->static_pay_to));
    }

    if (conf->pay_to == NGX_CONF_UNSET_PTR) {
        conf->pay_to = NULL;
    }

    ngx_conf_merge_ptr_value(conf->network, prev->network, NULL);
    ngx_conf_merge_ptr_value(conf->resource_url, prev->resource_url, NULL);

    if (conf->asset == NGX_CONF_UNSET_PTR) {
        conf->asset = prev->asset;
        conf->asset_pos = prev->asset_pos;
    }

    if (conf->asset == NGX_CONF_UNSET_PTR) {
        conf->asset = NULL;
    }

    ngx_conf_merge_str_value(conf->description, prev->description, "");
    ngx_conf_merge_str_value(conf->mime_type, prev->mime_type, "");
    ngx_conf_merge_str_value(conf->discovery, prev->discovery, "");

    /* 300 s like the v2 TypeScript server: buildPaymentRequirements in
     * coinbase/x402 typescript/packages/core/src/server/x402ResourceServer.ts
     * */
    ngx_conf_merge_sec_value(conf->max_timeout, prev->max_timeout, 300);
    ngx_conf_merge_size_value(conf->hold_buffer_size, prev->hold_buffer_size,
                              64 * 1024);

    if (conf->hold_max_size == NGX_CONF_UNSET) {
        conf->hold_max_pos = prev->hold_max_pos;
    }

    /* 1024m like proxy_max_temp_file_size; 0: no temporary file (as
     * there), the body is held in memory up to x402_hold_buffer_size */
    ngx_conf_merge_off_value(conf->hold_max_size, prev->hold_max_size,
                             1024 * 1024 * 1024);

    if (conf->hold_max_size != 0
        && conf->hold_max_size < (off_t) conf->hold_buffer_size)
    {
        ngx_http_x402_conf_error_at(cf, &conf->hold_max_pos,
                                    "\"x402_hold_max_size\" of %O bytes is "
                                    "smaller than \"x402_hold_buffer_size\" "
                                    "of %uz bytes: "
                                    "the bound of a held body includes its "
                                    "memory part (0 keeps it in memory "
                                    "only, with no temporary file)",
                                    conf->hold_max_size,
                                    conf->hold_buffer_size);
        return NGX_CONF_ERROR;
    }

    ngx_http_x402_store_note_window(cf, conf->max_timeout);

    if (conf->facilitator.data == NULL) {
        conf->facilitator = prev->facilitator;
        conf->verify_uri = prev->verify_uri;
        conf->settle_uri = prev->settle_uri;
    }

    /* as the official middleware: charge only for a response below 400 */
    ngx_conf_merge_uint_value(conf->settle, prev->settle,
                              NGX_HTTP_X402_SETTLE_AFTER);

    if (conf->settle == NGX_HTTP_X402_SETTLE_ASYNC) {
        /* settlements may be owed: the spool is wanted */
        ngx_http_x402_store_note_async(cf);
    }
    ngx_conf_merge_uint_value(conf->verify, prev->verify,
                              NGX_HTTP_X402_VERIFY_FACILITATOR);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level,
                              NGX_LOG_INFO);

    if (conf->accepts) {
        if (ngx_http_x402_resolve_accepts(cf, conf) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }

    } else {
        if (ngx_http_x402_resolve(cf, conf) != NGX_CONF_OK
            || ngx_http_x402_implicit_option(cf, conf) != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (!conf->priced) {
        return NGX_CONF_OK;
    }

    /* a price or payTo from variables: the offer is made per request */

    opt = conf->options->elts;

    for (i = 0; i < conf->options->nelts; i++) {
        if (opt[i].price->lengths || opt[i].pay_to->lengths) {
            return NGX_CONF_OK;
        }
    }

    if (inherited && prev->offer && prev->priced) {
        conf->offer = prev->offer;
        return NGX_CONF_OK;
    }

    return ngx_http_x402_create_offer(cf, conf);
}


/*
 * Checks the merged configuration of a location that charges and resolves
 * the asset and, for a static price, the amount. Errors name the directive,
 * its value, the rule and where it was written.
 */

static char *
ngx_http_x402_resolve(ngx_conf_t *cf, ngx_http_x402_loc_conf_t *conf)
{
    int                     rc;
    x402_str_t              in;
    const char             *err;
    ngx_http_x402_asset_t  *asset;

    conf->priced = 0;

    if (!conf->enable || conf->price == NULL) {
        return NGX_CONF_OK;
    }

    /* a static free price ("0", "") makes the location free */

    if (conf->price->lengths == NULL) {
        in.data = (const char *) conf->price->value.data;
        in.len = conf->price->value.len;

        if (in.len == 0) {
            return NGX_CONF_OK;
        }
    }

    if (conf->network == NULL) {
        ngx_http_x402_conf_error_at(cf, &conf->price_pos,
                           "\"x402_price\" needs \"x402_network\": "
                           "no network is configured for this location");
        return NGX_CONF_ERROR;
    }

    if (conf->pay_to == NULL) {
        ngx_http_x402_conf_error_at(cf, &conf->price_pos,
                           "\"x402_price\" needs \"x402_pay_to\": "
                           "no recipient is configured for this location");
        return NGX_CONF_ERROR;
    }

    if (conf->facilitator.data == NULL) {
        ngx_http_x402_conf_error_at(cf, &conf->price_pos,
                           "\"x402_price\" needs \"x402_facilitator\": "
                           "every settlement mode settles through the "
                           "facilitator");
        return NGX_CONF_ERROR;
    }

    asset = conf->asset;

    if (asset == NULL) {
        if (conf->network->usdc == NULL) {
            ngx_http_x402_conf_error_at(cf, &conf->price_pos,
                               "\"x402_price\" needs \"x402_asset\": "
                               "network \"%s\" has no default asset",
                               conf->network->v1_name);
            return NGX_CONF_ERROR;
        }

        conf->asset_address = (u_char *) conf->network->usdc;
        conf->asset_name.data = (u_char *) conf->network->usdc_name;
        conf->asset_name.len = ngx_strlen(conf->network->usdc_name);
        conf->asset_version.data = (u_char *) conf->network->usdc_version;
        conf->asset_version.len = ngx_strlen(conf->network->usdc_version);
        conf->decimals = conf->network->usdc_decimals;

    } else {
        conf->asset_address = asset->address;
        conf->asset_name = asset->name;
        conf->asset_version = asset->version;
        conf->decimals = asset->decimals;

        /* the network's USDC given by address: fill in what is missing */

        if (conf->network->usdc
            && ngx_strcasecmp(asset->address, (u_char *) conf->network->usdc)
               == 0)
        {
            if (asset->name.data == NULL) {
                conf->asset_name.data = (u_char *) conf->network->usdc_name;
                conf->asset_name.len = ngx_strlen(conf->network->usdc_name);
            }

            if (asset->version.data == NULL) {
                conf->asset_version.data =
                                    (u_char *) conf->network->usdc_version;
                conf->asset_version.len =
                                    ngx_strlen(conf->network->usdc_version);
            }

            if (asset->decimals == NGX_CONF_UNSET_UINT) {
                conf->decimals = conf->network->usdc_decimals;
            }
        }

        if (conf->asset_name.data == NULL
            || conf->asset_version.data == NULL)
        {
            ngx_http_x402_conf_error_at(cf, &conf->asset_pos,
                               "\"x402_asset\" \"%s\" needs name= and "
                               "version=: they are the token's EIP-712 "
                               "domain, which clients sign",
                               asset->address);
            return NGX_CONF_ERROR;
        }

        if (conf->decimals == NGX_CONF_UNSET_UINT) {
            conf->decimals = 6;
        }
    }

    if (conf->price->lengths == NULL) {
        rc = x402_amount_parse(in, (unsigned) conf->decimals,
                               (int) conf->price_atomic,
                               (char *) conf->static_amount, &err);
        if (rc < 0) {
            ngx_http_x402_conf_error_at(cf, &conf->price_pos,
                               "invalid \"x402_price\" value \"%V\": %s "
                               "(asset decimals: %ui)",
                               &conf->price->value, err, conf->decimals);
            return NGX_CONF_ERROR;
        }

        if (rc == 0) {
            return NGX_CONF_OK;
        }
    }

    conf->priced = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_x402_create_offer(ngx_conf_t *cf, ngx_http_x402_loc_conf_t *conf)
{
    ngx_uint_t               i;
    const char              *err;
    x402_str_t               ext;
    ngx_pool_cleanup_t      *cln;
    x402_requirement_t       reqs[NGX_HTTP_X402_MAX_OPTIONS];
    ngx_http_x402_option_t  *opt;

    /* the cleanup first, so that the offer is never leaked */

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    opt = conf->options->elts;

    for (i = 0; i < conf->options->nelts; i++) {
        ngx_http_x402_requirement(conf, &opt[i], opt[i].static_amount,
                                  opt[i].static_pay_to, &reqs[i]);
    }

    err = NULL;

    ext.data = (const char *) conf->discovery.data;
    ext.len = conf->discovery.len;

    conf->offer = x402_offer_create_ext(reqs, conf->options->nelts, ext,
                                        &err);
    if (conf->offer == NULL) {
        ngx_http_x402_conf_error_at(cf, &opt[0].pos,
                           "x402: cannot create the offer: %s",
                           err ? err : "out of memory");
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_x402_offer_cleanup;
    cln->data = conf->offer;

    return NGX_CONF_OK;
}


static void
ngx_http_x402_offer_cleanup(void *data)
{
    x402_offer_free(data);
}


/*
 * Merge-time errors are found after the block was parsed, so the position
 * nginx would print is the end of the block; print where the offending
 * directive was instead, in ngx_conf_log_error()'s format.
 */

static void
ngx_http_x402_conf_error_at(ngx_conf_t *cf, ngx_http_x402_conf_pos_t *pos,
    const char *fmt, ...)
{
    u_char   *p, errstr[NGX_MAX_CONF_ERRSTR];
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(errstr, errstr + NGX_MAX_CONF_ERRSTR, fmt, args);
    va_end(args);

    if (pos->file.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%*s", p - errstr, errstr);
        return;
    }

    ngx_log_error(NGX_LOG_EMERG, cf->log, 0, "%*s in %V:%ui",
                  p - errstr, errstr, &pos->file, pos->line);
}


static void
ngx_http_x402_conf_pos(ngx_conf_t *cf, ngx_http_x402_conf_pos_t *pos)
{
    pos->file = cf->conf_file->file.name;
    pos->line = cf->conf_file->line;
}


/* a size, and where it was set: checked against x402_hold_buffer_size at
 * merge time */

static char *
ngx_http_x402_hold_max_size(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_loc_conf_t *xlcf = conf;

    off_t       size;
    ngx_str_t  *value;

    if (xlcf->hold_max_size != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_offset(&value[1]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"x402_hold_max_size\" \"%V\": expected "
                           "a size (\"1024m\", \"512k\"), or 0 for no "
                           "temporary file", &value[1]);
        return NGX_CONF_ERROR;
    }

    xlcf->hold_max_size = size;
    ngx_http_x402_conf_pos(cf, &xlcf->hold_max_pos);

    return NGX_CONF_OK;
}


static char *
ngx_http_x402_price(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_loc_conf_t *xlcf = conf;

    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (xlcf->price != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    xlcf->price_atomic = 0;

    if (cf->args->nelts == 3) {
        if (ngx_strcmp(value[2].data, "atomic") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"x402_price\" unit \"%V\": only "
                               "\"atomic\" may follow the amount",
                               &value[2]);
            return NGX_CONF_ERROR;
        }

        xlcf->price_atomic = 1;
    }

    xlcf->price = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (xlcf->price == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_http_x402_conf_pos(cf, &xlcf->price_pos);

    /*
     * "$0.001" is a price in dollars, not a variable: nginx variable names
     * never start with a digit (and regex captures "$1" are not prices;
     * pass them through "set" or "map").
     */

    if (value[1].len > 1 && value[1].data[0] == '$'
        && value[1].data[1] >= '0' && value[1].data[1] <= '9')
    {
        ngx_memzero(xlcf->price, sizeof(ngx_http_complex_value_t));
        xlcf->price->value = value[1];

    } else {
        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &value[1];
        ccv.complex_value = xlcf->price;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    /*
     * A static amount is checked in merge, once the asset (and so its
     * decimals) is known; its syntax does not depend on them, so check it
     * here with the widest scale to point at the right line early.
     */

    if (xlcf->price->lengths == NULL && value[1].len) {
        int          rc;
        x402_str_t   in;
        const char  *err;
        char         out[X402_MAX_AMOUNT_DIGITS + 1];

        in.data = (const char *) value[1].data;
        in.len = value[1].len;

        rc = x402_amount_parse(in, 36, (int) xlcf->price_atomic, out, &err);
        if (rc < 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"x402_price\" value \"%V\": %s",
                               &value[1], err);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_x402_pay_to(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_loc_conf_t *xlcf = conf;

    x402_str_t                         in;
    ngx_str_t                         *value;
    const char                        *err;
    ngx_http_compile_complex_value_t   ccv;

    if (xlcf->pay_to != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    xlcf->pay_to = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (xlcf->pay_to == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = xlcf->pay_to;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_http_x402_conf_pos(cf, &xlcf->pay_to_pos);

    if (xlcf->pay_to->lengths) {
        return NGX_CONF_OK;
    }

    in.data = (const char *) value[1].data;
    in.len = value[1].len;

    if (x402_address_parse(in, (char *) xlcf->static_pay_to, &err) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"x402_pay_to\" address \"%V\": %s",
                           &value[1], err);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_x402_network(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_loc_conf_t *xlcf = conf;

    x402_str_t   name;
    ngx_str_t   *value;

    if (xlcf->network != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    name.data = (const char *) value[1].data;
    name.len = value[1].len;

    xlcf->network = x402_network_find(name);

    if (xlcf->network == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown \"x402_network\" \"%V\": expected a v1 "
                           "name (\"base\", \"base-sepolia\", ...) or a "
                           "known CAIP-2 id (\"eip155:8453\", ...)",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_x402_asset(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_loc_conf_t *xlcf = conf;

    ngx_int_t               n;
    x402_str_t              in;
    ngx_str_t              *value, s;
    ngx_uint_t              i;
    const char             *err;
    ngx_http_x402_asset_t  *asset;

    if (xlcf->asset != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    asset = ngx_pcalloc(cf->pool, sizeof(ngx_http_x402_asset_t));
    if (asset == NULL) {
        return NGX_CONF_ERROR;
    }

    asset->decimals = NGX_CONF_UNSET_UINT;

    in.data = (const char *) value[1].data;
    in.len = value[1].len;

    if (x402_address_parse(in, (char *) asset->address, &err) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"x402_asset\" address \"%V\": %s",
                           &value[1], err);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "name=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            if (s.len == 0 || s.len > 128) {
                goto invalid;
            }

            asset->name = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "version=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            if (s.len == 0 || s.len > 32) {
                goto invalid;
            }

            asset->version = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "decimals=", 9) == 0) {
            n = ngx_atoi(value[i].data + 9, value[i].len - 9);

            if (n == NGX_ERROR || n > 36) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"x402_asset\" parameter "
                                   "\"%V\": decimals must be an integer "
                                   "from 0 to 36", &value[i]);
                return NGX_CONF_ERROR;
            }

            asset->decimals = (ngx_uint_t) n;
            continue;
        }

        goto invalid;
    }

    ngx_http_x402_conf_pos(cf, &xlcf->asset_pos);

    xlcf->asset = asset;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"x402_asset\" parameter \"%V\": expected "
                       "name=NAME (1-128 bytes), version=VERSION (1-32 "
                       "bytes) or decimals=N", &value[i]);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_x402_facilitator(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_loc_conf_t *xlcf = conf;

    u_char     *p;
    ngx_str_t  *value;

    if (xlcf->facilitator.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].data[0] != '/'
        || value[1].data[value[1].len - 1] != '/')
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"x402_facilitator\" \"%V\": expected "
                           "the URI prefix of an internal location, "
                           "starting and ending with \"/\" (\"/_x402/\" "
                           "gives \"/_x402/verify\" and \"/_x402/settle\")",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_strlchr(value[1].data, value[1].data + value[1].len, '$')
        || ngx_strlchr(value[1].data, value[1].data + value[1].len, '?'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"x402_facilitator\" \"%V\": variables "
                           "and arguments are not supported", &value[1]);
        return NGX_CONF_ERROR;
    }

    xlcf->facilitator = value[1];

    p = ngx_pnalloc(cf->pool, value[1].len + sizeof("verify") - 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    xlcf->verify_uri.data = p;
    xlcf->verify_uri.len = ngx_sprintf(p, "%Vverify", &value[1]) - p;

    p = ngx_pnalloc(cf->pool, value[1].len + sizeof("settle") - 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    xlcf->settle_uri.data = p;
    xlcf->settle_uri.len = ngx_sprintf(p, "%Vsettle", &value[1]) - p;

    return NGX_CONF_OK;
}


static char *
ngx_http_x402_max_timeout(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_loc_conf_t *xlcf = conf;

    time_t      t;
    ngx_str_t  *value;

    if (xlcf->max_timeout != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    t = ngx_parse_time(&value[1], 1);

    /* facilitators require validBefore >= now + 6 s when they settle */

    if (t == (time_t) NGX_ERROR || t <= X402_VALID_BEFORE_MARGIN
        || t > 86400)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"x402_max_timeout\" \"%V\": expected "
                           "a time of more than 6 seconds (the "
                           "facilitators' validBefore margin) and at most "
                           "1 day", &value[1]);
        return NGX_CONF_ERROR;
    }

    xlcf->max_timeout = t;

    return NGX_CONF_OK;
}


/*
 * x402_accept: one way to pay, in order of preference. Like add_header, a
 * level with x402_accept replaces the list it would inherit; a level that
 * names its own x402_network or x402_asset instead goes back to the one
 * implicit option of the single-option directives.
 */

static char *
ngx_http_x402_merge_accepts(ngx_conf_t *cf, ngx_http_x402_loc_conf_t *prev,
    ngx_http_x402_loc_conf_t *conf)
{
    ngx_http_x402_accept_t  *a;

    if (conf->accepts != NGX_CONF_UNSET_PTR) {

        if (conf->network != NGX_CONF_UNSET_PTR
            || conf->asset != NGX_CONF_UNSET_PTR)
        {
            a = conf->accepts->elts;

            ngx_http_x402_conf_error_at(cf, &a[0].pos,
                               "\"x402_accept\" and \"%s\" in one block: "
                               "with \"x402_accept\", each option names "
                               "its network= and asset=",
                               conf->network != NGX_CONF_UNSET_PTR
                               ? "x402_network" : "x402_asset");
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    if (conf->network != NGX_CONF_UNSET_PTR
        || conf->asset != NGX_CONF_UNSET_PTR)
    {
        conf->accepts = NULL;
        return NGX_CONF_OK;
    }

    conf->accepts = prev->accepts;

    if (conf->accepts == NGX_CONF_UNSET_PTR) {
        conf->accepts = NULL;
    }

    return NGX_CONF_OK;
}


/*
 * The x402_accept options of a location, each completed by the block's
 * x402_price, x402_pay_to, x402_facilitator and x402_max_timeout. An
 * option whose fallen-back static price is free is left out (x402_price 0
 * in a location frees it of inherited options); none left: free.
 */

static char *
ngx_http_x402_resolve_accepts(ngx_conf_t *cf, ngx_http_x402_loc_conf_t *conf)
{
    int                        rc;
    x402_str_t                 in;
    ngx_str_t                 *fac;
    ngx_uint_t                 i, j;
    const char                *err;
    ngx_http_x402_accept_t    *a;
    ngx_http_x402_option_t    *opt, *o;
    ngx_http_x402_asset_t     *asset;
    const x402_network_t      *net;

    conf->priced = 0;

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    conf->options = ngx_array_create(cf->pool, conf->accepts->nelts,
                                     sizeof(ngx_http_x402_option_t));
    if (conf->options == NULL) {
        return NGX_CONF_ERROR;
    }

    a = conf->accepts->elts;

    for (i = 0; i < conf->accepts->nelts; i++) {
        net = a[i].network;

        opt = ngx_array_push(conf->options);
        if (opt == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(opt, sizeof(ngx_http_x402_option_t));

        opt->network = net;
        opt->pos = a[i].pos;

        /* the asset: given, or the network's USDC */

        asset = a[i].asset;

        if (asset == NULL) {
            if (net->usdc == NULL) {
                ngx_http_x402_conf_error_at(cf, &a[i].pos,
                                   "\"x402_accept\" network=%s needs "
                                   "asset=, name= and version=: the network "
                                   "has no default asset", net->v1_name);
                return NGX_CONF_ERROR;
            }

            opt->asset_address = (u_char *) net->usdc;
            opt->asset_name.data = (u_char *) net->usdc_name;
            opt->asset_name.len = ngx_strlen(net->usdc_name);
            opt->asset_version.data = (u_char *) net->usdc_version;
            opt->asset_version.len = ngx_strlen(net->usdc_version);
            opt->decimals = net->usdc_decimals;

        } else {
            opt->asset_address = asset->address;
            opt->asset_name = asset->name;
            opt->asset_version = asset->version;
            opt->decimals = asset->decimals;

            if (net->usdc
                && ngx_strcasecmp(asset->address, (u_char *) net->usdc) == 0)
            {
                if (opt->asset_name.data == NULL) {
                    opt->asset_name.data = (u_char *) net->usdc_name;
                    opt->asset_name.len = ngx_strlen(net->usdc_name);
                }

                if (opt->asset_version.data == NULL) {
                    opt->asset_version.data = (u_char *) net->usdc_version;
                    opt->asset_version.len = ngx_strlen(net->usdc_version);
                }

                if (opt->decimals == NGX_CONF_UNSET_UINT) {
                    opt->decimals = net->usdc_decimals;
                }
            }

            if (opt->asset_name.data == NULL
                || opt->asset_version.data == NULL)
            {
                ngx_http_x402_conf_error_at(cf, &a[i].pos,
                                   "\"x402_accept\" asset=%s needs name= "
                                   "and version=: they are the token's "
                                   "EIP-712 domain, which clients sign",
                                   asset->address);
                return NGX_CONF_ERROR;
            }

            if (opt->decimals == NGX_CONF_UNSET_UINT) {
                opt->decimals = 6;
            }
        }

        /* one option per (network, asset): a payment matches one */

        o = conf->options->elts;

        for (j = 0; j + 1 < conf->options->nelts; j++) {
            if (o[j].network->chain_id == net->chain_id
                && ngx_strcasecmp(o[j].asset_address, opt->asset_address)
                   == 0)
            {
                ngx_http_x402_conf_error_at(cf, &a[i].pos,
                                   "\"x402_accept\" network=%s asset=%s "
                                   "duplicates the option in %V:%ui: a "
                                   "location offers each network and asset "
                                   "once", net->v1_name, opt->asset_address,
                                   &o[j].pos.file, o[j].pos.line);
                return NGX_CONF_ERROR;
            }
        }

        /* what the option leaves out comes from the block */

        if (a[i].pay_to) {
            opt->pay_to = a[i].pay_to;
            opt->static_pay_to = a[i].static_pay_to;

        } else if (conf->pay_to) {
            opt->pay_to = conf->pay_to;
            opt->static_pay_to = conf->static_pay_to;

        } else {
            ngx_http_x402_conf_error_at(cf, &a[i].pos,
                               "\"x402_accept\" network=%s needs pay_to= "
                               "or \"x402_pay_to\": no recipient is "
                               "configured for this option", net->v1_name);
            return NGX_CONF_ERROR;
        }

        fac = a[i].facilitator.len ? &a[i].facilitator : &conf->facilitator;

        if (fac->len == 0) {
            ngx_http_x402_conf_error_at(cf, &a[i].pos,
                               "\"x402_accept\" network=%s needs "
                               "facilitator= or \"x402_facilitator\": every "
                               "settlement mode settles through the "
                               "facilitator", net->v1_name);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_x402_prefix_uris(cf, fac, &opt->verify_uri,
                                      &opt->settle_uri)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        opt->max_timeout = (a[i].max_timeout != NGX_CONF_UNSET)
                           ? a[i].max_timeout : conf->max_timeout;

        ngx_http_x402_store_note_window(cf, opt->max_timeout);

        if (a[i].price) {
            opt->price = a[i].price;
            opt->price_atomic = a[i].price_atomic;

        } else if (conf->price) {
            opt->price = conf->price;
            opt->price_atomic = conf->price_atomic;

        } else {
            ngx_http_x402_conf_error_at(cf, &a[i].pos,
                               "\"x402_accept\" network=%s needs price= or "
                               "\"x402_price\": no price is configured for "
                               "this option", net->v1_name);
            return NGX_CONF_ERROR;
        }

        if (opt->price->lengths) {
            continue;
        }

        in.data = (const char *) opt->price->value.data;
        in.len = opt->price->value.len;

        rc = x402_amount_parse(in, (unsigned) opt->decimals,
                               (int) opt->price_atomic,
                               (char *) opt->static_amount, &err);

        if (rc < 0) {
            ngx_http_x402_conf_error_at(cf, a[i].price ? &a[i].pos
                                                       : &conf->price_pos,
                               "invalid price \"%V\" for \"x402_accept\" "
                               "network=%s: %s (asset decimals: %ui)",
                               &opt->price->value, net->v1_name, err,
                               opt->decimals);
            return NGX_CONF_ERROR;
        }

        if (rc == 0) {
            if (a[i].price) {
                ngx_http_x402_conf_error_at(cf, &a[i].pos,
                                   "\"x402_accept\" price=%V: an option is "
                                   "never free (\"x402 off\" or "
                                   "\"x402_price 0\" makes a location free)",
                                   &opt->price->value);
                return NGX_CONF_ERROR;
            }

            conf->options->nelts--;
            continue;
        }
    }

    conf->priced = (conf->options->nelts > 0);

    return NGX_CONF_OK;
}


/* the one option of x402_price, x402_network, x402_asset and x402_pay_to */

static char *
ngx_http_x402_implicit_option(ngx_conf_t *cf, ngx_http_x402_loc_conf_t *conf)
{
    ngx_http_x402_option_t  *opt;

    if (!conf->priced) {
        return NGX_CONF_OK;
    }

    conf->options = ngx_array_create(cf->pool, 1,
                                     sizeof(ngx_http_x402_option_t));
    if (conf->options == NULL) {
        return NGX_CONF_ERROR;
    }

    opt = ngx_array_push(conf->options);
    if (opt == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(opt, sizeof(ngx_http_x402_option_t));

    opt->network = conf->network;
    opt->asset_address = conf->asset_address;
    opt->asset_name = conf->asset_name;
    opt->asset_version = conf->asset_version;
    opt->decimals = conf->decimals;
    opt->price = conf->price;
    opt->price_atomic = conf->price_atomic;
    opt->pay_to = conf->pay_to;
    opt->static_pay_to = conf->static_pay_to;
    ngx_memcpy(opt->static_amount, conf->static_amount,
               sizeof(opt->static_amount));
    opt->verify_uri = conf->verify_uri;
    opt->settle_uri = conf->settle_uri;
    opt->max_timeout = conf->max_timeout;
    opt->pos = conf->price_pos;

    return NGX_CONF_OK;
}


static char *
ngx_http_x402_prefix_uris(ngx_conf_t *cf, ngx_str_t *prefix,
    ngx_str_t *verify_uri, ngx_str_t *settle_uri)
{
    u_char  *p;

    p = ngx_pnalloc(cf->pool, prefix->len + sizeof("verify") - 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    verify_uri->data = p;
    verify_uri->len = ngx_sprintf(p, "%Vverify", prefix) - p;

    p = ngx_pnalloc(cf->pool, prefix->len + sizeof("settle") - 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    settle_uri->data = p;
    settle_uri->len = ngx_sprintf(p, "%Vsettle", prefix) - p;

    return NGX_CONF_OK;
}


/*
 * x402_accept network=NAME [price=P [atomic]] [asset=ADDR name= version=
 *     decimals=] [pay_to=ADDR] [facilitator=/prefix/] [max_timeout=T];
 */

static char *
ngx_http_x402_accept(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_loc_conf_t *xlcf = conf;

    ngx_int_t                          n;
    time_t                             t;
    x402_str_t                         in;
    ngx_str_t                         *value, v, price, pay_to, name, version;
    ngx_uint_t                         i, atomic, decimals;
    const char                        *err;
    ngx_http_x402_accept_t            *a;
    ngx_http_compile_complex_value_t   ccv;

    if (xlcf->accepts == NGX_CONF_UNSET_PTR) {
        xlcf->accepts = ngx_array_create(cf->pool, 4,
                                         sizeof(ngx_http_x402_accept_t));
        if (xlcf->accepts == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (xlcf->accepts->nelts == NGX_HTTP_X402_MAX_OPTIONS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many \"x402_accept\" options: a location "
                           "offers at most %d ways to pay",
                           NGX_HTTP_X402_MAX_OPTIONS);
        return NGX_CONF_ERROR;
    }

    a = ngx_array_push(xlcf->accepts);
    if (a == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(a, sizeof(ngx_http_x402_accept_t));
    a->max_timeout = NGX_CONF_UNSET;
    ngx_http_x402_conf_pos(cf, &a->pos);

    value = cf->args->elts;

    ngx_str_null(&price);
    ngx_str_null(&pay_to);
    ngx_str_null(&name);
    ngx_str_null(&version);
    atomic = 0;
    decimals = NGX_CONF_UNSET_UINT;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "atomic") == 0) {
            atomic = 1;
            continue;
        }

        v.data = (u_char *) ngx_strlchr(value[i].data,
                                        value[i].data + value[i].len, '=');
        if (v.data == NULL) {
            goto invalid;
        }

        v.data++;
        v.len = value[i].data + value[i].len - v.data;
        n = v.data - value[i].data;

#define ngx_http_x402_param(s)                                                \
        ((size_t) n == sizeof(s) - 1 && ngx_strncmp(value[i].data, s, n) == 0)

        if (v.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty \"x402_accept\" parameter \"%V\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_x402_param("network=")) {
            if (a->network) {
                goto twice;
            }

            in.data = (const char *) v.data;
            in.len = v.len;

            a->network = x402_network_find(in);

            if (a->network == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "unknown \"x402_accept\" network \"%V\": "
                                   "expected a v1 name (\"base\", "
                                   "\"base-sepolia\", ...) or a CAIP-2 id "
                                   "(\"eip155:8453\", ...)", &v);
                return NGX_CONF_ERROR;
            }

        } else if (ngx_http_x402_param("price=")) {
            if (price.data) {
                goto twice;
            }

            price = v;

        } else if (ngx_http_x402_param("asset=")) {
            if (a->asset) {
                goto twice;
            }

            a->asset = ngx_pcalloc(cf->pool, sizeof(ngx_http_x402_asset_t));
            if (a->asset == NULL) {
                return NGX_CONF_ERROR;
            }

            in.data = (const char *) v.data;
            in.len = v.len;

            if (x402_address_parse(in, (char *) a->asset->address, &err)
                != 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"x402_accept\" asset \"%V\": %s",
                                   &v, err);
                return NGX_CONF_ERROR;
            }

        } else if (ngx_http_x402_param("name=")) {
            if (name.data) {
                goto twice;
            }

            if (v.len > 128) {
                goto invalid;
            }

            name = v;

        } else if (ngx_http_x402_param("version=")) {
            if (version.data) {
                goto twice;
            }

            if (v.len > 32) {
                goto invalid;
            }

            version = v;

        } else if (ngx_http_x402_param("decimals=")) {
            if (decimals != NGX_CONF_UNSET_UINT) {
                goto twice;
            }

            n = ngx_atoi(v.data, v.len);

            if (n == NGX_ERROR || n > 36) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"x402_accept\" parameter "
                                   "\"%V\": decimals must be an integer "
                                   "from 0 to 36", &value[i]);
                return NGX_CONF_ERROR;
            }

            decimals = (ngx_uint_t) n;

        } else if (ngx_http_x402_param("pay_to=")) {
            if (pay_to.data) {
                goto twice;
            }

            pay_to = v;

        } else if (ngx_http_x402_param("facilitator=")) {
            if (a->facilitator.data) {
                goto twice;
            }

            if (v.data[0] != '/' || v.data[v.len - 1] != '/'
                || ngx_strlchr(v.data, v.data + v.len, '$')
                || ngx_strlchr(v.data, v.data + v.len, '?'))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"x402_accept\" facilitator "
                                   "\"%V\": expected the URI prefix of an "
                                   "internal location, starting and ending "
                                   "with \"/\", without variables or "
                                   "arguments", &v);
                return NGX_CONF_ERROR;
            }

            a->facilitator = v;

        } else if (ngx_http_x402_param("max_timeout=")) {
            if (a->max_timeout != NGX_CONF_UNSET) {
                goto twice;
            }

            t = ngx_parse_time(&v, 1);

            if (t == (time_t) NGX_ERROR || t <= X402_VALID_BEFORE_MARGIN
                || t > 86400)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"x402_accept\" max_timeout "
                                   "\"%V\": expected a time of more than 6 "
                                   "seconds and at most 1 day", &v);
                return NGX_CONF_ERROR;
            }

            a->max_timeout = t;

        } else {
            goto invalid;
        }

#undef ngx_http_x402_param
    }

    if (a->network == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"x402_accept\" needs network=: every option "
                           "names its network");
        return NGX_CONF_ERROR;
    }

    if (a->asset) {
        a->asset->name = name;
        a->asset->version = version;
        a->asset->decimals = decimals;

    } else if (name.data || version.data || decimals != NGX_CONF_UNSET_UINT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"x402_accept\" name=, version= and decimals= "
                           "describe asset=, which is not given: network=%s "
                           "uses its USDC", a->network->v1_name);
        return NGX_CONF_ERROR;
    }

    if (atomic && price.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"x402_accept\" \"atomic\" describes price=, "
                           "which is not given");
        return NGX_CONF_ERROR;
    }

    if (price.data) {
        a->price_atomic = atomic;

        a->price = ngx_pcalloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (a->price == NULL) {
            return NGX_CONF_ERROR;
        }

        /* "$0.01" is dollars, not a variable (see ngx_http_x402_price) */

        if (price.len > 1 && price.data[0] == '$'
            && price.data[1] >= '0' && price.data[1] <= '9')
        {
            a->price->value = price;

        } else {
            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

            ccv.cf = cf;
            ccv.value = &price;
            ccv.complex_value = a->price;

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
        }

        if (a->price->lengths == NULL) {
            char  out[X402_MAX_AMOUNT_DIGITS + 1];

            in.data = (const char *) price.data;
            in.len = price.len;

            if (x402_amount_parse(in, 36, (int) atomic, out, &err) < 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"x402_accept\" price \"%V\": %s",
                                   &price, err);
                return NGX_CONF_ERROR;
            }
        }
    }

    if (pay_to.data) {
        a->pay_to = ngx_pcalloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (a->pay_to == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &pay_to;
        ccv.complex_value = a->pay_to;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (a->pay_to->lengths == NULL) {
            in.data = (const char *) pay_to.data;
            in.len = pay_to.len;

            if (x402_address_parse(in, (char *) a->static_pay_to, &err)
                != 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"x402_accept\" pay_to \"%V\": "
                                   "%s", &pay_to, err);
                return NGX_CONF_ERROR;
            }
        }
    }

    return NGX_CONF_OK;

twice:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"x402_accept\" parameter \"%V\" is given twice",
                       &value[i]);
    return NGX_CONF_ERROR;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"x402_accept\" parameter \"%V\": expected "
                       "network=, price= [atomic], asset= with name= (1-128 "
                       "bytes), version= (1-32 bytes) and decimals=, "
                       "pay_to=, facilitator= or max_timeout=", &value[i]);
    return NGX_CONF_ERROR;
}

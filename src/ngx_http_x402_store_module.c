
/*
 * ngx_http_x402_store_module.c: ngx_http_x402_store_module (src/README.md,
 * layer 8): the store's directives (x402_zone, x402_redis, x402_grant,
 * x402_async_limit, ...), its configuration, the $x402_store* variables,
 * and the worker's start and exit (the zone, Redis, the retry timer). The
 * operations themselves are in ngx_http_x402_store.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_x402_store_int.h"


#define NGX_HTTP_X402_DEFAULT_ZONE_SIZE  (16 * 1024 * 1024)


static ngx_int_t ngx_http_x402_store_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_x402_store_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_x402_store_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_x402_store_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_x402_store_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_x402_store_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_x402_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_x402_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_x402_grant(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_http_x402_shm_t *ngx_http_x402_store_add_zone(ngx_conf_t *cf,
    ngx_str_t *name, size_t size);
static char *ngx_http_x402_rpc(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_x402_store_spool_conf(ngx_conf_t *cf,
    ngx_http_x402_store_main_conf_t *smcf);
static ngx_int_t ngx_http_x402_store_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_x402_store_init_process(ngx_cycle_t *cycle);
static void ngx_http_x402_store_exit_process(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_http_x402_async_limit_bounds = {
    ngx_conf_check_num_bounds, 0, 1000000
};


static ngx_command_t  ngx_http_x402_store_commands[] = {

    { ngx_string("x402_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_x402_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("x402_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_x402_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("x402_grant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_x402_grant,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_x402_store_loc_conf_t, grant),
      NULL },

    { ngx_string("x402_spool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_x402_store_main_conf_t, spool),
      NULL },

    { ngx_string("x402_async_drain"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_x402_store_main_conf_t, async_drain),
      NULL },

    { ngx_string("x402_rpc"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_x402_rpc,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_x402_store_main_conf_t, rpc),
      NULL },

    { ngx_string("x402_async_limit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_x402_store_main_conf_t, async_limit),
      &ngx_http_x402_async_limit_bounds },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_x402_store_module_ctx = {
    ngx_http_x402_store_add_variables,     /* preconfiguration */
    ngx_http_x402_store_postconfiguration, /* postconfiguration */

    ngx_http_x402_store_create_main_conf,  /* create main configuration */
    ngx_http_x402_store_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_x402_store_create_loc_conf,   /* create location configuration */
    ngx_http_x402_store_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_x402_store_module = {
    NGX_MODULE_V1,
    &ngx_http_x402_store_module_ctx,       /* module context */
    ngx_http_x402_store_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_x402_store_init_module,       /* init module */
    ngx_http_x402_store_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_x402_store_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* ---- variables ---- */

static ngx_int_t
ngx_http_x402_store_var_counter(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                          *p;
    ngx_atomic_t                    *counter;
    ngx_http_x402_store_counters_t  *counters;

    counters = ngx_http_x402_store_counters(r);

    if (counters == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    counter = (ngx_atomic_t *) ((u_char *) counters + data);

    p = ngx_pnalloc(r->pool, NGX_ATOMIC_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%uA", *counter) - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_x402_store_var_backend(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_x402_store_op_t  *op;

    /* not r->ctx: internal redirects zero it */

    op = ngx_http_x402_store_request_op(r);

    if (op == NULL || !op->done) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (op->fallback) {
        v->data = (u_char *) "zone-fallback";

    } else if (op->backend == NGX_HTTP_X402_BACKEND_REDIS) {
        v->data = (u_char *) "redis";

    } else {
        v->data = (u_char *) "zone";
    }

    v->len = ngx_strlen(v->data);
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_http_variable_t  ngx_http_x402_store_vars[] = {

    { ngx_string("x402_pending"), NULL, ngx_http_x402_store_var_counter,
      offsetof(ngx_http_x402_store_counters_t, pending),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_settle_lost"), NULL, ngx_http_x402_store_var_counter,
      offsetof(ngx_http_x402_store_counters_t, async_lost),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_settle_refused"), NULL,
      ngx_http_x402_store_var_counter,
      offsetof(ngx_http_x402_store_counters_t, async_refused),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_settle_unknown"), NULL,
      ngx_http_x402_store_var_counter,
      offsetof(ngx_http_x402_store_counters_t, async_unknown),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_store_full"), NULL, ngx_http_x402_store_var_counter,
      offsetof(ngx_http_x402_store_counters_t, full),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("x402_store"), NULL, ngx_http_x402_store_var_backend,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_x402_store_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_x402_store_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* ---- configuration ---- */

static void *
ngx_http_x402_store_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_x402_store_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_x402_store_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->zone = NULL;
     *     smcf->redis = NULL;
     */

    smcf->async_limit = NGX_CONF_UNSET_UINT;
    smcf->async_drain = NGX_CONF_UNSET_MSEC;
    smcf->http_ctx = cf->ctx;

    return smcf;
}


static char *
ngx_http_x402_store_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_x402_store_main_conf_t *smcf = conf;

    ngx_str_t  name;

    ngx_conf_init_uint_value(smcf->async_limit, 1024);
    ngx_conf_init_msec_value(smcf->async_drain, 3000);

    if (smcf->zone == NULL) {
        /* replay protection is on by default: an implicit zone */
        ngx_str_set(&name, "x402");

        smcf->zone = ngx_http_x402_store_add_zone(cf, &name,
                                              NGX_HTTP_X402_DEFAULT_ZONE_SIZE);
        if (smcf->zone == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * After every location is merged: the spool is set up only where async
 * settlement is configured, or where a spool left by an earlier
 * configuration still holds something (it is then resumed).
 */
static ngx_int_t
ngx_http_x402_store_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_x402_store_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_x402_store_module);

    if (smcf == NULL || smcf->zone == NULL) {
        return NGX_OK;
    }

    if (ngx_http_x402_store_spool_conf(cf, smcf) != NGX_CONF_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_x402_store_note_async(ngx_conf_t *cf)
{
    ngx_http_x402_store_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_x402_store_module);

    if (smcf) {
        smcf->async_used = 1;
    }
}


/*
 * x402_spool DIR (default: x402_spool under the prefix, created at start
 * like nginx's temp paths) or off. The file in it is opened by the master
 * in append mode, as logs are: the workers inherit it whatever user they
 * run as, and USR1 reopens it.
 */
static char *
ngx_http_x402_store_spool_conf(ngx_conf_t *cf,
    ngx_http_x402_store_main_conf_t *smcf)
{
    ngx_str_t         name, dir;
    ngx_path_t       *path;
    ngx_file_info_t   fi;

    if (smcf->spool.data == NULL) {
        ngx_str_set(&smcf->spool, "x402_spool");
    }

    if (smcf->spool.len == 3 && ngx_strncmp(smcf->spool.data, "off", 3) == 0)
    {
        return NGX_CONF_OK;
    }

    if (!smcf->async_used) {
        /* nothing can be owed: no directory, unless one holds something */
        dir = smcf->spool;

        if (ngx_conf_full_name(cf->cycle, &dir, 0) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        name.len = dir.len + sizeof("/settlements") - 1;
        name.data = ngx_pnalloc(cf->pool, name.len + 1);
        if (name.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(name.data, "%V/settlements%Z", &dir);

        if (ngx_file_info(name.data, &fi) == NGX_FILE_ERROR
            || ngx_file_size(&fi) == 0)
        {
            return NGX_CONF_OK;
        }
    }

    path = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
    if (path == NULL) {
        return NGX_CONF_ERROR;
    }

    path->name = smcf->spool;

    while (path->name.len > 1
           && path->name.data[path->name.len - 1] == '/')
    {
        path->name.len--;
    }

    if (ngx_conf_full_name(cf->cycle, &path->name, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    path->conf_file = cf->conf_file->file.name.data;
    path->line = cf->conf_file->line;

    if (ngx_add_path(cf, &path) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    name.len = path->name.len + sizeof("/settlements") - 1;
    name.data = ngx_pnalloc(cf->pool, name.len + 1);
    if (name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(name.data, "%V/settlements%Z", &path->name);

    smcf->zone->spool = ngx_conf_open_file(cf->cycle, &name);
    if (smcf->zone->spool == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_x402_store_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_x402_store_loc_conf_t  *slcf;

    slcf = ngx_palloc(cf->pool, sizeof(ngx_http_x402_store_loc_conf_t));
    if (slcf == NULL) {
        return NULL;
    }

    slcf->grant = NGX_CONF_UNSET;

    return slcf;
}


static char *
ngx_http_x402_store_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_x402_store_loc_conf_t *prev = parent;
    ngx_http_x402_store_loc_conf_t *conf = child;

    ngx_http_x402_store_main_conf_t  *smcf;

    ngx_conf_merge_sec_value(conf->grant, prev->grant, 0);

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_x402_store_module);

    if (conf->grant > smcf->window_max) {
        smcf->window_max = conf->grant;
    }

    return NGX_CONF_OK;
}


static ngx_http_x402_shm_t *
ngx_http_x402_store_add_zone(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    ngx_shm_zone_t       *shm_zone;
    ngx_http_x402_shm_t  *ctx;

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_x402_shm_t));
    if (ctx == NULL) {
        return NULL;
    }

    shm_zone = ngx_shared_memory_add(cf, name, size,
                                     &ngx_http_x402_store_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "x402 zone \"%V\" is already declared", name);
        return NULL;
    }

    shm_zone->init = ngx_http_x402_shm_init_zone;
    shm_zone->data = ctx;
    ctx->shm_zone = shm_zone;
    ctx->cycle = cf->cycle;

    return ctx;
}


static char *
ngx_http_x402_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_store_main_conf_t *smcf = conf;

    u_char     *p;
    ssize_t     size;
    ngx_str_t  *value, name, s;

    if (smcf->zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid x402 zone \"%V\", expected NAME:SIZE",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid x402 zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "x402 zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    smcf->zone = ngx_http_x402_store_add_zone(cf, &name, size);
    if (smcf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_x402_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_store_main_conf_t *smcf = conf;

    if (smcf->redis) {
        return "is duplicate";
    }

    smcf->redis = ngx_pcalloc(cf->pool, sizeof(ngx_http_x402_redis_conf_t));
    if (smcf->redis == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_x402_redis_parse(cf, smcf->redis);
}


/*
 * x402_rpc /_x402_rpc/: the prefix of internal locations that reach a
 * JSON-RPC endpoint of each network, asked with POST
 * <prefix><CAIP-2 id> (/_x402_rpc/eip155:8453).
 */
static char *
ngx_http_x402_rpc(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char       *rv;
    ngx_str_t  *value;

    rv = ngx_conf_set_str_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    value = cf->args->elts;

    if (value[1].len < 2 || value[1].len > 256 || value[1].data[0] != '/'
        || value[1].data[value[1].len - 1] != '/')
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid x402_rpc \"%V\": expected a location "
                           "prefix that starts and ends with \"/\" (the "
                           "network's CAIP-2 id is appended)", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_x402_grant(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_x402_store_loc_conf_t *slcf = conf;

    ngx_str_t  *value;

    if (slcf->grant != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        slcf->grant = 0;
        return NGX_CONF_OK;
    }

    slcf->grant = ngx_parse_time(&value[1], 1);

    if (slcf->grant == (time_t) NGX_ERROR || slcf->grant <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid x402_grant \"%V\", expected a time "
                           "or \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The new configuration is committed (nginx exits if an init_module
 * fails): a resizing reload's old zone stays superseded.
 */
static ngx_int_t
ngx_http_x402_store_init_module(ngx_cycle_t *cycle)
{
    ngx_http_x402_shm_committed();

    return NGX_OK;
}


/* ---- worker ---- */

static ngx_int_t
ngx_http_x402_store_init_process(ngx_cycle_t *cycle)
{
    ngx_http_x402_store_main_conf_t  *smcf;

    /* not in the cache manager/loader: workers only */
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_x402_store_module);
    if (smcf == NULL || smcf->zone == NULL) {
        return NGX_OK;
    }

    ngx_http_x402_store_zone = smcf->zone;

    if (smcf->redis) {
        /* no record made before a loss outlives this */
        smcf->redis->horizon = smcf->window_max
                               + NGX_HTTP_X402_EXPIRE_SLACK;
    }

    if (smcf->redis
        && ngx_http_x402_redis_init_process(cycle, smcf->redis,
                                            ngx_http_x402_store_redis_done)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_x402_retry_init_process(cycle);
}


#if (NGX_HTTP_X402_STORE_TIMING)

ngx_http_x402_timing_t  ngx_http_x402_timing[NGX_HTTP_X402_T_MAX];

#endif


static void
ngx_http_x402_store_exit_process(ngx_cycle_t *cycle)
{
#if (NGX_HTTP_X402_STORE_TIMING)
    uint64_t    t, clock;
    ngx_uint_t  i;

    static const char  *names[] = { "reserve", "settled", "redis_read",
                                    "redis_write" };

    /* what a start/end pair costs by itself */
    t = ngx_http_x402_now_ns();

    for (i = 0; i < 1000; i++) {
        (void) ngx_http_x402_now_ns();
        (void) ngx_http_x402_now_ns();
    }

    clock = ngx_http_x402_now_ns() - t;

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "x402 store timing: clock calls=1000 ns=%uL", clock);

    for (i = 0; i < NGX_HTTP_X402_T_MAX; i++) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "x402 store timing: %s calls=%uL ns=%uL", names[i],
                      ngx_http_x402_timing[i].n, ngx_http_x402_timing[i].ns);
    }
#endif

    ngx_http_x402_retry_exit_process(cycle);
    ngx_http_x402_redis_exit_process(cycle);
    ngx_http_x402_store_zone = NULL;
}


/*
 * Called by the x402 module for every location's maxTimeoutSeconds: the
 * longest record life of the configuration (see ngx_http_x402_store_int.h).
 */
void
ngx_http_x402_store_note_window(ngx_conf_t *cf, time_t max_timeout)
{
    ngx_http_x402_store_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_x402_store_module);

    if (smcf && max_timeout + NGX_HTTP_X402_WINDOW_MARGIN > smcf->window_max)
    {
        smcf->window_max = max_timeout + NGX_HTTP_X402_WINDOW_MARGIN;
    }
}

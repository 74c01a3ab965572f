
/*
 * ngx_http_x402_supported.c: what each facilitator supports (issue 12
 * item 3; x402 v2 specification 7.3, GET /supported).
 *
 * Every facilitator prefix a priced location names is asked `GET
 * <prefix>supported` in the background: one worker (ngx_worker 0) runs a
 * timer, half a second after it starts and then every ten minutes (after
 * a failure: 5 s, doubling up to ten minutes), and issues the GET as an
 * in-memory subrequest of a request of its own (background.c: a request
 * on a connection nobody polls, as retry.c's for settlements), so the
 * facilitator location's proxy settings (TLS, upstream failover,
 * x402_facilitator_auth) apply as for live calls, and no client request
 * ever waits for it.
 *
 * The answer's bytes go into a shared memory slot per facilitator
 * (x402_supported zone, made afresh by every configuration), with a
 * generation and the time. When an answer differs from the one last
 * checked (the first answer after a start or reload, a facilitator that
 * changed), every priced location using that facilitator is checked
 * against it: an option whose (x402Version 2, scheme, network) kind is
 * not listed is logged at "error" (its payments cannot settle there), a
 * v1 kind missing at "warn". The official EVM "exact" server copies
 * nothing from a kind's `extra` into its requirements
 * (ExactEvmScheme.enhancePaymentRequirements is the identity), and the
 * core speaks EVM "exact" only, so nothing is copied into the offers.
 */

#include "ngx_http_x402_module.h"


#define NGX_HTTP_X402_SUPPORTED_FIRST     500           /* ms after start */
#define NGX_HTTP_X402_SUPPORTED_REFRESH   600000        /* ms */
#define NGX_HTTP_X402_SUPPORTED_RETRY     5000          /* ms, doubling */
#define NGX_HTTP_X402_SUPPORTED_MAX       X402_MAX_FACILITATOR_LEN


/* one facilitator's last answer, in shared memory */
typedef struct {
    ngx_uint_t                  generation;     /* 0: never answered */
    ngx_uint_t                  status;
    time_t                      fetched;
    u_char                      checked[32];    /* keccak of the body */
    ngx_uint_t                  has_checked;
    size_t                      len;
    u_char                      body[NGX_HTTP_X402_SUPPORTED_MAX];
} ngx_http_x402_supported_slot_t;


/* a priced location (or several sharing one offer) using a facilitator */
typedef struct {
    ngx_str_t                   location;
    ngx_uint_t                  sharing;        /* more locations, same offer */
    ngx_http_x402_loc_conf_t   *xlcf;
    ngx_uint_t                  option;         /* index into its options */
} ngx_http_x402_supported_use_t;


typedef struct {
    ngx_str_t                   prefix;         /* "/_x402/" */
    ngx_str_t                   uri;            /* "/_x402/supported" */
    ngx_http_core_srv_conf_t   *cscf;           /* where the prefix is found */
    ngx_array_t                 uses;           /* _use_t */
    ngx_http_x402_supported_slot_t  *slot;

    /* the fetching worker's own state */
    ngx_msec_t                  backoff;
    ngx_msec_t                  next;           /* ngx_current_msec due */
    ngx_uint_t                  inflight;
} ngx_http_x402_supported_fac_t;


typedef struct {
    ngx_array_t                 facilitators;   /* _fac_t */
    ngx_shm_zone_t             *zone;
} ngx_http_x402_supported_main_conf_t;


/* the background request's state */
typedef struct {
    ngx_http_x402_supported_fac_t  *fac;
    ngx_uint_t                      status;
    ngx_str_t                       body;
    unsigned                        got_response:1;
    unsigned                        done:1;
} ngx_http_x402_supported_req_t;


static void *ngx_http_x402_supported_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_x402_supported_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_x402_supported_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_x402_supported_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_x402_supported_init_process(ngx_cycle_t *cycle);
static void ngx_http_x402_supported_exit_process(ngx_cycle_t *cycle);
static void ngx_http_x402_supported_tick(ngx_event_t *ev);
static ngx_int_t ngx_http_x402_supported_start(ngx_cycle_t *cycle,
    ngx_http_x402_supported_fac_t *fac);
static ngx_int_t ngx_http_x402_supported_post(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_x402_supported_finish(ngx_http_request_t *r);
static void ngx_http_x402_supported_gone(void *data);
static void ngx_http_x402_supported_answer(ngx_http_x402_supported_req_t *sq,
    ngx_log_t *log);
static void ngx_http_x402_supported_check(ngx_http_x402_supported_fac_t *fac,
    x402_supported_t *s, ngx_log_t *log);
static void ngx_http_x402_supported_rearm(ngx_msec_t delay);
static void *ngx_http_x402_supported_alloc(void *pool, size_t size);


static ngx_http_module_t  ngx_http_x402_supported_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_x402_supported_init,          /* postconfiguration */

    ngx_http_x402_supported_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    ngx_http_x402_supported_merge_loc_conf /* merge location configuration */
};


ngx_module_t  ngx_http_x402_supported_module = {
    NGX_MODULE_V1,
    &ngx_http_x402_supported_module_ctx,   /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_x402_supported_init_process,  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_x402_supported_exit_process,  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_event_t  ngx_http_x402_supported_timer;
static ngx_uint_t   ngx_http_x402_supported_exiting;

static ngx_str_t  ngx_http_x402_supported_zone_name =
    ngx_string("x402_supported");


static void *
ngx_http_x402_supported_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_x402_supported_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_x402_supported_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&smcf->facilitators, cf->pool, 2,
                       sizeof(ngx_http_x402_supported_fac_t))
        != NGX_OK)
    {
        return NULL;
    }

    return smcf;
}


/*
 * Runs for every server and location after the main module's merge (this
 * module comes after it in the module order): notes each priced
 * location's facilitator and offer. Our own configurations are NULL.
 */

static char *
ngx_http_x402_supported_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_str_t                             prefix;
    ngx_uint_t                            i, j, k;
    ngx_http_x402_option_t               *opt, *oopt;
    ngx_http_x402_loc_conf_t             *xlcf, *other;
    ngx_http_core_loc_conf_t             *clcf;
    ngx_http_core_srv_conf_t             *cscf;
    ngx_http_x402_supported_use_t        *use;
    ngx_http_x402_supported_fac_t        *fac;
    ngx_http_x402_supported_main_conf_t  *smcf;

    xlcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_x402_module);

    if (xlcf == NULL || !xlcf->enable || !xlcf->priced
        || xlcf->options == NULL || xlcf->options == NGX_CONF_UNSET_PTR)
    {
        return NGX_CONF_OK;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_x402_supported_module);
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);

    opt = xlcf->options->elts;

    for (k = 0; k < xlcf->options->nelts; k++) {

        /* each option settles through its own facilitator: <prefix>verify */
        if (opt[k].verify_uri.len <= sizeof("verify") - 1) {
            continue;
        }

        prefix.data = opt[k].verify_uri.data;
        prefix.len = opt[k].verify_uri.len - (sizeof("verify") - 1);

        fac = smcf->facilitators.elts;

        for (i = 0; i < smcf->facilitators.nelts; i++) {
            if (fac[i].cscf == cscf
                && fac[i].prefix.len == prefix.len
                && ngx_strncmp(fac[i].prefix.data, prefix.data, prefix.len)
                   == 0)
            {
                break;
            }
        }

        if (i == smcf->facilitators.nelts) {
            fac = ngx_array_push(&smcf->facilitators);
            if (fac == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memzero(fac, sizeof(ngx_http_x402_supported_fac_t));

            fac->prefix = prefix;
            fac->cscf = cscf;
            fac->uri.len = prefix.len + sizeof("supported") - 1;
            fac->uri.data = ngx_pnalloc(cf->pool, fac->uri.len);
            if (fac->uri.data == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memcpy(ngx_cpymem(fac->uri.data, prefix.data, prefix.len),
                       "supported", sizeof("supported") - 1);

            if (ngx_array_init(&fac->uses, cf->pool, 4,
                               sizeof(ngx_http_x402_supported_use_t))
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else {
            fac = &fac[i];
        }

        /* locations inheriting one offer (or one network and asset) are
         * checked once */

        use = fac->uses.elts;

        for (j = 0; j < fac->uses.nelts; j++) {
            other = use[j].xlcf;
            oopt = other->options->elts;

            if ((xlcf->offer && other->offer == xlcf->offer
                 && use[j].option == k)
                || (xlcf->offer == NULL && other->offer == NULL
                    && oopt[use[j].option].network == opt[k].network
                    && oopt[use[j].option].asset_address
                       == opt[k].asset_address))
            {
                use[j].sharing++;
                break;
            }
        }

        if (j < fac->uses.nelts) {
            continue;
        }

        use = ngx_array_push(&fac->uses);
        if (use == NULL) {
            return NGX_CONF_ERROR;
        }

        use->xlcf = xlcf;
        use->option = k;
        use->sharing = 0;

        if (clcf->name.len) {
            use->location = clcf->name;

        } else {
            ngx_str_set(&use->location, "(server)");
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_x402_supported_init(ngx_conf_t *cf)
{
    size_t                                size;
    ngx_shm_zone_t                       *zone;
    ngx_http_x402_supported_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_x402_supported_module);

    if (smcf->facilitators.nelts == 0) {
        return NGX_OK;
    }

    size = smcf->facilitators.nelts
           * (sizeof(ngx_http_x402_supported_slot_t) + 2 * ngx_pagesize)
           + 8 * ngx_pagesize;

    zone = ngx_shared_memory_add(cf, &ngx_http_x402_supported_zone_name,
                                 size, &ngx_http_x402_supported_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    /* what was learnt belongs to the configuration that asked */
    zone->noreuse = 1;
    zone->init = ngx_http_x402_supported_init_zone;
    zone->data = smcf;

    smcf->zone = zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_x402_supported_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_x402_supported_main_conf_t  *smcf = shm_zone->data;

    ngx_uint_t                      i;
    ngx_slab_pool_t                *shpool;
    ngx_http_x402_supported_fac_t  *fac;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    fac = smcf->facilitators.elts;

    for (i = 0; i < smcf->facilitators.nelts; i++) {
        fac[i].slot = ngx_slab_calloc(shpool,
                                   sizeof(ngx_http_x402_supported_slot_t));
        if (fac[i].slot == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * A server block whose priced locations settle through the facilitator
 * prefix: of those, the one with the key's server_name (background.c),
 * preferably at the key's index, else the first of that name. A key
 * without a name (an older spool or Redis entry) takes the block at its
 * index if it uses the prefix, else the first that does. NULL: no block
 * of this configuration uses it (retry.c keeps what is owed to it).
 */
ngx_http_core_srv_conf_t *
ngx_http_x402_supported_server(ngx_cycle_t *cycle, ngx_str_t *prefix,
    uint64_t key)
{
    uint64_t                              k;
    ngx_uint_t                            i;
    ngx_http_core_srv_conf_t             *found;
    ngx_http_core_main_conf_t            *cmcf;
    ngx_http_x402_supported_fac_t        *fac;
    ngx_http_x402_supported_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_x402_supported_module);
    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module);

    if (smcf == NULL || cmcf == NULL) {
        return NULL;
    }

    found = NULL;
    fac = smcf->facilitators.elts;

    for (i = 0; i < smcf->facilitators.nelts; i++) {

        if (fac[i].prefix.len != prefix->len
            || ngx_strncmp(fac[i].prefix.data, prefix->data, prefix->len)
               != 0)
        {
            continue;
        }

        k = ngx_http_x402_background_server_key(cmcf, fac[i].cscf);

        if (key & NGX_HTTP_X402_SERVER_KEYED) {
            if (ngx_http_x402_server_name_hash(k)
                != ngx_http_x402_server_name_hash(key))
            {
                continue;
            }

        } else if (ngx_http_x402_server_index(k) == key) {
            return fac[i].cscf;
        }

        if (k == key) {
            return fac[i].cscf;
        }

        if (found == NULL) {
            found = fac[i].cscf;
        }
    }

    return found;
}


/* ---- the timer, in one worker ---- */

static ngx_int_t
ngx_http_x402_supported_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                            i;
    ngx_http_x402_supported_fac_t        *fac;
    ngx_http_x402_supported_main_conf_t  *smcf;

    ngx_http_x402_supported_exiting = 0;

    if ((ngx_process != NGX_PROCESS_WORKER
         && ngx_process != NGX_PROCESS_SINGLE)
        || ngx_worker != 0)
    {
        return NGX_OK;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_x402_supported_module);

    if (smcf == NULL || smcf->zone == NULL) {
        return NGX_OK;
    }

    fac = smcf->facilitators.elts;

    for (i = 0; i < smcf->facilitators.nelts; i++) {
        fac[i].backoff = 0;
        fac[i].inflight = 0;
        fac[i].next = ngx_current_msec + NGX_HTTP_X402_SUPPORTED_FIRST;
    }

    ngx_memzero(&ngx_http_x402_supported_timer, sizeof(ngx_event_t));

    ngx_http_x402_supported_timer.handler = ngx_http_x402_supported_tick;
    ngx_http_x402_supported_timer.data = cycle;
    ngx_http_x402_supported_timer.log = cycle->log;
    /* nothing owed hangs on it: a stop does not wait */
    ngx_http_x402_supported_timer.cancelable = 1;

    ngx_add_timer(&ngx_http_x402_supported_timer,
                  NGX_HTTP_X402_SUPPORTED_FIRST);

    return NGX_OK;
}


static void
ngx_http_x402_supported_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_x402_supported_exiting = 1;

    if (ngx_http_x402_supported_timer.timer_set) {
        ngx_del_timer(&ngx_http_x402_supported_timer);
    }
}


static void
ngx_http_x402_supported_tick(ngx_event_t *ev)
{
    ngx_msec_t                            wait;
    ngx_uint_t                            i;
    ngx_cycle_t                          *cycle;
    ngx_msec_int_t                        left;
    ngx_http_x402_supported_fac_t        *fac;
    ngx_http_x402_supported_main_conf_t  *smcf;

    cycle = ev->data;

    if (ngx_http_x402_supported_exiting || ngx_exiting || ngx_quit) {
        return;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_x402_supported_module);
    fac = smcf->facilitators.elts;
    wait = NGX_HTTP_X402_SUPPORTED_REFRESH;

    for (i = 0; i < smcf->facilitators.nelts; i++) {

        left = (ngx_msec_int_t) (fac[i].next - ngx_current_msec);

        if (left <= 0 && !fac[i].inflight) {

            /* until it reports, nothing else is started for it */
            fac[i].next = ngx_current_msec + NGX_HTTP_X402_SUPPORTED_REFRESH;

            if (ngx_http_x402_supported_start(cycle, &fac[i]) != NGX_OK) {
                ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                              "x402: cannot start GET \"%V\"", &fac[i].uri);
                fac[i].next = ngx_current_msec
                              + NGX_HTTP_X402_SUPPORTED_RETRY;
            }

            left = (ngx_msec_int_t) (fac[i].next - ngx_current_msec);
        }

        if (left > 0 && (ngx_msec_t) left < wait) {
            wait = (ngx_msec_t) left;
        }
    }

    ngx_add_timer(ev, wait < 100 ? 100 : wait);
}


/* ---- a GET without a client ---- */

static ngx_int_t
ngx_http_x402_supported_start(ngx_cycle_t *cycle,
    ngx_http_x402_supported_fac_t *fac)
{
    ngx_http_cleanup_t             *cln;
    ngx_http_request_t             *r, *sr;
    ngx_http_x402_supported_req_t  *sq;

    /*
     * A probe nobody waits for (quiet): the facilitator location's own
     * complaints (connect() failed, a 5xx) would come as an [error] at
     * every retry; our one [warn] line per failure names the status.
     */
    r = ngx_http_x402_background_request(cycle, fac->cscf, NGX_HTTP_GET,
                                  "GET x402-facilitator-supported HTTP/1.1",
                                  "asking an x402 facilitator what it "
                                  "supports", 1,
                                  ngx_http_x402_supported_finish);
    if (r == NULL) {
        return NGX_ERROR;
    }

    sq = ngx_pcalloc(r->pool, sizeof(ngx_http_x402_supported_req_t));
    cln = ngx_http_cleanup_add(r, 0);

    if (sq == NULL || cln == NULL) {
        goto failed;
    }

    sq->fac = fac;
    fac->inflight = 1;

    cln->handler = ngx_http_x402_supported_gone;
    cln->data = sq;

    r->uri = fac->uri;
    r->unparsed_uri = fac->uri;

    if (ngx_http_x402_facilitator_request(r, &fac->uri, NULL,
                                          NGX_HTTP_SUBREQUEST_WAITED,
                                          ngx_http_x402_supported_post, sq,
                                          &sr)
        != NGX_OK)
    {
        goto failed;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "x402: GET \"%V\"", &fac->uri);

    ngx_http_run_posted_requests(r->connection);

    return NGX_OK;

failed:

    ngx_http_x402_background_close(r);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_x402_supported_post(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_x402_supported_req_t  *sq = data;

    if (!sq->done) {
        sq->got_response = ngx_http_x402_facilitator_answer(sr, rc,
                                                            &sq->status,
                                                            &sq->body);
    }

    return rc;
}


/* the background request's write handler: its subrequest is done */
static void
ngx_http_x402_supported_finish(ngx_http_request_t *r)
{
    if (r->count > 1) {
        /* still waiting for the subrequest */
        return;
    }

    /* the cleanup reads the answer, then the request is gone */
    ngx_http_x402_background_close(r);
}


/* the request is freed: by us, or by nginx's terminate path */
static void
ngx_http_x402_supported_gone(void *data)
{
    ngx_http_x402_supported_req_t  *sq = data;

    if (!sq->done) {
        sq->done = 1;
        ngx_http_x402_supported_answer(sq, ngx_cycle->log);
    }

    sq->fac->inflight = 0;
}


static void
ngx_http_x402_supported_answer(ngx_http_x402_supported_req_t *sq,
    ngx_log_t *log)
{
    u_char                           hash[32];
    ngx_uint_t                       changed, level;
    ngx_pool_t                      *pool;
    x402_str_t                       body, err;
    ngx_slab_pool_t                 *shpool;
    x402_allocator_t                 a;
    x402_supported_t                *s;
    ngx_http_x402_supported_fac_t   *fac;
    ngx_http_x402_supported_slot_t  *slot;
    ngx_http_x402_supported_main_conf_t  *smcf;

    fac = sq->fac;
    slot = fac->slot;

    if (ngx_http_x402_supported_exiting) {
        return;
    }

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return;
    }

    a.alloc = ngx_http_x402_supported_alloc;
    a.ctx = pool;
    body.data = (const char *) sq->body.data;
    body.len = sq->body.len;
    ngx_memzero(&err, sizeof(x402_str_t));

    s = NULL;

    if (sq->got_response && sq->status == NGX_HTTP_OK) {

        if (body.len > NGX_HTTP_X402_SUPPORTED_MAX) {
            /* the slot's bound, whatever subrequest_output_buffer_size */
            err.data = "the answer is larger than 65536 bytes";
            err.len = sizeof("the answer is larger than 65536 bytes") - 1;

        } else {
            s = x402_supported_parse((int) sq->status, body, &a, &err);
        }
    }

    if (s == NULL) {
        fac->backoff = fac->backoff ? ngx_min(fac->backoff * 2,
                                              NGX_HTTP_X402_SUPPORTED_REFRESH)
                                    : NGX_HTTP_X402_SUPPORTED_RETRY;
        fac->next = ngx_current_msec + fac->backoff;

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "x402: facilitator \"%V\": GET \"%V\" %s%*s "
                      "(status %ui, %uz bytes); what it supports is "
                      "unknown, asking again in %M ms",
                      &fac->prefix, &fac->uri,
                      !sq->got_response ? "got no answer (unreachable, or "
                                          "an answer larger than "
                                          "subrequest_output_buffer_size)"
                      : sq->status != NGX_HTTP_OK ? "failed"
                      : "answered what is not a SupportedResponse: ",
                      err.len, err.data, sq->status, sq->body.len,
                      fac->backoff);

        ngx_destroy_pool(pool);
        ngx_http_x402_supported_rearm(fac->backoff);
        return;
    }

    fac->backoff = 0;
    fac->next = ngx_current_msec + NGX_HTTP_X402_SUPPORTED_REFRESH;

    x402_keccak256(sq->body.data, sq->body.len, hash);

    smcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_x402_supported_module);
    shpool = (ngx_slab_pool_t *) smcf->zone->shm.addr;

    ngx_shmtx_lock(&shpool->mutex);

    ngx_memcpy(slot->body, sq->body.data, sq->body.len);
    slot->len = sq->body.len;
    slot->status = sq->status;
    slot->fetched = ngx_time();
    slot->generation++;

    changed = !slot->has_checked
              || ngx_memcmp(slot->checked, hash, 32) != 0;

    if (changed) {
        ngx_memcpy(slot->checked, hash, 32);
        slot->has_checked = 1;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    level = changed ? NGX_LOG_NOTICE : NGX_LOG_INFO;

    ngx_log_error(level, log, 0,
                  "x402: facilitator \"%V\" supports %uz kind(s)%s",
                  &fac->prefix, x402_supported_count(s),
                  changed ? "; checking the locations that use it" : "");

    if (changed) {
        ngx_http_x402_supported_check(fac, s, log);
    }

    x402_supported_free(s);
    ngx_destroy_pool(pool);
}


/* every option of every location using fac, against what fac supports */
static void
ngx_http_x402_supported_check(ngx_http_x402_supported_fac_t *fac,
    x402_supported_t *s, ngx_log_t *log)
{
    int                             v1;
    ngx_uint_t                      i, k;
    ngx_http_x402_option_t         *opt;
    x402_requirement_t              one;
    const x402_requirement_t       *req;
    ngx_http_x402_loc_conf_t       *xlcf;
    ngx_http_x402_supported_use_t  *use;

    use = fac->uses.elts;

    for (i = 0; i < fac->uses.nelts; i++) {
        xlcf = use[i].xlcf;
        k = use[i].option;
        opt = xlcf->options->elts;

        if (xlcf->offer && k < x402_offer_count(xlcf->offer)) {
            req = x402_offer_get(xlcf->offer, k);

        } else {
            /* a price from variables: the offer is made per request, but
             * a kind is (version, scheme, network) */
            ngx_memzero(&one, sizeof(x402_requirement_t));
            one.scheme.data = "exact";
            one.scheme.len = sizeof("exact") - 1;
            one.network = opt[k].network;
            one.asset.data = (const char *) opt[k].asset_address;
            one.asset.len = ngx_strlen(opt[k].asset_address);
            req = &one;
        }

        v1 = 0;

        if (!x402_supported_requirement(s, req, &v1)) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "x402: location \"%V\"%s: option %ui "
                          "(%*s on %s, asset %*s) is NOT supported by "
                          "its facilitator \"%V\" (GET \"%V\" lists no "
                          "x402Version 2 kind for it): payments for it "
                          "cannot be settled there",
                          &use[i].location,
                          use[i].sharing ? " (and the locations "
                                           "inheriting its offer)" : "",
                          k + 1, req->scheme.len, req->scheme.data,
                          req->network->caip2, req->asset.len,
                          req->asset.data, &fac->prefix, &fac->uri);
            continue;
        }

        if (!v1 && ngx_strcmp(req->network->v1_name, req->network->caip2)
                   != 0)
        {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "x402: location \"%V\": option %ui (%*s on "
                          "%s): facilitator \"%V\" lists no "
                          "x402Version 1 kind for it: v1 payments "
                          "(X-PAYMENT) cannot be settled there",
                          &use[i].location, k + 1, req->scheme.len,
                          req->scheme.data, req->network->v1_name,
                          &fac->prefix);
        }
    }
}


static void
ngx_http_x402_supported_rearm(ngx_msec_t delay)
{
    ngx_event_t  *ev;

    ev = &ngx_http_x402_supported_timer;

    if (ngx_http_x402_supported_exiting || ev->handler == NULL) {
        return;
    }

    if (!ev->timer_set
        || (ngx_msec_int_t) (ev->timer.key - (ngx_current_msec + delay)) > 0)
    {
        ngx_add_timer(ev, delay);
    }
}


static void *
ngx_http_x402_supported_alloc(void *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


/*
 * Copyright (C) ngx_http_x402_module authors
 *
 * Metrics of the x402 module: a fixed-size shared memory zone of atomic
 * counters, a log-phase handler that counts 402s and payment outcomes from
 * $x402_status / $x402_reason, and the `x402_metrics` content handler
 * (Prometheus text exposition format 0.0.4).
 *
 * Over 800 lines as one concern: the counters' layout in the zone, the
 * log-phase counting that fills them and the page that prints them change
 * together whenever a counter or label is added.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_x402_module.h"
#include "ngx_http_x402_metrics.h"
#include "ngx_http_x402_store.h"

#include <x402/x402.h>


#define NGX_HTTP_X402_METRICS_MAGIC     0x78343032u  /* "x402" */
#define NGX_HTTP_X402_METRICS_VERSION   2

/* per-option table: (network, asset, payTo) keys, bounded */
#define NGX_HTTP_X402_METRICS_KEYS      64
#define NGX_HTTP_X402_METRICS_KEY_LEN   64

/*
 * Revenue is kept exact in base 10^9 limbs, least significant first:
 * 10 limbs hold 90 decimal digits, more than any sum of uint256 amounts
 * that a counter will ever see (2^256 has 78 digits).
 */
#define NGX_HTTP_X402_METRICS_LIMBS     10
#define NGX_HTTP_X402_METRICS_BASE      1000000000u

#define NGX_HTTP_X402_METRICS_BUCKETS   11  /* finite buckets; +Inf extra */

#define NGX_HTTP_X402_METRICS_ENDPOINTS 2
#define NGX_HTTP_X402_METRICS_FAC_N     3
#define NGX_HTTP_X402_METRICS_SETTLE_N  3


/* outcomes that carry a reason: invalid, replayed, error */
#define NGX_HTTP_X402_REJECT_N  3


typedef struct {
    u_char                 network[NGX_HTTP_X402_METRICS_KEY_LEN];
    u_char                 asset[NGX_HTTP_X402_METRICS_KEY_LEN];
    u_char                 pay_to[NGX_HTTP_X402_METRICS_KEY_LEN];
    uint8_t                network_len;
    uint8_t                asset_len;
    uint8_t                pay_to_len;
    uint8_t                saturated;
    uint32_t               limb[NGX_HTTP_X402_METRICS_LIMBS];
    /* settlements of this option by result (ok, failed, pending) */
    ngx_atomic_t           settlements[NGX_HTTP_X402_METRICS_SETTLE_N];
} ngx_http_x402_metrics_revenue_t;


typedef struct {
    uint32_t               magic;
    uint32_t               version;
    size_t                 size;

    ngx_atomic_t           required[2];             /* json, html */
    ngx_atomic_t           payments[NGX_HTTP_X402_STATUS_N];
    /* [outcome][reason]: reasons[] indexes, then "other", then "" */
    ngx_atomic_t           rejections[NGX_HTTP_X402_REJECT_N][64];

    ngx_atomic_t           fac_bucket[NGX_HTTP_X402_METRICS_ENDPOINTS]
                                     [NGX_HTTP_X402_METRICS_BUCKETS + 1];
    ngx_atomic_t           fac_sum_ms[NGX_HTTP_X402_METRICS_ENDPOINTS];
    ngx_atomic_t           fac_result[NGX_HTTP_X402_METRICS_ENDPOINTS]
                                     [NGX_HTTP_X402_METRICS_FAC_N];

    ngx_atomic_t           settlements[NGX_HTTP_X402_METRICS_SETTLE_N];

    /* written under the slab pool mutex, read without it */
    ngx_atomic_t           revenue_overflow;
    ngx_uint_t             nrevenue;
    ngx_http_x402_metrics_revenue_t
                           revenue[NGX_HTTP_X402_METRICS_KEYS];
} ngx_http_x402_metrics_shctx_t;


typedef struct {
    ngx_int_t              status_index;
    ngx_int_t              reason_index;
} ngx_http_x402_metrics_main_conf_t;


static ngx_int_t ngx_http_x402_metrics_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_x402_metrics_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_x402_metrics_find(ngx_str_t *s, ngx_str_t *set,
    ngx_uint_t n);
static ngx_int_t ngx_http_x402_metrics_add_amount(
    ngx_http_x402_metrics_revenue_t *rv, ngx_str_t *amount);
static void *ngx_http_x402_metrics_alloc(void *pool, size_t size);
static u_char *ngx_http_x402_metrics_label(u_char *p, ngx_str_t *v);
static u_char *ngx_http_x402_metrics_option_labels(u_char *p,
    ngx_http_x402_metrics_revenue_t *rv);
static u_char *ngx_http_x402_metrics_limbs(u_char *p, uint32_t *limb);
static u_char *ngx_http_x402_metrics_seconds(u_char *p, ngx_atomic_uint_t ms);
static ngx_int_t ngx_http_x402_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void *ngx_http_x402_metrics_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_x402_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_x402_metrics_init(ngx_conf_t *cf);


/* the cycle's zone; set in the master before the workers fork */
static ngx_http_x402_metrics_shctx_t  *ngx_http_x402_metrics_sh;
static ngx_slab_pool_t                *ngx_http_x402_metrics_shpool;


static ngx_str_t  ngx_http_x402_metrics_zone_name =
    ngx_string("x402_metrics");


static ngx_uint_t  ngx_http_x402_metrics_reject_status[] = {
    NGX_HTTP_X402_INVALID,
    NGX_HTTP_X402_REPLAYED,
    NGX_HTTP_X402_ERROR
};


/*
 * The reason label is bounded to the x402 spec's invalidReason /
 * errorReason names (coinbase/x402 specs/x402-specification-v2.md 9,
 * "Error Handling", and the facilitators' codes in
 * typescript/packages/mechanisms/evm/src/exact/facilitator/errors.ts,
 * go/mechanisms/evm/exact/facilitator/errors.go) and the module's own;
 * anything else a facilitator says is "other".
 */
static ngx_str_t  ngx_http_x402_metrics_reasons[] = {
    ngx_string("insufficient_funds"),
    ngx_string("invalid_exact_evm_authorization_value"),
    ngx_string("invalid_exact_evm_eip3009_not_supported"),
    ngx_string("invalid_exact_evm_failed_to_get_network_config"),
    ngx_string("invalid_exact_evm_insufficient_balance"),
    ngx_string("invalid_exact_evm_missing_eip712_domain"),
    ngx_string("invalid_exact_evm_network_mismatch"),
    ngx_string("invalid_exact_evm_nonce_already_used"),
    ngx_string("invalid_exact_evm_payload"),
    ngx_string("invalid_exact_evm_payload_authorization_valid_after"),
    ngx_string("invalid_exact_evm_payload_authorization_valid_before"),
    ngx_string("invalid_exact_evm_payload_authorization_value"),
    ngx_string("invalid_exact_evm_payload_authorization_value_mismatch"),
    ngx_string("invalid_exact_evm_payload_missing_signature"),
    ngx_string("invalid_exact_evm_payload_recipient_mismatch"),
    ngx_string("invalid_exact_evm_payload_signature"),
    ngx_string("invalid_exact_evm_payload_undeployed_smart_wallet"),
    ngx_string("invalid_exact_evm_recipient_mismatch"),
    ngx_string("invalid_exact_evm_scheme"),
    ngx_string("invalid_exact_evm_signature"),
    ngx_string("invalid_exact_evm_signature_format"),
    ngx_string("invalid_exact_evm_token_name_mismatch"),
    ngx_string("invalid_exact_evm_token_version_mismatch"),
    ngx_string("invalid_exact_evm_transaction_failed"),
    ngx_string("invalid_exact_evm_transaction_simulation_failed"),
    ngx_string("invalid_network"),
    ngx_string("invalid_payload"),
    ngx_string("invalid_payment"),
    ngx_string("invalid_payment_requirements"),
    ngx_string("invalid_scheme"),
    ngx_string("invalid_x402_version"),
    ngx_string("missing_eip712_domain"),
    ngx_string("network_mismatch"),
    ngx_string("unexpected_settle_error"),
    ngx_string("unexpected_verify_error"),
    ngx_string("unsupported_scheme"),
    /* the module's own ($x402_reason of the glue and the store) */
    ngx_string("configuration"),
    ngx_string("facilitator_unavailable"),
    ngx_string("grant"),
    ngx_string("internal_error"),
    ngx_string("no_matching_requirement"),
    ngx_string("not_settled"),
    ngx_string("payment_already_used"),
    ngx_string("payment_replayed"),
    ngx_string("payment_too_large"),
    ngx_string("store"),
    ngx_string("store_unavailable")
};

#define NGX_HTTP_X402_METRICS_NREASONS                                        \
    (sizeof(ngx_http_x402_metrics_reasons) / sizeof(ngx_str_t))
#define NGX_HTTP_X402_REASON_OTHER   NGX_HTTP_X402_METRICS_NREASONS
#define NGX_HTTP_X402_REASON_EMPTY   (NGX_HTTP_X402_METRICS_NREASONS + 1)

/* the rejections table has room for every reason, "other" and "" */
typedef char  ngx_http_x402_metrics_reasons_fit[
    (NGX_HTTP_X402_METRICS_NREASONS + 2 <= 64) ? 1 : -1];


static ngx_msec_t  ngx_http_x402_metrics_bounds[] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

static char  *ngx_http_x402_metrics_le[] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "+Inf"
};

static char  *ngx_http_x402_metrics_endpoint[] = { "verify", "settle" };
static char  *ngx_http_x402_metrics_fac_result[] = {
    "ok", "unavailable", "malformed"
};
static char  *ngx_http_x402_metrics_settle_result[] = {
    "ok", "failed", "pending"
};


static ngx_command_t  ngx_http_x402_metrics_commands[] = {

    { ngx_string("x402_metrics"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_x402_metrics,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_x402_metrics_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_x402_metrics_init,            /* postconfiguration */

    ngx_http_x402_metrics_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_x402_metrics_module = {
    NGX_MODULE_V1,
    &ngx_http_x402_metrics_module_ctx,     /* module context */
    ngx_http_x402_metrics_commands,        /* module directives */
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


void
ngx_http_x402_metrics_facilitator(ngx_uint_t endpoint, ngx_msec_t elapsed,
    ngx_uint_t result)
{
    ngx_uint_t                      i;
    ngx_http_x402_metrics_shctx_t  *sh;

    sh = ngx_http_x402_metrics_sh;

    if (sh == NULL
        || endpoint >= NGX_HTTP_X402_METRICS_ENDPOINTS
        || result >= NGX_HTTP_X402_METRICS_FAC_N)
    {
        return;
    }

    ngx_atomic_fetch_add(&sh->fac_result[endpoint][result], 1);

    /* the histogram times only calls that got an answer */
    if (result != NGX_HTTP_X402_METRICS_FAC_OK) {
        return;
    }

    for (i = 0; i < NGX_HTTP_X402_METRICS_BUCKETS; i++) {
        if (elapsed <= ngx_http_x402_metrics_bounds[i]) {
            break;
        }
    }

    ngx_atomic_fetch_add(&sh->fac_bucket[endpoint][i], 1);
    ngx_atomic_fetch_add(&sh->fac_sum_ms[endpoint], elapsed);
}


void
ngx_http_x402_metrics_settlement(ngx_uint_t result, ngx_str_t *network,
    ngx_str_t *asset, ngx_str_t *pay_to, ngx_str_t *amount)
{
    ngx_uint_t                        i, ok;
    ngx_http_x402_metrics_shctx_t    *sh;
    ngx_http_x402_metrics_revenue_t  *rv;

    sh = ngx_http_x402_metrics_sh;

    if (sh == NULL || result >= NGX_HTTP_X402_METRICS_SETTLE_N) {
        return;
    }

    ngx_atomic_fetch_add(&sh->settlements[result], 1);

    if (network == NULL || asset == NULL || pay_to == NULL) {
        /* a background outcome: counted by x402_async_settlements_total */
        return;
    }

    ok = (result == NGX_HTTP_X402_METRICS_SETTLE_OK);

    if (network->len == 0 || network->len >= NGX_HTTP_X402_METRICS_KEY_LEN
        || asset->len == 0 || asset->len >= NGX_HTTP_X402_METRICS_KEY_LEN
        || pay_to->len == 0 || pay_to->len >= NGX_HTTP_X402_METRICS_KEY_LEN
        || (ok && (amount == NULL || amount->len == 0 || amount->len > 78)))
    {
        ngx_atomic_fetch_add(&sh->revenue_overflow, ok);
        return;
    }

    for (i = 0; ok && i < amount->len; i++) {
        if (amount->data[i] < '0' || amount->data[i] > '9') {
            ngx_atomic_fetch_add(&sh->revenue_overflow, ok);
            return;
        }
    }

    /* a short critical section: bounded loops, no allocation, no faults */
    ngx_shmtx_lock(&ngx_http_x402_metrics_shpool->mutex);

    rv = NULL;

    for (i = 0; i < sh->nrevenue; i++) {
        if (sh->revenue[i].network_len == network->len
            && sh->revenue[i].asset_len == asset->len
            && sh->revenue[i].pay_to_len == pay_to->len
            && ngx_memcmp(sh->revenue[i].network, network->data,
                          network->len) == 0
            && ngx_memcmp(sh->revenue[i].asset, asset->data, asset->len)
               == 0
            && ngx_memcmp(sh->revenue[i].pay_to, pay_to->data, pay_to->len)
               == 0)
        {
            rv = &sh->revenue[i];
            break;
        }
    }

    /*
     * A payTo may come from a variable, and one fed by the request lets a
     * client pick it: failed settlements (free to cause under x402_verify
     * local) take rows only in the first half of the table, the rest is
     * kept for options that were paid (t/76).
     */
    if (rv == NULL
        && sh->nrevenue < (ok ? NGX_HTTP_X402_METRICS_KEYS
                              : NGX_HTTP_X402_METRICS_KEYS / 2))
    {
        rv = &sh->revenue[sh->nrevenue];
        ngx_memzero(rv, sizeof(ngx_http_x402_metrics_revenue_t));
        ngx_memcpy(rv->network, network->data, network->len);
        ngx_memcpy(rv->asset, asset->data, asset->len);
        ngx_memcpy(rv->pay_to, pay_to->data, pay_to->len);
        rv->network_len = (uint8_t) network->len;
        rv->asset_len = (uint8_t) asset->len;
        rv->pay_to_len = (uint8_t) pay_to->len;

        /* readers scan up to nrevenue without the lock */
        ngx_memory_barrier();
        sh->nrevenue++;
    }

    if (rv == NULL) {
        ngx_shmtx_unlock(&ngx_http_x402_metrics_shpool->mutex);
        ngx_atomic_fetch_add(&sh->revenue_overflow, ok);
        return;
    }

    ngx_atomic_fetch_add(&rv->settlements[result], 1);

    if (ok) {
        (void) ngx_http_x402_metrics_add_amount(rv, amount);
    }

    ngx_shmtx_unlock(&ngx_http_x402_metrics_shpool->mutex);
}


void
ngx_http_x402_metrics_settled_request(ngx_str_t *body)
{
    ngx_str_t              network, asset, pay_to, amount;
    ngx_pool_t            *pool;
    x402_str_t             b;
    x402_allocator_t       a;
    x402_settle_labels_t   l;

    if (ngx_http_x402_metrics_sh == NULL) {
        return;
    }

    ngx_str_null(&network);
    ngx_str_null(&asset);
    ngx_str_null(&pay_to);
    ngx_str_null(&amount);

    /* the core parses the body: the labels live only until counted */
    pool = ngx_create_pool(1024, ngx_cycle->log);

    if (pool != NULL && body != NULL) {
        a.alloc = ngx_http_x402_metrics_alloc;
        a.ctx = pool;
        b.data = (const char *) body->data;
        b.len = body->len;

        if (x402_settle_labels(b, &a, &l) == 0) {
            network.data = (u_char *) l.network.data;
            network.len = l.network.len;
            asset.data = (u_char *) l.asset.data;
            asset.len = l.asset.len;
            pay_to.data = (u_char *) l.pay_to.data;
            pay_to.len = l.pay_to.len;
            amount.data = (u_char *) l.amount.data;
            amount.len = l.amount.len;
        }
    }

    /* labels left empty count the settlement as untracked revenue */
    ngx_http_x402_metrics_settlement(NGX_HTTP_X402_METRICS_SETTLE_OK,
                                     &network, &asset, &pay_to, &amount);

    if (pool != NULL) {
        ngx_destroy_pool(pool);
    }
}


static void *
ngx_http_x402_metrics_alloc(void *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


static ngx_int_t
ngx_http_x402_metrics_add_amount(ngx_http_x402_metrics_revenue_t *rv,
    ngx_str_t *amount)
{
    u_char      *p, *start, *end;
    uint32_t     add[NGX_HTTP_X402_METRICS_LIMBS], limb, carry;
    ngx_uint_t   i, n;

    ngx_memzero(add, sizeof(add));

    /* digits to limbs, nine at a time from the right */
    end = amount->data + amount->len;
    n = 0;

    while (end > amount->data) {
        start = (end - amount->data > 9) ? end - 9 : amount->data;

        limb = 0;
        for (p = start; p < end; p++) {
            limb = limb * 10 + (*p - '0');
        }

        add[n++] = limb;
        end = start;
    }

    carry = 0;

    for (i = 0; i < NGX_HTTP_X402_METRICS_LIMBS; i++) {
        limb = rv->limb[i] + add[i] + carry;
        carry = (limb >= NGX_HTTP_X402_METRICS_BASE);
        rv->limb[i] = carry ? limb - NGX_HTTP_X402_METRICS_BASE : limb;
    }

    if (carry) {
        /* 10^90 atomic units: keep the largest value rather than wrap */
        rv->saturated = 1;

        for (i = 0; i < NGX_HTTP_X402_METRICS_LIMBS; i++) {
            rv->limb[i] = NGX_HTTP_X402_METRICS_BASE - 1;
        }

        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_x402_metrics_log_handler(ngx_http_request_t *r)
{
    ngx_str_t                           s, reason;
    ngx_uint_t                          st, i, k, status;
    ngx_http_variable_value_t          *vv;
    ngx_http_x402_metrics_shctx_t      *sh;
    ngx_http_x402_metrics_main_conf_t  *mmcf;

    sh = ngx_http_x402_metrics_sh;

    if (sh == NULL || r != r->main) {
        return NGX_OK;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_x402_metrics_module);

    vv = ngx_http_get_flushed_variable(r, mmcf->status_index);

    if (vv == NULL || vv->not_found || vv->len == 0) {
        return NGX_OK;
    }

    s.len = vv->len;
    s.data = vv->data;

    st = ngx_http_x402_metrics_find(&s, ngx_http_x402_status_names,
                                    NGX_HTTP_X402_STATUS_N);

    if (st == NGX_HTTP_X402_STATUS_N || st == NGX_HTTP_X402_NONE) {
        return NGX_OK;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status == 402) {
        k = (r->headers_out.content_type.len >= sizeof("text/html") - 1
             && ngx_strncasecmp(r->headers_out.content_type.data,
                                (u_char *) "text/html",
                                sizeof("text/html") - 1) == 0);

        ngx_atomic_fetch_add(&sh->required[k], 1);
    }

    if (st == NGX_HTTP_X402_REQUIRED) {
        return NGX_OK;
    }

    ngx_atomic_fetch_add(&sh->payments[st], 1);

    for (k = 0; k < NGX_HTTP_X402_REJECT_N; k++) {
        if (ngx_http_x402_metrics_reject_status[k] == st) {
            break;
        }
    }

    if (k == NGX_HTTP_X402_REJECT_N) {
        return NGX_OK;
    }

    vv = ngx_http_get_flushed_variable(r, mmcf->reason_index);

    if (vv == NULL || vv->not_found || vv->len == 0) {
        i = NGX_HTTP_X402_REASON_EMPTY;

    } else {
        reason.len = vv->len;
        reason.data = vv->data;

        i = ngx_http_x402_metrics_find(&reason,
                                       ngx_http_x402_metrics_reasons,
                                       NGX_HTTP_X402_METRICS_NREASONS);
    }

    ngx_atomic_fetch_add(&sh->rejections[k][i], 1);

    return NGX_OK;
}


static ngx_uint_t
ngx_http_x402_metrics_find(ngx_str_t *s, ngx_str_t *set, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (set[i].len == s->len
            && ngx_strncmp(set[i].data, s->data, s->len) == 0)
        {
            return i;
        }
    }

    return n;
}


/*
 * Output bounds: a line of fixed text, and per option a revenue line with
 * its three label values escaped (each byte at most 2) and 90 digits, and
 * a settlement line per result.
 */
#define NGX_HTTP_X402_METRICS_LINE     256
#define NGX_HTTP_X402_METRICS_REVENUE                                         \
    (128 + 6 * NGX_HTTP_X402_METRICS_KEY_LEN + 9 * NGX_HTTP_X402_METRICS_LIMBS \
     + NGX_HTTP_X402_METRICS_SETTLE_N                                         \
       * (128 + 6 * NGX_HTTP_X402_METRICS_KEY_LEN + NGX_ATOMIC_T_LEN))


static ngx_int_t
ngx_http_x402_metrics_handler(ngx_http_request_t *r)
{
    size_t                            size;
    u_char                           *p;
    ngx_int_t                         rc;
    ngx_str_t                         v;
    ngx_buf_t                        *b;
    ngx_uint_t                        i, j, k, n, nrevenue;
    ngx_chain_t                       out;
    ngx_atomic_uint_t                 cum, count;
    ngx_http_x402_metrics_shctx_t    *sh;
    ngx_http_x402_store_counters_t   *sc, zero;
    ngx_http_x402_metrics_revenue_t  *rv;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    sh = ngx_http_x402_metrics_sh;

    if (sh == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "x402: metrics zone is not available");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;
    r->headers_out.content_type_lowcase = NULL;

    n = 64                                            /* HELP/TYPE, fixed */
        + NGX_HTTP_X402_STATUS_N
        + NGX_HTTP_X402_REJECT_N * (NGX_HTTP_X402_METRICS_NREASONS + 2)
        + NGX_HTTP_X402_METRICS_ENDPOINTS
          * (NGX_HTTP_X402_METRICS_BUCKETS + 3 + NGX_HTTP_X402_METRICS_FAC_N)
        + NGX_HTTP_X402_METRICS_SETTLE_N
        + 64;                                         /* store */

    /* the revenue keys printed are those present now */
    nrevenue = sh->nrevenue;
    ngx_memory_barrier();

    if (nrevenue > NGX_HTTP_X402_METRICS_KEYS) {
        nrevenue = NGX_HTTP_X402_METRICS_KEYS;
    }

    size = n * NGX_HTTP_X402_METRICS_LINE
           + nrevenue * NGX_HTTP_X402_METRICS_REVENUE;

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;

    p = ngx_sprintf(p,
            "# HELP x402_payment_required_total "
            "402 Payment Required responses sent, by page format.\n"
            "# TYPE x402_payment_required_total counter\n"
            "x402_payment_required_total{format=\"json\"} %uA\n"
            "x402_payment_required_total{format=\"html\"} %uA\n",
            sh->required[0], sh->required[1]);

    p = ngx_sprintf(p,
            "# HELP x402_payments_total "
            "Requests that presented a payment, by outcome "
            "($x402_status).\n"
            "# TYPE x402_payments_total counter\n");

    for (i = NGX_HTTP_X402_INVALID; i < NGX_HTTP_X402_STATUS_N; i++) {
        p = ngx_sprintf(p, "x402_payments_total{outcome=\"%V\"} %uA\n",
                        &ngx_http_x402_status_names[i], sh->payments[i]);
    }

    p = ngx_sprintf(p,
            "# HELP x402_payment_rejections_total "
            "Payments not served, by outcome and reason ($x402_reason; "
            "unknown reasons are \"other\").\n"
            "# TYPE x402_payment_rejections_total counter\n");

    for (k = 0; k < NGX_HTTP_X402_REJECT_N; k++) {
        for (i = 0; i < NGX_HTTP_X402_METRICS_NREASONS + 2; i++) {

            count = sh->rejections[k][i];

            if (count == 0) {
                continue;
            }

            if (i < NGX_HTTP_X402_METRICS_NREASONS) {
                v = ngx_http_x402_metrics_reasons[i];

            } else if (i == NGX_HTTP_X402_REASON_OTHER) {
                ngx_str_set(&v, "other");

            } else {
                ngx_str_null(&v);
            }

            p = ngx_sprintf(p, "x402_payment_rejections_total{outcome=\"%V\","
                            "reason=\"%V\"} %uA\n",
                            &ngx_http_x402_status_names[
                                ngx_http_x402_metrics_reject_status[k]],
                            &v, count);
        }
    }

    /*
     * One unlabelled histogram per endpoint rather than an endpoint label:
     * simple parsers (and dashboards) handle these without label grouping.
     */
    for (j = 0; j < NGX_HTTP_X402_METRICS_ENDPOINTS; j++) {
        p = ngx_sprintf(p,
                "# HELP x402_facilitator_%s_duration_seconds "
                "Facilitator %s subrequests that got an answer.\n"
                "# TYPE x402_facilitator_%s_duration_seconds histogram\n",
                ngx_http_x402_metrics_endpoint[j],
                ngx_http_x402_metrics_endpoint[j],
                ngx_http_x402_metrics_endpoint[j]);

        cum = 0;

        for (i = 0; i <= NGX_HTTP_X402_METRICS_BUCKETS; i++) {
            cum += sh->fac_bucket[j][i];

            p = ngx_sprintf(p, "x402_facilitator_%s_duration_seconds_bucket"
                            "{le=\"%s\"} %uA\n",
                            ngx_http_x402_metrics_endpoint[j],
                            ngx_http_x402_metrics_le[i], cum);
        }

        p = ngx_sprintf(p, "x402_facilitator_%s_duration_seconds_sum ",
                        ngx_http_x402_metrics_endpoint[j]);
        p = ngx_http_x402_metrics_seconds(p, sh->fac_sum_ms[j]);

        p = ngx_sprintf(p, "\nx402_facilitator_%s_duration_seconds_count"
                        " %uA\n", ngx_http_x402_metrics_endpoint[j], cum);
    }

    p = ngx_sprintf(p,
            "# HELP x402_facilitator_requests_total "
            "Facilitator subrequests, by endpoint and result.\n"
            "# TYPE x402_facilitator_requests_total counter\n");

    for (j = 0; j < NGX_HTTP_X402_METRICS_ENDPOINTS; j++) {
        for (i = 0; i < NGX_HTTP_X402_METRICS_FAC_N; i++) {
            p = ngx_sprintf(p, "x402_facilitator_requests_total"
                            "{endpoint=\"%s\",result=\"%s\"} %uA\n",
                            ngx_http_x402_metrics_endpoint[j],
                            ngx_http_x402_metrics_fac_result[i],
                            sh->fac_result[j][i]);
        }
    }

    p = ngx_sprintf(p,
            "# HELP x402_facilitator_errors_total "
            "Facilitator subrequests without a usable answer.\n"
            "# TYPE x402_facilitator_errors_total counter\n");

    for (j = 0; j < NGX_HTTP_X402_METRICS_ENDPOINTS; j++) {
        count = sh->fac_result[j][NGX_HTTP_X402_METRICS_FAC_UNAVAILABLE]
                + sh->fac_result[j][NGX_HTTP_X402_METRICS_FAC_MALFORMED];

        p = ngx_sprintf(p, "x402_facilitator_errors_total"
                        "{endpoint=\"%s\"} %uA\n",
                        ngx_http_x402_metrics_endpoint[j], count);
    }

    p = ngx_sprintf(p,
            "# HELP x402_settlements_total "
            "Settlements: ok, failed (refused), pending (kept for retry).\n"
            "# TYPE x402_settlements_total counter\n");

    for (i = 0; i < NGX_HTTP_X402_METRICS_SETTLE_N; i++) {
        p = ngx_sprintf(p, "x402_settlements_total{result=\"%s\"} %uA\n",
                        ngx_http_x402_metrics_settle_result[i],
                        sh->settlements[i]);
    }

    /* the store keeps its own counters in its zone: read them there */
    sc = ngx_http_x402_store_counters(r);

    if (sc == NULL) {
        ngx_memzero(&zero, sizeof(ngx_http_x402_store_counters_t));
        sc = &zero;
    }

    p = ngx_sprintf(p,
            "# HELP x402_settlements_pending "
            "Settlements served on credit (x402_settle async) and not yet "
            "settled.\n"
            "# TYPE x402_settlements_pending gauge\n"
            "x402_settlements_pending %uA\n"
            "# HELP x402_settlement_retries_total "
            "Background settlement attempts after the first.\n"
            "# TYPE x402_settlement_retries_total counter\n"
            "x402_settlement_retries_total %uA\n"
            "# HELP x402_settlements_lost_total "
            "Async settlements given up (authorization expired "
            "unsettled).\n"
            "# TYPE x402_settlements_lost_total counter\n"
            "x402_settlements_lost_total %uA\n",
            sc->pending, sc->async_retries, sc->async_lost);

    /* what became of the settlements owed (issue 14: durable, and known) */
    p = ngx_sprintf(p,
            "# HELP x402_async_settlements_total "
            "Async settlements that left the queue: settled (by the "
            "facilitator), settled_on_chain (the facilitator's answer was "
            "lost, the chain says the authorization was used), refused (by "
            "the facilitator: final, not retried), given_up (expired "
            "unsettled, not used on chain), unknown (expired after an "
            "answer was lost, no chain lookup).\n"
            "# TYPE x402_async_settlements_total counter\n"
            "x402_async_settlements_total{outcome=\"settled\"} %uA\n"
            "x402_async_settlements_total{outcome=\"settled_on_chain\"} %uA\n"
            "x402_async_settlements_total{outcome=\"refused\"} %uA\n"
            "x402_async_settlements_total{outcome=\"given_up\"} %uA\n"
            "x402_async_settlements_total{outcome=\"unknown\"} %uA\n"
            "# HELP x402_async_settle_failures_total "
            "Failed async settlement attempts: refused by the facilitator "
            "(final), or unanswered (timeout, 5xx, garbage: it may have "
            "settled).\n"
            "# TYPE x402_async_settle_failures_total counter\n"
            "x402_async_settle_failures_total{result=\"refused\"} %uA\n"
            "x402_async_settle_failures_total{result=\"unanswered\"} %uA\n"
            "# HELP x402_async_resumed_total "
            "Owed async settlements read back from the spool at a start.\n"
            "# TYPE x402_async_resumed_total counter\n"
            "x402_async_resumed_total %uA\n",
            sc->async_settled, sc->async_chain, sc->async_refused,
            sc->async_lost, sc->async_unknown, sc->async_refused,
            sc->async_unanswered,
            sc->async_resumed);

    p = ngx_sprintf(p,
            "# HELP x402_store_errors_total "
            "Store failures: Redis commands failed or timed out, the zone "
            "full (503).\n"
            "# TYPE x402_store_errors_total counter\n"
            "x402_store_errors_total{backend=\"zone\"} %uA\n"
            "x402_store_errors_total{backend=\"redis\"} %uA\n"
            "# HELP x402_store_fallbacks_total "
            "Redis unusable, payment recorded in the local zone only "
            "(fail=open).\n"
            "# TYPE x402_store_fallbacks_total counter\n"
            "x402_store_fallbacks_total %uA\n"
            "# HELP x402_store_refusals_total "
            "Redis unusable, paid request refused with 503 (fail=closed).\n"
            "# TYPE x402_store_refusals_total counter\n"
            "x402_store_refusals_total %uA\n"
            "# HELP x402_store_records "
            "Authorizations recorded in the zone.\n"
            "# TYPE x402_store_records gauge\n"
            "x402_store_records %uA\n"
            "# HELP x402_store_refused_evicted_total "
            "Records of refused payments evicted to make room in a full "
            "zone.\n"
            "# TYPE x402_store_refused_evicted_total counter\n"
            "x402_store_refused_evicted_total %uA\n"
            "# HELP x402_store_redis_data_lost_total "
            "Times this nginx found that Redis had lost its data.\n"
            "# TYPE x402_store_redis_data_lost_total counter\n"
            "x402_store_redis_data_lost_total %uA\n"
            "# HELP x402_store_redis_unvouched_total "
            "Payments Redis had not seen while it could not vouch (it "
            "lost its data lately): 503 or facilitator verification.\n"
            "# TYPE x402_store_redis_unvouched_total counter\n"
            "x402_store_redis_unvouched_total %uA\n",
            sc->full, sc->redis_errors, sc->redis_fallback,
            sc->redis_refused, sc->records, sc->refused_evicted,
            sc->redis_forgot, sc->redis_distrusted);

    p = ngx_sprintf(p,
            "# HELP x402_revenue_atomic_total "
            "Settled amounts in the asset's atomic units (exact integer).\n"
            "# TYPE x402_revenue_atomic_total counter\n");

    for (i = 0; i < nrevenue; i++) {
        rv = &sh->revenue[i];

        p = ngx_cpymem(p, "x402_revenue_atomic_total",
                       sizeof("x402_revenue_atomic_total") - 1);
        p = ngx_http_x402_metrics_option_labels(p, rv);
        p = ngx_cpymem(p, "} ", sizeof("} ") - 1);

        /*
         * A limb may be read mid-update by a concurrent settlement; take
         * the lock so a scrape never shows a torn sum.
         */
        ngx_shmtx_lock(&ngx_http_x402_metrics_shpool->mutex);
        p = ngx_http_x402_metrics_limbs(p, rv->limb);
        ngx_shmtx_unlock(&ngx_http_x402_metrics_shpool->mutex);

        *p++ = LF;
    }

    p = ngx_sprintf(p,
            "# HELP x402_option_settlements_total "
            "Settlements made for a paid request, by the option paid "
            "(network, asset, payTo) and result.\n"
            "# TYPE x402_option_settlements_total counter\n");

    for (i = 0; i < nrevenue; i++) {
        rv = &sh->revenue[i];

        for (k = 0; k < NGX_HTTP_X402_METRICS_SETTLE_N; k++) {
            p = ngx_cpymem(p, "x402_option_settlements_total",
                           sizeof("x402_option_settlements_total") - 1);
            p = ngx_http_x402_metrics_option_labels(p, rv);
            p = ngx_sprintf(p, ",result=\"%s\"} %uA\n",
                            ngx_http_x402_metrics_settle_result[k],
                            rv->settlements[k]);
        }
    }

    p = ngx_sprintf(p,
            "# HELP x402_revenue_untracked_total "
            "Settlements whose revenue could not be recorded (table full "
            "or oversized labels).\n"
            "# TYPE x402_revenue_untracked_total counter\n"
            "x402_revenue_untracked_total %uA\n",
            sh->revenue_overflow);

    if ((size_t) (p - b->pos) > size) {
        /* the bounds above are wrong: never send past the buffer */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "x402: metrics output overflow");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* {network="...",asset="...",pay_to="..." of an option, escaped, unclosed */
static u_char *
ngx_http_x402_metrics_option_labels(u_char *p,
    ngx_http_x402_metrics_revenue_t *rv)
{
    ngx_str_t  v;

    p = ngx_cpymem(p, "{network=\"", sizeof("{network=\"") - 1);
    v.data = rv->network;
    v.len = rv->network_len;
    p = ngx_http_x402_metrics_label(p, &v);

    p = ngx_cpymem(p, "\",asset=\"", sizeof("\",asset=\"") - 1);
    v.data = rv->asset;
    v.len = rv->asset_len;
    p = ngx_http_x402_metrics_label(p, &v);

    p = ngx_cpymem(p, "\",pay_to=\"", sizeof("\",pay_to=\"") - 1);
    v.data = rv->pay_to;
    v.len = rv->pay_to_len;
    p = ngx_http_x402_metrics_label(p, &v);

    *p++ = '"';

    return p;
}


/* label value escaping of the text format: backslash, quote, newline */
static u_char *
ngx_http_x402_metrics_label(u_char *p, ngx_str_t *v)
{
    ngx_uint_t  i;

    for (i = 0; i < v->len; i++) {
        switch (v->data[i]) {

        case '\\':
            *p++ = '\\';
            *p++ = '\\';
            break;

        case '"':
            *p++ = '\\';
            *p++ = '"';
            break;

        case LF:
            *p++ = '\\';
            *p++ = 'n';
            break;

        default:
            *p++ = v->data[i];
        }
    }

    return p;
}


static u_char *
ngx_http_x402_metrics_limbs(u_char *p, uint32_t *limb)
{
    ngx_int_t  i;

    for (i = NGX_HTTP_X402_METRICS_LIMBS - 1; i > 0; i--) {
        if (limb[i] != 0) {
            break;
        }
    }

    p = ngx_sprintf(p, "%uD", limb[i]);

    while (--i >= 0) {
        p = ngx_sprintf(p, "%09uD", limb[i]);
    }

    return p;
}


static u_char *
ngx_http_x402_metrics_seconds(u_char *p, ngx_atomic_uint_t ms)
{
    return ngx_sprintf(p, "%uA.%03uA", ms / 1000, ms % 1000);
}


static ngx_int_t
ngx_http_x402_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t                *shpool;
    ngx_http_x402_metrics_shctx_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    sh = data;

    /* a reload keeps the counters, unless their layout changed */
    if (sh != NULL
        && sh->magic == NGX_HTTP_X402_METRICS_MAGIC
        && sh->version == NGX_HTTP_X402_METRICS_VERSION
        && sh->size == sizeof(ngx_http_x402_metrics_shctx_t))
    {
        goto done;
    }

    if (shm_zone->shm.exists && shpool->data != NULL) {
        sh = shpool->data;

        if (sh->magic == NGX_HTTP_X402_METRICS_MAGIC
            && sh->version == NGX_HTTP_X402_METRICS_VERSION
            && sh->size == sizeof(ngx_http_x402_metrics_shctx_t))
        {
            goto done;
        }
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_x402_metrics_shctx_t));
    if (sh == NULL) {
        ngx_log_error(NGX_LOG_ALERT, shm_zone->shm.log, 0,
                      "x402: cannot allocate the metrics in zone \"%V\"",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    sh->magic = NGX_HTTP_X402_METRICS_MAGIC;
    sh->version = NGX_HTTP_X402_METRICS_VERSION;
    sh->size = sizeof(ngx_http_x402_metrics_shctx_t);

    shpool->data = sh;

done:

    shm_zone->data = sh;

    ngx_http_x402_metrics_sh = sh;
    ngx_http_x402_metrics_shpool = shpool;

    return NGX_OK;
}


static void *
ngx_http_x402_metrics_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_x402_metrics_main_conf_t  *mmcf;

    mmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_x402_metrics_main_conf_t));
    if (mmcf == NULL) {
        return NULL;
    }

    mmcf->status_index = NGX_ERROR;
    mmcf->reason_index = NGX_ERROR;

    return mmcf;
}


static char *
ngx_http_x402_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_x402_metrics_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_x402_metrics_init(ngx_conf_t *cf)
{
    size_t                              size;
    ngx_str_t                           name;
    ngx_shm_zone_t                     *shm_zone;
    ngx_http_handler_pt                *h;
    ngx_http_core_main_conf_t          *cmcf;
    ngx_http_x402_metrics_main_conf_t  *mmcf;

    /* room for the counters and the slab allocator's own pages */
    size = ngx_align(2 * sizeof(ngx_http_x402_metrics_shctx_t), ngx_pagesize)
           + 8 * ngx_pagesize;

    shm_zone = ngx_shared_memory_add(cf, &ngx_http_x402_metrics_zone_name,
                                     size, &ngx_http_x402_metrics_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_x402_metrics_init_zone;

    mmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_x402_metrics_module);

    ngx_str_set(&name, "x402_status");
    mmcf->status_index = ngx_http_get_variable_index(cf, &name);
    if (mmcf->status_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_str_set(&name, "x402_reason");
    mmcf->reason_index = ngx_http_get_variable_index(cf, &name);
    if (mmcf->reason_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_x402_metrics_log_handler;

    return NGX_OK;
}

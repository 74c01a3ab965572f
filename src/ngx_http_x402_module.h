
/*
 * ngx_http_x402_module: types shared by the nginx glue.
 *
 * The glue is C and sees the C++ core only through <x402/x402.h>. Three
 * lifetimes: configuration (offers created in merge, freed by a cf->pool
 * cleanup), request (the ctx below, living in a tagged r->pool cleanup
 * slot that also frees the request's core objects) and worker (none yet).
 */

#ifndef _NGX_HTTP_X402_MODULE_H_INCLUDED_
#define _NGX_HTTP_X402_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <x402/x402.h>


#ifndef NGX_HTTP_PAYMENT_REQUIRED
#define NGX_HTTP_PAYMENT_REQUIRED       402
#endif


#define NGX_HTTP_X402_SETTLE_SYNC       0
#define NGX_HTTP_X402_SETTLE_AFTER      1
#define NGX_HTTP_X402_SETTLE_ASYNC      2

#define NGX_HTTP_X402_VERIFY_FACILITATOR  0
#define NGX_HTTP_X402_VERIFY_LOCAL        1


/* $x402_status */
typedef enum {
    NGX_HTTP_X402_NONE = 0,         /* not charged: free, off, subrequest */
    NGX_HTTP_X402_REQUIRED,         /* no payment: 402 */
    NGX_HTTP_X402_INVALID,          /* payment refused (locally or remotely) */
    NGX_HTTP_X402_VERIFIED,         /* verified, settlement pending/skipped */
    NGX_HTTP_X402_SETTLED,          /* settled by the facilitator */
    NGX_HTTP_X402_REUSED,           /* served under a grant (store) */
    NGX_HTTP_X402_REPLAYED,         /* payment already used (store) */
    NGX_HTTP_X402_ERROR             /* our side or the facilitator failed */
} ngx_http_x402_status_e;

#define NGX_HTTP_X402_STATUS_N  (NGX_HTTP_X402_ERROR + 1)

/* the $x402_status strings, indexed by ngx_http_x402_status_e */
extern ngx_str_t  ngx_http_x402_status_names[];


/* ngx_http_x402_check() results, besides NGX_OK, NGX_DECLINED, statuses */
#define NGX_HTTP_X402_CHECK_NONE        1   /* no payment header */
#define NGX_HTTP_X402_CHECK_FAILED      2   /* refused by the local checks */

/* x402_accept: options per location (the core's bound on an offer) */
#define NGX_HTTP_X402_MAX_OPTIONS       16

/* x402_resource_url: bounds what a variable can put into every 402 */
#define NGX_HTTP_X402_MAX_RESOURCE_URL  4096


/* the request's position in the access/filter state machine */
typedef enum {
    NGX_HTTP_X402_STATE_NEW = 0,
    NGX_HTTP_X402_STATE_RESERVING,  /* store hook pending (async store) */
    NGX_HTTP_X402_STATE_VERIFYING,  /* /verify subrequest in flight */
    NGX_HTTP_X402_STATE_SETTLING,   /* sync: /settle subrequest in flight */
    NGX_HTTP_X402_STATE_PASSED,     /* access granted, content may run */
    NGX_HTTP_X402_STATE_FINAL       /* a 402/5xx was decided: never again */
} ngx_http_x402_state_e;


typedef struct {
    u_char                      address[43];    /* checksummed, NUL */
    ngx_str_t                   name;           /* EIP-712 domain name */
    ngx_str_t                   version;        /* EIP-712 domain version */
    ngx_uint_t                  decimals;       /* NGX_CONF_UNSET_UINT: 6 */
} ngx_http_x402_asset_t;


typedef struct {
    ngx_str_t                   file;           /* where a directive was */
    ngx_uint_t                  line;
} ngx_http_x402_conf_pos_t;


/* x402_accept: one way to pay, as written (unset members fall back) */
typedef struct {
    const x402_network_t       *network;
    ngx_http_x402_asset_t      *asset;          /* NULL: network's USDC */
    ngx_http_complex_value_t   *price;          /* NULL: x402_price */
    ngx_flag_t                  price_atomic;
    ngx_http_complex_value_t   *pay_to;         /* NULL: x402_pay_to */
    u_char                      static_pay_to[43];
    ngx_str_t                   facilitator;    /* empty: x402_facilitator */
    time_t                      max_timeout;    /* unset: x402_max_timeout */
    ngx_http_x402_conf_pos_t    pos;
} ngx_http_x402_accept_t;


/*
 * One resolved option of a location's offer, in the order of `accepts`:
 * the x402_accept list, or the one implicit option of x402_price,
 * x402_network, x402_asset and x402_pay_to.
 */
typedef struct {
    const x402_network_t       *network;
    u_char                     *asset_address;  /* checksummed */
    ngx_str_t                   asset_name;
    ngx_str_t                   asset_version;
    ngx_uint_t                  decimals;
    ngx_http_complex_value_t   *price;
    ngx_flag_t                  price_atomic;
    ngx_http_complex_value_t   *pay_to;
    u_char                     *static_pay_to;
    u_char                      static_amount[X402_MAX_AMOUNT_DIGITS + 1];
    ngx_str_t                   verify_uri;     /* <prefix>verify */
    ngx_str_t                   settle_uri;     /* <prefix>settle */
    time_t                      max_timeout;
    ngx_http_x402_conf_pos_t    pos;            /* for messages */
} ngx_http_x402_option_t;


typedef struct {
    ngx_flag_t                  enable;         /* x402 on|off */

    ngx_array_t                *accepts;        /* x402_accept_t, as written */
    ngx_array_t                *options;        /* x402_option_t, resolved */

    ngx_http_complex_value_t   *price;          /* x402_price */
    ngx_flag_t                  price_atomic;
    ngx_http_x402_conf_pos_t    price_pos;

    ngx_http_complex_value_t   *pay_to;         /* x402_pay_to */
    ngx_http_x402_conf_pos_t    pay_to_pos;

    const x402_network_t       *network;        /* x402_network */
    ngx_http_x402_asset_t      *asset;          /* x402_asset */
    ngx_http_x402_conf_pos_t    asset_pos;

    ngx_str_t                   description;
    ngx_str_t                   mime_type;
    time_t                      max_timeout;
    size_t                      hold_buffer_size;   /* x402_hold_buffer_size */
    off_t                       hold_max_size;      /* x402_hold_max_size */
    ngx_http_x402_conf_pos_t    hold_max_pos;

    ngx_str_t                   facilitator;    /* URI prefix */
    ngx_str_t                   verify_uri;     /* <prefix>verify */
    ngx_str_t                   settle_uri;     /* <prefix>settle */

    ngx_uint_t                  settle;         /* NGX_HTTP_X402_SETTLE_* */
    ngx_uint_t                  verify;         /* NGX_HTTP_X402_VERIFY_* */
    ngx_uint_t                  log_level;      /* client failures */

    /* resolved in merge */
    ngx_uint_t                  priced;         /* price set, not free */
    ngx_uint_t                  decimals;       /* of the asset */
    ngx_str_t                   asset_name;
    ngx_str_t                   asset_version;
    u_char                     *asset_address;  /* checksummed */
    u_char                      static_pay_to[43];

    ngx_http_complex_value_t   *resource_url;   /* x402_resource_url */
    ngx_str_t                   discovery;      /* x402_discovery: JSON */

    /* the offer when nothing depends on variables, else NULL */
    x402_offer_t               *offer;
    u_char                      static_amount[X402_MAX_AMOUNT_DIGITS + 1];
} ngx_http_x402_loc_conf_t;


typedef struct ngx_http_x402_ctx_s  ngx_http_x402_ctx_t;

/* what a facilitator call's caller does once the answer is in (or lost) */
typedef void (*ngx_http_x402_call_done_pt)(ngx_http_x402_ctx_t *ctx);

/* x402_facilitator_parse_verify or x402_facilitator_parse_settle */
typedef int (*ngx_http_x402_parse_pt)(int status, x402_str_t body,
    const x402_allocator_t *a, x402_facilitator_result_t *out);


typedef struct {
    ngx_str_t                   body;           /* the facilitator's answer */
    ngx_uint_t                  status;         /* its HTTP status, 0: none */
    ngx_msec_t                  start;          /* for latency (metrics) */
    ngx_msec_t                  elapsed;
    ngx_http_request_t         *sr;
    ngx_http_x402_call_done_pt  handler;        /* the caller's, or NULL */
    unsigned                    issued:1;
    unsigned                    done:1;
    unsigned                    failed:1;       /* NGX_ERROR / no response */
} ngx_http_x402_call_t;

struct ngx_http_x402_ctx_s {
    ngx_http_request_t         *request;        /* the main request */

    ngx_http_x402_state_e       state;
    ngx_http_x402_status_e      status;         /* $x402_status */

    /* what the decision was made under (locations change on redirects) */
    ngx_uint_t                  settle_mode;
    ngx_uint_t                  verify_mode;
    ngx_uint_t                  log_level;
    ngx_str_t                   verify_uri;
    ngx_str_t                   settle_uri;

    const x402_offer_t         *offer;
    x402_payment_t             *payment;        /* freed by the cleanup */
    x402_verdict_t              verdict;
    int                         version;        /* of the payment, 1 or 2 */

    ngx_str_t                   resource_url;
    ngx_str_t                   fac_body;       /* same bytes to both calls */

    /* variables; all point into r->pool or the payment object */
    ngx_str_t                   reason;
    ngx_str_t                   amount;
    ngx_str_t                   network;
    ngx_str_t                   asset;          /* $x402_asset */
    ngx_str_t                   payer;
    ngx_str_t                   tx;
    ngx_str_t                   payment_id;

    ngx_str_t                   settle_header;  /* PAYMENT-RESPONSE value */

    /* the local checks, run once (see ngx_http_x402_checked) */
    void                       *checked_conf;   /* their location, or NULL */
    ngx_str_t                   checked_uri;
    ngx_uint_t                  checked_uri_changes;
    time_t                      checked_at;
    ngx_int_t                   checked_rc;
    const char                 *checked_reason;
    const char                 *checked_message;

    ngx_http_x402_call_t        verify;
    ngx_http_x402_call_t        settle;

    /* x402_settle after: the held response */
    ngx_chain_t                *held;
    ngx_chain_t               **held_last;
    ngx_event_t                 release;        /* posted when settled */
    ngx_buf_t                  *held_tail;
    size_t                      held_size;      /* in memory */
    size_t                      hold_limit;     /* x402_hold_buffer_size */
    off_t                       hold_max;       /* memory + file bound */
    ngx_temp_file_t            *temp_file;      /* past hold_limit */
    ngx_output_chain_ctx_t     *output;         /* once released */

    void                       *store;          /* ngx_http_x402_store_op_t */

    /* the location the payment was granted at last, and the error_page
     * status kept aside there (x402_settle after) */
    void                       *paid_conf;
    ngx_uint_t                  err_status;

    /* the location the request was at before this one, and the last named
     * location reached from the paid one (or from its named content):
     * what an unpriced named location sends is paid content only then */
    void                       *last_conf;
    void                       *named_conf;
    ngx_str_t                   named_name;     /* its "@name" (t/78) */

    unsigned                    reserved:1;     /* store hook said OK */
    unsigned                    recorded:1;     /* outcome recorded once */
    unsigned                    header_added:1;
    unsigned                    header_held:1;
    unsigned                    released:1;
    unsigned                    discard:1;      /* settle refused: drop */
    unsigned                    last_held:1;    /* last_buf seen */
    unsigned                    keepalive:1;    /* r->keepalive, while held */
    unsigned                    preflight:1;    /* CORS preflight: no body */
};


extern ngx_module_t  ngx_http_x402_module;


/* ngx_http_x402_ctx.c */
ngx_http_x402_ctx_t *ngx_http_x402_create_ctx(ngx_http_request_t *r);
ngx_http_x402_ctx_t *ngx_http_x402_get_ctx(ngx_http_request_t *r);
void *ngx_http_x402_alloc(void *pool, size_t size);
void ngx_http_x402_set_reason(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, const char *reason, size_t len);
void ngx_http_x402_clean_str(ngx_http_request_t *r, ngx_str_t *dst,
    x402_str_t *src);
ngx_int_t ngx_http_x402_copy_str(ngx_http_request_t *r, ngx_str_t *dst,
    x402_str_t *src);

/* ngx_http_x402_background.c */
ngx_http_request_t *ngx_http_x402_background_request(ngx_cycle_t *cycle,
    ngx_http_core_srv_conf_t *cscf, ngx_uint_t method, char *line,
    char *action, ngx_uint_t quiet, ngx_http_event_handler_pt finish);
void ngx_http_x402_background_close(ngx_http_request_t *r);
uint64_t ngx_http_x402_background_server_key(ngx_http_core_main_conf_t *cmcf,
    ngx_http_core_srv_conf_t *cscf);
ngx_http_core_srv_conf_t *ngx_http_x402_background_server(ngx_cycle_t *cycle,
    uint64_t key);

/*
 * An owed settlement's server key: this bit, the murmur2 hash of the
 * server block's first server_name (bits 16..47) and its index (0..15).
 * Without the bit, an index (spools and Redis entries of older versions).
 */
#define NGX_HTTP_X402_SERVER_KEYED      ((uint64_t) 1 << 48)
#define ngx_http_x402_server_name_hash(k)  (((k) >> 16) & 0xffffffff)
#define ngx_http_x402_server_index(k)      ((k) & 0xffff)

/* ngx_http_x402_supported.c */
ngx_http_core_srv_conf_t *ngx_http_x402_supported_server(ngx_cycle_t *cycle,
    ngx_str_t *prefix, uint64_t key);

/* ngx_http_x402_request.c */
void ngx_http_x402_requirement(ngx_http_x402_loc_conf_t *xlcf,
    ngx_http_x402_option_t *opt, u_char *amount, u_char *pay_to,
    x402_requirement_t *req);
ngx_http_x402_option_t *ngx_http_x402_option_find(
    ngx_http_x402_loc_conf_t *xlcf, x402_verdict_t *vd);
ngx_int_t ngx_http_x402_variable_price(ngx_http_request_t *r,
    ngx_http_x402_option_t *opt, u_char *amount, ngx_str_t *price,
    const char **err);
ngx_int_t ngx_http_x402_location_offer(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, const x402_offer_t **out);
ngx_uint_t ngx_http_x402_offer_covers(const x402_offer_t *offer,
    x402_verdict_t *vd);
ngx_int_t ngx_http_x402_resource_url(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);
ngx_int_t ngx_http_x402_find_payment(ngx_http_request_t *r, ngx_str_t *value,
    int *version);
ngx_uint_t ngx_http_x402_preflight(ngx_http_request_t *r);
ngx_int_t ngx_http_x402_check(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);
ngx_uint_t ngx_http_x402_checked(ngx_http_request_t *r,
    ngx_http_x402_loc_conf_t *xlcf, ngx_http_x402_ctx_t *ctx);

/* ngx_http_x402_response.c */
ngx_int_t ngx_http_x402_send_402(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_str_t *error, ngx_str_t *filter_body);
ngx_int_t ngx_http_x402_send_json_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *error, ngx_str_t *detail);
ngx_int_t ngx_http_x402_push_header(ngx_http_request_t *r,
    ngx_str_t *key, ngx_str_t *value);

/* ngx_http_x402_settle.c */
ngx_int_t ngx_http_x402_settle_result(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
void ngx_http_x402_outcome(ngx_http_request_t *r, ngx_http_x402_ctx_t *ctx);

/* ngx_http_x402_handler.c */
ngx_int_t ngx_http_x402_access_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_x402_location_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_x402_subrequest_handler(ngx_http_request_t *r);

/*
 * Store hooks (replay protection, grants, settlement retries). Called at
 * exactly one place each; see the comments at their definitions.
 */
ngx_int_t ngx_http_x402_store_reserve(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
void ngx_http_x402_store_record(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
void ngx_http_x402_store_abandoned(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
ngx_int_t ngx_http_x402_store_async(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
const char *ngx_http_x402_store_window_check(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);
void ngx_http_x402_store_note_window(ngx_conf_t *cf, time_t max_timeout);
void ngx_http_x402_store_note_async(ngx_conf_t *cf);

/* ngx_http_x402_facilitator.c */
ngx_int_t ngx_http_x402_facilitator_request(ngx_http_request_t *r,
    ngx_str_t *uri, ngx_str_t *body, ngx_uint_t flags,
    ngx_http_post_subrequest_pt handler, void *data,
    ngx_http_request_t **psr);
ngx_int_t ngx_http_x402_facilitator_call(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx, ngx_http_x402_call_t *call, ngx_str_t *uri,
    ngx_http_x402_call_done_pt done);
int ngx_http_x402_parse_call(ngx_http_request_t *r,
    ngx_http_x402_call_t *call, ngx_http_x402_parse_pt parse,
    ngx_uint_t endpoint, x402_facilitator_result_t *res);
ngx_int_t ngx_http_x402_facilitator_broken_status(ngx_http_x402_call_t *call);
ngx_uint_t ngx_http_x402_own_subrequest(ngx_http_request_t *sr);
ngx_uint_t ngx_http_x402_facilitator_answer(ngx_http_request_t *sr,
    ngx_int_t rc, ngx_uint_t *status, ngx_str_t *body);

/* ngx_http_x402_filter.c */
ngx_int_t ngx_http_x402_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_x402_filter_watch(ngx_http_request_t *r,
    ngx_http_x402_ctx_t *ctx);

/* ngx_http_x402_discovery.c */
char *ngx_http_x402_discovery(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* ngx_http_x402_variables.c */
ngx_int_t ngx_http_x402_add_variables(ngx_conf_t *cf);


#endif /* _NGX_HTTP_X402_MODULE_H_INCLUDED_ */

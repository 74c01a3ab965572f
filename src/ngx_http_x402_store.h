
/*
 * ngx_http_x402_store.h: the authorization store, as the glue sees it.
 *
 * Every accepted payment is recorded under its identity (the core's
 * payment_id: keccak of chain id, asset, from, nonce) before anything is
 * served. The records live in a shared-memory zone (x402_zone, created
 * implicitly as "x402" 16m when absent) and, with x402_redis, in Redis too so
 * that a fleet shares them.
 *
 * Flow for the glue (access phase):
 *
 *     rc = ngx_http_x402_store_op_reserve(r, op, &verdict);
 *     NGX_AGAIN: return NGX_AGAIN; the request is re-entered through
 *                r->write_event_handler once op->done is set
 *     NGX_OK:    op->result says what to do:
 *                FRESH       reserved for this request: verify / settle
 *                REUSED      a grant applies: serve, settle nothing
 *                REPLAYED    402, $x402_status "replayed"
 *                UNAVAILABLE 503 (zone full, or Redis down with fail=closed)
 *     NGX_ERROR: 500
 *
 * then, for a FRESH reservation, exactly one of
 *     ngx_http_x402_store_op_settled()
 *         the facilitator settled (tx hash);
 *     ngx_http_x402_store_op_failed()
 *         the facilitator refused the payment: later presentations are
 *         refused too, with that reason;
 *     ngx_http_x402_store_op_release()
 *         nothing was served and nothing settled (facilitator unreachable
 *         in sync mode, a response >= 400 in after mode): the client may
 *         present it again;
 *     ngx_http_x402_store_op_async_begin()
 *         x402_settle async: the settlement is queued in the zone before
 *         serving; its first attempt starts from a request of its own
 *         (ngx_http_x402_retry_first()), whose outcome goes to
 *         ngx_http_x402_store_op_async_end().
 * A reservation with none of these (the request died) stays reserved until
 * it expires: never served twice.
 *
 * The op lives in the glue's request ctx (r->pool); the store registers its
 * own r->pool cleanup, so a request that goes away mid-command leaves no
 * callback behind.
 */

#ifndef _NGX_HTTP_X402_STORE_H_INCLUDED_
#define _NGX_HTTP_X402_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <x402/x402.h>


#define NGX_HTTP_X402_STORE_FRESH        0
#define NGX_HTTP_X402_STORE_REUSED       1
#define NGX_HTTP_X402_STORE_REPLAYED     2
#define NGX_HTTP_X402_STORE_UNAVAILABLE  3

/* record states */
#define NGX_HTTP_X402_REC_RESERVED       1
#define NGX_HTTP_X402_REC_SETTLED        2
#define NGX_HTTP_X402_REC_FAILED         3

/* where the reservation of an op lives */
#define NGX_HTTP_X402_BACKEND_ZONE       1
#define NGX_HTTP_X402_BACKEND_REDIS      2

/* tx hash (0x + 64 hex), or a failure reason, kept with a record */
#define NGX_HTTP_X402_REC_TEXT_LEN       96

/*
 * The server's window is a requirement's maxTimeoutSeconds plus this
 * margin (client clock skew): see ngx_http_x402_store_int.h.
 */
#define NGX_HTTP_X402_WINDOW_MARGIN      60
#define NGX_HTTP_X402_WINDOW_MARGIN_TEXT "60"

/* async outcome */
#define NGX_HTTP_X402_SETTLE_OK          0
#define NGX_HTTP_X402_SETTLE_RETRY       1   /* the answer was lost */
/* the facilitator refused the settlement: final, never retried */
#define NGX_HTTP_X402_SETTLE_REFUSED     2
/* final, from the retries only */
#define NGX_HTTP_X402_SETTLE_CHAIN       3   /* found used on chain */
#define NGX_HTTP_X402_SETTLE_GIVEN_UP    4   /* expired, not used */
#define NGX_HTTP_X402_SETTLE_UNKNOWN     5   /* expired, fate unknown */


typedef struct ngx_http_x402_store_op_s  ngx_http_x402_store_op_t;

struct ngx_http_x402_store_op_s {
    /* results, valid once done */
    ngx_uint_t             result;     /* NGX_HTTP_X402_STORE_* */
    ngx_str_t              reason;     /* REPLAYED / UNAVAILABLE: why */
    ngx_str_t              tx;         /* REUSED: the original settlement */
    unsigned               done:1;

    /* private to the store */
    unsigned               reserved:1;     /* we hold a reservation */
    unsigned               backend:2;      /* NGX_HTTP_X402_BACKEND_* */
    unsigned               fallback:1;     /* Redis down, fail=open */
    unsigned               async:1;        /* queued for async settlement */
    unsigned               cleanup_set:1;
    /*
     * FRESH, but Redis forgot its data lately and cannot vouch that the
     * fleet never saw this payment (fail=open): the glue has it verified
     * by the facilitator, whose /verify refuses a nonce used on chain.
     */
    unsigned               verify_forced:1;

    ngx_http_request_t    *request;
    void                  *pending;        /* in-flight Redis command */
    ngx_event_t            resume;

    u_char                 id[32];
    uint64_t               scope;
    time_t                 valid_before;
    time_t                 expire;
    time_t                 window;         /* maxTimeoutSeconds + margin */
    time_t                 grant;
    time_t                 settled_at;
    u_char                 owner[16];      /* Redis: our reservation token */
    u_char                 text[NGX_HTTP_X402_REC_TEXT_LEN];
};


/*
 * Shared counters of the zone (monotonic unless marked "now"), for the
 * metrics: read them with ngx_http_x402_store_counters().
 */
typedef struct {
    ngx_atomic_t           records;          /* now: records in the zone */
    ngx_atomic_t           reserved;         /* fresh reservations */
    ngx_atomic_t           replayed;         /* presentations refused */
    ngx_atomic_t           reused;           /* grants honoured */
    ngx_atomic_t           settled;          /* settlements recorded */
    ngx_atomic_t           failed;           /* refused settlements recorded */
    ngx_atomic_t           released;         /* reservations given back */
    ngx_atomic_t           full;             /* 503: zone full */
    ngx_atomic_t           evicted;          /* expired records evicted */
    ngx_atomic_t           redis_errors;     /* Redis command failed/timeout */
    ngx_atomic_t           redis_fallback;   /* fail=open: zone used */
    ngx_atomic_t           redis_refused;    /* fail=closed: 503 */
    ngx_atomic_t           pending;          /* now: unsettled async credit */
    ngx_atomic_t           async_queued;     /* async settlements admitted */
    ngx_atomic_t           async_sync;       /* queue full: settled in sync */
    ngx_atomic_t           async_settled;    /* settled after queueing */
    ngx_atomic_t           async_retries;    /* retry attempts issued */
    ngx_atomic_t           async_lost;       /* expired unsettled: given up */
    ngx_atomic_t           async_refused;    /* refused: final */
    ngx_atomic_t           async_unanswered; /* attempts whose answer was lost */
    ngx_atomic_t           async_unknown;    /* expired, fate unknown */
    ngx_atomic_t           async_chain;      /* found settled on chain */
    ngx_atomic_t           async_resumed;    /* read back from the spool */
    ngx_atomic_t           refused_evicted;  /* refused records evicted */
    ngx_atomic_t           redis_forgot;     /* Redis lost its data */
    ngx_atomic_t           redis_distrusted; /* payments it could not vouch */
} ngx_http_x402_store_counters_t;


/*
 * max_timeout: the matched requirement's maxTimeoutSeconds, which bounds
 * how long the record is kept (with validBefore, whichever ends first).
 */
ngx_int_t ngx_http_x402_store_op_reserve(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op, const x402_verdict_t *v,
    time_t max_timeout);
void ngx_http_x402_store_op_settled(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op, ngx_str_t *tx);
void ngx_http_x402_store_op_failed(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op, ngx_str_t *reason);
void ngx_http_x402_store_op_release(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op);

/*
 * x402_settle async. body: the exact /settle request body; uri: the settle
 * location (e.g. "/_x402/settle"). The settlement is queued in the zone
 * (bounded by x402_async_limit) before anything is served, so that a worker
 * picks it up if the background settle does not report back.
 * Returns NGX_OK (queued: serve now, settle in the background),
 * NGX_DECLINED (queue full or body too large: settle synchronously),
 * NGX_ERROR.
 */
ngx_int_t ngx_http_x402_store_op_async_begin(ngx_http_request_t *r,
    ngx_http_x402_store_op_t *op, ngx_str_t *uri, ngx_str_t *body);

/* The first background settle's outcome, on the op as it was queued (a
 * copy: the request may be gone): NGX_HTTP_X402_SETTLE_OK with the tx,
 * NGX_HTTP_X402_SETTLE_REFUSED with the facilitator's reason (final: the
 * entry goes, the record says failed), or NGX_HTTP_X402_SETTLE_RETRY with a
 * reason (unreachable, garbage): the settlement stays queued and the
 * workers retry it with backoff. */
void ngx_http_x402_store_op_async_end(ngx_http_x402_store_op_t *op,
    ngx_uint_t outcome, ngx_str_t *text, ngx_log_t *log);

/* the longest record life: each location's maxTimeoutSeconds, at merge */
void ngx_http_x402_store_note_window(ngx_conf_t *cf, time_t max_timeout);

/* a location settles with x402_settle async: the spool is set up */
void ngx_http_x402_store_note_async(ngx_conf_t *cf);

/* the request's op (kept in the glue's ctx, found after internal
 * redirects), or NULL: ngx_http_x402_store_hooks.c */
ngx_http_x402_store_op_t *ngx_http_x402_store_request_op(
    ngx_http_request_t *r);

/* NULL when no zone is configured (x402 unused) */
ngx_http_x402_store_counters_t *ngx_http_x402_store_counters(
    ngx_http_request_t *r);

/* ngx_http_x402_retry.c: a settlement was queued (async_begin said
 * NGX_OK): a graceful stop waits for the drain */
void ngx_http_x402_retry_owed(void);

/* what a request's settlement logs and counts: the per-option labels
 * (network, asset, payTo), the amount, the payer, the request's log level
 * for a refusal, the context its log lines end with (client, server,
 * request, host) */
#define NGX_HTTP_X402_FIRST_CONTEXT  512    /* bytes of it kept, at most */

typedef struct {
    ngx_str_t   network;
    ngx_str_t   asset;
    ngx_str_t   pay_to;
    ngx_str_t   amount;
    ngx_str_t   payer;
    ngx_str_t   context;
    ngx_uint_t  log_level;
} ngx_http_x402_first_info_t;

/* ngx_http_x402_retry.c: the first attempt of the settlement async_begin
 * just queued (leased to this worker), sent at the end of this event-loop
 * iteration from a request of its own: the client's request and connection
 * never wait for it. NGX_OK: listed; else left to the lease (retried by any
 * worker once it runs out). */
ngx_int_t ngx_http_x402_retry_first(ngx_http_x402_store_op_t *op,
    ngx_http_x402_first_info_t *info, ngx_log_t *log);


extern ngx_module_t  ngx_http_x402_store_module;


#endif /* _NGX_HTTP_X402_STORE_H_INCLUDED_ */

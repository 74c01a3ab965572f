
/*
 * ngx_http_x402_store_int.h: private to the store (store.c, shm.c, redis.c,
 * redis_conn.c, retry.c). The glue includes ngx_http_x402_store.h only.
 */

#ifndef _NGX_HTTP_X402_STORE_INT_H_INCLUDED_
#define _NGX_HTTP_X402_STORE_INT_H_INCLUDED_


#include "ngx_http_x402_store.h"


/*
 * A record is kept this long past validBefore. The local checks refuse an
 * authorization from validBefore - 6s on, so a forgotten record can never
 * be presented again on this host; the slack covers clock skew between
 * hosts sharing Redis (up to 16s).
 */
#define NGX_HTTP_X402_EXPIRE_SLACK     10

/*
 * The server's window: no record outlives min(validBefore + slack,
 * t + maxTimeoutSeconds + margin) (t: reservation, settlement), so no
 * client-chosen number decides how long a record pins the zone or Redis.
 * What keeps a served payment from being served twice past the window:
 * x402_verify local refuses validBefore beyond now + maxTimeoutSeconds +
 * margin (the record then covers the authorization's whole life), and a
 * facilitator's /verify refuses an authorization whose nonce is used on
 * chain (a settled payment); a payment whose settlement is still queued is
 * kept until it ends (rec->async). The margin (NGX_HTTP_X402_WINDOW_MARGIN,
 * ngx_http_x402_store.h) covers client clock skew.
 */

/* refused at reservation or settlement, nothing served: evicted first */
#define NGX_HTTP_X402_EVICT_BATCH      64

/*
 * The zone's layout: a reload that reuses or migrates a zone made by
 * another build of the module checks this before touching it.
 */
#define NGX_HTTP_X402_ZONE_MAGIC       0x78343032u   /* "x402" */
#ifndef NGX_HTTP_X402_ZONE_LAYOUT
/* raise on any change to the structures in the zone (t/37 builds another) */
#define NGX_HTTP_X402_ZONE_LAYOUT      5
#endif

/*
 * Every shared counter is updated with an atomic add, under the mutex or
 * not: a plain ++ under the mutex would lose a concurrent lock-free add.
 */
#define ngx_http_x402_count(sh, name, n)                                      \
    (void) ngx_atomic_fetch_add(&(sh)->counters.name, (ngx_atomic_int_t) (n))

/* async settlement queue */
#define NGX_HTTP_X402_ASYNC_BODY_MAX   32768
#define NGX_HTTP_X402_ASYNC_URI_MAX    512
#define NGX_HTTP_X402_ASYNC_LEASE      90000    /* ms an attempt may take */
#define NGX_HTTP_X402_ASYNC_FIRST      1000     /* ms before the 1st retry */
#define NGX_HTTP_X402_ASYNC_BACKOFF    60000    /* ms, cap of the backoff */
#define NGX_HTTP_X402_ASYNC_TICK       500      /* ms between scans */
#define NGX_HTTP_X402_ASYNC_BATCH      8        /* retries per scan/worker */
#define NGX_HTTP_X402_ASYNC_DRAIN_TICK 100      /* ms between scans, stopping */
/* ms after a resizing reload before the spool is reconciled */
#define NGX_HTTP_X402_RECONCILE_FIRST  2000
/* the spool is truncated when the queue empties past this many bytes */
#define NGX_HTTP_X402_SPOOL_COMPACT    (256 * 1024)


typedef struct ngx_http_x402_rec_s  ngx_http_x402_rec_t;


typedef struct {
    /* first, at a fixed offset: checked before anything else is read */
    uint32_t                          magic;      /* ZONE_MAGIC */
    uint32_t                          layout;     /* ZONE_LAYOUT */
    size_t                            sh_size;
    size_t                            rec_size;
    size_t                            pending_size;
    size_t                            counters_size;

    /*
     * Records by id: a hash index of chained records, its size fixed at the
     * zone's creation from how many records the zone can hold (a power of
     * two), keyed per zone (SipHash-1-3, key from /dev/urandom): an id is a
     * keccak hash of a nonce the client chooses, so unkeyed bits of it
     * could be ground to fill one chain.
     */
    ngx_http_x402_rec_t             **buckets;
    ngx_uint_t                        bucket_mask; /* buckets - 1 */
    uint64_t                          hash_key[2];
    ngx_rbtree_t                      expiry;     /* records by expire */
    ngx_rbtree_node_t                 expiry_sentinel;
    ngx_queue_t                       refused;    /* evictable records */
    ngx_http_x402_store_counters_t    counters;
    ngx_uint_t                        version;
    ngx_uint_t                        unsynced;   /* records to push */
    ngx_rbtree_t                      pending;    /* async settlements by id */
    ngx_rbtree_node_t                 pending_sentinel;
    ngx_rbtree_t                      due;        /* ... by next look (ms) */
    ngx_rbtree_node_t                 due_sentinel;
    off_t                             spool_size; /* appended since emptied */
    ngx_uint_t                        superseded; /* a resize moved the queue */
    uint64_t                          reconcile_at; /* ms: read the spool */
    ngx_uint_t                        reconciles;

    /* the Redis epoch this host last saw (see redis.c), 0: none */
    time_t                            epoch_created;
    u_char                            epoch_id[16];
    time_t                            distrust_until;
} ngx_http_x402_shm_sh_t;


typedef struct {
    ngx_http_x402_shm_sh_t           *sh;
    ngx_slab_pool_t                  *shpool;
    ngx_shm_zone_t                   *shm_zone;
    ngx_open_file_t                  *spool;      /* NULL: x402_spool off */
    ngx_cycle_t                      *cycle;      /* the configuration's */
} ngx_http_x402_shm_t;


/* a record, in its bucket's chain of sh->buckets and in sh->expiry */
struct ngx_http_x402_rec_s {
    ngx_http_x402_rec_t              *hnext;      /* the bucket's chain */
    ngx_http_x402_rec_t             **hprev;      /* what points to this */
    u_char                            state;
    u_char                            text_len;
    u_char                            async;      /* queued for settling */
    u_char                            unsynced;   /* SYNC_*: Redis push */
    u_char                            refused;    /* in sh->refused */
    ngx_rbtree_node_t                 enode;      /* key: expire */
    ngx_queue_t                       rqueue;     /* sh->refused */
    time_t                            window;     /* the server's bound */
    time_t                            settled_at;
    uint64_t                          scope;
    u_char                            id[32];
    u_char                            text[NGX_HTTP_X402_REC_TEXT_LEN];
};


/* pending->rq: where the entry is kept durably (redis_queue.c) */
#define NGX_HTTP_X402_RQ_NONE          0      /* the spool only */
#define NGX_HTTP_X402_RQ_SENT          1      /* the spool; Redis asked */
#define NGX_HTTP_X402_RQ_HELD          2      /* Redis (the spool says so) */

/* what an ended attempt left behind, for the Redis queue */
typedef struct {
    ngx_uint_t                        found;
    ngx_uint_t                        rq;
    ngx_uint_t                        attempts;
    ngx_uint_t                        unknown;
    uint64_t                          next_try;   /* ms: rescheduled */
    time_t                            valid_before;
    u_char                            reason_len;
    u_char                            reason[63];
} ngx_http_x402_pending_info_t;


/* rec->unsynced */
#define NGX_HTTP_X402_SYNC_NONE        0
#define NGX_HTTP_X402_SYNC_TODO        1      /* to push to Redis */
#define NGX_HTTP_X402_SYNC_SENT        2      /* pushed, no answer yet */


/*
 * A queued async settlement, in two rbtrees of the zone: by id (key: the
 * first bytes of id) and by when a worker should look at it next (key: wall
 * clock ms: the next attempt, the end of a lease, or validBefore), so that
 * neither a lookup nor the timer's scan walks the queue. data holds the uri
 * then the body.
 */
typedef struct {
    ngx_rbtree_node_t                 node;       /* by id: must be first */
    ngx_rbtree_node_t                 due;        /* by next look */
    u_char                            id[32];
    uint64_t                          scope;
    time_t                            expire;
    /* a settled record's life from its settlement: max(window, grant) */
    time_t                            keep;
    ngx_uint_t                        redis;      /* reserved there too */
    time_t                            valid_before;
    uint64_t                          next_try;   /* wall clock ms */
    uint64_t                          lease_until; /* wall clock ms, 0: none */
    /* 0 with a lease: an old worker's (a resizing reload), "free" ends it */
    ngx_pid_t                         lease_pid;
    ngx_uint_t                        attempts;
    uint64_t                          server;     /* background.c's key */
    ngx_uint_t                        unknown;    /* an answer was lost */
    /* x402_redis: NGX_HTTP_X402_RQ_*, and the end of our claim there (ms) */
    ngx_uint_t                        rq;
    uint64_t                          rq_lease;
    size_t                            uri_len;
    size_t                            body_len;
    u_char                            reason_len;
    u_char                            reason[63];
    u_char                            data[1];
} ngx_http_x402_pending_t;


typedef struct {
    ngx_addr_t                        addr;      /* resolved at conf time */
    ngx_str_t                         host;      /* NUL-terminated IP text */
    ngx_str_t                         unix_path; /* NUL-terminated */
    in_port_t                         port;
    ngx_uint_t                        db;
    ngx_str_t                         password;
    ngx_str_t                         prefix;
    ngx_msec_t                        connect_timeout;
    ngx_msec_t                        timeout;
    ngx_flag_t                        fail_open;
    /* how long after Redis lost its data it cannot vouch (longest record) */
    time_t                            horizon;
} ngx_http_x402_redis_conf_t;


typedef struct {
    ngx_http_x402_shm_t              *zone;
    ngx_http_x402_redis_conf_t       *redis;
    ngx_uint_t                        async_limit;
    ngx_msec_t                        async_drain;
    ngx_str_t                         spool;      /* directory; "off" */
    ngx_uint_t                        async_used; /* x402_settle async */
    ngx_str_t                         rpc;        /* JSON-RPC location */
    ngx_uint_t                        log_level;
    ngx_http_conf_ctx_t              *http_ctx;
    /* the longest record life configured: maxTimeoutSeconds + margin,
     * or a grant */
    time_t                            window_max;
} ngx_http_x402_store_main_conf_t;


typedef struct {
    time_t                            grant;
} ngx_http_x402_store_loc_conf_t;


/* unexpired, or kept while its settlement is queued */
#define ngx_http_x402_rec_live(rec, now)                                      \
    ((time_t) (rec)->enode.key >= (now) || (rec)->async)


/* zone.c: the zone's init (layout check, migration, spool replay) */
ngx_int_t ngx_http_x402_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data);
void ngx_http_x402_shm_committed(void);

/* shm.c: the records */
ngx_int_t ngx_http_x402_shm_index_init(ngx_http_x402_shm_t *zone,
    size_t size, ngx_log_t *log);
void ngx_http_x402_shm_link_locked(ngx_http_x402_shm_sh_t *sh,
    ngx_http_x402_rec_t *rec);
void ngx_http_x402_shm_reserve(ngx_http_x402_shm_t *zone,
    ngx_http_x402_store_op_t *op, time_t grant, ngx_log_t *log);
void ngx_http_x402_shm_set(ngx_http_x402_shm_t *zone,
    ngx_http_x402_store_op_t *op, ngx_uint_t state, ngx_str_t *text);
void ngx_http_x402_shm_delete(ngx_http_x402_shm_t *zone, u_char *id);
void ngx_http_x402_shm_rekey_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_rec_t *rec, time_t expire);
time_t ngx_http_x402_queue_settled_expire(time_t settled_at, time_t keep,
    time_t valid_before);
ngx_http_x402_rec_t *ngx_http_x402_shm_lookup(ngx_http_x402_shm_sh_t *sh,
    u_char *id);
ngx_uint_t ngx_http_x402_shm_take_unsynced(ngx_http_x402_shm_t *zone,
    ngx_http_x402_store_op_t *ops, ngx_uint_t n, ngx_uint_t *states);
void ngx_http_x402_shm_synced(ngx_http_x402_shm_t *zone, u_char *id,
    ngx_uint_t ok);
ngx_uint_t ngx_http_x402_shm_unsync_all(ngx_http_x402_shm_t *zone);
ngx_uint_t ngx_http_x402_grant_applies(ngx_uint_t state, uint64_t rec_scope,
    time_t settled_at, uint64_t scope, time_t valid_before, time_t grant,
    time_t now);

/* queue.c: the queue of owed async settlements in the zone */
void ngx_http_x402_queue_init(ngx_http_x402_shm_sh_t *sh);
uint64_t ngx_http_x402_queue_now(void);
ngx_http_x402_pending_t *ngx_http_x402_queue_find(ngx_http_x402_shm_sh_t *sh,
    u_char *id);
void ngx_http_x402_queue_insert_locked(ngx_http_x402_shm_sh_t *sh,
    ngx_http_x402_pending_t *p);
void ngx_http_x402_queue_reschedule_locked(ngx_http_x402_shm_sh_t *sh,
    ngx_http_x402_pending_t *p);
void ngx_http_x402_queue_free_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_pending_t *p);
ngx_uint_t ngx_http_x402_queue_migrate(ngx_http_x402_shm_sh_t *from,
    ngx_http_x402_shm_t *to, ngx_uint_t *dropped);
ngx_int_t ngx_http_x402_shm_pending_add(ngx_http_x402_shm_t *zone,
    ngx_http_x402_store_op_t *op, ngx_uint_t limit, uint64_t server,
    ngx_str_t *uri, ngx_str_t *body, ngx_log_t *log);
void ngx_http_x402_shm_pending_done(ngx_http_x402_shm_t *zone, u_char *id,
    ngx_uint_t outcome, ngx_str_t *text, ngx_log_t *log);
void ngx_http_x402_shm_pending_end(ngx_http_x402_shm_t *zone, u_char *id,
    ngx_uint_t outcome, ngx_str_t *text, ngx_log_t *log,
    ngx_http_x402_pending_info_t *info);

/* spool.c: the same queue on disk (x402_spool), written like a log */
ngx_int_t ngx_http_x402_spool_owe_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_pending_t *p);
ngx_int_t ngx_http_x402_spool_done_locked(ngx_http_x402_shm_t *zone,
    u_char *id, const char *outcome);
ngx_int_t ngx_http_x402_spool_free_locked(ngx_http_x402_shm_t *zone,
    u_char *id, ngx_uint_t unknown);
void ngx_http_x402_spool_emptied_locked(ngx_http_x402_shm_t *zone);
void ngx_http_x402_spool_replay(ngx_http_x402_shm_t *zone, ngx_log_t *log);
void ngx_http_x402_spool_reconcile(ngx_http_x402_shm_t *zone, ngx_log_t *log);
void ngx_http_x402_spool_moved(ngx_http_x402_shm_t *zone, ngx_open_file_t *old,
    ngx_log_t *log);

/* queue.c: the /settle body of a payment, whole, in pieces a log line holds */
void ngx_http_x402_retry_log_body(ngx_log_t *log, u_char *hex, ngx_str_t *uri,
    ngx_str_t *body);

/* retry.c */
ngx_int_t ngx_http_x402_retry_init_process(ngx_cycle_t *cycle);
void ngx_http_x402_retry_exit_process(ngx_cycle_t *cycle);

/* redis_conn.c: the worker's hiredis connection on nginx events */
#define NGX_HTTP_X402_REDIS_DOWN        0
#define NGX_HTTP_X402_REDIS_CONNECTING  1
#define NGX_HTTP_X402_REDIS_READY       2

typedef struct {
    ngx_http_x402_redis_conf_t       *conf;
    struct redisAsyncContext         *ac;       /* NULL: not connected */
    ngx_connection_t                 *c;
    ngx_uint_t                        state;
    ngx_msec_t                        backoff;
    ngx_event_t                       connect_timer;
    ngx_event_t                       reconnect;
    /* posted: writes what this event-loop iteration queued, at its end */
    ngx_event_t                       flush;
    /* a command nobody waits for goes with the next flush, or at this */
    ngx_event_t                       lazy;
    ngx_log_t                        *log;
    time_t                            logged;
    void                            (*connecting)(void);
    void                            (*ready)(void);
    /* called before each write: the protocol's last command of a batch */
    void                            (*writing)(void);
    unsigned                          exiting:1;
    unsigned                          was_down:1;
    unsigned                          flushing:1;
    unsigned                          queue_lazily:1;
} ngx_http_x402_redis_conn_t;

extern ngx_http_x402_redis_conn_t  ngx_http_x402_redis_conn;

void ngx_http_x402_redis_conn_init(ngx_cycle_t *cycle,
    ngx_http_x402_redis_conf_t *rcf, void (*connecting)(void),
    void (*ready)(void));
void ngx_http_x402_redis_conn_exit(void);
void ngx_http_x402_redis_connect(void);
void ngx_http_x402_redis_schedule(void);
void ngx_http_x402_redis_drop(void);
void ngx_http_x402_redis_log_down(ngx_uint_t level, const char *what,
    const char *err);

/* redis.c: the record protocol */
char *ngx_http_x402_redis_parse(ngx_conf_t *cf,
    ngx_http_x402_redis_conf_t *rcf);
/* a reserve's reply: rc NGX_OK with the stored value (value->len == 0:
 * none, we hold it), NGX_ERROR: unavailable, NGX_DECLINED: it forgot */
typedef void (*ngx_http_x402_redis_done_pt)(ngx_http_x402_store_op_t *op,
    ngx_int_t rc, ngx_str_t *value);

ngx_int_t ngx_http_x402_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_x402_redis_conf_t *rcf, ngx_http_x402_redis_done_pt done);
void ngx_http_x402_redis_exit_process(ngx_cycle_t *cycle);
/* NGX_AGAIN: sent, op resolved later through the done handler;
 * NGX_DECLINED: Redis unavailable now */
ngx_int_t ngx_http_x402_redis_reserve(ngx_http_x402_store_op_t *op);
void ngx_http_x402_redis_set(ngx_http_x402_store_op_t *op, ngx_uint_t state,
    ngx_str_t *text);
void ngx_http_x402_redis_release(ngx_http_x402_store_op_t *op);
void ngx_http_x402_redis_detach(ngx_http_x402_store_op_t *op);

/* redis_queue.c: owed settlements kept in Redis (x402_redis) */
void ngx_http_x402_redis_queue_owe(ngx_http_x402_shm_t *zone,
    ngx_http_x402_store_op_t *op, uint64_t server, ngx_str_t *uri,
    ngx_str_t *body);
void ngx_http_x402_redis_queue_done(ngx_http_x402_shm_t *zone, u_char *id,
    ngx_uint_t outcome, ngx_str_t *text, ngx_log_t *log);
void ngx_http_x402_redis_queue_remove(u_char *id);
void ngx_http_x402_redis_queue_poll(ngx_uint_t n);
void ngx_http_x402_redis_queue_flush(void);
void ngx_http_x402_redis_queue_unstarted(ngx_http_x402_shm_t *zone,
    u_char *id);

/* store.c: the Redis reply for a reserve, rc: NGX_OK with the stored value
 * (value->len == 0: none, we hold it), or NGX_ERROR: unavailable */
void ngx_http_x402_store_redis_done(ngx_http_x402_store_op_t *op,
    ngx_int_t rc, ngx_str_t *value);
ngx_uint_t ngx_http_x402_store_parse_value(ngx_str_t *value,
    ngx_uint_t *state, uint64_t *scope, time_t *settled_at, time_t *expire,
    ngx_str_t *text);

/* shm.c: this worker's zone (set by the store's init_process) */
extern ngx_http_x402_shm_t  *ngx_http_x402_store_zone;


/*
 * scripts/bench-store.sh builds with -DNGX_HTTP_X402_STORE_TIMING=1: the
 * store's entry points and Redis event handlers add up the time spent in
 * them (thread CPU time), printed at worker exit with the cost of the
 * clock itself, which the script subtracts. Compiled out otherwise.
 */
#define NGX_HTTP_X402_T_RESERVE     0
#define NGX_HTTP_X402_T_SETTLED     1
#define NGX_HTTP_X402_T_REDIS_READ  2
#define NGX_HTTP_X402_T_REDIS_WRITE 3
#define NGX_HTTP_X402_T_MAX         4

/*
 * len bytes from 2 * len hex digits (ids and scopes as the spool and the
 * Redis queue write them); NGX_ERROR on a non-hex digit
 */
static ngx_inline ngx_int_t
ngx_http_x402_store_unhex(u_char *dst, u_char *src, size_t len)
{
    ngx_int_t  hi, lo;

    while (len--) {
        hi = ngx_hextoi(src, 1);
        lo = ngx_hextoi(src + 1, 1);

        if (hi == NGX_ERROR || lo == NGX_ERROR) {
            return NGX_ERROR;
        }

        *dst++ = (u_char) (hi * 16 + lo);
        src += 2;
    }

    return NGX_OK;
}


#if (NGX_HTTP_X402_STORE_TIMING)

typedef struct {
    uint64_t                          n;
    uint64_t                          ns;
} ngx_http_x402_timing_t;

extern ngx_http_x402_timing_t  ngx_http_x402_timing[NGX_HTTP_X402_T_MAX];

static ngx_inline uint64_t
ngx_http_x402_now_ns(void)
{
    struct timespec  ts;

    /* CPU time of this thread: preemption on a busy host does not count */
    (void) clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define ngx_http_x402_timing_start()                                         \
    uint64_t  ngx_http_x402_t0 = ngx_http_x402_now_ns()

#define ngx_http_x402_timing_end(i)                                          \
    ngx_http_x402_timing[i].n++;                                              \
    ngx_http_x402_timing[i].ns += ngx_http_x402_now_ns() - ngx_http_x402_t0

#else

#define ngx_http_x402_timing_start()
#define ngx_http_x402_timing_end(i)

#endif


#endif /* _NGX_HTTP_X402_STORE_INT_H_INCLUDED_ */


/*
 * ngx_http_x402_redis.c: the fleet store's record protocol on Redis
 * (src/README.md, layer 3), on the worker's connection of
 * ngx_http_x402_redis_conn.c (hiredis on nginx events).
 *
 * Over 800 lines as one concern: the x402_redis arguments, the Lua scripts
 * (reserve, set, release, the epoch record), the record value format, the
 * ops with their timers, taking reservations back, and the fail=open
 * resync; each part depends on the others' invariants.
 *
 * Every command's privdata is a worker-owned op (ngx_alloc), never a
 * request: the request side can detach itself (r->pool cleanup) and the
 * reply, which hiredis always delivers (NULL when the context dies), frees
 * the op.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_http_x402_store_int.h"


#define NGX_HTTP_X402_REDIS_OP_RESERVE  0
#define NGX_HTTP_X402_REDIS_OP_SET      1
#define NGX_HTTP_X402_REDIS_OP_RELEASE  2
#define NGX_HTTP_X402_REDIS_OP_SYNC     3
#define NGX_HTTP_X402_REDIS_OP_EPOCH    4

/* a TTL never exceeds this (ms arithmetic stays far from overflow) */
#define NGX_HTTP_X402_REDIS_TTL_MAX     (366 * 86400)

#define NGX_HTTP_X402_REDIS_EPOCH_MAX   64

/* commands in flight per worker; beyond, the store counts as unavailable */
#define NGX_HTTP_X402_REDIS_INFLIGHT_MAX 4096


#define NGX_HTTP_X402_REDIS_VALUE_MAX    192
#define NGX_HTTP_X402_REDIS_RELEASES     256


typedef struct ngx_http_x402_redis_op_s  ngx_http_x402_redis_op_t;

struct ngx_http_x402_redis_op_s {
    ngx_event_t                  timer;
    ngx_http_x402_store_op_t    *sop;        /* NULL: nobody waits */
    /* a reserve of the batch the next epoch GET answers for */
    ngx_http_x402_redis_op_t    *next;
    ngx_uint_t                   kind;
    u_char                       id[32];
    /* a reserve: our value, to take the reservation back if nobody will
     * use it (the request left, or it was refused with fail=closed) */
    unsigned                     release:1;
    /* a reserve: in the batch; the GET of the epoch record follows */
    unsigned                     batched:1;
    unsigned                     epoch_check:1;
    unsigned                     answered:1;
    size_t                       value_len;
    u_char                       value[NGX_HTTP_X402_REDIS_VALUE_MAX];
    /* a reserve: the SET's answer, kept until the epoch's */
    int                          got_type;   /* -1: no answer (NULL) */
    size_t                       got_len;
    u_char                       got[NGX_HTTP_X402_REDIS_VALUE_MAX];
    /* a reserve: the epoch record this worker knew when it was sent */
    size_t                       epoch_len;
    u_char                       epoch[NGX_HTTP_X402_REDIS_EPOCH_MAX];
};


/* reservations to take back once Redis answers again */
typedef struct {
    u_char                       id[32];
    size_t                       value_len;
    u_char                       value[NGX_HTTP_X402_REDIS_VALUE_MAX];
} ngx_http_x402_redis_release_t;


typedef struct {
    ngx_http_x402_redis_conf_t  *conf;
    ngx_http_x402_redis_done_pt  done;       /* the store's, for reserves */
    ngx_uint_t                   inflight;
    ngx_event_t                  sync;
    ngx_uint_t                   nreleases;
    ngx_http_x402_redis_release_t  *releases;
    ngx_log_t                   *log;
    /* the epoch record as last read ("<created>|<id>|<flag>"); 0: none */
    size_t                       epoch_len;
    u_char                       epoch[NGX_HTTP_X402_REDIS_EPOCH_MAX];
    ngx_uint_t                   sync_inflight;
    /* reserves queued since the last epoch GET (redis_batch_epoch) */
    ngx_http_x402_redis_op_t    *batch;
    ngx_http_x402_redis_op_t   **batch_last;
    ngx_uint_t                   pushed;
    ngx_uint_t                   push_failed;
    unsigned                     exiting:1;
    unsigned                     epoch_asked:1;
    /* Redis before 7.0: reserves by script (SET refused NX with GET) */
    unsigned                     legacy:1;
} ngx_http_x402_redis_t;


static void ngx_http_x402_redis_sync_handler(ngx_event_t *ev);
static void ngx_http_x402_redis_take_back(u_char *id, u_char *value,
    size_t len);
static void ngx_http_x402_redis_op_timeout(ngx_event_t *ev);
static void ngx_http_x402_redis_reply(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_x402_redis_epoch_check_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_x402_redis_finish(ngx_http_x402_redis_op_t *op,
    redisReply *rr);
static void ngx_http_x402_redis_batch_epoch(void);
static void ngx_http_x402_redis_connecting(void);
static void ngx_http_x402_redis_ready(void);
static void ngx_http_x402_redis_ask_epoch(void);
static void ngx_http_x402_redis_epoch_reply(redisAsyncContext *ac,
    void *reply, void *privdata);


static ngx_http_x402_redis_t  ngx_http_x402_redis_worker;


/*
 * Reserve: the record if there is one, else ours is set. On Redis 7.0 and
 * later that is one plain command, SET <key> <value> NX GET PX <ttl>; the
 * last command of the write that carries it is GET <prefix>epoch, one for
 * all the reserves of that write (redis_batch_epoch): a reserve counts only
 * if the epoch record is still the one this worker knew when it sent it
 * (when Redis lost its data, it is gone or new; its id is random, so it
 * cannot come back). The epoch is read after the SETs: a loss before a
 * SET is seen, one between the two refuses a reserve that would have been
 * good (rare, and safe). An unknown epoch (asked for on this connection
 * just before) is not checked. Plain commands instead of a script: Redis
 * spends a fifth of the CPU on them (bench/redis.sh).
 *
 * Before 7.0 (SET answers NX with GET a syntax error), this script: the
 * epoch record (KEYS[2]) must still be ARGV[3] (empty: not checked).
 */
static const char  ngx_http_x402_redis_reserve_lua[] =
    "if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then "
    "return redis.error_reply('X402EPOCH the epoch record changed') end "
    "local v = redis.call('GET', KEYS[1]) "
    "if v then return v end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "return false";

/*
 * The epoch record: "<created>|<id>|<flag>", made by the first nginx that
 * finds none (ARGV[1]); flag 'l' when that nginx knew an older one (ARGV[2],
 * "<created>|<id>": Redis lost its data), 'f' for a first start. An nginx
 * that knew another epoch marks the present one 'l' too, so that every
 * member of the fleet, a freshly started one included, learns of the loss.
 */
static const char  ngx_http_x402_redis_epoch_lua[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if not v then v = ARGV[1] redis.call('SET', KEYS[1], v) end "
    "if ARGV[2] ~= '' and string.sub(v, -1) == 'f' "
    "and string.sub(v, 1, string.len(ARGV[2]) + 1) ~= ARGV[2] .. '|' then "
    "v = string.sub(v, 1, -2) .. 'l' redis.call('SET', KEYS[1], v) end "
    "return v";

/*
 * Failed: a settled record is never overwritten. (Settled is a plain SET:
 * it may overwrite anything, a settled record only with itself.)
 */
static const char  ngx_http_x402_redis_set_lua[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v and string.sub(v, 1, 1) == 'S' then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "return 1";

/* release: only our own reservation */
static const char  ngx_http_x402_redis_release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) end "
    "return 0";


/* ---- configuration ---- */

char *
ngx_http_x402_redis_parse(ngx_conf_t *cf, ngx_http_x402_redis_conf_t *rcf)
{
    u_char              *p;
    size_t               len;
    ngx_str_t           *value, s;
    ngx_url_t            u;
    ngx_int_t            n;
    ngx_uint_t           i;
    struct sockaddr_un  *saun;

    value = cf->args->elts;

    rcf->connect_timeout = 1000;
    rcf->timeout = 1000;
    rcf->fail_open = 0;
    ngx_str_set(&rcf->prefix, "x402:");

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.default_port = 6379;

    /* resolved here, at configuration time: a worker never resolves */
    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in x402_redis \"%V\"", u.err, &u.url);
        }

        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "x402_redis \"%V\" has no address", &u.url);
        return NGX_CONF_ERROR;
    }

    if (u.naddrs > 1) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "x402_redis \"%V\" resolves to %ui addresses, "
                           "using %V", &u.url, u.naddrs, &u.addrs[0].name);
    }

    rcf->addr = u.addrs[0];

    if (u.family == AF_UNIX) {
        saun = (struct sockaddr_un *) rcf->addr.sockaddr;
        len = ngx_strlen(saun->sun_path);

        rcf->unix_path.data = ngx_pnalloc(cf->pool, len + 1);
        if (rcf->unix_path.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(rcf->unix_path.data, saun->sun_path, len + 1);
        rcf->unix_path.len = len;

    } else {
        rcf->host.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
        if (rcf->host.data == NULL) {
            return NGX_CONF_ERROR;
        }

        rcf->host.len = ngx_sock_ntop(rcf->addr.sockaddr, rcf->addr.socklen,
                                      rcf->host.data, NGX_SOCKADDR_STRLEN, 0);
        rcf->host.data[rcf->host.len] = '\0';
        rcf->port = ngx_inet_get_port(rcf->addr.sockaddr);
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            n = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (n == NGX_ERROR || n > 65535) {
                goto invalid;
            }

            rcf->db = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            rcf->password.data = value[i].data + 9;
            rcf->password.len = value[i].len - 9;

            if (rcf->password.len == 0 || rcf->password.len > 512) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            rcf->prefix.data = value[i].data + 7;
            rcf->prefix.len = value[i].len - 7;

            if (rcf->prefix.len > 128) {
                goto invalid;
            }

            for (p = rcf->prefix.data;
                 p < rcf->prefix.data + rcf->prefix.len;
                 p++)
            {
                if (*p <= ' ' || *p >= 0x7f) {
                    goto invalid;
                }
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;

            rcf->connect_timeout = ngx_parse_time(&s, 0);
            if (rcf->connect_timeout == (ngx_msec_t) NGX_ERROR
                || rcf->connect_timeout == 0)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            rcf->timeout = ngx_parse_time(&s, 0);
            if (rcf->timeout == (ngx_msec_t) NGX_ERROR || rcf->timeout == 0) {
                goto invalid;
            }

            continue;
        }

        if (value[i].len == 9
            && ngx_strncmp(value[i].data, "fail=open", 9) == 0)
        {
            rcf->fail_open = 1;
            continue;
        }

        if (value[i].len == 11
            && ngx_strncmp(value[i].data, "fail=closed", 11) == 0)
        {
            rcf->fail_open = 0;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid x402_redis parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


/* ---- worker lifetime ---- */

ngx_int_t
ngx_http_x402_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_x402_redis_conf_t *rcf, ngx_http_x402_redis_done_pt done)
{
    ngx_http_x402_redis_t  *rd;

    rd = &ngx_http_x402_redis_worker;

    ngx_memzero(rd, sizeof(ngx_http_x402_redis_t));

    rd->conf = rcf;
    rd->log = cycle->log;
    rd->done = done;

    rd->sync.handler = ngx_http_x402_redis_sync_handler;
    rd->sync.data = rd;
    rd->sync.log = cycle->log;
    rd->sync.cancelable = 1;

    rd->releases = ngx_palloc(cycle->pool,
                              NGX_HTTP_X402_REDIS_RELEASES
                              * sizeof(ngx_http_x402_redis_release_t));
    if (rd->releases == NULL) {
        return NGX_ERROR;
    }

    rd->batch_last = &rd->batch;

    /* non-blocking: the worker starts serving while this connects */
    ngx_http_x402_redis_conn_init(cycle, rcf, ngx_http_x402_redis_connecting,
                                  ngx_http_x402_redis_ready);

    /* set after init: nothing is written before init returns */
    ngx_http_x402_redis_conn.writing = ngx_http_x402_redis_batch_epoch;

    return NGX_OK;
}


/* a new connection: did Redis forget? asked before any command of ours */

static void
ngx_http_x402_redis_connecting(void)
{
    ngx_http_x402_redis_worker.epoch_asked = 0;
    ngx_http_x402_redis_ask_epoch();
}


/* connected: what fail=open recorded locally meanwhile goes to the fleet */

static void
ngx_http_x402_redis_ready(void)
{
    ngx_http_x402_redis_t  *rd;

    rd = &ngx_http_x402_redis_worker;

    if (!rd->sync.timer_set) {
        ngx_add_timer(&rd->sync, 1);
    }
}


void
ngx_http_x402_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_x402_redis_t  *rd;

    rd = &ngx_http_x402_redis_worker;

    if (rd->conf == NULL) {
        return;
    }

    rd->exiting = 1;

    if (rd->sync.timer_set) {
        ngx_del_timer(&rd->sync);
    }

    ngx_http_x402_redis_conn_exit();

    rd->conf = NULL;
}


/*
 * Reads (or makes) the epoch record. Until its answer comes the reserves
 * sent behind it on this connection skip the epoch check: Redis runs them
 * after this script, and their replies come after its reply.
 */
static void
ngx_http_x402_redis_ask_epoch(void)
{
    u_char                  *p;
    u_char                   key[128 + 8], fresh[NGX_HTTP_X402_REDIS_EPOCH_MAX];
    u_char                   known[NGX_HTTP_X402_REDIS_EPOCH_MAX], rnd[8];
    uint32_t                 r;
    const char              *argv[6];
    size_t                   argvlen[6];
    ngx_http_x402_shm_sh_t  *sh;
    ngx_http_x402_redis_t   *rd;

    rd = &ngx_http_x402_redis_worker;

    if (ngx_http_x402_redis_conn.ac == NULL || rd->epoch_asked
        || ngx_http_x402_store_zone == NULL)
    {
        return;
    }

    sh = ngx_http_x402_store_zone->sh;

    p = ngx_cpymem(key, rd->conf->prefix.data, rd->conf->prefix.len);
    p = ngx_cpymem(p, "epoch", 5);

    r = (uint32_t) ngx_random();
    ngx_memcpy(rnd, &r, 4);
    r = (uint32_t) ngx_random() ^ (uint32_t) ngx_pid;
    ngx_memcpy(rnd + 4, &r, 4);

    ngx_shmtx_lock(&ngx_http_x402_store_zone->shpool->mutex);

    if (sh->epoch_created) {
        argvlen[5] = ngx_sprintf(known, "%T|%*s", sh->epoch_created,
                                 (size_t) 16, sh->epoch_id) - known;
    } else {
        argvlen[5] = 0;
    }

    ngx_shmtx_unlock(&ngx_http_x402_store_zone->shpool->mutex);

    argvlen[4] = ngx_sprintf(fresh, "%T|%*xs|%c", ngx_time(), (size_t) 8, rnd,
                             argvlen[5] ? 'l' : 'f') - fresh;

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_x402_redis_epoch_lua;
    argvlen[1] = sizeof(ngx_http_x402_redis_epoch_lua) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (const char *) key;
    argvlen[3] = p - key;
    argv[4] = (const char *) fresh;
    argv[5] = (const char *) known;

    rd->epoch_len = 0;

    if (redisAsyncCommandArgv(ngx_http_x402_redis_conn.ac,
                              ngx_http_x402_redis_epoch_reply, NULL,
                              6, argv, argvlen)
        == REDIS_OK)
    {
        rd->epoch_asked = 1;
    }
}


static void
ngx_http_x402_redis_epoch_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    u_char                  *p, *last, *bar;
    time_t                   created, until;
    ngx_uint_t               forgot, lost, pushed;
    redisReply              *rr;
    ngx_http_x402_shm_t     *zone;
    ngx_http_x402_redis_t   *rd;
    ngx_http_x402_shm_sh_t  *sh;

    rr = reply;
    rd = &ngx_http_x402_redis_worker;
    rd->epoch_asked = 0;
    zone = ngx_http_x402_store_zone;

    if (rr == NULL || zone == NULL || rd->conf == NULL) {
        return;
    }

    if (rr->type != REDIS_REPLY_STRING || rr->len < 20
        || rr->len > NGX_HTTP_X402_REDIS_EPOCH_MAX)
    {
        ngx_http_x402_redis_log_down(NGX_LOG_ERR, "epoch record unreadable",
                                     rr->type == REDIS_REPLY_ERROR ? rr->str
                                                                   : NULL);
        return;
    }

    p = (u_char *) rr->str;
    last = p + rr->len;
    bar = ngx_strlchr(p, last, '|');

    if (bar == NULL || last - bar != 1 + 16 + 2 || bar[17] != '|'
        || (created = ngx_atotm(p, bar - p)) == NGX_ERROR)
    {
        ngx_http_x402_redis_log_down(NGX_LOG_ERR, "epoch record malformed",
                                     NULL);
        return;
    }

    lost = (last[-1] == 'l');
    sh = zone->sh;
    forgot = 0;
    until = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (sh->epoch_created
        && (sh->epoch_created != created
            || ngx_memcmp(sh->epoch_id, bar + 1, 16) != 0))
    {
        forgot = 1;
    }

    sh->epoch_created = created;
    ngx_memcpy(sh->epoch_id, bar + 1, 16);

    if (lost) {
        /* every record made before it has expired by then */
        until = created + rd->conf->horizon;

        if (until > sh->distrust_until) {
            sh->distrust_until = until;
        }

        until = sh->distrust_until;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_memcpy(rd->epoch, rr->str, rr->len);
    rd->epoch_len = rr->len;

    if (!forgot) {
        return;
    }

    ngx_http_x402_count(sh, redis_forgot, 1);

    /* what this host knows goes back to the fleet */
    pushed = ngx_http_x402_shm_unsync_all(zone);

    ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                  "x402: redis lost its data (a new epoch record %*s): "
                  "payments it has not seen are not taken as fresh until "
                  "%T s from now; %ui record(s) of this host pushed back",
                  rr->len, rr->str, until > ngx_time() ? until - ngx_time() : 0,
                  pushed);

    if (!rd->sync.timer_set && !rd->exiting) {
        ngx_add_timer(&rd->sync, 1);
    }
}


/* ---- commands ---- */

static ngx_http_x402_redis_op_t *
ngx_http_x402_redis_op(ngx_uint_t kind, ngx_http_x402_store_op_t *sop)
{
    ngx_http_x402_redis_t     *rd;
    ngx_http_x402_redis_op_t  *op;

    rd = &ngx_http_x402_redis_worker;

    if (rd->conf == NULL || ngx_http_x402_redis_conn.ac == NULL
        || ngx_http_x402_redis_conn.state == NGX_HTTP_X402_REDIS_DOWN
        || rd->inflight >= NGX_HTTP_X402_REDIS_INFLIGHT_MAX)
    {
        return NULL;
    }

    op = ngx_alloc(sizeof(ngx_http_x402_redis_op_t), rd->log);
    if (op == NULL) {
        return NULL;
    }

    ngx_memzero(op, sizeof(ngx_http_x402_redis_op_t));

    op->kind = kind;
    op->sop = sop;
    op->timer.handler = ngx_http_x402_redis_op_timeout;
    op->timer.data = op;
    op->timer.log = rd->log;

    return op;
}


static ngx_int_t
ngx_http_x402_redis_send(ngx_http_x402_redis_op_t *op, const char *script,
    ngx_http_x402_store_op_t *sop, ngx_str_t *arg1, ngx_str_t *arg2)
{
    u_char                 *p, *e;
    u_char                  key[128 + 64], ekey[128 + 8];
    const char             *argv[8];
    size_t                  argvlen[8];
    ngx_uint_t              argc;
    ngx_http_x402_redis_t  *rd;

    rd = &ngx_http_x402_redis_worker;

    p = ngx_cpymem(key, rd->conf->prefix.data, rd->conf->prefix.len);
    p = ngx_hex_dump(p, sop->id, 32);

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = script;
    argvlen[1] = ngx_strlen(script);

    if (script == ngx_http_x402_redis_reserve_lua) {
        /* KEYS[2]: the epoch record; ARGV[3]: the one this worker knows */
        e = ngx_cpymem(ekey, rd->conf->prefix.data, rd->conf->prefix.len);
        e = ngx_cpymem(e, "epoch", 5);

        argv[2] = "2";
        argvlen[2] = 1;
        argv[3] = (const char *) key;
        argvlen[3] = p - key;
        argv[4] = (const char *) ekey;
        argvlen[4] = e - ekey;
        argv[5] = (const char *) arg1->data;
        argvlen[5] = arg1->len;
        argv[6] = (const char *) arg2->data;
        argvlen[6] = arg2->len;
        argv[7] = (const char *) rd->epoch;
        argvlen[7] = rd->epoch_len;
        argc = 8;

    } else {
        argv[2] = "1";
        argvlen[2] = 1;
        argv[3] = (const char *) key;
        argvlen[3] = p - key;
        argv[4] = (const char *) arg1->data;
        argvlen[4] = arg1->len;
        argv[5] = (const char *) arg2->data;
        argvlen[5] = arg2->len;
        argc = arg2->len ? 6 : 5;
    }

    ngx_memcpy(op->id, sop->id, 32);

    if (redisAsyncCommandArgv(ngx_http_x402_redis_conn.ac,
                              ngx_http_x402_redis_reply, op,
                              (int) argc, argv, argvlen)
        != REDIS_OK)
    {
        ngx_free(op);
        return NGX_ERROR;
    }

    rd->inflight++;
    ngx_add_timer(&op->timer, rd->conf->timeout);

    return NGX_OK;
}


/*
 * SET <key> <value> [NX] [GET] PX <ttl>; a reserve (GET) is followed by
 * the GET of the epoch record, answered to the same op.
 */
static ngx_int_t
ngx_http_x402_redis_send_set(ngx_http_x402_redis_op_t *op,
    ngx_http_x402_store_op_t *sop, ngx_str_t *value, ngx_str_t *ttl,
    ngx_uint_t nx, ngx_uint_t get)
{
    u_char                 *p;
    u_char                  key[128 + 64];
    const char             *argv[7];
    size_t                  argvlen[7];
    ngx_uint_t              argc;
    ngx_http_x402_redis_t  *rd;

    rd = &ngx_http_x402_redis_worker;

    p = ngx_cpymem(key, rd->conf->prefix.data, rd->conf->prefix.len);
    p = ngx_hex_dump(p, sop->id, 32);

    argc = 0;
    argv[argc] = "SET"; argvlen[argc++] = 3;
    argv[argc] = (const char *) key; argvlen[argc++] = p - key;
    argv[argc] = (const char *) value->data; argvlen[argc++] = value->len;

    if (nx) {
        argv[argc] = "NX"; argvlen[argc++] = 2;
    }

    if (get) {
        argv[argc] = "GET"; argvlen[argc++] = 3;
    }

    argv[argc] = "PX"; argvlen[argc++] = 2;
    argv[argc] = (const char *) ttl->data; argvlen[argc++] = ttl->len;

    ngx_memcpy(op->id, sop->id, 32);

    if (redisAsyncCommandArgv(ngx_http_x402_redis_conn.ac,
                              ngx_http_x402_redis_reply, op,
                              (int) argc, argv, argvlen)
        != REDIS_OK)
    {
        ngx_free(op);
        return NGX_ERROR;
    }

    rd->inflight++;
    ngx_add_timer(&op->timer, rd->conf->timeout);

    if (get && rd->epoch_len) {
        /* the GET of the epoch record goes at the end of this write */
        op->batched = 1;
        op->epoch_len = rd->epoch_len;
        ngx_memcpy(op->epoch, rd->epoch, rd->epoch_len);
        *rd->batch_last = op;
        rd->batch_last = &op->next;
    }

    return NGX_OK;
}


/*
 * Before each write (redis_conn.c): one GET of the epoch record, after the
 * reserves this write carries, answers for all of them. Their replies come
 * before its own, each kept in its op until then.
 */
static void
ngx_http_x402_redis_batch_epoch(void)
{
    u_char                    *p;
    u_char                     key[128 + 8];
    const char                *argv[2];
    size_t                     argvlen[2];
    ngx_uint_t                 ok;
    ngx_http_x402_redis_t     *rd;
    ngx_http_x402_redis_op_t  *op, *next;

    rd = &ngx_http_x402_redis_worker;

    if (rd->batch == NULL || rd->conf == NULL) {
        return;
    }

    p = ngx_cpymem(key, rd->conf->prefix.data, rd->conf->prefix.len);
    p = ngx_cpymem(p, "epoch", 5);

    argv[0] = "GET"; argvlen[0] = 3;
    argv[1] = (const char *) key; argvlen[1] = p - key;

    ok = (ngx_http_x402_redis_conn.ac != NULL
          && redisAsyncCommandArgv(ngx_http_x402_redis_conn.ac,
                                   ngx_http_x402_redis_epoch_check_reply,
                                   rd->batch, 2, argv, argvlen)
             == REDIS_OK);

    for (op = rd->batch; op; op = next) {
        next = op->next;

        /* else (out of memory): unchecked, as with an unknown epoch */
        op->epoch_check = ok;
        op->batched = 0;

        if (!ok) {
            op->next = NULL;
        }
    }

    rd->batch = NULL;
    rd->batch_last = &rd->batch;
}


static size_t
ngx_http_x402_redis_value(u_char *buf, ngx_http_x402_store_op_t *sop,
    u_char state, ngx_str_t *text)
{
    u_char  *p;
    size_t   len;

    p = buf;
    *p++ = state;
    *p++ = '|';
    p = ngx_hex_dump(p, (u_char *) &sop->scope, 8);
    p = ngx_sprintf(p, "|%T|%T|", sop->settled_at, sop->expire);

    len = ngx_min(text->len, NGX_HTTP_X402_REC_TEXT_LEN);
    p = ngx_cpymem(p, text->data, len);

    return p - buf;
}


static ngx_str_t *
ngx_http_x402_redis_ttl(ngx_http_x402_store_op_t *sop, u_char *buf,
    ngx_str_t *s)
{
    time_t  ttl;

    /* expire is bounded by the server's window; clamped all the same */
    ttl = sop->expire - ngx_time();

    if (ttl < 1) {
        ttl = 1;

    } else if (ttl > NGX_HTTP_X402_REDIS_TTL_MAX) {
        ttl = NGX_HTTP_X402_REDIS_TTL_MAX;
    }

    s->data = buf;
    s->len = ngx_sprintf(buf, "%T", ttl * 1000) - buf;

    return s;
}


ngx_int_t
ngx_http_x402_redis_reserve(ngx_http_x402_store_op_t *sop)
{
    u_char                     vbuf[256], tbuf[NGX_TIME_T_LEN + 4];
    u_char                     owner[8];
    uint32_t                   rnd;
    ngx_str_t                  value, ttl, token;
    ngx_http_x402_redis_op_t  *op;

    op = ngx_http_x402_redis_op(NGX_HTTP_X402_REDIS_OP_RESERVE, sop);
    if (op == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_x402_redis_worker.epoch_len == 0) {
        /* unknown (its last reading failed): asked again, answered first */
        ngx_http_x402_redis_ask_epoch();
    }

    /* our reservation's token: a release deletes only its own */
    rnd = (uint32_t) ngx_random();
    ngx_memcpy(owner, &rnd, 4);
    rnd = (uint32_t) ngx_random() ^ (uint32_t) ngx_pid;
    ngx_memcpy(owner + 4, &rnd, 4);
    ngx_hex_dump(sop->owner, owner, 8);

    token.data = sop->owner;
    token.len = 16;

    sop->settled_at = 0;
    value.data = vbuf;
    value.len = ngx_http_x402_redis_value(vbuf, sop, 'R', &token);

    op->value_len = ngx_min(value.len, NGX_HTTP_X402_REDIS_VALUE_MAX);
    ngx_memcpy(op->value, value.data, op->value_len);

    (void) ngx_http_x402_redis_ttl(sop, tbuf, &ttl);

    if ((ngx_http_x402_redis_worker.legacy
         ? ngx_http_x402_redis_send(op, ngx_http_x402_redis_reserve_lua, sop,
                                    &value, &ttl)
         : ngx_http_x402_redis_send_set(op, sop, &value, &ttl, 1, 1))
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    sop->pending = op;

    return NGX_AGAIN;
}


void
ngx_http_x402_redis_set(ngx_http_x402_store_op_t *sop, ngx_uint_t state,
    ngx_str_t *text)
{
    u_char                     vbuf[256], tbuf[NGX_TIME_T_LEN + 4];
    ngx_str_t                  value, ttl, empty;
    ngx_http_x402_redis_op_t  *op;

    ngx_str_null(&empty);

    if (text == NULL) {
        text = &empty;
    }

    op = ngx_http_x402_redis_op(NGX_HTTP_X402_REDIS_OP_SET, NULL);

    if (op == NULL) {
        ngx_http_x402_redis_log_down(NGX_LOG_ERR,
                                     "unavailable, a payment's outcome is "
                                     "recorded in the local zone only",
                                     NULL);
        if (ngx_http_x402_store_zone) {
            (void) ngx_atomic_fetch_add(
                       &ngx_http_x402_store_zone->sh->counters.redis_errors,
                       1);
        }

        return;
    }

    value.data = vbuf;
    value.len = ngx_http_x402_redis_value(vbuf, sop,
                              state == NGX_HTTP_X402_REC_SETTLED ? 'S' : 'F',
                              text);

    (void) ngx_http_x402_redis_ttl(sop, tbuf, &ttl);

    if (state == NGX_HTTP_X402_REC_SETTLED && sop->grant == 0) {
        /*
         * nobody waits: it goes with the next reserve (redis_conn.c). A
         * grant goes at once: the payer may present it to another host
         * right after the response (t/66), and until this write lands
         * that host sees a reservation and refuses it as used.
         */
        ngx_http_x402_redis_conn.queue_lazily = 1;
        (void) ngx_http_x402_redis_send_set(op, sop, &value, &ttl, 0, 0);
        ngx_http_x402_redis_conn.queue_lazily = 0;

    } else if (state == NGX_HTTP_X402_REC_SETTLED) {
        (void) ngx_http_x402_redis_send_set(op, sop, &value, &ttl, 0, 0);

    } else {
        (void) ngx_http_x402_redis_send(op, ngx_http_x402_redis_set_lua, sop,
                                        &value, &ttl);
    }
}


void
ngx_http_x402_redis_release(ngx_http_x402_store_op_t *sop)
{
    u_char                     vbuf[256];
    ngx_str_t                  value, token, empty;
    ngx_http_x402_redis_op_t  *op;

    op = ngx_http_x402_redis_op(NGX_HTTP_X402_REDIS_OP_RELEASE, NULL);

    if (op == NULL) {
        /* the reservation expires with the authorization: safe */
        return;
    }

    token.data = sop->owner;
    token.len = 16;

    sop->settled_at = 0;
    value.data = vbuf;
    value.len = ngx_http_x402_redis_value(vbuf, sop, 'R', &token);

    ngx_str_null(&empty);

    (void) ngx_http_x402_redis_send(op, ngx_http_x402_redis_release_lua, sop,
                                    &value, &empty);
}


void
ngx_http_x402_redis_detach(ngx_http_x402_store_op_t *sop)
{
    ngx_http_x402_redis_op_t  *op;

    op = sop->pending;

    if (op) {
        /* the request is gone before the answer: nothing was served */
        op->sop = NULL;
        op->release = 1;
        sop->pending = NULL;
    }
}


/* A reservation of ours nobody will use: delete it (only if still ours). */
static void
ngx_http_x402_redis_take_back(u_char *id, u_char *value, size_t len)
{
    u_char                     key[32];
    ngx_str_t                  v, empty;
    ngx_http_x402_redis_t     *rd;
    ngx_http_x402_redis_op_t  *op;
    ngx_http_x402_store_op_t   sop;

    rd = &ngx_http_x402_redis_worker;

    op = ngx_http_x402_redis_op(NGX_HTTP_X402_REDIS_OP_RELEASE, NULL);

    if (op == NULL) {
        if (rd->conf == NULL || rd->releases == NULL) {
            return;
        }

        /* after the reconnect; the oldest go first when it is full */
        if (rd->nreleases == NGX_HTTP_X402_REDIS_RELEASES) {
            ngx_memmove(&rd->releases[0], &rd->releases[1],
                        (NGX_HTTP_X402_REDIS_RELEASES - 1)
                        * sizeof(ngx_http_x402_redis_release_t));
            rd->nreleases--;
        }

        ngx_memcpy(rd->releases[rd->nreleases].id, id, 32);
        ngx_memcpy(rd->releases[rd->nreleases].value, value, len);
        rd->releases[rd->nreleases].value_len = len;
        rd->nreleases++;
        return;
    }

    ngx_memcpy(key, id, 32);
    ngx_memzero(&sop, sizeof(ngx_http_x402_store_op_t));
    ngx_memcpy(sop.id, key, 32);

    v.data = value;
    v.len = len;
    ngx_str_null(&empty);

    (void) ngx_http_x402_redis_send(op, ngx_http_x402_redis_release_lua, &sop,
                                    &v, &empty);
}


static void
ngx_http_x402_redis_op_timeout(ngx_event_t *ev)
{
    ngx_http_x402_store_op_t  *sop;
    ngx_http_x402_redis_op_t  *op;

    op = ev->data;

    ngx_http_x402_redis_log_down(NGX_LOG_ERR, "command timed out", NULL);

    if (ngx_http_x402_store_zone) {
        (void) ngx_atomic_fetch_add(
                   &ngx_http_x402_store_zone->sh->counters.redis_errors, 1);
    }

    sop = op->sop;
    op->sop = NULL;

    if (op->kind == NGX_HTTP_X402_REDIS_OP_RESERVE
        && (sop == NULL || !ngx_http_x402_redis_worker.conf->fail_open))
    {
        /*
         * Refused (fail=closed) or gone: should the command land after
         * all, the reservation is taken back once Redis answers again.
         * With fail=open the payment is served here: it stays reserved.
         */
        op->release = 1;
    }

    if (sop) {
        sop->pending = NULL;
        ngx_http_x402_redis_worker.done(sop, NGX_ERROR, NULL);
    }

    /*
     * A server that does not answer in time is stalled or gone: drop the
     * connection (hiredis then calls every queued command back with NULL,
     * which frees them, this op included) and reconnect with backoff.
     */
    ngx_http_x402_redis_drop();
    ngx_http_x402_redis_schedule();
}


static void
ngx_http_x402_redis_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply                *rr;
    ngx_http_x402_redis_t     *rd;
    ngx_http_x402_redis_op_t  *op;

    rr = reply;
    op = privdata;
    rd = &ngx_http_x402_redis_worker;

    if (op->batched) {
        /*
         * Answered before its batch's epoch GET was queued: only the
         * connection dying does that (NULL), and the whole batch with it
         */
        rd->batch = NULL;
        rd->batch_last = &rd->batch;
        op->batched = 0;
        op->next = NULL;
    }

    if (op->epoch_check) {
        /* a reserve's SET: kept until the epoch record's GET answers */
        op->answered = 1;
        op->got_type = (rr == NULL) ? -1 : rr->type;

        if (rr && (rr->type == REDIS_REPLY_STRING
                   || rr->type == REDIS_REPLY_ERROR))
        {
            if ((size_t) rr->len > NGX_HTTP_X402_REDIS_VALUE_MAX) {
                /* no record of ours is that long */
                op->got_type = REDIS_REPLY_ERROR;
                op->got_len = ngx_sprintf(op->got, "ERR record too long")
                              - op->got;

            } else {
                op->got_len = rr->len;
                ngx_memcpy(op->got, rr->str, rr->len);
            }
        }

        return;
    }

    ngx_http_x402_redis_finish(op, rr);
}


/* the epoch record's GET: the outcome of each reserve of its batch */
static void
ngx_http_x402_redis_epoch_check_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply                *rr, got;
    ngx_http_x402_redis_t     *rd;
    ngx_http_x402_redis_op_t  *op, *next;

    static char  epoch_changed[] = "X402EPOCH the epoch record changed";

    rd = &ngx_http_x402_redis_worker;

    for (op = privdata; op; op = next) {
        next = op->next;
        rr = reply;

        /* the reserve's outcome: the SET's, if the epoch is unchanged */
        ngx_memzero(&got, sizeof(redisReply));

        if (rr == NULL || !op->answered || op->got_type == -1) {
            rr = NULL;

        } else if (rr->type == REDIS_REPLY_STRING
                   && (size_t) rr->len == op->epoch_len
                   && ngx_memcmp(rr->str, op->epoch, op->epoch_len) == 0)
        {
            got.type = op->got_type;
            got.str = (char *) op->got;
            got.len = op->got_len;
            rr = &got;

        } else {
            if (op->got_type == REDIS_REPLY_NIL && !rd->exiting) {
                /* set on a Redis that forgot: nobody will use it */
                ngx_http_x402_redis_take_back(op->id, op->value,
                                              op->value_len);
            }

            got.type = REDIS_REPLY_ERROR;

            if (rr->type == REDIS_REPLY_ERROR) {
                got.str = rr->str;
                got.len = rr->len;

            } else {
                got.str = epoch_changed;
                got.len = sizeof(epoch_changed) - 1;
            }

            rr = &got;
        }

        ngx_http_x402_redis_finish(op, rr);
    }
}


static void
ngx_http_x402_redis_finish(ngx_http_x402_redis_op_t *op, redisReply *rr)
{
    u_char                     hex[64];
    ngx_str_t                  value;
    ngx_uint_t                 ok;
    ngx_http_x402_redis_t     *rd;
    ngx_http_x402_store_op_t  *sop;

    static time_t  logged;

    rd = &ngx_http_x402_redis_worker;

    if (op->kind == NGX_HTTP_X402_REDIS_OP_RESERVE && rr != NULL
        && rr->type == REDIS_REPLY_ERROR && !rd->legacy
        && rr->len >= 16 && ngx_strncmp(rr->str, "ERR syntax error", 16) == 0)
    {
        /* before Redis 7.0: the reserves that follow use the script */
        rd->legacy = 1;
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "x402: redis: SET with NX and GET refused (Redis "
                      "before 7.0): reserving with a script from now on");
    }

    if (op->timer.timer_set) {
        ngx_del_timer(&op->timer);
    }

    rd->inflight--;

    sop = op->sop;
    op->sop = NULL;

    if (rr != NULL && rr->type == REDIS_REPLY_ERROR
        && rr->len >= 9 && ngx_strncmp(rr->str, "X402EPOCH", 9) == 0)
    {
        /* it forgot (or another member noticed first): read it again */
        ngx_http_x402_redis_ask_epoch();

    } else if (rr != NULL && rr->type == REDIS_REPLY_ERROR) {

        /* once a second at most: a misconfigured server fails them all */
        if (logged != ngx_time()) {
            logged = ngx_time();
            ngx_log_error(NGX_LOG_ERR, rd->log, 0, "x402: redis: %*s",
                          ngx_min((size_t) rr->len, 256), rr->str);
        }

        if (ngx_http_x402_store_zone) {
            (void) ngx_atomic_fetch_add(
                   &ngx_http_x402_store_zone->sh->counters.redis_errors, 1);
        }
    }

    if (op->kind == NGX_HTTP_X402_REDIS_OP_RESERVE && sop == NULL
        && op->release && !rd->exiting
        && (rr == NULL || rr->type == REDIS_REPLY_NIL))
    {
        /* NIL: it is ours; NULL: it may be */
        ngx_http_x402_redis_take_back(op->id, op->value, op->value_len);
    }

    if (op->kind == NGX_HTTP_X402_REDIS_OP_RESERVE) {

        if (sop) {
            sop->pending = NULL;

            if (rr == NULL || rr->type == REDIS_REPLY_ERROR) {
                if (rr == NULL && !rd->conf->fail_open && !rd->exiting) {
                    /* the connection died: it may have landed */
                    ngx_http_x402_redis_take_back(op->id, op->value,
                                                  op->value_len);
                }

                /* NGX_DECLINED: unavailable because it forgot */
                ngx_http_x402_redis_worker.done(sop,
                        (rr && rr->len >= 9
                         && ngx_strncmp(rr->str, "X402EPOCH", 9) == 0)
                        ? NGX_DECLINED : NGX_ERROR, NULL);

            } else if (rr->type == REDIS_REPLY_NIL) {
                ngx_str_null(&value);
                ngx_http_x402_redis_worker.done(sop, NGX_OK, &value);

            } else if (rr->type == REDIS_REPLY_STRING) {
                value.data = (u_char *) rr->str;
                value.len = rr->len;
                ngx_http_x402_redis_worker.done(sop, NGX_OK, &value);

            } else {
                ngx_http_x402_redis_worker.done(sop, NGX_ERROR, NULL);
            }
        }

    } else if (op->kind == NGX_HTTP_X402_REDIS_OP_SYNC) {

        if (ngx_http_x402_store_zone) {
            ok = (rr != NULL && rr->type != REDIS_REPLY_ERROR);
            ngx_http_x402_shm_synced(ngx_http_x402_store_zone, op->id, ok);

            if (ok) {
                rd->pushed++;

            } else {
                rd->push_failed++;
            }
        }

        if (rd->sync_inflight) {
            rd->sync_inflight--;
        }

        if (rd->sync_inflight == 0 && !rd->exiting
            && !rd->sync.timer_set)
        {
            /* the next batch, or the failed ones again after a pause */
            ngx_add_timer(&rd->sync, rd->push_failed ? 1000 : 1);
        }

    } else if (op->kind == NGX_HTTP_X402_REDIS_OP_SET
               && rr == NULL && !rd->exiting)
    {
        (void) ngx_hex_dump(hex, op->id, 32);
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "x402: redis: the outcome of payment %*s was not "
                      "written (connection lost); it stays in the local "
                      "zone", (size_t) 64, hex);
    }

    ngx_free(op);
}


/*
 * Records taken with fail=open while Redis was unreachable (or that Redis
 * forgot) are pushed to it once it is back: a reservation only where Redis
 * has nothing, an outcome unless Redis says settled. Other nginx then
 * refuse a replay of a payment served here (as long as it is unexpired).
 * A record stays marked until Redis confirmed its push: one that fails is
 * pushed again, and only confirmed pushes are counted.
 */
static void
ngx_http_x402_redis_sync_handler(ngx_event_t *ev)
{
    u_char                     vbuf[256], tbuf[NGX_TIME_T_LEN + 4];
    ngx_str_t                  value, ttl, token;
    ngx_uint_t                 i, n, level;
    ngx_int_t                  rc;
    ngx_uint_t                 states[32];
    ngx_http_x402_redis_t     *rd;
    ngx_http_x402_redis_op_t  *op;
    ngx_http_x402_store_op_t   ops[32];

    rd = &ngx_http_x402_redis_worker;

    if (rd->conf == NULL
        || ngx_http_x402_redis_conn.state != NGX_HTTP_X402_REDIS_READY
        || ngx_http_x402_store_zone == NULL)
    {
        return;
    }

    /* reservations refused or abandoned while it was away */
    while (rd->nreleases) {
        op = ngx_http_x402_redis_op(NGX_HTTP_X402_REDIS_OP_RELEASE, NULL);
        if (op == NULL) {
            break;
        }

        rd->nreleases--;
        ngx_memzero(&ops[0], sizeof(ngx_http_x402_store_op_t));
        ngx_memcpy(ops[0].id, rd->releases[rd->nreleases].id, 32);
        value.data = rd->releases[rd->nreleases].value;
        value.len = rd->releases[rd->nreleases].value_len;
        ngx_str_null(&token);

        (void) ngx_http_x402_redis_send(op, ngx_http_x402_redis_release_lua,
                                        &ops[0], &value, &token);
    }

    if (rd->sync_inflight == 0) {
        /* the previous round has ended: report it */
        if (rd->pushed || rd->push_failed) {
            level = rd->push_failed ? NGX_LOG_WARN : NGX_LOG_NOTICE;
            ngx_log_error(level, ev->log, 0,
                          "x402: redis: %ui payment record(s) taken while "
                          "it was unreachable or had lost them pushed to it, "
                          "%ui push(es) failed and will be retried",
                          rd->pushed, rd->push_failed);
        }

        rd->pushed = 0;
        rd->push_failed = 0;

    } else {
        /* a round is under way: its last answer schedules the next */
        return;
    }

    n = ngx_http_x402_shm_take_unsynced(ngx_http_x402_store_zone, ops, 32,
                                        states);

    for (i = 0; i < n; i++) {

        op = ngx_http_x402_redis_op(NGX_HTTP_X402_REDIS_OP_SYNC, NULL);
        if (op == NULL) {
            /* kept marked: pushed at the next connect or round */
            ngx_http_x402_shm_synced(ngx_http_x402_store_zone, ops[i].id, 0);
            rd->push_failed++;
            continue;
        }

        (void) ngx_http_x402_redis_ttl(&ops[i], tbuf, &ttl);
        value.data = vbuf;

        if (states[i] == NGX_HTTP_X402_REC_RESERVED) {
            /* only where Redis has nothing; any epoch: it is a true record */
            ngx_str_set(&token, "0000000000000000");
            ops[i].settled_at = 0;
            value.len = ngx_http_x402_redis_value(vbuf, &ops[i], 'R',
                                                  &token);
            rc = ngx_http_x402_redis_send_set(op, &ops[i], &value, &ttl,
                                              1, 0);

        } else if (states[i] == NGX_HTTP_X402_REC_SETTLED) {
            value.len = ngx_http_x402_redis_value(vbuf, &ops[i], 'S',
                                                  &ops[i].tx);
            rc = ngx_http_x402_redis_send_set(op, &ops[i], &value, &ttl,
                                              0, 0);

        } else {
            value.len = ngx_http_x402_redis_value(vbuf, &ops[i], 'F',
                                                  &ops[i].tx);
            rc = ngx_http_x402_redis_send(op, ngx_http_x402_redis_set_lua,
                                          &ops[i], &value, &ttl);
        }

        if (rc != NGX_OK) {
            ngx_http_x402_shm_synced(ngx_http_x402_store_zone, ops[i].id, 0);
            rd->push_failed++;
            continue;
        }

        rd->sync_inflight++;
    }

    if (rd->sync_inflight == 0 && rd->push_failed && !rd->exiting
        && !ev->timer_set)
    {
        ngx_add_timer(ev, 1000);
    }
}

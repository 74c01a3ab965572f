
/*
 * ngx_http_x402_redis_queue.c: owed async settlements kept in Redis
 * (x402_redis), so that any nginx of the fleet can finish them
 * (src/README.md, layer 3, on the connection of redis_conn.c).
 *
 * Keys beside the records:
 *
 *     <prefix>owed        a sorted set of payment ids (hex), scored by when
 *                         the entry may be tried next (wall clock ms): its
 *                         next attempt, or the end of a claim
 *     <prefix>owed:<id>   a string with a TTL (validBefore + a day):
 *                         "<scope hex>|<expire>+<keep>|<validBefore>|
 *                         <server>\n
 *                         <uri length>\n<uri><the /settle body>"; once an
 *                         attempt failed (a reschedule rewrites it) the
 *                         second line is "<uri length> <attempts> <answer
 *                         lost 0/1> <error length>" and the error comes
 *                         before the uri. The first form means 1 0 0.
 *
 * An entry is written and removed with plain pipelined commands, no
 * script (the common path costs Redis about 60% of what two scripts
 * cost, bench/redis.sh): the owe is SET <entry> PX, then ZADD; a removal
 * ZREM, then DEL. A claim (a script) between two of them
 * sees a whole entry or none: the set names it only while the entry is
 * there. A connection lost in between leaves a key that expires, or an id
 * whose entry is gone, which a claim drops. The rare paths (reschedule,
 * claim) are scripts. An entry written by an earlier version is a hash
 * (m, a, u, r, uri, b): the scripts still read and update it.
 *
 * The life of an entry:
 *
 *  - queued (store.c, before the response leaves): written to the spool as
 *    without Redis, and the owe is sent on the worker's connection; nobody
 *    waits for it. Once Redis confirms, the spool says "done <id> redis":
 *    a restart of this host does not resume it, Redis holds it (RQ_HELD).
 *    If Redis is down or refuses, it stays in the spool (RQ_NONE) and this
 *    host settles it as without Redis.
 *  - the serving worker's attempt: claimed in Redis from the owe on (score:
 *    the end of its lease and the skew margin). An owe whose reply was
 *    lost stays with this host (the spool) and leaves Redis once the
 *    connection is back. A lost answer reschedules it in Redis (score:
 *    the next attempt) and it leaves this zone; a final outcome (settled,
 *    refused, given up, unknown) removes it from Redis.
 *  - every worker's retry timer claims due entries with one script (score
 *    moved to now + lease: nobody else takes them meanwhile), puts them in
 *    its zone's queue (RQ_HELD, not spooled) and the usual retry settles
 *    them. A worker that dies mid-attempt leaves the claim to run out.
 *
 * Scripts name the hash and record keys from the prefix they are given,
 * so this wants a single Redis (not a cluster), as the records do.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_http_x402_store_int.h"


/*
 * A claim lasts the local lease and a margin for skewed clocks; an owe's
 * score (its first attempt's lease) has the same margin: a lease ends, for
 * any other host, that much after it ends for its holder.
 */
#define NGX_HTTP_X402_RQ_SKEW    30000
#define NGX_HTTP_X402_RQ_CLAIM   (NGX_HTTP_X402_ASYNC_LEASE \
                                  + NGX_HTTP_X402_RQ_SKEW)
/* kept this long past validBefore: the chain may still be asked */
#define NGX_HTTP_X402_RQ_KEEP    86400
/* removals to send once Redis answers again */
#define NGX_HTTP_X402_RQ_REMOVES 256


/*
 * KEYS: set, entry; ARGV: id, score, attempts, unknown, reason. A string
 * entry is rewritten with its attempts (its TTL kept); one of the earlier
 * version (a hash) keeps them in its fields.
 */
static const char  ngx_http_x402_rq_reschedule_lua[] =
    "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end "
    "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) "
    "local t = redis.call('TYPE', KEYS[2]).ok "
    "if t == 'hash' then "
    "redis.call('HMSET', KEYS[2], 'a', ARGV[3], 'u', ARGV[4], "
    "'r', ARGV[5]) return 1 end "
    "if t ~= 'string' then return 0 end "
    "local v = redis.call('GET', KEYS[2]) "
    "local i = string.find(v, '\\n', 1, true) "
    "local j = i and string.find(v, '\\n', i + 1, true) "
    "if not j then return 0 end "
    "local l = string.sub(v, i + 1, j - 1) "
    "local n, a, u, rl = string.match(l, '^(%d+) (%d+) ([01]) (%d+)$') "
    "if not n then n = string.match(l, '^(%d+)$') rl = 0 end "
    "local p = redis.call('PTTL', KEYS[2]) "
    "if not n or p <= 0 then return 0 end "
    "redis.call('SET', KEYS[2], string.sub(v, 1, i) .. n .. ' ' .. ARGV[3] "
    ".. ' ' .. ARGV[4] .. ' ' .. string.len(ARGV[5]) .. '\\n' .. ARGV[5] "
    ".. string.sub(v, j + 1 + tonumber(rl)), 'PX', p) "
    "return 1";

/*
 * KEYS: set; ARGV: now, claim end, how many, prefix. Entries that expired,
 * or whose record says settled (a removal that never reached Redis), go;
 * the others are claimed and returned, 7 fields each (id, meta, attempts,
 * unknown, reason, uri, body): a string entry, or a hash of the earlier
 * version. A string this version cannot read is claimed with empty
 * fields: the reply's check skips it (logged), it stays owed.
 */
static const char  ngx_http_x402_rq_claim_lua[] =
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], "
    "'LIMIT', 0, tonumber(ARGV[3])) "
    "local out = {} "
    "for _, id in ipairs(ids) do "
    "local hk = ARGV[4] .. 'owed:' .. id "
    "local t = redis.call('TYPE', hk).ok "
    "local h = {false} "
    "if t == 'hash' then "
    "h = redis.call('HMGET', hk, 'm', 'a', 'u', 'r', 'uri', 'b') "
    "elseif t == 'string' then "
    "local v = redis.call('GET', hk) "
    "local i = string.find(v, '\\n', 1, true) "
    "local j = i and string.find(v, '\\n', i + 1, true) "
    "h = {'', '', '', '', '', ''} "
    "if j then "
    "local l = string.sub(v, i + 1, j - 1) "
    "local n, a, u, rl = string.match(l, '^(%d+) (%d+) ([01]) (%d+)$') "
    "if not n then n = string.match(l, '^(%d+)$') a = '1' u = '0' rl = 0 end "
    "if n then n = tonumber(n) rl = tonumber(rl) "
    "h = {string.sub(v, 1, i - 1), a, u, string.sub(v, j + 1, j + rl), "
    "string.sub(v, j + rl + 1, j + rl + n), "
    "string.sub(v, j + rl + n + 1)} end end end "
    "local rec = redis.call('GET', ARGV[4] .. id) "
    "if not h[1] or not h[6] or (rec and string.sub(rec, 1, 1) == 'S') "
    "then redis.call('ZREM', KEYS[1], id) redis.call('DEL', hk) "
    "else redis.call('ZADD', KEYS[1], ARGV[2], id) "
    "table.insert(out, id) "
    "for i = 1, 6 do table.insert(out, h[i] or '') end end end "
    "return out";


/* an owe's two commands answer to this */
typedef struct {
    u_char       id[32];
    unsigned     set_failed:1;
    /* the ZADD could not be queued: the SET's reply ends it, failed */
    unsigned     alone:1;
} ngx_http_x402_rq_owe_t;


static void ngx_http_x402_rq_owe_set_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_x402_rq_owe_reply(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_x402_rq_owe_done(ngx_http_x402_rq_owe_t *owe,
    ngx_uint_t ok);
static void ngx_http_x402_rq_reply(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_x402_rq_claim_reply(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_x402_rq_claim_timeout(ngx_event_t *ev);
static void ngx_http_x402_rq_reschedule(u_char *id,
    ngx_http_x402_pending_info_t *info);


static ngx_event_t  ngx_http_x402_rq_claim_timer;
static ngx_uint_t   ngx_http_x402_rq_claiming;
static ngx_uint_t   ngx_http_x402_rq_nremoves;
static u_char       ngx_http_x402_rq_removes[NGX_HTTP_X402_RQ_REMOVES][32];


static ngx_uint_t
ngx_http_x402_rq_ready(void)
{
    ngx_http_x402_redis_conn_t  *rd;

    rd = &ngx_http_x402_redis_conn;

    return rd->conf != NULL && rd->ac != NULL && !rd->exiting
           && rd->state == NGX_HTTP_X402_REDIS_READY;
}


/* "<prefix>owed" and "<prefix>owed:<id hex>" */
#define NGX_HTTP_X402_RQ_KEYS  (2 * 128 + 80)

static void
ngx_http_x402_rq_keys(u_char *id, ngx_str_t *set, ngx_str_t *entry,
    u_char *buf)
{
    u_char      *p;
    ngx_str_t   *prefix;

    prefix = &ngx_http_x402_redis_conn.conf->prefix;

    set->data = buf;
    p = ngx_cpymem(buf, prefix->data, prefix->len);
    p = ngx_cpymem(p, "owed", 4);
    set->len = p - buf;

    entry->data = p;
    p = ngx_cpymem(p, prefix->data, prefix->len);
    p = ngx_cpymem(p, "owed:", 5);

    if (id) {
        p = ngx_hex_dump(p, id, 32);
    }

    entry->len = p - entry->data;
}


static ngx_int_t
ngx_http_x402_rq_command(redisCallbackFn *fn, void *privdata, ngx_uint_t argc,
    const char **argv, size_t *argvlen)
{
    if (redisAsyncCommandArgv(ngx_http_x402_redis_conn.ac, fn, privdata,
                              (int) argc, argv, argvlen)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_x402_rq_send(redisCallbackFn *fn, void *privdata, const char *script,
    size_t script_len, ngx_uint_t nkeys, ngx_str_t *args, ngx_uint_t nargs)
{
    u_char       nk[4];
    size_t       argvlen[16];
    ngx_uint_t   i;
    const char  *argv[16];

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = script;
    argvlen[1] = script_len;
    argvlen[2] = ngx_sprintf(nk, "%ui", nkeys) - nk;
    argv[2] = (const char *) nk;

    for (i = 0; i < nargs && i < 13; i++) {
        argv[3 + i] = (const char *) args[i].data;
        argvlen[3 + i] = args[i].len;
    }

    return ngx_http_x402_rq_command(fn, privdata, 3 + i, argv, argvlen);
}


/*
 * A settlement was queued in the zone and the spool (async_begin): sent to
 * Redis too, unless the connection is down (then the spool keeps it).
 * Nothing waits for the reply: SET of the entry with its TTL, then ZADD
 * (a claim sees the id only once the entry is there).
 */
void
ngx_http_x402_redis_queue_owe(ngx_http_x402_shm_t *zone,
    ngx_http_x402_store_op_t *op, uint64_t server, ngx_str_t *uri,
    ngx_str_t *body)
{
    u_char                   *v, keys[NGX_HTTP_X402_RQ_KEYS];
    u_char                    ttl[NGX_INT64_LEN], score[NGX_INT64_LEN];
    u_char                    hex[64];
    size_t                    len, score_len, argvlen[5];
    time_t                    keep;
    ngx_str_t                 set, entry;
    const char               *argv[5];
    ngx_http_x402_rq_owe_t   *owe;
    ngx_http_x402_pending_t  *p;

    if (!ngx_http_x402_rq_ready()) {
        return;
    }

    /* the entry's value: "<meta>\n<uri length>\n<uri><body>" */
    len = sizeof(ngx_http_x402_rq_owe_t) + 128 + NGX_SIZE_T_LEN + uri->len
          + body->len;

    owe = ngx_alloc(len, ngx_cycle->log);
    if (owe == NULL) {
        return;
    }

    ngx_memzero(owe, sizeof(ngx_http_x402_rq_owe_t));
    ngx_memcpy(owe->id, op->id, 32);

    ngx_shmtx_lock(&zone->shpool->mutex);

    p = ngx_http_x402_queue_find(zone->sh, op->id);

    if (p == NULL || p->rq != NGX_HTTP_X402_RQ_NONE) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_free(owe);
        return;
    }

    p->rq = NGX_HTTP_X402_RQ_SENT;

    /*
     * claimed by the attempt under way until its lease ends, and the
     * margin a claim adds for skewed clocks: a host whose clock runs
     * ahead by up to that much does not take it while the lease holds
     */
    score_len = ngx_sprintf(score, "%uL", (uint64_t) p->lease_until
                                          + NGX_HTTP_X402_RQ_SKEW)
                - score;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_http_x402_rq_keys(op->id, &set, &entry, keys);

    v = (u_char *) (owe + 1);
    len = ngx_sprintf(ngx_hex_dump(v, (u_char *) &op->scope, 8),
                      "|%T+%T|%T|%uL\n%uz\n", op->expire,
                      ngx_max(op->window, op->grant), op->valid_before,
                      server, uri->len)
          - v;
    len = ngx_cpymem(ngx_cpymem(v + len, uri->data, uri->len),
                     body->data, body->len)
          - v;

    keep = op->valid_before - ngx_time();
    keep = (keep < 0 ? 0 : keep) + NGX_HTTP_X402_RQ_KEEP;

    /* validBefore is the client's: the key's life is bounded all the same */
    if (keep > 366 * 86400) {
        keep = 366 * 86400;
    }

    argv[0] = "SET"; argvlen[0] = 3;
    argv[1] = (const char *) entry.data; argvlen[1] = entry.len;
    argv[2] = (const char *) v; argvlen[2] = len;
    argv[3] = "PX"; argvlen[3] = 2;
    argv[4] = (const char *) ttl;
    argvlen[4] = ngx_sprintf(ttl, "%T", keep * 1000) - ttl;

    if (ngx_http_x402_rq_command(ngx_http_x402_rq_owe_set_reply, owe,
                                 5, argv, argvlen)
        != NGX_OK)
    {
        goto failed;
    }

    argv[0] = "ZADD"; argvlen[0] = 4;
    argv[1] = (const char *) set.data; argvlen[1] = set.len;
    argv[2] = (const char *) score; argvlen[2] = score_len;
    argv[3] = (const char *) hex;
    argvlen[3] = ngx_hex_dump(hex, op->id, 32) - hex;

    if (ngx_http_x402_rq_command(ngx_http_x402_rq_owe_reply, owe,
                                 4, argv, argvlen)
        == NGX_OK)
    {
        return;
    }

    /* out of memory: the spool keeps it; a key that landed expires */
    owe->alone = 1;

    return;

failed:

    ngx_shmtx_lock(&zone->shpool->mutex);

    p = ngx_http_x402_queue_find(zone->sh, owe->id);
    if (p && p->rq == NGX_HTTP_X402_RQ_SENT) {
        p->rq = NGX_HTTP_X402_RQ_NONE;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
    ngx_free(owe);
}


/* the entry's SET: its outcome waits for the ZADD's reply */
static void
ngx_http_x402_rq_owe_set_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_x402_rq_owe_t  *owe = privdata;

    redisReply  *rr = reply;

    if (rr == NULL || rr->type == REDIS_REPLY_ERROR) {
        owe->set_failed = 1;

        if (rr) {
            ngx_http_x402_redis_log_down(NGX_LOG_ERR, "an owed settlement "
                                         "was not queued there, the spool "
                                         "keeps it", rr->str);
        }
    }

    if (owe->alone) {
        ngx_http_x402_rq_owe_done(owe, 0);
    }
}


static void
ngx_http_x402_rq_owe_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    ngx_http_x402_rq_owe_t  *owe = privdata;

    u_char       id[32];

    redisReply  *rr = reply;

    if (rr != NULL && rr->type == REDIS_REPLY_ERROR) {
        ngx_http_x402_redis_log_down(NGX_LOG_ERR, "an owed settlement was "
                                     "not queued there, the spool keeps it",
                                     rr->str);
    }

    if (rr == NULL) {
        /*
         * The connection went before the answer: the entry may have
         * landed all the same. This host keeps it (the spool has it) and
         * settles it; one left in Redis would be claimed by another host
         * once the lease ran out, and settled a second time (or a
         * restart of this host would resume it from the spool while
         * another host settles it from Redis). Removed from Redis once
         * the connection is back (the retry timer's next tick sends it),
         * before that lease runs out.
         */
        ngx_memcpy(id, owe->id, 32);
        ngx_http_x402_rq_owe_done(owe, 0);
        ngx_http_x402_redis_queue_remove(id);
        return;
    }

    /* both commands: an id without its entry would be dropped by a claim */
    ngx_http_x402_rq_owe_done(owe, rr->type != REDIS_REPLY_ERROR
                                   && !owe->set_failed);
}


static void
ngx_http_x402_rq_owe_done(ngx_http_x402_rq_owe_t *owe, ngx_uint_t ok)
{
    u_char                       *id, hex[64];
    ngx_uint_t                    moved, spooled;
    ngx_http_x402_shm_t          *zone;
    ngx_http_x402_pending_t      *p;
    ngx_http_x402_pending_info_t  info;

    id = owe->id;
    zone = ngx_http_x402_store_zone;
    moved = 0;
    spooled = 1;

    if (zone == NULL) {
        ngx_free(owe);
        return;
    }

    ngx_memzero(&info, sizeof(ngx_http_x402_pending_info_t));

    ngx_shmtx_lock(&zone->shpool->mutex);

    p = ngx_http_x402_queue_find(zone->sh, id);

    if (p && p->rq == NGX_HTTP_X402_RQ_SENT) {

        if (ok) {
            p->rq = NGX_HTTP_X402_RQ_HELD;

            /* Redis holds it now: a restart of this host leaves it there */
            spooled = (ngx_http_x402_spool_done_locked(zone, id, "redis")
                       == NGX_OK);

            if (p->lease_until == 0) {
                /* its attempt already failed: Redis reschedules it */
                info.found = 1;
                info.attempts = p->attempts;
                info.unknown = p->unknown;
                info.next_try = p->next_try;
                info.valid_before = p->valid_before;
                info.reason_len = p->reason_len;
                ngx_memcpy(info.reason, p->reason, p->reason_len);
                ngx_http_x402_queue_free_locked(zone, p);
                moved = 1;
            }

        } else {
            p->rq = NGX_HTTP_X402_RQ_NONE;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (!spooled) {
        (void) ngx_hex_dump(hex, id, 32);
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                      "x402: could not write to the spool that payment %*s "
                      "is queued in redis: a restart will try it again",
                      (size_t) 64, hex);
    }

    if (moved) {
        ngx_http_x402_rq_reschedule(id, &info);
    }

    ngx_free(owe);
}


/* the reply of a removal or a reschedule: privdata is NULL */
static void
ngx_http_x402_rq_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *rr = reply;

    if (rr && rr->type == REDIS_REPLY_ERROR) {
        ngx_http_x402_redis_log_down(NGX_LOG_ERR, "owed settlements", rr->str);
    }
}


static void
ngx_http_x402_rq_reschedule(u_char *id, ngx_http_x402_pending_info_t *info)
{
    u_char     keys[NGX_HTTP_X402_RQ_KEYS], hex[64], score[NGX_INT64_LEN];
    u_char     attempts[NGX_INT_T_LEN];
    uint64_t   at, vb;
    ngx_str_t  args[7];

    if (!ngx_http_x402_rq_ready()) {
        /* its claim in Redis runs out: then any member may take it */
        return;
    }

    ngx_http_x402_rq_keys(id, &args[0], &args[1], keys);

    args[2].data = hex;
    args[2].len = ngx_hex_dump(hex, id, 32) - hex;

    /* due at its next attempt, or when it expires if that comes first */
    vb = (uint64_t) info->valid_before * 1000;
    at = ngx_min(info->next_try, vb);

    args[3].data = score;
    args[3].len = ngx_sprintf(score, "%uL", at) - score;
    args[4].data = attempts;
    args[4].len = ngx_sprintf(attempts, "%ui", info->attempts) - attempts;
    ngx_str_set(&args[5], "1");

    if (!info->unknown) {
        ngx_str_set(&args[5], "0");
    }

    args[6].data = info->reason;
    args[6].len = info->reason_len;

    (void) ngx_http_x402_rq_send(ngx_http_x402_rq_reply, NULL,
                                 ngx_http_x402_rq_reschedule_lua,
                                 sizeof(ngx_http_x402_rq_reschedule_lua) - 1,
                                 2, args, 7);
}


/*
 * A first attempt of an entry Redis holds that was never started (retry.c,
 * past FIRST_WAIT): nothing was sent. It leaves this zone and is due at
 * once in Redis, for whoever claims next; left to its lease there, that
 * ran out 30 s after ours.
 */
void
ngx_http_x402_redis_queue_unstarted(ngx_http_x402_shm_t *zone, u_char *id)
{
    ngx_str_t                     text;
    ngx_http_x402_pending_t      *p;
    ngx_http_x402_pending_info_t  info;

    ngx_memzero(&info, sizeof(ngx_http_x402_pending_info_t));
    ngx_str_set(&text, "its first attempt was not started in time");

    ngx_shmtx_lock(&zone->shpool->mutex);

    p = ngx_http_x402_queue_find(zone->sh, id);

    if (p == NULL || p->rq != NGX_HTTP_X402_RQ_HELD || p->attempts != 1) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    info.found = 1;
    info.attempts = p->attempts;
    info.unknown = p->unknown;
    info.next_try = ngx_http_x402_queue_now();
    info.valid_before = p->valid_before;
    info.reason_len = text.len;
    ngx_memcpy(info.reason, text.data, text.len);

    ngx_http_x402_queue_free_locked(zone, p);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_http_x402_rq_reschedule(id, &info);
}


/* a final outcome: the entry leaves Redis (or will, once it answers) */
void
ngx_http_x402_redis_queue_remove(u_char *id)
{
    u_char       keys[NGX_HTTP_X402_RQ_KEYS], hex[64];
    size_t       argvlen[3];
    ngx_int_t    rc;
    ngx_str_t    set, entry;
    const char  *argv[3];

    if (ngx_http_x402_redis_conn.conf == NULL) {
        return;
    }

    if (!ngx_http_x402_rq_ready()) {
        goto later;
    }

    ngx_http_x402_rq_keys(id, &set, &entry, keys);

    /*
     * ZREM first: a claim never sees an id whose entry is gone. Nobody
     * waits: both go with the next write (redis_conn.c).
     */
    argv[0] = "ZREM"; argvlen[0] = 4;
    argv[1] = (const char *) set.data; argvlen[1] = set.len;
    argv[2] = (const char *) hex;
    argvlen[2] = ngx_hex_dump(hex, id, 32) - hex;

    ngx_http_x402_redis_conn.queue_lazily = 1;

    rc = ngx_http_x402_rq_command(ngx_http_x402_rq_reply, NULL, 3, argv,
                                  argvlen);

    if (rc == NGX_OK) {
        argv[0] = "DEL"; argvlen[0] = 3;
        argv[1] = (const char *) entry.data; argvlen[1] = entry.len;

        /* failed (out of memory): the entry expires */
        (void) ngx_http_x402_rq_command(ngx_http_x402_rq_reply, NULL, 2,
                                        argv, argvlen);
    }

    ngx_http_x402_redis_conn.queue_lazily = 0;

    if (rc == NGX_OK) {
        return;
    }

later:

    /*
     * Kept for the retry timer's next tick (redis_queue_flush); should
     * this worker exit first, the claim script drops an entry whose
     * record says settled, and a refused or expired one is refused again
     * by the facilitator.
     */
    if (ngx_http_x402_rq_nremoves < NGX_HTTP_X402_RQ_REMOVES) {
        ngx_memcpy(ngx_http_x402_rq_removes[ngx_http_x402_rq_nremoves++],
                   id, 32);
    }
}


/*
 * Every end of an attempt (retry.c, store.c): the zone's queue as without
 * Redis, then what Redis must learn.
 */
void
ngx_http_x402_redis_queue_done(ngx_http_x402_shm_t *zone, u_char *id,
    ngx_uint_t outcome, ngx_str_t *text, ngx_log_t *log)
{
    ngx_http_x402_pending_info_t  info;

    ngx_memzero(&info, sizeof(ngx_http_x402_pending_info_t));

    ngx_http_x402_shm_pending_end(zone, id, outcome, text, log, &info);

    if (!info.found || info.rq == NGX_HTTP_X402_RQ_NONE) {
        return;
    }

    if (outcome == NGX_HTTP_X402_SETTLE_RETRY) {
        if (info.rq == NGX_HTTP_X402_RQ_HELD) {
            ngx_http_x402_rq_reschedule(id, &info);
        }

        /* RQ_SENT: the owe's reply moves it */
        return;
    }

    ngx_http_x402_redis_queue_remove(id);
}


/*
 * Removals that could not be sent before, once Redis answers: at every
 * tick of the retry timer (retry.c), whether or not it claims (a zone at
 * x402_async_limit, an old worker of a reload claim nothing): an owe whose
 * reply was lost must leave Redis before its lease runs out there.
 */
void
ngx_http_x402_redis_queue_flush(void)
{
    ngx_uint_t  i;

    if (ngx_http_x402_rq_nremoves == 0 || !ngx_http_x402_rq_ready()) {
        return;
    }

    while (ngx_http_x402_rq_nremoves) {
        i = --ngx_http_x402_rq_nremoves;
        ngx_http_x402_redis_queue_remove(ngx_http_x402_rq_removes[i]);

        if (ngx_http_x402_rq_nremoves > i) {
            /* not sent: kept again */
            break;
        }
    }
}


/*
 * The retry timer (retry.c): claims up to n due entries for this host and
 * queues them in the zone; one claim in flight per worker.
 */
void
ngx_http_x402_redis_queue_poll(ngx_uint_t n)
{
    u_char      keys[NGX_HTTP_X402_RQ_KEYS], now[NGX_INT64_LEN];
    u_char      until[NGX_INT64_LEN];
    u_char      count[NGX_INT_T_LEN];
    uint64_t    ms;
    ngx_str_t   args[5], hash;

    if (ngx_http_x402_rq_claiming || n == 0 || ngx_exiting
        || !ngx_http_x402_rq_ready())
    {
        return;
    }

    /* before the claim: it must not see what this host keeps */
    ngx_http_x402_redis_queue_flush();

    ngx_http_x402_rq_keys(NULL, &args[0], &hash, keys);

    ms = ngx_http_x402_queue_now();

    args[1].data = now;
    args[1].len = ngx_sprintf(now, "%uL", ms) - now;
    args[2].data = until;
    args[2].len = ngx_sprintf(until, "%uL", ms + NGX_HTTP_X402_RQ_CLAIM)
                  - until;
    args[3].data = count;
    args[3].len = ngx_sprintf(count, "%ui", n) - count;
    args[4] = ngx_http_x402_redis_conn.conf->prefix;

    if (ngx_http_x402_rq_send(ngx_http_x402_rq_claim_reply, NULL,
                              ngx_http_x402_rq_claim_lua,
                              sizeof(ngx_http_x402_rq_claim_lua) - 1,
                              1, args, 5)
        != NGX_OK)
    {
        return;
    }

    ngx_http_x402_rq_claiming = 1;

    if (ngx_http_x402_rq_claim_timer.handler == NULL) {
        ngx_http_x402_rq_claim_timer.handler = ngx_http_x402_rq_claim_timeout;
        /* never NULL: the debug log of a timer reads ev->data's fd */
        ngx_http_x402_rq_claim_timer.data = (void *) ngx_cycle;
        ngx_http_x402_rq_claim_timer.log = ngx_cycle->log;
        ngx_http_x402_rq_claim_timer.cancelable = 1;
    }

    ngx_add_timer(&ngx_http_x402_rq_claim_timer,
                  ngx_http_x402_redis_conn.conf->timeout);
}


static void
ngx_http_x402_rq_claim_timeout(ngx_event_t *ev)
{
    ngx_http_x402_redis_log_down(NGX_LOG_ERR, "command timed out", NULL);

    /* a stalled server: dropped, the claim's reply comes back NULL */
    ngx_http_x402_redis_drop();
    ngx_http_x402_redis_schedule();
    ngx_http_x402_rq_claiming = 0;
}


/*
 * "<scope hex 16>|<expire>[+<keep>]|<validBefore>|<server>": <keep> (how
 * long the record is kept once settled) is absent from the entries of
 * earlier versions
 */
static ngx_int_t
ngx_http_x402_rq_meta(redisReply *m, ngx_http_x402_pending_t *p)
{
    off_t       off;
    u_char     *s, *last, *bar, *plus;

    s = (u_char *) m->str;
    last = s + m->len;

    if (m->type != REDIS_REPLY_STRING || m->len < 17 || s[16] != '|') {
        return NGX_ERROR;
    }

    if (ngx_http_x402_store_unhex((u_char *) &p->scope, s, 8) != NGX_OK) {
        return NGX_ERROR;
    }

    s += 17;
    bar = ngx_strlchr(s, last, '|');
    if (bar == NULL) {
        return NGX_ERROR;
    }

    plus = ngx_strlchr(s, bar, '+');

    if (plus) {
        p->keep = ngx_atotm(plus + 1, bar - plus - 1);
        if (p->keep == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    p->expire = ngx_atotm(s, (plus ? plus : bar) - s);
    if (p->expire == NGX_ERROR) {
        return NGX_ERROR;
    }

    s = bar + 1;
    bar = ngx_strlchr(s, last, '|');
    if (bar == NULL
        || (p->valid_before = ngx_atotm(s, bar - s)) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    s = bar + 1;
    off = ngx_atoof(s, last - s);
    if (off == NGX_ERROR) {
        return NGX_ERROR;
    }

    p->server = (uint64_t) off;

    return NGX_OK;
}


static void
ngx_http_x402_rq_claim_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    u_char                   id[32];
    size_t                   size, len;
    uint64_t                 now;
    ngx_int_t                n;
    ngx_uint_t               i, claimed, bad;
    redisReply              *rr, **e;
    ngx_http_x402_shm_t     *zone;
    ngx_http_x402_pending_t *p, tmp;

    rr = reply;
    zone = ngx_http_x402_store_zone;

    if (ngx_http_x402_rq_claim_timer.timer_set) {
        ngx_del_timer(&ngx_http_x402_rq_claim_timer);
    }

    ngx_http_x402_rq_claiming = 0;

    if (rr == NULL || zone == NULL) {
        return;
    }

    if (rr->type != REDIS_REPLY_ARRAY || rr->elements % 7) {
        ngx_http_x402_redis_log_down(NGX_LOG_ERR, "owed settlements claim",
                                     rr->type == REDIS_REPLY_ERROR ? rr->str
                                                                   : NULL);
        return;
    }

    now = ngx_http_x402_queue_now();
    claimed = 0;
    bad = 0;

    for (i = 0; i < rr->elements; i += 7) {
        e = &rr->element[i];

        ngx_memzero(&tmp, sizeof(ngx_http_x402_pending_t));

        if (e[0]->type != REDIS_REPLY_STRING || e[0]->len != 64
            || ngx_http_x402_store_unhex(id, (u_char *) e[0]->str, 32) != NGX_OK
            || ngx_http_x402_rq_meta(e[1], &tmp) != NGX_OK
            || e[5]->type != REDIS_REPLY_STRING
            || e[6]->type != REDIS_REPLY_STRING
            || e[5]->len == 0 || e[5]->len > NGX_HTTP_X402_ASYNC_URI_MAX
            || e[6]->len > NGX_HTTP_X402_ASYNC_BODY_MAX)
        {
            bad++;
            continue;
        }

        n = (e[2]->type == REDIS_REPLY_STRING)
            ? ngx_atoi((u_char *) e[2]->str, e[2]->len) : NGX_ERROR;

        ngx_shmtx_lock(&zone->shpool->mutex);

        p = ngx_http_x402_queue_find(zone->sh, id);

        if (p) {
            if (p->rq == NGX_HTTP_X402_RQ_NONE) {
                /*
                 * Its owe failed here, yet reached Redis (the connection
                 * died after the command ran): the spool keeps it and this
                 * host settles it, its end removes it from Redis too.
                 */
                p->rq = NGX_HTTP_X402_RQ_SENT;
            }

            if (p->lease_until > now || p->rq != NGX_HTTP_X402_RQ_HELD) {
                /*
                 * An attempt of this host is under way, or the spool has
                 * it (the owe's reply, when it comes, notes the move)
                 */
                ngx_shmtx_unlock(&zone->shpool->mutex);
                continue;
            }

        } else {
            size = offsetof(ngx_http_x402_pending_t, data) + e[5]->len
                   + e[6]->len;

            p = ngx_slab_alloc_locked(zone->shpool, size);

            if (p == NULL) {
                /* the claim runs out, someone takes it then */
                ngx_shmtx_unlock(&zone->shpool->mutex);
                continue;
            }

            ngx_memzero(p, offsetof(ngx_http_x402_pending_t, data));
            ngx_memcpy(p->id, id, 32);
            p->scope = tmp.scope;
            p->expire = tmp.expire;
            p->keep = tmp.keep;
            p->valid_before = tmp.valid_before;
            p->server = tmp.server;
            p->redis = 1;
            p->rq = NGX_HTTP_X402_RQ_HELD;
            p->attempts = (n == NGX_ERROR) ? 1 : (ngx_uint_t) n;
            p->unknown = (e[3]->type == REDIS_REPLY_STRING && e[3]->len == 1
                          && e[3]->str[0] == '1');

            if (e[4]->type == REDIS_REPLY_STRING) {
                len = ngx_min((size_t) e[4]->len, sizeof(p->reason));
                ngx_memcpy(p->reason, e[4]->str, len);
                p->reason_len = (u_char) len;
            }

            p->uri_len = e[5]->len;
            p->body_len = e[6]->len;
            ngx_memcpy(p->data, e[5]->str, e[5]->len);
            ngx_memcpy(p->data + e[5]->len, e[6]->str, e[6]->len);
            p->next_try = now;
            p->rq_lease = now + NGX_HTTP_X402_RQ_CLAIM;

            ngx_http_x402_queue_insert_locked(zone->sh, p);
            ngx_shmtx_unlock(&zone->shpool->mutex);

            claimed++;
            continue;
        }

        /* found, not in flight: ours to try now */
        p->next_try = now;
        p->lease_until = 0;
        p->rq_lease = now + NGX_HTTP_X402_RQ_CLAIM;
        ngx_http_x402_queue_reschedule_locked(zone->sh, p);

        ngx_shmtx_unlock(&zone->shpool->mutex);

        claimed++;
    }

    if (bad) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "x402: %ui owed settlement(s) in redis unreadable, "
                      "skipped", bad);
    }

    if (claimed) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "x402: %ui owed settlement(s) claimed from redis",
                      claimed);
    }
}



/*
 * ngx_http_x402_shm.c: the authorization records in a shared-memory zone.
 *
 * A hash index finds a record by payment id (one bucket, a chain of about
 * one record: a paid request looks its record up three times, and an
 * rbtree of tens of thousands of records cost a cache miss per level); a
 * red-black tree by expiry holds the same records (the soonest expiring
 * record is the tree's minimum, so the oldest expired records are found in
 * O(log n) and an unexpired one is never evicted), and is what the walks
 * over every record follow. Only memory work happens under the zone mutex;
 * logging is done after unlocking (src/README.md, layer 1). The zone's
 * init, its layout check and its migration on reuse are in
 * ngx_http_x402_zone.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_x402_store_int.h"

#include <openssl/rand.h>


/* the zone of the running configuration (set by the store's init_process) */
ngx_http_x402_shm_t  *ngx_http_x402_store_zone;


#define ngx_http_x402_enode_rec(en)                                           \
    ((ngx_http_x402_rec_t *) ((u_char *) (en)                                 \
                              - offsetof(ngx_http_x402_rec_t, enode)))


/* SipHash-1-3 (Aumasson, Bernstein) of the 32 bytes of an id */

#define ngx_http_x402_rotl(x, b)  (((x) << (b)) | ((x) >> (64 - (b))))

#define ngx_http_x402_sipround(v0, v1, v2, v3)                                \
    v0 += v1; v1 = ngx_http_x402_rotl(v1, 13); v1 ^= v0;                      \
    v0 = ngx_http_x402_rotl(v0, 32);                                          \
    v2 += v3; v3 = ngx_http_x402_rotl(v3, 16); v3 ^= v2;                      \
    v0 += v3; v3 = ngx_http_x402_rotl(v3, 21); v3 ^= v0;                      \
    v2 += v1; v1 = ngx_http_x402_rotl(v1, 17); v1 ^= v2;                      \
    v2 = ngx_http_x402_rotl(v2, 32)


static ngx_inline uint64_t
ngx_http_x402_id_hash(uint64_t *key, u_char *id)
{
    uint64_t    v0, v1, v2, v3, m, b;
    ngx_uint_t  i;

    v0 = 0x736f6d6570736575ULL ^ key[0];
    v1 = 0x646f72616e646f6dULL ^ key[1];
    v2 = 0x6c7967656e657261ULL ^ key[0];
    v3 = 0x7465646279746573ULL ^ key[1];

    for (i = 0; i < 32; i += 8) {
        /* the host's byte order: the hash is this zone's only */
        ngx_memcpy(&m, id + i, 8);
        v3 ^= m;
        ngx_http_x402_sipround(v0, v1, v2, v3);
        v0 ^= m;
    }

    b = (uint64_t) 32 << 56;
    v3 ^= b;
    ngx_http_x402_sipround(v0, v1, v2, v3);
    v0 ^= b;

    v2 ^= 0xff;
    ngx_http_x402_sipround(v0, v1, v2, v3);
    ngx_http_x402_sipround(v0, v1, v2, v3);
    ngx_http_x402_sipround(v0, v1, v2, v3);

    return v0 ^ v1 ^ v2 ^ v3;
}


#define ngx_http_x402_bucket(sh, id)                                          \
    (&(sh)->buckets[ngx_http_x402_id_hash((sh)->hash_key, id)                 \
                    & (sh)->bucket_mask])


/*
 * A new zone's index: as many buckets as the zone of size bytes could hold
 * records, rounded down to a power of two (a full zone: chains of one or
 * two records; the array costs 8 bytes a bucket, 3% of the zone), and a
 * random key (at the zone's creation, in the master).
 */
ngx_int_t
ngx_http_x402_shm_index_init(ngx_http_x402_shm_t *zone, size_t size,
    ngx_log_t *log)
{
    size_t      chunk, n, buckets;

    /* the slab allocator's chunk for a record: a power of two */
    for (chunk = 8; chunk < sizeof(ngx_http_x402_rec_t); chunk <<= 1) {
        /* void */
    }

    n = size / chunk;

    for (buckets = 1; buckets * 2 <= n; buckets <<= 1) {
        /* void */
    }

    zone->sh->buckets = ngx_slab_alloc(zone->shpool,
                                       buckets * sizeof(ngx_http_x402_rec_t *));
    if (zone->sh->buckets == NULL) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "x402 zone \"%V\" is too small for its index of %uz "
                      "buckets", &zone->shm_zone->shm.name, buckets);
        return NGX_ERROR;
    }

    ngx_memzero(zone->sh->buckets, buckets * sizeof(ngx_http_x402_rec_t *));
    zone->sh->bucket_mask = buckets - 1;

    /* OpenSSL's generator, which the module links already (CDP JWTs) */
    if (RAND_bytes((u_char *) zone->sh->hash_key,
                   sizeof(zone->sh->hash_key)) != 1)
    {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "RAND_bytes() failed: the x402 zone's index needs a "
                      "random key");
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_http_x402_rec_t *
ngx_http_x402_shm_lookup(ngx_http_x402_shm_sh_t *sh, u_char *id)
{
    ngx_http_x402_rec_t  *rec;

    for (rec = *ngx_http_x402_bucket(sh, id); rec; rec = rec->hnext) {

        if (ngx_memcmp(id, rec->id, 32) == 0) {
            return rec;
        }
    }

    return NULL;
}


/* rec->id set: at the head of its bucket's chain */
void
ngx_http_x402_shm_link_locked(ngx_http_x402_shm_sh_t *sh,
    ngx_http_x402_rec_t *rec)
{
    ngx_http_x402_rec_t  **b;

    b = ngx_http_x402_bucket(sh, rec->id);

    rec->hnext = *b;
    rec->hprev = b;

    if (*b) {
        (*b)->hprev = &rec->hnext;
    }

    *b = rec;
}


static void
ngx_http_x402_shm_free_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_rec_t *rec)
{
    if (rec->unsynced != NGX_HTTP_X402_SYNC_NONE) {
        zone->sh->unsynced--;
    }

    if (rec->refused) {
        ngx_queue_remove(&rec->rqueue);
    }

    *rec->hprev = rec->hnext;

    if (rec->hnext) {
        rec->hnext->hprev = rec->hprev;
    }

    ngx_rbtree_delete(&zone->sh->expiry, &rec->enode);
    ngx_slab_free_locked(zone->shpool, rec);

    ngx_http_x402_count(zone->sh, records, -1);
}


void
ngx_http_x402_shm_rekey_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_rec_t *rec, time_t expire)
{
    if ((time_t) rec->enode.key == expire) {
        return;
    }

    ngx_rbtree_delete(&zone->sh->expiry, &rec->enode);
    ngx_memzero(&rec->enode, sizeof(ngx_rbtree_node_t));
    rec->enode.key = (ngx_rbtree_key_t) expire;
    ngx_rbtree_insert(&zone->sh->expiry, &rec->enode);
}


/* Removes at most n records whose expiry has passed, oldest first. */
static ngx_uint_t
ngx_http_x402_shm_expire(ngx_http_x402_shm_t *zone, time_t now, ngx_uint_t n)
{
    ngx_uint_t            removed;
    ngx_rbtree_node_t    *en, *sentinel;
    ngx_http_x402_rec_t  *rec;

    removed = 0;
    sentinel = zone->sh->expiry.sentinel;

    while (n--) {

        if (zone->sh->expiry.root == sentinel) {
            break;
        }

        en = ngx_rbtree_min(zone->sh->expiry.root, sentinel);

        if ((time_t) en->key >= now) {
            break;
        }

        rec = ngx_http_x402_enode_rec(en);

        if (rec->async) {
            /*
             * Its settlement is still queued: served, not settled, so
             * nothing else refuses a replay yet. Kept for another window
             * (queued entries are bounded by x402_async_limit).
             */
            ngx_http_x402_shm_rekey_locked(zone, rec, now + rec->window);
            continue;
        }

        ngx_http_x402_shm_free_locked(zone, rec);
        removed++;
    }

    return removed;
}


/*
 * Records of payments refused before anything was served (by /verify or
 * /settle) only spare the facilitator a second refusal: when the zone is
 * full they go first, oldest first, so that refused payments can never
 * crowd out the ones being served.
 */
static ngx_uint_t
ngx_http_x402_shm_evict_refused(ngx_http_x402_shm_t *zone, ngx_uint_t n)
{
    ngx_uint_t            removed;
    ngx_queue_t          *q;
    ngx_http_x402_rec_t  *rec;

    removed = 0;

    while (n-- && !ngx_queue_empty(&zone->sh->refused)) {
        q = ngx_queue_head(&zone->sh->refused);
        rec = ngx_queue_data(q, ngx_http_x402_rec_t, rqueue);
        ngx_http_x402_shm_free_locked(zone, rec);
        removed++;
    }

    return removed;
}


ngx_uint_t
ngx_http_x402_grant_applies(ngx_uint_t state, uint64_t rec_scope,
    time_t settled_at, uint64_t scope, time_t valid_before, time_t grant,
    time_t now)
{
    time_t  end;

    if (state != NGX_HTTP_X402_REC_SETTLED || grant <= 0
        || rec_scope != scope || settled_at <= 0)
    {
        return 0;
    }

    end = settled_at + grant;

    if (valid_before < end) {
        end = valid_before;
    }

    return now < end;
}


static ngx_http_x402_rec_t *
ngx_http_x402_shm_alloc_locked(ngx_http_x402_shm_t *zone, time_t now,
    ngx_uint_t *evicted)
{
    size_t                size;
    ngx_uint_t            n;
    ngx_http_x402_rec_t  *rec;

    size = sizeof(ngx_http_x402_rec_t);

    rec = ngx_slab_alloc_locked(zone->shpool, size);

    if (rec == NULL) {
        /*
         * Records are all one size: freeing one expired record makes room.
         * A batch goes at once so that the next requests do not pay for it
         * (64 records: some microseconds under the lock).
         */
        *evicted = ngx_http_x402_shm_expire(zone, now, 64);
        ngx_http_x402_count(zone->sh, evicted, *evicted);

        if (*evicted) {
            rec = ngx_slab_alloc_locked(zone->shpool, size);
        }
    }

    if (rec == NULL) {
        n = ngx_http_x402_shm_evict_refused(zone,
                                            NGX_HTTP_X402_EVICT_BATCH);
        ngx_http_x402_count(zone->sh, refused_evicted, n);
        *evicted += n;

        if (n) {
            rec = ngx_slab_alloc_locked(zone->shpool, size);
        }
    }

    return rec;
}


static void
ngx_http_x402_shm_insert_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_rec_t *rec, ngx_http_x402_store_op_t *op, ngx_uint_t state)
{
    rec->state = (u_char) state;
    rec->async = 0;
    rec->unsynced = NGX_HTTP_X402_SYNC_NONE;
    rec->refused = 0;
    rec->text_len = 0;
    rec->settled_at = 0;
    rec->window = op->window;
    rec->scope = op->scope;
    ngx_memcpy(rec->id, op->id, 32);
    ngx_memzero(&rec->enode, sizeof(ngx_rbtree_node_t));
    rec->enode.key = (ngx_rbtree_key_t) op->expire;

    ngx_http_x402_shm_link_locked(zone->sh, rec);
    ngx_rbtree_insert(&zone->sh->expiry, &rec->enode);

    ngx_http_x402_count(zone->sh, records, 1);
}


void
ngx_http_x402_shm_reserve(ngx_http_x402_shm_t *zone,
    ngx_http_x402_store_op_t *op, time_t grant, ngx_log_t *log)
{
    time_t                now;
    ngx_uint_t            evicted, state;
    ngx_http_x402_rec_t  *rec;

    now = ngx_time();
    evicted = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /*
     * Expired records stay until the room is needed (then they go oldest
     * first, logged): a lookup treats them as absent.
     */

    rec = ngx_http_x402_shm_lookup(zone->sh, op->id);

    if (rec && !ngx_http_x402_rec_live(rec, now)) {
        ngx_http_x402_shm_free_locked(zone, rec);
        rec = NULL;
    }

    if (rec) {
        state = rec->state;

        if (ngx_http_x402_grant_applies(state, rec->scope, rec->settled_at,
                                        op->scope, op->valid_before, grant,
                                        now))
        {
            op->result = NGX_HTTP_X402_STORE_REUSED;
            op->settled_at = rec->settled_at;
            ngx_memcpy(op->text, rec->text, rec->text_len);
            op->tx.data = op->text;
            op->tx.len = rec->text_len;
            ngx_http_x402_count(zone->sh, reused, 1);

        } else {
            op->result = NGX_HTTP_X402_STORE_REPLAYED;
            ngx_http_x402_count(zone->sh, replayed, 1);

            if (state == NGX_HTTP_X402_REC_FAILED) {
                ngx_memcpy(op->text, rec->text, rec->text_len);
                op->reason.data = op->text;
                op->reason.len = rec->text_len;

            } else if (state == NGX_HTTP_X402_REC_SETTLED) {
                ngx_str_set(&op->reason, "payment already settled");

            } else {
                ngx_str_set(&op->reason, "payment already in use");
            }
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);

        op->done = 1;
        return;
    }

    rec = ngx_http_x402_shm_alloc_locked(zone, now, &evicted);

    if (rec == NULL) {
        ngx_http_x402_count(zone->sh, full, 1);
        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "x402: zone \"%V\" is full of unexpired "
                      "authorizations, payment refused",
                      &zone->shm_zone->shm.name);

        op->result = NGX_HTTP_X402_STORE_UNAVAILABLE;
        ngx_str_set(&op->reason, "authorization store full");
        op->done = 1;
        return;
    }

    ngx_http_x402_shm_insert_locked(zone, rec, op,
                                    NGX_HTTP_X402_REC_RESERVED);
    ngx_http_x402_count(zone->sh, reserved, 1);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (evicted) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "x402: zone \"%V\" full: evicted %ui expired or "
                      "refused authorizations", &zone->shm_zone->shm.name,
                      evicted);
    }

    op->result = NGX_HTTP_X402_STORE_FRESH;
    op->reserved = 1;
    op->done = 1;
}


/*
 * Sets the state of op's record, creating it when missing (a Redis record
 * mirrored into the zone), and its expiry to op->expire. Transitions out of
 * settled are refused: a settlement is never forgotten. A failed record of
 * a payment that was not served (not async) may be evicted when the zone is
 * full.
 */
void
ngx_http_x402_shm_set(ngx_http_x402_shm_t *zone, ngx_http_x402_store_op_t *op,
    ngx_uint_t state, ngx_str_t *text)
{
    size_t                len;
    time_t                now;
    ngx_uint_t            evicted;
    ngx_http_x402_rec_t  *rec;

    now = ngx_time();
    evicted = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    rec = ngx_http_x402_shm_lookup(zone->sh, op->id);

    if (rec == NULL) {
        if (op->expire < now) {
            goto done;
        }

        rec = ngx_http_x402_shm_alloc_locked(zone, now, &evicted);
        if (rec == NULL) {
            ngx_http_x402_count(zone->sh, full, 1);
            goto done;
        }

        ngx_http_x402_shm_insert_locked(zone, rec, op, state);
    }

    if (rec->state == NGX_HTTP_X402_REC_SETTLED
        && state != NGX_HTTP_X402_REC_SETTLED)
    {
        goto done;
    }

    rec->state = (u_char) state;

    if (op->expire >= now) {
        ngx_http_x402_shm_rekey_locked(zone, rec, op->expire);
    }

    if (state == NGX_HTTP_X402_REC_FAILED && !op->async && !rec->async) {
        if (!rec->refused) {
            rec->refused = 1;
            ngx_queue_insert_tail(&zone->sh->refused, &rec->rqueue);
        }

    } else if (rec->refused) {
        rec->refused = 0;
        ngx_queue_remove(&rec->rqueue);
    }

    if (op->fallback) {
        /* recorded while Redis was away: pushed there when it is back */
        if (rec->unsynced == NGX_HTTP_X402_SYNC_NONE) {
            zone->sh->unsynced++;
        }

        /* a push in flight carries the old state: push again */
        rec->unsynced = NGX_HTTP_X402_SYNC_TODO;
    }

    if (state == NGX_HTTP_X402_REC_SETTLED) {
        rec->settled_at = op->settled_at ? op->settled_at : now;
    }

    if (text) {
        len = ngx_min(text->len, NGX_HTTP_X402_REC_TEXT_LEN);
        ngx_memcpy(rec->text, text->data, len);
        rec->text_len = (u_char) len;
    }

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


void
ngx_http_x402_shm_delete(ngx_http_x402_shm_t *zone, u_char *id)
{
    ngx_http_x402_rec_t  *rec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    rec = ngx_http_x402_shm_lookup(zone->sh, id);

    /* only a reservation is given back; a settled record stays */
    if (rec && rec->state == NGX_HTTP_X402_REC_RESERVED) {
        ngx_http_x402_shm_free_locked(zone, rec);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/*
 * Up to n records recorded while Redis was unreachable (fail=open), or
 * that Redis forgot, copied into ops (id, scope, expire, settled_at, text)
 * with their states, and marked as being pushed: a record stays marked
 * until Redis has confirmed it (ngx_http_x402_shm_synced), so that a push
 * that fails is tried again and nothing is dropped. Expired ones are
 * unmarked: nobody can present them any more.
 */
ngx_uint_t
ngx_http_x402_shm_take_unsynced(ngx_http_x402_shm_t *zone,
    ngx_http_x402_store_op_t *ops, ngx_uint_t n, ngx_uint_t *states)
{
    time_t                now;
    ngx_uint_t            got;
    ngx_rbtree_node_t    *node, *sentinel;
    ngx_http_x402_rec_t  *rec;

    if (zone->sh->unsynced == 0) {
        return 0;
    }

    now = ngx_time();
    got = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* every record is in the expiry tree: the oldest go first */
    sentinel = zone->sh->expiry.sentinel;

    if (zone->sh->expiry.root == sentinel) {
        goto done;
    }

    for (node = ngx_rbtree_min(zone->sh->expiry.root, sentinel);
         node && got < n;
         node = ngx_rbtree_next(&zone->sh->expiry, node))
    {
        rec = ngx_http_x402_enode_rec(node);

        if (rec->unsynced != NGX_HTTP_X402_SYNC_TODO) {
            continue;
        }

        if (!ngx_http_x402_rec_live(rec, now)) {
            rec->unsynced = NGX_HTTP_X402_SYNC_NONE;
            zone->sh->unsynced--;
            continue;
        }

        rec->unsynced = NGX_HTTP_X402_SYNC_SENT;

        ngx_memzero(&ops[got], sizeof(ngx_http_x402_store_op_t));
        ngx_memcpy(ops[got].id, rec->id, 32);
        ops[got].scope = rec->scope;
        /* a record kept for its queued settlement: another window */
        ops[got].expire = ((time_t) rec->enode.key < now)
                          ? now + rec->window : (time_t) rec->enode.key;
        ops[got].window = rec->window;
        ops[got].settled_at = rec->settled_at;
        ngx_memcpy(ops[got].text, rec->text, rec->text_len);
        ops[got].tx.data = ops[got].text;
        ops[got].tx.len = rec->text_len;
        states[got] = rec->state;
        got++;
    }

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return got;
}


/*
 * A push has ended: confirmed by Redis (ok), or not (the record is pushed
 * again at the next sync). A record changed meanwhile is marked to push
 * again (SYNC_TODO) and stays so.
 */
void
ngx_http_x402_shm_synced(ngx_http_x402_shm_t *zone, u_char *id,
    ngx_uint_t ok)
{
    ngx_http_x402_rec_t  *rec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    rec = ngx_http_x402_shm_lookup(zone->sh, id);

    if (rec && rec->unsynced == NGX_HTTP_X402_SYNC_SENT) {
        if (ok) {
            rec->unsynced = NGX_HTTP_X402_SYNC_NONE;
            zone->sh->unsynced--;

        } else {
            rec->unsynced = NGX_HTTP_X402_SYNC_TODO;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/*
 * Redis lost its data: every live record here is pushed to it again, so
 * that the fleet learns back what this host knows. Returns how many.
 */
ngx_uint_t
ngx_http_x402_shm_unsync_all(ngx_http_x402_shm_t *zone)
{
    time_t                now;
    ngx_uint_t            n;
    ngx_rbtree_node_t    *node, *sentinel;
    ngx_http_x402_rec_t  *rec;

    now = ngx_time();
    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    sentinel = zone->sh->expiry.sentinel;

    if (zone->sh->expiry.root != sentinel) {

        for (node = ngx_rbtree_min(zone->sh->expiry.root, sentinel);
             node;
             node = ngx_rbtree_next(&zone->sh->expiry, node))
        {
            rec = ngx_http_x402_enode_rec(node);

            if (!ngx_http_x402_rec_live(rec, now)) {
                continue;
            }

            if (rec->unsynced == NGX_HTTP_X402_SYNC_NONE) {
                zone->sh->unsynced++;
            }

            rec->unsynced = NGX_HTTP_X402_SYNC_TODO;
            n++;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return n;
}


/*
 * ngx_http_x402_shm.c: the authorization records in a shared-memory zone.
 *
 * Two red-black trees over the same records: one by payment id (lookup),
 * one by expiry (the soonest expiring record is the tree's minimum, so the
 * oldest expired records are found in O(log n) and an unexpired one is never
 * evicted). Only memory work happens under the zone mutex; logging is done
 * after unlocking (src/README.md, layer 1). The zone's init, its layout
 * check and its migration on reuse are in ngx_http_x402_zone.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_x402_store_int.h"


/* the zone of the running configuration (set by the store's init_process) */
ngx_http_x402_shm_t  *ngx_http_x402_store_zone;


#define ngx_http_x402_rec_node(rec)                                           \
    ((ngx_rbtree_node_t *) ((u_char *) (rec)                                  \
                            - offsetof(ngx_rbtree_node_t, color)))

#define ngx_http_x402_enode_rec(en)                                           \
    ((ngx_http_x402_rec_t *) ((u_char *) (en)                                 \
                              - offsetof(ngx_http_x402_rec_t, enode)))


static ngx_rbtree_key_t ngx_http_x402_id_key(u_char *id);


static ngx_rbtree_key_t
ngx_http_x402_id_key(u_char *id)
{
    ngx_rbtree_key_t  key;

    /* the id is a keccak hash: any of its bytes are uniform */
    ngx_memcpy(&key, id, sizeof(ngx_rbtree_key_t));

    return key;
}


void
ngx_http_x402_shm_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t    **p;
    ngx_http_x402_rec_t   *rn, *rt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            rn = (ngx_http_x402_rec_t *) &node->color;
            rt = (ngx_http_x402_rec_t *) &temp->color;

            p = (ngx_memcmp(rn->id, rt->id, 32) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


ngx_http_x402_rec_t *
ngx_http_x402_shm_lookup(ngx_http_x402_shm_sh_t *sh, u_char *id)
{
    ngx_int_t             rc;
    ngx_rbtree_key_t      key;
    ngx_rbtree_node_t    *node, *sentinel;
    ngx_http_x402_rec_t  *rec;

    key = ngx_http_x402_id_key(id);

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        rec = (ngx_http_x402_rec_t *) &node->color;

        rc = ngx_memcmp(id, rec->id, 32);

        if (rc == 0) {
            return rec;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_x402_shm_free_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_rec_t *rec)
{
    ngx_rbtree_node_t  *node;

    node = ngx_http_x402_rec_node(rec);

    if (rec->unsynced != NGX_HTTP_X402_SYNC_NONE) {
        zone->sh->unsynced--;
    }

    if (rec->refused) {
        ngx_queue_remove(&rec->rqueue);
    }

    ngx_rbtree_delete(&zone->sh->rbtree, node);
    ngx_rbtree_delete(&zone->sh->expiry, &rec->enode);
    ngx_slab_free_locked(zone->shpool, node);

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


static ngx_rbtree_node_t *
ngx_http_x402_shm_alloc_locked(ngx_http_x402_shm_t *zone, time_t now,
    ngx_uint_t *evicted)
{
    size_t              size;
    ngx_uint_t          n;
    ngx_rbtree_node_t  *node;

    size = offsetof(ngx_rbtree_node_t, color) + sizeof(ngx_http_x402_rec_t);

    node = ngx_slab_alloc_locked(zone->shpool, size);

    if (node == NULL) {
        /*
         * Records are all one size: freeing one expired record makes room.
         * A batch goes at once so that the next requests do not pay for it
         * (64 records: some microseconds under the lock).
         */
        *evicted = ngx_http_x402_shm_expire(zone, now, 64);
        ngx_http_x402_count(zone->sh, evicted, *evicted);

        if (*evicted) {
            node = ngx_slab_alloc_locked(zone->shpool, size);
        }
    }

    if (node == NULL) {
        n = ngx_http_x402_shm_evict_refused(zone,
                                            NGX_HTTP_X402_EVICT_BATCH);
        ngx_http_x402_count(zone->sh, refused_evicted, n);
        *evicted += n;

        if (n) {
            node = ngx_slab_alloc_locked(zone->shpool, size);
        }
    }

    return node;
}


static void
ngx_http_x402_shm_insert_locked(ngx_http_x402_shm_t *zone,
    ngx_rbtree_node_t *node, ngx_http_x402_store_op_t *op, ngx_uint_t state)
{
    ngx_http_x402_rec_t  *rec;

    rec = (ngx_http_x402_rec_t *) &node->color;

    node->key = ngx_http_x402_id_key(op->id);

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

    ngx_rbtree_insert(&zone->sh->rbtree, node);
    ngx_rbtree_insert(&zone->sh->expiry, &rec->enode);

    ngx_http_x402_count(zone->sh, records, 1);
}


void
ngx_http_x402_shm_reserve(ngx_http_x402_shm_t *zone,
    ngx_http_x402_store_op_t *op, time_t grant, ngx_log_t *log)
{
    time_t                now;
    ngx_uint_t            evicted, state;
    ngx_rbtree_node_t    *node;
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

    node = ngx_http_x402_shm_alloc_locked(zone, now, &evicted);

    if (node == NULL) {
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

    ngx_http_x402_shm_insert_locked(zone, node, op,
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
    ngx_rbtree_node_t    *node;
    ngx_http_x402_rec_t  *rec;

    now = ngx_time();
    evicted = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    rec = ngx_http_x402_shm_lookup(zone->sh, op->id);

    if (rec == NULL) {
        if (op->expire < now) {
            goto done;
        }

        node = ngx_http_x402_shm_alloc_locked(zone, now, &evicted);
        if (node == NULL) {
            ngx_http_x402_count(zone->sh, full, 1);
            goto done;
        }

        ngx_http_x402_shm_insert_locked(zone, node, op, state);
        rec = (ngx_http_x402_rec_t *) &node->color;
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

    sentinel = zone->sh->rbtree.sentinel;

    if (zone->sh->rbtree.root == sentinel) {
        goto done;
    }

    for (node = ngx_rbtree_min(zone->sh->rbtree.root, sentinel);
         node && got < n;
         node = ngx_rbtree_next(&zone->sh->rbtree, node))
    {
        rec = (ngx_http_x402_rec_t *) &node->color;

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

    sentinel = zone->sh->rbtree.sentinel;

    if (zone->sh->rbtree.root != sentinel) {

        for (node = ngx_rbtree_min(zone->sh->rbtree.root, sentinel);
             node;
             node = ngx_rbtree_next(&zone->sh->rbtree, node))
        {
            rec = (ngx_http_x402_rec_t *) &node->color;

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

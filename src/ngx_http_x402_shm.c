
/*
 * ngx_http_x402_shm.c: the authorization records in a shared-memory zone.
 *
 * Two red-black trees over the same records: one by payment id (lookup),
 * one by expiry (the soonest expiring record is the tree's minimum, so the
 * oldest expired records are found in O(log n) and an unexpired one is never
 * evicted). Only memory work happens under the zone mutex; logging is done
 * after unlocking (src/README.md, layer 1).
 *
 * Over 800 lines as one concern: the zone's init, its layout check and
 * migration on reuse, and the record operations share its invariants.
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


static void ngx_http_x402_shm_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_rbtree_key_t ngx_http_x402_id_key(u_char *id);


static ngx_rbtree_key_t
ngx_http_x402_id_key(u_char *id)
{
    ngx_rbtree_key_t  key;

    /* the id is a keccak hash: any of its bytes are uniform */
    ngx_memcpy(&key, id, sizeof(ngx_rbtree_key_t));

    return key;
}


static void
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


/*
 * The zone's header says which layout wrote it. A zone made by another
 * build of the module (a reload that loads the module from another path)
 * is read only when its layout is this one.
 */
static ngx_int_t
ngx_http_x402_shm_layout_ok(ngx_http_x402_shm_sh_t *sh)
{
    return sh->layout == NGX_HTTP_X402_ZONE_LAYOUT
           && sh->sh_size == sizeof(ngx_http_x402_shm_sh_t)
           && sh->rec_size == sizeof(ngx_http_x402_rec_t)
           && sh->pending_size == sizeof(ngx_http_x402_pending_t)
           && sh->counters_size == sizeof(ngx_http_x402_store_counters_t);
}


static ngx_int_t
ngx_http_x402_shm_layout_refused(ngx_shm_zone_t *shm_zone,
    ngx_http_x402_shm_sh_t *sh)
{
    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                  "x402 zone \"%V\" was written by a module build with "
                  "another layout (%uD, this build %d): its authorizations "
                  "and queued settlements cannot be carried over; keep the "
                  "previous module, or restart nginx (not reload) to start "
                  "with an empty zone", &shm_zone->shm.name,
                  sh->layout, NGX_HTTP_X402_ZONE_LAYOUT);

    return NGX_ERROR;
}


/* unexpired, or kept while its settlement is queued */
#define ngx_http_x402_rec_live(rec, now)                                      \
    ((time_t) (rec)->enode.key >= (now) || (rec)->async)


/*
 * A reload that resizes the zone gets a new, empty one (nginx only reuses
 * a zone of the same size and module): so does one that loads the module
 * from another path. The old zone is still mapped while the new cycle
 * initializes: its live records and queued settlements are copied over,
 * so that no payment can be presented again because of a configuration
 * change. The old zone is found by name and read through its slab pool
 * (nginx's layout); its own header says whether it is ours and in which
 * layout. NGX_DONE: carried over; NGX_OK: no old zone (a start);
 * NGX_ERROR: an old zone this build cannot read.
 */
static ngx_int_t
ngx_http_x402_shm_migrate(ngx_shm_zone_t *shm_zone, ngx_http_x402_shm_t *ctx)
{
    size_t                    size;
    time_t                    now;
    ngx_uint_t                i, copied, dropped, pending, level;
    ngx_list_part_t          *part;
    ngx_shm_zone_t           *oz;
    ngx_slab_pool_t          *opool;
    ngx_rbtree_node_t        *node, *nn, *sentinel;
    ngx_http_x402_rec_t      *rec, *nrec;
    ngx_http_x402_shm_sh_t   *osh;

    if (ngx_cycle == NULL || ngx_cycle->shared_memory.part.elts == NULL) {
        return NGX_OK;
    }

    opool = NULL;
    part = (ngx_list_part_t *) &ngx_cycle->shared_memory.part;
    oz = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            oz = part->elts;
            i = 0;
        }

        if (oz[i].shm.name.len == shm_zone->shm.name.len
            && ngx_strncmp(oz[i].shm.name.data, shm_zone->shm.name.data,
                           shm_zone->shm.name.len)
               == 0
            && oz[i].shm.addr && oz[i].shm.addr != shm_zone->shm.addr)
        {
            opool = (ngx_slab_pool_t *) oz[i].shm.addr;
            break;
        }
    }

    if (opool == NULL || opool->data == NULL) {
        return NGX_OK;
    }

    osh = opool->data;

    if (oz[i].tag != shm_zone->tag
        && ((u_char *) osh < (u_char *) opool
            || (u_char *) osh + sizeof(ngx_http_x402_shm_sh_t)
               > (u_char *) opool + oz[i].shm.size
            || osh->magic != NGX_HTTP_X402_ZONE_MAGIC))
    {
        /* a zone of another module of the old configuration */
        return NGX_OK;
    }

    if (osh->magic != NGX_HTTP_X402_ZONE_MAGIC
        || !ngx_http_x402_shm_layout_ok(osh))
    {
        return ngx_http_x402_shm_layout_refused(shm_zone, osh);
    }

    now = ngx_time();
    copied = 0;
    dropped = 0;
    pending = 0;
    size = offsetof(ngx_rbtree_node_t, color) + sizeof(ngx_http_x402_rec_t);

    ngx_shmtx_lock(&opool->mutex);

    sentinel = osh->rbtree.sentinel;

    if (osh->rbtree.root != sentinel) {

        for (node = ngx_rbtree_min(osh->rbtree.root, sentinel);
             node;
             node = ngx_rbtree_next(&osh->rbtree, node))
        {
            rec = (ngx_http_x402_rec_t *) &node->color;

            if (!ngx_http_x402_rec_live(rec, now)) {
                continue;
            }

            nn = ngx_slab_alloc_locked(ctx->shpool, size);
            if (nn == NULL) {
                dropped++;
                continue;
            }

            nn->key = node->key;
            nrec = (ngx_http_x402_rec_t *) &nn->color;
            ngx_memcpy(nrec, rec, sizeof(ngx_http_x402_rec_t));
            ngx_memzero(&nrec->enode, sizeof(ngx_rbtree_node_t));
            nrec->enode.key = rec->enode.key;

            ngx_rbtree_insert(&ctx->sh->rbtree, nn);
            ngx_rbtree_insert(&ctx->sh->expiry, &nrec->enode);

            if (nrec->refused) {
                ngx_queue_insert_tail(&ctx->sh->refused, &nrec->rqueue);
            }

            if (nrec->unsynced != NGX_HTTP_X402_SYNC_NONE) {
                /* an answer for the old zone's push would be lost */
                nrec->unsynced = NGX_HTTP_X402_SYNC_TODO;
                ctx->sh->unsynced++;
            }

            ctx->sh->counters.records++;
            copied++;
        }
    }

    pending = ngx_http_x402_queue_migrate(osh, ctx, &dropped);

    /* the history goes on: counters are monotonic for the metrics */
    ctx->sh->counters.reserved = osh->counters.reserved;
    ctx->sh->counters.replayed = osh->counters.replayed;
    ctx->sh->counters.reused = osh->counters.reused;
    ctx->sh->counters.settled = osh->counters.settled;
    ctx->sh->counters.failed = osh->counters.failed;
    ctx->sh->counters.released = osh->counters.released;
    ctx->sh->counters.full = osh->counters.full;
    ctx->sh->counters.evicted = osh->counters.evicted;
    ctx->sh->counters.redis_errors = osh->counters.redis_errors;
    ctx->sh->counters.redis_fallback = osh->counters.redis_fallback;
    ctx->sh->counters.redis_refused = osh->counters.redis_refused;
    ctx->sh->counters.async_queued = osh->counters.async_queued;
    ctx->sh->counters.async_sync = osh->counters.async_sync;
    ctx->sh->counters.async_settled = osh->counters.async_settled;
    ctx->sh->counters.async_retries = osh->counters.async_retries;
    ctx->sh->counters.async_lost = osh->counters.async_lost;
    ctx->sh->counters.async_refused = osh->counters.async_refused;
    ctx->sh->counters.async_unanswered = osh->counters.async_unanswered;
    ctx->sh->counters.async_unknown = osh->counters.async_unknown;
    ctx->sh->counters.async_chain = osh->counters.async_chain;
    ctx->sh->counters.async_resumed = osh->counters.async_resumed;
    ctx->sh->counters.refused_evicted = osh->counters.refused_evicted;
    ctx->sh->counters.redis_forgot = osh->counters.redis_forgot;
    ctx->sh->counters.redis_distrusted = osh->counters.redis_distrusted;
    ctx->sh->spool_size = osh->spool_size;

    /* the old workers stop retrying; what they still change is reconciled
     * from the spool once they are gone */
    osh->superseded = 1;
    ctx->sh->reconcile_at = ngx_http_x402_queue_now()
                            + NGX_HTTP_X402_RECONCILE_FIRST;

    /* what this host knows of the fleet store goes on too */
    ctx->sh->epoch_created = osh->epoch_created;
    ngx_memcpy(ctx->sh->epoch_id, osh->epoch_id, sizeof(osh->epoch_id));
    ctx->sh->distrust_until = osh->distrust_until;

    ngx_shmtx_unlock(&opool->mutex);

    level = dropped ? NGX_LOG_ALERT : NGX_LOG_NOTICE;

    ngx_log_error(level, ngx_cycle->log, 0,
                  "x402: zone \"%V\" resized: %ui authorizations and %ui "
                  "queued settlements carried over, %ui did not fit",
                  &shm_zone->shm.name, copied, pending, dropped);

    return NGX_DONE;
}


/* the old configuration's context of this zone (a resizing reload), or
 * NULL when it is not this module's */
static ngx_http_x402_shm_t *
ngx_http_x402_shm_old_ctx(ngx_shm_zone_t *shm_zone)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *oz;

    part = (ngx_list_part_t *) &ngx_cycle->shared_memory.part;
    oz = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            oz = part->elts;
            i = 0;
        }

        if (oz[i].shm.name.len == shm_zone->shm.name.len
            && ngx_strncmp(oz[i].shm.name.data, shm_zone->shm.name.data,
                           shm_zone->shm.name.len)
               == 0)
        {
            return (oz[i].tag == shm_zone->tag) ? oz[i].data : NULL;
        }
    }
}


ngx_int_t
ngx_http_x402_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_x402_shm_t  *octx = data;

    size_t                len;
    ngx_int_t             rc;
    ngx_http_x402_shm_t  *ctx;

    ctx = shm_zone->data;

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (octx || shm_zone->shm.exists) {
        /*
         * reload with the same size and module: keep every record. Read
         * through the slab pool, not the old configuration's context.
         */
        ctx->sh = ctx->shpool->data;

        if (ctx->sh->magic != NGX_HTTP_X402_ZONE_MAGIC
            || !ngx_http_x402_shm_layout_ok(ctx->sh))
        {
            return ngx_http_x402_shm_layout_refused(shm_zone, ctx->sh);
        }

        if (octx) {
            ngx_http_x402_spool_moved(ctx, octx->spool, shm_zone->shm.log);
        }

        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_http_x402_shm_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(ctx->sh, sizeof(ngx_http_x402_shm_sh_t));

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_x402_shm_rbtree_insert_value);
    ngx_rbtree_init(&ctx->sh->expiry, &ctx->sh->expiry_sentinel,
                    ngx_rbtree_insert_value);
    ngx_http_x402_queue_init(ctx->sh);
    ngx_queue_init(&ctx->sh->refused);
    ctx->sh->version = 1;
    ctx->sh->magic = NGX_HTTP_X402_ZONE_MAGIC;
    ctx->sh->layout = NGX_HTTP_X402_ZONE_LAYOUT;
    ctx->sh->sh_size = sizeof(ngx_http_x402_shm_sh_t);
    ctx->sh->rec_size = sizeof(ngx_http_x402_rec_t);
    ctx->sh->pending_size = sizeof(ngx_http_x402_pending_t);
    ctx->sh->counters_size = sizeof(ngx_http_x402_store_counters_t);

    len = sizeof(" in x402 zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in x402 zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is reported by the store itself, with what it did */
    ctx->shpool->log_nomem = 0;

    rc = ngx_http_x402_shm_migrate(shm_zone, ctx);

    if (rc == NGX_OK) {
        /* a start: what the last run still owed is in the spool */
        ngx_http_x402_spool_replay(ctx, shm_zone->shm.log);

    } else if (rc == NGX_DONE) {
        octx = ngx_http_x402_shm_old_ctx(shm_zone);

        if (octx) {
            ngx_http_x402_spool_moved(ctx, octx->spool, shm_zone->shm.log);
        }
    }

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
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


static void
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


/*
 * ngx_http_x402_shm.c: the authorization records in a shared-memory zone.
 *
 * Two red-black trees over the same records: one by payment id (lookup),
 * one by expiry (the soonest expiring record is the tree's minimum, so the
 * oldest expired records are found in O(log n) and an unexpired one is never
 * evicted). Only memory work happens under the zone mutex; logging is done
 * after unlocking.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_x402_store_int.h"


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
 * A reload that resizes the zone gets a new, empty one (nginx only reuses
 * a zone of the same size). The old zone is still mapped while the new
 * cycle initializes: its unexpired records and queued settlements are
 * copied over, so that no payment can be presented again because of a
 * configuration change.
 */
static ngx_uint_t
ngx_http_x402_shm_migrate(ngx_shm_zone_t *shm_zone, ngx_http_x402_shm_t *ctx)
{
    size_t                    size;
    time_t                    now;
    ngx_uint_t                i, copied, dropped, pending, level;
    ngx_list_part_t          *part;
    ngx_shm_zone_t           *oz;
    ngx_rbtree_node_t        *node, *nn, *sentinel;
    ngx_http_x402_rec_t      *rec, *nrec;
    ngx_http_x402_shm_t      *octx;

    if (ngx_cycle == NULL || ngx_cycle->shared_memory.part.elts == NULL) {
        return 0;
    }

    octx = NULL;
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

        if (oz[i].tag == shm_zone->tag
            && oz[i].shm.name.len == shm_zone->shm.name.len
            && ngx_strncmp(oz[i].shm.name.data, shm_zone->shm.name.data,
                           shm_zone->shm.name.len)
               == 0
            && oz[i].data && oz[i].shm.addr != shm_zone->shm.addr)
        {
            octx = oz[i].data;
            break;
        }
    }

    if (octx == NULL || octx->sh == NULL) {
        return 0;
    }

    now = ngx_time();
    copied = 0;
    dropped = 0;
    pending = 0;
    size = offsetof(ngx_rbtree_node_t, color) + sizeof(ngx_http_x402_rec_t);

    ngx_shmtx_lock(&octx->shpool->mutex);

    sentinel = octx->sh->rbtree.sentinel;

    if (octx->sh->rbtree.root != sentinel) {

        for (node = ngx_rbtree_min(octx->sh->rbtree.root, sentinel);
             node;
             node = ngx_rbtree_next(&octx->sh->rbtree, node))
        {
            rec = (ngx_http_x402_rec_t *) &node->color;

            if ((time_t) rec->enode.key < now) {
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
            ctx->sh->counters.records++;
            copied++;
        }
    }

    pending = ngx_http_x402_queue_migrate(octx, ctx, &dropped);

    /* the history goes on: counters are monotonic for the metrics */
    ctx->sh->counters.reserved = octx->sh->counters.reserved;
    ctx->sh->counters.replayed = octx->sh->counters.replayed;
    ctx->sh->counters.reused = octx->sh->counters.reused;
    ctx->sh->counters.settled = octx->sh->counters.settled;
    ctx->sh->counters.failed = octx->sh->counters.failed;
    ctx->sh->counters.released = octx->sh->counters.released;
    ctx->sh->counters.full = octx->sh->counters.full;
    ctx->sh->counters.evicted = octx->sh->counters.evicted;
    ctx->sh->counters.redis_errors = octx->sh->counters.redis_errors;
    ctx->sh->counters.redis_fallback = octx->sh->counters.redis_fallback;
    ctx->sh->counters.redis_refused = octx->sh->counters.redis_refused;
    ctx->sh->counters.async_queued = octx->sh->counters.async_queued;
    ctx->sh->counters.async_sync = octx->sh->counters.async_sync;
    ctx->sh->counters.async_settled = octx->sh->counters.async_settled;
    ctx->sh->counters.async_retries = octx->sh->counters.async_retries;
    ctx->sh->counters.async_lost = octx->sh->counters.async_lost;
    ctx->sh->counters.async_refused = octx->sh->counters.async_refused;
    ctx->sh->counters.async_unanswered = octx->sh->counters.async_unanswered;
    ctx->sh->counters.async_unknown = octx->sh->counters.async_unknown;
    ctx->sh->counters.async_chain = octx->sh->counters.async_chain;
    ctx->sh->counters.async_resumed = octx->sh->counters.async_resumed;
    ctx->sh->spool_size = octx->sh->spool_size;

    /* the old workers stop retrying; what they still change is reconciled
     * from the spool once they are gone */
    octx->sh->superseded = 1;
    ctx->sh->reconcile_at = ngx_http_x402_queue_now()
                            + NGX_HTTP_X402_RECONCILE_FIRST;

    ngx_shmtx_unlock(&octx->shpool->mutex);

    level = dropped ? NGX_LOG_ALERT : NGX_LOG_NOTICE;

    ngx_log_error(level, ngx_cycle->log, 0,
                  "x402: zone \"%V\" resized: %ui authorizations and %ui "
                  "queued settlements carried over, %ui did not fit",
                  &shm_zone->shm.name, copied, pending, dropped);

    return 1;
}


ngx_int_t
ngx_http_x402_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_x402_shm_t  *octx = data;

    size_t                len;
    ngx_http_x402_shm_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* reload with the same size: keep every record */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
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
    ctx->sh->version = 1;

    len = sizeof(" in x402 zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in x402 zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is reported by the store itself, with what it did */
    ctx->shpool->log_nomem = 0;

    if (!ngx_http_x402_shm_migrate(shm_zone, ctx)) {
        /* a start: what the last run still owed is in the spool */
        ngx_http_x402_spool_replay(ctx, shm_zone->shm.log);
    }

    return NGX_OK;
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

    if (rec->unsynced) {
        zone->sh->unsynced--;
    }

    ngx_rbtree_delete(&zone->sh->rbtree, node);
    ngx_rbtree_delete(&zone->sh->expiry, &rec->enode);
    ngx_slab_free_locked(zone->shpool, node);

    zone->sh->counters.records--;
}


/* Removes at most n records whose expiry has passed, oldest first. */
static ngx_uint_t
ngx_http_x402_shm_expire(ngx_http_x402_shm_t *zone, time_t now, ngx_uint_t n)
{
    ngx_uint_t            removed;
    ngx_rbtree_node_t    *en, *sentinel;

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

        ngx_http_x402_shm_free_locked(zone, ngx_http_x402_enode_rec(en));
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
        zone->sh->counters.evicted += *evicted;

        if (*evicted) {
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
    rec->unsynced = 0;
    rec->text_len = 0;
    rec->settled_at = 0;
    rec->scope = op->scope;
    ngx_memcpy(rec->id, op->id, 32);
    ngx_memzero(&rec->enode, sizeof(ngx_rbtree_node_t));
    rec->enode.key = (ngx_rbtree_key_t) op->expire;

    ngx_rbtree_insert(&zone->sh->rbtree, node);
    ngx_rbtree_insert(&zone->sh->expiry, &rec->enode);

    zone->sh->counters.records++;
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

    if (rec && (time_t) rec->enode.key < now) {
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
            zone->sh->counters.reused++;

        } else {
            op->result = NGX_HTTP_X402_STORE_REPLAYED;
            zone->sh->counters.replayed++;

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
        zone->sh->counters.full++;
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
    zone->sh->counters.reserved++;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (evicted) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "x402: zone \"%V\" full: evicted %ui expired "
                      "authorizations", &zone->shm_zone->shm.name, evicted);
    }

    op->result = NGX_HTTP_X402_STORE_FRESH;
    op->reserved = 1;
    op->done = 1;
}


/*
 * Sets the state of op's record, creating it when missing (a Redis record
 * mirrored into the zone). Transitions out of settled are refused: a
 * settlement is never forgotten.
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
            zone->sh->counters.full++;
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

    if (op->fallback && !rec->unsynced) {
        /* recorded while Redis was away: pushed there when it is back */
        rec->unsynced = 1;
        zone->sh->unsynced++;
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
 * Up to n records recorded while Redis was unreachable (fail=open), copied
 * into ops (id, scope, expire, settled_at, text) with their states; their
 * flags are cleared. Expired ones are skipped: nobody can present them.
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
         node && got < n && zone->sh->unsynced;
         node = ngx_rbtree_next(&zone->sh->rbtree, node))
    {
        rec = (ngx_http_x402_rec_t *) &node->color;

        if (!rec->unsynced) {
            continue;
        }

        rec->unsynced = 0;
        zone->sh->unsynced--;

        if ((time_t) rec->enode.key < now) {
            continue;
        }

        ngx_memzero(&ops[got], sizeof(ngx_http_x402_store_op_t));
        ngx_memcpy(ops[got].id, rec->id, 32);
        ops[got].scope = rec->scope;
        ops[got].expire = (time_t) rec->enode.key;
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


/*
 * ngx_http_x402_zone.c: the store zone's init (src/README.md, layer 1).
 *
 * Above the three parts of the zone it puts together: the records
 * (ngx_http_x402_shm.c), the queue of owed settlements (queue.c) and its
 * copy on disk (spool.c). A new zone gets its header, index and trees, a
 * zone of the previous cycle is checked for its layout and carried over,
 * and a start replays the spool.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_x402_store_int.h"


/*
 * The old zone a resizing reload has superseded, until the new cycle is
 * committed (ngx_http_x402_shm_committed). In the master only.
 */
static ngx_http_x402_shm_sh_t  *ngx_http_x402_superseding;

static void ngx_http_x402_shm_supersede_undo(void *data);


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


/*
 * The running configuration's zone a new one takes over: the one of the
 * same name, or else the one of this module (x402_zone is of the http
 * block: one a configuration), so that renaming it on a reload carries
 * its records and queue over too. NULL: none (a start).
 */
static ngx_shm_zone_t *
ngx_http_x402_shm_old_zone(ngx_shm_zone_t *shm_zone)
{
    ngx_uint_t        i;
    ngx_shm_zone_t   *oz, *ours;
    ngx_list_part_t  *part;

    if (ngx_cycle == NULL || ngx_cycle->shared_memory.part.elts == NULL) {
        return NULL;
    }

    ours = NULL;
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
               == 0)
        {
            return &oz[i];
        }

        if (oz[i].tag == shm_zone->tag
            && oz[i].init == ngx_http_x402_shm_init_zone)
        {
            ours = &oz[i];
        }
    }

    return ours;
}


/*
 * A reload that resizes the zone gets a new, empty one (nginx only reuses
 * a zone of the same size and module): so does one that loads the module
 * from another path. The old zone is still mapped while the new cycle
 * initializes: its live records and queued settlements are copied over,
 * so that no payment can be presented again because of a configuration
 * change. The old zone is found by name (or, renamed, as this module's)
 * and read through its slab pool (nginx's layout); its own header says
 * whether it is ours and in which layout. NGX_DONE: carried over; NGX_OK: no old zone (a start);
 * NGX_ERROR: an old zone this build cannot read.
 */
static ngx_int_t
ngx_http_x402_shm_migrate(ngx_shm_zone_t *shm_zone, ngx_http_x402_shm_t *ctx)
{
    size_t                    size;
    time_t                    now;
    ngx_uint_t                pass, copied, dropped, pending, refused;
    ngx_pool_cleanup_t       *cln;
    ngx_shm_zone_t           *oz;
    ngx_slab_pool_t          *opool;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_http_x402_rec_t      *rec, *nrec;
    ngx_http_x402_shm_sh_t   *osh;

    if (ngx_cycle == NULL || ngx_cycle->shared_memory.part.elts == NULL) {
        return NGX_OK;
    }

    oz = ngx_http_x402_shm_old_zone(shm_zone);

    if (oz == NULL || oz->shm.addr == NULL
        || oz->shm.addr == shm_zone->shm.addr)
    {
        return NGX_OK;
    }

    opool = (ngx_slab_pool_t *) oz->shm.addr;

    if (opool->data == NULL) {
        return NGX_OK;
    }

    osh = opool->data;

    if (oz->tag != shm_zone->tag
        && ((u_char *) osh < (u_char *) opool
            || (u_char *) osh + sizeof(ngx_http_x402_shm_sh_t)
               > (u_char *) opool + oz->shm.size
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
    refused = 0;
    size = sizeof(ngx_http_x402_rec_t);

    ngx_shmtx_lock(&opool->mutex);

    /*
     * Every record is in the expiry tree; the new index has its own key.
     * First what must be carried over, then the queue, then the records of
     * payments refused before anything was served while room remains: a
     * full zone evicts those first too (they only spare the facilitator a
     * second refusal), so they cannot hold a smaller zone back.
     */
    sentinel = osh->expiry.sentinel;

    for (pass = 0; pass < 2; pass++) {

        if (pass == 1) {
            pending = ngx_http_x402_queue_migrate(osh, ctx, &dropped);
        }

        if (osh->expiry.root == sentinel) {
            continue;
        }

        for (node = ngx_rbtree_min(osh->expiry.root, sentinel);
             node;
             node = ngx_rbtree_next(&osh->expiry, node))
        {
            rec = (ngx_http_x402_rec_t *)
                      ((u_char *) node - offsetof(ngx_http_x402_rec_t, enode));

            if (!ngx_http_x402_rec_live(rec, now)
                || (ngx_uint_t) (rec->refused && !rec->async) != pass)
            {
                continue;
            }

            nrec = ngx_slab_alloc_locked(ctx->shpool, size);
            if (nrec == NULL) {
                if (pass == 0) {
                    dropped++;

                } else {
                    refused++;
                }

                continue;
            }

            ngx_memcpy(nrec, rec, sizeof(ngx_http_x402_rec_t));
            ngx_memzero(&nrec->enode, sizeof(ngx_rbtree_node_t));
            nrec->enode.key = rec->enode.key;

            ngx_http_x402_shm_link_locked(ctx->sh, nrec);
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

    if (dropped) {
        /*
         * A record left behind would let its payment be served again until
         * its validBefore, and a queued settlement left behind waits on the
         * spool alone: refuse the reload; the old zone was only read, so
         * the running configuration goes on with everything it holds.
         */
        ngx_shmtx_unlock(&opool->mutex);

        ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                      "x402 zone \"%V\" of %uz bytes cannot hold what the "
                      "running one holds: %ui of %ui live authorizations "
                      "and queued settlements did not fit; keep a size "
                      "that holds them (the running zone's, or larger), or "
                      "reload once they have expired",
                      &shm_zone->shm.name, shm_zone->shm.size, dropped,
                      copied + pending + dropped);

        return NGX_ERROR;
    }

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
    ctx->sh->counters.refused_evicted = osh->counters.refused_evicted
                                        + refused;
    ctx->sh->counters.redis_forgot = osh->counters.redis_forgot;
    ctx->sh->counters.redis_distrusted = osh->counters.redis_distrusted;
    ctx->sh->spool_size = osh->spool_size;

    /*
     * the old workers stop retrying; what they still change is reconciled
     * from the spool once they are gone. Undone if the reload fails after
     * this (a listen that cannot bind, another zone): the old workers then
     * go on, and what the old zone owes is theirs to settle.
     */
    cln = ngx_pool_cleanup_add(ctx->cycle->pool, 0);
    if (cln == NULL) {
        ngx_shmtx_unlock(&opool->mutex);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_x402_shm_supersede_undo;
    cln->data = osh;
    ngx_http_x402_superseding = osh;
    osh->superseded = 1;
    ctx->sh->reconcile_at = ngx_http_x402_queue_now()
                            + NGX_HTTP_X402_RECONCILE_FIRST;

    /* what this host knows of the fleet store goes on too */
    ctx->sh->epoch_created = osh->epoch_created;
    ngx_memcpy(ctx->sh->epoch_id, osh->epoch_id, sizeof(osh->epoch_id));
    ctx->sh->distrust_until = osh->distrust_until;

    ngx_shmtx_unlock(&opool->mutex);

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "x402: zone \"%V\" resized: %ui authorizations and %ui "
                  "queued settlements carried over",
                  &shm_zone->shm.name, copied, pending);

    if (refused) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "x402: zone \"%V\" resized: %ui records of payments "
                      "refused before anything was served did not fit and "
                      "were left behind", &shm_zone->shm.name, refused);
    }

    return NGX_DONE;
}


/*
 * The new cycle's pool is destroyed without being committed: the reload
 * failed after the zone was carried over. The old zone is the running
 * one's again (still mapped: the master frees it only on success).
 */
static void
ngx_http_x402_shm_supersede_undo(void *data)
{
    ngx_http_x402_shm_sh_t  *osh = data;

    if (ngx_http_x402_superseding != osh) {
        /* committed: this pool goes as the old cycle's, its zone unmapped */
        return;
    }

    ngx_http_x402_superseding = NULL;
    osh->superseded = 0;

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "x402: the reload failed, the running zone goes on "
                  "settling what it owes");
}


/* the new cycle is committed (init_module, in the master) */
void
ngx_http_x402_shm_committed(void)
{
    ngx_http_x402_superseding = NULL;
}


/* the old configuration's context of this zone (a resizing or renaming
 * reload), or NULL when it is not this module's */
static ngx_http_x402_shm_t *
ngx_http_x402_shm_old_ctx(ngx_shm_zone_t *shm_zone)
{
    ngx_shm_zone_t  *oz;

    oz = ngx_http_x402_shm_old_zone(shm_zone);

    return (oz && oz->tag == shm_zone->tag) ? oz->data : NULL;
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

    if (ngx_http_x402_shm_index_init(ctx, shm_zone->shm.size,
                                     shm_zone->shm.log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

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

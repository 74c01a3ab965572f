
/*
 * ngx_http_x402_queue.c: the owed async settlements in the zone.
 *
 * Two rbtrees over the same entries: by payment id (the background settle
 * reports by id) and by when a worker should look at the entry next (its
 * next attempt, the end of its lease, or its validBefore), so that finding
 * what is due costs O(log n) under the zone mutex however long the queue is
 * (x402_async_limit allows a million). Times are wall-clock milliseconds:
 * they mean the same in every worker and after a restart (the spool).
 *
 * Every change of the queue is mirrored in the spool (spool.c) while the
 * zone mutex is held, so that the file's order is the queue's order.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_x402_store_int.h"


#define ngx_http_x402_due_pending(n)                                          \
    ((ngx_http_x402_pending_t *) ((u_char *) (n)                              \
                                  - offsetof(ngx_http_x402_pending_t, due)))


static void ngx_http_x402_queue_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_http_x402_queue_free_rec_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_pending_t *p, ngx_http_x402_rec_t *rec);


uint64_t
ngx_http_x402_queue_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/*
 * A settled record's expiry when the settlement came later (an async
 * retry): kept for keep (the window, or a longer grant) from its
 * settlement, as store.c's store_expire, bounded by validBefore + slack.
 */
time_t
ngx_http_x402_queue_settled_expire(time_t settled_at, time_t keep,
    time_t valid_before)
{
    time_t  end;

    end = settled_at + keep;

    if (valid_before < end - NGX_HTTP_X402_EXPIRE_SLACK) {
        end = valid_before + NGX_HTTP_X402_EXPIRE_SLACK;
    }

    return end;
}


void
ngx_http_x402_queue_init(ngx_http_x402_shm_sh_t *sh)
{
    ngx_rbtree_init(&sh->pending, &sh->pending_sentinel,
                    ngx_http_x402_queue_insert_value);
    ngx_rbtree_init(&sh->due, &sh->due_sentinel, ngx_rbtree_insert_value);
}


static ngx_rbtree_key_t
ngx_http_x402_queue_key(u_char *id)
{
    ngx_rbtree_key_t  key;

    /* the id is a keccak hash: any of its bytes are uniform */
    ngx_memcpy(&key, id, sizeof(ngx_rbtree_key_t));

    return key;
}


static void
ngx_http_x402_queue_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t       **p;
    ngx_http_x402_pending_t  *pn, *pt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            pn = (ngx_http_x402_pending_t *) node;
            pt = (ngx_http_x402_pending_t *) temp;

            p = (ngx_memcmp(pn->id, pt->id, 32) < 0)
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


ngx_http_x402_pending_t *
ngx_http_x402_queue_find(ngx_http_x402_shm_sh_t *sh, u_char *id)
{
    ngx_int_t                 rc;
    ngx_rbtree_key_t          key;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_http_x402_pending_t  *p;

    key = ngx_http_x402_queue_key(id);
    node = sh->pending.root;
    sentinel = sh->pending.sentinel;

    while (node != sentinel) {

        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        p = (ngx_http_x402_pending_t *) node;
        rc = ngx_memcmp(id, p->id, 32);

        if (rc == 0) {
            return p;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* the key of the due tree: when a worker should look at p next */
static ngx_rbtree_key_t
ngx_http_x402_queue_due_key(ngx_http_x402_pending_t *p)
{
    uint64_t  vb;

    if (p->lease_until) {
        /* in flight: not before the lease ends, even past validBefore */
        return (ngx_rbtree_key_t) p->lease_until;
    }

    vb = (uint64_t) p->valid_before * 1000;

    return (ngx_rbtree_key_t) ngx_min(p->next_try, vb);
}


void
ngx_http_x402_queue_insert_locked(ngx_http_x402_shm_sh_t *sh,
    ngx_http_x402_pending_t *p)
{
    p->node.key = ngx_http_x402_queue_key(p->id);
    ngx_rbtree_insert(&sh->pending, &p->node);

    p->due.key = ngx_http_x402_queue_due_key(p);
    ngx_rbtree_insert(&sh->due, &p->due);

    ngx_http_x402_count(sh, pending, 1);
}


void
ngx_http_x402_queue_reschedule_locked(ngx_http_x402_shm_sh_t *sh,
    ngx_http_x402_pending_t *p)
{
    ngx_rbtree_delete(&sh->due, &p->due);
    p->due.key = ngx_http_x402_queue_due_key(p);
    ngx_rbtree_insert(&sh->due, &p->due);
}


void
ngx_http_x402_queue_free_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_pending_t *p)
{
    ngx_http_x402_queue_free_rec_locked(zone, p,
                                        ngx_http_x402_shm_lookup(zone->sh,
                                                                 p->id));
}


/* the same, with p's record (or NULL) already looked up by the caller */
static void
ngx_http_x402_queue_free_rec_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_pending_t *p, ngx_http_x402_rec_t *rec)
{
    if (rec) {
        rec->async = 0;
    }

    ngx_rbtree_delete(&zone->sh->pending, &p->node);
    ngx_rbtree_delete(&zone->sh->due, &p->due);
    ngx_slab_free_locked(zone->shpool, p);

    ngx_http_x402_count(zone->sh, pending, -1);

    if (zone->sh->counters.pending == 0) {
        ngx_http_x402_spool_emptied_locked(zone);
    }
}


/*
 * A resizing reload: the old zone is still mapped, and its old workers are
 * still settling and queueing. Copies every entry; returns how many.
 * What the old workers change after this point is in the spool, which the
 * old and the new workers share.
 */
ngx_uint_t
ngx_http_x402_queue_migrate(ngx_http_x402_shm_sh_t *from,
    ngx_http_x402_shm_t *to, ngx_uint_t *dropped)
{
    size_t                    size;
    ngx_uint_t                n;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_http_x402_pending_t  *p, *np;

    n = 0;
    sentinel = from->pending.sentinel;

    if (from->pending.root == sentinel) {
        return 0;
    }

    for (node = ngx_rbtree_min(from->pending.root, sentinel);
         node;
         node = ngx_rbtree_next(&from->pending, node))
    {
        p = (ngx_http_x402_pending_t *) node;
        size = offsetof(ngx_http_x402_pending_t, data) + p->uri_len
               + p->body_len;

        np = ngx_slab_alloc_locked(to->shpool, size);
        if (np == NULL) {
            (*dropped)++;
            continue;
        }

        ngx_memcpy(np, p, size);

        if (np->lease_until) {
            /*
             * An old worker is sending it now, and will report to the old
             * zone only: its outcome reaches us through the spool (the
             * reconcile: "done", or "free" when it failed); if it never
             * does, the lease ends, and the answer counts as lost: the
             * chain is asked first (x402_rpc). No worker of ours holds
             * it: only such a lease may a "free" end.
             */
            np->unknown = 1;
            np->lease_pid = 0;
        }

        ngx_http_x402_queue_insert_locked(to->sh, np);
        n++;
    }

    return n;
}


ngx_int_t
ngx_http_x402_shm_pending_add(ngx_http_x402_shm_t *zone,
    ngx_http_x402_store_op_t *op, ngx_uint_t limit, uint64_t server,
    ngx_str_t *uri, ngx_str_t *body, ngx_log_t *log)
{
    size_t                    size;
    ngx_err_t                 err;
    ngx_http_x402_rec_t      *rec;
    ngx_http_x402_pending_t  *p;

    size = offsetof(ngx_http_x402_pending_t, data) + uri->len + body->len;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* the bound on unsettled credit: beyond it, settle synchronously */
    if (zone->sh->counters.pending >= limit) {
        ngx_http_x402_count(zone->sh, async_sync, 1);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    p = ngx_slab_alloc_locked(zone->shpool, size);

    if (p == NULL) {
        ngx_http_x402_count(zone->sh, async_sync, 1);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_memzero(p, offsetof(ngx_http_x402_pending_t, data));
    ngx_memcpy(p->id, op->id, 32);
    p->scope = op->scope;
    p->expire = op->expire;
    p->keep = ngx_max(op->window, op->grant);
    p->redis = (op->backend == NGX_HTTP_X402_BACKEND_REDIS);
    p->valid_before = op->valid_before;
    p->lease_until = ngx_http_x402_queue_now() + NGX_HTTP_X402_ASYNC_LEASE;
    p->lease_pid = ngx_pid;
    p->next_try = p->lease_until;
    p->attempts = 1;
    p->server = server;
    p->uri_len = uri->len;
    p->body_len = body->len;
    ngx_memcpy(p->data, uri->data, uri->len);
    ngx_memcpy(p->data + uri->len, body->data, body->len);

    /*
     * Durable before anything is served: an append the way nginx writes
     * its logs (no fsync). If the disk refuses, the payment is settled
     * synchronously instead: credit is given only for what is written.
     */
    if (ngx_http_x402_spool_owe_locked(zone, p) != NGX_OK) {
        err = ngx_errno;
        ngx_slab_free_locked(zone->shpool, p);
        ngx_http_x402_count(zone->sh, async_sync, 1);
        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_log_error(NGX_LOG_ALERT, log, err,
                      "x402: could not write to the spool \"%V\", the "
                      "payment settles synchronously", &zone->spool->name);
        return NGX_DECLINED;
    }

    ngx_http_x402_queue_insert_locked(zone->sh, p);

    rec = ngx_http_x402_shm_lookup(zone->sh, op->id);
    if (rec) {
        rec->async = 1;
    }

    ngx_http_x402_count(zone->sh, async_queued, 1);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


static ngx_msec_t
ngx_http_x402_queue_backoff(ngx_uint_t attempts)
{
    ngx_msec_t  delay;

    delay = NGX_HTTP_X402_ASYNC_FIRST;

    while (attempts-- > 1 && delay < NGX_HTTP_X402_ASYNC_BACKOFF) {
        delay *= 2;
    }

    return ngx_min(delay, NGX_HTTP_X402_ASYNC_BACKOFF);
}


/*
 * An attempt ended: settled (the entry goes, the record says settled),
 * refused by the facilitator (final: the entry goes, the record says
 * failed, the /settle body is logged for whoever settles it by hand), or
 * its answer was lost (the entry stays, with a backoff; every worker may
 * pick it up). A lost answer may have moved the money, so such an entry is
 * "unknown" until the chain or a later answer says otherwise.
 */
void
ngx_http_x402_shm_pending_done(ngx_http_x402_shm_t *zone, u_char *id,
    ngx_uint_t outcome, ngx_str_t *text, ngx_log_t *log)
{
    ngx_http_x402_shm_pending_end(zone, id, outcome, text, log, NULL);
}


/*
 * The same, saying what the Redis queue must learn (info): an entry kept
 * in Redis (RQ_HELD) leaves this zone at every end of an attempt: lost
 * answers too, which Redis reschedules for any member of the fleet; the
 * spool already says it left.
 */
void
ngx_http_x402_shm_pending_end(ngx_http_x402_shm_t *zone, u_char *id,
    ngx_uint_t outcome, ngx_str_t *text, ngx_log_t *log,
    ngx_http_x402_pending_info_t *info)
{
    u_char                    hex[64], *copy;
    size_t                    len;
    ngx_str_t                 uri, body;
    time_t                    keep, valid_before;
    ngx_uint_t                attempts, found, spooled, unknown, held;
    ngx_msec_t                delay;
    ngx_http_x402_rec_t      *rec;
    ngx_http_x402_pending_t  *p;

    delay = 0;
    keep = 0;
    valid_before = 0;
    attempts = 0;
    found = 0;
    spooled = 1;
    unknown = 0;
    held = 0;
    copy = NULL;
    ngx_str_null(&uri);
    ngx_str_null(&body);

    ngx_shmtx_lock(&zone->shpool->mutex);

    p = ngx_http_x402_queue_find(zone->sh, id);

    /* the record, looked up once (a walk of a tree of every payment) */
    rec = (outcome == NGX_HTTP_X402_SETTLE_OK
           || outcome == NGX_HTTP_X402_SETTLE_CHAIN
           || outcome == NGX_HTTP_X402_SETTLE_REFUSED)
          ? ngx_http_x402_shm_lookup(zone->sh, id) : NULL;

    if (p) {
        found = 1;
        attempts = p->attempts;
        held = (p->rq == NGX_HTTP_X402_RQ_HELD);
        keep = p->keep;
        valid_before = p->valid_before;

        if (info) {
            info->found = 1;
            info->rq = p->rq;
            info->valid_before = p->valid_before;
        }

        if (outcome == NGX_HTTP_X402_SETTLE_OK
            || outcome == NGX_HTTP_X402_SETTLE_CHAIN)
        {
            spooled = held || (ngx_http_x402_spool_done_locked(zone, id,
                                   outcome == NGX_HTTP_X402_SETTLE_OK
                                   ? "settled" : "chain")
                       == NGX_OK);
            ngx_http_x402_queue_free_rec_locked(zone, p, rec);

            if (outcome == NGX_HTTP_X402_SETTLE_OK) {
                ngx_http_x402_count(zone->sh, async_settled, 1);

            } else {
                ngx_http_x402_count(zone->sh, async_chain, 1);
            }

        } else if (outcome == NGX_HTTP_X402_SETTLE_GIVEN_UP
                   || outcome == NGX_HTTP_X402_SETTLE_UNKNOWN)
        {
            spooled = held || (ngx_http_x402_spool_done_locked(zone, id,
                                   outcome == NGX_HTTP_X402_SETTLE_UNKNOWN
                                   ? "unknown" : "given-up")
                       == NGX_OK);
            ngx_http_x402_queue_free_locked(zone, p);

            if (outcome == NGX_HTTP_X402_SETTLE_UNKNOWN) {
                ngx_http_x402_count(zone->sh, async_unknown, 1);

            } else {
                ngx_http_x402_count(zone->sh, async_lost, 1);
            }

        } else if (outcome == NGX_HTTP_X402_SETTLE_REFUSED) {
            /* final: logged below with its body, for settling by hand */
            unknown = p->unknown;
            copy = ngx_alloc(p->uri_len + p->body_len, log);

            if (copy) {
                ngx_memcpy(copy, p->data, p->uri_len + p->body_len);
                uri.data = copy;
                uri.len = p->uri_len;
                body.data = copy + p->uri_len;
                body.len = p->body_len;
            }

            spooled = held
                      || (ngx_http_x402_spool_done_locked(zone, id, "refused")
                          == NGX_OK);
            ngx_http_x402_queue_free_rec_locked(zone, p, rec);
            ngx_http_x402_count(zone->sh, async_refused, 1);

        } else {
            p->unknown = 1;
            ngx_http_x402_count(zone->sh, async_unanswered, 1);

            delay = ngx_http_x402_queue_backoff(p->attempts);
            p->next_try = ngx_http_x402_queue_now() + delay;
            p->lease_until = 0;

            if (text) {
                len = ngx_min(text->len, sizeof(p->reason));
                ngx_memcpy(p->reason, text->data, len);
                p->reason_len = (u_char) len;
            }

            if (info) {
                info->attempts = p->attempts;
                info->unknown = p->unknown;
                info->next_try = p->next_try;
                info->reason_len = p->reason_len;
                ngx_memcpy(info->reason, p->reason, p->reason_len);
            }

            if (held) {
                /* Redis has it, rescheduled there: any member may retry */
                ngx_http_x402_queue_free_locked(zone, p);

            } else {
                ngx_http_x402_queue_reschedule_locked(zone->sh, p);
            }

            if (!held && zone->sh->superseded) {
                /* the new zone has it leased to us: give it back */
                (void) ngx_http_x402_spool_free_locked(zone, id, p->unknown);
            }
        }
    }

    if (outcome == NGX_HTTP_X402_SETTLE_OK
        || outcome == NGX_HTTP_X402_SETTLE_CHAIN)
    {
        if (rec && rec->state != NGX_HTTP_X402_REC_SETTLED) {
            rec->state = NGX_HTTP_X402_REC_SETTLED;
            rec->settled_at = ngx_time();

            if (keep) {
                /* kept from its settlement, as a sync one: a grant holds */
                ngx_http_x402_shm_rekey_locked(zone, rec,
                    ngx_max((time_t) rec->enode.key,
                            ngx_http_x402_queue_settled_expire(
                                rec->settled_at, keep, valid_before)));
            }

            if (text) {
                len = ngx_min(text->len, NGX_HTTP_X402_REC_TEXT_LEN);
                ngx_memcpy(rec->text, text->data, len);
                rec->text_len = (u_char) len;
            }

            ngx_http_x402_count(zone->sh, settled, 1);
        }
    }

    if (outcome == NGX_HTTP_X402_SETTLE_REFUSED) {
        if (rec && rec->state != NGX_HTTP_X402_REC_SETTLED) {
            /* served on credit: kept (not evictable) until it expires */
            rec->state = NGX_HTTP_X402_REC_FAILED;

            if (text) {
                len = ngx_min(text->len, NGX_HTTP_X402_REC_TEXT_LEN);
                ngx_memcpy(rec->text, text->data, len);
                rec->text_len = (u_char) len;
            }
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    (void) ngx_hex_dump(hex, id, 32);

    if (!found) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "x402: async settlement of payment %*s finished "
                      "but was no longer queued", (size_t) 64, hex);
        return;
    }

    if (!spooled) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "x402: could not write to the spool \"%V\" that "
                      "payment %*s is %s: a restart will try it again",
                      &zone->spool->name, (size_t) 64, hex,
                      outcome == NGX_HTTP_X402_SETTLE_REFUSED
                      ? "refused" : "settled");
    }

    if (outcome == NGX_HTTP_X402_SETTLE_OK
        || outcome == NGX_HTTP_X402_SETTLE_CHAIN)
    {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "x402: async settlement of payment %*s settled "
                      "after %ui attempt(s): %V", (size_t) 64, hex, attempts,
                      text);

    } else if (outcome == NGX_HTTP_X402_SETTLE_GIVEN_UP
               || outcome == NGX_HTTP_X402_SETTLE_UNKNOWN)
    {
        /* the caller logged it with its body */

    } else if (outcome == NGX_HTTP_X402_SETTLE_REFUSED) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "x402: async settlement of payment %*s refused by "
                      "the facilitator (attempt %ui: %V): final, not "
                      "retried%s; to settle it by hand, the settle request "
                      "follows", (size_t) 64, hex, attempts, text,
                      unknown ? " (an earlier answer was lost: it may have "
                                "settled then)"
                              : "");

        if (copy) {
            ngx_http_x402_retry_log_body(log, hex, &uri, &body);
            ngx_free(copy);
        }

    } else {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "x402: async settlement of payment %*s failed "
                      "(attempt %ui: %V), answer lost, retrying in %Mms",
                      (size_t) 64, hex, attempts, text, delay);
    }
}


/* the /settle body of a payment, whole, in pieces that fit a log line */
void
ngx_http_x402_retry_log_body(ngx_log_t *log, u_char *hex, ngx_str_t *uri,
    ngx_str_t *body)
{
    u_char      *b;
    size_t       len, part;
    ngx_uint_t   i, n;

    b = body->data;
    len = body->len;
    n = (len + 1023) / 1024;

    for (i = 1; i <= n; i++) {
        part = ngx_min(len, 1024);
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "x402: payment %*s: POST %V with the body [%ui/%ui]: "
                      "%*s", (size_t) 64, hex, uri, i, n, part, b);
        b += part;
        len -= part;
    }
}

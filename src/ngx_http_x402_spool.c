
/*
 * ngx_http_x402_spool.c: the owed async settlements on disk (x402_spool).
 *
 * The queue in the zone dies with the last process that maps it; the spool
 * does not. It is written the way nginx writes its logs: the master opens
 * it (O_APPEND, inherited by the workers, reopened by USR1), every change is
 * one small append, nobody waits for a flush. One record a line:
 *
 *     owe <id hex> <validBefore> <expire>[+<keep>] <scope> <server> \
 *         <redis> <settle uri, base64> <settle body>
 *     done <id hex> <settled|refused|given-up|unknown|chain>
 *     free <id hex> <0|1>
 *
 * (<settle body>: the JSON itself, to the end of the line, when it starts
 * with "{" and holds no newline, which is what the module sends; base64
 * otherwise, as every body was in older spools, which replay the same.
 * <server>: background.c's key of the server block the payment was made
 * in, its first server_name and index; a bare index in older spools.
 * <keep>: how long its record is kept once settled (the server's window,
 * or a longer grant); older spools have none: then the reserve's expire.
 * "free": an old worker of a resizing reload failed an attempt the new
 * zone holds leased to it; 1 if the answer was lost.)
 *
 * Appends happen under the zone mutex, so the file's order is the queue's
 * order. When the queue empties and the file has grown past
 * NGX_HTTP_X402_SPOOL_COMPACT, it is truncated. A start with a fresh zone
 * replays it: every "owe" without its "done" is queued again, and the file
 * is rewritten with just those (compaction). A line cut short by a crash is
 * logged whole and skipped.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_x402_store_int.h"


#define NGX_HTTP_X402_SPOOL_LINE                                              \
    (sizeof("owe  ") + 64 + 6 * NGX_INT64_LEN + 9                             \
     + ngx_base64_encoded_length(NGX_HTTP_X402_ASYNC_URI_MAX)                 \
     + ngx_base64_encoded_length(NGX_HTTP_X402_ASYNC_BODY_MAX))

/* a body written as it is: JSON of one line (a base64 body never has "{") */
#define ngx_http_x402_spool_raw(data, len)                                    \
    ((len) && (data)[0] == '{' && memchr(data, '\n', len) == NULL)


static u_char  ngx_http_x402_spool_buf[NGX_HTTP_X402_SPOOL_LINE];


static ngx_int_t
ngx_http_x402_spool_write(ngx_http_x402_shm_t *zone, u_char *buf, size_t len)
{
    ssize_t          n;
    ngx_err_t        err;
    ngx_file_info_t  fi;

    n = ngx_write_fd(zone->spool->fd, buf, len);

    if (n == (ssize_t) len) {
        zone->sh->spool_size += len;
        return NGX_OK;
    }

    /* a short write sets no errno: the disk is full */
    err = (n > 0) ? NGX_ENOSPC : ngx_errno;

    if (n > 0) {
        /*
         * A full disk cut the line. A newline would not fit either, and
         * the next append once there is room again would continue this
         * piece: that line would be taken for malformed at the next start
         * and its settlement not resumed. The piece is taken back (the
         * zone's mutex is held: nobody appended since).
         */
        if (ngx_fd_info(zone->spool->fd, &fi) != NGX_FILE_ERROR
            && ngx_file_size(&fi) >= n
            && ftruncate(zone->spool->fd, ngx_file_size(&fi) - n) == 0)
        {
            /* void */

        } else {
            zone->sh->spool_size += n;

            if (ngx_write_fd(zone->spool->fd, "\n", 1) == 1) {
                zone->sh->spool_size++;
            }
        }
    }

    ngx_set_errno(err);

    return NGX_ERROR;
}


static u_char *
ngx_http_x402_spool_b64(u_char *p, u_char *data, size_t len)
{
    ngx_str_t  src, dst;

    src.data = data;
    src.len = len;
    dst.data = p;

    ngx_encode_base64(&dst, &src);

    return p + dst.len;
}


ngx_int_t
ngx_http_x402_spool_owe_locked(ngx_http_x402_shm_t *zone,
    ngx_http_x402_pending_t *p)
{
    u_char  *b;

    if (zone->spool == NULL) {
        return NGX_OK;
    }

    b = ngx_http_x402_spool_buf;
    b = ngx_cpymem(b, "owe ", 4);
    b = ngx_hex_dump(b, p->id, 32);
    b = ngx_sprintf(b, " %T %T+%T %uL %uL %ui ", p->valid_before, p->expire,
                    p->keep, p->scope, p->server, p->redis);
    b = ngx_http_x402_spool_b64(b, p->data, p->uri_len);
    *b++ = ' ';

    /* the JSON as it is: no base64 work on the request path, a shorter
     * append (the body's length is bounded by ASYNC_BODY_MAX either way) */
    if (ngx_http_x402_spool_raw(p->data + p->uri_len, p->body_len)) {
        b = ngx_cpymem(b, p->data + p->uri_len, p->body_len);

    } else {
        b = ngx_http_x402_spool_b64(b, p->data + p->uri_len, p->body_len);
    }

    *b++ = '\n';

    return ngx_http_x402_spool_write(zone, ngx_http_x402_spool_buf,
                                     b - ngx_http_x402_spool_buf);
}


ngx_int_t
ngx_http_x402_spool_done_locked(ngx_http_x402_shm_t *zone, u_char *id,
    const char *outcome)
{
    u_char  *b, line[sizeof("done  \n") + 64 + 16];

    if (zone->spool == NULL) {
        return NGX_OK;
    }

    b = ngx_cpymem(line, "done ", 5);
    b = ngx_hex_dump(b, id, 32);
    b = ngx_sprintf(b, " %s\n", outcome);

    return ngx_http_x402_spool_write(zone, line, b - line);
}


ngx_int_t
ngx_http_x402_spool_free_locked(ngx_http_x402_shm_t *zone, u_char *id,
    ngx_uint_t unknown)
{
    u_char  *b, line[sizeof("free  1\n") + 64];

    if (zone->spool == NULL) {
        return NGX_OK;
    }

    b = ngx_cpymem(line, "free ", 5);
    b = ngx_hex_dump(b, id, 32);
    b = ngx_sprintf(b, " %ui\n", unknown ? 1 : 0);

    return ngx_http_x402_spool_write(zone, line, b - line);
}


void
ngx_http_x402_spool_emptied_locked(ngx_http_x402_shm_t *zone)
{
    ngx_file_info_t  fi;

    if (zone->spool == NULL
        || zone->sh->spool_size < NGX_HTTP_X402_SPOOL_COMPACT
        || zone->sh->superseded)
    {
        /* a zone left by a resizing reload: the new one owes its entries */
        return;
    }

    /*
     * Nothing is owed in this zone: what the file holds is all done,
     * unless another zone wrote to it too (the old workers of a resizing
     * reload, the other master of a binary upgrade): then its size is not
     * what this zone wrote, and it stays until the next start compacts it.
     */
    if (ngx_fd_info(zone->spool->fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) != zone->sh->spool_size)
    {
        return;
    }

    if (ftruncate(zone->spool->fd, 0) == 0) {
        zone->sh->spool_size = 0;
    }
}


/* ---- replay at start ---- */

/*
 * Splits line into at most n space-separated fields, the last of them the
 * rest of the line (an owed settlement's body: JSON may hold spaces).
 */
static ngx_uint_t
ngx_http_x402_spool_fields(u_char *p, u_char *last, ngx_str_t *f, ngx_uint_t n)
{
    ngx_uint_t  i;
    u_char     *s;

    for (i = 0; i < n && p < last; i++) {
        s = p;

        if (i == n - 1) {
            p = last;
        }

        while (p < last && *p != ' ') {
            p++;
        }

        f[i].data = s;
        f[i].len = p - s;

        if (p < last) {
            p++;
        }
    }

    return (p == last) ? i : n + 1;
}


/* one line; NGX_DECLINED: malformed */
/* counts[0]: entries queued, counts[1]: entries found done and dropped */
static ngx_int_t
ngx_http_x402_spool_line(ngx_http_x402_shm_t *zone, u_char *line, size_t len,
    ngx_uint_t start, ngx_uint_t *counts)
{
    size_t                    size;
    off_t                     off;
    ngx_int_t                 n;
    ngx_str_t                 f[9], uri, body;
    ngx_uint_t                nf, raw;
    ngx_http_x402_rec_t      *rec;
    ngx_http_x402_pending_t  *p;
    ngx_http_x402_store_op_t  op;
    u_char                    id[32], *plus;

    nf = ngx_http_x402_spool_fields(line, line + len, f, 9);

    if (nf == 3 && f[0].len == 4 && ngx_strncmp(f[0].data, "done", 4) == 0
        && f[1].len == 64)
    {
        if (ngx_http_x402_store_unhex(id, f[1].data, 32) != NGX_OK) {
            return NGX_DECLINED;
        }

        p = ngx_http_x402_queue_find(zone->sh, id);

        /*
         * "redis": Redis holds it. Not one this zone holds for Redis, bar
         * a copy leased to an old worker (lease_pid 0): its own owe, read
         * again by a later reconcile pass, or a claim, is under way here,
         * and its end tells Redis.
         */
        if (p && !(p->rq == NGX_HTTP_X402_RQ_HELD
                   && !(p->lease_until && p->lease_pid == 0)
                   && f[2].len == 5
                   && ngx_strncmp(f[2].data, "redis", 5) == 0))
        {
            ngx_http_x402_queue_free_locked(zone, p);
            counts[1]++;
        }

        /* settled or refused elsewhere (an old worker): the record too */
        rec = ngx_http_x402_shm_lookup(zone->sh, id);

        if (rec && rec->state == NGX_HTTP_X402_REC_RESERVED) {

            if ((f[2].len == 7 && ngx_strncmp(f[2].data, "settled", 7) == 0)
                || (f[2].len == 5 && ngx_strncmp(f[2].data, "chain", 5) == 0))
            {
                rec->state = NGX_HTTP_X402_REC_SETTLED;
                rec->settled_at = ngx_time();

            } else if (f[2].len == 7
                       && ngx_strncmp(f[2].data, "refused", 7) == 0)
            {
                rec->state = NGX_HTTP_X402_REC_FAILED;
            }
        }

        return NGX_OK;
    }

    if (nf == 3 && f[0].len == 4 && ngx_strncmp(f[0].data, "free", 4) == 0
        && f[1].len == 64)
    {
        if (ngx_http_x402_store_unhex(id, f[1].data, 32) != NGX_OK) {
            return NGX_DECLINED;
        }

        p = ngx_http_x402_queue_find(zone->sh, id);

        /*
         * Only a lease held for an old worker (lease_pid 0): every pass
         * reads the whole file again, and a "free" read before may meet
         * the entry leased since to one of our workers, its /settle in
         * flight: retried now, it would be sent a second time.
         */
        if (p && p->lease_until && p->lease_pid == 0) {
            /* the old worker's attempt ended: ours to retry now */
            p->lease_until = 0;
            p->next_try = ngx_http_x402_queue_now();
            p->unknown |= (f[2].len == 1 && f[2].data[0] == '1');
            ngx_http_x402_queue_reschedule_locked(zone->sh, p);
        }

        return NGX_OK;
    }

    if (nf != 9 || f[0].len != 3 || ngx_strncmp(f[0].data, "owe", 3) != 0
        || f[1].len != 64
        || ngx_http_x402_store_unhex(id, f[1].data, 32) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (ngx_http_x402_queue_find(zone->sh, id)) {
        return NGX_OK;
    }

    uri.len = ngx_base64_decoded_length(f[7].len);
    raw = ngx_http_x402_spool_raw(f[8].data, f[8].len);
    body.len = raw ? f[8].len : ngx_base64_decoded_length(f[8].len);

    /* the estimates count padding as bytes: up to 2 more than decoded */
    if (uri.len > NGX_HTTP_X402_ASYNC_URI_MAX + 2
        || body.len > NGX_HTTP_X402_ASYNC_BODY_MAX + 2)
    {
        return NGX_DECLINED;
    }

    size = offsetof(ngx_http_x402_pending_t, data) + uri.len + body.len;

    p = ngx_slab_alloc_locked(zone->shpool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(p, offsetof(ngx_http_x402_pending_t, data));
    ngx_memcpy(p->id, id, 32);

    uri.data = p->data;
    body.data = p->data + uri.len;

    if (ngx_decode_base64(&uri, &f[7]) != NGX_OK) {
        goto malformed;
    }

    body.data = p->data + uri.len;

    if (raw) {
        ngx_memcpy(body.data, f[8].data, f[8].len);
        body.len = f[8].len;

    } else if (ngx_decode_base64(&body, &f[8]) != NGX_OK) {
        goto malformed;
    }

    if (uri.len > NGX_HTTP_X402_ASYNC_URI_MAX
        || body.len > NGX_HTTP_X402_ASYNC_BODY_MAX)
    {
        goto malformed;
    }

    p->uri_len = uri.len;
    p->body_len = body.len;

    n = ngx_atotm(f[2].data, f[2].len);
    p->valid_before = n;
    if (n == NGX_ERROR) {
        goto malformed;
    }

    plus = ngx_strlchr(f[3].data, f[3].data + f[3].len, '+');

    if (plus) {
        n = ngx_atotm(plus + 1, f[3].data + f[3].len - plus - 1);
        p->keep = n;
        if (n == NGX_ERROR) {
            goto malformed;
        }

        f[3].len = plus - f[3].data;
    }

    n = ngx_atotm(f[3].data, f[3].len);
    p->expire = n;
    if (n == NGX_ERROR) {
        goto malformed;
    }

    /* scope: uint64 */
    p->scope = 0;
    for (n = 0; n < (ngx_int_t) f[4].len; n++) {
        if (f[4].data[n] < '0' || f[4].data[n] > '9') {
            goto malformed;
        }
        p->scope = p->scope * 10 + (f[4].data[n] - '0');
    }

    off = ngx_atoof(f[5].data, f[5].len);
    if (off == NGX_ERROR) {
        goto malformed;
    }
    p->server = (uint64_t) off;

    n = ngx_atoi(f[6].data, f[6].len);
    if (n == NGX_ERROR) {
        goto malformed;
    }
    p->redis = n ? 1 : 0;

    /*
     * Due now. Whether the process that wrote it had a /settle in flight
     * when it stopped is not known: its answer may have been lost.
     */
    p->attempts = 1;
    p->unknown = 1;
    p->next_try = ngx_http_x402_queue_now();

    if (!start) {
        /*
         * Reconciling after a resizing reload: an old worker queued it
         * after the zone was copied, and its first attempt may be under
         * way (its "done" or "free" comes later). Leased to it as in the
         * old zone: retried here once that lease runs out, or at once
         * when a "free" says its attempt failed; a "done" ends it.
         */
        p->next_try += NGX_HTTP_X402_ASYNC_LEASE;
        p->lease_until = p->next_try;
        p->lease_pid = 0;
    }
    ngx_str_set(&uri, "resumed from the spool");
    p->reason_len = (u_char) uri.len;
    ngx_memcpy(p->reason, uri.data, uri.len);

    ngx_http_x402_queue_insert_locked(zone->sh, p);
    counts[0]++;

    /* the record too: the payment is not served again meanwhile */
    ngx_memzero(&op, sizeof(ngx_http_x402_store_op_t));
    ngx_memcpy(op.id, id, 32);
    op.scope = p->scope;
    op.valid_before = p->valid_before;
    op.expire = p->expire;
    /* the server's window it was reserved with is not spooled: what was
     * left of it, at least the margin */
    op.window = ngx_max(p->expire - ngx_time(),
                        (time_t) NGX_HTTP_X402_WINDOW_MARGIN);

    ngx_shmtx_unlock(&zone->shpool->mutex);
    ngx_http_x402_shm_reserve(zone, &op, 0, ngx_cycle->log);
    ngx_shmtx_lock(&zone->shpool->mutex);

    if (op.result == NGX_HTTP_X402_STORE_FRESH) {
        /* not a reservation of a request: the counter is of those */
        ngx_http_x402_count(zone->sh, reserved, -1);
    }

    rec = ngx_http_x402_shm_lookup(zone->sh, id);
    if (rec) {
        rec->async = 1;
    }

    return NGX_OK;

malformed:

    ngx_slab_free_locked(zone->shpool, p);

    return NGX_DECLINED;
}


static void
ngx_http_x402_spool_malformed(ngx_log_t *log, ngx_str_t *name, off_t offset,
    u_char *line, size_t len)
{
    size_t  part;

    /* all of it, in pieces that fit an error log line */
    do {
        part = ngx_min(len, 1024);
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "x402: spool \"%V\": malformed record at offset %O "
                      "skipped, it may be a payment owed (settle it by "
                      "hand): \"%*s\"", name, offset, part, line);
        line += part;
        len -= part;
        offset += part;
    } while (len);
}


/* rewrites the spool with what is still owed */
static void
ngx_http_x402_spool_compact(ngx_http_x402_shm_t *zone, ngx_log_t *log)
{
    u_char                   *tmp;
    ngx_fd_t                  fd, old;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_http_x402_pending_t  *p;

    tmp = ngx_alloc(zone->spool->name.len + sizeof(".compact"), log);
    if (tmp == NULL) {
        return;
    }

    ngx_sprintf(tmp, "%V.compact%Z", &zone->spool->name);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed, the spool is not "
                      "compacted", tmp);
        ngx_free(tmp);
        return;
    }

    old = zone->spool->fd;
    zone->spool->fd = fd;
    zone->sh->spool_size = 0;

    sentinel = zone->sh->pending.sentinel;

    if (zone->sh->pending.root != sentinel) {
        for (node = ngx_rbtree_min(zone->sh->pending.root, sentinel);
             node;
             node = ngx_rbtree_next(&zone->sh->pending, node))
        {
            p = (ngx_http_x402_pending_t *) node;

            if (ngx_http_x402_spool_owe_locked(zone, p) != NGX_OK) {
                goto failed;
            }
        }
    }

    if (ngx_rename_file(tmp, zone->spool->name.data) == NGX_FILE_ERROR) {
        goto failed;
    }

    /* the appends go on at the new file: reopened in append mode */
    (void) ngx_close_file(fd);

    fd = ngx_open_file(zone->spool->name.data, NGX_FILE_APPEND,
                       NGX_FILE_CREATE_OR_OPEN, NGX_FILE_DEFAULT_ACCESS);
    if (fd == NGX_INVALID_FILE) {
        /* the old descriptor now names an unlinked file: keep appending
         * there is worse than failing loudly */
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_open_file_n " \"%V\" failed",
                      &zone->spool->name);
        zone->spool->fd = old;
        ngx_free(tmp);
        return;
    }

    zone->spool->fd = fd;
    (void) ngx_close_file(old);
    ngx_free(tmp);
    return;

failed:

    ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                  "x402: spool \"%V\" not compacted", &zone->spool->name);
    (void) ngx_close_file(fd);
    (void) ngx_delete_file(tmp);
    zone->spool->fd = old;
    ngx_free(tmp);
}


/* *complete: the whole file was read (or there is none) */
static ngx_uint_t
ngx_http_x402_spool_read(ngx_http_x402_shm_t *zone, ngx_log_t *log,
    ngx_uint_t start, ngx_uint_t *complete)
{
    u_char      *buf, *pos, *last, *nl;
    off_t        offset;
    size_t       size;
    ssize_t      n;
    ngx_fd_t     fd;
    ngx_int_t    rc;
    ngx_uint_t   resumed, skipped, nlines, skipping, level, counts[2];

    *complete = 0;

    fd = ngx_open_file(zone->spool->name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN,
                       0);
    if (fd == NGX_INVALID_FILE) {
        *complete = (ngx_errno == NGX_ENOENT);
        return 0;
    }

    size = NGX_HTTP_X402_SPOOL_LINE + 1;

    buf = ngx_alloc(size, log);
    if (buf == NULL) {
        (void) ngx_close_file(fd);
        return 0;
    }

    counts[0] = 0;
    counts[1] = 0;
    skipped = 0;
    nlines = 0;
    skipping = 0;
    offset = 0;
    last = buf;

    for ( ;; ) {
        n = ngx_read_fd(fd, last, buf + size - last);

        if (n == -1) {
            ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                          "x402: reading the spool \"%V\" failed",
                          &zone->spool->name);
            break;
        }

        last += n;
        pos = buf;

        while ((nl = ngx_strlchr(pos, last, '\n')) != NULL) {

            if (skipping) {
                /* the end of a line too long for any record */
                skipping = 0;

            } else if (nl > pos) {
                nlines++;

                /* a line at a time: a worker reconciling does not hold
                 * up the others for the whole file */
                ngx_shmtx_lock(&zone->shpool->mutex);
                rc = ngx_http_x402_spool_line(zone, pos, nl - pos, start,
                                              counts);
                ngx_shmtx_unlock(&zone->shpool->mutex);

                if (rc == NGX_DECLINED) {
                    skipped++;
                    ngx_http_x402_spool_malformed(log, &zone->spool->name,
                                                  offset, pos, nl - pos);

                } else if (rc == NGX_ERROR) {
                    ngx_log_error(NGX_LOG_ALERT, log, 0,
                                  "x402: zone \"%V\" is too small for the "
                                  "settlements owed in the spool \"%V\"; "
                                  "the rest stays there",
                                  &zone->shm_zone->shm.name,
                                  &zone->spool->name);
                    goto done;
                }
            }

            offset += nl + 1 - pos;
            pos = nl + 1;
        }

        if (n == 0) {
            if (pos < last && !skipping) {
                /* the last line has no end: a crash cut it */
                skipped++;
                ngx_http_x402_spool_malformed(log, &zone->spool->name, offset,
                                              pos, last - pos);
            }

            *complete = 1;
            break;
        }

        if (pos == buf && last == buf + size) {
            /* no record is this long */
            skipped++;
            ngx_http_x402_spool_malformed(log, &zone->spool->name, offset,
                                          pos, 256);
            offset += last - pos;
            skipping = 1;
            last = buf;
            continue;
        }

        ngx_memmove(buf, pos, last - pos);
        last = buf + (last - pos);
    }

done:

    (void) ngx_close_file(fd);
    ngx_free(buf);

    /* at a start the zone held nothing before */
    resumed = start ? zone->sh->counters.pending : counts[0];

    if (resumed || skipped || counts[1]) {
        level = skipped ? NGX_LOG_ALERT : NGX_LOG_NOTICE;
        ngx_log_error(level, log, 0,
                      "x402: %s %ui async settlement(s) from the spool "
                      "\"%V\" (%ui records, %ui found done, %ui malformed)",
                      start ? "resumed" : "reconciled", resumed,
                      &zone->spool->name, nlines, counts[1], skipped);
    }

    return resumed;
}


/* a start with a fresh zone (in the master): resume what is owed */
void
ngx_http_x402_spool_replay(ngx_http_x402_shm_t *zone, ngx_log_t *log)
{
    ngx_uint_t  resumed, complete;

    if (zone->spool == NULL || ngx_test_config) {
        return;
    }

    resumed = ngx_http_x402_spool_read(zone, log, 1, &complete);

    ngx_shmtx_lock(&zone->shpool->mutex);

    ngx_http_x402_count(zone->sh, async_resumed, resumed);

    /*
     * Only the master has the file open yet: it may replace it, with the
     * queue, if the queue holds all the file owes: not after a replay cut
     * short (a zone too small, a read error), whose rest stays on disk.
     */
    if (complete) {
        ngx_http_x402_spool_compact(zone, log);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/*
 * A reload that names another spool file (x402_spool changed, or turned
 * on): the queue goes on in shared memory, but what it owes is written
 * only in the old file, which no start reads any more. The master appends
 * the queue to the new one before the new workers start (appends: the file
 * may hold what an earlier run left owed there). Not when both are the
 * same file.
 */
void
ngx_http_x402_spool_moved(ngx_http_x402_shm_t *zone, ngx_open_file_t *old,
    ngx_log_t *log)
{
    ngx_uint_t                n, failed;
    ngx_file_info_t           ofi, nfi;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_http_x402_pending_t  *p;

    if (zone->spool == NULL || ngx_test_config) {
        return;
    }

    if (old != NULL) {
        if (ngx_fd_info(old->fd, &ofi) == NGX_FILE_ERROR
            || ngx_fd_info(zone->spool->fd, &nfi) == NGX_FILE_ERROR
            || (ofi.st_dev == nfi.st_dev
                && ngx_file_uniq(&ofi) == ngx_file_uniq(&nfi)))
        {
            return;
        }
    }

    n = 0;
    failed = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    sentinel = zone->sh->pending.sentinel;

    if (zone->sh->pending.root != sentinel) {
        for (node = ngx_rbtree_min(zone->sh->pending.root, sentinel);
             node;
             node = ngx_rbtree_next(&zone->sh->pending, node))
        {
            p = (ngx_http_x402_pending_t *) node;

            if (p->rq == NGX_HTTP_X402_RQ_HELD) {
                /* Redis holds it, and its end writes nothing here: a
                 * line would be resumed by the next start, sent again */
                continue;
            }

            if (ngx_http_x402_spool_owe_locked(zone, p) == NGX_OK) {
                n++;

            } else {
                failed++;
            }
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (failed && old) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "x402: the spool is now \"%V\", but %ui of the "
                      "settlements owed could not be written there: they "
                      "stay in the previous spool \"%V\" (start once with "
                      "it, or settle them by hand)", &zone->spool->name,
                      failed, &old->name);
        return;
    }

    if (failed) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "x402: the spool is now \"%V\", but %ui of the "
                      "settlements owed could not be written there: they "
                      "are in shared memory only", &zone->spool->name,
                      failed);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "x402: the spool is now \"%V\": %ui settlement(s) owed "
                  "written there", &zone->spool->name, n);
}


/*
 * After a resizing reload the old workers go on with the old zone for a
 * while: settlements they queue or finish then are only in the spool. A
 * worker of the new zone reads it again, a few times, once they are gone:
 * what is owed and not queued is queued, what is done leaves the queue.
 */
void
ngx_http_x402_spool_reconcile(ngx_http_x402_shm_t *zone, ngx_log_t *log)
{
    uint64_t    now;
    ngx_uint_t  complete;

    if (zone->spool == NULL || zone->sh->reconcile_at == 0) {
        return;
    }

    now = ngx_http_x402_queue_now();

    if (now < zone->sh->reconcile_at) {
        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (zone->sh->reconcile_at == 0 || now < zone->sh->reconcile_at) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    /* ours; the next passes catch old workers that take longer (their
     * leases end after NGX_HTTP_X402_ASYNC_LEASE at most) */
    zone->sh->reconciles++;
    zone->sh->reconcile_at = (zone->sh->reconciles < 8)
                             ? now + 1000 * (ngx_msec_t) (1 << zone->sh->reconciles)
                             : 0;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    (void) ngx_http_x402_spool_read(zone, log, 0, &complete);
}

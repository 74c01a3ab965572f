/*
 * Load generator for bench/run.sh: exactly N GET requests over CONN
 * keep-alive HTTP/1.1 connections to 127.0.0.1:PORT, request i carrying
 * line i of FILE in HEADER (one distinct pre-signed payment per request;
 * FILE "-" sends no payment). One thread, poll().
 *
 *   x402_bench_load PORT PATH N CONN [FILE HEADER]
 *   RATE=R x402_bench_load ...      (open loop)
 *
 * Closed loop (RATE unset or 0): each connection sends its next request
 * when the previous answer is complete (Content-Length or chunked bodies);
 * this measures throughput, and its latency at saturation is mostly
 * queueing.
 *
 * Open loop (RATE=R requests/s): request i is due at start + i/R whatever
 * the answers do, sent on an idle connection (taken in turn, so that each
 * stays warm), and its latency runs from that due time, not from the send:
 * a stall delays the requests due during it and they count it (no
 * coordinated omission). A request due when all CONN connections have one
 * in flight waits for one and is counted in <waited>; its latency still
 * runs from its due time. <lag p99> is how late the sends left after their
 * due time (this process's own wake-up delay, in every target's latency);
 * <p99 from the send> leaves it out (closed loop: equal to <p99>).
 *
 * LATS=FILE appends each answer's latencies to FILE, one line each: µs from
 * the due time, µs from the send (run.sh pools them over several runs).
 *
 * Prints one line: "result <answers> <2xx> <402> <other> <errors> <req/s>
 * <p50 µs> <p99 µs> <p99.9 µs> <waited> <lag p99 µs> <p99 from the send µs>".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONN 512
#define BUF_SIZE 65536

typedef struct {
    int fd;
    long req;          /* index of the request in flight, -1 none */
    double t0;         /* due (open loop) or sent (closed loop) */
    double ts;         /* sent */
    size_t len;
    char buf[BUF_SIZE];
} conn_t;

static char **lines;
static long nlines;

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void die(const char *m)
{
    fprintf(stderr, "x402_bench_load: %s: %s\n", m, strerror(errno));
    exit(2);
}

static int dial(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        die("socket");
    }
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *) &a, sizeof a) != 0) {
        die("connect");
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("write");
        }
        p += w;
        n -= (size_t) w;
    }
}

/* bytes of a complete answer at the start of buf, 0 if incomplete, -1 if
 * malformed; *status set */
static long complete(const char *buf, size_t len, int *status)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL) {
        return 0;
    }
    size_t hlen = (size_t) (end - buf) + 4;
    if (len < 12 || memcmp(buf, "HTTP/1.1 ", 9) != 0) {
        return -1;
    }
    *status = atoi(buf + 9);
    long clen = -1;
    int chunked = 0;
    for (const char *l = buf; l < end;) {
        const char *nl = memmem(l, (size_t) (end - l) + 2, "\r\n", 2);
        if (nl == NULL) {
            break;
        }
        if ((size_t) (nl - l) > 15 && strncasecmp(l, "content-length:", 15) == 0) {
            clen = atol(l + 15);
        } else if ((size_t) (nl - l) > 18 &&
                   strncasecmp(l, "transfer-encoding:", 18) == 0 &&
                   memmem(l, (size_t) (nl - l), "chunked", 7) != NULL) {
            chunked = 1;
        }
        l = nl + 2;
    }
    if (!chunked) {
        if (clen < 0) {
            clen = 0;
        }
        return len >= hlen + (size_t) clen ? (long) (hlen + (size_t) clen) : 0;
    }
    size_t pos = hlen;
    for (;;) {
        const char *nl = memmem(buf + pos, len - pos, "\r\n", 2);
        if (nl == NULL) {
            return 0;
        }
        long size = strtol(buf + pos, NULL, 16);
        pos = (size_t) (nl - buf) + 2 + (size_t) size + 2;
        if (pos > len) {
            return 0;
        }
        if (size == 0) {
            return (long) pos;
        }
    }
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

/* the q-quantile of n sorted values */
static double pct(const double *v, long n, double q)
{
    if (n == 0) {
        return 0.0;
    }
    long i = (long) (n * q);
    return v[i < n ? i : n - 1];
}

static void build(char *req, int *m, const char *path, const char *header, long i)
{
    *m = lines != NULL
        ? snprintf(req, BUF_SIZE,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s: %s\r\n\r\n",
                   path, header, lines[i])
        : snprintf(req, BUF_SIZE,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: x402_bench_load PORT PATH N CONN [FILE HEADER]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *path = argv[2], *header = argc == 7 ? argv[6] : NULL;
    long n = atol(argv[3]);
    int nconn = atoi(argv[4]);
    if (n < 1 || n > 10000000 || nconn < 1 || nconn > MAX_CONN) {
        fprintf(stderr, "x402_bench_load: N or CONN out of range\n");
        return 2;
    }
    if (argc == 7 && strcmp(argv[5], "-") != 0) {
        FILE *f = fopen(argv[5], "r");
        if (f == NULL) {
            die(argv[5]);
        }
        lines = calloc((size_t) n, sizeof *lines);
        char *line = NULL;
        size_t cap = 0;
        ssize_t l;
        while (nlines < n && (l = getline(&line, &cap, f)) > 0) {
            while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r')) {
                line[--l] = '\0';
            }
            lines[nlines++] = strdup(line);
        }
        free(line);
        fclose(f);
        if (nlines < n) {
            fprintf(stderr, "x402_bench_load: %s: %ld payments, %ld wanted\n",
                    argv[5], nlines, n);
            return 2;
        }
    }

    static conn_t conns[MAX_CONN];
    struct pollfd pfd[MAX_CONN];
    double *lat = calloc((size_t) n, sizeof *lat);
    double *lats = calloc((size_t) n, sizeof *lats);
    char *req = malloc(BUF_SIZE);
    long next = 0, done = 0, nlat = 0, ok = 0, paywall = 0, other = 0, errors = 0;
    const char *rate_env = getenv("RATE");
    double rate = rate_env != NULL ? atof(rate_env) : 0.0;
    double interval = rate > 0 ? 1e6 / rate : 0.0;
    double *lag = rate > 0 ? calloc((size_t) n, sizeof *lag) : NULL;
    long waited = 0, waited_for = -1;
    int turn = 0;
    int m;

    if (rate > 0) {
        /* the default 50 µs timer slack would be in every latency */
        prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    }
    for (int i = 0; i < nconn; i++) {
        conns[i].fd = dial(port);
        conns[i].req = -1;
    }
    if (rate > 0) {
        /* let the server accept the connections before the first is due */
        usleep(20000);
    }
    double start = now_us();
    for (;;) {
        if (rate > 0) {
            double t = now_us();
            while (next < n && start + next * interval <= t) {
                int k, found = -1;
                for (k = 0; k < nconn; k++) {
                    int i = (turn + k) % nconn;
                    if (conns[i].req < 0) {
                        found = i;
                        break;
                    }
                }
                if (found < 0) {
                    if (waited_for != next) {
                        waited++;
                        waited_for = next;
                    }
                    break;
                }
                turn = (found + 1) % nconn;
                conn_t *c = &conns[found];
                build(req, &m, path, header, next);
                c->t0 = start + next * interval;
                c->ts = t;
                lag[next] = t - c->t0;
                c->req = next++;
                c->len = 0;
                send_all(c->fd, req, (size_t) m);
                t = now_us();
            }
        }
        for (int i = 0; i < nconn; i++) {
            conn_t *c = &conns[i];
            if (rate <= 0 && c->req < 0 && next < n) {
                build(req, &m, path, header, next);
                c->req = next++;
                c->len = 0;
                c->t0 = c->ts = now_us();
                send_all(c->fd, req, (size_t) m);
            }
            pfd[i].fd = c->req >= 0 ? c->fd : -1;
            pfd[i].events = POLLIN;
        }
        if (done == n) {
            break;
        }
        /* open loop: wake at the next due time, unless every connection
         * is busy (then only an answer can free one) */
        double wait_us = 10e6;
        if (rate > 0 && next < n && waited_for != next) {
            wait_us = start + next * interval - now_us();
            if (wait_us < 0) {
                wait_us = 0;
            }
        }
        struct timespec ts = {.tv_sec = (time_t) (wait_us / 1e6),
                              .tv_nsec = (long) ((wait_us - (double) (time_t) (wait_us / 1e6) * 1e6) * 1e3)};
        int pr = ppoll(pfd, (nfds_t) nconn, &ts, NULL);
        if (pr < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("poll");
        }
        if (pr == 0 && wait_us >= 10e6) {
            fprintf(stderr, "x402_bench_load: no answer for 10 s\n");
            return 1;
        }
        for (int i = 0; i < nconn; i++) {
            conn_t *c = &conns[i];
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            ssize_t r = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);
            int status = 0;
            long whole = 0;
            if (r > 0) {
                c->len += (size_t) r;
                whole = complete(c->buf, c->len, &status);
            }
            if (r <= 0 || whole < 0 || (whole == 0 && c->len == BUF_SIZE)) {
                /* closed or broken: the request counts as an error */
                errors++;
                done++;
                close(c->fd);
                c->fd = dial(port);
                c->req = -1;
                continue;
            }
            if (whole == 0) {
                continue;
            }
            double t1 = now_us();
            lats[nlat] = t1 - c->ts;
            lat[nlat++] = t1 - c->t0;
            done++;
            if (status >= 200 && status < 300) {
                ok++;
            } else if (status == 402) {
                paywall++;
            } else {
                other++;
            }
            c->req = -1;
        }
    }
    double secs = (now_us() - start) / 1e6;
    long answered = nlat;
    const char *lats_file = getenv("LATS");
    if (lats_file != NULL && *lats_file != '\0') {
        FILE *f = fopen(lats_file, "a");
        if (f == NULL) {
            die(lats_file);
        }
        for (long i = 0; i < answered; i++) {
            fprintf(f, "%.0f %.0f\n", lat[i], lats[i]);
        }
        fclose(f);
    }
    qsort(lat, (size_t) answered, sizeof *lat, cmp);
    qsort(lats, (size_t) answered, sizeof *lats, cmp);
    double lag99 = 0.0;
    if (lag != NULL) {
        qsort(lag, (size_t) n, sizeof *lag, cmp);
        lag99 = pct(lag, n, 0.99);
    }
    printf("result %ld %ld %ld %ld %ld %.1f %.0f %.0f %.0f %ld %.0f %.0f\n", answered, ok,
           paywall, other, errors, answered / secs, pct(lat, answered, 0.5),
           pct(lat, answered, 0.99), pct(lat, answered, 0.999), waited, lag99,
           pct(lats, answered, 0.99));
    return 0;
}

/*
 * Load generator for bench/run.sh: exactly N GET requests over CONN
 * keep-alive HTTP/1.1 connections to 127.0.0.1:PORT, request i carrying
 * line i of FILE in HEADER (one distinct pre-signed payment per request;
 * FILE "-" sends no payment). One thread, poll(); each connection sends
 * its next request when the previous answer is complete (Content-Length
 * or chunked bodies).
 *
 *   x402_bench_load PORT PATH N CONN [FILE HEADER]
 *
 * Prints one line: "result <answers> <2xx> <402> <other> <errors> <req/s>
 * <p50 µs> <p99 µs>".
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONN 256
#define BUF_SIZE 65536

typedef struct {
    int fd;
    long req;          /* index of the request in flight, -1 none */
    double t0;
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
    char *req = malloc(BUF_SIZE);
    long next = 0, done = 0, nlat = 0, ok = 0, paywall = 0, other = 0, errors = 0;

    double start = now_us();
    for (int i = 0; i < nconn; i++) {
        conns[i].fd = dial(port);
        conns[i].req = -1;
    }
    for (;;) {
        for (int i = 0; i < nconn; i++) {
            conn_t *c = &conns[i];
            if (c->req < 0 && next < n) {
                int m = lines != NULL
                    ? snprintf(req, BUF_SIZE,
                               "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s: %s\r\n\r\n",
                               path, header, lines[next])
                    : snprintf(req, BUF_SIZE,
                               "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
                c->req = next++;
                c->len = 0;
                c->t0 = now_us();
                send_all(c->fd, req, (size_t) m);
            }
            pfd[i].fd = c->req >= 0 ? c->fd : -1;
            pfd[i].events = POLLIN;
        }
        if (done == n) {
            break;
        }
        if (poll(pfd, (nfds_t) nconn, 10000) <= 0) {
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
            lat[nlat++] = now_us() - c->t0;
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
    qsort(lat, (size_t) answered, sizeof *lat, cmp);
    printf("result %ld %ld %ld %ld %ld %.1f %.0f %.0f\n", answered, ok, paywall,
           other, errors, answered / secs,
           answered ? lat[answered / 2] : 0.0,
           answered ? lat[(long) (answered * 0.99)] : 0.0);
    return 0;
}

/*
 * _backing.c - backing files: READ and WRITE served in C, never in Python.
 *
 * A handler that keeps an open file's data in a file of its own (a passthrough
 * mirror's source file, a memfd) attaches that file to the handle it returns
 * from open/create.  From then on READ and WRITE on that handle are a pread or
 * pwrite between the backing file and the request's buffer:
 *   - over io-uring, by the queue thread that received the request (the caller's
 *     CPU), straight into or out of the entry's payload, then COMMIT_AND_FETCH;
 *     no GIL, no trio wake-up (see serve_backed in _ring.c);
 *   - over /dev/fuse, by tfu_devfuse_read, which the reading task calls instead
 *     of read(2): it serves such requests itself and returns only the others.
 *
 * The table maps a file handle (the `fh` the kernel sends back) to a refcounted
 * backing: a lookup takes a reference under the table lock, the pread/pwrite
 * runs without the lock, and the last reference closes the fd.  So a handler
 * may detach or replace a backing at any time: reads already running finish on
 * the file they started with, later ones see the new state, and an fd is never
 * closed (and its number reused) under a read.  The table owns its fds: the
 * caller hands over a dup, so a handler closing its own fd changes nothing.
 */
#define _GNU_SOURCE
#include "_ring.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define TFU_FUSE_READ 15
#define TFU_FUSE_WRITE 16
#define TFU_WRITE_KILL_SUIDGID (1u << 2)
#define TFU_IN_HDR 40u
#define TFU_RW_IN 40u /* fuse_read_in and fuse_write_in */

struct backing {
    struct backing *next;   /* bucket chain (under the table lock) */
    uint64_t fh;
    int fd;
    _Atomic uint32_t refs;  /* the table's + one per request being served */
};

struct tfu_backing {
    pthread_mutex_t mu;
    struct backing **buckets;
    uint32_t mask;          /* buckets - 1 */
    uint32_t count;
    _Atomic uint64_t devfuse_reads, devfuse_writes;
};

static inline uint32_t bucket_of(const tfu_backing *b, uint64_t fh)
{
    uint64_t h = fh * 0x9E3779B97F4A7C15ull; /* fh is often a small fd: spread it */
    return (uint32_t)(h >> 32) & b->mask;
}

static void backing_put(struct backing *k)
{
    if (atomic_fetch_sub(&k->refs, 1) == 1) {
        close(k->fd);
        free(k);
    }
}

int tfu_backing_create(tfu_backing **out)
{
    tfu_backing *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->mask = 63;
    b->buckets = calloc(b->mask + 1, sizeof *b->buckets);
    if (!b->buckets) {
        free(b);
        return -ENOMEM;
    }
    pthread_mutex_init(&b->mu, NULL);
    *out = b;
    return 0;
}

void tfu_backing_destroy(tfu_backing *b)
{
    if (!b)
        return;
    for (uint32_t i = 0; i <= b->mask; i++) {
        struct backing *k = b->buckets[i];
        while (k) {
            struct backing *next = k->next;
            backing_put(k);
            k = next;
        }
    }
    free(b->buckets);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static void grow(tfu_backing *b)
{
    uint32_t n = (b->mask + 1) * 2;
    struct backing **nb = calloc(n, sizeof *nb);
    if (!nb)
        return; /* longer chains, still correct */
    struct backing **old = b->buckets;
    uint32_t oldn = b->mask + 1;
    b->buckets = nb;
    b->mask = n - 1;
    for (uint32_t i = 0; i < oldn; i++) {
        struct backing *k = old[i];
        while (k) {
            struct backing *next = k->next;
            uint32_t j = bucket_of(b, k->fh);
            k->next = nb[j];
            nb[j] = k;
            k = next;
        }
    }
    free(old);
}

/* Unlink fh's backing from the table (lock held); the caller drops the table's ref. */
static struct backing *unlink_locked(tfu_backing *b, uint64_t fh)
{
    struct backing **pp = &b->buckets[bucket_of(b, fh)];
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->fh == fh) {
            struct backing *k = *pp;
            *pp = k->next;
            __atomic_store_n(&b->count, b->count - 1, __ATOMIC_RELAXED);
            return k;
        }
    }
    return NULL;
}

int tfu_backing_attach(tfu_backing *b, uint64_t fh, int fd)
{
    if (fd < 0)
        return -EBADF;
    struct backing *k = calloc(1, sizeof *k);
    if (!k)
        return -ENOMEM;
    k->fh = fh;
    k->fd = fd;
    atomic_init(&k->refs, 1);
    pthread_mutex_lock(&b->mu);
    struct backing *old = unlink_locked(b, fh);
    if (b->count + 1 > b->mask + 1)
        grow(b);
    uint32_t j = bucket_of(b, fh);
    k->next = b->buckets[j];
    b->buckets[j] = k;
    __atomic_store_n(&b->count, b->count + 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&b->mu);
    if (old)
        backing_put(old);
    return old ? 1 : 0;
}

int tfu_backing_detach(tfu_backing *b, uint64_t fh)
{
    pthread_mutex_lock(&b->mu);
    struct backing *old = unlink_locked(b, fh);
    pthread_mutex_unlock(&b->mu);
    if (!old)
        return -ENOENT;
    backing_put(old);
    return 0;
}

uint32_t tfu_backing_count(tfu_backing *b)
{
    pthread_mutex_lock(&b->mu);
    uint32_t n = b->count;
    pthread_mutex_unlock(&b->mu);
    return n;
}

uint32_t tfu_backing_count_hint(tfu_backing *b)
{
    return __atomic_load_n(&b->count, __ATOMIC_RELAXED);
}

static struct backing *lookup(tfu_backing *b, uint64_t fh)
{
    pthread_mutex_lock(&b->mu);
    struct backing *k = b->buckets[bucket_of(b, fh)];
    while (k && k->fh != fh)
        k = k->next;
    if (k)
        atomic_fetch_add(&k->refs, 1);
    pthread_mutex_unlock(&b->mu);
    return k;
}

/* The shared part of both transports: is `op` (a fuse_read_in or fuse_write_in) a
 * request on a backed handle?  Then do the I/O.  `data` is the READ reply buffer
 * (room for `room` bytes) or the WRITE's data.  Returns 0 if not ours, else 1 with
 * *error (-errno or 0) and *n (bytes read or written) set. */
int tfu_backing_serve(tfu_backing *b, uint32_t opcode, const void *op, void *data,
                      uint32_t room, int32_t *error, uint32_t *n)
{
    if (!b || (opcode != TFU_FUSE_READ && opcode != TFU_FUSE_WRITE))
        return 0;
    uint64_t fh, off;
    uint32_t size, flags;
    memcpy(&fh, op, 8);
    memcpy(&off, (const char *)op + 8, 8);
    memcpy(&size, (const char *)op + 16, 4);
    memcpy(&flags, (const char *)op + 20, 4);
    /* Clearing set-id bits on write (HANDLE_KILLPRIV_V2) needs the handler. */
    if (opcode == TFU_FUSE_WRITE && (flags & TFU_WRITE_KILL_SUIDGID))
        return 0;
    /* A peek without the lock: an attach happens before the open reply that lets the
     * kernel send requests on the handle, so a request on it always sees the count. */
    if (!__atomic_load_n(&b->count, __ATOMIC_RELAXED))
        return 0;
    struct backing *k = lookup(b, fh);
    if (!k)
        return 0;
    if (size > room)
        size = room;
    ssize_t r;
    do {
        r = opcode == TFU_FUSE_READ ? pread(k->fd, data, size, (off_t)off)
                                    : pwrite(k->fd, data, size, (off_t)off);
    } while (r < 0 && errno == EINTR);
    *error = r < 0 ? -errno : 0;
    *n = r < 0 ? 0 : (uint32_t)r;
    backing_put(k);
    return 1;
}

/* ---- /dev/fuse ---------------------------------------------------------------- */

/* Read requests from fuse_fd into buf (as read(2) would) and serve those on backed
 * handles, with the READ reply built in rbuf (rlen bytes, page-aligned); return the
 * size of the first request that is not ours, or -errno (-EAGAIN: nothing to read). */
ssize_t tfu_devfuse_read(tfu_backing *b, int fuse_fd, void *buf, size_t len, void *rbuf,
                         uint32_t rlen)
{
    for (;;) {
        ssize_t n = read(fuse_fd, buf, len);
        if (n < 0)
            return -errno;
        if (!b || !__atomic_load_n(&b->count, __ATOMIC_RELAXED) ||
            (size_t)n < TFU_IN_HDR + TFU_RW_IN)
            return n;
        struct fuse_in_header in;
        memcpy(&in, buf, sizeof in);
        const char *op = (const char *)buf + TFU_IN_HDR;
        int32_t error = 0;
        uint32_t done = 0;
        int is_read = in.opcode == TFU_FUSE_READ;
        void *data = is_read ? rbuf : (void *)(op + TFU_RW_IN);
        uint32_t room = is_read ? rlen : (uint32_t)((size_t)n - TFU_IN_HDR - TFU_RW_IN);
        if (!tfu_backing_serve(b, in.opcode, op, data, room, &error, &done))
            return n;
        struct fuse_out_header o = {.error = error, .unique = in.unique};
        uint32_t wout[2] = {done, 0};
        struct iovec iov[2] = {{&o, sizeof o}, {is_read ? rbuf : (void *)wout, 0}};
        int cnt = 1;
        if (!error) {
            iov[1].iov_len = is_read ? done : sizeof wout;
            cnt = 2;
        }
        o.len = (uint32_t)(sizeof o + (cnt == 2 ? iov[1].iov_len : 0));
        /* An interrupted request may already be answered (ENOENT): nothing to do. */
        (void)!writev(fuse_fd, iov, cnt);
        atomic_fetch_add_explicit(is_read ? &b->devfuse_reads : &b->devfuse_writes, 1,
                                  memory_order_relaxed);
    }
}

void tfu_backing_devfuse_stats(tfu_backing *b, uint64_t *reads, uint64_t *writes)
{
    *reads = atomic_load_explicit(&b->devfuse_reads, memory_order_relaxed);
    *writes = atomic_load_explicit(&b->devfuse_writes, memory_order_relaxed);
}

/*
 * _ring.c - queue threads and trio hand-off of the FUSE-over-io-uring transport.
 *
 * Theory of operation
 * -------------------
 * Entries.  Entry e (0 <= e < nr_queues*cap) belongs to qid e / cap, where cap
 * is max_depth.  Its header buffer (288 B, packed with a 320 B stride so
 * neighbours never share a cache line) and payload buffer are mmap'ed by the
 * thread that serves the qid, after that thread pinned itself, for all cap
 * entries; a payload buffer is prefaulted (first touch places it on that CPU's
 * node) when its entry is registered: the first `depth` of each qid at start,
 * more when trio asks with tfu_ring_grow (handlers that wait hold their entries,
 * and a queue whose entries are all held serves nothing).  Entries never
 * registered stay ST_RELEASED.  Per entry, only the serving thread changes
 * `state`:
 *     ST_KERNEL   a REGISTER or COMMIT_AND_FETCH is pending in the kernel
 *     ST_USER     the entry holds a request (in the ready ring, held by trio, or
 *                 in the commit ring)
 *     ST_RELEASED the kernel gave it back for good (-ENOTCONN, failed REGISTER,
 *                 -ECANCELED)
 * The trio side keeps its own `held` flag (set by take, cleared by commit) so
 * that a double commit cannot overflow the commit ring.
 *
 * Rings.  Per thread two SPSC rings of entry indices, each with capacity >= the
 * thread's entry count (an entry is in at most one of them at a time):
 *     ready   producer = queue thread, consumer = trio (tfu_ring_take)
 *     commits producer = trio (tfu_ring_commit), consumer = queue thread
 *
 * Sleep/wake protocol (Dekker style, all seq_cst):
 *     sleeper: store(asleep, 1); fence; if (work visible) { asleep = 0; retry }
 *              else block
 *     waker:   publish work; fence; if (load(asleep) && xchg(asleep, 0)) write
 *              eventfd
 * Either the sleeper sees the work or the waker sees asleep == 1.  Only the
 * waker that wins the exchange writes, so there is at most one write per sleep;
 * the sleeper clears the flag itself when it wakes for another reason.  A
 * write that arrives after the sleeper already woke leaves a count in the
 * eventfd, which causes one spurious wake-up later and never a lost one: there
 * is no separate "signalled" flag that could go stale.
 *
 * Queue thread loop: drain commit ring -> prep COMMIT_AND_FETCH -> submit ->
 * reap all CQEs -> notify trio if it pushed and trio sleeps -> spin up to
 * ring_poll_us for commits/CQEs/task work -> otherwise sleep in
 * io_uring_submit_and_wait with a read of its own eventfd pending in its ring.
 */
#define _GNU_SOURCE
#include "_ring.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef IORING_SQ_TASKRUN
#define IORING_SQ_TASKRUN (1U << 2)
#endif

#define TFU_HDR_STRIDE 320u              /* 288 rounded up to whole cache lines */
#define TFU_TAG_EFD UINT64_MAX           /* user_data of the eventfd read */
#define TFU_TAG_KICK (UINT64_MAX - 1)    /* user_data of the kick statx */
#define TFU_FUSE_GETATTR 3
#define TFU_FUSE_READ 15
#define TFU_FUSE_WRITE 16
#define TFU_FUSE_ROOT_ID 1
#define TFU_CACHELINE 64

enum { ST_KERNEL = 0, ST_USER = 1, ST_RELEASED = 2 };
enum { TS_SETUP = 0, TS_READY, TS_FAILED, TS_SUBMITTED, TS_EXITED };

_Static_assert(sizeof(struct fuse_uring_req_header) <= TFU_HDR_STRIDE, "stride");
_Static_assert(TFU_HDR_STRIDE % TFU_CACHELINE == 0, "stride alignment");
_Static_assert(sizeof(struct io_uring_sqe) == 64, "sqe");
_Static_assert(offsetof(struct io_uring_sqe, cmd) == 48, "sqe cmd area");

/* ------------------------------------------------------------------------ */
/* SPSC ring of uint32 entry indices                                         */

struct spsc {
    _Alignas(TFU_CACHELINE) _Atomic uint32_t head; /* written by the consumer */
    _Alignas(TFU_CACHELINE) _Atomic uint32_t tail; /* written by the producer */
    _Alignas(TFU_CACHELINE) uint32_t mask;
    uint32_t *slots;
};

static int spsc_init(struct spsc *q, uint32_t min_cap)
{
    uint32_t cap = 1;
    while (cap < min_cap)
        cap <<= 1;
    q->slots = calloc(cap, sizeof(uint32_t));
    if (!q->slots)
        return -ENOMEM;
    q->mask = cap - 1;
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    return 0;
}

/* producer; capacity is guaranteed by construction */
static inline void spsc_push(struct spsc *q, uint32_t v)
{
    uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    q->slots[t & q->mask] = v;
    atomic_store_explicit(&q->tail, t + 1, memory_order_release);
}

/* consumer */
static inline uint32_t spsc_pop_batch(struct spsc *q, uint32_t *out, uint32_t max)
{
    uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint32_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
    uint32_t n = t - h;
    if (n > max)
        n = max;
    for (uint32_t i = 0; i < n; i++)
        out[i] = q->slots[(h + i) & q->mask];
    if (n)
        atomic_store_explicit(&q->head, h + n, memory_order_release);
    return n;
}

/* either side: is there anything queued? */
static inline int spsc_nonempty(struct spsc *q)
{
    return atomic_load_explicit(&q->tail, memory_order_acquire) !=
           atomic_load_explicit(&q->head, memory_order_acquire);
}

/* ------------------------------------------------------------------------ */
/* structures                                                                */

struct qstats {                 /* per qid, written only by the serving thread */
    uint64_t requests, commits, errors, backing_reads, backing_writes;
    int32_t last_error;
};

struct tfu_thread {
    tfu_ring *r;
    uint32_t idx;
    int cpu;                    /* requested CPU (-1: none) */
    int pinned_cpu;             /* CPU actually pinned to, -1 if pinning failed */
    pthread_t pth;
    int created, joined;
    pid_t os_tid;

    uint32_t nq;                /* qids served */
    uint32_t *qids;
    uint32_t nent;              /* entries served, global indices in ents[] */
    uint32_t *ents;

    struct io_uring ring;
    int ring_ok;
    int efd;                    /* wakes this thread (read pending in its ring) */
    uint64_t efd_buf;
    struct iovec *iov;          /* 2 per entry, indexed like ents[] */
    char *hdr_base, *pay_base;
    size_t hdr_len, pay_len;

    uint32_t *resub;            /* entries whose last command must be resubmitted */
    uint32_t nresub;
    uint32_t *scratch;          /* commit-ring pop buffer */
    uint32_t *backed;           /* READ/WRITEs that may be on a backing file (serve_backed) */
    uint32_t nbacked;
    size_t pstride;             /* payload buffer stride */
    uint32_t outstanding;       /* requests handed to trio whose commit is not yet drained */

    _Alignas(TFU_CACHELINE) _Atomic int asleep;
    _Atomic int grow_flag;      /* set by tfu_ring_grow: compare want[] with registered[] */
    uint32_t kicks_inflight;    /* kick statx commands not yet completed */
    struct statx kick_stx;      /* written by the kernel, never read */
    uint32_t kicks;             /* kick GETATTRs answered here */
    _Atomic uint32_t fills_queued; /* fills handed to this thread, not yet done */
    uint64_t fills, fills_here;
    _Alignas(TFU_CACHELINE) struct spsc ready;
    struct spsc commits;

    /* control (under r->mu) */
    int state;
    int setup_err;
    int submit_err;

    /* per-thread stats (written by the thread only) */
    _Alignas(TFU_CACHELINE) uint64_t batches, wakeups_sent, sleeps, woken;
    _Atomic int alive;
    int seen_stop, seen_gone;   /* stop / conn_gone seen at the top of the last iteration */              /* stop value at the top of the last loop iteration */
};

struct tfu_ring {
    struct tfu_ring_params p;
    struct tfu_ring_tuning tun;
    uint32_t nent;              /* nr_queues * cap */
    uint32_t cap;               /* entries per qid at most (max_depth) */
    uint32_t nthreads;
    struct tfu_thread *threads;
    uint32_t *qid_thread;       /* qid -> thread index */
    int32_t *qid_cpu;

    void **hdr;                 /* per entry */
    void **pay;
    uint8_t *state;             /* per entry, owned by the serving thread */
    uint8_t *lastcmd;           /* per entry, owned by the serving thread */
    uint8_t *held;              /* per entry, owned by the trio side */
    int32_t *fill_fd;           /* per entry: read the reply from this fd (-1: no) ... */
    uint64_t *fill_off;         /* ... at this offset ... */
    uint32_t *fill_len;         /* ... this many bytes at most (tfu_ring_commit_from_fd) */
    struct qstats *qs;          /* per qid */
    _Atomic uint32_t *want;     /* per qid: entries trio wants registered */
    char *_Atomic kick_path;    /* the mountpoint, see kick() */
    _Atomic uint32_t kicks_inflight;
    uint32_t *registered;       /* per qid: entries registered (serving thread writes) */

    int notify_fd;
    _Alignas(TFU_CACHELINE) _Atomic int trio_asleep;
    _Alignas(TFU_CACHELINE) _Atomic int error;
    _Atomic int stop;           /* 0, 1 = when released, 2 = force */
    _Atomic int conn_gone;
    uint32_t take_rr;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int start_flag;
};

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#define RELAXED_INC(x) __atomic_store_n(&(x), __atomic_load_n(&(x), __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED)
#define RELAXED_ADD(x, n) __atomic_store_n(&(x), __atomic_load_n(&(x), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define RELAXED_LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define SET_STATE(r, e, st) __atomic_store_n(&(r)->state[(e)], (uint8_t)(st), __ATOMIC_RELAXED)

static void record_error(tfu_ring *r, int err)
{
    int zero = 0;
    atomic_compare_exchange_strong(&r->error, &zero, err);
}

static void q_error(tfu_ring *r, uint32_t qid, int err)
{
    RELAXED_INC(r->qs[qid].errors);
    __atomic_store_n(&r->qs[qid].last_error, err, __ATOMIC_RELAXED);
}

static void eventfd_poke(int fd)
{
    uint64_t one = 1;
    ssize_t rc;
    do {
        rc = write(fd, &one, sizeof one);
    } while (rc < 0 && errno == EINTR);
}

static void wake_trio(tfu_ring *r)
{
    if (r->tun.wake_trio)
        r->tun.wake_trio(r->tun.wake_ctx);
    else
        eventfd_poke(r->notify_fd);
}

/* thread -> trio: wake trio iff it declared itself asleep. Call after pushing. */
static void notify_trio(tfu_ring *r, struct tfu_thread *t)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&r->trio_asleep) && atomic_exchange(&r->trio_asleep, 0)) {
        wake_trio(r);
        RELAXED_INC(t->wakeups_sent);
    }
}

static inline uint32_t ent_qid(tfu_ring *r, uint32_t e) { return e / r->cap; }

/* ------------------------------------------------------------------------ */
/* SQE preparation                                                           */

static void prep_cmd(struct tfu_thread *t, uint32_t li, uint32_t e, uint32_t op)
{
    tfu_ring *r = t->r;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
    /* The SQ has room for every entry plus the eventfd read, and each entry
     * has at most one SQE queued, so this cannot fail. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
    memset(sqe, 0, 2 * sizeof(*sqe)); /* SQE128: 2 x 64 bytes, cmd area at 48 */
#pragma GCC diagnostic pop
    sqe->opcode = IORING_OP_URING_CMD;
    if (r->tun.fixed_file) {
        sqe->fd = 0;
        sqe->flags = IOSQE_FIXED_FILE;
    } else {
        sqe->fd = r->p.fuse_fd;
    }
    sqe->cmd_op = op;
    sqe->user_data = e;
    struct fuse_uring_cmd_req *req = (struct fuse_uring_cmd_req *)((char *)sqe + 48);
    req->qid = (uint16_t)ent_qid(r, e);
    if (op == FUSE_IO_URING_CMD_REGISTER) {
        sqe->addr = (uint64_t)(uintptr_t)&t->iov[2 * li];
        sqe->len = 2;
    } else {
        struct fuse_uring_req_header *h = r->hdr[e];
        req->commit_id = h->ring_ent_in_out.commit_id;
    }
    r->lastcmd[e] = (uint8_t)op;
    SET_STATE(r, e, ST_KERNEL);
}

static void prep_efd_read(struct tfu_thread *t)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
    io_uring_prep_read(sqe, t->efd, &t->efd_buf, sizeof t->efd_buf, 0);
    sqe->user_data = TFU_TAG_EFD;
}

/* local index of global entry e inside t->ents (qids of a thread are stored
 * in order, each with cap consecutive entries) */
static uint32_t local_index(struct tfu_thread *t, uint32_t e)
{
    uint32_t d = t->r->cap, q = e / d;
    for (uint32_t i = 0; i < t->nq; i++)
        if (t->qids[i] == q)
            return i * d + e % d;
    return 0; /* not reached */
}

/* ------------------------------------------------------------------------ */
/* queue thread                                                              */

static void prefault_payloads(struct tfu_thread *t, uint32_t li, uint32_t n)
{
    char *a = t->pay_base + (size_t)li * t->pstride;
    size_t len = (size_t)n * t->pstride;
    if (madvise(a, len, MADV_POPULATE_WRITE) != 0)
        for (size_t off = 0; off < len; off += 4096)
            a[off] = 0;
}

static int thread_setup(struct tfu_thread *t)
{
    tfu_ring *r = t->r;
    int rc;
    long page = sysconf(_SC_PAGESIZE);

    t->efd = eventfd(0, EFD_CLOEXEC); /* blocking: io_uring arms a poll for the read */
    if (t->efd < 0)
        return -errno;

    t->hdr_len = ((size_t)t->nent * TFU_HDR_STRIDE + page - 1) & ~((size_t)page - 1);
    size_t pstride = ((size_t)r->p.payload_size + page - 1) & ~((size_t)page - 1);
    t->pstride = pstride;
    t->pay_len = pstride * t->nent;
    t->hdr_base = mmap(NULL, t->hdr_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (t->hdr_base == MAP_FAILED) {
        t->hdr_base = NULL;
        return -errno;
    }
    /* NORESERVE: most of it is headroom for tfu_ring_grow and may never be touched */
    t->pay_base = mmap(NULL, t->pay_len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (t->pay_base == MAP_FAILED) {
        t->pay_base = NULL;
        return -errno;
    }
    /* Prefault on this (pinned) thread: first touch places the pages locally. */
    if (madvise(t->hdr_base, t->hdr_len, MADV_POPULATE_WRITE) != 0)
        memset(t->hdr_base, 0, t->hdr_len);
    for (uint32_t i = 0; i < t->nq; i++)
        prefault_payloads(t, i * r->cap, r->p.depth);

    t->iov = calloc((size_t)t->nent * 2, sizeof *t->iov);
    t->resub = calloc(t->nent, sizeof(uint32_t));
    t->scratch = calloc(t->nent, sizeof(uint32_t));
    t->backed = calloc(t->nent, sizeof(uint32_t));
    if (!t->iov || !t->resub || !t->scratch || !t->backed)
        return -ENOMEM;
    for (uint32_t i = 0; i < t->nent; i++) {
        uint32_t e = t->ents[i];
        r->hdr[e] = t->hdr_base + (size_t)i * TFU_HDR_STRIDE;
        r->pay[e] = t->pay_base + (size_t)i * pstride;
        t->iov[2 * i].iov_base = r->hdr[e];
        t->iov[2 * i].iov_len = sizeof(struct fuse_uring_req_header);
        t->iov[2 * i + 1].iov_base = r->pay[e];
        t->iov[2 * i + 1].iov_len = r->p.payload_size;
    }

    struct io_uring_params ip;
    memset(&ip, 0, sizeof ip);
    ip.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | r->tun.setup_flags;
    if (ip.flags & (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_DEFER_TASKRUN))
        ip.flags |= IORING_SETUP_TASKRUN_FLAG;
    if (ip.flags & IORING_SETUP_DEFER_TASKRUN)
        ip.flags |= IORING_SETUP_SINGLE_ISSUER;
    ip.cq_entries = 2 * (t->nent + 2);
    rc = io_uring_queue_init_params(t->nent + 3, &t->ring, &ip); /* + eventfd read, kick */
    if (rc < 0)
        return rc;
    t->ring_ok = 1;
    if (r->tun.fixed_file) {
        rc = io_uring_register_files(&t->ring, &r->p.fuse_fd, 1);
        if (rc < 0)
            return rc;
    }
    if (t->pinned_cpu >= 0) {
        /* io_uring's workers (the kick statx) run on this CPU, so their requests
         * reach this thread's queue; without it there are just no kicks */
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(t->pinned_cpu, &set);
        (void)io_uring_register_iowq_aff(&t->ring, sizeof set, &set);
    }
    if (r->tun.register_ring_fd) {
        rc = io_uring_register_ring_fd(&t->ring);
        if (rc < 0 && rc != -EINVAL)
            return rc;
    }

    /* Prepare (do not submit) the REGISTERs and the eventfd read. */
    for (uint32_t i = 0; i < t->nq; i++) {
        uint32_t q = t->qids[i];
        for (uint32_t d = 0; d < r->p.depth; d++)
            prep_cmd(t, i * r->cap + d, q * r->cap + d, FUSE_IO_URING_CMD_REGISTER);
        __atomic_store_n(&r->registered[q], r->p.depth, __ATOMIC_RELAXED);
    }
    prep_efd_read(t);
    return 0;
}

static int answer_kick(struct tfu_thread *t, uint32_t e);

/* Could the request in entry e be served from a backing file? (READ or WRITE while
 * the ring has backing files at all; serve_backed decides.) */
static inline int maybe_backed(tfu_ring *r, uint32_t e)
{
    if (!r->tun.backing || !tfu_backing_count_hint(r->tun.backing))
        return 0;
    struct fuse_in_header *in = (struct fuse_in_header *)((struct fuse_uring_req_header *)r->hdr[e])->in_out;
    return in->opcode == TFU_FUSE_READ || in->opcode == TFU_FUSE_WRITE;
}
static void set_out_header(tfu_ring *r, uint32_t e, int32_t error, uint32_t payload_len);

/* Reap every available CQE. Returns the number of requests delivered. */
static uint32_t reap(struct tfu_thread *t)
{
    tfu_ring *r = t->r;
    uint32_t pushed = 0;
    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&t->ring, head, cqe) {
            n++;
            uint64_t ud = cqe->user_data;
            int res = cqe->res;
            if (ud == TFU_TAG_EFD) {
                RELAXED_INC(t->woken);
                prep_efd_read(t);
                continue;
            }
            if (ud == TFU_TAG_KICK) {
                t->kicks_inflight--; /* EAGAIN, or whatever the path met: either is fine */
                atomic_fetch_sub(&r->kicks_inflight, 1);
                continue;
            }
            uint32_t e = (uint32_t)ud, q = ent_qid(r, e);
            if (res == 0 && answer_kick(t, e)) {
                continue;
            } else if (res == 0 && maybe_backed(r, e)) {
                SET_STATE(r, e, ST_USER);
                RELAXED_INC(r->qs[q].requests);
                t->backed[t->nbacked++] = e; /* after trio got the others: serve_backed */
            } else if (res == 0) {
                SET_STATE(r, e, ST_USER);
                spsc_push(&t->ready, e);
                RELAXED_INC(r->qs[q].requests);
                pushed++;
            } else if (res == -ENOTCONN || res == -ECONNABORTED) {
                SET_STATE(r, e, ST_RELEASED);
                if (!atomic_exchange(&r->conn_gone, 1)) {
                    /* let the other threads re-evaluate their exit condition */
                    for (uint32_t ti = 0; ti < r->nthreads; ti++)
                        if (&r->threads[ti] != t)
                            eventfd_poke(r->threads[ti].efd);
                }
            } else if (res == -EAGAIN || res == -EINTR) {
                t->resub[t->nresub++] = e; /* state stays ST_KERNEL */
            } else {
                q_error(r, q, res);
                record_error(r, res);
                if (res == -ENOENT && r->lastcmd[e] == FUSE_IO_URING_CMD_COMMIT_AND_FETCH)
                    SET_STATE(r, e, ST_USER);      /* kernel still considers it ours */
                else
                    SET_STATE(r, e, ST_RELEASED);  /* failed REGISTER, -ECANCELED, ... */
            }
        }
        io_uring_cq_advance(&t->ring, n);
        if (!n)
            break;
    }
    t->outstanding += pushed;
    if (pushed)
        RELAXED_INC(t->batches);
    return pushed;
}

/* Read entry e's reply from its fill fd into its payload and write the out header. */
static void fill_reply(tfu_ring *r, uint32_t e)
{
    ssize_t n;
    do {
        n = pread(r->fill_fd[e], r->pay[e], r->fill_len[e], (off_t)r->fill_off[e]);
    } while (n < 0 && errno == EINTR);
    r->fill_fd[e] = -1;
    set_out_header(r, e, n < 0 ? -errno : 0, n < 0 ? 0 : (uint32_t)n);
}

/* Drain the commit ring into COMMIT_AND_FETCH SQEs; returns how many. */
static uint32_t drain_commits(struct tfu_thread *t)
{
    tfu_ring *r = t->r;
    uint32_t total = 0, n;
    while ((n = spsc_pop_batch(&t->commits, t->scratch, t->nent)) > 0) {
        for (uint32_t i = 0; i < n; i++) {
            uint32_t e = t->scratch[i];
            if (r->fill_fd[e] >= 0) {
                fill_reply(r, e);
                atomic_fetch_sub(&t->fills_queued, 1);
                RELAXED_INC(t->fills);
            }
            if (r->state[e] != ST_USER) /* connection gone meanwhile, or a bug */
                continue;
            prep_cmd(t, local_index(t, e), e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
            RELAXED_INC(r->qs[ent_qid(r, e)].commits);
        }
        total += n;
        t->outstanding = t->outstanding > n ? t->outstanding - n : 0;
    }
    return total;
}

/* Serve the READ/WRITEs that reap set aside: those on a backing file here, with
 * pread/pwrite between the file and the entry's payload, then COMMIT_AND_FETCH; the
 * others go to trio after all. Runs after trio was given the rest of the batch, so
 * that the file I/O here overlaps with trio's work. Returns how many it committed. */
static uint32_t serve_backed(struct tfu_thread *t)
{
    tfu_ring *r = t->r;
    uint32_t n = t->nbacked, done = 0, pushed = 0;
    t->nbacked = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t e = t->backed[i], q = ent_qid(r, e);
        struct fuse_uring_req_header *h = r->hdr[e];
        struct fuse_in_header in;
        memcpy(&in, h->in_out, sizeof in);
        int is_read = in.opcode == TFU_FUSE_READ;
        uint32_t room = is_read ? r->p.payload_size : h->ring_ent_in_out.payload_sz;
        int32_t error = 0;
        uint32_t got = 0;
        if (room > r->p.payload_size ||
            !tfu_backing_serve(r->tun.backing, in.opcode, h->op_in, r->pay[e], room, &error,
                               &got)) {
            spsc_push(&t->ready, e);
            t->outstanding++;
            pushed++;
            continue;
        }
        if (is_read || error) {
            set_out_header(r, e, error, got);
        } else {
            uint32_t wout[2] = {got, 0}; /* fuse_write_out */
            memcpy(r->pay[e], wout, sizeof wout);
            set_out_header(r, e, 0, sizeof wout);
        }
        prep_cmd(t, local_index(t, e), e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
        RELAXED_INC(r->qs[q].commits);
        if (is_read)
            RELAXED_INC(r->qs[q].backing_reads);
        else
            RELAXED_INC(r->qs[q].backing_writes);
        done++;
    }
    if (pushed) {
        RELAXED_INC(t->batches);
        notify_trio(r, t);
    }
    return done + pushed;
}

/* Entries registered late do not pick up the requests the kernel already queued for
 * their qid: only a COMMIT_AND_FETCH on the queue does, or a new request, which takes
 * the free entry for itself. So after growing its queue, a thread kicks it once per
 * new entry with a new request from its own CPU: a statx of the mountpoint with
 * AT_STATX_FORCE_SYNC, run by io_uring's worker (pinned to this CPU by the io-wq
 * affinity), which the kernel turns into exactly one GETATTR of the root (the walk
 * ends at the mount's root: no LOOKUP, no permission check). The GETATTR takes the new
 * entry and is answered here with EAGAIN, never reaching trio or user code; that
 * commit hands the entry the oldest waiting request, and so on. A kick that finds no
 * free entry waits in line like any request; the request that took the entry fetches
 * in its place when it commits. Kicks are told apart by their sender while
 * one is in flight: GETATTRs of the root from the io_uring workers of our queue
 * threads (by thread name, see is_our_worker). */
static void kick(struct tfu_thread *t)
{
    tfu_ring *r = t->r;
    const char *path = atomic_load(&r->kick_path);
    if (!path || t->pinned_cpu < 0 || t->kicks_inflight >= t->nent)
        return;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
    if (!sqe)
        return;
    io_uring_prep_statx(sqe, AT_FDCWD, path, AT_STATX_FORCE_SYNC, STATX_TYPE, &t->kick_stx);
    sqe->user_data = TFU_TAG_KICK;
    t->kicks_inflight++;
    atomic_fetch_add(&r->kicks_inflight, 1);
}

/* Is thread `tid` an io_uring worker of one of our queue threads ("iou-wrk-<tid>")?
 * Only asked for GETATTRs of the root while a kick is in flight. */
static int is_our_worker(tfu_ring *r, uint32_t tid)
{
    char path[64], comm[32];
    snprintf(path, sizeof path, "/proc/self/task/%u/comm", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0; /* not a thread of this process */
    ssize_t n = read(fd, comm, sizeof comm - 1);
    close(fd);
    if (n <= 0)
        return 0;
    comm[n] = 0;
    if (strncmp(comm, "iou-wrk-", 8) != 0)
        return 0;
    long owner = strtol(comm + 8, NULL, 10);
    for (uint32_t ti = 0; ti < r->nthreads; ti++)
        if (r->threads[ti].os_tid == owner)
            return 1;
    return 0;
}

/* Is the request in entry e a kick? Then answer it (EAGAIN) and recommit at once. */
static int answer_kick(struct tfu_thread *t, uint32_t e)
{
    tfu_ring *r = t->r;
    if (!atomic_load_explicit(&r->kicks_inflight, memory_order_relaxed))
        return 0;
    struct fuse_uring_req_header *h = r->hdr[e];
    struct fuse_in_header in;
    memcpy(&in, h->in_out, sizeof in);
    if (in.opcode != TFU_FUSE_GETATTR || in.nodeid != TFU_FUSE_ROOT_ID || !is_our_worker(r, in.pid))
        return 0;
    struct fuse_out_header o = {
        .len = (uint32_t)sizeof(struct fuse_out_header), .error = -EAGAIN, .unique = in.unique,
    };
    memcpy(h->in_out, &o, sizeof o);
    h->ring_ent_in_out.payload_sz = 0;
    prep_cmd(t, local_index(t, e), e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH);
    RELAXED_INC(r->qs[ent_qid(r, e)].commits);
    RELAXED_INC(t->kicks);
    return 1;
}

/* Register the entries trio asked for (tfu_ring_grow); returns how many. A late
 * REGISTER only adds an available entry: requests already waiting in the kernel
 * for that queue stay there until the next COMMIT_AND_FETCH on it, which is why
 * trio grows a queue while it still has entries cycling (see _ring.py). */
static uint32_t grow_queues(struct tfu_thread *t)
{
    tfu_ring *r = t->r;
    if (!atomic_load(&t->grow_flag))
        return 0;
    atomic_store(&t->grow_flag, 0);
    if (atomic_load(&r->stop) || atomic_load(&r->conn_gone))
        return 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->nq; i++) {
        uint32_t q = t->qids[i];
        uint32_t want = atomic_load(&r->want[q]), reg = r->registered[q];
        if (want <= reg)
            continue;
        prefault_payloads(t, i * r->cap + reg, want - reg);
        for (; reg < want; reg++, n++)
            prep_cmd(t, i * r->cap + reg, q * r->cap + reg, FUSE_IO_URING_CMD_REGISTER);
        __atomic_store_n(&r->registered[q], reg, __ATOMIC_RELAXED);
        if ((int)q == t->pinned_cpu)
            kick(t); /* after the REGISTERs: SQEs are issued in order */
    }
    return n;
}

static int can_exit(struct tfu_thread *t)
{
    tfu_ring *r = t->r;
    int st = atomic_load(&r->stop);
    if (st == 2)
        return 1;
    if (st != 1)
        return 0;
    int gone = atomic_load(&r->conn_gone);
    for (uint32_t i = 0; i < t->nent; i++) {
        uint8_t s = r->state[t->ents[i]];
        if (s == ST_KERNEL)
            return 0;
        if (s == ST_USER && !gone)
            return 0;
    }
    return 1;
}

static int work_visible(struct tfu_thread *t)
{
    return spsc_nonempty(&t->commits) || io_uring_cq_ready(&t->ring) ||
           atomic_load(&t->grow_flag) ||
           atomic_load(&t->r->stop) != t->seen_stop ||
           atomic_load(&t->r->conn_gone) != t->seen_gone;
}

static void submit_pending(struct tfu_thread *t)
{
    tfu_ring *r = t->r;
    if (!io_uring_sq_ready(&t->ring))
        return;
    int rc;
    do {
        rc = io_uring_submit(&t->ring);
    } while (rc == -EINTR);
    if (rc < 0 && rc != -EAGAIN && rc != -EBUSY) {
        record_error(r, rc);
        q_error(r, t->qids[0], rc);
    }
}

static void queue_loop(struct tfu_thread *t)
{
    tfu_ring *r = t->r;
    const uint64_t poll_ns = (uint64_t)r->p.ring_poll_us * 1000u;

    for (;;) {
        t->seen_stop = atomic_load(&r->stop);
        t->seen_gone = atomic_load(&r->conn_gone);
        uint32_t did = drain_commits(t);
        did += grow_queues(t);
        if (t->nresub) {
            uint32_t n = t->nresub;
            t->nresub = 0;
            for (uint32_t i = 0; i < n; i++) {
                uint32_t e = t->resub[i];
                prep_cmd(t, local_index(t, e), e, r->lastcmd[e]);
            }
            did += n;
            if (n && !spsc_nonempty(&t->commits)) {
                /* -EAGAIN (e.g. REGISTER before INIT): do not spin hot */
                struct timespec ts = {0, 200000};
                nanosleep(&ts, NULL);
            }
        }
        submit_pending(t);
        uint32_t pushed = reap(t);
        if (pushed)
            notify_trio(r, t);
        if (t->nbacked)
            did += serve_backed(t);
        if (atomic_load(&r->stop) && can_exit(t))
            return;
        if (did || pushed || t->nresub || io_uring_sq_ready(&t->ring))
            continue;

        /* Spin only while trio holds requests of ours, i.e. a commit is coming from
         * another CPU. With nothing outstanding, the next event is a new request from
         * a client, which often runs on this very CPU: spinning would keep that client
         * off the CPU, so sleep at once (a same-CPU wake-up is cheap). */
        if (poll_ns && t->outstanding) {
            uint64_t deadline = now_ns() + poll_ns;
            int found = 0;
            for (;;) {
                for (int k = 0; k < 32; k++) {
                    if (work_visible(t)) {
                        found = 1;
                        break;
                    }
                    if (IO_URING_READ_ONCE(*t->ring.sq.kflags) & IORING_SQ_TASKRUN) {
                        io_uring_get_events(&t->ring);
                        found = 1;
                        break;
                    }
                    cpu_relax();
                }
                if (found || now_ns() >= deadline)
                    break;
                sched_yield(); /* never keep a runnable trio thread or client waiting */
            }
            if (found)
                continue;
        }

        /* sleep */
        atomic_store(&t->asleep, 1);
        atomic_thread_fence(memory_order_seq_cst);
        if (work_visible(t)) {
            atomic_store(&t->asleep, 0);
            continue;
        }
        RELAXED_INC(t->sleeps);
        int rc;
        do {
            rc = io_uring_submit_and_wait(&t->ring, 1);
        } while (0);
        atomic_store(&t->asleep, 0);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
            record_error(r, rc);
            q_error(r, t->qids[0], rc);
            /* avoid a hot loop on a persistent error */
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
}

static void *thread_main(void *arg)
{
    struct tfu_thread *t = arg;
    tfu_ring *r = t->r;
    char name[16];

    t->os_tid = (pid_t)syscall(SYS_gettid);
    t->pinned_cpu = -1;
    if (t->cpu >= 0 && t->cpu < CPU_SETSIZE) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(t->cpu, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0)
            t->pinned_cpu = t->cpu;
    }
    snprintf(name, sizeof name, "tfu-q%d", t->cpu);
    pthread_setname_np(pthread_self(), name);

    int rc = thread_setup(t);
    pthread_mutex_lock(&r->mu);
    t->setup_err = rc;
    t->state = rc < 0 ? TS_FAILED : TS_READY;
    pthread_cond_broadcast(&r->cv);
    while (rc == 0 && !r->start_flag && !atomic_load(&r->stop))
        pthread_cond_wait(&r->cv, &r->mu);
    int go = rc == 0 && r->start_flag && !atomic_load(&r->stop);
    pthread_mutex_unlock(&r->mu);

    if (go) {
        int s;
        do {
            s = io_uring_submit(&t->ring);
        } while (s == -EINTR);
        /* REGISTER errors are completed inline: reap them now so that
         * tfu_ring_error() is already set when tfu_ring_start() returns. */
        uint32_t pushed = reap(t);
        if (t->nbacked) /* none yet: no handle can have a backing before INIT */
            serve_backed(t);
        pthread_mutex_lock(&r->mu);
        t->submit_err = s < 0 ? s : 0;
        t->state = TS_SUBMITTED;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        if (s < 0) {
            record_error(r, s);
            q_error(r, t->qids[0], s);
            /* nothing reached the kernel: every entry is free */
            for (uint32_t i = 0; i < t->nent; i++)
                SET_STATE(r, t->ents[i], ST_RELEASED);
        }
        if (pushed)
            notify_trio(r, t);
        queue_loop(t);
    }

    if (t->ring_ok) {
        io_uring_queue_exit(&t->ring); /* cancels whatever is still pending */
        t->ring_ok = 0;
    }
    /* t->efd stays open until tfu_ring_destroy: flush/stop may still poke it */
    atomic_store(&t->alive, 0);
    pthread_mutex_lock(&r->mu);
    t->state = TS_EXITED;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    /* let a sleeping trio notice (status/join) */
    if (atomic_exchange(&r->trio_asleep, 0))
        wake_trio(r);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* creation                                                                  */

const char *tfu_ring_abi_version(void) { return TFU_RING_ABI_VERSION; }

void tfu_ring_default_tuning(struct tfu_ring_tuning *out)
{
    memset(out, 0, sizeof *out);
    out->setup_flags = 0;
    out->fixed_file = 1;
    out->register_ring_fd = 1;
    out->qid_cpu = NULL;
    out->wake_trio = NULL;
    out->wake_ctx = NULL;
}

/* Parse a cpulist like "0-3,5" into set. */
static int read_cpulist(const char *path, cpu_set_t *set)
{
    char buf[1024];
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    CPU_ZERO(set);
    char *s = buf;
    while (*s && *s != '\n') {
        char *end;
        long a = strtol(s, &end, 10), b;
        if (end == s)
            return -EINVAL;
        b = a;
        s = end;
        if (*s == '-') {
            b = strtol(s + 1, &end, 10);
            s = end;
        }
        for (long c = a; c <= b && c < CPU_SETSIZE; c++)
            CPU_SET(c, set);
        if (*s == ',')
            s++;
    }
    return 0;
}

static void free_ring(tfu_ring *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; r->threads && i < r->nthreads; i++) {
        struct tfu_thread *t = &r->threads[i];
        if (t->ring_ok)
            io_uring_queue_exit(&t->ring);
        if (t->efd >= 0)
            close(t->efd);
        if (t->hdr_base)
            munmap(t->hdr_base, t->hdr_len);
        if (t->pay_base)
            munmap(t->pay_base, t->pay_len);
        free(t->qids);
        free(t->ents);
        free(t->iov);
        free(t->resub);
        free(t->scratch);
        free(t->backed);
        free(t->ready.slots);
        free(t->commits.slots);
    }
    free(r->threads);
    free(r->qid_thread);
    free(r->qid_cpu);
    free(r->hdr);
    free(r->pay);
    free(r->state);
    free(r->lastcmd);
    free(r->held);
    free(r->qs);
    free(r->want);
    free(r->registered);
    free(r->fill_fd);
    free(r->fill_off);
    free(r->fill_len);
    free(atomic_load(&r->kick_path));
    if (r->notify_fd >= 0)
        close(r->notify_fd);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static int join_all(tfu_ring *r, int timeout_ms);

int tfu_ring_create(const struct tfu_ring_params *p, tfu_ring **out)
{
    return tfu_ring_create_ex(p, NULL, out);
}

int tfu_ring_create_ex(const struct tfu_ring_params *p, const struct tfu_ring_tuning *tun,
                       tfu_ring **out)
{
    if (!p || !out)
        return -EINVAL;
    *out = NULL;
    uint32_t cap = p->max_depth ? p->max_depth : p->depth;
    if (p->fuse_fd < 0 || p->nr_queues == 0 || p->nr_queues > 65536 || p->depth == 0 ||
        cap < p->depth || p->payload_size < 8192 || (uint64_t)p->nr_queues * cap > (1u << 24))
        return -EINVAL;

    tfu_ring *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->p = *p;
    if (tun)
        r->tun = *tun;
    else
        tfu_ring_default_tuning(&r->tun);
    r->tun.qid_cpu = NULL; /* copied below */
    r->notify_fd = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->cap = cap;
    r->nent = p->nr_queues * cap;

    int rc = -ENOMEM;
    r->qid_thread = calloc(p->nr_queues, sizeof(uint32_t));
    r->qid_cpu = calloc(p->nr_queues, sizeof(int32_t));
    r->hdr = calloc(r->nent, sizeof(void *));
    r->pay = calloc(r->nent, sizeof(void *));
    r->state = calloc(r->nent, 1);
    r->lastcmd = calloc(r->nent, 1);
    r->held = calloc(r->nent, 1);
    r->qs = calloc(p->nr_queues, sizeof *r->qs);
    r->want = calloc(p->nr_queues, sizeof *r->want);
    r->fill_fd = calloc(r->nent, sizeof *r->fill_fd);
    r->fill_off = calloc(r->nent, sizeof *r->fill_off);
    r->fill_len = calloc(r->nent, sizeof *r->fill_len);
    r->registered = calloc(p->nr_queues, sizeof *r->registered);
    if (!r->qid_thread || !r->qid_cpu || !r->hdr || !r->pay || !r->state || !r->lastcmd ||
        !r->held || !r->qs || !r->want || !r->registered || !r->fill_fd || !r->fill_off ||
        !r->fill_len)
        goto fail;
    for (uint32_t e = 0; e < r->nent; e++)
        r->fill_fd[e] = -1;
    for (uint32_t q = 0; q < p->nr_queues; q++)
        atomic_init(&r->want[q], p->depth);
    memset(r->state, ST_RELEASED, r->nent); /* nothing in the kernel yet */

    /* qid -> CPU of the serving thread */
    if (tun && tun->qid_cpu) {
        for (uint32_t q = 0; q < p->nr_queues; q++) {
            if (tun->qid_cpu[q] < 0) {
                rc = -EINVAL;
                goto fail;
            }
            r->qid_cpu[q] = tun->qid_cpu[q];
        }
    } else {
        cpu_set_t online;
        int have = read_cpulist("/sys/devices/system/cpu/online", &online) == 0;
        uint32_t nonline = 0;
        int32_t *onl = calloc(p->nr_queues, sizeof(int32_t));
        if (!onl)
            goto fail;
        for (uint32_t q = 0; q < p->nr_queues; q++)
            if (!have || (q < CPU_SETSIZE && CPU_ISSET(q, &online)))
                onl[nonline++] = (int32_t)q;
        for (uint32_t q = 0, k = 0; q < p->nr_queues; q++) {
            if (!have || (q < CPU_SETSIZE && CPU_ISSET(q, &online)))
                r->qid_cpu[q] = (int32_t)q;
            else if (nonline)
                r->qid_cpu[q] = onl[k++ % nonline]; /* offline: an online CPU's thread */
            else
                r->qid_cpu[q] = (int32_t)q;
        }
        free(onl);
    }

    /* threads = distinct CPUs, in order of first appearance */
    r->threads = calloc(p->nr_queues, sizeof *r->threads);
    if (!r->threads)
        goto fail;
    for (uint32_t q = 0; q < p->nr_queues; q++) {
        uint32_t ti;
        for (ti = 0; ti < r->nthreads; ti++)
            if (r->threads[ti].cpu == r->qid_cpu[q])
                break;
        if (ti == r->nthreads) {
            struct tfu_thread *t = &r->threads[r->nthreads++];
            t->r = r;
            t->idx = ti;
            t->cpu = r->qid_cpu[q];
            t->efd = -1;
            t->qids = calloc(p->nr_queues, sizeof(uint32_t));
            if (!t->qids)
                goto fail;
        }
        struct tfu_thread *t = &r->threads[ti];
        t->qids[t->nq++] = q;
        r->qid_thread[q] = ti;
    }
    for (uint32_t ti = 0; ti < r->nthreads; ti++) {
        struct tfu_thread *t = &r->threads[ti];
        t->nent = t->nq * cap;
        t->ents = calloc(t->nent, sizeof(uint32_t));
        if (!t->ents)
            goto fail;
        for (uint32_t i = 0; i < t->nq; i++)
            for (uint32_t d = 0; d < cap; d++)
                t->ents[i * cap + d] = t->qids[i] * cap + d;
        if (spsc_init(&t->ready, t->nent) < 0 || spsc_init(&t->commits, t->nent) < 0)
            goto fail;
    }

    r->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->notify_fd < 0) {
        rc = -errno;
        goto fail;
    }

    /* start threads */
    for (uint32_t ti = 0; ti < r->nthreads; ti++) {
        struct tfu_thread *t = &r->threads[ti];
        atomic_store(&t->alive, 1);
        int e = pthread_create(&t->pth, NULL, thread_main, t);
        if (e) {
            atomic_store(&t->alive, 0);
            rc = -e;
            goto fail_threads;
        }
        t->created = 1;
    }
    /* wait for all of them */
    rc = 0;
    pthread_mutex_lock(&r->mu);
    for (uint32_t ti = 0; ti < r->nthreads; ti++) {
        struct tfu_thread *t = &r->threads[ti];
        while (t->state == TS_SETUP)
            pthread_cond_wait(&r->cv, &r->mu);
        /* Not `state == TS_FAILED`: a failed thread goes on to TS_EXITED at once, and a
         * missed failure would leave a queue without entries, which hangs every request
         * of the connection. setup_err stays. */
        if (t->setup_err < 0 && rc == 0)
            rc = t->setup_err;
    }
    pthread_mutex_unlock(&r->mu);
    if (rc < 0)
        goto fail_threads;
    *out = r;
    return 0;

fail_threads:
    atomic_store(&r->stop, 2);
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    join_all(r, -1);
fail:
    free_ring(r);
    return rc;
}

int tfu_ring_start(tfu_ring *r)
{
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    if (r->start_flag || atomic_load(&r->stop)) {
        pthread_mutex_unlock(&r->mu);
        return -EALREADY;
    }
    r->start_flag = 1;
    pthread_cond_broadcast(&r->cv);
    for (uint32_t ti = 0; ti < r->nthreads; ti++) {
        struct tfu_thread *t = &r->threads[ti];
        while (t->state == TS_READY)
            pthread_cond_wait(&r->cv, &r->mu);
        if (t->submit_err < 0 && rc == 0)
            rc = t->submit_err;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* accessors                                                                 */

uint32_t tfu_ring_entry_count(tfu_ring *r) { return r->nent; }

void *tfu_ring_header(tfu_ring *r, uint32_t e) { return e < r->nent ? r->hdr[e] : NULL; }

void *tfu_ring_payload(tfu_ring *r, uint32_t e) { return e < r->nent ? r->pay[e] : NULL; }

int tfu_ring_notify_fd(tfu_ring *r) { return r->notify_fd; }

int tfu_ring_error(tfu_ring *r) { return atomic_load(&r->error); }

/* ------------------------------------------------------------------------ */
/* trio side                                                                 */

static uint32_t take_once(tfu_ring *r, uint32_t *out, uint32_t max)
{
    uint32_t n = 0, nt = r->nthreads;
    uint32_t start = r->take_rr++;
    for (uint32_t k = 0; k < nt && n < max; k++) {
        struct tfu_thread *t = &r->threads[(start + k) % nt];
        n += spsc_pop_batch(&t->ready, out + n, max - n);
    }
    for (uint32_t i = 0; i < n; i++)
        r->held[out[i]] = 1;
    return n;
}

static int any_ready(tfu_ring *r)
{
    for (uint32_t ti = 0; ti < r->nthreads; ti++)
        if (spsc_nonempty(&r->threads[ti].ready))
            return 1;
    return 0;
}

int tfu_ring_take(tfu_ring *r, uint32_t *out, uint32_t max, int32_t poll_us)
{
    if (!max)
        return 0;
    uint32_t n = take_once(r, out, max);
    if (n)
        return (int)n;
    if (poll_us < 0)
        poll_us = (int32_t)r->p.trio_poll_us;
    if (poll_us == 0)
        return 0;
    uint64_t deadline = now_ns() + (uint64_t)poll_us * 1000u;
    for (;;) {
        for (int k = 0; k < 32; k++) {
            if (any_ready(r))
                return (int)take_once(r, out, max);
            cpu_relax();
        }
        if (now_ns() >= deadline)
            return 0;
        /* Polite spinning: if a client or queue thread is runnable on this CPU, let
         * it run (it is probably the one that will produce our next request). */
        sched_yield();
    }
}

int tfu_ring_prepare_sleep(tfu_ring *r)
{
    atomic_store(&r->trio_asleep, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (!any_ready(r))
        return 1;
    if (!atomic_exchange(&r->trio_asleep, 0)) {
        /* a queue thread already claimed the wake-up and writes (or wrote)
         * the eventfd: drain what is there; a late write only causes one
         * spurious wake-up */
        uint64_t v;
        (void)!read(r->notify_fd, &v, sizeof v);
    }
    return 0;
}

void tfu_ring_wakeup_ack(tfu_ring *r)
{
    uint64_t v;
    (void)!read(r->notify_fd, &v, sizeof v);
    atomic_store(&r->trio_asleep, 0);
}

static void set_out_header(tfu_ring *r, uint32_t e, int32_t error, uint32_t payload_len)
{
    struct fuse_uring_req_header *h = r->hdr[e];
    struct fuse_in_header in;
    memcpy(&in, h->in_out, sizeof in);
    struct fuse_out_header o = {
        .len = (uint32_t)sizeof(struct fuse_out_header) + payload_len,
        .error = error,
        .unique = in.unique,
    };
    memcpy(h->in_out, &o, sizeof o);
    h->ring_ent_in_out.payload_sz = payload_len;
}

int tfu_ring_commit(tfu_ring *r, uint32_t e, int32_t error, uint32_t payload_len)
{
    if (e >= r->nent || !r->held[e])
        return -EINVAL;
    if (error > 0 || error <= -512)
        return -EINVAL;
    if (error)
        payload_len = 0;
    if (payload_len > r->p.payload_size)
        return -EINVAL;
    set_out_header(r, e, error, payload_len);
    r->held[e] = 0;
    spsc_push(&r->threads[r->qid_thread[ent_qid(r, e)]].commits, e);
    return 0;
}

/* Below this a read costs less than handing it over (a few µs). */
#define TFU_FILL_HANDOFF_MIN 32768u

/* The reply to the READ in entry e is up to len bytes of fd at offset: the copy that a
 * read handler would do, done in C. Whoever is free does it: the serving queue thread
 * if it has no such copy queued (it then copies on the client's CPU, and the kernel's
 * copy to the client finds the data in that CPU's cache), else the caller, now, so that
 * the copies of a large read are spread over both sides. fd must stay open until the
 * reply is sent (an open file's handle does: the kernel does not release a file while
 * a read on it is in flight). */
int tfu_ring_commit_from_fd(tfu_ring *r, uint32_t e, int32_t fd, uint64_t offset, uint32_t len)
{
    if (e >= r->nent || !r->held[e] || fd < 0 || len > r->p.payload_size)
        return -EINVAL;
    struct tfu_thread *t = &r->threads[r->qid_thread[ent_qid(r, e)]];
    r->fill_fd[e] = fd;
    r->fill_off[e] = offset;
    r->fill_len[e] = len;
    if (len >= TFU_FILL_HANDOFF_MIN && atomic_load(&t->fills_queued) == 0 &&
        atomic_load(&t->alive)) {
        atomic_fetch_add(&t->fills_queued, 1);
    } else {
        fill_reply(r, e); /* clears fill_fd: the thread only commits */
        RELAXED_INC(t->fills_here);
    }
    r->held[e] = 0;
    spsc_push(&t->commits, e); /* release: the thread sees the fill fields */
    return 0;
}

int tfu_ring_flush(tfu_ring *r)
{
    int woke = 0;
    atomic_thread_fence(memory_order_seq_cst);
    for (uint32_t ti = 0; ti < r->nthreads; ti++) {
        struct tfu_thread *t = &r->threads[ti];
        if (!spsc_nonempty(&t->commits))
            continue;
        if (atomic_load(&t->asleep) && atomic_exchange(&t->asleep, 0)) {
            if (atomic_load(&t->alive))
                eventfd_poke(t->efd);
            woke++;
        }
    }
    return woke;
}

int tfu_ring_grow(tfu_ring *r, uint32_t qid, uint32_t entries)
{
    if (qid >= r->p.nr_queues)
        return -EINVAL;
    if (atomic_load(&r->stop) || atomic_load(&r->conn_gone))
        return -ENOTCONN;
    if (entries > r->cap)
        entries = r->cap;
    uint32_t want = atomic_load(&r->want[qid]);
    if (entries <= want)
        return (int)want;
    atomic_store(&r->want[qid], entries);
    struct tfu_thread *t = &r->threads[r->qid_thread[qid]];
    atomic_store(&t->grow_flag, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&t->asleep) && atomic_exchange(&t->asleep, 0) && atomic_load(&t->alive))
        eventfd_poke(t->efd);
    return (int)entries;
}

uint32_t tfu_ring_max_depth(tfu_ring *r) { return r->cap; }

int tfu_ring_set_kick_path(tfu_ring *r, const char *mountpoint)
{
    char *p = strdup(mountpoint);
    if (!p)
        return -ENOMEM;
    char *none = NULL;
    if (!atomic_compare_exchange_strong(&r->kick_path, &none, p)) {
        free(p); /* set once: threads may be reading the first one */
        return -EALREADY;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* shutdown and introspection                                                */

int tfu_ring_stop(tfu_ring *r, int force)
{
    int want = force ? 2 : 1;
    int cur = atomic_load(&r->stop);
    while (cur < want && !atomic_compare_exchange_weak(&r->stop, &cur, want))
        ;
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->cv); /* threads still waiting for start */
    for (uint32_t ti = 0; ti < r->nthreads; ti++) {
        struct tfu_thread *t = &r->threads[ti];
        if (t->state != TS_EXITED && t->efd >= 0)
            eventfd_poke(t->efd);
    }
    pthread_mutex_unlock(&r->mu);
    return 0;
}

static int join_all(tfu_ring *r, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    int rc = 0;
    for (uint32_t ti = 0; ti < r->nthreads; ti++) {
        struct tfu_thread *t = &r->threads[ti];
        if (!t->created || t->joined)
            continue;
        int e = timeout_ms >= 0 ? pthread_clockjoin_np(t->pth, NULL, CLOCK_MONOTONIC, &dl)
                                : pthread_join(t->pth, NULL);
        if (e == 0)
            t->joined = 1;
        else
            rc = e == ETIMEDOUT ? -ETIMEDOUT : -e;
    }
    return rc;
}

int tfu_ring_join(tfu_ring *r, int timeout_ms) { return join_all(r, timeout_ms); }

void tfu_ring_destroy(tfu_ring *r)
{
    if (!r)
        return;
    int all = 1;
    for (uint32_t ti = 0; ti < r->nthreads; ti++)
        if (r->threads[ti].created && !r->threads[ti].joined)
            all = 0;
    if (!all) {
        tfu_ring_stop(r, 1);
        join_all(r, -1);
    }
    free_ring(r);
}

int tfu_ring_stats(tfu_ring *r, uint32_t qid, struct tfu_queue_stats *out)
{
    if (qid >= r->p.nr_queues || !out)
        return -EINVAL;
    struct tfu_thread *t = &r->threads[r->qid_thread[qid]];
    memset(out, 0, sizeof *out);
    out->requests = RELAXED_LOAD(r->qs[qid].requests);
    out->commits = RELAXED_LOAD(r->qs[qid].commits);
    out->errors = RELAXED_LOAD(r->qs[qid].errors);
    out->last_error = RELAXED_LOAD(r->qs[qid].last_error);
    out->batches = RELAXED_LOAD(t->batches);
    out->wakeups_sent = RELAXED_LOAD(t->wakeups_sent);
    out->sleeps = RELAXED_LOAD(t->sleeps);
    out->woken = RELAXED_LOAD(t->woken);
    out->cpu = RELAXED_LOAD(t->pinned_cpu);
    out->registered = RELAXED_LOAD(r->registered[qid]);
    out->kicks = (uint32_t)RELAXED_LOAD(t->kicks);
    out->fills = RELAXED_LOAD(t->fills);
    out->fills_here = RELAXED_LOAD(t->fills_here);
    out->backing_reads = RELAXED_LOAD(r->qs[qid].backing_reads);
    out->backing_writes = RELAXED_LOAD(r->qs[qid].backing_writes);
    return 0;
}

int tfu_ring_status(tfu_ring *r, struct tfu_ring_status *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->threads = r->nthreads;
    for (uint32_t ti = 0; ti < r->nthreads; ti++)
        out->threads_alive += atomic_load(&r->threads[ti].alive) ? 1 : 0;
    for (uint32_t e = 0; e < r->nent; e++) {
        uint8_t s = __atomic_load_n(&r->state[e], __ATOMIC_RELAXED);
        if (s == ST_KERNEL)
            out->in_kernel++;
        else if (s == ST_USER)
            out->in_user++;
        else
            out->released++;
    }
    out->conn_gone = atomic_load(&r->conn_gone);
    out->error = atomic_load(&r->error);
    out->stopping = atomic_load(&r->stop);
    return 0;
}

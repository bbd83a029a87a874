/*
 * _ring.h - C core of the FUSE-over-io-uring transport of trio-fuse-uring.
 *
 * One `tfu_ring` holds every queue of one FUSE connection: one OS thread per
 * online CPU (pinned, named "tfu-q<cpu>"), each owning its own io_uring and the
 * entries of the qid(s) it serves.  Only queue threads ever submit SQEs; the
 * trio thread talks to them through lock-free single-producer/single-consumer
 * rings of entry indices plus two "asleep" flags and eventfds:
 *
 *   thread -> trio : ready ring (entries that hold a request), notify eventfd
 *                    written only when trio declared itself asleep
 *                    (tfu_ring_prepare_sleep), at most once per sleep.
 *   trio -> thread : commit ring (entries whose reply is in their buffers),
 *                    the thread's own eventfd (a read is pending in its ring)
 *                    written by tfu_ring_flush only when the thread is asleep.
 *
 * Conventions: functions return >= 0 on success and -errno on failure, never
 * call back into Python and are safe to call with the GIL released.  The
 * "trio side" functions (take, prepare_sleep, wakeup_ack, commit, flush) must
 * be called from one thread at a time (the trio thread).
 *
 * The part between TFU_CDEF_BEGIN and TFU_CDEF_END is fed verbatim to
 * cffi's cdef() by _ring_build.py: keep it free of preprocessor conditionals,
 * static asserts and anything else pycparser cannot read.
 *
 * Kernel ABI: FUSE 7.42..7.45 (Linux 6.14..6.18): include/uapi/linux/fuse.h and
 * fs/fuse/dev_uring.c in the kernel sources.
 */
#ifndef TFU_RING_H
#define TFU_RING_H

#include <stdint.h>
#include <sys/types.h>

/* Bump whenever the C API or the struct layouts below change: Python compares
 * tfu_ring_abi_version() with the string parsed from this header to detect a
 * stale compiled module. */
#define TFU_RING_ABI_VERSION "tfu-ring-7"

/* TFU_CDEF_BEGIN */

/* ---- FUSE uapi (include/uapi/linux/fuse.h, protocol 7.42+) ---- */

struct fuse_in_header {         /* 40 bytes */
    uint32_t len;
    uint32_t opcode;
    uint64_t unique;
    uint64_t nodeid;
    uint32_t uid;
    uint32_t gid;
    uint32_t pid;
    uint16_t total_extlen;
    uint16_t padding;
};

struct fuse_out_header {        /* 16 bytes */
    uint32_t len;
    int32_t error;
    uint64_t unique;
};

struct fuse_uring_ent_in_out {  /* 32 bytes */
    uint64_t flags;
    uint64_t commit_id;         /* == unique of the request held by the entry */
    uint32_t payload_sz;        /* request: bytes in payload; reply: bytes written by us */
    uint32_t padding;
    uint64_t reserved;
};

struct fuse_uring_req_header {  /* 288 bytes: iov[0] of REGISTER */
    uint8_t in_out[128];        /* fuse_in_header (request) / fuse_out_header (reply) */
    uint8_t op_in[128];         /* the op's fixed argument struct */
    struct fuse_uring_ent_in_out ring_ent_in_out;
};

struct fuse_uring_cmd_req {     /* 24 bytes, in the SQE128 command area */
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;
    uint8_t padding[6];
};

enum fuse_uring_cmd {
    FUSE_IO_URING_CMD_INVALID = 0,
    FUSE_IO_URING_CMD_REGISTER = 1,
    FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2
};

/* ---- tfu_ring API ---- */

typedef struct tfu_ring tfu_ring;
typedef struct tfu_backing tfu_backing;   /* _backing.c: file handle -> backing fd */

struct tfu_ring_params {
    int fuse_fd;            /* /dev/fuse fd, INIT already answered with FUSE_OVER_IO_URING */
    uint32_t nr_queues;     /* = number of possible CPUs */
    uint32_t depth;         /* entries registered per queue at start */
    uint32_t max_depth;     /* entries a queue may grow to (tfu_ring_grow); 0 = depth.
                               Buffers are reserved (address space) for all of them and
                               touched only when registered. */
    uint32_t payload_size;  /* >= max(8192, max_write, max_pages*4096) */
    uint32_t ring_poll_us;  /* queue-thread spin before sleeping; 0 = never spin */
    uint32_t trio_poll_us;  /* default spin budget of tfu_ring_take */
};

/* Optional knobs (tfu_ring_create_ex).  Fill with tfu_ring_default_tuning(). */
struct tfu_ring_tuning {
    uint32_t setup_flags;        /* extra IORING_SETUP_* flags; SQE128|CQSIZE|SUBMIT_ALL are
                                    always set, TASKRUN_FLAG is added with COOP/DEFER_TASKRUN */
    int32_t fixed_file;          /* register /dev/fuse as fixed file 0 in every ring */
    int32_t register_ring_fd;    /* io_uring_register_ring_fd in every thread */
    const int32_t *qid_cpu;      /* NULL = automatic; else nr_queues CPU numbers: qid q is served
                                    by the thread pinned to qid_cpu[q] (one thread per distinct
                                    value) */
    void (*wake_trio)(void *);   /* NULL = write the notify eventfd (the default); else called
                                    by a queue thread instead of that write, with wake_ctx
                                    (the measured alternative: a callback into Python that
                                    uses trio's run_sync_soon, see _ring.py) */
    void *wake_ctx;
    tfu_backing *backing;        /* NULL = none; else READ/WRITE on its handles are served
                                    by the queue threads (must outlive the ring) */
};

struct tfu_queue_stats {
    uint64_t requests;      /* CQEs with res == 0 (requests delivered) on this qid */
    uint64_t batches;       /* reap rounds of the serving thread that delivered >= 1 request */
    uint64_t commits;       /* COMMIT_AND_FETCH SQEs submitted on this qid */
    uint64_t wakeups_sent;  /* eventfd writes to trio by the serving thread */
    uint64_t sleeps;        /* times the serving thread blocked in io_uring_enter */
    uint64_t errors;        /* unexpected CQE results / submit errors on this qid */
    int32_t last_error;     /* -errno of the last of those, or 0 */
    int32_t cpu;            /* CPU the serving thread is pinned to, -1 if unpinned */
    uint64_t woken;         /* times the serving thread was woken by flush/stop/grow */
    uint32_t registered;    /* entries registered on this qid so far */
    uint32_t kicks;         /* kicks answered by the serving thread (tfu_ring_grow) */
    uint32_t padding;
    uint64_t fills;         /* replies read from a file by the serving thread */
    uint64_t fills_here;    /* ... and by the caller of tfu_ring_commit_from_fd */
    uint64_t backing_reads;  /* READs served from a backing file by the serving thread */
    uint64_t backing_writes; /* WRITEs ... */
};

struct tfu_ring_status {
    uint32_t threads;           /* queue threads created */
    uint32_t threads_alive;     /* not yet exited */
    uint32_t in_kernel;         /* entries with a command pending in the kernel */
    uint32_t in_user;           /* entries holding a request (ready, taken or being committed) */
    uint32_t released;          /* entries released (-ENOTCONN, failed REGISTER, -ECANCELED) */
    int32_t conn_gone;          /* 1 once -ENOTCONN/-ECONNABORTED was seen */
    int32_t error;              /* tfu_ring_error() */
    int32_t stopping;           /* 0, 1 (stop) or 2 (force) */
};

const char *tfu_ring_abi_version(void);
void tfu_ring_default_tuning(struct tfu_ring_tuning *out);

int tfu_ring_create(const struct tfu_ring_params *p, tfu_ring **out);
int tfu_ring_create_ex(const struct tfu_ring_params *p, const struct tfu_ring_tuning *t,
                       tfu_ring **out);
int tfu_ring_start(tfu_ring *r);

uint32_t tfu_ring_entry_count(tfu_ring *r);
void *tfu_ring_header(tfu_ring *r, uint32_t e);
void *tfu_ring_payload(tfu_ring *r, uint32_t e);
int tfu_ring_notify_fd(tfu_ring *r);

int tfu_ring_take(tfu_ring *r, uint32_t *out, uint32_t max, int32_t poll_us);
int tfu_ring_prepare_sleep(tfu_ring *r);
void tfu_ring_wakeup_ack(tfu_ring *r);

int tfu_ring_commit(tfu_ring *r, uint32_t e, int32_t error, uint32_t payload_len);
int tfu_ring_commit_from_fd(tfu_ring *r, uint32_t e, int32_t fd, uint64_t offset, uint32_t len);
int tfu_ring_grow(tfu_ring *r, uint32_t qid, uint32_t entries);
int tfu_ring_set_kick_path(tfu_ring *r, const char *mountpoint);
uint32_t tfu_ring_max_depth(tfu_ring *r);
int tfu_ring_flush(tfu_ring *r);

int tfu_ring_stop(tfu_ring *r, int force);
int tfu_ring_join(tfu_ring *r, int timeout_ms);
void tfu_ring_destroy(tfu_ring *r);
int tfu_ring_error(tfu_ring *r);
int tfu_ring_stats(tfu_ring *r, uint32_t qid, struct tfu_queue_stats *out);
int tfu_ring_status(tfu_ring *r, struct tfu_ring_status *out);

/* ---- backing files (_backing.c) ---- */

int tfu_backing_create(tfu_backing **out);
void tfu_backing_destroy(tfu_backing *b);
int tfu_backing_attach(tfu_backing *b, uint64_t fh, int fd);
int tfu_backing_detach(tfu_backing *b, uint64_t fh);
uint32_t tfu_backing_count(tfu_backing *b);
int tfu_backing_serve(tfu_backing *b, uint32_t opcode, const void *op, void *data,
                      uint32_t room, int32_t *error, uint32_t *n);
ssize_t tfu_devfuse_read(tfu_backing *b, int fuse_fd, void *buf, size_t len, void *rbuf,
                         uint32_t rlen);
void tfu_backing_devfuse_stats(tfu_backing *b, uint64_t *reads, uint64_t *writes);

/* ---- directory listings (_dirents.c) ---- */

int64_t tfu_dirents_encode(const char *names, uint64_t names_len, const uint64_t *inos,
                           const uint32_t *modes, uint32_t n, uint64_t first_off, int plus,
                           uint8_t *out, uint64_t out_len, uint64_t *pos, uint32_t *bad);
int64_t tfu_dir_scan(int fd, uint8_t *names, uint64_t names_cap, uint64_t *inos,
                     uint32_t *modes, uint32_t cap, uint64_t *names_len);

/* TFU_CDEF_END */

/* For _ring.c: does the table have any entry? (a lock-free peek) */
uint32_t tfu_backing_count_hint(tfu_backing *b);

/* Layout checks against the ABI (sizes/offsets verified on Linux 6.18). */
#include <stddef.h>
_Static_assert(sizeof(struct fuse_in_header) == 40, "fuse_in_header");
_Static_assert(sizeof(struct fuse_out_header) == 16, "fuse_out_header");
_Static_assert(sizeof(struct fuse_uring_ent_in_out) == 32, "fuse_uring_ent_in_out");
_Static_assert(offsetof(struct fuse_uring_ent_in_out, commit_id) == 8, "commit_id");
_Static_assert(offsetof(struct fuse_uring_ent_in_out, payload_sz) == 16, "payload_sz");
_Static_assert(sizeof(struct fuse_uring_req_header) == 288, "fuse_uring_req_header");
_Static_assert(offsetof(struct fuse_uring_req_header, op_in) == 128, "op_in");
_Static_assert(offsetof(struct fuse_uring_req_header, ring_ent_in_out) == 256, "ring_ent_in_out");
_Static_assert(sizeof(struct fuse_uring_cmd_req) == 24, "fuse_uring_cmd_req");
_Static_assert(offsetof(struct fuse_uring_cmd_req, commit_id) == 8, "cmd commit_id");
_Static_assert(offsetof(struct fuse_uring_cmd_req, qid) == 16, "cmd qid");

#endif /* TFU_RING_H */

/*
 * _dirents.c - a whole directory listing encoded as fuse_dirent records in one call.
 *
 * readdir of a large directory costs Python per entry when each entry is packed on
 * its own.  A DirListing (see _dirlisting.py) is encoded once, here: every entry's
 * fuse_dirent (READDIR) or fuse_direntplus without attributes (READDIRPLUS), back to
 * back, with the byte offset where each entry starts.  A reply is then a slice of
 * that blob, cut at an entry boundary.
 */
#include "_ring.h"

#include <errno.h>
#include <string.h>

#define TFU_ENTRY_OUT 128u /* struct fuse_entry_out */
#define TFU_DIRENT_HDR 24u /* struct fuse_dirent without the name */
#define TFU_NAME_MAX 1024u /* the kernel refuses longer names (FUSE_NAME_MAX) */

static inline uint32_t align8(uint32_t n) { return (n + 7u) & ~7u; }

/* names: n NUL-terminated names back to back (names_len bytes in all); inos, modes:
 * n values each (modes: st_mode, only the type bits count); first_off: the cookie of
 * entry 0 is first_off + 1, and so on.  Writes the records to out (out_len bytes,
 * NULL to only measure) and, to pos, n + 1 offsets (entry i spans pos[i]..pos[i+1]).
 * Returns the bytes needed, or -EINVAL if a name is empty, too long, contains '/',
 * or the names do not add up (*bad is then the entry's index). */
int64_t tfu_dirents_encode(const char *names, uint64_t names_len, const uint64_t *inos,
                           const uint32_t *modes, uint32_t n, uint64_t first_off, int plus,
                           uint8_t *out, uint64_t out_len, uint64_t *pos, uint32_t *bad)
{
    uint64_t at = 0, used = 0;
    uint32_t extra = plus ? TFU_ENTRY_OUT : 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *name = names + at;
        const char *end = at < names_len ? memchr(name, 0, names_len - at) : NULL;
        uint32_t len = end ? (uint32_t)(end - name) : 0;
        if (!end || len == 0 || len > TFU_NAME_MAX || memchr(name, '/', len)) {
            *bad = i;
            return -EINVAL;
        }
        at += (uint64_t)len + 1;
        uint32_t rec = extra + align8(TFU_DIRENT_HDR + len);
        if (pos)
            pos[i] = used;
        if (out) {
            if (used + rec > out_len)
                return -ENOSPC;
            uint8_t *p = out + used;
            memset(p, 0, rec); /* entry_out all zero: "no attributes, no lookup" */
            p += extra;
            uint64_t off = first_off + i + 1;
            uint32_t type = (modes[i] >> 12) & 0xF;
            memcpy(p, &inos[i], 8);
            memcpy(p + 8, &off, 8);
            memcpy(p + 16, &len, 4);
            memcpy(p + 20, &type, 4);
            memcpy(p + 24, name, len);
        }
        used += rec;
    }
    if (pos)
        pos[n] = used;
    return (int64_t)used;
}

/* ---- reading a directory ---------------------------------------------------------- */

#include <sys/syscall.h>
#include <unistd.h>

struct tfu_linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Every entry of directory fd but "." and "..", from its start: names NUL-terminated
 * back to back into names (names_cap bytes; *names_len set to the bytes used), inode
 * numbers into inos and S_IFMT type bits (0 if unknown) into modes (cap entries each).
 * Returns the number of entries, -ENOSPC if a buffer is too small (call again with
 * larger ones) or -errno. */
int64_t tfu_dir_scan(int fd, uint8_t *names, uint64_t names_cap, uint64_t *inos,
                     uint32_t *modes, uint32_t cap, uint64_t *names_len)
{
    char buf[65536] __attribute__((aligned(8)));
    uint64_t used = 0;
    uint32_t n = 0;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return -errno;
    for (;;) {
        long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (got < 0)
            return -errno;
        if (got == 0)
            break;
        for (long at = 0; at < got;) {
            struct tfu_linux_dirent64 *d = (struct tfu_linux_dirent64 *)(buf + at);
            at += d->d_reclen;
            const char *name = d->d_name;
            if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))
                continue;
            size_t len = strlen(name) + 1;
            if (n == cap || used + len > names_cap)
                return -ENOSPC;
            memcpy(names + used, name, len);
            used += len;
            inos[n] = d->d_ino;
            modes[n] = (uint32_t)d->d_type << 12; /* DTTOIF */
            n++;
        }
    }
    *names_len = used;
    return n;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The spill file and its slots (see sp_spill.h); which segments go is the
 * tables' business (sp_spill_reclaim in table.c). Writes of a sweep go to
 * the kernel in one submission; a read is one request waited for. Without
 * io_uring (disabled by sysctl or seccomp) the same calls are pwrite and
 * pread.
 */
#include "sp_spill.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_log.h"

#define SPILL_RING_ENTRIES SP_SPILL_BATCH_MAX

static int open_file(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
        return -errno;
    /* A file system without O_TMPFILE: a named file, unlinked at once. */
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/spate-spill-XXXXXX", dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    unlink(path);
    return fd;
}

int sp_spill_init(struct sp_spill *s, struct sp_budget *budget,
                  const struct sp_spill_config *config)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    if (config->dir == NULL || config->dir[0] == '\0' || config->batch > SP_SPILL_BATCH_MAX)
        return -EINVAL;
    s->config = *config;
    if (s->config.batch == 0)
        s->config.batch = SP_SPILL_BATCH_DEFAULT;
    s->budget = budget;
    s->seg_bytes = budget->pool->segment_bytes;
    uint64_t max = config->max_bytes != 0 ? config->max_bytes / s->seg_bytes : UINT32_MAX;
    s->slot_max = max > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)max;
    int fd = open_file(config->dir);
    if (fd < 0) {
        sp_error("state spill: cannot make a file in %s: %s", config->dir, strerror(-fd));
        return fd;
    }
    s->fd = fd;
    if ((s->peek = malloc(s->seg_bytes)) == NULL) {
        close(fd);
        s->fd = -1;
        return -ENOMEM;
    }
    s->have_ring = io_uring_queue_init(SPILL_RING_ENTRIES, &s->ring, 0) == 0;
    return 0;
}

void sp_spill_deinit(struct sp_spill *s)
{
    SP_ASSERT(s->table_count == 0);
    if (s->have_ring)
        io_uring_queue_exit(&s->ring);
    if (s->fd >= 0)
        close(s->fd);
    free(s->slot_free);
    free(s->tables);
    free(s->peek);
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

int sp_spill_attach(struct sp_spill *s, struct sp_table *t)
{
    if (s->table_count == s->table_cap) {
        uint32_t cap = s->table_cap ? s->table_cap * 2 : 8;
        struct sp_table **tables = realloc(s->tables, cap * sizeof(*tables));
        if (tables == NULL)
            return -ENOMEM;
        s->tables = tables;
        s->table_cap = cap;
    }
    s->tables[s->table_count++] = t;
    return 0;
}

void sp_spill_detach(struct sp_spill *s, struct sp_table *t)
{
    for (uint32_t i = 0; i < s->table_count; i++) {
        if (s->tables[i] == t) {
            s->tables[i] = s->tables[--s->table_count];
            s->hand_table = 0;
            s->hand_seg = 0;
            return;
        }
    }
}

static int slot_take(struct sp_spill *s, uint32_t *slot)
{
    if (s->slot_free_count > 0) {
        *slot = s->slot_free[--s->slot_free_count];
        return 0;
    }
    if (s->slot_count >= s->slot_max)
        return -ENOSPC;
    /* The free stack can hold every slot ever made. */
    if (s->slot_count == s->slot_free_cap) {
        uint32_t cap = s->slot_free_cap < 64 ? 64 : s->slot_free_cap * 2;
        uint32_t *stack = realloc(s->slot_free, (size_t)cap * sizeof(*stack));
        if (stack == NULL)
            return -ENOMEM;
        s->slot_free = stack;
        s->slot_free_cap = cap;
    }
    *slot = s->slot_count++;
    return 0;
}

void sp_spill_free(struct sp_spill *s, uint32_t slot)
{
    SP_ASSERT(slot < s->slot_count && s->slot_free_count < s->slot_count);
    s->slot_free[s->slot_free_count++] = slot;
    SP_ASSERT(s->stats.spilled > 0);
    s->stats.spilled--;
}

/* The rest of a short transfer, with plain calls. */
static int finish_io(int fd, bool write, uint8_t *buf, size_t done, size_t len, uint64_t off)
{
    while (done < len) {
        ssize_t k = write ? pwrite(fd, buf + done, len - done, (off_t)(off + done))
                          : pread(fd, buf + done, len - done, (off_t)(off + done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return write ? -ENOSPC : -EIO; /* a read past the end: the slot was never written */
        done += (size_t)k;
    }
    return 0;
}

/*
 * Transfers segment i of `bufs` to or from file slot slots[i], for i < n:
 * on the ring, submitted together and every submitted one reaped (the
 * kernel is done with every buffer on return), the rest of a short
 * transfer and anything the ring did not take with plain calls. A ring
 * that refused requests is given up (what it did not take stays in its
 * queue and must never reach the kernel later): plain calls from then on.
 * 0 or the first error.
 */
static int transfer(struct sp_spill *s, bool write, uint8_t *const *bufs, const uint32_t *slots,
                    uint32_t n)
{
    SP_ASSERT(n <= SP_SPILL_BATCH_MAX);
    int res[SP_SPILL_BATCH_MAX];
    const int none = INT32_MIN; /* not done on the ring */
    for (uint32_t i = 0; i < n; i++)
        res[i] = none;
    if (s->have_ring) {
        for (uint32_t i = 0; i < n; i++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
            SP_ASSERT(sqe != NULL); /* the ring has a batch's entries, all reaped */
            uint64_t off = (uint64_t)slots[i] * s->seg_bytes;
            if (write)
                io_uring_prep_write(sqe, s->fd, bufs[i], s->seg_bytes, off);
            else
                io_uring_prep_read(sqe, s->fd, bufs[i], s->seg_bytes, off);
            io_uring_sqe_set_data64(sqe, i);
        }
        uint32_t submitted = 0;
        int ret = 0;
        while (submitted < n) {
            ret = io_uring_submit(&s->ring);
            if (ret == -EINTR)
                continue;
            if (ret <= 0)
                break;
            submitted += (uint32_t)ret;
        }
        for (uint32_t got = 0; got < submitted; got++) {
            struct io_uring_cqe *cqe;
            int w;
            while ((w = io_uring_wait_cqe(&s->ring, &cqe)) == -EINTR || w == -EAGAIN)
                ;
            SP_ASSERT(w == 0); /* requests in flight cannot be abandoned */
            res[io_uring_cqe_get_data64(cqe)] = cqe->res;
            io_uring_cqe_seen(&s->ring, cqe);
        }
        if (submitted < n) {
            sp_warn("state spill: the io_uring ring refused requests (%s): plain system calls "
                    "from now on",
                    strerror(ret < 0 ? -ret : EIO));
            io_uring_queue_exit(&s->ring);
            s->have_ring = false;
        }
    }
    int rc = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t off = (uint64_t)slots[i] * s->seg_bytes;
        int r = res[i];
        if (r == none)
            r = finish_io(s->fd, write, bufs[i], 0, s->seg_bytes, off);
        else if (r >= 0)
            r = finish_io(s->fd, write, bufs[i], (size_t)r, s->seg_bytes, off);
        if (r < 0 && rc == 0)
            rc = r;
    }
    return rc;
}

int sp_spill_write(struct sp_spill *s, uint8_t *const *segs, uint32_t n, uint32_t *slots_out)
{
    SP_ASSERT(n <= SP_SPILL_BATCH_MAX);
    uint32_t taken = 0;
    int rc = 0;
    for (; taken < n; taken++) {
        if ((rc = slot_take(s, &slots_out[taken])) < 0)
            break;
    }
    if (rc == 0)
        rc = transfer(s, true, segs, slots_out, n);
    if (rc < 0) {
        for (uint32_t i = 0; i < taken; i++)
            s->slot_free[s->slot_free_count++] = slots_out[i];
        s->stats.write_errors++;
        return rc == -EFBIG || rc == -EDQUOT ? -ENOSPC : rc;
    }
    s->stats.segments_out += n;
    s->stats.spilled += n;
    if (s->stats.spilled > s->stats.spilled_max)
        s->stats.spilled_max = s->stats.spilled;
    return 0;
}

int sp_spill_read(struct sp_spill *s, uint32_t slot, void *seg)
{
    SP_ASSERT(slot < s->slot_count);
    uint8_t *bufs[1] = {seg};
    int rc = transfer(s, false, bufs, &slot, 1);
    if (rc < 0)
        return rc;
    s->stats.segments_in++;
    return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A full disk fails a checkpoint cleanly: on a 1 MiB tmpfs the test mounts
 * (root only; otherwise it exits 77, SKIP), checkpoint 1 fits; checkpoint
 * 2's 2 MiB segment fails with -ENOSPC, publish refuses it, abort removes
 * its pieces and no temporary file is left; then, with the disk filled by
 * another file, checkpoint 3's manifest fails to publish with -ENOSPC.
 * Throughout, checkpoint 1 stays listed, whole and the one restore picks.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>
#include <cmocka.h>

#include "sp_ckpt_store.h"

#define TMPFS_BYTES (1u << 20)

static char dir[256];
static char url[300];

static struct sp_ckpt_store *open_store(void)
{
    struct sp_ckpt_store_config config;
    sp_ckpt_store_config_default(&config);
    config.segments_max = 16;
    config.create = true;
    struct sp_ckpt_store *s = NULL;
    assert_int_equal(sp_ckpt_store_open(url, &config, &s), 0);
    return s;
}

static void begin(struct sp_ckpt_store *s, uint64_t id)
{
    struct sp_ckpt_info info = {
        .checkpoint_id = id, .job = "full-disk", .shard_count = 1, .key_group_end = 16};
    assert_int_equal(sp_ckpt_store_begin(s, &info), 0);
}

static void expect_only_checkpoint_1(struct sp_ckpt_store *s)
{
    uint64_t ids[4];
    assert_int_equal(sp_ckpt_store_list(s, ids, 4), 1);
    assert_true(ids[0] == 1);
    struct sp_ckpt_manifest m;
    assert_int_equal(sp_ckpt_manifest_init(&m, 16, 4, 256), 0);
    assert_int_equal(sp_ckpt_store_latest(s, &m), 0);
    assert_true(m.checkpoint_id == 1);
    assert_int_equal(m.segment_count, 2);
    sp_ckpt_manifest_deinit(&m);
}

static int count_entries(const char *sub)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "ls -A %s/store/%s | wc -l", dir, sub);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    int n = -1;
    assert_int_equal(fscanf(f, "%d", &n), 1);
    pclose(f);
    return n;
}

static void test_full_disk(void **state)
{
    (void)state;
    struct sp_ckpt_store *s = open_store();
    static uint8_t small[64 << 10], big[2 << 20];
    memset(small, 0x5a, sizeof(small));
    memset(big, 0xa5, sizeof(big));
    begin(s, 1);
    assert_int_equal(sp_ckpt_store_write_segment(s, 0, small, sizeof(small), NULL), 0);
    assert_int_equal(sp_ckpt_store_write_segment(s, 0, small, 1000, NULL), 0);
    assert_int_equal(sp_ckpt_store_publish(s, 0), 0);

    /* A segment larger than the disk. */
    begin(s, 2);
    assert_int_equal(sp_ckpt_store_write_segment(s, 0, small, 100, NULL), 0);
    assert_int_equal(sp_ckpt_store_write_segment(s, 0, big, sizeof(big), NULL), -ENOSPC);
    assert_int_equal(sp_ckpt_store_publish(s, 0), -ENOSPC);
    sp_ckpt_store_abort(s);
    assert_int_equal(count_entries("segments"), 2); /* checkpoint 1's; no .tmp file */
    expect_only_checkpoint_1(s);

    /* Segments fit, then the disk fills up before the manifest. */
    begin(s, 3);
    assert_int_equal(sp_ckpt_store_write_segment(s, 0, small, 100, NULL), 0);
    char filler[512];
    snprintf(filler, sizeof(filler), "%s/store/filler", dir);
    int fd = open(filler, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    /* Down to the last byte: tmpfs hands out whole pages, so a small
     * leftover could still take a small manifest. */
    const size_t chunks[] = {64 << 10, 4096, 1};
    for (unsigned c = 0; c < SP_ARRAY_LEN(chunks); c++)
        for (int i = 0; i < 4096 && write(fd, big, chunks[c]) > 0; i++)
            ;
    close(fd);
    assert_int_equal(sp_ckpt_store_publish(s, 0), -ENOSPC);
    sp_ckpt_store_abort(s);
    assert_int_equal(count_entries("manifests"), 1);
    expect_only_checkpoint_1(s);
    sp_ckpt_store_close(s);

    /* After a restart, too; and space back, checkpoint 4 succeeds. */
    unlink(filler);
    s = open_store();
    expect_only_checkpoint_1(s);
    begin(s, 4);
    assert_int_equal(sp_ckpt_store_write_segment(s, 0, small, 100, NULL), 0);
    assert_int_equal(sp_ckpt_store_publish(s, 0), 0);
    sp_ckpt_store_close(s);
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "SKIP: mounting a tmpfs needs root\n");
        return 77;
    }
    snprintf(dir, sizeof(dir), "/tmp/spate-ckpt-enospc-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    char opts[64];
    snprintf(opts, sizeof(opts), "size=%u", TMPFS_BYTES);
    if (mount("tmpfs", dir, "tmpfs", 0, opts) < 0) {
        fprintf(stderr, "SKIP: cannot mount a tmpfs: %s\n", strerror(errno));
        rmdir(dir);
        return 77;
    }
    snprintf(url, sizeof(url), "file://%s/store", dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_disk),
    };
    int ret = cmocka_run_group_tests(tests, NULL, NULL);
    umount2(dir, MNT_DETACH);
    rmdir(dir);
    return ret;
}

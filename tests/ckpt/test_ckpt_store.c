/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint store over the file backend, on a real directory: a
 * checkpoint exists only once published, and reads back verified; an
 * incremental checkpoint references its predecessor's unchanged segments;
 * ids only grow; abort removes what was written; retention keeps the last N
 * and collects unreferenced segments, also after a simulated crash between
 * deleting manifests and deleting segments, and never a segment of a
 * checkpoint still in flight; a corrupted or truncated segment, a missing
 * one, or a damaged manifest makes the previous complete checkpoint the one
 * restore picks. Writes go through io_uring when the machine has it.
 *
 * With an argument DIR, it leaves DIR as a store for the CLI test
 * (test_checkpoint_cli.sh) instead of running the tests: checkpoints 1-4,
 * incremental, with checkpoint 4's newest segment corrupted.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "sp_ckpt_backend.h"
#include "sp_ckpt_store.h"

static char dir[256];
static char url[300];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/spate-ckpt-test-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(url, sizeof(url), "file://%s/store", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static struct sp_ckpt_store *open_store(void)
{
    struct sp_ckpt_store_config config;
    sp_ckpt_store_config_default(&config);
    config.segments_max = 64;
    config.create = true;
    struct sp_ckpt_store *s = NULL;
    assert_int_equal(sp_ckpt_store_open(url, &config, &s), 0);
    return s;
}

static void begin(struct sp_ckpt_store *s, uint64_t id)
{
    struct sp_ckpt_info info = {.checkpoint_id = id,
                                .job = "test-job",
                                .shard_count = 3,
                                .key_group_first = 0,
                                .key_group_end = 128};
    assert_int_equal(sp_ckpt_store_begin(s, &info), 0);
}

/* Segment contents: deterministic per (id, shard), `len` bytes. */
static void payload(uint8_t *buf, size_t len, uint64_t id, uint32_t shard)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 31 + id * 7 + shard * 13);
}

/*
 * Checkpoint `id`: shard `changed` gets a new segment; every other shard's
 * segment is referenced from `prev` (or written too when prev is NULL).
 */
static void write_incremental(struct sp_ckpt_store *s, uint64_t id, uint32_t changed,
                              const struct sp_ckpt_manifest *prev)
{
    static uint8_t buf[3 * 4096 + 17];
    begin(s, id);
    for (uint32_t shard = 0; shard < 3; shard++) {
        int ref = -1;
        for (uint32_t i = 0; prev != NULL && i < prev->segment_count; i++)
            if (prev->segments[i].shard == shard)
                ref = (int)i;
        if (shard == changed || ref < 0) {
            size_t len = sizeof(buf) - shard;
            payload(buf, len, id, shard);
            assert_int_equal(sp_ckpt_store_write_segment(s, shard, buf, len, NULL), 0);
        } else {
            assert_int_equal(sp_ckpt_store_reference(s, &prev->segments[ref]), 0);
        }
    }
    char offset[32];
    int n = snprintf(offset, sizeof(offset), "%llu", (unsigned long long)id * 1000);
    assert_int_equal(sp_ckpt_store_set_position(s, "orders/0", 8, offset, (uint32_t)n), 0);
    assert_int_equal(sp_ckpt_store_publish(s, 0), 0);
}

static void manifest(struct sp_ckpt_manifest *m)
{
    assert_int_equal(sp_ckpt_manifest_init(m, 64, 16, 4096), 0);
}

static int count_files(const char *sub)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/store/%s", dir, sub);
    int n = 0;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &n), 1);
    pclose(f);
    return n;
}

/* ---- Tests ---- */

static void test_publish_list_verify(void **state)
{
    (void)state;
    struct sp_ckpt_store *s = open_store();
    print_message("file backend writes through %s\n",
                  sp_ckpt_backend_file_uses_uring(sp_ckpt_store_backend(s)) ? "io_uring"
                                                                            : "system calls");
    uint64_t ids[8];
    assert_int_equal(sp_ckpt_store_list(s, ids, 8), 0);
    begin(s, 1);
    uint8_t data[5000];
    payload(data, sizeof(data), 1, 0);
    struct sp_ckpt_segment seg;
    assert_int_equal(sp_ckpt_store_write_segment(s, 0, data, sizeof(data), &seg), 0);
    assert_int_equal(sp_ckpt_store_write_segment(s, 2, "", 0, NULL), 0); /* empty is fine */
    assert_int_equal(sp_ckpt_store_write_segment(s, 3, data, 1, NULL), -EINVAL);
    /* Not published: not a checkpoint. */
    assert_int_equal(sp_ckpt_store_list(s, ids, 8), 0);
    struct sp_ckpt_info info = {
        .checkpoint_id = 2, .job = "j", .shard_count = 1, .key_group_end = 1};
    assert_int_equal(sp_ckpt_store_begin(s, &info), -EBUSY);
    assert_int_equal(sp_ckpt_store_publish(s, 1764150000000), 0);
    assert_int_equal(sp_ckpt_store_list(s, ids, 8), 1);
    assert_true(ids[0] == 1);
    /* Ids only grow. */
    info.checkpoint_id = 1;
    assert_int_equal(sp_ckpt_store_begin(s, &info), -EEXIST);

    struct sp_ckpt_manifest m;
    manifest(&m);
    assert_int_equal(sp_ckpt_store_read_manifest(s, 1, &m), 0);
    assert_true(m.time_ms == 1764150000000);
    assert_int_equal(m.segment_count, 2);
    assert_string_equal(m.segments[0].name, seg.name);
    assert_true(m.segments[0].size_bytes == sizeof(data));
    struct sp_ckpt_verify report;
    assert_int_equal(sp_ckpt_store_verify(s, &m, &report), 0);
    assert_true(report.bytes_read == sizeof(data));
    assert_int_equal(sp_ckpt_store_read_manifest(s, 9, &m), -ENOENT);
    assert_int_equal(sp_ckpt_store_latest(s, &m), 0);
    assert_true(m.checkpoint_id == 1);
    sp_ckpt_manifest_deinit(&m);
    sp_ckpt_store_close(s);
    /* No temporary file is left behind. */
    assert_int_equal(count_files("segments"), 2);
    assert_int_equal(count_files("manifests"), 1);
}

static void test_incremental_references(void **state)
{
    (void)state;
    struct sp_ckpt_store *s = open_store();
    struct sp_ckpt_manifest m1, m2;
    manifest(&m1);
    manifest(&m2);
    write_incremental(s, 1, 0, NULL);
    assert_int_equal(sp_ckpt_store_read_manifest(s, 1, &m1), 0);
    write_incremental(s, 2, 1, &m1);
    assert_int_equal(sp_ckpt_store_read_manifest(s, 2, &m2), 0);
    assert_int_equal(m2.segment_count, 3);
    uint32_t own = 0;
    for (uint32_t i = 0; i < 3; i++) {
        const struct sp_ckpt_segment *g = &m2.segments[i];
        if (g->written_by_id == 2) {
            own++;
            assert_int_equal(g->shard, 1);
        } else {
            assert_true(g->written_by_id == 1);
            assert_true(sp_ckpt_manifest_find_segment(&m1, g->name) >= 0);
        }
    }
    assert_int_equal(own, 1);
    assert_int_equal(sp_ckpt_store_verify(s, &m2, NULL), 0);
    assert_int_equal(count_files("segments"), 4);

    /* References must be earlier, present and of the right size. */
    begin(s, 3);
    struct sp_ckpt_segment bad = m1.segments[0];
    assert_int_equal(sp_ckpt_store_reference(s, &bad), 0);
    assert_int_equal(sp_ckpt_store_reference(s, &bad), -EEXIST);
    bad.size_bytes++;
    snprintf(bad.name, sizeof(bad.name), "%s", m1.segments[1].name);
    assert_int_equal(sp_ckpt_store_reference(s, &bad), -EBADMSG);
    snprintf(bad.name, sizeof(bad.name), "segments/0000000000000001-0000-000000ff");
    assert_int_equal(sp_ckpt_store_reference(s, &bad), -ENOENT);
    bad.written_by_id = 3;
    assert_int_equal(sp_ckpt_store_reference(s, &bad), -EINVAL);
    /* Abort removes only what checkpoint 3 wrote. */
    uint8_t b[10] = {0};
    assert_int_equal(sp_ckpt_store_write_segment(s, 2, b, sizeof(b), NULL), 0);
    assert_int_equal(count_files("segments"), 5);
    sp_ckpt_store_abort(s);
    assert_int_equal(count_files("segments"), 4);
    assert_int_equal(sp_ckpt_store_verify(s, &m1, NULL), 0);
    sp_ckpt_manifest_deinit(&m1);
    sp_ckpt_manifest_deinit(&m2);
    sp_ckpt_store_close(s);
}

/* Five incremental checkpoints, each changing one shard in turn. */
static void write_five(struct sp_ckpt_store *s, struct sp_ckpt_manifest *m)
{
    write_incremental(s, 1, 0, NULL);
    for (uint64_t id = 2; id <= 5; id++) {
        assert_int_equal(sp_ckpt_store_read_manifest(s, id - 1, m), 0);
        write_incremental(s, id, (uint32_t)(id % 3), m);
    }
}

static void expect_ids(struct sp_ckpt_store *s, const uint64_t *want, int n)
{
    uint64_t ids[16];
    assert_int_equal(sp_ckpt_store_list(s, ids, 16), n);
    for (int i = 0; i < n; i++)
        assert_true(ids[i] == want[i]);
}

static void test_retention_and_gc(void **state)
{
    (void)state;
    struct sp_ckpt_store *s = open_store();
    struct sp_ckpt_manifest m;
    manifest(&m);
    write_five(s, &m);
    /* 1 wrote 3 segments, 2..5 one each: 7. */
    assert_int_equal(count_files("segments"), 7);
    assert_int_equal(sp_ckpt_store_retain(s, 0), -EINVAL);
    int deleted = sp_ckpt_store_retain(s, 2);
    assert_true(deleted > 0);
    const uint64_t want[] = {4, 5};
    expect_ids(s, want, 2);
    /* 4 needs shard 0 from 3, shard 1 from 4, shard 2 from 2; 5 the same
     * but shard 2 from 5: four segments survive. */
    assert_int_equal(count_files("segments"), 4);
    for (uint64_t id = 4; id <= 5; id++) {
        assert_int_equal(sp_ckpt_store_read_manifest(s, id, &m), 0);
        assert_int_equal(sp_ckpt_store_verify(s, &m, NULL), 0);
    }
    /* Idempotent. */
    assert_int_equal(sp_ckpt_store_retain(s, 2), 0);
    /* A crashed writer's temporary file goes (pid 2^30 is beyond pid_max);
     * a live writer's (our parent's pid) stays. */
    char path[512];
    snprintf(path, sizeof(path), "%s/store/segments/.tmp-x.1073741824", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/store/manifests/.tmp-y.%ld", dir, (long)getppid());
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(sp_ckpt_store_retain(s, 2), 1);
    assert_int_equal(count_files("segments"), 4);
    assert_int_equal(count_files("manifests"), 3);
    assert_int_equal(unlink(path), 0);
    sp_ckpt_manifest_deinit(&m);
    sp_ckpt_store_close(s);
}

static void test_gc_crash_between_steps(void **state)
{
    (void)state;
    struct sp_ckpt_store *s = open_store();
    struct sp_ckpt_manifest m;
    manifest(&m);
    write_five(s, &m);
    sp_ckpt_store_set_fault(s, SP_CKPT_FAULT_GC_AFTER_MANIFESTS);
    assert_int_equal(sp_ckpt_store_retain(s, 1), -EINTR);
    /* Manifests are gone, segments not yet: the survivor is whole. */
    const uint64_t want[] = {5};
    expect_ids(s, want, 1);
    assert_int_equal(count_files("segments"), 7);
    assert_int_equal(sp_ckpt_store_latest(s, &m), 0);
    assert_true(m.checkpoint_id == 5);
    sp_ckpt_store_close(s);

    /* A checkpoint 6 in flight in another run: its segment is on disk,
     * its manifest is not. Collection must leave it alone. */
    s = open_store();
    begin(s, 6);
    uint8_t b[100] = {1};
    assert_int_equal(sp_ckpt_store_write_segment(s, 0, b, sizeof(b), NULL), 0);
    assert_int_equal(sp_ckpt_store_retain(s, 1), -EBUSY);
    sp_ckpt_store_close(s); /* aborts: deletes it */
    assert_int_equal(count_files("segments"), 7);
    s = open_store();
    struct sp_ckpt_backend *be = sp_ckpt_store_backend(s);
    assert_int_equal(be->ops->put(be, "segments/0000000000000006-0000-00000000", b, sizeof(b)), 0);

    /* The next collection, after "restart", finishes the job. */
    assert_int_equal(sp_ckpt_store_retain(s, 1), 7 - 3);
    assert_int_equal(count_files("segments"), 3 + 1);
    assert_int_equal(sp_ckpt_store_latest(s, &m), 0);
    assert_true(m.checkpoint_id == 5);
    assert_int_equal(sp_ckpt_store_verify(s, &m, NULL), 0);
    sp_ckpt_manifest_deinit(&m);
    sp_ckpt_store_close(s);
}

/* Overwrites or truncates a segment file in place, as a failing disk would. */
static void damage(const char *name, int truncate_it)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/store/%s", dir, name);
    if (truncate_it) {
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(truncate(path, st.st_size / 2), 0);
        return;
    }
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\xff", 1, 100), 1);
    close(fd);
}

static const char *own_segment(const struct sp_ckpt_manifest *m)
{
    for (uint32_t i = 0; i < m->segment_count; i++)
        if (m->segments[i].written_by_id == m->checkpoint_id)
            return m->segments[i].name;
    fail();
    return NULL;
}

static void test_damage_picks_previous(void **state)
{
    (void)state;
    struct sp_ckpt_store *s = open_store();
    struct sp_ckpt_manifest m;
    manifest(&m);
    write_five(s, &m);
    struct sp_ckpt_verify report;

    /* Corrupt 5's own segment: 4 is the choice. */
    assert_int_equal(sp_ckpt_store_read_manifest(s, 5, &m), 0);
    damage(own_segment(&m), 0);
    assert_int_equal(sp_ckpt_store_verify(s, &m, &report), -EBADMSG);
    assert_int_equal(report.bad_count, 1);
    assert_string_equal(report.first_bad, own_segment(&m));
    assert_int_equal(sp_ckpt_store_latest(s, &m), 0);
    assert_true(m.checkpoint_id == 4);

    /* Truncate 4's own segment: 3. */
    damage(own_segment(&m), 1);
    assert_int_equal(sp_ckpt_store_latest(s, &m), 0);
    assert_true(m.checkpoint_id == 3);

    /* Delete 3's own segment: 2. */
    char path[512];
    snprintf(path, sizeof(path), "%s/store/%s", dir, own_segment(&m));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(sp_ckpt_store_verify(s, &m, &report), -ENOENT);
    assert_int_equal(report.missing_count, 1);
    assert_int_equal(sp_ckpt_store_latest(s, &m), 0);
    assert_true(m.checkpoint_id == 2);

    /* Damage 2's manifest: 1. */
    snprintf(path, sizeof(path), "%s/store/manifests/0000000000000002.manifest", dir);
    assert_int_equal(truncate(path, 40), 0);
    assert_int_equal(sp_ckpt_store_read_manifest(s, 2, &m), -EBADMSG);
    assert_int_equal(sp_ckpt_store_latest(s, &m), 0);
    assert_true(m.checkpoint_id == 1);

    /* And a segment 1 needs: none is left. */
    damage(m.segments[0].name, 0);
    assert_int_equal(sp_ckpt_store_latest(s, &m), -ENOENT);
    /* Collection refuses to guess what a damaged manifest needed. */
    assert_int_equal(sp_ckpt_store_retain(s, 4), -EBADMSG);
    sp_ckpt_manifest_deinit(&m);
    sp_ckpt_store_close(s);
}

static void test_xxh64_segments(void **state)
{
    (void)state;
    struct sp_ckpt_store_config config;
    sp_ckpt_store_config_default(&config);
    config.checksum_kind = SP_CKPT_CHECKSUM_XXH64;
    config.create = true;
    struct sp_ckpt_store *s = NULL;
    assert_int_equal(sp_ckpt_store_open(url, &config, &s), 0);
    begin(s, 1);
    uint8_t data[3000];
    payload(data, sizeof(data), 1, 1);
    struct sp_ckpt_segment seg;
    assert_int_equal(sp_ckpt_store_write_segment(s, 1, data, sizeof(data), &seg), 0);
    assert_int_equal(seg.checksum_kind, SP_CKPT_CHECKSUM_XXH64);
    assert_int_equal(sp_ckpt_store_publish(s, 0), 0);
    struct sp_ckpt_manifest m;
    manifest(&m);
    assert_int_equal(sp_ckpt_store_latest(s, &m), 0);
    assert_true(m.segments[0].checksum == seg.checksum);
    damage(seg.name, 0);
    assert_int_equal(sp_ckpt_store_verify(s, &m, NULL), -EBADMSG);
    assert_int_equal(sp_ckpt_store_latest(s, &m), -ENOENT);
    sp_ckpt_manifest_deinit(&m);
    sp_ckpt_store_close(s);
}

static void test_urls(void **state)
{
    (void)state;
    struct sp_ckpt_store_config config;
    sp_ckpt_store_config_default(&config);
    struct sp_ckpt_store *s = NULL;
    assert_int_equal(sp_ckpt_store_open("file://relative/path", &config, &s), -EINVAL);
    assert_int_equal(sp_ckpt_store_open("/no/scheme", &config, &s), -EINVAL);
    assert_int_equal(sp_ckpt_store_open("gopher://x", &config, &s), -EPROTONOSUPPORT);
    char missing[400];
    snprintf(missing, sizeof(missing), "file://%s/missing", dir);
    assert_int_equal(sp_ckpt_store_open(missing, &config, &s), -ENOENT);
    assert_null(s);
}

/* ---- A store for the CLI test ---- */

/* damage() for a store in S3: the segment read, one byte set, put back. */
static void damage_s3(const char *name)
{
    struct sp_ckpt_backend *b = NULL;
    assert_int_equal(sp_ckpt_backend_s3_open(url, &b), 0);
    uint64_t size = 0;
    assert_int_equal(b->ops->stat(b, name, &size), 0);
    assert_true(size > 100);
    uint8_t *bytes = malloc(size);
    assert_non_null(bytes);
    assert_int_equal(b->ops->get(b, name, 0, bytes, size), (int64_t)size);
    bytes[100] = 0xff;
    assert_int_equal(b->ops->put(b, name, bytes, size), 0);
    free(bytes);
    b->ops->close(b);
}

/* PATH: a directory (the store in PATH/store) or an s3:// URL. */
static int leave_store(const char *path)
{
    bool s3 = strncmp(path, "s3://", 5) == 0;
    snprintf(dir, sizeof(dir), "%s", path);
    if (s3)
        snprintf(url, sizeof(url), "%s", path);
    else
        snprintf(url, sizeof(url), "file://%s/store", dir);
    struct sp_ckpt_store *s = open_store();
    struct sp_ckpt_manifest m;
    manifest(&m);
    write_incremental(s, 1, 0, NULL);
    for (uint64_t id = 2; id <= 4; id++) {
        assert_int_equal(sp_ckpt_store_read_manifest(s, id - 1, &m), 0);
        write_incremental(s, id, (uint32_t)(id % 3), &m);
    }
    assert_int_equal(sp_ckpt_store_read_manifest(s, 4, &m), 0);
    if (s3)
        damage_s3(own_segment(&m));
    else
        damage(own_segment(&m), 0);
    sp_ckpt_manifest_deinit(&m);
    sp_ckpt_store_close(s);
    printf("%s\n", url);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2)
        return leave_store(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_list_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incremental_references, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_and_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_crash_between_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_picks_previous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xxh64_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_urls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint store: where checkpoints live, in what format, and how one
 * is written, found, verified and eventually deleted. It is the storage
 * layer the engine's snapshot machinery writes through; it knows nothing of
 * barriers, operators or keyed state, only of opaque byte blobs.
 *
 * A checkpoint is a manifest plus the segments it needs. A segment is an
 * immutable blob ("segments/<id>-<shard>-<seq>", id and shard and sequence
 * in hex) with a size and a checksum; an incremental checkpoint lists the
 * unchanged segments of earlier checkpoints by reference instead of writing
 * them again. The manifest ("manifests/<id>.manifest") is written last and
 * published atomically: a checkpoint exists exactly when its manifest does.
 * Restore trusts nothing it has not verified: sp_ckpt_store_latest() picks
 * the newest checkpoint whose manifest decodes and whose every segment is
 * present with the listed size and checksum.
 *
 * The API is synchronous by design: it runs on the background uploader
 * thread that owns the store, never on a shard, so a shard's snapshot step
 * only hands over buffers. The file backend still writes through io_uring,
 * on a ring of its own. A store is used by one thread at a time, and one
 * process writes to a store at a time (readers such as `spate checkpoint
 * list` may run beside the writer).
 *
 * Errors are -errno, documented per function. Operating errors (a full disk,
 * a corrupted file) are returned; misuse (a segment without begin) asserts.
 */
#ifndef SP_CKPT_STORE_H
#define SP_CKPT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_ckpt_backend.h"
#include "sp_common.h"

/* ---- Limits ---- */
#define SP_CKPT_JOB_BYTES_MAX 128          /* job name, no NUL */
#define SP_CKPT_SEGMENT_NAME_BYTES_MAX 64  /* segment key incl. "segments/", no NUL */
#define SP_CKPT_POSITION_KEY_BYTES_MAX 256 /* one source position's key */
#define SP_CKPT_POSITION_VALUE_BYTES_MAX 4096
#define SP_CKPT_MANIFEST_BYTES_MAX (16u << 20) /* a decoder refuses anything larger */
#define SP_CKPT_SEGMENTS_MAX 65536u            /* per manifest, hard ceiling for configs */
#define SP_CKPT_POSITIONS_MAX 4096u
#define SP_CKPT_POSITION_BLOB_MAX (4u << 20) /* keys and values of one manifest's positions */
#define SP_CKPT_LIST_MAX 4096u               /* checkpoints a listing considers */
#define SP_CKPT_SHARDS_MAX 65536u

/* ---- Manifest ---- */

#define SP_CKPT_MANIFEST_VERSION 1

enum sp_ckpt_checksum {
    SP_CKPT_CHECKSUM_CRC32C = 1, /* net/record/sp_crc32c.h, in the low 32 bits */
    SP_CKPT_CHECKSUM_XXH64 = 2,  /* libxxhash's XXH64, seed 0 */
};

/* One segment a checkpoint needs, written by it or by an earlier one. */
struct sp_ckpt_segment {
    char name[SP_CKPT_SEGMENT_NAME_BYTES_MAX + 1]; /* the object key, NUL-terminated */
    uint64_t size_bytes;
    uint64_t checksum;
    uint8_t checksum_kind;  /* enum sp_ckpt_checksum */
    uint32_t shard;         /* the shard whose state it holds */
    uint64_t written_by_id; /* checkpoint that wrote it; < the manifest's id: a reference */
};

/* A source position: an opaque key (e.g. "topic/partition") and value (e.g. an offset). */
struct sp_ckpt_position {
    uint32_t key_offset, key_bytes; /* into the manifest's blob */
    uint32_t value_offset, value_bytes;
};

/*
 * A decoded or in-construction manifest. Arrays are allocated once by
 * sp_ckpt_manifest_init() with fixed capacities; nothing grows afterwards.
 */
struct sp_ckpt_manifest {
    uint64_t checkpoint_id; /* > 0; ids grow with time */
    int64_t time_ms;        /* wall clock, ms since the epoch, when published */
    uint32_t shard_count;
    uint32_t key_group_first; /* the key groups covered: [first, end) */
    uint32_t key_group_end;
    char job[SP_CKPT_JOB_BYTES_MAX + 1];
    uint32_t position_count, position_max;
    struct sp_ckpt_position *positions;
    uint32_t segment_count, segment_max;
    struct sp_ckpt_segment *segments;
    uint8_t *blob; /* position keys and values, back to back */
    uint32_t blob_bytes, blob_max;
};

/*
 * Allocates a manifest's arrays: up to `segment_max` segments (≤
 * SP_CKPT_SEGMENTS_MAX), `position_max` positions (≤ SP_CKPT_POSITIONS_MAX)
 * with `blob_max` bytes of keys and values. Returns 0, -EINVAL or -ENOMEM.
 */
SP_MUST_CHECK int sp_ckpt_manifest_init(struct sp_ckpt_manifest *m, uint32_t segment_max,
                                        uint32_t position_max, uint32_t blob_max);
void sp_ckpt_manifest_deinit(struct sp_ckpt_manifest *m);
/* Empties a manifest, keeping its capacity. */
void sp_ckpt_manifest_clear(struct sp_ckpt_manifest *m);

/* Appends a position (copied). -E2BIG when a capacity is exhausted, -EINVAL on oversized parts. */
SP_MUST_CHECK int sp_ckpt_manifest_add_position(struct sp_ckpt_manifest *m, const void *key,
                                                uint32_t key_bytes, const void *value,
                                                uint32_t value_bytes);
/* Appends a segment (copied). -E2BIG when full, -EINVAL on a bad name or checksum kind. */
SP_MUST_CHECK int sp_ckpt_manifest_add_segment(struct sp_ckpt_manifest *m,
                                               const struct sp_ckpt_segment *s);
/* Finds a segment by name: its index, or -ENOENT. */
int sp_ckpt_manifest_find_segment(const struct sp_ckpt_manifest *m, const char *name);

/* Bytes sp_ckpt_manifest_encode() will write for `m`. */
size_t sp_ckpt_manifest_encoded_bytes(const struct sp_ckpt_manifest *m);

/*
 * Encodes `m` into `buf` (format in docs/architecture.md, "ckpt/"): the
 * byte count, or -ENOBUFS when `cap` is too small, -E2BIG when it would
 * exceed SP_CKPT_MANIFEST_BYTES_MAX.
 */
SP_MUST_CHECK int64_t sp_ckpt_manifest_encode(const struct sp_ckpt_manifest *m, void *buf,
                                              size_t cap);

/*
 * Decodes `len` bytes into `m` (initialised; its contents replaced). Never
 * reads past `len` and never asserts on the bytes. Returns 0, -EBADMSG (bad
 * magic, length, checksum or structure), -EPROTONOSUPPORT (a well-formed
 * manifest of a version this build does not know), -E2BIG (more segments,
 * positions or blob bytes than `m` holds); on any error `m` is left empty.
 */
SP_MUST_CHECK int sp_ckpt_manifest_decode(struct sp_ckpt_manifest *m, const void *buf, size_t len);

/* ---- Store ---- */

struct sp_ckpt_store;

struct sp_ckpt_store_config {
    uint32_t segments_max;       /* per checkpoint (default 4096) */
    uint32_t positions_max;      /* per checkpoint (default 256) */
    uint32_t position_bytes_max; /* keys and values together (default 64 KiB) */
    uint8_t checksum_kind;       /* for new segments (default CRC-32C) */
    bool create;                 /* create the store's directory when missing */
};

void sp_ckpt_store_config_default(struct sp_ckpt_store_config *config);

/*
 * Opens a store from a URL: `file:///absolute/path` (the file backend) or
 * `s3://bucket/prefix` (endpoint, region and credentials from the environment:
 * SPATE_S3_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
 * Returns 0 with *out set, or -EINVAL (malformed URL or config),
 * -EPROTONOSUPPORT (unknown scheme), -ENOMEM, or the backend's open error
 * (-ENOENT for a missing directory when !create).
 */
SP_MUST_CHECK int sp_ckpt_store_open(const char *url, const struct sp_ckpt_store_config *config,
                                     struct sp_ckpt_store **out);

/*
 * Opens an existing store to read it (restore, listing, a savepoint's
 * source): nothing is created, and the in-flight manifest it never uses is
 * the smallest. Returns what sp_ckpt_store_open does.
 */
SP_MUST_CHECK int sp_ckpt_store_open_reader(const char *url, struct sp_ckpt_store **out);

/*
 * Opens a store over a backend the caller built (the S3 client, a test's
 * fault-injecting one). Takes ownership of `backend` on success.
 */
SP_MUST_CHECK int sp_ckpt_store_open_backend(struct sp_ckpt_backend *backend,
                                             const struct sp_ckpt_store_config *config,
                                             struct sp_ckpt_store **out);

/* Closes the store; a checkpoint in flight is aborted. */
void sp_ckpt_store_close(struct sp_ckpt_store *store);

/* The backend underneath (borrowed). */
struct sp_ckpt_backend *sp_ckpt_store_backend(struct sp_ckpt_store *store);

/* What a checkpoint covers, given at begin. */
struct sp_ckpt_info {
    uint64_t checkpoint_id; /* > every published id */
    const char *job;        /* ≤ SP_CKPT_JOB_BYTES_MAX bytes */
    uint32_t shard_count;
    uint32_t key_group_first, key_group_end;
};

/*
 * Starts checkpoint `info->checkpoint_id`. One checkpoint is in flight at a
 * time. Returns 0, -EBUSY (one is in flight), -EEXIST (that id, or a newer
 * one, is published), -EINVAL (id 0, job too long, key groups empty), or a
 * listing error from the backend.
 */
SP_MUST_CHECK int sp_ckpt_store_begin(struct sp_ckpt_store *store, const struct sp_ckpt_info *info);

/*
 * Writes one segment of shard `shard` for the checkpoint in flight and adds
 * it to the manifest; *out (optional) receives its entry. The bytes are
 * borrowed for the call. Returns 0, -E2BIG (segments_max reached), or the
 * backend's put error: -ENOSPC on a full disk, after which the checkpoint
 * can only be aborted (publish refuses it).
 */
SP_MUST_CHECK int sp_ckpt_store_write_segment(struct sp_ckpt_store *store, uint32_t shard,
                                              const void *data, size_t len,
                                              struct sp_ckpt_segment *out);

/*
 * Adds an earlier checkpoint's segment, unchanged, to the checkpoint in
 * flight (an incremental checkpoint's reference). `earlier` is an entry of a
 * published manifest. The object must still exist with that size: -ENOENT
 * when it is gone, -EBADMSG when its size differs, -EINVAL when it was not
 * written by an earlier checkpoint, -E2BIG when full, -EEXIST when it is
 * already listed.
 */
SP_MUST_CHECK int sp_ckpt_store_reference(struct sp_ckpt_store *store,
                                          const struct sp_ckpt_segment *earlier);

/* Records a source position (opaque key and value) in the checkpoint in flight. */
SP_MUST_CHECK int sp_ckpt_store_set_position(struct sp_ckpt_store *store, const void *key,
                                             uint32_t key_bytes, const void *value,
                                             uint32_t value_bytes);

/*
 * Publishes the checkpoint in flight: encodes its manifest, writes it,
 * fsyncs it, renames it into place and fsyncs the directory. From then on
 * the checkpoint exists. `time_ms` 0 means now. Returns 0, or the error
 * that failed an earlier write (the checkpoint stays in flight: abort it),
 * or the backend's put error (-ENOSPC ...), after which nothing was
 * published and the checkpoint stays in flight for abort.
 */
SP_MUST_CHECK int sp_ckpt_store_publish(struct sp_ckpt_store *store, int64_t time_ms);

/*
 * Abandons the checkpoint in flight and deletes the segments it wrote
 * (best effort: leftovers are garbage sp_ckpt_store_retain() collects).
 * Does nothing when none is in flight.
 */
void sp_ckpt_store_abort(struct sp_ckpt_store *store);

/*
 * Lists published checkpoint ids, oldest first, into ids[0..max): the
 * number found (which may exceed `max`; only `max` are stored), or -errno
 * from the backend.
 */
SP_MUST_CHECK int sp_ckpt_store_list(struct sp_ckpt_store *store, uint64_t *ids, uint32_t max);

/*
 * Reads and decodes checkpoint `id`'s manifest into `m` (initialised with
 * capacities enough for it). Returns 0, -ENOENT, -EBADMSG (corrupt or
 * truncated, or its id differs from its name), -EPROTONOSUPPORT, -E2BIG.
 */
SP_MUST_CHECK int sp_ckpt_store_read_manifest(struct sp_ckpt_store *store, uint64_t id,
                                              struct sp_ckpt_manifest *m);

/* Verification of one checkpoint's segments. */
struct sp_ckpt_verify {
    uint32_t segment_count; /* listed */
    uint32_t missing_count; /* absent */
    uint32_t bad_count;     /* wrong size or checksum */
    uint64_t bytes_read;
    char first_bad[SP_CKPT_SEGMENT_NAME_BYTES_MAX + 1]; /* "" when all are good */
    int first_error; /* -ENOENT or -EBADMSG of first_bad, 0 when good */
};

/*
 * Reads every segment `m` lists and checks its size and checksum. Returns 0
 * when all are good, -ENOENT when one is missing, -EBADMSG when one is
 * truncated, longer or corrupted (the first problem found; `report`,
 * optional, counts them all), or another backend error.
 */
SP_MUST_CHECK int sp_ckpt_store_verify(struct sp_ckpt_store *store,
                                       const struct sp_ckpt_manifest *m,
                                       struct sp_ckpt_verify *report);

/*
 * Reads one segment and checks its size and checksum; adds the bytes read
 * to *bytes_read. Returns 0, -ENOENT (missing), -EBADMSG (truncated, longer
 * or corrupted) or another backend error.
 */
SP_MUST_CHECK int sp_ckpt_store_verify_segment(struct sp_ckpt_store *store,
                                               const struct sp_ckpt_segment *s,
                                               uint64_t *bytes_read);

/*
 * Reads one whole segment into `buf` (s->size_bytes of room) and checks its
 * size and checksum: what a restore uses, reading each byte once. Returns
 * 0, -ENOENT (missing), -EBADMSG (truncated, longer or corrupted) or
 * another backend error.
 */
SP_MUST_CHECK int sp_ckpt_store_read_segment(struct sp_ckpt_store *store,
                                             const struct sp_ckpt_segment *s, void *buf);

/*
 * Finds the newest checkpoint whose manifest and segments all verify and
 * leaves its manifest in `m`: what a restore uses. Checkpoints that fail
 * are skipped (and logged). Returns 0, -ENOENT when none verifies, or a
 * backend error.
 */
SP_MUST_CHECK int sp_ckpt_store_latest(struct sp_ckpt_store *store, struct sp_ckpt_manifest *m);

/*
 * Keeps the newest `retain_count` (≥ 1) published checkpoints, deletes the
 * older manifests, then deletes every segment that no remaining manifest
 * references. Crash-safe at every step: manifests go first (a checkpoint
 * stops existing before any segment it needs is touched), and segments are
 * found by listing and comparing against the remaining manifests, so a run
 * interrupted between the two steps leaves only garbage that the next run
 * collects. Segments newer than the newest published checkpoint (one in
 * flight, perhaps in another run) are never collected, and nothing is
 * deleted when a remaining manifest cannot be read. Last, the backend
 * removes what crashed puts left (temporary files whose writer is gone). Returns the number of
 * objects deleted, or -errno (-EINVAL for retain_count 0, -EBUSY while a
 * checkpoint is in flight, -EBADMSG when a remaining manifest is corrupt).
 */
SP_MUST_CHECK int sp_ckpt_store_retain(struct sp_ckpt_store *store, uint32_t retain_count);

/* ---- Fault injection, for tests (SQLite's test_malloc.c spirit) ---- */
enum sp_ckpt_fault {
    SP_CKPT_FAULT_NONE = 0,
    /* retain() returns -EINTR after deleting manifests, before any segment: a crash there. */
    SP_CKPT_FAULT_GC_AFTER_MANIFESTS = 1,
};
void sp_ckpt_store_set_fault(struct sp_ckpt_store *store, enum sp_ckpt_fault fault);

/* Object keys: "manifests/<16 hex>.manifest" and "segments/<16 hex>-<4 hex>-<8 hex>". */
#define SP_CKPT_MANIFEST_PREFIX "manifests/"
#define SP_CKPT_SEGMENT_PREFIX "segments/"
#define SP_CKPT_MANIFEST_SUFFIX ".manifest"

/* Parses a manifest key's id: 0 with *id set, or -EINVAL. */
int sp_ckpt_manifest_key_id(const char *key, uint64_t *id);

#endif /* SP_CKPT_STORE_H */

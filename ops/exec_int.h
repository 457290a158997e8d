/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the executor (exec.c) and its checkpoints (checkpoint.c): the
 * run's shared state, and the calls each makes into the other.
 */
#ifndef SP_EXEC_INT_H
#define SP_EXEC_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "sp_op.h"
#include "sp_runtime.h"

struct ck_run;

struct sp_exec {
    struct sp_job *job;
    struct sp_run_config config;
    struct sp_runtime rt;
    unsigned shard_count;
    uint32_t batch_bytes;
    struct sp_xshard **xs; /* [shard_count], each set by its shard */
    /* [node * shard_count + shard]: that shard's instance of this key_by has
     * no source partition upstream, so it will only ever send its end;
     * written before the `opened` barrier, read after it. */
    bool *sender_empty;
    pthread_barrier_t opened;
    _Atomic bool failed;
    _Atomic bool interrupted;
    unsigned done_shards;   /* shard 0's */
    _Atomic bool completed; /* every sink ended: the stop that follows is the end */
    uint64_t start_ns;
    uint64_t deadline_ns;
    _Atomic uint64_t end_ns; /* when it completed (linger: the runtime runs on); 0 before */
    struct ck_run *ck;       /* checkpoints (ops/checkpoint.c), NULL without */
    /* shard 0's progress line */
    uint64_t last_in, last_out, last_bp, last_print_ns;
};

/* ---- exec.c, for checkpoint.c ---- */

/* Puts checkpoint `id`'s barrier out of every source of this shard, now if
 * nothing downstream of them is in the middle of a watermark (else once
 * that is done; the executor retries). */
void exec_barrier_inject(struct sp_xshard *xs, uint64_t id);
/* Every sink of this shard is done (shard 0 counts it towards the job's end). */
void exec_shard_done(struct sp_xshard *xs);

/* Exchange receivers that had every barrier of a checkpoint before its
 * trigger came to this shard pass it on now. */
void exec_barrier_aligned(struct sp_xshard *xs);
/* Checkpoint `id` was given up: alignments of it end, what they held goes
 * on in order. */
void exec_barrier_abandon(struct sp_xshard *xs, uint64_t id);

/* ---- checkpoint.c, for exec.c ---- */

/* Before the runtime starts: opens the store, reads what a restore needs,
 * starts the uploader. 0, or -1 with the job's error set. */
int ck_run_prepare(struct sp_exec *exec);
/* After the runtime stopped: stops the uploader, closes the store. */
void ck_run_finish(struct sp_exec *exec);
/* On each shard, after its operators opened (their tables registered) and
 * before its sources open: fills the tables from the checkpoint restored
 * and calls restored(). 0 or -errno (the job failed). */
int ck_shard_open(struct sp_xshard *xs);
/* After every shard opened: shard 0 starts the coordinator. */
void ck_shard_start(struct sp_xshard *xs);
/* Stop hook part, and the release of what the shard held. */
void ck_shard_stop(struct sp_xshard *xs);
void ck_shard_close(struct sp_xshard *xs);
/* Instance `inst` has checkpoint `id`'s barrier on every input: its sync
 * step (tables, barrier()) runs; the caller forwards the barrier after. */
void ck_inst_barrier(struct sp_inst *inst, uint64_t id);
/* A source is about to put out checkpoint `id`'s barrier. */
void ck_src_barrier(struct sp_src *src, uint64_t id);
/* Whether checkpoint `id`'s trigger came to this shard: until then an
 * exchange receiver holds the barrier (the shard must have had the verdict
 * on the checkpoint before, which comes first, before it snapshots). */
bool ck_triggered(const struct sp_xshard *xs, uint64_t id);
/* Before the operators open (they register their tables). */
int ck_shard_alloc(struct sp_xshard *xs);
/* Every sink of this shard is done: with checkpoints the shard is done
 * once a checkpoint taken after that completed (a final checkpoint, as
 * Flink's FLIP-147: a restart then restores the end, reading nothing
 * again); exec_shard_done() then. */
void ck_shard_final(struct sp_xshard *xs);
/* An instance could not align checkpoint `id`'s barrier: it fails. */
void ck_align_failed(struct sp_xshard *xs, uint64_t id);

#endif /* SP_EXEC_INT_H */

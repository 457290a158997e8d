/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private interface between the runtime, the reactor loop and async I/O.
 * Nothing outside runtime/ includes this.
 */
#ifndef SP_REACTOR_INT_H
#define SP_REACTOR_INT_H

#include "sp_reactor.h"
#include "sp_runtime.h"

/* user_data values below this are not sp_io_op pointers. */
#define SP_UDATA_WAKE 1u   /* a wake-up posted by another shard's MSG_RING */
#define SP_UDATA_IGNORE 2u /* our own cancel completions */
/* Our own MSG_RING wake-up of shard i completes with SP_UDATA_WAKE_SENT + i. */
#define SP_UDATA_WAKE_SENT 2048u
#define SP_UDATA_RESERVED_MAX 4096u
#define SP_SHARDS_MAX (SP_UDATA_RESERVED_MAX - SP_UDATA_WAKE_SENT)

/* Messages drained from one inbound ring per pop. */
#define SP_MSG_BATCH 64u
/* Messages run per loop turn over all inbound rings, before other work. */
#define SP_MSG_PER_TURN_MAX 4096u
/* Timers fired per loop turn. */
#define SP_TIMER_FIRE_PER_TURN_MAX 1024u
/* Completions reaped per peek. */
#define SP_CQE_BATCH 64u

/* Sets up shard `id` on the calling thread. 0 or -errno. */
SP_MUST_CHECK int sp_shard_init(struct sp_shard *shard, struct sp_runtime *rt, unsigned id);

/* Runs the reactor loop until the shard has drained after a stop. */
void sp_shard_run(struct sp_shard *shard);

/* Releases what sp_shard_init took, on the shard's thread. */
void sp_shard_deinit(struct sp_shard *shard);

/*
 * A submission queue entry for an sp_io_op, flushing the queue once if it
 * is full. Counts the op as in flight. NULL when the queue stays full.
 */
struct io_uring_sqe *sp_shard_sqe(struct sp_shard *shard, struct sp_io_op *op);

/* A submission queue entry for the runtime's own use (not an sp_io_op). */
struct io_uring_sqe *sp_shard_sqe_raw(struct sp_shard *shard);

/* Wakes `shard` from any thread (eventfd). */
void sp_shard_wake_external(struct sp_shard *shard);

#endif /* SP_REACTOR_INT_H */

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka sink (sp_sink_kafka): producers of one shard on the shard's own
 * client (net/client/), writing every row of its input as one record of one
 * topic.
 *
 * A record's key is the key_field's value (a string's bytes as they are,
 * an int64 or a double as decimal text, a bool as true/false; no key_field:
 * a null key, spread by the sticky partitioner), its value the row in
 * `format` (sp_serde_encode: JSON by default), its timestamp the row's.
 * Partitions follow the key as the Java client's do (murmur2), so a keyed
 * result lands where Kafka Streams would put it.
 *
 * Backpressure. The producer copies each record into its batches at once;
 * this sink counts the key and value bytes not yet acknowledged and, past
 * spate.sink.buffer.bytes (16 MiB), blocks its input (sp_sink_block), which
 * stops the sources upstream; delivery reports bring it back under half of
 * that, and the sink unblocks. When the producer refuses a record (its
 * batch memory, buffer.memory, is full: -ENOBUFS; the topic's metadata is
 * not there yet: -EAGAIN; exactly-once and no transaction free: see
 * below), the record and every later one wait, encoded, in a FIFO (push()
 * may not keep its batch) and the sink blocks until the FIFO drained:
 * nothing is dropped, and what waits is bounded by what the operators
 * upstream emit after the block (one source poll, and what one watermark
 * fires).
 *
 * Rows are counted (sp_sink_count) when the broker acknowledged them. A
 * failed delivery (retries exhausted, a broker error that is not
 * retriable, a topic that does not exist) fails the job with the error.
 * The client closes in a stop hook of the shard (the runtime drains only
 * once every connection is down) and is freed in close().
 *
 * Delivery guarantees (spate.sink.delivery). Without checkpoints: at least
 * once, no transactions; end() flushes and reports the sink done
 * (sp_sink_done, once) when every record was acknowledged. With
 * checkpoints, `at-least-once`: every barrier waits (sp_ckpt_hold) until
 * each record before it is acknowledged, so a restored run replays only
 * what may already be in the topic, never less. With checkpoints,
 * `exactly-once` (the default then; it needs enable.idempotence, the
 * client's default): Kafka transactions in two phases, as Flink's
 * KafkaSink, so that a read_committed consumer sees every row once.
 *
 *  - Transactions. Each shard owns a pool of spate.sink.transactions (6)
 *    transactional ids, "<prefix>-<shard>-<slot>" (prefix: the sink's
 *    transactional.id property, default "<job name>-kafka-<node id>"), one
 *    producer each on the shard's client, all initialised at the start
 *    (InitProducerId aborts what an earlier run left open). An epoch is
 *    what the sink receives between two barriers; its records go into the
 *    transaction open on the current slot (the lowest free one, begun with
 *    the epoch's first record).
 *  - barrier(k), the pre-commit: the current transaction closes (flushed;
 *    it takes no more records) and every closed transaction not yet
 *    committed is put into checkpoint k as "txn/<shard>/<slot>" = "<producer
 *    id> <epoch> <transactional id>" (synchronously, inside barrier()).
 *    Checkpoint k is held (sp_ckpt_hold) until every record before the
 *    barrier is acknowledged, then released: it cannot complete with a
 *    record of its epoch unwritten. Records the FIFO holds at the barrier
 *    came before it: the transaction closes once they are produced into it
 *    (a marker in the FIFO), and the hold waits for them too.
 *  - checkpoint_done(k), the commit: every closed transaction whose barrier
 *    is <= k is committed (EndTxn). A checkpoint that failed never gets its
 *    done: its transaction is listed again at the next barrier and commits
 *    with the next checkpoint that completes, which covers its records too.
 *  - Reuse. A committed transaction's slot is used again only once a
 *    checkpoint later than the last one that listed it has completed: a
 *    restore, which always starts from the newest completed checkpoint,
 *    then never resumes a transaction whose id carries newer records. With
 *    one checkpoint in flight that takes three slots (epoch k open, k-1
 *    pre-committed, k-2 committed but listed in the checkpoint in flight;
 *    two would do if a reused id took a new epoch, but then a resume of an
 *    older epoch is refused as fenced whether its transaction committed or
 *    timed out, and a restore could not tell lost records from committed
 *    ones). When no slot is free the records wait (the sink blocks) until
 *    one is. Reused slots keep their producer id and epoch (the sequence
 *    numbers continue), so nothing fences a listed transaction but its
 *    timeout. Each failed checkpoint keeps one more transaction pending;
 *    when every slot is pending (or a checkpoint would list them all, which
 *    would leave a restored run none to write with) the barrier is sat out,
 *    and after KSK_STARVED_MAX such barriers in a row the job fails, asking
 *    for a larger pool (Flink's FlinkKafkaProducer does the same).
 *  - restored(): for every transaction the restored checkpoint lists for an
 *    old shard this shard takes over (old shard s goes to s % shard count),
 *    a producer resumes it (sp_kafka_producer_txn_resume: its producer id
 *    and epoch, no InitProducerId) and commits it; one committed before the
 *    crash commits again harmlessly. Every other slot id of those old shards
 *    and of this shard gets InitProducerId, which aborts what the crashed
 *    run left open. A resumed transaction's own slot is not initialised
 *    until a later checkpoint completes (a second crash before then resumes
 *    it again, and must find its epoch unchanged). Barriers fail (the
 *    checkpoint does, the job goes on) until every resumed transaction
 *    committed, and nothing is produced before. A resumed commit refused as
 *    fenced, expired or aborted means that records of a completed
 *    checkpoint are gone: the job fails, naming transaction.timeout.ms.
 *  - end() flushes and asks for a checkpoint (sp_ckpt_request); the sink
 *    reports done once a checkpoint whose barrier came after the end has
 *    completed and committed the last epoch.
 *  - A barrier the sink cannot take part in fails its checkpoint
 *    (sp_ckpt_release with -EBUSY) and ends no epoch, so the epoch's records
 *    join the next: while restored transactions are being committed, while
 *    a marker of an earlier barrier still waits in the FIFO, while records
 *    wait for a free slot, or past KSK_EPOCHS epochs or KSK_HOLDS_MAX holds
 *    still unacknowledged.
 *
 * transaction.timeout.ms defaults to 15 minutes here (the client's default
 * is one): a transaction stays open from its first record until the
 * checkpoint after it completes, and a transaction of a completed
 * checkpoint must survive until a restored run commits it, so it must
 * exceed the checkpoint interval plus the longest time a job may stay down
 * and restart. Brokers cap it (Kafka's transaction.max.timeout.ms, 15
 * minutes by default, as spate broker's). Limits: the transactional id
 * prefix must be unique among the jobs writing to the cluster; a run
 * started without restoring aborts its own shards' leftover transactions
 * only (a crashed run with more shards can leave others open until their
 * timeout); read_committed consumers see an epoch's records when its
 * checkpoint completes, so end-to-end latency includes the checkpoint
 * interval; restoring a checkpoint older than the newest completed one
 * (restore=N) fails once its transactional ids were reused, since its
 * transactions can then not be told committed from lost; shrinking the pool
 * across a restore leaves the dropped ids' leftovers to their timeout; each
 * slot's producer keeps its own batch memory (buffer.memory), and the
 * lowest free slot is taken so that a steady job touches three.
 *
 * Bootstrap servers that cannot be reached, a topic that metadata does not
 * describe, or transactions not initialised within spate.sink.timeout.ms
 * (30 s) of the start fail the job.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_kafka_producer.h"
#include "sp_log.h"
#include "sp_op.h"

#define KSK_BUFFER_BYTES_DEFAULT (16u << 20)
#define KSK_TIMEOUT_MS_DEFAULT 30000
#define KSK_KEY_BYTES 48
#define KSK_SLOTS_DEFAULT 6 /* spate.sink.transactions: transactional ids per shard */
#define KSK_SLOTS_MIN 3
#define KSK_SLOTS_MAX 32
#define KSK_STARVED_MAX 3 /* barriers sat out in a row for want of a slot before the job fails */
#define KSK_EPOCHS 8      /* epochs with records unacknowledged at once (a power of two) */
#define KSK_EPOCH_BITS 3  /* log2(KSK_EPOCHS): a record's epoch in its msg_ctx */
#define KSK_HOLDS_MAX 8   /* checkpoints held at once */
#define KSK_PREFIX_BYTES_MAX 200 /* of the transactional id prefix */
#define KSK_RECOVERY_MAX 4096    /* producers a restore may use on one shard */
#define KSK_TXN_TIMEOUT_MS_DEFAULT "900000"

_Static_assert(KSK_EPOCHS == 1u << KSK_EPOCH_BITS, "KSK_EPOCH_BITS is log2(KSK_EPOCHS)");
_Static_assert(KSK_PREFIX_BYTES_MAX + 24 < SP_KAFKA_CONFIG_ID_MAX, "slot ids fit");

enum ksk_delivery {
    KSK_DELIVERY_DEFAULT, /* exactly-once with checkpoints (and idempotence), else at-least-once */
    KSK_AT_LEAST_ONCE,
    KSK_EXACTLY_ONCE,
};

struct ksk_config {
    struct sp_kafka_config kafka; /* transactional_id cleared: the slots set theirs */
    char topic[SP_KAFKA_TOPIC_NAME_BYTES_MAX + 1];
    enum sp_format format;
    int key_field; /* -1: null keys */
    enum sp_type key_type;
    uint32_t key_offset;
    int64_t timeout_ms;
    uint64_t buffer_bytes;
    enum ksk_delivery delivery;
    char txn_prefix[KSK_PREFIX_BYTES_MAX + 1];
    uint32_t slot_count; /* spate.sink.transactions */
};

/* A record waiting for the producer: this header, key, value, padding to 8. */
struct ksk_rec {
    int64_t ts;
    int32_t key_len; /* -1: null */
    int32_t value_len;
};

/* A transactional id of the pool, and its producer. */
enum ksk_slot_state {
    SLOT_UNINIT,     /* no producer id: InitProducerId next */
    SLOT_INITING,    /* InitProducerId in flight */
    SLOT_RESUMING,   /* restore: committing the transaction a checkpoint listed */
    SLOT_FREE,       /* no transaction */
    SLOT_OPEN,       /* the current epoch's transaction */
    SLOT_PRECOMMIT,  /* closed at barrier `closed_at`, waiting for its checkpoint */
    SLOT_COMMITTING, /* EndTxn in flight */
    SLOT_COMMITTED,  /* reusable once a checkpoint after `listed` completed */
};

struct ksk;

struct ksk_slot {
    struct ksk *s;
    struct sp_kafka_producer producer;
    bool up;         /* producer initialised */
    bool needs_init; /* after a resumed commit: InitProducerId before reuse */
    bool foreign;    /* restore only: an id of an old shard taken over */
    enum ksk_slot_state state;
    uint32_t index;     /* in the pool */
    uint64_t records;   /* produced into its current transaction */
    uint64_t closed_at; /* the barrier that closed it */
    uint64_t listed;    /* the newest checkpoint that listed it */
    char id[SP_KAFKA_CONFIG_ID_MAX];
};

/* A checkpoint held until the records of every epoch before `epoch_end` are acknowledged. */
struct ksk_hold {
    uint64_t id;
    uint64_t epoch_end;
    bool known; /* false while its marker waits in the FIFO */
};

struct ksk {
    struct sp_inst *inst;
    const struct ksk_config *config;
    struct sp_kafka_client client;
    struct sp_kafka_producer producer; /* at-least-once */
    bool client_up, producer_up;
    struct sp_kafka_topic_info *topic;
    char *value;          /* one encoded value */
    uint32_t value_bytes; /* max.request.size */

    uint8_t *backlog; /* FIFO of struct ksk_rec */
    size_t backlog_read, backlog_len, backlog_cap;
    uint64_t backlog_records;
    uint64_t backlog_records_max;
    uint64_t backlog_added, backlog_taken; /* records ever put into / taken from the FIFO */

    /* Checkpoints. */
    bool ckpt;                      /* this run takes checkpoints */
    bool exactly;                   /* ... and the sink writes in transactions */
    uint64_t epoch;                 /* epochs ended so far */
    uint64_t epoch_out[KSK_EPOCHS]; /* records unacknowledged, by epoch % KSK_EPOCHS */
    struct ksk_hold holds[KSK_HOLDS_MAX];
    unsigned hold_count;
    bool mark;           /* a barrier waits in the FIFO: */
    uint64_t mark_after; /* ... after this many records were taken from it, */
    uint64_t mark_id;    /* ... that of this checkpoint */
    struct ksk_slot slots[KSK_SLOTS_MAX];
    uint32_t slot_count;
    uint32_t starved;     /* barriers sat out in a row for want of a slot */
    struct ksk_slot *cur; /* the open transaction, NULL when none */
    uint64_t last_done;   /* the newest checkpoint completed */
    uint64_t end_barrier; /* the first barrier after end() */
    bool ready;           /* a slot was initialised once */
    /* Restore: producers for old shards' ids, made after the slots (their
     * client listeners chain on top: deinitialised first, in reverse). */
    struct ksk_slot *rec;
    uint32_t rec_count;
    uint32_t rec_up;
    uint32_t recovering; /* resumes and initialisations still running */
    uint64_t restored_id;
    struct sp_timer rec_timer; /* releases the restore's producers */

    uint64_t produced, acked, failed;
    uint64_t committed_txns;
    uint64_t bytes_outstanding;
    uint64_t bytes_outstanding_max; /* high-water mark */
    uint64_t blocks;                /* times the sink blocked its input */
    bool blocked;
    bool ending;
    bool done;
    bool closing;
    struct sp_timer deadline;
    struct sp_stop_hook hook;
};

static void ksk_fail(struct ksk *s, int err, const char *fmt, ...) SP_PRINTF(3, 4);

static void ksk_fail(struct ksk *s, int err, const char *fmt, ...)
{
    char msg[SP_JOB_ERROR_BYTES / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sp_exec_fail(s->inst->xs, err, "kafka sink '%s': %s", s->config->topic, msg);
}

static bool ksk_stopped(const struct ksk *s)
{
    return s->closing || sp_exec_failed(s->inst->xs);
}

static void ksk_advance(struct ksk *s);
static void ksk_backlog_drain(struct ksk *s);
static void ksk_update_block(struct ksk *s);
static void ksk_check_done(struct ksk *s);

/* ---- Epochs and holds ---- */

static uint32_t ksk_tag(uint64_t epoch)
{
    return (uint32_t)(epoch & (KSK_EPOCHS - 1));
}

/* Whether every record of the epochs before `end` is acknowledged. */
static bool ksk_acked_before(const struct ksk *s, uint64_t end)
{
    SP_ASSERT(end <= s->epoch);
    uint64_t from = s->epoch >= KSK_EPOCHS - 1 ? s->epoch - (KSK_EPOCHS - 1) : 0;
    for (uint64_t e = from; e < end; e++)
        if (s->epoch_out[ksk_tag(e)] > 0)
            return false;
    return true;
}

/* Releases the holds whose records are all acknowledged (after taking them
 * off the list: a release may call back into the sink). */
static void ksk_holds_check(struct ksk *s)
{
    uint64_t ids[KSK_HOLDS_MAX];
    unsigned kept = 0, released = 0;
    for (unsigned i = 0; i < s->hold_count; i++) {
        struct ksk_hold h = s->holds[i];
        if (h.known && ksk_acked_before(s, h.epoch_end))
            ids[released++] = h.id;
        else
            s->holds[kept++] = h;
    }
    s->hold_count = kept;
    for (unsigned i = 0; i < released; i++)
        sp_ckpt_release(s->inst->xs, ids[i], 0);
}

/* Holds checkpoint `id` (room checked by the caller). */
static void ksk_hold(struct ksk *s, uint64_t id, uint64_t epoch_end, bool known)
{
    SP_ASSERT(s->hold_count < KSK_HOLDS_MAX);
    sp_ckpt_hold(s->inst->xs, id);
    s->holds[s->hold_count++] = (struct ksk_hold){.id = id, .epoch_end = epoch_end, .known = known};
}

/* ---- Transactions ---- */

/* A failed transactional operation's reason, short: the broker's error name. */
static const char *ksk_txn_error(const struct sp_kafka_producer *producer, int err)
{
    if (producer->txn_error_code != 0)
        return sp_kafka_error_name(producer->txn_error_code);
    return strerror(-err);
}

static void ksk_slot_commit_done(struct sp_kafka_producer *producer, int err, void *ctx)
{
    struct ksk_slot *slot = ctx;
    struct ksk *s = slot->s;
    SP_ASSERT(slot->state == SLOT_COMMITTING);
    if (err < 0) {
        if (!ksk_stopped(s))
            ksk_fail(s, err,
                     "committing transaction %s (checkpoint %" PRIu64 ") failed (%s): its records "
                     "are lost; raise transaction.timeout.ms (%d ms), or another job uses prefix "
                     "'%s'",
                     slot->id, slot->closed_at, ksk_txn_error(producer, err),
                     s->config->kafka.transaction_timeout_ms, s->config->txn_prefix);
        return;
    }
    slot->state = SLOT_COMMITTED;
    slot->records = 0;
    s->committed_txns++;
    ksk_advance(s);
}

static void ksk_slot_init_done(struct sp_kafka_producer *producer, int err, void *ctx)
{
    struct ksk_slot *slot = ctx;
    struct ksk *s = slot->s;
    SP_ASSERT(slot->state == SLOT_INITING);
    if (err < 0) {
        if (!ksk_stopped(s))
            ksk_fail(s, err, "InitProducerId for transactional id %s failed: %s", slot->id,
                     ksk_txn_error(producer, err));
        return;
    }
    slot->needs_init = false;
    slot->state = SLOT_FREE;
    if (slot->foreign) {
        SP_ASSERT(s->recovering > 0);
        s->recovering--;
    } else {
        s->ready = true;
    }
    ksk_advance(s);
}

static void ksk_slot_init(struct ksk *s, struct ksk_slot *slot)
{
    SP_ASSERT(slot->up);
    slot->state = SLOT_INITING;
    int rc = sp_kafka_producer_txn_init(&slot->producer, ksk_slot_init_done, slot);
    if (rc < 0)
        ksk_fail(s, rc, "InitProducerId for transactional id %s", slot->id);
}

/* The open transaction, begun on a free slot if none is open; NULL when none can be. */
static struct ksk_slot *ksk_cur(struct ksk *s)
{
    if (s->cur != NULL)
        return s->cur;
    if (s->recovering > 0)
        return NULL;
    for (unsigned i = 0; i < s->slot_count; i++) {
        struct ksk_slot *slot = &s->slots[i];
        if (slot->state != SLOT_FREE)
            continue;
        int rc = sp_kafka_producer_txn_begin(&slot->producer);
        if (rc < 0) {
            ksk_fail(s, rc, "beginning a transaction on %s", slot->id);
            return NULL;
        }
        slot->state = SLOT_OPEN;
        slot->records = 0;
        s->cur = slot;
        return slot;
    }
    return NULL;
}

/*
 * Moves every slot on as far as it can go: closed transactions of a
 * completed checkpoint commit, committed ones no checkpoint can resume any
 * more become free (after InitProducerId if resumed), uninitialised ones
 * initialise; then what waits may go.
 */
static void ksk_advance(struct ksk *s)
{
    if (ksk_stopped(s))
        return;
    for (unsigned i = 0; s->exactly && i < s->slot_count; i++) {
        struct ksk_slot *slot = &s->slots[i];
        switch (slot->state) {
        case SLOT_PRECOMMIT:
            if (slot->closed_at <= s->last_done) {
                slot->state = SLOT_COMMITTING;
                int rc =
                    sp_kafka_producer_txn_end(&slot->producer, true, ksk_slot_commit_done, slot);
                if (rc < 0) {
                    ksk_fail(s, rc, "committing transaction %s", slot->id);
                    return;
                }
            }
            break;
        case SLOT_COMMITTED:
            if (slot->listed < s->last_done) {
                if (slot->needs_init)
                    ksk_slot_init(s, slot);
                else
                    slot->state = SLOT_FREE;
            }
            break;
        case SLOT_UNINIT:
            ksk_slot_init(s, slot);
            break;
        default:
            break;
        }
        if (ksk_stopped(s))
            return;
    }
    if (s->rec_up > 0 && s->recovering == 0 && !sp_timer_armed(&s->rec_timer))
        sp_shard_timer_arm(s->inst->xs->shard, &s->rec_timer, sp_now_ns());
    ksk_holds_check(s);
    ksk_backlog_drain(s);
    ksk_update_block(s);
    ksk_check_done(s);
}

/* Closes the current epoch (at barrier `id`): its transaction takes no more records. */
static void ksk_rotate(struct ksk *s, uint64_t id)
{
    SP_ASSERT(s->epoch_out[ksk_tag(s->epoch + 1)] == 0);
    s->epoch++;
    if (!s->exactly) {
        sp_kafka_producer_flush(&s->producer);
        return;
    }
    struct ksk_slot *slot = s->cur;
    if (slot == NULL || slot->records == 0)
        return; /* an empty transaction goes on: nothing to commit */
    slot->state = SLOT_PRECOMMIT;
    slot->closed_at = id;
    s->cur = NULL;
    sp_kafka_producer_flush(&slot->producer);
}

/* Puts every transaction that checkpoint `id` must commit; `pending` closes later. */
static void ksk_put(struct ksk *s, uint64_t id, struct ksk_slot *pending)
{
    for (unsigned i = 0; i < s->slot_count; i++) {
        struct ksk_slot *slot = &s->slots[i];
        if (slot != pending && slot->state != SLOT_PRECOMMIT && slot->state != SLOT_COMMITTING)
            continue;
        char key[64], value[SP_KAFKA_CONFIG_ID_MAX + 48];
        snprintf(key, sizeof(key), "txn/%u/%u", s->inst->xs->shard->id, slot->index);
        int n = snprintf(value, sizeof(value), "%" PRId64 " %d %s", slot->producer.producer_id,
                         (int)slot->producer.producer_epoch, slot->id);
        SP_ASSERT(n > 0 && (size_t)n < sizeof(value));
        slot->listed = id;
        int rc = sp_ckpt_put(s->inst->xs, s->inst->node, key, value, (uint32_t)n);
        if (rc < 0)
            sp_warn("kafka sink '%s': checkpoint %" PRIu64 ": keeping transaction %s: %s",
                    s->config->topic, id, slot->id, strerror(-rc));
    }
}

static void ksk_barrier(struct sp_inst *inst, uint64_t id)
{
    struct ksk *s = inst->state;
    if (s == NULL || ksk_stopped(s) || !s->ckpt)
        return;
    if (s->ending && s->end_barrier == 0)
        s->end_barrier = id;
    bool waiting = s->backlog_len > s->backlog_read;
    /* Slots this checkpoint would list, and whether one may still become free without it. */
    uint32_t listed = 0;
    bool coming = false;
    for (unsigned i = 0; s->exactly && i < s->slot_count; i++) {
        enum ksk_slot_state st = s->slots[i].state;
        listed += st == SLOT_PRECOMMIT || st == SLOT_COMMITTING;
        coming |= st == SLOT_UNINIT || st == SLOT_INITING || st == SLOT_FREE;
    }
    if (s->cur != NULL && (waiting || s->cur->records > 0))
        listed++;
    bool starving =
        s->exactly && ((waiting && s->cur == NULL && !coming) || listed >= s->slot_count);
    const char *why = NULL;
    if (s->recovering > 0)
        why = "the transactions of the restored checkpoint are being committed";
    else if (waiting && s->mark)
        why = "records before the previous barrier still wait for the producer";
    else if (starving)
        why = "every transactional id holds a transaction waiting for a checkpoint";
    else if (waiting && s->exactly && s->cur == NULL)
        why = "records wait for a transaction";
    else if (s->epoch_out[ksk_tag(s->epoch + 1)] > 0)
        why = "too many epochs are still unacknowledged";
    else if (s->hold_count == KSK_HOLDS_MAX)
        why = "too many checkpoints are still held";
    s->starved = starving ? s->starved + 1 : 0;
    if (s->starved >= KSK_STARVED_MAX) {
        ksk_fail(s, -EBUSY,
                 "all %u transactional ids hold transactions waiting for checkpoints that "
                 "failed; raise spate.sink.transactions, or see why checkpoints fail",
                 s->slot_count);
        return;
    }
    if (why != NULL) {
        /* This barrier ends no epoch: its records join the next one. */
        sp_debug("kafka sink '%s': sitting out checkpoint %" PRIu64 ": %s", s->config->topic, id,
                 why);
        sp_ckpt_hold(inst->xs, id);
        sp_ckpt_release(inst->xs, id, -EBUSY);
        return;
    }
    if (waiting) {
        /* The FIFO's records came before the barrier: the epoch ends after them. */
        s->mark = true;
        s->mark_after = s->backlog_added;
        s->mark_id = id;
        ksk_hold(s, id, 0, false);
        if (s->exactly)
            ksk_put(s, id, s->cur);
        return;
    }
    ksk_rotate(s, id);
    if (s->exactly)
        ksk_put(s, id, NULL);
    if (!ksk_acked_before(s, s->epoch))
        ksk_hold(s, id, s->epoch, true);
}

/* The FIFO reached a barrier's marker: that epoch ends now. */
static void ksk_mark_reached(struct ksk *s)
{
    SP_ASSERT(s->mark);
    SP_ASSERT(s->backlog_taken == s->mark_after);
    s->mark = false;
    ksk_rotate(s, s->mark_id);
    for (unsigned i = 0; i < s->hold_count; i++)
        if (!s->holds[i].known && s->holds[i].id == s->mark_id) {
            s->holds[i].known = true;
            s->holds[i].epoch_end = s->epoch;
        }
    ksk_holds_check(s);
}

static void ksk_checkpoint_done(struct sp_inst *inst, uint64_t id)
{
    struct ksk *s = inst->state;
    if (s == NULL || !s->exactly)
        return;
    if (id > s->last_done)
        s->last_done = id;
    ksk_advance(s);
}

/* ---- Restore ---- */

/* What a restored checkpoint listed for this node, parsed. */
struct ksk_listed {
    struct ksk *s;
    uint32_t old_shard;
    int64_t pid;
    int16_t epoch;
    char id[SP_KAFKA_CONFIG_ID_MAX];
};

struct ksk_restore {
    struct ksk *s;
    struct ksk_listed *items;
    uint32_t count, cap;
    int err;
};

static void ksk_restore_item(void *ctx, const char *key, const void *value, uint32_t len)
{
    struct ksk_restore *r = ctx;
    unsigned old_shard, slot;
    int n = 0;
    if (r->err != 0 || sscanf(key, "txn/%u/%u%n", &old_shard, &slot, &n) != 2 || key[n] != '\0')
        return; /* not a transaction (or a failure already found) */
    char text[SP_KAFKA_CONFIG_ID_MAX + 48];
    if (len >= sizeof(text)) {
        r->err = -EBADMSG;
        return;
    }
    memcpy(text, value, len);
    text[len] = '\0';
    long long pid;
    int epoch, at = 0;
    if (sscanf(text, "%lld %d %n", &pid, &epoch, &at) != 2 || pid < 0 || epoch < 0 ||
        epoch > INT16_MAX || text[at] == '\0' || strlen(text + at) >= SP_KAFKA_CONFIG_ID_MAX) {
        r->err = -EBADMSG;
        return;
    }
    if (old_shard % r->s->inst->xs->shard->shard_count != r->s->inst->xs->shard->id)
        return; /* another shard's now */
    if (r->count == r->cap) {
        uint32_t cap = SP_MAX(16u, r->cap * 2);
        if (cap > KSK_RECOVERY_MAX) {
            r->err = -E2BIG;
            return;
        }
        struct ksk_listed *items = realloc(r->items, cap * sizeof(*items));
        if (items == NULL) {
            r->err = -ENOMEM;
            return;
        }
        r->items = items;
        r->cap = cap;
    }
    struct ksk_listed *it = &r->items[r->count++];
    it->old_shard = old_shard;
    it->pid = pid;
    it->epoch = (int16_t)epoch;
    snprintf(it->id, sizeof(it->id), "%s", text + at);
}

static void ksk_slot_resume_done(struct sp_kafka_producer *producer, int err, void *ctx)
{
    struct ksk_slot *slot = ctx;
    struct ksk *s = slot->s;
    SP_ASSERT(slot->state == SLOT_RESUMING);
    if (err < 0) {
        if (!ksk_stopped(s))
            ksk_fail(s, err,
                     "transaction %s of checkpoint %" PRIu64 " cannot be committed (%s): "
                     "records of a completed checkpoint are lost; the job was down longer than "
                     "transaction.timeout.ms (%d ms), or another job uses prefix '%s'",
                     slot->id, s->restored_id, ksk_txn_error(producer, err),
                     s->config->kafka.transaction_timeout_ms, s->config->txn_prefix);
        return;
    }
    SP_ASSERT(s->recovering > 0);
    s->recovering--;
    s->committed_txns++;
    s->ready = true; /* the coordinator answers */
    /* Committed; still what a second restore from the same checkpoint
     * resumes: the id keeps its epoch until a later checkpoint completes. */
    slot->state = SLOT_COMMITTED;
    slot->needs_init = true;
    slot->listed = s->restored_id;
    sp_debug("kafka sink '%s': committed transaction %s of checkpoint %" PRIu64, s->config->topic,
             slot->id, s->restored_id);
    ksk_advance(s);
}

static void ksk_slot_resume(struct ksk *s, struct ksk_slot *slot, const struct ksk_listed *it)
{
    slot->state = SLOT_RESUMING;
    s->recovering++;
    int rc = sp_kafka_producer_txn_resume(&slot->producer, it->pid, it->epoch);
    if (rc == 0)
        rc = sp_kafka_producer_txn_end(&slot->producer, true, ksk_slot_resume_done, slot);
    if (rc < 0)
        ksk_fail(s, rc, "resuming transaction %s", slot->id);
}

/* The restore's producers are done: released in reverse (their listeners chain). */
static void ksk_rec_release(struct sp_timer *timer, void *ctx)
{
    struct ksk *s = ctx;
    (void)timer;
    while (s->rec_up > 0) {
        struct ksk_slot *slot = &s->rec[--s->rec_up];
        if (slot->up) {
            slot->up = false;
            sp_kafka_producer_deinit(&slot->producer);
        }
    }
}

/* A producer for transactional id `id` (own slot or one of the restore's). */
static int ksk_slot_setup(struct ksk *s, struct ksk_slot *slot, const char *id);

static int ksk_restored(struct sp_inst *inst)
{
    struct ksk *s = inst->state;
    if (s == NULL || !s->exactly)
        return 0;
    struct sp_shard *shard = inst->xs->shard;
    uint32_t n = shard->shard_count, me = shard->id;
    uint32_t old_shards = sp_ckpt_restored_shards(inst->xs);
    s->restored_id = sp_ckpt_restored_id(inst->xs);
    struct ksk_restore r = {.s = s};
    sp_ckpt_foreach(inst->xs, inst->node, ksk_restore_item, &r);
    if (r.err != 0) {
        free(r.items);
        ksk_fail(s, r.err, "the transactions checkpoint %" PRIu64 " lists cannot be read",
                 s->restored_id);
        return r.err;
    }
    /* The old shards this one takes over, other than itself: each slot id
     * gets a producer, which resumes what is listed and initialises the rest. */
    uint32_t foreign = 0;
    for (uint32_t old = me + n; old < old_shards; old += n)
        foreign++;
    uint64_t want = (uint64_t)foreign * s->slot_count + r.count;
    if (want > KSK_RECOVERY_MAX) {
        free(r.items);
        ksk_fail(s, -E2BIG,
                 "restoring from %u shards onto %u needs %llu producers on one shard "
                 "(at most %u)",
                 old_shards, n, (unsigned long long)want, KSK_RECOVERY_MAX);
        return -E2BIG;
    }
    if (want > 0) {
        s->rec = calloc((size_t)want, sizeof(*s->rec));
        if (s->rec == NULL) {
            free(r.items);
            ksk_fail(s, -ENOMEM, "restoring transactions");
            return -ENOMEM;
        }
    }
    s->rec_count = (uint32_t)want;
    bool *taken = calloc(r.count + 1, sizeof(*taken));
    if (taken == NULL) {
        free(r.items);
        ksk_fail(s, -ENOMEM, "restoring transactions");
        return -ENOMEM;
    }
    int rc = 0;
    /* This shard's own ids: resume what is listed, initialise the rest. */
    for (uint32_t j = 0; j < s->slot_count && rc == 0; j++) {
        struct ksk_slot *slot = &s->slots[j];
        for (uint32_t i = 0; i < r.count; i++)
            if (!taken[i] && strcmp(r.items[i].id, slot->id) == 0) {
                taken[i] = true;
                ksk_slot_resume(s, slot, &r.items[i]);
                break;
            }
        if (slot->state == SLOT_UNINIT)
            ksk_slot_init(s, slot);
        if (ksk_stopped(s))
            rc = -ECANCELED;
    }
    /* Every other listed transaction (an old shard's, or an id of another prefix or pool size). */
    for (uint32_t i = 0; i < r.count && rc == 0; i++) {
        if (taken[i])
            continue;
        struct ksk_slot *slot = &s->rec[s->rec_up];
        rc = ksk_slot_setup(s, slot, r.items[i].id);
        s->rec_up++; /* set up, or partly: released either way */
        if (rc == 0) {
            slot->foreign = true;
            taken[i] = true;
            ksk_slot_resume(s, slot, &r.items[i]);
        }
    }
    /* The old shards' slot ids not listed: InitProducerId aborts what they left open. */
    for (uint32_t old = me + n; old < old_shards && rc == 0; old += n)
        for (uint32_t j = 0; j < s->slot_count && rc == 0; j++) {
            char id[SP_KAFKA_CONFIG_ID_MAX];
            snprintf(id, sizeof(id), "%s-%u-%u", s->config->txn_prefix, old, j);
            bool listed = false;
            for (uint32_t i = 0; i < r.count; i++)
                listed |= strcmp(r.items[i].id, id) == 0;
            if (listed)
                continue;
            struct ksk_slot *slot = &s->rec[s->rec_up];
            rc = ksk_slot_setup(s, slot, id);
            s->rec_up++;
            if (rc == 0) {
                slot->foreign = true;
                s->recovering++;
                ksk_slot_init(s, slot);
            }
        }
    uint32_t inits = 0;
    for (uint32_t j = 0; j < s->slot_count; j++)
        inits += s->slots[j].state == SLOT_INITING;
    for (uint32_t i = 0; i < s->rec_up; i++)
        inits += s->rec[i].state == SLOT_INITING;
    sp_info("kafka sink '%s': shard %u: committing %u transaction(s) of checkpoint %" PRIu64
            ", aborting what %u other transactional id(s) left open",
            s->config->topic, me, r.count, s->restored_id, inits);
    free(taken);
    free(r.items);
    if (rc < 0 || ksk_stopped(s))
        return rc < 0 ? rc : -ECANCELED;
    return 0;
}

/* ---- Producing ---- */

static uint32_t rec_bytes(int32_t key_len, int32_t value_len)
{
    uint32_t n = (uint32_t)sizeof(struct ksk_rec) + (uint32_t)SP_MAX(key_len, 0) +
                 (uint32_t)SP_MAX(value_len, 0);
    return (n + 7u) & ~7u;
}

/* 1: produced; 0: the producer cannot take it now (retry later); <0: failed. */
static int ksk_produce(struct ksk *s, const void *key, int32_t key_len, const void *value,
                       int32_t value_len, int64_t ts)
{
    uint64_t bytes = (uint64_t)SP_MAX(key_len, 0) + (uint64_t)value_len;
    const struct ksk_config *c = s->config;
    struct sp_kafka_producer *producer = &s->producer;
    struct ksk_slot *slot = NULL;
    if (s->exactly) {
        slot = ksk_cur(s);
        if (slot == NULL)
            return ksk_stopped(s) ? -ECANCELED : 0;
        producer = &slot->producer;
    }
    /* The delivery report gives back the bytes and the epoch. */
    uintptr_t tag = (uintptr_t)(bytes << KSK_EPOCH_BITS) | ksk_tag(s->epoch);
    int rc = sp_kafka_produce(producer, c->topic, strlen(c->topic), -1, key, key_len, value,
                              value_len, NULL, 0, ts, (void *)tag);
    if (rc == 0) {
        s->produced++;
        s->epoch_out[ksk_tag(s->epoch)]++;
        if (slot != NULL)
            slot->records++;
        s->bytes_outstanding += bytes;
        if (s->bytes_outstanding > s->bytes_outstanding_max)
            s->bytes_outstanding_max = s->bytes_outstanding;
        return 1;
    }
    if (rc == -EAGAIN || rc == -ENOBUFS)
        return 0;
    if (rc == -ENOENT)
        ksk_fail(s, 0, "the topic does not exist");
    else if (rc == -EMSGSIZE)
        ksk_fail(s, 0, "a record of %llu bytes is larger than max.request.size (%d)",
                 (unsigned long long)bytes, c->kafka.max_request_size);
    else if (slot != NULL && slot->producer.txn_error[0] != '\0')
        ksk_fail(s, rc, "producing into transaction %s: %s", slot->id, slot->producer.txn_error);
    else
        ksk_fail(s, rc, "producing");
    return rc;
}

static int ksk_backlog_add(struct ksk *s, const void *key, int32_t key_len, const void *value,
                           int32_t value_len, int64_t ts)
{
    uint32_t need = rec_bytes(key_len, value_len);
    if (s->backlog_len + need > s->backlog_cap) {
        /* Move what is left to the front, then grow if still short. */
        if (s->backlog_read > 0) {
            memmove(s->backlog, s->backlog + s->backlog_read, s->backlog_len - s->backlog_read);
            s->backlog_len -= s->backlog_read;
            s->backlog_read = 0;
        }
        if (s->backlog_len + need > s->backlog_cap) {
            size_t cap = SP_MAX(s->backlog_cap * 2, s->backlog_len + need + (64u << 10));
            uint8_t *b = realloc(s->backlog, cap);
            if (b == NULL) {
                ksk_fail(s, -ENOMEM, "holding records for the producer");
                return -ENOMEM;
            }
            s->backlog = b;
            s->backlog_cap = cap;
        }
    }
    struct ksk_rec h = {ts, key_len, value_len};
    uint8_t *at = s->backlog + s->backlog_len;
    memcpy(at, &h, sizeof(h));
    at += sizeof(h);
    if (key_len > 0)
        memcpy(at, key, (size_t)key_len);
    at += SP_MAX(key_len, 0);
    memcpy(at, value, (size_t)value_len);
    s->backlog_len += need;
    s->backlog_records++;
    s->backlog_added++;
    if (s->backlog_records > s->backlog_records_max)
        s->backlog_records_max = s->backlog_records;
    return 0;
}

/*
 * Hands the waiting records to the producer, in order, while it takes them;
 * a barrier's marker ends the epoch where it stands.
 */
static void ksk_backlog_drain(struct ksk *s)
{
    while (!ksk_stopped(s)) {
        if (s->mark && s->backlog_taken == s->mark_after)
            ksk_mark_reached(s);
        if (s->backlog_read == s->backlog_len)
            break;
        struct ksk_rec h;
        memcpy(&h, s->backlog + s->backlog_read, sizeof(h));
        const uint8_t *key = s->backlog + s->backlog_read + sizeof(h);
        const uint8_t *value = key + SP_MAX(h.key_len, 0);
        if (ksk_produce(s, h.key_len >= 0 ? key : NULL, h.key_len, value, h.value_len, h.ts) <= 0)
            return;
        s->backlog_read += rec_bytes(h.key_len, h.value_len);
        s->backlog_records--;
        s->backlog_taken++;
    }
    if (s->backlog_read == s->backlog_len)
        s->backlog_read = s->backlog_len = 0;
}

/* Sends what the producers hold now instead of after linger.ms. */
static void ksk_flush(struct ksk *s)
{
    if (!s->producer_up)
        return;
    if (!s->exactly) {
        sp_kafka_producer_flush(&s->producer);
        return;
    }
    for (unsigned i = 0; i < s->slot_count; i++)
        if (s->slots[i].state == SLOT_OPEN || s->slots[i].state == SLOT_PRECOMMIT)
            sp_kafka_producer_flush(&s->slots[i].producer);
}

/* Blocks past the high-water mark or with records waiting; unblocks under half. */
static void ksk_update_block(struct ksk *s)
{
    bool waiting = s->backlog_len > s->backlog_read;
    if (!s->blocked && (waiting || s->bytes_outstanding >= s->config->buffer_bytes)) {
        s->blocked = true;
        s->blocks++;
        sp_sink_block(s->inst);
        ksk_flush(s); /* what is queued goes now */
    } else if (s->blocked && !waiting && s->bytes_outstanding <= s->config->buffer_bytes / 2) {
        s->blocked = false;
        sp_sink_unblock(s->inst);
    }
}

/* Whether every transaction is committed and the checkpoint after the end completed. */
static bool ksk_committed_all(const struct ksk *s)
{
    if (!s->exactly)
        return true;
    if (s->end_barrier == 0 || s->last_done < s->end_barrier || s->recovering > 0)
        return false;
    for (unsigned i = 0; i < s->slot_count; i++) {
        const struct ksk_slot *slot = &s->slots[i];
        if (slot->state == SLOT_PRECOMMIT || slot->state == SLOT_COMMITTING ||
            (slot->state == SLOT_OPEN && slot->records > 0))
            return false;
    }
    return true;
}

static void ksk_check_done(struct ksk *s)
{
    if (!s->ending || s->done || s->backlog_len > s->backlog_read || s->mark ||
        s->acked + s->failed != s->produced || !ksk_committed_all(s))
        return;
    s->done = true;
    sp_debug("kafka sink '%s': %llu records acknowledged, %llu transactions committed; blocked "
             "%llu times, at most %llu bytes unacknowledged, %llu records waiting for the producer",
             s->config->topic, (unsigned long long)s->acked, (unsigned long long)s->committed_txns,
             (unsigned long long)s->blocks, (unsigned long long)s->bytes_outstanding_max,
             (unsigned long long)s->backlog_records_max);
    sp_sink_done(s->inst);
}

static void ksk_delivered(struct sp_kafka_producer *producer, const struct sp_kafka_delivery *d,
                          void *ctx)
{
    struct ksk *s = ctx;
    (void)producer;
    uintptr_t tag = (uintptr_t)d->msg_ctx;
    uint64_t bytes = (uint64_t)(tag >> KSK_EPOCH_BITS);
    uint32_t epoch = (uint32_t)(tag & (KSK_EPOCHS - 1));
    SP_ASSERT(s->bytes_outstanding >= bytes);
    SP_ASSERT(s->epoch_out[epoch] > 0);
    s->bytes_outstanding -= bytes;
    s->epoch_out[epoch]--;
    if (d->err == 0) {
        s->acked++;
        sp_sink_count(s->inst, 1);
    } else {
        s->failed++;
        if (!ksk_stopped(s)) {
            if (d->err == -EPROTO && d->error_code != 0)
                ksk_fail(s, 0, "delivery to partition %d failed: %s", d->partition,
                         sp_kafka_error_name(d->error_code));
            else
                ksk_fail(s, d->err, "delivery to partition %d failed", d->partition);
        }
    }
    if (ksk_stopped(s))
        return;
    ksk_holds_check(s);
    ksk_backlog_drain(s);
    ksk_update_block(s);
    ksk_check_done(s);
}

/* Metadata arrived or a broker came up: waiting records may go now. */
static void ksk_client_event(struct sp_kafka_client *client, void *ctx)
{
    struct ksk *s = ctx;
    (void)client;
    if (s->topic != NULL && s->topic->known && (!s->exactly || s->ready))
        sp_shard_timer_cancel(s->inst->xs->shard, &s->deadline);
    if (ksk_stopped(s) || !s->producer_up)
        return;
    ksk_backlog_drain(s);
    if (s->ending)
        ksk_flush(s);
    ksk_update_block(s);
    ksk_check_done(s);
}

static void ksk_deadline(struct sp_timer *timer, void *ctx)
{
    struct ksk *s = ctx;
    (void)timer;
    if (ksk_stopped(s) || (s->topic->known && (!s->exactly || s->ready)))
        return;
    long long ms = (long long)s->config->timeout_ms;
    if (!s->client.metadata_ever)
        ksk_fail(s, 0, "cannot reach the bootstrap servers %s within %lld ms: %s",
                 s->config->kafka.bootstrap_servers, ms,
                 s->client.bootstrap_error < 0 ? strerror(-s->client.bootstrap_error)
                                               : "no answer");
    else if (s->topic->error == SP_KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION)
        ksk_fail(s, 0, "the topic does not exist (waited %lld ms)", ms);
    else if (!s->topic->known)
        ksk_fail(s, 0, "no metadata for the topic within %lld ms (%s)", ms,
                 sp_kafka_error_name(s->topic->error));
    else
        ksk_fail(s, 0,
                 "no transactional id '%s-%u-*' initialised within %lld ms (is the "
                 "transaction coordinator up?)",
                 s->config->txn_prefix, s->inst->xs->shard->id, ms);
}
/* ---- Rows in ---- */

/* The row's key as bytes (in `tmp` for numbers); length, -1 for a null key. */
static int32_t ksk_key(const struct ksk_config *c, const void *row, char tmp[KSK_KEY_BYTES],
                       const void **key)
{
    const uint8_t *p = (const uint8_t *)row + c->key_offset;
    *key = tmp;
    if (c->key_field < 0) {
        *key = NULL;
        return -1;
    }
    switch (c->key_type) {
    case SP_T_STR: {
        struct sp_str str;
        memcpy(&str, p, sizeof(str));
        *key = str.len > 0 ? str.ptr : "";
        return (int32_t)str.len;
    }
    case SP_T_I64: {
        int64_t v;
        memcpy(&v, p, sizeof(v));
        return snprintf(tmp, KSK_KEY_BYTES, "%lld", (long long)v);
    }
    case SP_T_F64: {
        double v;
        memcpy(&v, p, sizeof(v));
        return snprintf(tmp, KSK_KEY_BYTES, "%.17g", v);
    }
    case SP_T_BOOL:
        return snprintf(tmp, KSK_KEY_BYTES, "%s", p[0] ? "true" : "false");
    }
    return -1;
}

static void ksk_push(struct sp_inst *inst, unsigned port, struct sp_batch *in)
{
    (void)port;
    struct ksk *s = inst->state;
    const struct sp_schema *schema = inst->node->schema;
    for (uint32_t i = 0; i < in->count && !ksk_stopped(s); i++) {
        const void *row = sp_batch_row(in, i);
        char tmp[KSK_KEY_BYTES];
        const void *key;
        int32_t key_len = ksk_key(s->config, row, tmp, &key);
        int n = sp_serde_encode(s->config->format, schema, row, s->value, s->value_bytes);
        if (n < 0) {
            ksk_fail(s, n == -ENOSPC ? 0 : n, "a row does not fit max.request.size (%u bytes)%s",
                     s->value_bytes, n == -ENOSPC ? " once encoded" : "");
            return;
        }
        int64_t ts = sp_batch_ts(in, i);
        int rc = 0;
        if (s->backlog_len == s->backlog_read)
            rc = ksk_produce(s, key, key_len, s->value, n, ts);
        if (rc < 0)
            return;
        if (rc == 0 && ksk_backlog_add(s, key, key_len, s->value, n, ts) < 0)
            return;
    }
    ksk_update_block(s);
}

static void ksk_end(struct sp_inst *inst)
{
    struct ksk *s = inst->state;
    s->ending = true;
    if (ksk_stopped(s))
        return;
    ksk_backlog_drain(s);
    ksk_flush(s);
    if (s->exactly)
        sp_ckpt_request(inst->xs); /* its barrier ends the last epoch, its done commits it */
    ksk_update_block(s);
    ksk_check_done(s);
}

/* ---- Life cycle ---- */

/* The shard is stopping: every connection closes so that it can drain. */
static void ksk_stop(struct sp_stop_hook *hook, struct sp_shard *shard)
{
    struct ksk *s = SP_CONTAINER_OF(hook, struct ksk, hook);
    s->closing = true;
    sp_shard_timer_cancel(shard, &s->deadline);
    sp_shard_timer_cancel(shard, &s->rec_timer);
    /* Requests in flight fail first (their reports are ignored now), then the rest. */
    if (s->client_up && !s->client.closing)
        sp_kafka_client_close(&s->client);
    /* Producers chain the client's listener: the last one made goes first.
     * Open transactions stay open: the next run's restore resolves them. */
    ksk_rec_release(&s->rec_timer, s);
    for (uint32_t i = s->slot_count; i-- > 0;)
        if (s->slots[i].up) {
            s->slots[i].up = false;
            sp_kafka_producer_deinit(&s->slots[i].producer);
        }
    if (s->producer_up) {
        s->producer_up = false;
        if (!s->exactly)
            sp_kafka_producer_deinit(&s->producer);
    }
    if (s->acked + s->failed != s->produced)
        sp_warn("kafka sink '%s': stopped with %llu records unacknowledged", s->config->topic,
                (unsigned long long)(s->produced - s->acked - s->failed));
}

static int ksk_slot_setup(struct ksk *s, struct ksk_slot *slot, const char *id)
{
    memset(slot, 0, sizeof(*slot));
    slot->s = s;
    slot->state = SLOT_UNINIT;
    snprintf(slot->id, sizeof(slot->id), "%s", id);
    int rc = sp_kafka_producer_init(&slot->producer, &s->client, ksk_delivered, s);
    if (rc < 0) {
        ksk_fail(s, rc, "starting the producer of transactional id %s", id);
        return rc;
    }
    slot->up = true;
    rc = sp_kafka_producer_txn_id_set(&slot->producer, id);
    if (rc < 0) {
        ksk_fail(s, rc, "transactional id '%s'", id);
        return rc;
    }
    return 0;
}

static int ksk_open(struct sp_inst *inst)
{
    const struct ksk_config *c = inst->node->u.sink.config;
    struct sp_shard *shard = inst->xs->shard;
    struct ksk *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    inst->state = s;
    s->inst = inst;
    s->config = c;
    sp_timer_init(&s->deadline, ksk_deadline, s);
    sp_timer_init(&s->rec_timer, ksk_rec_release, s);
    s->ckpt = sp_ckpt_enabled(inst->xs);
    bool idempotent = sp_kafka_config_idempotent(&c->kafka);
    s->exactly = s->ckpt && c->delivery != KSK_AT_LEAST_ONCE && idempotent;
    if (shard->id == 0 && c->delivery == KSK_EXACTLY_ONCE && !s->ckpt)
        sp_warn("kafka sink '%s': exactly-once needs checkpoints: writing at least once", c->topic);
    if (shard->id == 0 && s->ckpt && c->delivery == KSK_DELIVERY_DEFAULT && !idempotent)
        sp_warn("kafka sink '%s': enable.idempotence is off: writing at least once", c->topic);
    s->value_bytes = (uint32_t)c->kafka.max_request_size;
    s->value = malloc(s->value_bytes);
    if (s->value == NULL)
        return -ENOMEM;
    int rc = sp_kafka_client_init(&s->client, shard, &c->kafka, ksk_client_event, s);
    if (rc < 0) {
        ksk_fail(s, rc, "bootstrap servers '%s'", c->kafka.bootstrap_servers);
        return rc;
    }
    s->client_up = true;
    s->client.allow_auto_topic_creation = false;
    sp_shard_on_stop(shard, &s->hook, ksk_stop);
    if (s->exactly) {
        s->slot_count = c->slot_count;
        for (uint32_t i = 0; i < s->slot_count; i++) {
            char id[SP_KAFKA_CONFIG_ID_MAX];
            snprintf(id, sizeof(id), "%s-%u-%u", c->txn_prefix, shard->id, i);
            rc = ksk_slot_setup(s, &s->slots[i], id);
            if (rc < 0)
                return rc;
            s->slots[i].index = i;
        }
        /* Restoring: restored() resumes the listed transactions first. */
        if (!sp_ckpt_restoring(inst->xs))
            for (uint32_t i = 0; i < s->slot_count; i++)
                ksk_slot_init(s, &s->slots[i]);
        if (ksk_stopped(s))
            return -ECANCELED;
    } else {
        rc = sp_kafka_producer_init(&s->producer, &s->client, ksk_delivered, s);
        if (rc < 0) {
            ksk_fail(s, rc, "starting the producer");
            return rc;
        }
    }
    s->producer_up = true;
    s->topic = sp_kafka_client_topic(&s->client, c->topic, strlen(c->topic), &rc);
    if (s->topic == NULL) {
        ksk_fail(s, rc, "the topic's name");
        return rc;
    }
    sp_shard_timer_arm(shard, &s->deadline,
                       sp_now_ns() + (uint64_t)c->timeout_ms * SP_NSEC_PER_MSEC);
    return 0;
}

static void ksk_close(struct sp_inst *inst)
{
    struct ksk *s = inst->state;
    if (s == NULL)
        return;
    sp_shard_timer_cancel(inst->xs->shard, &s->deadline);
    if (!s->closing)
        ksk_stop(&s->hook, inst->xs->shard); /* a failed start: no stop hook ran */
    if (s->client_up && !sp_kafka_client_idle(&s->client)) {
        /* The drain timed out with I/O in flight that points into s: keep it. */
        sp_warn("kafka sink '%s': connections still busy at close; leaking them", s->config->topic);
        inst->state = NULL;
        return;
    }
    if (s->client_up)
        sp_kafka_client_deinit(&s->client);
    free(s->rec);
    free(s->backlog);
    free(s->value);
    free(s);
    inst->state = NULL;
}

static const struct sp_op_vt kafka_sink_vt = {
    .name = "kafka",
    .open = ksk_open,
    .push = ksk_push,
    .end = ksk_end,
    .close = ksk_close,
    .barrier = ksk_barrier,
    .checkpoint_done = ksk_checkpoint_done,
    .restored = ksk_restored,
};

/* ---- Building ---- */

static bool ksk_set(struct sp_job *job, struct ksk_config *c, const char *key, const char *value)
{
    char err[256];
    int64_t v;
    char *end;
    if (strcmp(key, "spate.sink.delivery") == 0) {
        if (strcmp(value, "exactly-once") == 0) {
            c->delivery = KSK_EXACTLY_ONCE;
        } else if (strcmp(value, "at-least-once") == 0) {
            c->delivery = KSK_AT_LEAST_ONCE;
        } else {
            sp_job_set_error(job, "kafka sink: %s '%s': exactly-once or at-least-once", key, value);
            return false;
        }
        return true;
    }
    bool timeout = strcmp(key, "spate.sink.timeout.ms") == 0;
    bool slots = strcmp(key, "spate.sink.transactions") == 0;
    if (timeout || slots || strcmp(key, "spate.sink.buffer.bytes") == 0) {
        errno = 0;
        v = strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || v < 1) {
            sp_job_set_error(job, "kafka sink: %s '%s': a positive integer", key, value);
            return false;
        }
        if (slots && (v < KSK_SLOTS_MIN || v > KSK_SLOTS_MAX)) {
            sp_job_set_error(job, "kafka sink: %s '%s': from %d to %d", key, value, KSK_SLOTS_MIN,
                             KSK_SLOTS_MAX);
            return false;
        }
        if (timeout)
            c->timeout_ms = v;
        else if (slots)
            c->slot_count = (uint32_t)v;
        else
            c->buffer_bytes = (uint64_t)v;
        return true;
    }
    if (sp_kafka_config_set(&c->kafka, key, value, err, sizeof(err)) < 0) {
        sp_job_set_error(job, "kafka sink: %s", err);
        return false;
    }
    return true;
}
static bool ksk_property(struct sp_job *job, struct ksk_config *c, const char *kv)
{
    const char *eq = strchr(kv, '=');
    char key[256];
    if (eq == NULL || eq == kv || (size_t)(eq - kv) >= sizeof(key)) {
        sp_job_set_error(job, "kafka sink: property '%s': must be key=value", kv);
        return false;
    }
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = '\0';
    return ksk_set(job, c, key, eq + 1);
}

static bool ksk_configure(struct sp_job *job, struct ksk_config *c,
                          const struct sp_kafka_sink_config *config, enum sp_format format,
                          const struct sp_schema *schema)
{
    if (config->bootstrap == NULL || config->bootstrap[0] == '\0' || config->topic == NULL ||
        config->topic[0] == '\0') {
        sp_job_set_error(job, "kafka sink: bootstrap servers and a topic are needed");
        return false;
    }
    if (strlen(config->topic) > SP_KAFKA_TOPIC_NAME_BYTES_MAX) {
        sp_job_set_error(job, "kafka sink: a topic name has at most %u characters",
                         SP_KAFKA_TOPIC_NAME_BYTES_MAX);
        return false;
    }
    if (format > SP_FORMAT_STRING) {
        sp_job_set_error(job, "kafka sink: unknown format %d", (int)format);
        return false;
    }
    int value = sp_schema_find(schema, "value");
    if ((format == SP_FORMAT_RAW || format == SP_FORMAT_STRING) &&
        (value < 0 || schema->fields[value].type != SP_T_STR)) {
        sp_job_set_error(job, "kafka sink: RAW and STRING need a string field 'value' in '%s'",
                         schema->name ? schema->name : "the schema");
        return false;
    }
    c->key_field = -1;
    if (config->key_field != NULL) {
        c->key_field = sp_schema_find(schema, config->key_field);
        if (c->key_field < 0) {
            sp_job_set_error(job, "kafka sink: '%s' has no field '%s' for the key",
                             schema->name ? schema->name : "the input", config->key_field);
            return false;
        }
        c->key_type = schema->fields[c->key_field].type;
        c->key_offset = schema->fields[c->key_field].offset;
    }
    snprintf(c->topic, sizeof(c->topic), "%s", config->topic);
    c->format = format;
    c->timeout_ms = KSK_TIMEOUT_MS_DEFAULT;
    c->buffer_bytes = KSK_BUFFER_BYTES_DEFAULT;
    sp_kafka_config_init(&c->kafka);
    c->delivery = KSK_DELIVERY_DEFAULT;
    c->slot_count = KSK_SLOTS_DEFAULT;
    if (!ksk_set(job, c, "client.id", "spate-sink") ||
        !ksk_set(job, c, "transaction.timeout.ms", KSK_TXN_TIMEOUT_MS_DEFAULT))
        return false;
    for (unsigned i = 0; config->properties != NULL && config->properties[i] != NULL; i++)
        if (!ksk_property(job, c, config->properties[i]))
            return false;
    if (!ksk_set(job, c, "bootstrap.servers", config->bootstrap))
        return false;
    /* transactional.id names the prefix of the shards' ids; the client's
     * own stays unset (an at-least-once producer is not transactional). */
    const char *prefix = c->kafka.transactional_id;
    char fallback[KSK_PREFIX_BYTES_MAX + 1];
    if (prefix[0] == '\0') {
        /* The job's name and the node's id: stable across runs of one program. */
        snprintf(fallback, sizeof(fallback), "%s-kafka-%u", job->name, job->node_count);
        prefix = fallback;
    }
    if (strlen(prefix) > KSK_PREFIX_BYTES_MAX) {
        sp_job_set_error(job, "kafka sink: transactional.id '%s': at most %d characters", prefix,
                         KSK_PREFIX_BYTES_MAX);
        return false;
    }
    snprintf(c->txn_prefix, sizeof(c->txn_prefix), "%s", prefix);
    c->kafka.transactional_id[0] = '\0';
    if (c->delivery == KSK_EXACTLY_ONCE && !sp_kafka_config_idempotent(&c->kafka)) {
        sp_job_set_error(job, "kafka sink: spate.sink.delivery=exactly-once needs "
                              "enable.idempotence=true (and acks=all)");
        return false;
    }
    char err[256];
    if (sp_kafka_config_validate(&c->kafka, err, sizeof(err)) < 0) {
        sp_job_set_error(job, "kafka sink: %s", err);
        return false;
    }
    return true;
}

void sp_sink_kafka(struct sp_stream *in, const struct sp_kafka_sink_config *config,
                   enum sp_format format)
{
    struct sp_job *job = sp_stream_job(in);
    const struct sp_schema *schema = sp_stream_schema(in);
    if (schema == NULL)
        return; /* the stream is a placeholder: its error is recorded */
    if (config == NULL) {
        sp_job_set_error(job, "kafka sink: no configuration given");
        return;
    }
    struct ksk_config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        sp_job_set_error(job, "kafka sink: out of memory");
        return;
    }
    if (!ksk_configure(job, c, config, format, schema)) {
        free(c);
        return;
    }
    sp_job_add_sink(in, "kafka", &kafka_sink_vt, c, free);
}

/* block_io: block request latency, issue to completion, per device, operation and cgroup.
 *
 * Traces block:block_rq_issue (the request goes to the driver) and block:block_rq_complete. An
 * in-flight request is known by (dev, sector), the only identity both tracepoints carry; dev is the
 * whole disk (partitions share it). Requests without data (flushes: nr_sector 0) are skipped, since
 * several can be in flight at sector 0 of one disk at once.
 *
 * Who the I/O is for: the cgroup of the task running when the request was made. When the kernel
 * has block:block_io_start (6.5+) that is taken there, in submit_bio's caller: the process itself
 * for direct I/O and reads that miss the page cache. Without it, it is taken at issue, which is the
 * submitter when blk-mq dispatches at once (the common case for direct I/O) but a kblockd worker
 * (root cgroup) when dispatch was deferred. Buffered writes are issued by the kernel's writeback
 * workers in either case, so their latency is attributed to the worker's cgroup (usually root), not
 * to the process that dirtied the pages: the bio's owning blkcg is a struct field we do not read.
 *
 * Cost: a hash update at issue and a lookup, delete and histogram add at completion.
 */
#include "bcgov_common.h"
#include "bcgov_hist.h"

#define OP_READ 0
#define OP_WRITE 1
#define OP_DISCARD 2
#define OP_OTHER 3

struct inflight_key {
    u32 dev;
    u32 _pad;
    u64 sector;
};

struct inflight {
    u64 issued_ns;
    u64 cgroup_id;
};

struct block_key {
    u64 cgroup_id;
    u32 dev;
    u32 op;
};

/* LRU: a completion the kernel skipped running this probe for (another BPF program was running on
 * the CPU), or the tail of a partially completed request, leaves its entry behind; the oldest go
 * first, so a full map costs the oldest in-flight requests' latencies, never every later one. */
BPF_TABLE("lru_hash", struct inflight_key, struct inflight, inflight, 16384);
#ifdef HAVE_IO_START
/* LRU: a request front-merged after block_io_start changes sector and is never looked up again */
BPF_TABLE("lru_hash", struct inflight_key, u64, submitters, 16384);
#endif
BPF_HASH(block_io_latency, struct block_key, struct bcgov_hist, 4096);
BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX);

/* BCC rewrites map methods only in the probe's own file, so each probe carries this helper. */
static __always_inline void stat_inc(int idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;
}

/* rwbs is "[F]<op>[F][A][S][M]": an optional leading F is a preflush, then R, W, D (discard),
 * E (secure erase), N (none). Passed by value: tracepoint args cannot go to helper functions. */
static __always_inline u32 op_of(char c0, char c1)
{
    char c = c0 == 'F' ? c1 : c0;
    if (c == 'R')
        return OP_READ;
    if (c == 'W')
        return OP_WRITE;
    if (c == 'D')
        return OP_DISCARD;
    return OP_OTHER;
}

#ifdef HAVE_IO_START
TRACEPOINT_PROBE(block, block_io_start)
{
    if (args->nr_sector == 0)
        return 0;
    struct inflight_key k = {};
    k.dev = args->dev;
    k.sector = args->sector;
    u64 cg = bpf_get_current_cgroup_id();
    submitters.update(&k, &cg);
    return 0;
}
#endif

TRACEPOINT_PROBE(block, block_rq_issue)
{
    if (args->nr_sector == 0)
        return 0;
    struct inflight_key k = {};
    k.dev = args->dev;
    k.sector = args->sector;
    struct inflight v = {};
    v.issued_ns = bpf_ktime_get_ns();
    v.cgroup_id = bpf_get_current_cgroup_id();
#ifdef HAVE_IO_START
    u64 *submitter = submitters.lookup(&k);
    if (submitter) {
        v.cgroup_id = *submitter;
        submitters.delete(&k);
    }
#endif
    /* a requeued request is issued again: overwriting restarts its clock, as the device saw it */
    if (inflight.update(&k, &v) != 0)
        stat_inc(BCGOV_STAT_MAP_FULL);
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    if (args->nr_sector == 0)
        return 0;
    struct inflight_key k = {};
    k.dev = args->dev;
    k.sector = args->sector;
    struct inflight *v = inflight.lookup(&k);
    if (!v) {
        /* issued before the agent started, or the tail of a partially completed request */
        stat_inc(BCGOV_STAT_UNTRACKED);
        return 0;
    }
    u64 delta = bpf_ktime_get_ns() - v->issued_ns;
    struct block_key bk = {};
    bk.cgroup_id = v->cgroup_id;
    bk.dev = args->dev;
    bk.op = op_of(args->rwbs[0], args->rwbs[1]);
    inflight.delete(&k);

    struct bcgov_hist zero = {};
    struct bcgov_hist *h = block_io_latency.lookup_or_try_init(&bk, &zero);
    if (!h) {
        stat_inc(BCGOV_STAT_MAP_FULL);
        return 0;
    }
    bcgov_hist_add(h, delta);
    stat_inc(BCGOV_STAT_EMITTED);   /* no ring buffer: counts observations made */
    return 0;
}

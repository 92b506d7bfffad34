/* fork_count: an example probe kept outside probes/ (its spec is fork_count.py next to it).
 *
 * Traces sched:sched_process_fork: counts forks per cgroup of the forking task in a hash the agent
 * drains at every scrape (declared as bcgov_example_forks_total in the spec), and sends one record
 * per fork, which the spec's handler turns into a log line. Shared headers come from probes/
 * through the loader's -I.
 * Cost: one hash update and one 40-byte ring buffer record per fork (and per thread created: clone
 * fires the same tracepoint); an example, not meant for a busy node.
 */
#include "bcgov_common.h"

struct fork_record {
    u64 ts_ns;
    u64 cgroup_id;
    u32 parent_pid;
    u32 child_pid;
    char comm[16];
};

BPF_HASH(fork_counts, u64, u64, 4096);
BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX);
BPF_ARRAY(layout, struct fork_record, 1);
BPF_RINGBUF_OUTPUT(events, 16);

static __always_inline void stat_inc(int idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u64 cg = bpf_get_current_cgroup_id();
    u64 zero = 0;
    u64 *n = fork_counts.lookup_or_try_init(&cg, &zero);
    if (n)
        lock_xadd(n, 1);
    else
        stat_inc(BCGOV_STAT_MAP_FULL);

    struct fork_record *r = events.ringbuf_reserve(sizeof(struct fork_record));
    if (!r) {
        stat_inc(BCGOV_STAT_LOST);
        return 0;
    }
    r->ts_ns = bpf_ktime_get_ns();
    r->cgroup_id = cg;
    r->parent_pid = args->parent_pid;
    r->child_pid = args->child_pid;
    bpf_get_current_comm(r->comm, sizeof(r->comm));
    events.ringbuf_submit(r, 0);
    stat_inc(BCGOV_STAT_EMITTED);
    return 0;
}

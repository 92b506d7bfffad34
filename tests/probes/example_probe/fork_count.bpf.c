/* fork_count: an example probe kept outside probes/ (its spec is fork_count.py next to it).
 *
 * Traces sched:sched_process_fork and counts forks per cgroup of the forking task in a hash the
 * agent drains at every scrape (declared as bcgov_example_forks_total in the spec). Shared headers
 * come from probes/ through the loader's -I.
 * Cost: one hash update per fork (and per thread created: clone fires the same tracepoint).
 */
#include "bcgov_common.h"

BPF_HASH(fork_counts, u64, u64, 4096);
BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX);

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
    return 0;
}

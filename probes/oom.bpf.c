/* oom: OOM kills, the victim's pid, comm, memory and cgroup.
 *
 * Traces oom:mark_victim. The tracepoint fires in the context of the task that ran out of memory,
 * which is often but not always the victim; the victim's cgroup is then taken from a small map of
 * pid -> cgroup kept at fork and exec (sched:sched_process_fork, sched:sched_process_exec).
 * Cost: an LRU update per fork and exec, one record per OOM kill.
 */
#include "bcgov_common.h"

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 16
#endif

#define CGROUP_FROM_CURRENT 1
#define CGROUP_FROM_MAP 2

struct oom_record {
    u64 ts_ns;
    u64 cgroup_id;
    u64 total_vm_kb;
    u64 anon_rss_kb;
    u64 file_rss_kb;
    u64 shmem_rss_kb;
    u32 pid;
    u32 trigger_tgid;
    u32 uid;
    u32 cgroup_source;
    char comm[16];
};

BPF_TABLE("lru_hash", u32, u64, pid_cgroup, 65536);
BPF_HASH(oom_kills, u64, u64, 4096);
BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX);

/* BCC rewrites map methods only in the probe's own file, so each probe carries this helper. */
static __always_inline void stat_inc(int idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;
}
BPF_ARRAY(layout, struct oom_record, 1);
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 child = args->child_pid;
    u64 cg = bpf_get_current_cgroup_id();
    pid_cgroup.update(&child, &cg);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u64 cg = bpf_get_current_cgroup_id();
    pid_cgroup.update(&tgid, &cg);
    return 0;
}

TRACEPOINT_PROBE(oom, mark_victim)
{
    u32 victim = args->pid;
    u32 current = bpf_get_current_pid_tgid() >> 32;
    u64 cg = 0;
    u32 source = 0;
    if (victim == current) {
        cg = bpf_get_current_cgroup_id();
        source = CGROUP_FROM_CURRENT;
    } else {
        u64 *known = pid_cgroup.lookup(&victim);
        if (known) {
            cg = *known;
            source = CGROUP_FROM_MAP;
        }
    }
    {
        u64 __zero = 0;
        u64 *__c = oom_kills.lookup_or_try_init(&cg, &__zero);
        if (__c) lock_xadd(__c, 1); else stat_inc(BCGOV_STAT_MAP_FULL);
    }

    struct oom_record *r = events.ringbuf_reserve(sizeof(struct oom_record));
    if (!r) {
        stat_inc(BCGOV_STAT_LOST);
        return 0;
    }
    r->ts_ns = bpf_ktime_get_ns();
    r->cgroup_id = cg;
    r->total_vm_kb = args->total_vm;
    r->anon_rss_kb = args->anon_rss;
    r->file_rss_kb = args->file_rss;
    r->shmem_rss_kb = args->shmem_rss;
    r->pid = victim;
    r->trigger_tgid = current;
    r->uid = args->uid;
    r->cgroup_source = source;
    TP_DATA_LOC_READ_STR(r->comm, comm, sizeof(r->comm));
    events.ringbuf_submit(r, 1);  /* no wakeup (see process.bpf.c): read at the next poll */
    stat_inc(BCGOV_STAT_EMITTED);
    return 0;
}

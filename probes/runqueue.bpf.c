/* runqueue: run-queue latency (runnable to running) per cgroup.
 *
 * Traces sched:sched_wakeup and sched:sched_wakeup_new (a task becomes runnable) and
 * sched:sched_switch (one leaves the CPU, possibly still runnable, and the next gets it).
 *
 * Which cgroup a delay belongs to: at wakeup and at switch-in the running task ("current") is not
 * the one that waited, and the tracepoints carry only its pid. Reading the wakee's task_struct
 * would need header offsets that need not match this kernel (see bcgov_common.h). So the delay is
 * measured at switch-in and parked per tid in `waited`; the task's own next sched_switch, where it
 * is `prev` and therefore current (the tracepoint runs before the context switch), attributes it
 * with bpf_get_current_cgroup_id(). The histogram thus lags by one time slice, and a delay is
 * counted under the cgroup the task is in when it leaves the CPU, which only differs for a task
 * moved between cgroups while running.
 *
 * Cost: sched_switch is the hottest tracepoint there is: two hash lookups, at most two updates and
 * one histogram add per switch. Tid 0 (the idle tasks) is never tracked.
 */
#include "bcgov_common.h"
#include "bcgov_hist.h"

/* prev_state's reportable sleep states (S D T t X Z P) and I; a task preempted while runnable
 * reports 0 or TASK_REPORT_MAX (0x100), both outside this mask. */
#define SLEEP_STATE_MASK 0xff
#define EXITING_STATES 0x30   /* X (dead) and Z (zombie): the task's last switch-out */

/* tid -> when it became runnable. LRU: a task woken while still running and then exiting leaves
 * an entry no switch-in will consume. */
BPF_TABLE("lru_hash", u32, u64, enqueued, 16384);
BPF_HASH(waited, u32, u64, 16384);     /* tid -> its last run-queue delay, not yet attributed */
BPF_HASH(runqueue_latency, u64, struct bcgov_hist, 4096);
BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX);

/* BCC rewrites map methods only in the probe's own file, so each probe carries this helper. */
static __always_inline void stat_inc(int idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;
}

static __always_inline int enqueue(u32 tid)
{
    if (tid == 0)
        return 0;
    u64 now = bpf_ktime_get_ns();
    enqueued.update(&tid, &now);   /* LRU: never refused */
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup)
{
    return enqueue(args->pid);
}

TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
    return enqueue(args->pid);
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    u32 prev = args->prev_pid;
    u32 next = args->next_pid;

    if (prev != 0) {
        u64 *d = waited.lookup(&prev);
        if (d) {
            u64 delay = *d;
            waited.delete(&prev);
            u64 cg = bpf_get_current_cgroup_id();   /* current is prev here */
            struct bcgov_hist zero = {};
            struct bcgov_hist *h = runqueue_latency.lookup_or_try_init(&cg, &zero);
            if (h) {
                bcgov_hist_add(h, delay);
                stat_inc(BCGOV_STAT_EMITTED);   /* no ring buffer: counts observations made */
            } else {
                stat_inc(BCGOV_STAT_MAP_FULL);
            }
        }
        long state = args->prev_state;
        if ((state & SLEEP_STATE_MASK) == 0)
            enqueue(prev);   /* preempted, still runnable: it waits in the queue again */
        else if (state & EXITING_STATES)
            enqueued.delete(&prev);
    }

    if (next != 0) {
        u64 *since = enqueued.lookup(&next);
        if (since) {
            u64 delay = bpf_ktime_get_ns() - *since;
            enqueued.delete(&next);
            if (waited.update(&next, &delay) != 0)
                stat_inc(BCGOV_STAT_MAP_FULL);
        }
    }
    return 0;
}

/* runqueue: run-queue latency (runnable to running) per cgroup.
 *
 * Traces sched:sched_wakeup and sched:sched_wakeup_new (a task becomes runnable) and
 * sched:sched_switch (one leaves the CPU, possibly still runnable, and the next gets it).
 *
 * Which cgroup a delay belongs to: at wakeup and at switch-in the running task ("current") is not
 * the one that waited, and the tracepoints carry only its pid. Reading the wakee's task_struct
 * would need header offsets that need not match this kernel (see bcgov_common.h). So the delay is
 * measured at switch-in and parked in the task's `tasks` entry; its own next sched_switch, where it
 * is `prev` and therefore current (the tracepoint runs before the context switch), attributes it
 * with bpf_get_current_cgroup_id(). The histogram thus lags by one time slice, and a delay is
 * counted under the cgroup the task is in when it leaves the CPU, which only differs for a task
 * moved between cgroups while running.
 *
 * Cost: sched_switch is the hottest tracepoint there is, so per-task state is one hash entry
 * changed in place: two lookups per switch plus a histogram add when a delay is settled (measured
 * ~0.3 us per switch and ~0.2 us per wakeup on a loaded 2-vCPU VM). Tid 0 (the idle tasks) is
 * never tracked.
 */
#include "bcgov_common.h"
#include "bcgov_hist.h"

/* prev_state's reportable sleep states (S D T t X Z P) and I; a task preempted while runnable
 * reports 0 or TASK_REPORT_MAX (0x100), both outside this mask. */
#define SLEEP_STATE_MASK 0xff
#define EXITING_STATES 0x30   /* X (dead) and Z (zombie): the task's last switch-out */

/* One entry per task that has been runnable, updated in place: a switch costs two lookups and,
 * when a delay is settled, one histogram add. Deleted at the task's last switch-out. */
struct task_wait {
    u64 runnable_since;   /* 0: not waiting in a run queue (or not seen becoming runnable) */
    u64 delay_ns;         /* measured at switch-in, attributed at the next switch-out; 0: none */
};

/* LRU: a task whose last switch-out the kernel skipped running this probe for keeps its entry;
 * the least recently switched go first, so leaks can never stop new tasks from being tracked. */
BPF_TABLE("lru_hash", u32, struct task_wait, tasks, 32768);
BPF_HASH(runqueue_latency, u64, struct bcgov_hist, 4096);
BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX);

/* BCC rewrites map methods only in the probe's own file, so each probe carries this helper. */
static __always_inline void stat_inc(int idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;
}

static __always_inline void mark_runnable(u32 tid, struct task_wait *w)
{
    u64 now = bpf_ktime_get_ns();
    if (w) {
        w->runnable_since = now;
        return;
    }
    struct task_wait fresh = {};
    fresh.runnable_since = now;
    if (tasks.update(&tid, &fresh) != 0)
        stat_inc(BCGOV_STAT_MAP_FULL);
}

static __always_inline int enqueue(u32 tid)
{
    if (tid == 0)
        return 0;
    mark_runnable(tid, tasks.lookup(&tid));
    return 0;
}

/* Skipped wakeups. The kernel skips a tracepoint program when another BPF program is running on
 * the CPU, and wakeups often fire inside one (a timer interrupt waking a sleeper while any program
 * runs). A skipped wakeup would lose that wait. Raw tracepoints on the same events are guarded per
 * program and run after these (the loader attaches them last); their only argument is the task
 * pointer, used as a key and never dereferenced. When the tracepoint program ran, it leaves its
 * pid in `wakeup_seen` and the raw one learns pointer -> pid; when it did not, the raw one marks
 * the task runnable under the pid it learnt at an earlier wakeup (counted in `wakeup_repairs`:
 * [0] repaired, [1] task never seen before: not repairable). */
/* The note is only believed when fresh: one left by a tracepoint run whose raw run never came (the
 * moment between the two attaches, or a raw run skipped) must not pair a later skipped wakeup's task
 * with its pid. A wakeup nested between another's two programs consumes that one's note, which is
 * then marked twice: harmless (it only moves runnable_since later by the nesting time), counted. */
#define WAKEUP_NOTE_FRESH_NS 50000
struct wakeup_note {
    u64 ts;    /* 0: consumed */
    u32 pid;
    u32 _pad;
};
BPF_PERCPU_ARRAY(wakeup_seen, struct wakeup_note, 1);
BPF_TABLE("lru_hash", u64, u32, task_pids, 32768);
BPF_PERCPU_ARRAY(wakeup_repairs, u64, 2);

static __always_inline int wakeup(u32 pid)
{
    int zero = 0;
    struct wakeup_note *n = wakeup_seen.lookup(&zero);
    if (n) {
        n->pid = pid;
        n->ts = bpf_ktime_get_ns();
    }
    return enqueue(pid);
}

TRACEPOINT_PROBE(sched, sched_wakeup)
{
    return wakeup(args->pid);
}

TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
    return wakeup(args->pid);
}

static __always_inline int raw_wakeup(u64 task)
{
    int zero = 0;
    struct wakeup_note *n = wakeup_seen.lookup(&zero);
    if (!n)
        return 0;
    u64 noted = n->ts;
    n->ts = 0;
    if (noted && bpf_ktime_get_ns() - noted < WAKEUP_NOTE_FRESH_NS) {
        /* the tracepoint program ran for this wakeup: learn the task's pid */
        u32 pid = n->pid;
        u32 *known = task_pids.lookup(&task);
        if (!known || *known != pid)
            task_pids.update(&task, &pid);
        return 0;
    }
    u32 *pid = task_pids.lookup(&task);
    int idx = pid ? 0 : 1;
    u64 *count = wakeup_repairs.lookup(&idx);
    if (count)
        *count += 1;
    if (pid)
        enqueue(*pid);
    return 0;
}

int bcgov_raw__sched_wakeup(struct bpf_raw_tracepoint_args *ctx)
{
    return raw_wakeup(ctx->args[0]);
}

int bcgov_raw__sched_wakeup_new(struct bpf_raw_tracepoint_args *ctx)
{
    return raw_wakeup(ctx->args[0]);
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    u32 prev = args->prev_pid;
    u32 next = args->next_pid;

    if (prev != 0) {
        long state = args->prev_state;
        struct task_wait *w = tasks.lookup(&prev);
        if (w && w->delay_ns) {
            u64 cg = bpf_get_current_cgroup_id();   /* current is prev here */
            struct bcgov_hist zero = {};
            struct bcgov_hist *h = runqueue_latency.lookup_or_try_init(&cg, &zero);
            if (h) {
                bcgov_hist_add(h, w->delay_ns);
                stat_inc(BCGOV_STAT_EMITTED);   /* no ring buffer: counts observations made */
            } else {
                stat_inc(BCGOV_STAT_MAP_FULL);
            }
            w->delay_ns = 0;
        }
        if ((state & SLEEP_STATE_MASK) == 0)
            mark_runnable(prev, w);   /* preempted, still runnable: it waits in the queue again */
        else if (state & EXITING_STATES)
            tasks.delete(&prev);
        else if (w)
            w->runnable_since = 0;    /* asleep: a wakeup that came while it ran is void */
    }

    if (next != 0) {
        struct task_wait *w = tasks.lookup(&next);
        if (w && w->runnable_since) {
            u64 delay = bpf_ktime_get_ns() - w->runnable_since;
            w->delay_ns = delay ? delay : 1;   /* 0 means "none": a 0 ns wait still counts */
            w->runnable_since = 0;
        }
    }
    return 0;
}

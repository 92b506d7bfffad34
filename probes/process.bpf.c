/* process: process exec and exit, with argv, exit code and lifetime.
 *
 * Traces syscalls:sys_enter_execve (argv, read from the caller's memory before exec replaces it),
 * sched:sched_process_exec (the exec succeeded), sched:sched_process_fork (start time),
 * syscalls:sys_enter_exit_group (exit code) and signal:signal_deliver (fatal default-action signals),
 * and sched:sched_process_exit (the whole thread group is gone). Exit codes come from the syscall
 * and the signal instead of task_struct, which header offsets cannot be trusted to read.
 * pending_exec cannot leak: its entry (the argv of an execve in flight) goes at the exec, at a
 * failed execve's return (syscalls:sys_exit_execve, ret < 0) and at the calling thread's exit, so
 * a storm of failed execs leaves nothing behind; should it fill anyway, only the execs that found
 * it full lose their argv (counted in map_full), never the later ones.
 * Argv travels raw to the agent, which redacts secrets before anything leaves the process.
 *
 * Cost: a hash update per fork and exec, one record (~1.2 kB) per exec and one per process exit.
 */
#include "bcgov_common.h"

#ifndef ARGS_MAX
#define ARGS_MAX 16
#endif
#define ARG_LEN 64
#define FILENAME_LEN 128
#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif

#define KIND_EXEC 1
#define KIND_EXIT 2

#define EXIT_UNKNOWN 0
#define EXIT_CODE 1    /* exit_group(code) */
#define EXIT_SIGNAL 2  /* a fatal signal with its default action */

struct exec_args {
    u32 argc;
    u32 truncated;
    char argv[ARGS_MAX * ARG_LEN];
};

struct exec_record {
    u32 kind;
    u32 tgid;
    u64 ts_ns;
    u64 cgroup_id;
    u32 uid;
    u32 argc;
    u32 truncated;
    u32 _pad;
    char comm[16];
    char filename[FILENAME_LEN];
    /* flat, ARG_LEN bytes per argument: BCC's ctypes view loses the inner dimension of 2-D arrays */
    char argv[ARGS_MAX * ARG_LEN];
};

struct exit_record {
    u32 kind;
    u32 tgid;
    u64 ts_ns;
    u64 cgroup_id;
    u64 start_ns;
    s32 code;
    u32 exit_kind;
    char comm[16];
};

struct exit_info {
    s32 code;
    u32 kind;
};

BPF_PERCPU_ARRAY(scratch, struct exec_args, 1);
BPF_HASH(pending_exec, u32, struct exec_args, 4096);
BPF_TABLE("lru_hash", u32, u64, proc_start, 65536);
BPF_TABLE("lru_hash", u32, struct exit_info, exit_infos, 16384);
BPF_HASH(process_execs, u64, u64, 16384);
BPF_HASH(process_exits, struct exit_info, u64, 4096);
BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX);

/* BCC rewrites map methods only in the probe's own file, so each probe carries this helper. */
static __always_inline void stat_inc(int idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;
}
BPF_ARRAY(layout_exec, struct exec_record, 1);
BPF_ARRAY(layout_exit, struct exit_record, 1);
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    int zero = 0;
    struct exec_args *a = scratch.lookup(&zero);
    if (!a)
        return 0;
    a->argc = 0;
    a->truncated = 0;
    const char *const *argv = (const char *const *)args->argv;
#pragma unroll
    for (int i = 0; i < ARGS_MAX; i++) {
        const char *p = 0;
        bpf_probe_read_user(&p, sizeof(p), &argv[i]);
        if (!p)
            goto done;
        if (bpf_probe_read_user_str(&a->argv[i * ARG_LEN], ARG_LEN, p) < 0)
            a->argv[i * ARG_LEN] = 0;
        a->argc = i + 1;
    }
    {
        const char *more = 0;
        bpf_probe_read_user(&more, sizeof(more), &argv[ARGS_MAX]);
        if (more)
            a->truncated = 1;
    }
done:;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (pending_exec.update(&tid, a) != 0)
        stat_inc(BCGOV_STAT_MAP_FULL);
    return 0;
}

/* A failed execve returns to its caller: its argv will never be logged. A successful one already
 * removed the entry at sched_process_exec, so this delete finds nothing then. */
TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    if (args->ret < 0) {
        u32 tid = (u32)bpf_get_current_pid_tgid();
        pending_exec.delete(&tid);
    }
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 child = args->child_pid;
    u64 now = bpf_ktime_get_ns();
    proc_start.update(&child, &now);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 old_tid = args->old_pid;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u64 cgroup_id = bpf_get_current_cgroup_id();
    u64 now = bpf_ktime_get_ns();

    {
        u64 __zero = 0;
        u64 *__c = process_execs.lookup_or_try_init(&cgroup_id, &__zero);
        if (__c) lock_xadd(__c, 1); else stat_inc(BCGOV_STAT_MAP_FULL);
    }
    if (!proc_start.lookup(&tgid))
        proc_start.update(&tgid, &now);

    struct exec_record *r = events.ringbuf_reserve(sizeof(struct exec_record));
    if (!r) {
        stat_inc(BCGOV_STAT_LOST);
        pending_exec.delete(&old_tid);
        return 0;
    }
    r->kind = KIND_EXEC;
    r->tgid = tgid;
    r->ts_ns = now;
    r->cgroup_id = cgroup_id;
    r->uid = (u32)bpf_get_current_uid_gid();
    r->_pad = 0;
    bpf_get_current_comm(&r->comm, sizeof(r->comm));
    TP_DATA_LOC_READ_STR(r->filename, filename, FILENAME_LEN);
    struct exec_args *a = pending_exec.lookup(&old_tid);
    if (a) {
        r->argc = a->argc;
        r->truncated = a->truncated;
        bpf_probe_read_kernel(r->argv, sizeof(r->argv), a->argv);
        pending_exec.delete(&old_tid);
    } else {
        r->argc = 0;
        r->truncated = 0;
        r->argv[0] = 0;
    }
    /* No wakeup (BPF_RB_NO_WAKEUP = 1): a wakeup is an irq_work whose IPI lands while this program
     * still runs, so the reader's sched_wakeup is skipped by every tracepoint program on the CPU
     * (runqueue's too: 3800 skips per 2000 execs). The reader consumes every poll interval. */
    events.ringbuf_submit(r, 1);
    stat_inc(BCGOV_STAT_EMITTED);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_exit_group)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct exit_info info = {};
    info.code = (s32)args->error_code;
    info.kind = EXIT_CODE;
    exit_infos.update(&tgid, &info);
    return 0;
}

TRACEPOINT_PROBE(signal, signal_deliver)
{
    /* Only signals taken with their default action can end the process here; a handled one
     * (sa_handler set) returns to user space. Of the defaults, these terminate. */
    if (args->sa_handler != 0)
        return 0;
    int sig = args->sig;
    if (sig == 17 || sig == 18 || sig == 19 || sig == 20 || sig == 21 || sig == 22 ||
        sig == 23 || sig == 28 || sig <= 0)
        return 0;   /* SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGWINCH */
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct exit_info info = {};
    info.code = sig;
    info.kind = EXIT_SIGNAL;
    exit_infos.update(&tgid, &info);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    /* Every exiting thread: an execve whose return was never seen (its run skipped) ends here. */
    u32 tid = (u32)pid_tgid;
    pending_exec.delete(&tid);
#ifdef HAVE_GROUP_DEAD
    if (!args->group_dead)
        return 0;
#else
    if ((u32)pid_tgid != tgid)
        return 0;
#endif
    u64 now = bpf_ktime_get_ns();
    struct exit_info info = {};
    struct exit_info *known = exit_infos.lookup(&tgid);
    if (known)
        info = *known;
    {
        u64 __zero = 0;
        u64 *__c = process_exits.lookup_or_try_init(&info, &__zero);
        if (__c) lock_xadd(__c, 1); else stat_inc(BCGOV_STAT_MAP_FULL);
    }

    struct exit_record *r = events.ringbuf_reserve(sizeof(struct exit_record));
    if (!r) {
        stat_inc(BCGOV_STAT_LOST);
    } else {
        r->kind = KIND_EXIT;
        r->tgid = tgid;
        r->ts_ns = now;
        r->cgroup_id = bpf_get_current_cgroup_id();
        u64 *start = proc_start.lookup(&tgid);
        r->start_ns = start ? *start : 0;
        r->code = info.code;
        r->exit_kind = info.kind;
        __builtin_memcpy(r->comm, args->comm, sizeof(r->comm));
        events.ringbuf_submit(r, 1);  /* no wakeup: see the exec record */
        stat_inc(BCGOV_STAT_EMITTED);
    }
    proc_start.delete(&tgid);
    exit_infos.delete(&tgid);
    return 0;
}

/* tcp_lifecycle: one record per finished TCP connection, plus in-kernel counts.
 *
 * Traces sock:inet_sock_set_state. A connection is tracked from SYN_SENT (active: the connect()
 * caller is current, so pid/comm/cgroup are right) or SYN_RECV (passive: softirq context, so the
 * owner comes from the listening socket's owner and is then replaced by the first process that
 * sends or receives on the socket). At CLOSE the per-cgroup counter is bumped, the duration
 * (start to close, the span's) goes into a log2 histogram per (cgroup, direction, outcome), and
 * one record goes to user space (unless span sampling skips it or the span budget is spent): counts
 * and durations are exact even when records are lost, sampled out or withheld. Optional tracepoints add bytes
 * (sock_send_length/sock_recv_length, 6.3+), retransmit timestamps and reset marks for the span.
 *
 * Cost: a hash update per open, a lookup per send/recv when byte counting is on, a counter and a
 * histogram update and one ring buffer record (~200 bytes) per close.
 */
#include "bcgov_common.h"
/* Connections outlive the 26 slots' ~16.8 s: 32 slots give finite buckets up to 2^30 us (~17.9
 * min). BCGOV_HIST_SLOTS, RTX_SLOTS and the codes below are shared with Python and come from
 * probes/tcp_lifecycle.py as -D defines (SPEC.defines): one source, never typed here.
 *   DIR_ACTIVE, DIR_PASSIVE: conn direction (DIRECTIONS)
 *   OWNER_CONNECT (the connect() caller), OWNER_LISTENER (the process that called listen() on the
 *   local port), OWNER_IO (the first process that sent or received on the socket): OWNER_SOURCES
 *   F_ESTABLISHED, F_RESET_RECEIVED, F_RESET_SENT, F_BYTES_KNOWN, F_BEFORE_AGENT (opened before the
 *   agent: learnt from sock_diag, start not observed): record flags
 *   OUTCOME_NORMAL, OUTCOME_RESET, OUTCOME_REFUSED, OUTCOME_TIMEOUT: the span's outcomes, shared by
 *   the counter and the duration histogram so the two always agree (OUTCOMES) */
#if !defined(BCGOV_HIST_SLOTS) || !defined(RTX_SLOTS) || !defined(DIR_ACTIVE) || !defined(DIR_PASSIVE) \
    || !defined(OWNER_CONNECT) || !defined(OWNER_LISTENER) || !defined(OWNER_IO) \
    || !defined(F_ESTABLISHED) || !defined(F_RESET_RECEIVED) || !defined(F_RESET_SENT) \
    || !defined(F_BYTES_KNOWN) || !defined(F_BEFORE_AGENT) \
    || !defined(OUTCOME_NORMAL) || !defined(OUTCOME_RESET) || !defined(OUTCOME_REFUSED) || !defined(OUTCOME_TIMEOUT)
#error "tcp_lifecycle's shared codes are passed by the agent from probes/tcp_lifecycle.py (SPEC.defines)"
#endif
#include "bcgov_hist.h"
#include "bcgov_sampling.h"

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LISTEN 10

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif

struct owner {
    u64 cgroup_id;
    u32 tgid;
    u32 tid;
    char comm[16];
};

struct conn {
    u64 start_ns;
    u64 established_ns;
    u64 reset_ns;
    u64 bytes_sent;
    u64 bytes_received;
    u64 rtx_ns[RTX_SLOTS];
    struct owner owner;
    u32 retransmits;
    u8 direction;
    u8 flags;
    u8 owner_source;
    u8 _pad;
    /* The endpoints as the state-change tracepoint last gave them (SYN_SENT, SYN_RECV, ESTABLISHED):
     * a close whose tracepoint run the kernel skipped is recorded from these by the raw program. */
    u8 saddr[16];
    u8 daddr[16];
    u16 family;
    u16 sport;
    u16 dport;
    u16 _pad2;
};

/* Only inside TRACEPOINT_PROBE(sock, inet_sock_set_state), where BCC defines `args`. */
#define REMEMBER_ENDPOINTS(c) BCGOV_COPY_ENDPOINTS(c, args)

/* The record user space decodes; mirrored by probes/tcp_lifecycle.py:TcpCloseRecord and checked
 * field by field against BCC's view of this struct (the `layout` map) when the probe loads. */
struct tcp_close_record {
    u64 start_ns;
    u64 established_ns;
    u64 end_ns;
    u64 reset_ns;
    u64 bytes_sent;
    u64 bytes_received;
    u64 rtx_ns[RTX_SLOTS];
    u64 cgroup_id;
    u64 sock;
    u32 tgid;
    u32 tid;
    u32 retransmits;
    u16 family;
    u16 sport;
    u16 dport;
    u8 direction;
    u8 flags;
    u8 owner_source;
    u8 oldstate;
    u8 saddr[16];
    u8 daddr[16];
    char comm[16];
};

struct conn_count_key {
    u64 cgroup_id;
    u8 direction;
    u8 outcome;
    u16 port;    /* passive: the local (listening) port, which names the server's tier; active: 0 */
    u8 _pad[4];
};

/* Connections open before the agent started, written by user space from a sock_diag dump at
 * start-up (agent/kernel/preexisting.py) and keyed like the tracepoint's endpoints, so their close is
 * counted and recorded (F_BEFORE_AGENT) instead of being untracked. */
struct tuple_key {
    u8 saddr[16];
    u8 daddr[16];
    u16 family;
    u16 sport;
    u16 dport;
    u16 _pad;
};

struct preexisting_conn {
    struct owner owner;
    u64 seen_ns;       /* bpf_ktime_get_ns() clock: when user space learnt of the connection */
    u8 direction;
    u8 owner_source;
    u8 _pad[6];
};

BPF_HASH(conns, u64, struct conn, 65536);
/* Who listens on a port. Tracepoint fields cannot tell network namespaces apart, and pods listen
 * on the same ports (every Postgres on 5432): once two cgroups listen on one port its owner is
 * zeroed, so an accepted socket waits for its first send/receive instead of being given to the
 * wrong pod. The entry lives while any of the port's listening sockets does. */
struct listener {
    struct owner owner;  /* cgroup_id 0: several cgroups listen on this port */
    u32 sockets;
    u32 _pad;
};

BPF_HASH(listeners, u16, struct listener, 4096);
BPF_HASH(tcp_connections, struct conn_count_key, u64, 16384);
/* Closes of connections opened before the agent (no duration: their start was not seen). */
BPF_HASH(tcp_connections_before_agent, struct conn_count_key, u64, 4096);
/* LRU: an entry whose close never comes here (the connection was also seen opening after the
 * attach, or its close ran while this program was skipped) must not hold a slot for ever. */
BPF_TABLE("lru_hash", struct tuple_key, struct preexisting_conn, preexisting, 16384);
/* Same key layout; outcome is normal, reset, refused or timeout. Drained at scrape. */
BPF_HASH(tcp_connection_durations, struct conn_count_key, struct bcgov_hist, 16384);
BPF_PERCPU_ARRAY(tcp_opens, u64, 3);

/* Span shedding in the kernel. Counts and durations are complete above, so a record only feeds a
 * span and a log line: for a normal, fast, never-retransmitted connection the kernel keeps the
 * record only when bcgov_sample_hash(sock, start) < keep_below (bcgov_sampling.h), the same hash and
 * test as agent/pipeline/sampling.py SpanSampler, so user space keeps every record that arrives. User space
 * writes this entry whenever the keep ratio (span_sample_ratio x CPU-budget shedding) changes. */
struct span_sampling {
    u64 keep_below;  /* ceil(ratio * 2^32) */
    u64 slow_ns;     /* at least this long: always kept */
    u32 active;      /* 0 (the zeroed entry, ratio 1): every record is sent */
    u32 _pad;
};
BPF_ARRAY(span_sampling, struct span_sampling, 1);
BPF_PERCPU_ARRAY(tcp_sampled_out, u64, 1);

/* The span budget: at most one record of a normal, fast connection per token_ns per node (and,
 * when set, per workload: the owner's cgroup), with up to `burst` saved up (token buckets), checked
 * after span sampling and before the ring-buffer reserve, so the agent's per-record work is bounded at any connection rate. Failed, refused,
 * reset, retransmitted and slow connections never take a token: their records are always sent.
 * Counts and durations above are complete either way. User space (agent/kernel/sampling.py)
 * writes token_ns and burst and fills the bucket; last_ns and tokens are the kernel's after that.
 * Concurrent CPUs: a refill is claimed with a compare-and-swap on last_ns, a token taken with an
 * atomic add (given back when there was none), so the bucket never grants more than it holds; a
 * CPU that finds the count briefly below zero through another's failed take is refused. */
struct span_budget {
    u64 token_ns;  /* refill: one token per token_ns (1e9 / spans per second); 0: no budget */
    u64 burst;     /* at most this many tokens saved up */
    u64 last_ns;   /* bpf_ktime_get_ns() of the last refill */
    s64 tokens;
};
/* [0] the node's bucket; [1] the per-workload budget's parameters (token_ns, burst; 0: none), whose
 * buckets are in span_budget_by_cgroup, one per owner cgroup, created full on its first record. */
BPF_ARRAY(span_budget, struct span_budget, 2);
BPF_TABLE("lru_hash", u64, struct span_budget, span_budget_by_cgroup, 4096);
/* [0] records sent with a budget token, [1] records not sent: a budget was spent (node or workload),
 * [2] of [1], those the workload's own budget stopped */
BPF_PERCPU_ARRAY(tcp_span_budget, u64, 3);
/* Records not sent for want of a token, by the owner's cgroup: whose were withheld (LRU: a gone
 * workload's entry makes room for new ones; the node total above is exact). */
BPF_TABLE("lru_hash", u64, u64, tcp_spans_withheld, 4096);

#ifndef BCGOV_NO_ATOMIC_FETCH
/* Take a token from bucket `b` (refilled at one per token_ns, at most burst): 1 taken, 0 none. */
static __always_inline int take_token(struct span_budget *b, u64 token_ns, u64 burst, u64 now)
{
    u64 last = b->last_ns;
    if (now > last && now - last >= token_ns) {
        u64 n = (now - last) / token_ns;
        if (__sync_val_compare_and_swap(&b->last_ns, last, last + n * token_ns) == last) {
            s64 room = (s64)burst - b->tokens;
            if (room > 0)
                __sync_fetch_and_add(&b->tokens, (s64)n < room ? (s64)n : room);
        }
    }
    if (__sync_fetch_and_add(&b->tokens, -1) > 0)
        return 1;
    __sync_fetch_and_add(&b->tokens, 1);
    return 0;
}

/* 1: a token was taken; 2: no budget is set; 0: the node's budget is spent; -1: the workload's */
static __always_inline int span_budget_allows(u64 cgroup_id, u64 now)
{
    int idx = 1;
    int taken = 0;
    struct span_budget *w = span_budget.lookup(&idx);
    if (w && w->token_ns) {
        struct span_budget *b = span_budget_by_cgroup.lookup(&cgroup_id);
        if (!b) {
            struct span_budget full = {};
            full.last_ns = now;
            full.tokens = (s64)w->burst;
            span_budget_by_cgroup.insert(&cgroup_id, &full);  /* another CPU may have made it first */
            b = span_budget_by_cgroup.lookup(&cgroup_id);
        }
        if (b) {  /* else no bucket could be made: only the node's budget holds this record */
            if (!take_token(b, w->token_ns, w->burst, now))
                return -1;
            taken = 1;  /* spent even if the node's bucket then refuses: workloads never get more */
        }
    }
    idx = 0;
    struct span_budget *node = span_budget.lookup(&idx);
    if (!node || !node->token_ns)
        return taken ? 1 : 2;
    return take_token(node, node->token_ns, node->burst, now);
}
#else
/* Built for a kernel without BPF atomic fetch and compare-and-swap (before Linux 5.12; the loader
 * retries with this define when the kernel refuses the program): no span budget, every record
 * is sent (agent/kernel/sampling.py says so once). */
static __always_inline int span_budget_allows(u64 cgroup_id, u64 now)
{
    return 2;
}
#endif

static __always_inline void count_budget(int idx)
{
    u64 *v = tcp_span_budget.lookup(&idx);
    if (v)
        *v += 1;
}
BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX);

/* BCC rewrites map methods only in the probe's own file, so each probe carries this helper. */
static __always_inline void stat_inc(int idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;
}
BPF_ARRAY(layout, struct tcp_close_record, 1);
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

static __always_inline void fill_owner(struct owner *o)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    o->tgid = pid_tgid >> 32;
    o->tid = (u32)pid_tgid;
    o->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&o->comm, sizeof(o->comm));
}

static __always_inline void count_open(int direction)
{
    u64 *v = tcp_opens.lookup(&direction);
    if (v) *v += 1;
}

static __always_inline void track(u64 sk, int direction, u16 sport)
{
    struct conn c = {};
    c.start_ns = bpf_ktime_get_ns();
    c.direction = direction;
    if (direction == DIR_ACTIVE) {
        fill_owner(&c.owner);
        c.owner_source = OWNER_CONNECT;
    } else {
        struct listener *l = listeners.lookup(&sport);
        if (l && l->owner.cgroup_id) {
            c.owner = l->owner;
            c.owner_source = OWNER_LISTENER;
        }
    }
    if (conns.update(&sk, &c) != 0)
        stat_inc(BCGOV_STAT_MAP_FULL);
    count_open(direction);
}

/* Counts the finished connection and reserves its record, filled from the tracked state; the
 * caller adds the endpoints from the tracepoint and submits. NULL: untracked or ring buffer full. */
static __always_inline struct tcp_close_record *finish(u64 sk, int oldstate, u16 sport)
{
    struct conn *c = conns.lookup(&sk);
    if (!c) {
        stat_inc(BCGOV_STAT_UNTRACKED);
        return 0;
    }
    /* An orderly close passes through FIN states; straight from ESTABLISHED or CLOSE_WAIT to
     * CLOSE is an abort. A received reset was already marked by tcp_receive_reset; otherwise this
     * side aborted (SO_LINGER 0, unread data) and sends its reset just after this transition. */
    if ((oldstate == TCP_ESTABLISHED || oldstate == TCP_CLOSE_WAIT) && !(c->flags & F_RESET_RECEIVED)) {
        c->flags |= F_RESET_SENT;
        c->reset_ns = bpf_ktime_get_ns();
    }
    struct conn_count_key key = {};
    key.cgroup_id = c->owner.cgroup_id;
    key.direction = c->direction;
    key.port = c->direction == DIR_PASSIVE ? sport : 0;
    if (!(c->flags & F_ESTABLISHED))
        key.outcome = (c->flags & F_RESET_RECEIVED) ? OUTCOME_REFUSED : OUTCOME_TIMEOUT;
    else if (c->flags & (F_RESET_RECEIVED | F_RESET_SENT))
        key.outcome = OUTCOME_RESET;
    else
        key.outcome = OUTCOME_NORMAL;
    u64 zero = 0;
    u64 *count = (c->flags & F_BEFORE_AGENT) ? tcp_connections_before_agent.lookup_or_try_init(&key, &zero)
                                             : tcp_connections.lookup_or_try_init(&key, &zero);
    if (count)
        lock_xadd(count, 1);
    else
        stat_inc(BCGOV_STAT_MAP_FULL);

    /* One clock read for the histogram and the record, so an exemplar's bucket is the kernel's. */
    u64 end_ns = bpf_ktime_get_ns();
    if (!(c->flags & F_BEFORE_AGENT)) {  /* a connection older than the agent has no known duration */
        struct bcgov_hist hzero = {};
        struct bcgov_hist *h = tcp_connection_durations.lookup_or_try_init(&key, &hzero);
        if (h)
            bcgov_hist_add(h, end_ns - c->start_ns);
        else
            stat_inc(BCGOV_STAT_MAP_FULL);
    }

    if (key.outcome == OUTCOME_NORMAL && c->retransmits == 0) {
        int zero_idx = 0;
        struct span_sampling *s = span_sampling.lookup(&zero_idx);
        if (s && end_ns - c->start_ns < s->slow_ns) {  /* normal and fast: may be sampled, budgeted */
            if (s->active && bcgov_sample_hash(sk, c->start_ns) >= s->keep_below) {
                u64 *n = tcp_sampled_out.lookup(&zero_idx);
                if (n)
                    *n += 1;
                conns.delete(&sk);
                return 0;
            }
            int granted = span_budget_allows(c->owner.cgroup_id, end_ns);
            if (granted <= 0) {
                count_budget(1);
                if (granted < 0)
                    count_budget(2);
                u64 cg = c->owner.cgroup_id, one = 1;
                u64 *w = tcp_spans_withheld.lookup(&cg);
                if (w)
                    lock_xadd(w, 1);
                else
                    tcp_spans_withheld.update(&cg, &one);
                conns.delete(&sk);
                return 0;
            }
            if (granted == 1)
                count_budget(0);
        }
    }

    struct tcp_close_record *r = events.ringbuf_reserve(sizeof(struct tcp_close_record));
    if (!r) {
        stat_inc(BCGOV_STAT_LOST);
        conns.delete(&sk);
        return 0;
    }
    r->start_ns = c->start_ns;
    r->established_ns = c->established_ns;
    r->end_ns = end_ns;
    r->reset_ns = c->reset_ns;
    r->bytes_sent = c->bytes_sent;
    r->bytes_received = c->bytes_received;
#pragma unroll
    for (int i = 0; i < RTX_SLOTS; i++)
        r->rtx_ns[i] = c->rtx_ns[i];
    r->cgroup_id = c->owner.cgroup_id;
    r->sock = sk;
    r->tgid = c->owner.tgid;
    r->tid = c->owner.tid;
    r->retransmits = c->retransmits;
    r->direction = c->direction;
    r->flags = c->flags;
    r->owner_source = c->owner_source;
    __builtin_memcpy(r->comm, c->owner.comm, sizeof(r->comm));
    conns.delete(&sk);
    return r;
}

/* A close of a connection this probe never saw open: when user space listed it at start-up, track
 * it now from that entry, so finish() counts and records it like any other (marked F_BEFORE_AGENT). */
static __always_inline void adopt_preexisting(u64 sk, struct tuple_key *t)
{
    struct preexisting_conn *p = preexisting.lookup(t);
    if (!p)
        return;
    struct conn c = {};
    c.start_ns = p->seen_ns;
    c.owner = p->owner;
    c.direction = p->direction;
    c.owner_source = p->owner_source;
    c.flags = F_ESTABLISHED | F_BEFORE_AGENT;
    if (conns.update(&sk, &c) != 0)
        stat_inc(BCGOV_STAT_MAP_FULL);
    preexisting.delete(t);
}

/* Skipped runs (issue 15). The kernel does not run this tracepoint program when another BPF
 * program is already running on the CPU (a neighbour's tracer, or one of ours interrupted by a
 * softirq state change): such a run only bumps the program's recursion_misses. A raw tracepoint on
 * the same event (below) is guarded per program instead, so it still runs, and repairs from the
 * tracepoint's raw arguments (sk, oldstate, newstate: the socket pointer as a key, never
 * dereferenced) what a skipped run would leave wrong: an open not tracked, an ESTABLISHED not
 * marked, and a close that would go uncounted and leave its `conns` entry behind forever. The tracepoint program
 * notes every (sk, newstate) it runs for; the raw one, attached after it and so run after it, acts
 * only when the note is not its own event. */
struct seen_state {
    u64 sk;
    u32 newstate;
    u32 _pad;
};
BPF_PERCPU_ARRAY(tp_seen, struct seen_state, 1);
/* A close whose tracepoint run was skipped, by the owner's cgroup and direction: the raw program
 * finished it as the tracepoint program would have (counted in tcp_connections, its duration in the
 * histogram, its record from the endpoints remembered at its last state change), so this says how
 * many of the counted ones the kernel skipped. */
struct skipped_close_key {
    u64 cgroup_id;
    u8 direction;
    u8 _pad[7];
};
BPF_HASH(tcp_skipped_closes, struct skipped_close_key, u64, 4096);
/* [0] closes finished, [1] opens tracked, [2] ESTABLISHED marked, [3] retransmits, [4] resets
 * received, [5] resets sent counted on the span: each by a raw program after a skipped run */
BPF_PERCPU_ARRAY(tcp_skip_repairs, u64, 6);
/* what the optional tracepoint programs note in tp_seen, after the TCP states (0-12) */
#define SEEN_RETRANSMIT 100
#define SEEN_RESET_RECEIVED 101
#define SEEN_RESET_SENT 102

static __always_inline void note_seen(u64 sk, int newstate)
{
    int zero = 0;
    struct seen_state *s = tp_seen.lookup(&zero);
    if (s) {
        s->sk = sk;
        s->newstate = newstate;
    }
}

/* In a raw program: 1 when the tracepoint program ran for this event (its note is consumed, so a
 * later event of the same kind on the same socket is not taken for it), 0 when it was skipped. */
static __always_inline int tp_ran(u64 sk, u32 what)
{
    int zero = 0;
    struct seen_state *s = tp_seen.lookup(&zero);
    if (!s)
        return 1;  /* cannot tell: repair nothing */
    if (s->sk == sk && s->newstate == what) {
        s->sk = 0;
        return 1;
    }
    return 0;
}

static __always_inline void count_repair(int idx)
{
    u64 *v = tcp_skip_repairs.lookup(&idx);
    if (v)
        *v += 1;
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    note_seen((u64)args->skaddr, args->newstate);  /* first, so a run for another protocol counts as seen */
    if (args->protocol != BCGOV_IPPROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    int newstate = args->newstate;

    if (newstate == TCP_LISTEN) {
        /* listen() runs in the owner's context: remember who serves this port. */
        struct listener n = {};
        fill_owner(&n.owner);
        n.sockets = 1;
        u16 port = args->sport;
        if (listeners.insert(&port, &n) == 0)
            return 0;
        struct listener *l = listeners.lookup(&port);
        if (!l) {
            stat_inc(BCGOV_STAT_MAP_FULL);
            return 0;
        }
        if (l->owner.cgroup_id != n.owner.cgroup_id)
            __builtin_memset(&l->owner, 0, sizeof(l->owner));
        lock_xadd(&l->sockets, 1);
        return 0;
    }
    if (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV) {
        track(sk, newstate == TCP_SYN_SENT ? DIR_ACTIVE : DIR_PASSIVE, newstate == TCP_SYN_SENT ? 0 : args->sport);
        struct conn *c = conns.lookup(&sk);
        if (c)
            REMEMBER_ENDPOINTS(c);  /* an active end's port is not bound yet: 0 until ESTABLISHED */
        return 0;
    }
    if (newstate == TCP_ESTABLISHED) {
        struct conn *c = conns.lookup(&sk);
        if (c) {
            c->flags |= F_ESTABLISHED;
            c->established_ns = bpf_ktime_get_ns();
            REMEMBER_ENDPOINTS(c);
        }
        return 0;
    }
    if (newstate == TCP_CLOSE) {
        if (args->oldstate == TCP_LISTEN) {
            u16 port = args->sport;
            struct listener *l = listeners.lookup(&port);
            if (l && l->sockets <= 1)
                listeners.delete(&port);
            else if (l)
                lock_xadd(&l->sockets, -1);
            return 0;
        }
        if (!conns.lookup(&sk)) {
            /* the tuple as agent/kernel/preexisting.py writes it (BCC defines args' type only here) */
            struct tuple_key t = {};
            BCGOV_COPY_ENDPOINTS(&t, args);
            adopt_preexisting(sk, &t);
        }
        struct tcp_close_record *r = finish(sk, args->oldstate, args->sport);
        if (!r)
            return 0;
        r->oldstate = args->oldstate;
        __builtin_memset(r->saddr, 0, sizeof(r->saddr));
        __builtin_memset(r->daddr, 0, sizeof(r->daddr));
        BCGOV_COPY_ENDPOINTS(r, args);
        /* No wakeup per record (BPF_RB_NO_WAKEUP = 1): the reader consumes on a short timer, so a
         * busy node costs one wakeup per poll interval instead of one per connection. */
        events.ringbuf_submit(r, 1);
        stat_inc(BCGOV_STAT_EMITTED);
    }
    return 0;
}

#ifdef HAVE_SOCK_LENGTH
/* Runs in the sending/receiving process: the reliable owner of an accepted socket. */
static __always_inline void account(u64 sk, u16 family, u16 protocol, int ret, int sending)
{
    if (protocol != BCGOV_IPPROTO_TCP || (family != BCGOV_AF_INET && family != BCGOV_AF_INET6))
        return;
    struct conn *c = conns.lookup(&sk);
    if (!c)
        return;
    if (c->owner_source != OWNER_IO && c->direction == DIR_PASSIVE) {
        fill_owner(&c->owner);
        c->owner_source = OWNER_IO;
    }
    c->flags |= F_BYTES_KNOWN;
    if (ret <= 0)
        return;
    if (sending)
        c->bytes_sent += ret;
    else
        c->bytes_received += ret;
}

TRACEPOINT_PROBE(sock, sock_send_length)
{
    account((u64)args->sk, args->family, args->protocol, args->ret, 1);
    return 0;
}

TRACEPOINT_PROBE(sock, sock_recv_length)
{
    account((u64)args->sk, args->family, args->protocol, args->ret, 0);
    return 0;
}
#endif

#ifdef HAVE_TCP_RETRANSMIT_SKB
static __always_inline int retransmitted(u64 sk)
{
    struct conn *c = conns.lookup(&sk);
    if (!c)
        return 0;
    u32 n = c->retransmits;
    if (n < RTX_SLOTS)
        c->rtx_ns[n & (RTX_SLOTS - 1)] = bpf_ktime_get_ns();
    c->retransmits = n + 1;
    return 1;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    u64 sk = (u64)args->skaddr;
    note_seen(sk, SEEN_RETRANSMIT);
    retransmitted(sk);
    return 0;
}

/* raw args (all kernels): the socket first */
int bcgov_raw__tcp_retransmit_skb(struct bpf_raw_tracepoint_args *ctx)
{
    u64 sk = ctx->args[0];
    if (!tp_ran(sk, SEEN_RETRANSMIT) && retransmitted(sk))
        count_repair(3);
    return 0;
}
#endif

#if defined(HAVE_TCP_RECEIVE_RESET) || defined(HAVE_TCP_SEND_RESET)
static __always_inline int mark_reset(u64 sk, u8 flag)
{
    struct conn *c = conns.lookup(&sk);
    if (!c)
        return 0;
    c->flags |= flag;
    c->reset_ns = bpf_ktime_get_ns();
    return 1;
}
#endif

#ifdef HAVE_TCP_RECEIVE_RESET
TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
    u64 sk = (u64)args->skaddr;
    note_seen(sk, SEEN_RESET_RECEIVED);
    mark_reset(sk, F_RESET_RECEIVED);
    return 0;
}

int bcgov_raw__tcp_receive_reset(struct bpf_raw_tracepoint_args *ctx)
{
    u64 sk = ctx->args[0];
    if (!tp_ran(sk, SEEN_RESET_RECEIVED) && mark_reset(sk, F_RESET_RECEIVED))
        count_repair(4);
    return 0;
}
#endif

#ifdef HAVE_TCP_SEND_RESET
TRACEPOINT_PROBE(tcp, tcp_send_reset)
{
    u64 sk = (u64)args->skaddr;
    if (!sk)
        return 0;
    note_seen(sk, SEEN_RESET_SENT);
    mark_reset(sk, F_RESET_SENT);
    return 0;
}

int bcgov_raw__tcp_send_reset(struct bpf_raw_tracepoint_args *ctx)
{
    u64 sk = ctx->args[0];  /* (sk, skb[, reason]): NULL for a reset not sent from a socket */
    if (sk && !tp_ran(sk, SEEN_RESET_SENT) && mark_reset(sk, F_RESET_SENT))
        count_repair(5);
    return 0;
}
#endif

/* Attached by the loader after the tracepoint program (ProbeSpec.raw_tracepoints; BCC's own
 * autoload would attach raw tracepoints first), so on each state change it runs second and sees
 * whether the first one ran. Only SYN_SENT and SYN_RECV start tracking:
 * those states belong to TCP (and MPTCP) sockets, so no protocol field is needed; a skipped
 * LISTEN change is not repaired (it needs the port) and only costs passive owners until their
 * first send or receive. */
int bcgov_raw__inet_sock_set_state(struct bpf_raw_tracepoint_args *ctx)
{
    u64 sk = ctx->args[0];
    int oldstate = (int)ctx->args[1];
    int newstate = (int)ctx->args[2];
    int zero = 0;
    struct seen_state *s = tp_seen.lookup(&zero);
    if (!s || (s->sk == sk && s->newstate == (u32)newstate))
        return 0;  /* the tracepoint program ran for this change */
    if (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV) {
        if (conns.lookup(&sk))
            return 0;
        struct conn c = {};
        c.start_ns = bpf_ktime_get_ns();
        c.direction = newstate == TCP_SYN_SENT ? DIR_ACTIVE : DIR_PASSIVE;
        if (newstate == TCP_SYN_SENT) {  /* connect() runs in its caller: current is the owner */
            fill_owner(&c.owner);
            c.owner_source = OWNER_CONNECT;
        }
        if (conns.insert(&sk, &c) == 0) {
            count_open(c.direction);
            count_repair(1);
        }
        return 0;
    }
    if (newstate == TCP_ESTABLISHED) {
        struct conn *c = conns.lookup(&sk);
        if (c && !(c->flags & F_ESTABLISHED)) {
            c->flags |= F_ESTABLISHED;
            c->established_ns = bpf_ktime_get_ns();
            count_repair(2);
        }
        return 0;
    }
    if (newstate == TCP_CLOSE && oldstate != TCP_LISTEN) {
        struct conn *c = conns.lookup(&sk);
        if (!c)
            return 0;
        struct skipped_close_key key = {};
        key.cgroup_id = c->owner.cgroup_id;
        key.direction = c->direction;
        u64 one = 1;
        u64 *n = tcp_skipped_closes.lookup(&key);
        if (n)
            lock_xadd(n, 1);
        else if (tcp_skipped_closes.insert(&key, &one) != 0)
            stat_inc(BCGOV_STAT_MAP_FULL);
        count_repair(0);
        /* Finish it as the tracepoint program would have: counted, its duration in the histogram,
         * and its record, with the endpoints remembered at its last state change (finish() deletes
         * the entry, so they are copied first). */
        u16 family = c->family, sport = c->sport, dport = c->dport;
        u8 saddr[16], daddr[16];
        __builtin_memcpy(saddr, c->saddr, 16);
        __builtin_memcpy(daddr, c->daddr, 16);
        struct tcp_close_record *r = finish(sk, oldstate, sport);
        if (!r)
            return 0;
        r->family = family;
        r->sport = sport;
        r->dport = dport;
        r->oldstate = oldstate;
        __builtin_memcpy(r->saddr, saddr, 16);
        __builtin_memcpy(r->daddr, daddr, 16);
        events.ringbuf_submit(r, 1);
        stat_inc(BCGOV_STAT_EMITTED);
    }
    return 0;
}

/* Shared by every bcgov probe.
 *
 * Probes read only tracepoint fields and BPF helpers: the kernel headers on a node need not match
 * its kernel, so no kernel struct is ever dereferenced. The few constants needed are defined here
 * instead of including <net/sock.h> and friends, which also keeps compiles under half a second.
 */
#ifndef BCGOV_COMMON_H
#define BCGOV_COMMON_H

#define BCGOV_AF_INET 2
#define BCGOV_AF_INET6 10
#define BCGOV_IPPROTO_TCP 6

/* A tracepoint's TCP endpoints (family, ports, addresses: sock:inet_sock_set_state and the tcp:*
 * events share these field names) into `dst`, whose fields have the same names. IPv4 addresses
 * fill the first 4 of 16 bytes: `dst` must start zeroed. Only where BCC defines `args`. */
#define BCGOV_COPY_ENDPOINTS(dst, args) do {                         \
        (dst)->family = (args)->family;                              \
        (dst)->sport = (args)->sport;                                \
        (dst)->dport = (args)->dport;                                \
        if ((args)->family == BCGOV_AF_INET) {                       \
            __builtin_memcpy((dst)->saddr, (args)->saddr, 4);        \
            __builtin_memcpy((dst)->daddr, (args)->daddr, 4);        \
        } else {                                                     \
            __builtin_memcpy((dst)->saddr, (args)->saddr_v6, 16);    \
            __builtin_memcpy((dst)->daddr, (args)->daddr_v6, 16);    \
        }                                                            \
    } while (0)

/* Per-probe health counters, summed over CPUs by the agent. Every probe declares
 * BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX). Failed ring buffer reservations are counted here
 * because BCC's lost callback is unreliable and ring buffers have none: received + lost = emitted. */
enum bcgov_stat {
    BCGOV_STAT_EMITTED = 0,
    BCGOV_STAT_LOST = 1,       /* ring buffer full: record dropped */
    BCGOV_STAT_MAP_FULL = 2,   /* a tracking or counting map refused an insert */
    BCGOV_STAT_UNTRACKED = 3,  /* an end seen whose start predates the agent */
    BCGOV_STAT_MAX = 4,
};

/* Kernels since 6.10 put `enum sk_rst_reason reason` in tcp:tcp_send_reset; headers older than
 * the kernel lack the enum, and BCC needs it complete to lay out the tracepoint struct. The agent
 * defines NEED_ENUM_SK_RST_REASON when the format names it. Its values are never read. */
#ifdef NEED_ENUM_SK_RST_REASON
enum sk_rst_reason { BCGOV_SK_RST_REASON_UNREAD = 0 };
#endif

#endif

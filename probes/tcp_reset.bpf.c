/* tcp_reset: TCP resets sent and received, counted in the kernel per connection 4-tuple.
 *
 * Traces tcp:tcp_send_reset and tcp:tcp_receive_reset. Kernels since 6.10 give tcp_send_reset
 * the endpoints as raw sockaddr buffers (saddr[28]/daddr[28]); older ones as sport/dport and
 * address arrays. The agent picks the variant from the tracepoint's format (SEND_RESET_SOCKADDR)
 * and decodes both in user space. Read and cleared at scrape time like tcp_retransmit.
 */
#include "bcgov_common.h"

#define DIR_SENT 1
#define DIR_RECEIVED 2

#define ADDR_TUPLE 0     /* saddr/daddr hold the address bytes, ports in sport/dport */
#define ADDR_SOCKADDR 1  /* saddr/daddr hold struct sockaddr_in or sockaddr_in6 */

struct reset_key {
    u8 saddr[28];
    u8 daddr[28];
    u16 family;
    u16 sport;
    u16 dport;
    u8 direction;
    u8 addr_kind;
};

BPF_HASH(tcp_resets, struct reset_key, u64, 16384);
BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX);

/* BCC rewrites map methods only in the probe's own file, so each probe carries this helper. */
static __always_inline void stat_inc(int idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;
}

TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
    struct reset_key key = {};
    key.direction = DIR_RECEIVED;
    key.addr_kind = ADDR_TUPLE;
    BCGOV_COPY_ENDPOINTS(&key, args);
    {
        u64 __zero = 0;
        u64 *__c = tcp_resets.lookup_or_try_init(&key, &__zero);
        if (__c) lock_xadd(__c, 1); else stat_inc(BCGOV_STAT_MAP_FULL);
    }
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_send_reset)
{
    struct reset_key key = {};
    key.direction = DIR_SENT;
#ifdef SEND_RESET_SOCKADDR
    key.addr_kind = ADDR_SOCKADDR;
    __builtin_memcpy(key.saddr, args->saddr, 28);
    __builtin_memcpy(key.daddr, args->daddr, 28);
#else
    key.addr_kind = ADDR_TUPLE;
    BCGOV_COPY_ENDPOINTS(&key, args);
#endif
    {
        u64 __zero = 0;
        u64 *__c = tcp_resets.lookup_or_try_init(&key, &__zero);
        if (__c) lock_xadd(__c, 1); else stat_inc(BCGOV_STAT_MAP_FULL);
    }
    return 0;
}

/* tcp_retransmit: retransmitted segments, counted in the kernel per connection 4-tuple.
 *
 * Traces tcp:tcp_retransmit_skb. Nothing travels per event: the agent reads and clears the map at
 * scrape time (lookup-and-delete batches) and folds the counts into cumulative counters, so the map
 * only holds tuples that retransmitted since the last scrape. Cost: one hash update per retransmit.
 */
#include "bcgov_common.h"

struct tuple_key {
    u8 saddr[16];
    u8 daddr[16];
    u16 family;
    u16 sport;
    u16 dport;
    u16 _pad;
};

BPF_HASH(tcp_retransmits, struct tuple_key, u64, 16384);
BPF_PERCPU_ARRAY(stats, u64, BCGOV_STAT_MAX);

/* BCC rewrites map methods only in the probe's own file, so each probe carries this helper. */
static __always_inline void stat_inc(int idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += 1;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    struct tuple_key key = {};
    BCGOV_COPY_ENDPOINTS(&key, args);
    {
        u64 __zero = 0;
        u64 *__c = tcp_retransmits.lookup_or_try_init(&key, &__zero);
        if (__c) lock_xadd(__c, 1); else stat_inc(BCGOV_STAT_MAP_FULL);
    }
    return 0;
}

/* In-kernel latency histograms shared by the block_io and runqueue probes.
 *
 * One map value per label set (device, op, cgroup...) holds every log2 bucket plus the exact sum,
 * so the agent drains one entry per label set instead of one per bucket, and the exported _sum is
 * measured, not estimated from bucket bounds. No map methods here: BCC rewrites those only in a
 * probe's own .bpf.c.
 *
 * Slot s counts latencies of d microseconds with bit_length(d) == s: slot 0 is d < 1 us, slot s
 * is 2^(s-1) <= d < 2^s us, so every value in slot s is below 2^s us, its Prometheus `le`. The last
 * slot collects everything from 2^(BCGOV_HIST_SLOTS-2) us (~16.8 s at 26 slots) up: it is exported
 * only in +Inf. The same function in Python is probes/latency_hist.py `hist_slot`
 * (tests/probes/test_shared_keys.py compiles this one and compares them).
 */
#ifndef BCGOV_HIST_H
#define BCGOV_HIST_H

/* The slot count comes from the probe's spec (probes/latency_hist.py hist_defines: 26 for block_io
 * and runqueue, tcp_lifecycle's own for connections that outlive 16.8 s), never from here. */
#ifndef BCGOV_HIST_SLOTS
#error "BCGOV_HIST_SLOTS is passed by the agent from the probe's spec (probes/latency_hist.py hist_defines)"
#endif

struct bcgov_hist {
    u64 slots[BCGOV_HIST_SLOTS];
    u64 sum_ns;
};

static __always_inline u32 bcgov_hist_slot(u64 delta_ns)
{
    u64 us = delta_ns / 1000;
    /* bpf_log2l(v) is floor(log2(v)) + 1 for v >= 1: the bit length */
    u32 slot = us ? bpf_log2l(us) : 0;
    if (slot >= BCGOV_HIST_SLOTS)
        slot = BCGOV_HIST_SLOTS - 1;
    return slot;
}

/* Atomic adds: the same label set is updated from every CPU at once. */
static __always_inline void bcgov_hist_add(struct bcgov_hist *h, u64 delta_ns)
{
    u32 slot = bcgov_hist_slot(delta_ns);
    if (slot < BCGOV_HIST_SLOTS)   /* re-checked for the verifier */
        lock_xadd(&h->slots[slot], 1);
    lock_xadd(&h->sum_ns, delta_ns);
}

#endif

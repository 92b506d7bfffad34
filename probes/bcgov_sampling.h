/* The span sampling hash, shared by the kernel's sampling test (tcp_lifecycle.bpf.c,
 * `span_sampling`) and user space (agent/pipeline/sampling.py `sample_hash`, its Python twin):
 * a connection keeps its record when this hash is below keep_below = ceil(ratio * 2^32).
 * Plain C on u32/u64 only, so tests/agent/test_kernel_sampling.py compiles this very function with
 * the host compiler (stub types) and compares it with the Python one over many values.
 */
#ifndef BCGOV_SAMPLING_H
#define BCGOV_SAMPLING_H

/* (sock * 2^64/phi + start_ns) mod 2^32: socket addresses are 8-byte aligned, the golden-ratio
 * multiplier spreads them over the low bits; the start time tells apart a reused socket. */
static __always_inline u32 bcgov_sample_hash(u64 sock, u64 start_ns)
{
    return (u32)((sock * 0x9E3779B97F4A7C15ULL + start_ns) & 0xFFFFFFFFULL);
}

#endif

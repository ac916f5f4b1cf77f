// Naive float64 CPU references of every kernel family, written straight from the formulas in
// ../../shared/zamba2-spec.md (§3-4). Plain C++17: builds and runs without CUDA.
// All tensors are row-major std::vector<double>; shapes are in the comments.
#pragma once

#include <cstdint>
#include <vector>

using vec = std::vector<double>;
using ivec = std::vector<int32_t>;

// y[r] = rmsnorm(concat(a[r] + b[r], c[r])) * w; a, b: [R, n_a] (b may be empty); c: [R, n_c].
vec ref_rms_norm(const vec & a, const vec & b, const vec & c, const vec & w, int rows, int n_a, int n_c, double eps);

// v = y * silu(z), normalized per group of d/G: y, z: [R, d] -> [R, d].
vec ref_gated_rms_norm(const vec & y, const vec & z, const vec & w, int rows, int d, int groups, double eps);

// Causal conv1d + silu over packed sequences; state: [slots, 3, C] updated in place.
vec ref_causal_conv1d(const vec & xbc, vec & state, const vec & w, const vec & bias, const ivec & cu_seqlens,
                      const ivec & seq_slot, int channels);

// Mamba2 recurrence; xbc: [T, d + 2GN]; dt_raw: [T, nh]; state: [slots, nh, P, N] updated in place.
vec ref_mamba2_scan(const vec & xbc, const vec & dt_raw, const vec & dt_bias, const vec & a_log, const vec & d_skip,
                    vec & state, const ivec & cu_seqlens, const ivec & seq_slot, int nh, int P, int G, int N);

// NeoX rope: x: [T, heads, D] -> rotated copy.
vec ref_rope_neox(const vec & x, const ivec & positions, int heads, int D, double theta);

// Causal attention of queries q: [T, heads, D] (token t of sequence token_seq[t] at positions[t])
// over keys/values of that sequence in logical order: keys[s]: [len_s, heads, D].
vec ref_attention(const vec & q, const std::vector<vec> & keys, const std::vector<vec> & values,
                  const ivec & token_seq, const ivec & positions, int heads, int D, double scale);

// gelu_erf(gu[:, :F]) * gu[:, F:]: gu [R, 2F] -> [R, F].
vec ref_gelu_mul(const vec & gu, int rows, int F);

// argmax (lowest index on ties) and log-sum-exp per row of logits [R, V].
void ref_argmax_lse(const vec & logits, int rows, int V, ivec & token, vec & lse);

// y[m, n] = sum_k x[m, k] w[n, k] + beta * y0[m, n]: x [M, K], w [N, K], y0 [M, N] (may be empty when beta is 0).
vec ref_matmul_nt(const vec & x, const vec & w, const vec & y0, int M, int N, int K, double beta);

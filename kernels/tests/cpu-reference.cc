// Float64 references; see cpu-reference.h. Deliberately naive: one loop per formula.
#include "cpu-reference.h"

#include <cmath>

static double silu(double x) { return x / (1.0 + std::exp(-x)); }
static double softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

vec ref_rms_norm(const vec & a, const vec & b, const vec & c, const vec & w, int rows, int n_a, int n_c, double eps) {
    const int n = n_a + n_c;
    vec y((size_t) rows * n);
    vec s(n);
    for (int r = 0; r < rows; ++r) {
        double ss = 0;
        for (int i = 0; i < n_a; ++i) s[i] = a[(size_t) r * n_a + i] + (b.empty() ? 0.0 : b[(size_t) r * n_a + i]);
        for (int i = 0; i < n_c; ++i) s[n_a + i] = c[(size_t) r * n_c + i];
        for (int i = 0; i < n; ++i) ss += s[i] * s[i];
        const double inv = 1.0 / std::sqrt(ss / n + eps);
        for (int i = 0; i < n; ++i) y[(size_t) r * n + i] = s[i] * inv * w[i];
    }
    return y;
}

vec ref_gated_rms_norm(const vec & y, const vec & z, const vec & w, int rows, int d, int groups, double eps) {
    vec out((size_t) rows * d);
    const int gs = d / groups;
    for (int r = 0; r < rows; ++r) {
        for (int g = 0; g < groups; ++g) {
            double ss = 0;
            for (int i = 0; i < gs; ++i) {
                const size_t k = (size_t) r * d + g * gs + i;
                const double v = y[k] * silu(z[k]);
                ss += v * v;
            }
            const double inv = 1.0 / std::sqrt(ss / gs + eps);
            for (int i = 0; i < gs; ++i) {
                const size_t k = (size_t) r * d + g * gs + i;
                out[k] = y[k] * silu(z[k]) * inv * w[g * gs + i];
            }
        }
    }
    return out;
}

vec ref_causal_conv1d(const vec & xbc, vec & state, const vec & w, const vec & bias, const ivec & cu_seqlens,
                      const ivec & seq_slot, int C) {
    const int n_seqs = (int) seq_slot.size();
    vec out((size_t) cu_seqlens[n_seqs] * C);
    for (int s = 0; s < n_seqs; ++s) {
        const int t0 = cu_seqlens[s], len = cu_seqlens[s + 1] - t0;
        double * st = &state[(size_t) seq_slot[s] * 3 * C];
        for (int ch = 0; ch < C; ++ch) {
            // the full input history: 3 state taps, then this chunk
            std::vector<double> hist(3 + len);
            for (int k = 0; k < 3; ++k) hist[k] = st[k * C + ch];
            for (int j = 0; j < len; ++j) hist[3 + j] = xbc[(size_t) (t0 + j) * C + ch];
            for (int j = 0; j < len; ++j) {
                double acc = bias.empty() ? 0.0 : bias[ch];
                for (int k = 0; k < 4; ++k) acc += w[ch * 4 + k] * hist[j + k];
                out[(size_t) (t0 + j) * C + ch] = silu(acc);
            }
            for (int k = 0; k < 3; ++k) st[k * C + ch] = hist[len + k];
        }
    }
    return out;
}

vec ref_mamba2_scan(const vec & xbc, const vec & dt_raw, const vec & dt_bias, const vec & a_log, const vec & d_skip,
                    vec & state, const ivec & cu_seqlens, const ivec & seq_slot, int nh, int P, int G, int N) {
    const int n_seqs = (int) seq_slot.size();
    const int d = nh * P, ld = d + 2 * G * N;
    vec y((size_t) cu_seqlens[n_seqs] * d);
    for (int s = 0; s < n_seqs; ++s) {
        for (int h = 0; h < nh; ++h) {
            const int g = h / (nh / G);
            const double A = -std::exp(a_log[h]);
            double * S = &state[((size_t) seq_slot[s] * nh + h) * P * N];  // [P, N]
            for (int t = cu_seqlens[s]; t < cu_seqlens[s + 1]; ++t) {
                const double dt = softplus(dt_raw[(size_t) t * nh + h] + dt_bias[h]);
                const double dA = std::exp(dt * A);
                const double * B = &xbc[(size_t) t * ld + d + g * N];
                const double * Cm = &xbc[(size_t) t * ld + d + G * N + g * N];
                for (int p = 0; p < P; ++p) {
                    const double x = xbc[(size_t) t * ld + h * P + p];
                    double acc = 0;
                    for (int n = 0; n < N; ++n) {
                        S[p * N + n] = dA * S[p * N + n] + dt * x * B[n];
                        acc += S[p * N + n] * Cm[n];
                    }
                    y[(size_t) t * d + h * P + p] = acc + d_skip[h] * x;
                }
            }
        }
    }
    return y;
}

vec ref_rope_neox(const vec & x, const ivec & positions, int heads, int D, double theta) {
    vec y(x.size());
    const int half = D / 2;
    for (size_t t = 0; t < positions.size(); ++t) {
        for (int h = 0; h < heads; ++h) {
            const double * r = &x[(t * heads + h) * D];
            double * o = &y[(t * heads + h) * D];
            for (int i = 0; i < half; ++i) {
                const double ang = positions[t] * std::pow(theta, -2.0 * i / D);
                o[i] = r[i] * std::cos(ang) - r[i + half] * std::sin(ang);
                o[i + half] = r[i + half] * std::cos(ang) + r[i] * std::sin(ang);
            }
        }
    }
    return y;
}

vec ref_attention(const vec & q, const std::vector<vec> & keys, const std::vector<vec> & values,
                  const ivec & token_seq, const ivec & positions, int heads, int D, double scale) {
    vec out(q.size());
    for (size_t t = 0; t < token_seq.size(); ++t) {
        const vec & K = keys[token_seq[t]];
        const vec & V = values[token_seq[t]];
        const int n_keys = positions[t] + 1;
        for (int h = 0; h < heads; ++h) {
            const double * qr = &q[(t * heads + h) * D];
            std::vector<double> sc(n_keys);
            double m = -INFINITY;
            for (int j = 0; j < n_keys; ++j) {
                double dot = 0;
                for (int e = 0; e < D; ++e) dot += qr[e] * K[((size_t) j * heads + h) * D + e];
                sc[j] = dot * scale;
                m = std::max(m, sc[j]);
            }
            double l = 0;
            for (int j = 0; j < n_keys; ++j) l += std::exp(sc[j] - m);
            for (int e = 0; e < D; ++e) {
                double acc = 0;
                for (int j = 0; j < n_keys; ++j) acc += std::exp(sc[j] - m) * V[((size_t) j * heads + h) * D + e];
                out[(t * heads + h) * D + e] = acc / l;
            }
        }
    }
    return out;
}

vec ref_gelu_mul(const vec & gu, int rows, int F) {
    vec out((size_t) rows * F);
    for (int r = 0; r < rows; ++r) {
        for (int f = 0; f < F; ++f) {
            const double g = gu[(size_t) r * 2 * F + f], u = gu[(size_t) r * 2 * F + F + f];
            out[(size_t) r * F + f] = 0.5 * g * (1.0 + std::erf(g / std::sqrt(2.0))) * u;
        }
    }
    return out;
}

void ref_argmax_lse(const vec & logits, int rows, int V, ivec & token, vec & lse) {
    token.assign(rows, 0);
    lse.assign(rows, 0);
    for (int r = 0; r < rows; ++r) {
        const double * x = &logits[(size_t) r * V];
        int best = 0;
        for (int v = 1; v < V; ++v) if (x[v] > x[best]) best = v;
        double s = 0;
        for (int v = 0; v < V; ++v) s += std::exp(x[v] - x[best]);
        token[r] = best;
        lse[r] = x[best] + std::log(s);
    }
}

vec ref_matmul_nt(const vec & x, const vec & w, const vec & y0, int M, int N, int K, double beta) {
    vec y((size_t) M * N);
    for (int m = 0; m < M; ++m) {
        for (int n = 0; n < N; ++n) {
            double acc = 0;
            for (int k = 0; k < K; ++k) acc += x[(size_t) m * K + k] * w[(size_t) n * K + k];
            y[(size_t) m * N + n] = acc + (beta != 0.0 ? beta * y0[(size_t) m * N + n] : 0.0);
        }
    }
    return y;
}

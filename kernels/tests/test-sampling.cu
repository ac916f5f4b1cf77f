// sample_rows (kernels/src/sampling.cu) against a float64 CPU reference written here after the host
// sampler (src/engine/cpu/sampler.ts): processed logits (bias + penalties) exactly, greedy picks,
// top-N raw logprobs, every draw inside the reference's top-k/top-p/min-p support, the draw the
// host would make with the same uniform, reproducibility of (seed, position) across launches and
// row orders, and a chi-square test of 20k draws against the reference probabilities. Odd vocab sizes.
#include <algorithm>
#include <cstring>
#include <map>

#include "test-harness.h"

namespace {

struct sample_case {
    zk_sample_params p;
    std::vector<zk_penalty_entry> pens;
    std::vector<zk_bias_entry> bias;
};

zk_sample_params default_params(int row) {
    zk_sample_params p;
    std::memset(&p, 0, sizeof(p));
    p.temperature = 1.0;
    p.top_p = 1.0;
    p.repetition_penalty = 1.0;
    p.logits_row = row;
    return p;
}

uint32_t fmix32(uint32_t h) {
    h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
    return h;
}
// uniformAt(seed, position) of sampler.ts
double ref_uniform(uint32_t lo, uint32_t hi, int32_t position) {
    const uint32_t pos = (uint32_t) position;
    const uint32_t a = fmix32(fmix32(lo ^ 0x9e3779b9u) ^ ((pos + 1u) * 0x27d4eb2fu) ^ fmix32(hi + 0x165667b1u));
    const uint32_t b = fmix32(a ^ 0x85ebca77u ^ fmix32(pos ^ lo));
    return ((double) (a >> 5) * 67108864.0 + (double) (b >> 6)) / 9007199254740992.0;
}

// processLogits of sampler.ts (float32 stores after each step).
std::vector<float> ref_process(const float * raw, int V, const sample_case & c) {
    std::vector<float> x(raw, raw + V);
    for (const auto & b : c.bias) if (b.token >= 0 && b.token < V) x[b.token] = (float) ((double) x[b.token] + b.bias);
    for (const auto & e : c.pens) {
        if (e.token < 0 || e.token >= V) continue;
        float v = x[e.token];
        if (c.p.repetition_penalty != 1.0) v = (float) (v > 0 ? v / c.p.repetition_penalty : v * c.p.repetition_penalty);
        if (e.output_count > 0) v = (float) ((double) v - (c.p.presence_penalty + c.p.frequency_penalty * e.output_count));
        x[e.token] = v;
    }
    return x;
}

int ref_argmax(const std::vector<float> & x) {
    int best = 0;
    for (size_t i = 1; i < x.size(); ++i) if (x[i] > x[best]) best = (int) i;
    return best;
}

// candidateDistribution of sampler.ts: kept ids (ascending) and unnormalized probabilities.
void ref_support(const std::vector<float> & x, const zk_sample_params & p, std::vector<int> & ids, vec & probs) {
    const int V = (int) x.size();
    float mx = -INFINITY;
    for (float v : x) mx = std::max(mx, v);
    vec pr(V);
    for (int i = 0; i < V; ++i) pr[i] = std::exp(((double) x[i] - mx) / p.temperature);
    double thr = p.min_p > 0 ? p.min_p : 4.9406564584124654e-324;
    if (p.top_k > 0 && p.top_k < V) {
        vec s = pr;
        std::sort(s.begin(), s.end());
        thr = std::max(thr, s[V - p.top_k]);
    }
    if (p.top_p < 1) {
        vec kept;
        for (double v : pr) if (v >= thr) kept.push_back(v);
        std::sort(kept.begin(), kept.end());
        double total = 0, cum = 0;
        for (double v : kept) total += v;
        for (int i = (int) kept.size() - 1; i >= 0; --i) {
            cum += kept[i];
            if (cum >= p.top_p * total) { thr = std::max(thr, kept[i]); break; }
        }
    }
    ids.clear();
    probs.clear();
    for (int i = 0; i < V; ++i) if (pr[i] >= thr) { ids.push_back(i); probs.push_back(pr[i]); }
}

int ref_draw(const std::vector<int> & ids, const vec & probs, double u) {
    double total = 0;
    for (double v : probs) total += v;
    double target = u * total;
    for (size_t i = 0; i < ids.size(); ++i) {
        target -= probs[i];
        if (target < 0) return ids[i];
    }
    return ids.back();
}

struct sample_result {
    ivec token, top_ids;
    vec logprob, top_lp, work;
};

// Runs sample_rows over `logits` [n_logit_rows, V] for every case (row i of the launch = cases[i]).
sample_result run_sampler(const std::vector<float> & logits, int V, std::vector<sample_case> cases) {
    const int n = (int) cases.size();
    std::vector<zk_sample_params> params;
    std::vector<zk_penalty_entry> pens;
    std::vector<zk_bias_entry> biases;
    for (auto & c : cases) {
        c.p.penalty_start = (int) pens.size();
        c.p.penalty_count = (int) c.pens.size();
        c.p.bias_start = (int) biases.size();
        c.p.bias_count = (int) c.bias.size();
        pens.insert(pens.end(), c.pens.begin(), c.pens.end());
        biases.insert(biases.end(), c.bias.begin(), c.bias.end());
        params.push_back(c.p);
    }
    float *dl, *dwork, *dlp, *dtlp;
    int32_t *dtok, *dtid;
    zk_sample_params * dp;
    zk_penalty_entry * dpen;
    zk_bias_entry * dbias;
    ZK_CHECK(cudaMalloc(&dl, logits.size() * 4));
    ZK_CHECK(cudaMalloc(&dwork, (size_t) n * V * 4));
    ZK_CHECK(cudaMalloc(&dlp, n * 4));
    ZK_CHECK(cudaMalloc(&dtok, n * 4));
    ZK_CHECK(cudaMalloc(&dtid, (size_t) n * ZK_SAMPLE_MAX_TOP * 4));
    ZK_CHECK(cudaMalloc(&dtlp, (size_t) n * ZK_SAMPLE_MAX_TOP * 4));
    ZK_CHECK(cudaMalloc(&dp, n * sizeof(zk_sample_params)));
    ZK_CHECK(cudaMalloc(&dpen, (pens.size() + 1) * sizeof(zk_penalty_entry)));
    ZK_CHECK(cudaMalloc(&dbias, (biases.size() + 1) * sizeof(zk_bias_entry)));
    ZK_CHECK(cudaMemcpy(dl, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice));
    ZK_CHECK(cudaMemcpy(dp, params.data(), n * sizeof(zk_sample_params), cudaMemcpyHostToDevice));
    if (!pens.empty()) ZK_CHECK(cudaMemcpy(dpen, pens.data(), pens.size() * sizeof(zk_penalty_entry), cudaMemcpyHostToDevice));
    if (!biases.empty()) ZK_CHECK(cudaMemcpy(dbias, biases.data(), biases.size() * sizeof(zk_bias_entry), cudaMemcpyHostToDevice));
    ZK_CHECK(cudaMemset(dtok, 0xFF, n * 4));
    sample_rows(dtok, dlp, dtid, dtlp, dwork, dl, dp, dpen, dbias, n, V, 0);
    ZK_LAUNCHED();
    sample_result r;
    r.token.resize(n);
    r.top_ids.resize((size_t) n * ZK_SAMPLE_MAX_TOP);
    std::vector<float> lp(n), tlp((size_t) n * ZK_SAMPLE_MAX_TOP), work((size_t) n * V);
    ZK_CHECK(cudaMemcpy(r.token.data(), dtok, n * 4, cudaMemcpyDeviceToHost));
    ZK_CHECK(cudaMemcpy(r.top_ids.data(), dtid, r.top_ids.size() * 4, cudaMemcpyDeviceToHost));
    ZK_CHECK(cudaMemcpy(lp.data(), dlp, n * 4, cudaMemcpyDeviceToHost));
    ZK_CHECK(cudaMemcpy(tlp.data(), dtlp, tlp.size() * 4, cudaMemcpyDeviceToHost));
    ZK_CHECK(cudaMemcpy(work.data(), dwork, work.size() * 4, cudaMemcpyDeviceToHost));
    r.logprob.assign(lp.begin(), lp.end());
    r.top_lp.assign(tlp.begin(), tlp.end());
    r.work.assign(work.begin(), work.end());
    for (void * q : std::initializer_list<void *>{dl, dwork, dlp, dtlp, dtok, dtid, dp, dpen, dbias}) cudaFree(q);
    return r;
}

// Unique seen tokens of a random history with output counts (prompt tokens count 0).
std::vector<zk_penalty_entry> random_history(test_rng & rng, int V, int prompt, int output) {
    std::map<int, int> counts;
    for (int i = 0; i < prompt; ++i) counts.emplace(rng.integer(0, V - 1), 0);
    for (int i = 0; i < output; ++i) counts[rng.integer(0, V - 1)] += 1;
    std::vector<zk_penalty_entry> out;
    for (const auto & kv : counts) out.push_back({kv.first, kv.second});
    return out;
}

std::vector<zk_bias_entry> random_bias(test_rng & rng, int V, int n) {
    std::map<int, double> m;
    for (int i = 0; i < n; ++i) m[rng.integer(0, V - 1)] = rng.uniform(-8, 8);
    std::vector<zk_bias_entry> out;
    for (const auto & kv : m) out.push_back({kv.first, 0, kv.second});
    return out;
}

// raw log-softmax (float64 normalizer, float32 values) and its top N (value desc, id asc)
void ref_top(const float * raw, int V, int n, ivec & ids, vec & lps, std::vector<float> & lp_all) {
    float mx = -INFINITY;
    for (int i = 0; i < V; ++i) mx = std::max(mx, raw[i]);
    double s = 0;
    for (int i = 0; i < V; ++i) s += std::exp((double) raw[i] - mx);
    const double lse = mx + std::log(s);
    lp_all.resize(V);
    for (int i = 0; i < V; ++i) lp_all[i] = (float) ((double) raw[i] - lse);
    std::vector<int> order(V);
    for (int i = 0; i < V; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return lp_all[a] > lp_all[b]; });
    ids.clear();
    lps.clear();
    for (int k = 0; k < n && k < V; ++k) { ids.push_back(order[k]); lps.push_back(lp_all[order[k]]); }
}

// Mixed rows over several vocab sizes: processed logits, greedy, top-N, support, host-equal draws.
void check_mixed(test_table & tab, test_rng & rng, int V) {
    const int n_logit_rows = 6;
    std::vector<float> logits((size_t) n_logit_rows * V);
    for (auto & v : logits) v = (float) rng.uniform(-6, 6);
    if (V > 8) logits[3] = logits[7];  // a tie in row 0
    std::vector<sample_case> cases;
    for (int i = 0; i < 48; ++i) {
        sample_case c;
        c.p = default_params(i % n_logit_rows);
        const int kind = i % 6;
        c.p.temperature = kind == 0 ? 0.0 : rng.uniform(0.3, 2.0);
        if (kind == 1) c.p.top_k = 1;
        if (kind == 2) c.p.top_k = rng.integer(1, std::max(1, V / 3));
        if (kind == 3) c.p.top_p = rng.uniform(0.05, 0.95);
        if (kind == 4) c.p.min_p = rng.uniform(0.01, 0.5);
        if (kind == 5) { c.p.top_k = rng.integer(1, V); c.p.top_p = rng.uniform(0.2, 0.99); c.p.min_p = rng.uniform(0.0, 0.2); }
        if (i % 4 == 0) {
            c.p.repetition_penalty = rng.uniform(1.05, 2.0);
            c.p.presence_penalty = rng.uniform(-1, 1.5);
            c.p.frequency_penalty = rng.uniform(-0.5, 1.0);
            c.pens = random_history(rng, V, rng.integer(0, 40), rng.integer(0, 40));
        }
        if (i % 3 == 0) c.bias = random_bias(rng, V, rng.integer(1, 12));
        c.p.seed_lo = (uint32_t) rng.integer(0, 0x7fffffff);
        c.p.seed_hi = (uint32_t) (i % 5);
        c.p.position = rng.integer(0, 5000);
        c.p.n_top = i % 7 == 0 ? ZK_SAMPLE_MAX_TOP : i % 4;
        cases.push_back(c);
    }
    const sample_result r = run_sampler(logits, V, cases);
    ivec got_greedy, ref_greedy, got_ids, ref_ids, outside, draw_diff;
    vec got_work, ref_work, got_lp, ref_lp;
    int not_in_support = 0, draws = 0, draw_mismatch = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        const sample_case & c = cases[i];
        const float * raw = logits.data() + (size_t) c.p.logits_row * V;
        const std::vector<float> x = ref_process(raw, V, c);
        for (int v = 0; v < V; ++v) { got_work.push_back(r.work[i * V + v]); ref_work.push_back(x[v]); }
        ivec tids;
        vec tlps;
        std::vector<float> lp_all;
        ref_top(raw, V, c.p.n_top, tids, tlps, lp_all);
        for (size_t k = 0; k < tids.size(); ++k) {
            got_ids.push_back(r.top_ids[i * ZK_SAMPLE_MAX_TOP + k]);
            ref_ids.push_back(tids[k]);
            got_lp.push_back(r.top_lp[i * ZK_SAMPLE_MAX_TOP + k]);
            ref_lp.push_back(tlps[k]);
        }
        const int tok = r.token[i];
        if (tok >= 0 && tok < V) { got_lp.push_back(r.logprob[i]); ref_lp.push_back(lp_all[tok]); }
        if (c.p.temperature <= 0) {
            got_greedy.push_back(tok);
            ref_greedy.push_back(ref_argmax(x));
            continue;
        }
        std::vector<int> ids;
        vec probs;
        ref_support(x, c.p, ids, probs);
        ++draws;
        if (!std::binary_search(ids.begin(), ids.end(), tok)) ++not_in_support;
        if (ref_draw(ids, probs, ref_uniform(c.p.seed_lo, c.p.seed_hi, c.p.position)) != tok) ++draw_mismatch;
    }
    const std::string tag = "sample_rows V=" + std::to_string(V) + ": ";
    tab.compare(tag + "processed logits", got_work, ref_work, 0.0);
    tab.compare_ints(tag + "greedy tokens", got_greedy, ref_greedy);
    tab.compare_ints(tag + "top-N logprob ids", got_ids, ref_ids);
    tab.compare(tag + "logprobs (token + top-N)", got_lp, ref_lp, 1e-6);
    tab.compare_ints(tag + "draws outside the support", ivec(1, not_in_support), ivec(1, 0));
    // the same uniform must give the host's token (fixed-point vs float64 sums: ties only at ~1e-12)
    tab.compare_ints(tag + "draws != host draw (of " + std::to_string(draws) + ")", ivec(1, draw_mismatch), ivec(1, 0));
}

// Same (seed, position) -> same token, whatever the row order and batch around it.
void check_reproducible(test_table & tab, test_rng & rng) {
    const int V = 32000;
    std::vector<float> logits((size_t) 3 * V);
    for (auto & v : logits) v = (float) rng.uniform(-3, 3);
    std::vector<sample_case> cases;
    for (int i = 0; i < 64; ++i) {
        sample_case c;
        c.p = default_params(i % 3);
        c.p.temperature = 1.3;
        c.p.top_p = i % 2 ? 0.9 : 1.0;
        c.p.top_k = i % 3 ? 0 : 400;
        c.p.seed_lo = 1234u + (uint32_t) i;
        c.p.position = 17 + i;
        cases.push_back(c);
    }
    const sample_result a = run_sampler(logits, V, cases);
    std::vector<sample_case> shuffled(cases.rbegin(), cases.rend());
    shuffled.insert(shuffled.begin() + 10, cases.begin(), cases.begin() + 20);  // a different batch around them
    const sample_result b = run_sampler(logits, V, shuffled);
    ivec got, want;
    for (int i = 0; i < 64; ++i) { got.push_back(b.token[i < 10 ? i : i + 20]); want.push_back(a.token[63 - i]); }
    tab.compare_ints("sample_rows reproducible across batches", got, want);
    // a different seed must change some draws (the seed is used at all)
    for (auto & c : cases) c.p.seed_lo += 99991u;
    const sample_result d = run_sampler(logits, V, cases);
    int changed = 0;
    for (int i = 0; i < 64; ++i) changed += d.token[i] != a.token[i];
    tab.compare_ints("sample_rows seed changes draws (>= 32 of 64)", ivec(1, changed >= 32), ivec(1, 1));
}

// 20k draws of one row (different positions) against the reference probabilities.
void check_distribution(test_table & tab, test_rng & rng, int V, double top_p, int top_k, double min_p) {
    std::vector<float> logits(V);
    for (auto & v : logits) v = (float) rng.uniform(-2, 2);
    const int n = 20000;
    std::vector<sample_case> cases(n);
    for (int i = 0; i < n; ++i) {
        cases[i].p = default_params(0);
        cases[i].p.temperature = 0.8;
        cases[i].p.top_p = top_p;
        cases[i].p.top_k = top_k;
        cases[i].p.min_p = min_p;
        cases[i].p.seed_lo = 42;
        cases[i].p.position = i;
    }
    const sample_result r = run_sampler(logits, V, cases);
    std::vector<int> ids;
    vec probs;
    ref_support(ref_process(logits.data(), V, cases[0]), cases[0].p, ids, probs);
    double total = 0;
    for (double v : probs) total += v;
    std::vector<int> counts(V, 0);
    for (int t : r.token) if (t >= 0 && t < V) counts[t]++;
    double chi2 = 0;
    int outside = 0;
    for (int v = 0; v < V; ++v) {
        const auto it = std::lower_bound(ids.begin(), ids.end(), v);
        if (it == ids.end() || *it != v) { outside += counts[v]; continue; }
        const double expect = n * probs[it - ids.begin()] / total;
        chi2 += (counts[v] - expect) * (counts[v] - expect) / expect;
    }
    const double df = std::max<double>(1, ids.size() - 1);
    const double bound = df + 8 * std::sqrt(2 * df) + 10;  // generous: ~8 sigma of the chi-square
    char name[96];
    std::snprintf(name, sizeof(name), "sample_rows chi2 V=%d k=%d p=%.2f (df %.0f)", V, top_k, top_p, df);
    std::printf("  %s: chi2 %.1f, bound %.1f, support %zu\n", name, chi2, bound, ids.size());
    tab.compare_ints(std::string(name) + " outside", ivec(1, outside), ivec(1, 0));
    tab.compare_ints(std::string(name) + " chi2 > bound", ivec(1, chi2 > bound), ivec(1, 0));
}

void test_sampling_kernel(test_table & tab, test_rng & rng) {
    for (int V : {1, 2, 7, 37, 997, 32000}) check_mixed(tab, rng, V);
    check_reproducible(tab, rng);
    check_distribution(tab, rng, 7, 1.0, 0, 0.0);
    check_distribution(tab, rng, 61, 0.8, 0, 0.0);
    check_distribution(tab, rng, 101, 1.0, 20, 0.05);
}

}  // namespace

ZK_REGISTER_TEST(test_sampling_kernel);

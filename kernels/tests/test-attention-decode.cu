// paged_attention_decode (kernels/src/attention-decode.cu) against the float64 reference: one fp32 query
// per sequence at ragged context lengths (1 key, page boundaries, several key groups per warp), shuffled
// pages, every head-dim class of the presets and fixtures; the rotary embedding inside the kernel against the
// rope kernel followed by the plain one (bitwise).
#include <algorithm>
#include <numeric>

#include "test-harness.h"

namespace {

// One decode step of sequences with context lengths `lens`; heads x sequences picks the kernel's shape
// (few blocks: 8 warps per block; more than two per SM: 4 warps). write_new: the kernel first writes this
// step's key and value (fp32 k_new, v_new at kv_index, the last position) into the pools, as the engine's decode
// steps do instead of a kv_cache_write launch.
void decode_case(test_table & tab, test_rng & rng, int D, int heads, const ivec & lens, bool write_new = false) {
    {
        const int S = (int) lens.size(), max_pages = 24, n_pages = 24 * S;
        const size_t pool_elems = (size_t) n_pages * heads * ZK_PAGE_TOKENS * D;
        vec kpool = rng.bf16_values(pool_elems, -1, 1), vpool = rng.bf16_values(pool_elems, -1, 1);
        ivec pages(n_pages);
        std::iota(pages.begin(), pages.end(), 0);
        std::shuffle(pages.begin(), pages.end(), rng.gen);
        ivec block_tables((size_t) S * max_pages, -1), token_seq, positions;
        std::vector<vec> keys(S), values(S);
        int next_page = 0;
        for (int s = 0; s < S; ++s) {
            const int len = lens[s];
            for (int i = 0; i < (len + 15) / 16; ++i) block_tables[s * max_pages + i] = pages[next_page++];
            keys[s].resize((size_t) len * heads * D);
            values[s].resize((size_t) len * heads * D);
            for (int j = 0; j < len; ++j) {
                const int page = block_tables[s * max_pages + j / 16];
                for (int h = 0; h < heads; ++h) for (int e = 0; e < D; ++e) {
                    const size_t src = (((size_t) page * heads + h) * 16 + j % 16) * D + e;
                    keys[s][((size_t) j * heads + h) * D + e] = kpool[src];
                    values[s][((size_t) j * heads + h) * D + e] = vpool[src];
                }
            }
            token_seq.push_back(s);
            positions.push_back(len - 1);
        }
        const vec q = rng.f32_values((size_t) S * heads * D, -1.5, 1.5);
        const vec k_new = rng.f32_values((size_t) S * heads * D, -1, 1), v_new = rng.f32_values((size_t) S * heads * D, -1, 1);
        ivec kv_index(S);
        vec kpool_after = kpool, vpool_after = vpool;
        for (int s = 0; s < S && write_new; ++s) {  // the last key and value of each sequence are this step's
            const int j = lens[s] - 1, page = block_tables[s * max_pages + j / 16];
            kv_index[s] = page * 16 + j % 16;
            for (int h = 0; h < heads; ++h) for (int e = 0; e < D; ++e) {
                const size_t src = (((size_t) page * heads + h) * 16 + j % 16) * D + e, at = ((size_t) s * heads + h) * D + e;
                const double kb = __bfloat162float(__float2bfloat16_rn((float) k_new[at]));
                const double vb = __bfloat162float(__float2bfloat16_rn((float) v_new[at]));
                kpool_after[src] = kb;
                vpool_after[src] = vb;
                keys[s][((size_t) j * heads + h) * D + e] = kb;
                values[s][((size_t) j * heads + h) * D + e] = vb;
            }
        }
        const double scale = 1.0 / std::sqrt(D / 2.0);
        dev_buf<bf16> dk(pool_elems), dv(pool_elems);
        dev_buf<float> dq(q.size()), dout(q.size());
        dev_buf<int32_t> dbt(block_tables.size()), dpos(S), dkvi(S);
        dev_buf<float> dknew(k_new.size()), dvnew(v_new.size());
        dk.upload(kpool); dv.upload(vpool); dq.upload(q); dknew.upload(k_new); dvnew.upload(v_new);
        upload_ints(dbt, block_tables); upload_ints(dpos, positions); upload_ints(dkvi, kv_index);
        const bool ok = paged_attention_decode(dout.ptr, dq.ptr, dk.ptr, dv.ptr, dbt.ptr, max_pages, dpos.ptr, S, heads, D,
                                               (float) scale, 0, write_new ? dknew.ptr : nullptr,
                                               write_new ? dvnew.ptr : nullptr, write_new ? dkvi.ptr : nullptr);
        ZK_LAUNCHED();
        const std::string name = "attention_decode D=" + std::to_string(D) + " S=" + std::to_string(S) + " heads=" +
                                 std::to_string(heads) + (write_new ? " +kv write" : "");
        if (!ok) { tab.compare(name + " (refused)", {1.0}, {0.0}, 0.0); return; }
        tab.compare(name, dout.download(), ref_attention(q, keys, values, token_seq, positions, heads, D, scale), 1e-5);
        if (write_new) {
            tab.compare(name + " k pool", dk.download(), kpool_after, 0.0);
            tab.compare(name + " v pool", dv.download(), vpool_after, 0.0);
        }
    }
}

// The rotary embedding inside the kernel (rope_theta) against rope_neox_qk_inplace followed by the plain kernel:
// the same output and pools, bitwise, and q / k_new untouched.
void rope_fold_case(test_table & tab, test_rng & rng, int D, int heads, const ivec & lens) {
    const int S = (int) lens.size(), max_pages = 24, n_pages = 24 * S;
    const size_t pool_elems = (size_t) n_pages * heads * ZK_PAGE_TOKENS * D, row_elems = (size_t) S * heads * D;
    const vec kpool = rng.bf16_values(pool_elems, -1, 1), vpool = rng.bf16_values(pool_elems, -1, 1);
    const vec q = rng.f32_values(row_elems, -1.5, 1.5), k_new = rng.f32_values(row_elems, -1, 1);
    const vec v_new = rng.f32_values(row_elems, -1, 1);
    ivec block_tables((size_t) S * max_pages, 0), positions(S), kv_index(S);
    for (int s = 0; s < S; ++s) {
        for (int i = 0; i < (lens[s] + 15) / 16; ++i) block_tables[s * max_pages + i] = s * max_pages + i;
        positions[s] = lens[s] - 1;
        kv_index[s] = block_tables[s * max_pages + (lens[s] - 1) / 16] * 16 + (lens[s] - 1) % 16;
    }
    dev_buf<int32_t> dbt(block_tables.size()), dpos(S), dkvi(S);
    upload_ints(dbt, block_tables); upload_ints(dpos, positions); upload_ints(dkvi, kv_index);
    const float scale = 1.0f / std::sqrt((float) D);
    vec out[2], kp[2], vp[2], q_after;
    for (int run = 0; run < 2; ++run) {  // 0: rope kernel, then attention; 1: rope inside attention
        dev_buf<bf16> dk(pool_elems), dv(pool_elems);
        dev_buf<float> dq(row_elems), dkn(row_elems), dvn(row_elems), dout(row_elems);
        dk.upload(kpool); dv.upload(vpool); dq.upload(q); dkn.upload(k_new); dvn.upload(v_new);
        if (run == 0) rope_neox_qk_inplace(dq.ptr, dkn.ptr, dpos.ptr, S, heads, D, 10000.0f, 0);
        const bool ok = paged_attention_decode(dout.ptr, dq.ptr, dk.ptr, dv.ptr, dbt.ptr, max_pages, dpos.ptr, S, heads, D,
                                               scale, 0, dkn.ptr, dvn.ptr, dkvi.ptr, run == 1 ? 10000.0f : 0.0f);
        ZK_LAUNCHED();
        out[run] = ok ? dout.download() : vec();
        kp[run] = dk.download();
        vp[run] = dv.download();
        if (run == 1) q_after = dq.download();
    }
    const std::string name = "attention_decode rope inside D=" + std::to_string(D) + " S=" + std::to_string(S);
    tab.compare(name + " = rope kernel first, bitwise", out[1], out[0], 0.0);
    tab.compare(name + " k pool, bitwise", kp[1], kp[0], 0.0);
    tab.compare(name + " v pool, bitwise", vp[1], vp[0], 0.0);
    tab.compare(name + " q untouched", q_after, q, 0.0);
}

void test_attention_decode(test_table & tab, test_rng & rng) {
    for (int D : {32, 40, 64, 128, 160, 224}) decode_case(tab, rng, D, 3, {1, 17, 200, 333, 64, 16});
    // 9 x 32 = 288 blocks (> 2 per SM on 132 SMs): the 4-warp kernel
    for (int D : {128, 160}) decode_case(tab, rng, D, 32, {1, 17, 200, 333, 64, 16, 5, 90, 33});
    for (int D : {64, 128}) decode_case(tab, rng, D, 3, {1, 17, 200, 16}, true);
    decode_case(tab, rng, 128, 32, {1, 17, 200, 333, 64, 16, 5, 90, 33}, true);
    rope_fold_case(tab, rng, 128, 32, {1, 17, 200, 33});
    rope_fold_case(tab, rng, 160, 3, {5, 64, 300});
}

}  // namespace

ZK_REGISTER_TEST(test_attention_decode);

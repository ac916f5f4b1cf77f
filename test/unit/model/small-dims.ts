/** Small Zamba2 dims of both families for checkpoint tests (spec §7: what each family exercises). */
import { parseZamba2Config } from '../../../src/model/zamba2-config.js';
import type { Zamba2Dims } from '../../../src/model/types.js';

/** 1.2B-like: one shared block, q/k/v + MLP adapters, rope, d_state > head dim. */
export function smallDimsOneBlock(): Zamba2Dims {
  return parseZamba2Config({
    vocab_size: 64, hidden_size: 32, layers_block_type: ['mamba', 'hybrid', 'mamba', 'hybrid'],
    mamba_d_state: 8, mamba_expand: 2, mamba_ngroups: 1, n_mamba_heads: 4, intermediate_size: 64,
    num_attention_heads: 4, num_mem_blocks: 1, use_shared_attention_adapter: true, adapter_rank: 4,
    use_mem_rope: true, rope_theta: 10000, torch_dtype: 'bfloat16',
  }).dims;
}

/** 2.7B/7B-like: two alternating blocks, ngroups 2, no rope, attention head dim 20. */
export function smallDimsTwoBlocks(): Zamba2Dims {
  return parseZamba2Config({
    vocab_size: 48, hidden_size: 40, layers_block_type: ['mamba', 'hybrid', 'mamba', 'hybrid', 'hybrid', 'mamba'],
    mamba_d_state: 8, mamba_expand: 2, mamba_ngroups: 2, n_mamba_heads: 8, intermediate_size: 96,
    num_attention_heads: 4, num_mem_blocks: 2, use_shared_attention_adapter: false, adapter_rank: 4,
    use_mem_rope: false, torch_dtype: 'float32',
  }).dims;
}

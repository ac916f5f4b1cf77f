/**
 * Small random Zamba2 models held in memory (no files), for unit tests of the CPU engine's graph
 * against the float64 reference. Dims are derived here with the spec §1.1 formulas so the tests do
 * not depend on the config parser.
 */
import type { LayerKind, Zamba2Dims, Zamba2Weights } from '../../../../src/model/types.js';
export interface TinyConfig {
    vocabSize?: number;
    hiddenSize?: number;
    layerKinds: LayerKind[];
    numMemBlocks?: number;
    numAttentionHeads?: number;
    mambaDState?: number;
    mambaNGroups?: number;
    nMambaHeads?: number;
    mambaExpand?: number;
    intermediateSize?: number;
    useSharedAttentionAdapter?: boolean;
    adapterRank?: number;
    useMemRope?: boolean;
    ropeTheta?: number;
}
export declare function tinyDims(c: TinyConfig): Zamba2Dims;
/** mulberry32: tiny deterministic PRNG for test weights. */
export declare function seededRandom(seed: number): () => number;
export declare function randomWeights(d: Zamba2Dims, seed: number): Zamba2Weights;

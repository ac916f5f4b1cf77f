export function tinyDims(c) {
    const H = c.hiddenSize ?? 32;
    const heads = c.numAttentionHeads ?? 4;
    const expand = c.mambaExpand ?? 2;
    const dInner = expand * H;
    const nh = c.nMambaHeads ?? 4;
    const G = c.mambaNGroups ?? 1;
    const N = c.mambaDState ?? 8;
    const hybridLayerIds = c.layerKinds.flatMap((k, i) => (k === 'hybrid' ? [i] : []));
    const blocks = c.numMemBlocks ?? 1;
    return {
        vocabSize: c.vocabSize ?? 64,
        hiddenSize: H,
        numLayers: c.layerKinds.length,
        layerKinds: c.layerKinds,
        hybridLayerIds,
        hybridBlockIds: hybridLayerIds.map((_, h) => h % blocks),
        numMemBlocks: blocks,
        numAttentionHeads: heads,
        numKeyValueHeads: heads,
        attentionHeadDim: (2 * H) / heads,
        attentionHiddenSize: 2 * H,
        kvChannels: H / heads,
        intermediateSize: c.intermediateSize ?? 4 * H,
        mambaDState: N,
        mambaDConv: 4,
        mambaExpand: expand,
        mambaNGroups: G,
        nMambaHeads: nh,
        mambaHeadDim: dInner / nh,
        dInner,
        convDim: dInner + 2 * G * N,
        inProjOut: 2 * dInner + 2 * G * N + nh,
        useConvBias: true,
        useSharedAttentionAdapter: c.useSharedAttentionAdapter ?? false,
        adapterRank: c.adapterRank ?? 4,
        useMemRope: c.useMemRope ?? true,
        ropeTheta: c.ropeTheta ?? 10000,
        rmsNormEps: 1e-5,
        maxPositionEmbeddings: 4096,
        chunkSize: 256,
        bosTokenId: 1,
        eosTokenId: 2,
        padTokenId: 0,
        tieWordEmbeddings: true,
        dtype: 'float32',
    };
}
/** mulberry32: tiny deterministic PRNG for test weights. */
export function seededRandom(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}
class MemoryTensor {
    name;
    shape;
    data;
    dtype = 'F32';
    constructor(name, shape, data) {
        this.name = name;
        this.shape = shape;
        this.data = data;
    }
    bytes() {
        return new Uint8Array(this.data.buffer, this.data.byteOffset, this.data.byteLength);
    }
    toFloat32() {
        return this.data.slice();
    }
}
export function randomWeights(d, seed) {
    const rnd = seededRandom(seed);
    const uniform = (lo, hi) => lo + (hi - lo) * rnd();
    const make = (name, shape, f) => {
        const n = shape.reduce((a, b) => a * b, 1);
        return new MemoryTensor(name, shape, Float32Array.from({ length: n }, (_, i) => f(i)));
    };
    const linear = (name, out, inDim) => {
        const s = 1 / Math.sqrt(inDim);
        return make(name, [out, inDim], () => uniform(-s, s));
    };
    const norm = (name, n) => make(name, [n], () => uniform(0.8, 1.2));
    const H = d.hiddenSize;
    const H2 = 2 * H;
    const F = d.intermediateSize;
    const r = d.adapterRank;
    const adapter = (name, inDim, out) => ({
        w0: linear(`${name}.0`, r, inDim),
        w1: linear(`${name}.1`, out, r),
    });
    const embed = make('embed', [d.vocabSize, H], () => uniform(-1, 1));
    return {
        embedTokens: embed,
        finalNorm: norm('final_norm', H),
        lmHead: embed,
        layers: d.layerKinds.map((kind, l) => ({
            kind,
            inputNorm: norm(`l${l}.norm`, H),
            linear: kind === 'hybrid' ? linear(`l${l}.linear`, H, H) : null,
            mixer: {
                inProj: linear(`l${l}.in_proj`, d.inProjOut, H),
                conv1dWeight: make(`l${l}.conv_w`, [d.convDim, 1, d.mambaDConv], () => uniform(-0.5, 0.5)),
                conv1dBias: make(`l${l}.conv_b`, [d.convDim], () => uniform(-0.1, 0.1)),
                // dt = softplus(raw + bias) lands mostly in [0.001, 0.5]
                dtBias: make(`l${l}.dt_bias`, [d.nMambaHeads], () => Math.log(Math.expm1(uniform(0.01, 0.3)))),
                aLog: make(`l${l}.A_log`, [d.nMambaHeads], () => Math.log(uniform(1, 16))),
                d: make(`l${l}.D`, [d.nMambaHeads], () => uniform(0.5, 1.5)),
                norm: norm(`l${l}.gnorm`, d.dInner),
                outProj: linear(`l${l}.out_proj`, H, d.dInner),
            },
        })),
        sharedBlocks: Array.from({ length: d.numMemBlocks }, (_, k) => ({
            inputNorm: norm(`b${k}.in_norm`, H2),
            qProj: linear(`b${k}.q`, H2, H2),
            kProj: linear(`b${k}.k`, H2, H2),
            vProj: linear(`b${k}.v`, H2, H2),
            oProj: linear(`b${k}.o`, H, H2),
            preFfNorm: norm(`b${k}.pre_ff`, H),
            gateUp: linear(`b${k}.gate_up`, 2 * F, H),
            down: linear(`b${k}.down`, H, F),
        })),
        hybridAdapters: d.hybridLayerIds.map((_, h) => ({
            q: d.useSharedAttentionAdapter ? adapter(`a${h}.q`, H2, H2) : null,
            k: d.useSharedAttentionAdapter ? adapter(`a${h}.k`, H2, H2) : null,
            v: d.useSharedAttentionAdapter ? adapter(`a${h}.v`, H2, H2) : null,
            gateUp: adapter(`a${h}.gate_up`, H, 2 * F),
        })),
    };
}
//# sourceMappingURL=random-weights.js.map
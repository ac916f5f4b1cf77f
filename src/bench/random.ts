/**
 * Seeded randomness for the bench: the same `--seed` gives the same prompts, the same output
 * lengths and the same arrival times, so two runs (or ours and a baseline in one run) see the same
 * traffic. Nothing here reads the clock.
 */

/** A uniform [0, 1) generator (mulberry32: 32-bit state, fast, good enough for load shaping). */
export type UniformRandom = () => number;

export function createRandom(seed: number): UniformRandom {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal sample (Box-Muller; one of the pair is dropped, which keeps the code stateless). */
export function sampleNormal(random: UniformRandom): number {
  const u1 = 1 - random(); // (0, 1]: log(0) never happens
  const u2 = random();
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/**
 * Gamma(shape, scale) sample, Marsaglia-Tsang's squeeze method; shape < 1 uses the
 * Gamma(shape + 1) · U^(1/shape) boost.
 */
export function sampleGamma(random: UniformRandom, shape: number, scale: number): number {
  if (!(shape > 0) || !(scale > 0)) throw new RangeError(`gamma needs shape > 0 and scale > 0, got ${shape}, ${scale}`);
  if (shape < 1) {
    const u = 1 - random();
    return sampleGamma(random, shape + 1, scale) * Math.pow(u, 1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = sampleNormal(random);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - random();
    if (u < 1 - 0.0331 * x ** 4) return d * v * scale;
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v * scale;
  }
}

/**
 * Send times (ms after the start) of `count` requests arriving at `ratePerS` on average.
 *
 * Gaps are Gamma(shape = burstiness, scale = 1 / (rate · burstiness)), as in vLLM's
 * benchmark_serving: the mean gap is always 1/rate; burstiness 1 is a Poisson process, below 1
 * arrivals bunch up (coefficient of variation 1/√burstiness), above 1 they even out.
 * `ratePerS = Infinity` sends everything at once.
 */
export function arrivalOffsetsMs(count: number, ratePerS: number, burstiness: number, random: UniformRandom): number[] {
  if (!(ratePerS > 0)) throw new RangeError(`request rate must be > 0, got ${ratePerS}`);
  if (!(burstiness > 0)) throw new RangeError(`burstiness must be > 0, got ${burstiness}`);
  const offsets: number[] = [];
  if (ratePerS === Infinity) {
    for (let i = 0; i < count; i++) offsets.push(0);
    return offsets;
  }
  const scaleS = 1 / (ratePerS * burstiness);
  let atMs = 0;
  for (let i = 0; i < count; i++) {
    offsets.push(atMs);
    atMs += sampleGamma(random, burstiness, scaleS) * 1000;
  }
  return offsets;
}

/**
 * Finds and loads the native addon, and checks that a CUDA device is visible. Errors carry a code
 * the engine factory (src/engine/index.ts) turns into an UnavailableEngine with a clear message:
 *   ZMB_CUDA_ADDON_MISSING  the .node file is absent or cannot be loaded (not built, wrong libs)
 *   ZMB_CUDA_NO_DEVICE      the addon loaded but the CUDA runtime sees no GPU
 * Search order: $ZAMBA2_CUDA_ADDON, then kernels/build/zamba2_cuda.node of this checkout.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { CudaDeviceInfo, Zamba2CudaAddon } from './binding.js';

export class CudaUnavailableError extends Error {
  constructor(
    message: string,
    readonly code: 'ZMB_CUDA_ADDON_MISSING' | 'ZMB_CUDA_NO_DEVICE',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CudaUnavailableError';
  }
}

/** kernels/build/zamba2_cuda.node, from src/engine/cuda/ or dist/engine/cuda/ alike. */
export function defaultAddonPath(): string {
  return fileURLToPath(new URL('../../../kernels/build/zamba2_cuda.node', import.meta.url));
}

let cached: { addon: Zamba2CudaAddon; device: CudaDeviceInfo } | null = null;

export function loadCudaAddon(path: string = process.env.ZAMBA2_CUDA_ADDON ?? defaultAddonPath()): { addon: Zamba2CudaAddon; device: CudaDeviceInfo } {
  if (cached !== null) return cached;
  if (!existsSync(path)) {
    throw new CudaUnavailableError(`CUDA addon not found at ${path}: build it with \`npm run build:cuda\` (needs nvcc and cuBLAS)`, 'ZMB_CUDA_ADDON_MISSING');
  }
  let addon: Zamba2CudaAddon;
  try {
    addon = createRequire(import.meta.url)(path) as Zamba2CudaAddon;
  } catch (err) {
    throw new CudaUnavailableError(`CUDA addon at ${path} failed to load: ${(err as Error).message.split('\n')[0]}`, 'ZMB_CUDA_ADDON_MISSING', { cause: err });
  }
  let device: CudaDeviceInfo;
  try {
    device = addon.cudaInfo();
  } catch (err) {
    throw new CudaUnavailableError(`CUDA addon loaded but ${(err as Error).message}`, 'ZMB_CUDA_NO_DEVICE', { cause: err });
  }
  cached = { addon, device };
  return cached;
}

# syntax=docker/dockerfile:1
# zamba2-serve, GPU image: the CUDA addon is built once in the CUDA devel image, the server runs on
# the matching CUDA runtime image. Build:   docker build -t zamba2-serve:0.1.0 .
# Run:  docker run --gpus all --init -p 8000:8000 -v ~/models:/models zamba2-serve:0.1.0 --model /models/Zamba2-1.2B-instruct
# Defaults (host, port, device, cache folder) come from ZAMBA2_* env vars below, so arguments given
# to `docker run` add to them instead of replacing them. The CPU-only image is docker/Dockerfile.cpu.

ARG CUDA_VERSION=13.0.1
ARG UBUNTU_VERSION=24.04

# Node.js comes from the official image (same glibc line as Ubuntu 24.04), not from a download.
FROM node:20.19.5-bookworm-slim AS node

# ---- build: npm ci, TypeScript, the CUDA addon, then drop dev dependencies ----
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build
# sm_90a (H100/H200) and sm_80 (A100) by default; e.g. --build-arg ZK_ARCHS="-gencode=arch=compute_89,code=sm_89"
ARG ZK_ARCHS="-gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80"
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /src
# Lockfile first: the dependency layer is rebuilt only when dependencies change.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY kernels ./kernels
RUN npm run build \
    && ZK_ARCHS="${ZK_ARCHS}" npm run build:cuda \
    && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime: CUDA runtime libraries (cudart, cuBLAS/cuBLASLt) + Node.js + the built server ----
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime
COPY --from=node /usr/local/bin/node /usr/local/bin/node
RUN groupadd --system --gid 10001 zamba2 \
    && useradd --system --uid 10001 --gid zamba2 --home-dir /app --no-create-home --shell /usr/sbin/nologin zamba2 \
    && mkdir -p /models /models-cache \
    && chown zamba2:zamba2 /models-cache
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/kernels/build/zamba2_cuda.node ./kernels/build/zamba2_cuda.node
COPY config ./config
COPY models ./models
ENV NODE_ENV=production \
    ZAMBA2_HOST=0.0.0.0 \
    ZAMBA2_PORT=8000 \
    ZAMBA2_DEVICE=cuda \
    ZAMBA2_DOWNLOAD_DIR=/models-cache \
    HF_HOME=/models-cache \
    CUDA_CACHE_PATH=/tmp/cuda-cache
# Hub downloads land here; mount a volume to keep them across containers.
VOLUME ["/models-cache"]
USER zamba2
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.ZAMBA2_PORT || 8000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/main.js"]

#!/usr/bin/env bash
# Everything one GPU-machine call does, each stage time-boxed so a hang cannot eat the lease:
#   build      nvcc build (sm_90a only: the lent GPU)
#   tests      kernel tests vs the float64 CPU reference (two seeds)
#   node       golden fixtures through the engine: defaults, then each fast path alone, then all of them
#   bench      bench-engine 1.2b: defaults, then each variant of BENCH_VARIANTS
#   presets    bench-engine 2.7b and 7b with the defaults
#   skinny     skinny_gemm's benchmark (ZK_BENCH_SKINNY=1: 1.2B decode shapes, the layer chain)
#   timeline   where a b1 decode step's time goes under PDL (build.sh --timeline; kernels/dev/timeline_summary.py),
#              defaults and each BENCH_VARIANT
#   ncu        per-kernel time of decode steps at b1 and b64 (ncu, graphs off; kernels/dev/ncu_summary.py)
#   sanitize   compute-sanitizer memcheck of the kernel tests
#   e2e        1.2B random checkpoint, the server with --device cuda, many-streams at 64 concurrent streams
#   rate       the same server under Poisson arrivals (RATE_RPS, default 80 req/s: steps mix prompts and decodes),
#              once per RATE_VARIANTS entry ("label:ENV=V ...", default the defaults and ZAMBA2_MIXED_STEP=0)
#   hf         transformers (torch bf16) baseline on the same dims
# Usage (repo root, on the GPU machine, after `source .devcuda/setup.sh`; $OUT optional):
#   bash kernels/dev/device-run.sh [stages...]      (default: all, in the order above)
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/zamba2-device-run}"
mkdir -p "$out"
stages="${*:-build tests node bench presets skinny timeline ncu sanitize e2e rate hf}"
status=0
t_start=$(date +%s)
stage() { echo; echo "=== $1 ($(date +%T), +$(($(date +%s) - t_start))s)"; }
has() { [[ " $stages " == *" $1 "* ]]; }
# golden runs besides the defaults (one env assignment each) and bench variants ("label:ENV=V ENV=V")
read -r -a FLAG_RUNS <<< "${FLAG_RUNS:-ZAMBA2_SSD=0 ZAMBA2_SKINNY_MAX_M=0 ZAMBA2_ATTN_TC=0 ZAMBA2_PERSIST=0}"
IFS=';' read -r -a BENCH_VARIANTS <<< "${BENCH_VARIANTS:-cuBLASLt only:ZAMBA2_SKINNY_MAX_M=0;seq scan:ZAMBA2_SSD=0;old attn:ZAMBA2_ATTN_TC=0;no split:ZAMBA2_SPLIT_GEMM=0}"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader || true

if has build; then
  stage build
  JOBS=16 ZK_ARCHS="-gencode=arch=compute_90a,code=sm_90a" timeout 300 bash kernels/build.sh || { echo "BUILD FAILED"; exit 1; }
fi

if has tests; then
  stage "kernel tests"
  timeout 120 kernels/build/test-kernels > "$out/kernel-tests.txt" 2>&1 || status=1
  grep -E "FAIL|kernel checks|seed" "$out/kernel-tests.txt"
  grep -E "f32|hi\+lo|combine" "$out/kernel-tests.txt"
  timeout 120 kernels/build/test-kernels 12345 | grep -E "FAIL|kernel checks" || status=1
fi

golden_line() {  # label file: pass/fail counts and the worst relative error per fixture
  local pass fail worst
  pass=$(grep -E "^# pass" "$2" | awk '{print $3}'); fail=$(grep -E "^# fail" "$2" | awk '{print $3}')
  worst=$(grep -oE "^ *# [a-z]+/[a-z0-9]+: max rel [0-9.e+-]+" "$2" |
    awk '{split($2,a,"/"); f=a[1]; v=$5+0; if (v > m[f]) m[f]=v} END {for (f in m) printf "%s %.2e  ", f, m[f]}')
  echo "golden [$1] pass ${pass:-?} fail ${fail:-?} | worst rel: $worst" | tee -a "$out/golden-summary.txt"
}

passing_flags=()
if has node; then
  stage "node GPU tests (golden fixtures)"
  timeout 200 node test/run-tests.mjs --gpu > "$out/node-gpu.txt" 2>&1 || status=1
  golden_line defaults "$out/node-gpu.txt"
  grep -E "max rel|greedy tokens compared|not ok|error:" "$out/node-gpu.txt" | head -40
  for f in "${FLAG_RUNS[@]}"; do
    env "$f" timeout 150 node test/run-tests.mjs --gpu > "$out/node-gpu-$f.txt" 2>&1
    rc=$?
    golden_line "$f" "$out/node-gpu-$f.txt"
    [ $rc = 0 ] && passing_flags+=("$f") || grep -E "not ok|error:" "$out/node-gpu-$f.txt" | head -8
  done
fi

server_up() {  # port pid: waits up to 120 s for the server's /health; fails at once if the process exits
  for _ in $(seq 1 120); do
    node -e "fetch('http://127.0.0.1:$1/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 1
  done
  return 1
}

bench_rows() {  # label env...: the 1.2b table rows, prefixed
  local label="$1"; shift
  env "$@" timeout 120 kernels/build/bench-engine 1.2b 2>&1 | grep -E "^(prefill|decode) " | sed "s/^/$label | /" >> "$out/bench.txt"
}
if has bench; then
  stage "bench-engine 1.2b"
  : > "$out/bench.txt"
  bench_rows "defaults" ZAMBA2_NONE=1
  for v in "${BENCH_VARIANTS[@]}"; do
    # shellcheck disable=SC2086
    bench_rows "${v%%:*}" ${v#*:}
  done
  ZAMBA2_PROFILE=1 timeout 120 kernels/build/bench-engine 1.2b 2>&1 |
    grep -E "^profile (prefill 2048|decode b1|decode b64)" >> "$out/bench.txt"
  cat "$out/bench.txt"
fi

if has presets; then
  stage "bench-engine 2.7b, 7b (defaults)"
  for p in 2.7b 7b; do
    timeout 150 kernels/build/bench-engine $p 2>&1 | grep -E "^(preset|prefill|decode) " | sed "s/^/$p | /" | tee -a "$out/bench-presets.txt"
  done
fi

if has skinny; then
  stage "skinny_gemm benchmark"
  ZK_BENCH_SKINNY=1 ZK_TEST_ONLY=skinny timeout 300 kernels/build/test-kernels > "$out/skinny-bench.txt" 2>&1 || status=1
  sed -n '/^skinny bench M=1/,$p' "$out/skinny-bench.txt" | grep -vE "^(ok|PASS)" | head -60
fi

if has timeline; then
  stage "timeline: b1 decode steps (ZK_TIMELINE build)"
  if JOBS=16 ZK_ARCHS="-gencode=arch=compute_90a,code=sm_90a" timeout 300 bash kernels/build.sh --timeline > "$out/build-tl.txt" 2>&1; then
    # one summary file for all runs (few files come back); each run's CSVs kept as <label>-timeline-b<batch>.csv
    tmp="$(mktemp -d)"; : > "$out/timeline.txt"
    for v in "defaults:ZAMBA2_NONE=1" "${BENCH_VARIANTS[@]}"; do
      label="${v%%:*}"; rm -f "$tmp"/*.csv
      # shellcheck disable=SC2086
      env ${v#*:} ZAMBA2_TIMELINE_DIR="$tmp" ZAMBA2_BENCH_PREFILL=none ZAMBA2_BENCH_BATCHES="${TIMELINE_BATCHES:-1}" \
        timeout 120 kernels/build-tl/bench-engine 1.2b > "$tmp/bench.txt" 2>&1 || { status=1; tail -3 "$tmp/bench.txt"; }
      for f in "$tmp"/timeline-b*.csv; do
        [ -f "$f" ] || continue
        { echo "-- $label $(basename "$f" .csv)"; python3 kernels/dev/timeline_summary.py "$f"; } | tee -a "$out/timeline.txt"
        cp "$f" "$out/${label//[^A-Za-z0-9]/_}-$(basename "$f")"
      done
    done
  else
    echo "TIMELINE BUILD FAILED"; tail -20 "$out/build-tl.txt"; status=1
  fi
fi

if has ncu; then
  stage "ncu: kernel time per decode step (graphs off)"
  for b in 1 64; do
    # skip the prefill steps and the first decode steps; 1500 launches = several decode steps
    ZAMBA2_NO_GRAPHS=1 ZAMBA2_BENCH_PREFILL=none ZAMBA2_BENCH_BATCHES=$b timeout 150 \
      ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
      --print-kernel-base function --launch-skip 6000 --launch-count 1500 kernels/build/bench-engine 1.2b \
      > "$out/ncu-b$b.csv" 2> "$out/ncu-b$b.err"
    echo "-- decode b$b"
    python3 kernels/dev/ncu_summary.py "$out/ncu-b$b.csv" | head -24 | tee "$out/ncu-b$b.txt"
  done
fi

if has sanitize; then
  stage "compute-sanitizer memcheck"
  timeout 150 compute-sanitizer --tool memcheck --print-limit 10 kernels/build/test-kernels 777 > "$out/sanitizer.txt" 2>&1 || status=1
  grep -E "ERROR SUMMARY|Invalid|kernel checks" "$out/sanitizer.txt" | head -10
fi

if has e2e; then
  stage "e2e: 1.2B random checkpoint, server --device cuda, many-streams x64"
  e2e_env=()
  for f in "${passing_flags[@]}"; do [ "$f" = ZAMBA2_SSD=1 ] && e2e_env+=("$f"); done
  echo "server fast paths (passed the goldens): ${e2e_env[*]:-none}"
  timeout 150 node dist/main.js make-checkpoint --preset zamba2-1.2b --out /tmp/ck12 2>&1 | tail -3 || status=1
  port=8123
  env "${e2e_env[@]}" ZAMBA2_NONE=1 node dist/main.js --device cuda --model /tmp/ck12 --port $port --max-num-seqs 64 \
    --log-level warn > "$out/server.txt" 2>&1 &
  server_pid=$!
  up=0; server_up $port $server_pid && up=1
  echo "server up=$up after +$(($(date +%s) - t_start))s"
  if [ $up = 1 ]; then
    timeout 180 node dist/bench/cli.js --workload many-streams --url "http://127.0.0.1:$port" --concurrency 64 \
      --num-requests 256 --max-tokens 64 --prompt-tokens 128 --out "$out/e2e-many-streams.json" 2>&1 | tee "$out/e2e.txt" | tail -25 || status=1
    # the engine steps' share of the run: steps, their summed wall time, tokens by kind (server's /metrics)
    node -e "fetch('http://127.0.0.1:$port/metrics').then((r) => r.text()).then((t) => console.log(t))" > "$out/e2e-metrics.txt" 2>&1
    grep -E "^zamba2_(step_duration_seconds_(sum|count)|step_tokens_total)" "$out/e2e-metrics.txt"
  else
    status=1; tail -20 "$out/server.txt"
  fi
  kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null
  # the engine's own notices (FP8 copies or merged decode weights skipped for memory): none expected on the H200
  grep -E "zamba2 cuda:" "$out/server.txt" | head -5 || true
fi

if has rate; then
  stage "rate: Poisson arrivals at ${RATE_RPS:-80} req/s, server --device cuda (1.2B random)"
  [ -f /tmp/ck12/config.json ] || timeout 150 node dist/main.js make-checkpoint --preset zamba2-1.2b --out /tmp/ck12 2>&1 | tail -1
  IFS=';' read -r -a RATE_VARIANTS <<< "${RATE_VARIANTS:-defaults:ZAMBA2_NONE=1;mixed as SSD chunks:ZAMBA2_MIXED_STEP=0}"
  port=8124
  for v in "${RATE_VARIANTS[@]}"; do
    label="${v%%:*}"; tag="${label//[^A-Za-z0-9]/_}"
    # shellcheck disable=SC2086
    env ${v#*:} node dist/main.js --device cuda --model /tmp/ck12 --port $port --max-num-seqs 64 --log-level warn \
      > "$out/rate-server-$tag.txt" 2>&1 &
    server_pid=$!
    up=0; server_up $port $server_pid && up=1
    if [ $up = 1 ]; then
      timeout 120 node dist/bench/cli.js --workload rate-sweep --rates "${RATE_RPS:-80}" --num-requests 240 --max-tokens 64 \
        --prompt-tokens 128 --url "http://127.0.0.1:$port" --out "$out/rate-$tag.json" > "$out/rate-$tag.txt" 2>&1 || status=1
      echo "-- $label: $(grep -E "requests ok|requests/s|output tokens/s|TTFT p50|TTFT p99|TPOT p50|TPOT p99" "$out/rate-$tag.txt" | tr -s ' ' | paste -sd' ')"
    else
      status=1; tail -5 "$out/rate-server-$tag.txt"
    fi
    kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null
  done
fi

if has hf; then
  stage "transformers baseline (torch bf16, random 1.2B from config)"
  PYTHONUNBUFFERED=1 timeout 100 python3 kernels/dev/hf_baseline.py config/models/zamba2-1.2b.json 60 2>&1 | grep -vi warn | tee "$out/hf.txt" | tail -8
fi

stage summary
grep -E "kernel checks" "$out/kernel-tests.txt" 2>/dev/null
grep -E "ERROR SUMMARY" "$out/sanitizer.txt" 2>/dev/null | head -1
cat "$out/golden-summary.txt" 2>/dev/null
grep -E "^defaults \|" "$out/bench.txt" 2>/dev/null
cat "$out/bench-presets.txt" 2>/dev/null
grep -vE "^(defaults|profile) " "$out/bench.txt" 2>/dev/null | grep -E "decode b(1|64) |prefill 2048"
grep -E "^hf " "$out/hf.txt" 2>/dev/null
echo "device-run status $status, $(($(date +%s) - t_start))s"
exit $status

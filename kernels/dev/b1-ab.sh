#!/usr/bin/env bash
# The b1 row of bench-engine 1.2b alone (no prefill rows, batch 1 only), alternating between variants REPS times (3):
# the same-call comparison the b1 decisions rest on (kernels/notes/runs-104-.md). A variant is "label:ENV=V ENV=V"
# (environment for kernels/build/bench-engine; "label:" for the defaults) or "label@PATH" (another build of
# bench-engine, e.g. the last commit's, built beside the tree's).
# Usage (repo root, on the GPU machine, after a build):
#   REPS=3 bash kernels/dev/b1-ab.sh "tree:" "no down:ZAMBA2_PERSIST_DOWN=0" "head@/tmp/head/bench-engine"
set -uo pipefail
cd "$(dirname "$0")/../.."
for i in $(seq 1 "${REPS:-3}"); do
  for v in "$@"; do
    if [[ "$v" == *@* ]]; then bin="${v#*@}"; label="${v%%@*}"; envs=(); else bin=kernels/build/bench-engine; label="${v%%:*}"; read -r -a envs <<< "${v#*:}"; fi
    row=$(env "${envs[@]}" ZAMBA2_BENCH_PREFILL=none ZAMBA2_BENCH_BATCHES=1 timeout 120 "$bin" 1.2b 2>&1 | grep -E '^decode b1 ')
    echo "b1 $label ($i): ${row:-failed}"
  done
done

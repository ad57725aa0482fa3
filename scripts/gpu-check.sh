#!/usr/bin/env bash
# The whole GPU check, run on a machine with an NVIDIA GPU and the CUDA driver/toolkit (no Rust
# needed): the differential suite (every op and protocol, CUDA vs the CPU oracle, bit for bit),
# then the benchmarks. Results (JSON + logs) go to $OUT, or ./gpu-results.
# Build the bundle first on any machine with Rust: bash scripts/gpu-bundle.sh
#
# Stages (arguments; default: check bench):
#   check   selftest, ring GEMM paths, a 4096^3 private matmul
#   bench   relu conv train infer, below
#   relu | conv | train | infer
#           the paper's Fig. 2 / Fig. 1 / Table V / inference on GPU and CPU (--backend both),
#           JSON and plots in $OUT/bench (inference: $OUT/bench/infer-batch1 on both devices at
#           batch 1, $OUT/bench/infer-cuda on the GPU at batch 1 and 64). Each takes a few
#           minutes; run them as separate commands where a command's time is limited.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=target/gpu-bundle/cryptgpu
out=${OUT:-gpu-results}
mkdir -p "$out"
[ -x "$bin" ] || { echo "missing $bin: run scripts/gpu-bundle.sh first" >&2; exit 2; }

# Make the CUDA libraries findable by the run-time loader (cudarc dlopens them).
dirs=""
for lib in libcuda.so libnvrtc.so libcublas.so libcublasLt.so; do
  for base in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
              /usr/lib/x86_64-linux-gnu /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib \
              /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib; do
    if ls "$base"/$lib* >/dev/null 2>&1; then
      case ":$dirs:" in *":$base:"*) ;; *) dirs="$dirs:$base" ;; esac
      break
    fi
  done
done
export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log="$out/run.log"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" | tee "$log"

gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)
cuda=$(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' | head -1)
nvidia-smi -q > "$out/nvidia-smi-q.txt" 2>&1
printf '{"date_utc":"%s","gpu":"%s","cuda":"%s","bundle":%s}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$gpu" "$cuda" \
  "$(cat target/gpu-bundle/bundle-info.json 2>/dev/null || echo null)" > "$out/meta.json"
cat "$out/meta.json" | tee -a "$log"

status=0
run() { # name, then the command; keeps the JSON line, logs everything
  local name=$1; shift
  echo "== $name: $*" | tee -a "$log"
  local t0=$SECONDS
  if "$@" > "$out/$name.out" 2>> "$log"; then :; else status=1; echo "!! $name failed" | tee -a "$log"; fi
  tail -n 40 "$out/$name.out" >> "$log"
  tail -n 1 "$out/$name.out" > "$out/$name.json"
  rm -f "$out/$name.out"
  echo "   ($((SECONDS - t0)) s)" | tee -a "$log"
}
# A stage's own time limit (seconds): one stage per device call fits its 10-minute limit.
limit=${BENCH_TIMEOUT:-540}
bench=(--reps 3 --json)
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(check bench)
i=0
while [ $i -lt ${#stages[@]} ]; do
  stage=${stages[$i]}
  i=$((i + 1))
  case $stage in
    check)
      run selftest "$bin" selftest --backend cuda --json
      run bench_gemm_cuda "$bin" bench gemm --backend cuda --size 4096 --json
      run bench_gemm_cpu "$bin" bench gemm --backend cpu --size 2048 --reps 3 --json
      run matmul_cuda "$bin" matmul --m 4096 --k 4096 --n 4096 --backend cuda --json
      ;;
    bench) stages+=(relu conv train infer) ;;
    relu) run bench_relu timeout "$limit" "$bin" bench relu --backend both --point-budget 20 "${bench[@]}" --out "$out/bench" ;;
    conv) run bench_conv timeout "$limit" "$bin" bench conv --backend both --point-budget 20 "${bench[@]}" --out "$out/bench" ;;
    train) run bench_train timeout "$limit" "$bin" bench train --backend both --point-budget 60 "${bench[@]}" --out "$out/bench" ;;
    infer)
      run bench_infer_batch1 timeout "$((limit / 2))" "$bin" bench infer --backend both --batch 1 --point-budget 30 "${bench[@]}" \
        --out "$out/bench/infer-batch1"
      run bench_infer_cuda timeout "$((limit / 2))" "$bin" bench infer --backend cuda --point-budget 30 "${bench[@]}" \
        --out "$out/bench/infer-cuda"
      ;;
    *) echo "unknown stage $stage (check, bench, relu, conv, train, infer)" >&2; status=2 ;;
  esac
done
echo "exit status $status" | tee -a "$log"
exit $status

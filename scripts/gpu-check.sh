#!/usr/bin/env bash
# The whole GPU check, run on a machine with an NVIDIA GPU and the CUDA driver/toolkit (no Rust
# needed): the differential suite (every op and protocol, CUDA vs the CPU oracle, bit for bit),
# then the benchmarks. Results (JSON + logs) go to $OUT, or ./gpu-results.
# Build the bundle first on any machine with Rust: bash scripts/gpu-bundle.sh
#
# Stages (arguments; default: check bench):
#   first   the first contact, 6 minutes in all (FIRST_BUDGET seconds; each step's own budget is
#           below, cut to what is left): quick selftest, ring GEMM paths at 4096^3 with the
#           fraction of peak, GPU-only points (ReLU, one training iteration, batch-1 inference;
#           the last two unshaped and over the LAN link model, VGG-16's training unshaped only),
#           then LeNet and ReLU on this machine's CPU for the speedup. Each step writes its JSON
#           line to $OUT/first/<step>.json as soon as it ends; progress goes to $OUT/run.log.
#   check   selftest, ring GEMM paths, a 4096^3 private matmul
#   bench   relu conv train infer train-wan infer-wan, below
#   relu | conv | train | infer
#           the paper's Fig. 2 / Fig. 1 / Table V / inference on GPU and CPU (--backend both),
#           JSON and plots in $OUT/bench (inference: $OUT/bench/infer-batch1 on both devices at
#           batch 1, $OUT/bench/infer-cuda on the GPU at batch 1 and 64); train and infer
#           unshaped and over the LAN link model. Each takes a few minutes; run them as separate
#           commands where a command's time is limited.
#   train-wan | infer-wan
#           Table V / batch-1 inference on the GPU over the WAN link model, one repetition, in
#           $OUT/bench/train-wan and $OUT/bench/infer-wan.
set -uo pipefail
cd "$(dirname "$0")/.."
# Overrides, to test this script without a GPU: GPU_CHECK_BIN (the binary), GPU_CHECK_BACKEND
# (the backend of the GPU steps, e.g. cpu).
bin=${GPU_CHECK_BIN:-target/gpu-bundle/cryptgpu}
gpu_backend=${GPU_CHECK_BACKEND:-cuda}
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

gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
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
  if "$@" > "$out/$name.out" 2>> "$log"; then :; else
    local rc=$?; status=1
    echo "!! $name failed (exit $rc$([ $rc -eq 124 ] || [ $rc -eq 137 ] && echo ', timed out'))" | tee -a "$log"
  fi
  tail -n 40 "$out/$name.out" >> "$log"
  tail -n 1 "$out/$name.out" | grep '^{' > "$out/$name.json" || rm -f "$out/$name.json"
  rm -f "$out/$name.out"
  echo "   ($((SECONDS - t0)) s)" | tee -a "$log"
}
# step NAME BUDGET ARGS...: `run` under `timeout`, the budget cut to what is left before the stage's
# deadline (skipped, and counted as failed, with under 5 s left).
step() {
  local name=$1 budget=$2; shift 2
  local left=$((deadline - SECONDS))
  [ "$budget" -le "$left" ] || budget=$left
  if [ "$budget" -lt 5 ]; then
    status=1; echo "!! $name skipped: the stage's time is spent" | tee -a "$log"; return
  fi
  run "$name" timeout -k 5 "$budget" "$@"
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
    first)
      # Budgets in seconds, 350 of the 360 (FIRST_BUDGET); one point per command, so that a cut-off
      # step loses only its own point. Peaks behind the GEMM fractions: NVIDIA's H200 datasheet,
      # FP64 tensor core 67 TFLOP/s, INT8 tensor core 1,979 TOP/s dense (3,958 with sparsity).
      deadline=$((SECONDS + ${FIRST_BUDGET:-360}))
      mkdir -p "$out/first"
      pts=(--reps 3 --warmup 1 --json)
      on_gpu=(--backend "$gpu_backend")
      step first/selftest_quick 40 "$bin" selftest "${on_gpu[@]}" --quick --json
      step first/gemm_4096 40 "$bin" bench gemm "${on_gpu[@]}" --size 4096 --reps 3 --json
      for p in 1000000:12 8000000:13 32000000:20; do
        step "first/relu_${p%%:*}_gpu" "${p#*:}" "$bin" bench relu "${on_gpu[@]}" --points "${p%%:*}" \
          --point-budget 8 "${pts[@]}"
      done
      # The paper's batches: LeNet (MNIST) 128, AlexNet and VGG-16 (CIFAR-10) 128 and 32. Each
      # point unshaped and over the LAN model (the paper's setting), except VGG-16's training,
      # whose LAN run alone moves about 1.8 GB per link (3 s at 5 Gbit/s per repetition).
      lan=(--net none --net lan)
      for m in lenet-mnist:25:lan alexnet-cifar10:40:lan vgg16-cifar10:70:none; do
        IFS=: read -r id budget links <<< "$m"
        nets=(--net none); [ "$links" = lan ] && nets=("${lan[@]}")
        step "first/train_${id}_gpu" "$budget" "$bin" bench train "${on_gpu[@]}" --only "$id" \
          --point-budget 15 "${nets[@]}" "${pts[@]}"
      done
      for m in lenet-mnist:10 alexnet-cifar10:12 vgg16-cifar10:18; do
        step "first/infer_b1_${m%%:*}_gpu" "${m#*:}" "$bin" bench infer "${on_gpu[@]}" --batch 1 --only "${m%%:*}" \
          --point-budget 5 "${lan[@]}" "${pts[@]}"
      done
      on_cpu=(--backend cpu)
      step first/train_lenet-mnist_cpu 30 "$bin" bench train "${on_cpu[@]}" --only lenet-mnist \
        --point-budget 15 "${pts[@]}"
      step first/infer_b1_lenet-mnist_cpu 8 "$bin" bench infer "${on_cpu[@]}" --batch 1 --only lenet-mnist \
        --point-budget 5 "${pts[@]}"
      step first/relu_1000000_cpu 12 "$bin" bench relu "${on_cpu[@]}" --points 1000000 --point-budget 8 "${pts[@]}"
      ;;
    check)
      run selftest "$bin" selftest --backend cuda --json
      run bench_gemm_cuda "$bin" bench gemm --backend cuda --size 4096 --json
      run bench_gemm_cpu "$bin" bench gemm --backend cpu --size 2048 --reps 3 --json
      run matmul_cuda "$bin" matmul --m 4096 --k 4096 --n 4096 --backend cuda --json
      ;;
    bench) stages+=(relu conv train infer train-wan infer-wan) ;;
    relu) run bench_relu timeout "$limit" "$bin" bench relu --backend both --point-budget 20 "${bench[@]}" --out "$out/bench" ;;
    conv) run bench_conv timeout "$limit" "$bin" bench conv --backend both --point-budget 20 "${bench[@]}" --out "$out/bench" ;;
    train) run bench_train timeout "$limit" "$bin" bench train --backend both --point-budget 60 --net none --net lan \
      "${bench[@]}" --out "$out/bench" ;;
    infer)
      run bench_infer_batch1 timeout "$((limit / 2))" "$bin" bench infer --backend both --batch 1 --point-budget 30 \
        --net none --net lan "${bench[@]}" --out "$out/bench/infer-batch1"
      run bench_infer_cuda timeout "$((limit / 2))" "$bin" bench infer --backend cuda --point-budget 30 \
        --net none --net lan "${bench[@]}" --out "$out/bench/infer-cuda"
      ;;
    # The WAN model's rounds cost 35 ms each: the GPU only, one repetition, a stage of its own.
    train-wan) run bench_train_wan timeout "$limit" "$bin" bench train --backend cuda --point-budget 60 --net wan \
      --reps 1 --json --out "$out/bench/train-wan" ;;
    infer-wan) run bench_infer_wan timeout "$limit" "$bin" bench infer --backend cuda --batch 1 --point-budget 30 \
      --net wan --reps 1 --json --out "$out/bench/infer-wan" ;;
    *) echo "unknown stage $stage (first, check, bench, relu, conv, train, infer, train-wan, infer-wan)" >&2; status=2 ;;
  esac
done
echo "exit status $status" | tee -a "$log"
exit $status

#!/usr/bin/env bash
# Device half, step 1 (started in the background by the first device call):
# install the carried wheels and build llama-cpp-python + llama-server with CUDA (sm_90), the
# recipe of benchmarks/gpu_llamacpp/device.sh. Writes /tmp/gemma-run/build.rc when done.
#
#   setsid nohup bash benchmarks/gemma_device/device.sh build > /tmp/gemma-run/build.log 2>&1 &
#   setsid nohup bash benchmarks/gemma_device/device.sh run   > /tmp/gemma-run/run.log 2>&1 &
set -u
step=${1:-build}
repo=$(cd "$(dirname "$0")/../.." && pwd)
run=/tmp/gemma-run
site=/tmp/site
mkdir -p "$run"
started=$(date +%s)
stamp() { echo "[$(($(date +%s) - started)) s] $*"; }

if [ "$step" = build ]; then
  stamp "gpu: $(nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv,noheader)"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$repo"/.device/gpu_llamacpp/wheels/*.whl "$repo"/.device/gemma/wheels/*.whl \
    || { stamp "wheel install failed"; echo 1 >"$run/build.rc"; exit 1; }
  mkdir -p /tmp/gemma-data /tmp/gemma-parts
  cp "$repo"/.device/gemma/*.jsonl /tmp/gemma-data/
  cp "$repo"/.device/gemma/base.* /tmp/gemma-parts/ 2>/dev/null
  mkdir -p /tmp/src && tar xzf "$repo"/.device/gpu_llamacpp/llama_cpp_python-*-stripped.tar.gz -C /tmp/src
  src=$(ls -d /tmp/src/llama_cpp_python-*)
  echo "$src" >"$run/src"
  stamp "building llama-cpp-python (CUDA, sm_90)"
  (cd "$src" && CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=16 python3 -m pip install --no-build-isolation --no-deps \
    --no-cache-dir --target "$site" -C build-dir=/tmp/skbuild . >"$run/build-python.log" 2>&1)
  rc=$?
  stamp "llama-cpp-python build exit $rc"
  cmake /tmp/skbuild -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF >"$run/build-server.log" 2>&1 &&
    cmake --build /tmp/skbuild --target llama-server llama-batched-bench -j 16 >>"$run/build-server.log" 2>&1
  src_rc=$?
  stamp "llama-server build exit $src_rc: $(find /tmp/skbuild -name llama-server -type f | head -1)"
  echo "$rc $src_rc" >"$run/build.rc"
  exit 0
fi

# step run: assemble the base, fine-tune (LoRA and full, at once on the one GPU), then serve.
# A private copy of the code: the tool re-syncs the working tree at each call.
code=/tmp/gemma-code
rm -rf "$code" && mkdir -p "$code" && cp -r "$repo/tui" "$repo/backends" "$repo/benchmarks" "$code/"
repo=$code
export PYTHONPATH=$site:$repo PYTHONUNBUFFERED=1 TRIAGEDESK_HOME=$run/home
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
(cd /tmp/gemma-parts && cat base.part0 base.rest0 base.rest1 base.rest2 base.rest3) \
  >"$run/gemma-3-270m-q4_k_m.gguf"
sum=$(sha256sum "$run/gemma-3-270m-q4_k_m.gguf" | cut -d' ' -f1)
stamp "base: $sum"
[ "$sum" = a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 ] ||
  { stamp "base checksum mismatch"; touch "$run/done"; exit 1; }
src=$(cat "$run/src")
data=/tmp/gemma-data
# RUNS: fine-tunes side by side on the one GPU, each "method:learning-rate:epochs"; only the
# first measures the base zero-shot (the same figure for all).
RUNS=${RUNS:-"lora:2e-4:3 full:2e-5:2"}
i=0
for spec in $RUNS; do
  IFS=: read -r method lr epochs <<<"$spec"
  name=ft$i-$method; zero=--zero-shot; [ $i -gt 0 ] && zero=--no-zero-shot
  (cd "$run" && /usr/bin/time -v python3 -m tui --db "$run/$name.db" finetune \
    --base "$run/gemma-3-270m-q4_k_m.gguf" --data "$data/train80.jsonl" \
    --validation "$data/test20.jsonl" --out "$run/$name" --device cuda --method "$method" \
    --epochs "$epochs" --learning-rate "$lr" --batch-size "${BATCH:-32}" --converter "$src" \
    --name "$name" $zero >"$run/finetune-$name.out" 2>"$run/finetune-$name.log"
    echo $? >"$run/finetune-$name.rc") &
  i=$((i + 1))
done
wait
stamp "fine-tunes done: $(cat "$run"/finetune-*.rc | tr '\n' ' ')"
for i in $(seq 1 120); do [ -f "$run/build.rc" ] && break; sleep 5; done
stamp "build: $(cat "$run/build.rc" 2>/dev/null)"
server=$(find /tmp/skbuild -name llama-server -type f | head -1)
batched=$(find /tmp/skbuild -name llama-batched-bench -type f | head -1)
# the best fine-tune by its validation line, then the others
best=$(grep -H "validated:" "$run"/finetune-ft*.log | sed 's/.*finetune-\(ft[0-9]*-[a-z]*\).log:.*validated: \([0-9.]*\)%.*/\2 \1/' | sort -rn | head -1 | cut -d' ' -f2)
stamp "best: $best"
echo "$best" >"$run/best.txt"
gguf=$run/$best/model-q8_0.gguf
if [ -n "$batched" ] && [ -f "$gguf" ]; then
  timeout 120 "$batched" -m "$gguf" -ngl 999 -c 16384 -npp 24 -ntg 8 -npl 1,8,32,64 \
    >"$run/batched-bench.txt" 2>"$run/batched-bench.log"
  stamp "batched-bench: $?"
fi
serve() {  # serve GGUF SUFFIX [server flags...]: free-text greedy through llama-server
  local file=$1 tag=$2; shift 2
  "$server" -m "$file" --port 8092 --host 127.0.0.1 -ngl 999 -np 64 -c 16384 "$@" >"$run/server-$tag.log" 2>&1 &
  local pid=$!
  for i in $(seq 1 120); do curl -s -m 1 127.0.0.1:8092/health | grep -q ok && break; sleep 0.5; done
  timeout 200 python3 "$repo/benchmarks/gemma_device/serve_free.py" --tickets "$data/test20.jsonl" \
    --port 8092 --runs 1:200 8:500 64:2001 >"$run/serve-$tag.jsonl" 2>"$run/serve-$tag.err"
  stamp "served $tag: $?"
  kill "$pid"; wait "$pid" 2>/dev/null
}
if [ -f "$gguf" ]; then
  serve "$gguf" "$best-bs" -bs
  (cd "$run" && timeout 300 python3 "$repo/benchmarks/gemma_device/local_bench.py" --gguf "$gguf" \
    --tickets "$data/test20.jsonl" --scoring constrained --runs 1:200 8:500 64:2001 \
    >"$run/local-$best-constrained.jsonl" 2>"$run/local-$best-constrained.err")
  stamp "in-process constrained $best: $?"
  serve "$gguf" "$best"
fi
for dir in "$run"/ft*-*; do
  name=$(basename "$dir"); [ "$name" = "$best" ] && continue
  [ -f "$dir/model-q8_0.gguf" ] || continue
  (cd "$run" && timeout 200 python3 "$repo/benchmarks/gemma_device/local_bench.py" \
    --gguf "$dir/model-q8_0.gguf" --tickets "$data/test20.jsonl" --scoring constrained \
    --runs 64:2001 >"$run/local-$name-constrained.jsonl" 2>"$run/local-$name-constrained.err")
  stamp "in-process constrained $name: $?"
done
if [ -f "$gguf" ]; then
  (cd "$run" && timeout 240 python3 "$repo/benchmarks/gemma_device/local_bench.py" --gguf "$gguf" \
    --tickets "$data/test20.jsonl" --scoring full --runs 1:100 \
    >"$run/local-$best-full.jsonl" 2>"$run/local-$best-full.err")
  stamp "in-process full $best: $?"
fi
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu,clocks.sm --format=csv,noheader >"$run/gpu.txt"
touch "$run/done"
stamp "all done"

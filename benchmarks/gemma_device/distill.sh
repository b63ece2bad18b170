#!/usr/bin/env bash
# Device half for run 11: mpnet-base teachers' soft labels, then the Gemma fine-tunes on them.
#
# The first call starts `device.sh build` and this script in the background; every call
# copies its carried stream parts (.device/stream/part.NN) into /tmp/stream. The stream is
# the teacher folder's tar (all-mpnet-base-v2 in fp16) then the base GGUF, cut into pieces;
# .device/stream/sizes says how long each is. This script
#   1. waits for the teacher's bytes, untars them, trains three mpnet-base teachers on the
#      80 % (benchmarks.teacher_device, 8 epochs, seeds side by side) and writes their mean
#      distribution at T=2 over the 80 % and its perturbed copies (soft.npy);
#   2. joins it to the texts as `label_probs` (soft_data.py): /tmp/gemma-data/train80soft.jsonl;
#   3. waits for the whole GGUF, puts it where device.sh expects its parts, and starts
#      `device.sh run` with $RUNS.
#
#   setsid nohup bash benchmarks/gemma_device/distill.sh > /tmp/gemma-run/distill.log 2>&1 &
set -u
repo=$(cd "$(dirname "$0")/../.." && pwd)
run=/tmp/gemma-run
stream=/tmp/stream
site=/tmp/site
mkdir -p "$run" "$stream" /tmp/gemma-parts
cp "$repo/.device/stream/sizes" "$stream/sizes"
read -r teacher_bytes gguf_bytes <"$stream/sizes"
code=/tmp/distill-code
rm -rf "$code" && mkdir -p "$code" && cp -r "$repo/tui" "$repo/backends" "$repo/benchmarks" "$code/"
started=$(date +%s)
stamp() { echo "[$(($(date +%s) - started)) s] $*"; }
have() { cat "$stream"/part.* 2>/dev/null | wc -c; }

until [ "$(have)" -ge "$teacher_bytes" ]; do sleep 2; done
stamp "teacher bytes here"
cat "$stream"/part.* | head -c "$teacher_bytes" | tar x -C /tmp
until [ -f "$run/build.rc" ] || ls "$site"/transformers >/dev/null 2>&1; do sleep 2; done
export PYTHONPATH=$site:$code PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
data=/tmp/gemma-data
until [ -f "$data/aug.jsonl" ]; do sleep 1; done
teach() {  # teach PYTHONPATH: the carried transformers first, the machine's own if that fails
  (cd "$code" && PYTHONPATH=$1 python3 -m benchmarks.teacher_device --data "$data/train.jsonl" \
    --model /tmp/teacher --out "$run/teacher" --seeds 3 --epochs 8 --transfer "$data/aug.jsonl" \
    >"$run/teacher.out" 2>"$run/teacher.err")
}
teach "$PYTHONPATH" || { stamp "teachers failed: $(tail -c 400 "$run/teacher.err")"; teach "$code"; }
stamp "teachers: $? $(tail -c 600 "$run/teacher.out")"
(cd "$code" && python3 benchmarks/gemma_device/soft_data.py --train "$data/train80.jsonl" \
  --transfer "$data/aug.jsonl" --soft "$run/teacher/soft.npy" --out "$data/train80soft.jsonl" \
  --logits "$run/teacher/teacher_logits.npz" --test "$data/test20.jsonl" >"$run/soft_data.out" 2>&1)
stamp "soft data: $? $(cat "$run/soft_data.out")"

total=$((teacher_bytes + gguf_bytes))
until [ "$(have)" -ge "$total" ]; do sleep 2; done
cat "$stream"/part.* | tail -c +"$((teacher_bytes + 1))" >/tmp/gemma-parts/blob.0
stamp "base bytes here: $(wc -c </tmp/gemma-parts/blob.0)"
until [ -f "$run/build.rc" ]; do sleep 2; done
stamp "build: $(cat "$run/build.rc")"
cd "$repo" && RUNS=${RUNS:?} ZERO_SHOT=0 bash benchmarks/gemma_device/device.sh run >"$run/run.log" 2>&1
stamp "run done"

"""A real child process that speaks `triagedesk finetune --progress json` on a script, for the
background-job tests that need progress without torch (CI).

    python scripted_finetune_child.py MODE [triagedesk arguments ...]

It reads `--out DIR` from the arguments it is given (the job passes the real CLI's), writes a
partial file there as a real run would, and prints: a garbage line, a cut JSON line, a stage
line, a wrong-typed step, then steps 1..3 of 40. Then by MODE: `hang` starts a grandchild
(`sleep`, its pid in DIR/grandchild.pid) and sleeps (for cancel tests); `lie` exits 0 with a
`done` line but no backend.toml; `fail` prints an error line and exits 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def say(obj: object) -> None:
    print(obj if isinstance(obj, str) else json.dumps(obj), flush=True)


def main() -> int:
    mode, argv = sys.argv[1], sys.argv[2:]
    out = Path(argv[argv.index("--out") + 1])
    out.mkdir(parents=True)
    (out / "model-q8_0.gguf").write_bytes(b"GGUF partial")
    if mode == "hang":
        child = subprocess.Popen(["sleep", "60"])
        (out / "grandchild.pid").write_text(str(child.pid))
    say("Loading checkpoint shards: 100%|####| [not JSON]")
    say('{"event": "step", "step": 1, "tot')
    say({"event": "stage", "phase": "training"})
    say({"event": "step", "step": "two", "total": 40, "loss": 1.0, "elapsed_s": 1, "eta_s": 1})
    for step in (1, 2, 3):
        loss = 2.0 / step
        say(
            {
                "event": "step",
                "phase": "training",
                "step": step,
                "total": 40,
                "loss": loss,
                "elapsed_s": step * 0.5,
                "eta_s": (40 - step) * 0.5,
            }
        )
    if mode == "hang":
        time.sleep(60)
        return 0
    if mode == "lie":
        say(
            {
                "event": "done",
                "out": str(out.resolve()),
                "backend": "x",
                "backend_toml": str(out / "backend.toml"),
                "validation_accuracy": 1.0,
                "gguf_validation_accuracy": 1.0,
                "zero_shot_accuracy": None,
                "steps": 3,
                "total_seconds": 1.0,
            }
        )
        return 0
    say({"event": "error", "message": "the base model went away", "exit": 2})
    print("triagedesk: error: the base model went away", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

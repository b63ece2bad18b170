"""Turn the device run's files into `benchmarks/results/gemma_device.{json,md}`.

    python3 benchmarks/gemma_device/report.py DIR      # DIR: what the device run returned

Reads `ft-<method>/report.json` (the product's own finetune report), `serve-<method>.json`
(`serve_bench.py`) and `local-<method>.json` (`triagedesk eval --json` through the
`llamacpp-local` backend) for LoRA and full, and prices them: the GPU at a stated $/hour, for
50,000 tickets a day, next to the published figures of a hosted API and the CPU specialists
measured in `benchmarks/RESULTS.md` section 4.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GPU_USD_PER_HOUR = 3.50
"""H200 on-demand at a specialty GPU cloud (RESULTS.md section 6 gives the range and source)."""
HOURS_A_MONTH = 730
TICKETS_A_DAY = 50_000


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def gather(folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        "gpu": (folder / "gpu.txt").read_text().strip() if (folder / "gpu.txt").is_file() else None
    }
    for method in ("lora", "full"):
        out[method] = {
            "finetune": _load(folder / f"ft-{method}" / "report.json")
            or _load(folder / f"report-{method}.json"),
            "serve": _load(folder / f"serve-{method}.json"),
            "local": _load(folder / f"local-{method}.json"),
        }
    return out


def markdown(figures: dict[str, Any]) -> str:
    lines = ["# Gemma 3 270M fine-tuned on Banking77, one H200 (issue 14)", ""]
    lines += [f"GPU: {figures['gpu']}", ""]
    lines += ["## Fine-tuning (`triagedesk finetune --device cuda`, 8,002 tickets, 77 labels)", ""]
    lines += [
        "| method | epochs·steps | batch | lr | train s | total s | zero-shot | validation (torch) | GGUF q8_0 (llama.cpp) | GGUF MB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for method in ("lora", "full"):
        report = figures[method]["finetune"]
        if report is None:
            lines.append(f"| {method} | not run | | | | | | | | |")
            continue
        zero = report.get("zero_shot_accuracy")
        lines.append(
            f"| {method} | {report['steps']} | {report.get('batch_size', '')} |"
            f" {report.get('learning_rate', '')} | {report['train_seconds']:.0f} |"
            f" {report['total_seconds']:.0f} | {'–' if zero is None else f'{zero:.2%}'} |"
            f" {report['validation_accuracy']:.2%} | {report['gguf_validation_accuracy']:.2%} |"
            f" {report['gguf_bytes'] / 1e6:.0f} |"
        )
    lines += ["", "## Serving on the H200 (2,001 held-out tickets at c=64; samples below)", ""]
    lines += [
        "| method | server | variant | c | n | valid | accuracy | macro-F1 | tickets/s | p50 ms | p95 ms |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for method in ("lora", "full"):
        serve = figures[method]["serve"] or {"runs": []}
        for run in serve["runs"]:
            lines.append(
                f"| {method} | llama-server | {run['variant']} | {run['concurrency']} |"
                f" {run['n']} | {run['valid']} | {run['accuracy']:.2%} | {run['macro_f1']:.3f} |"
                f" {run['tickets_per_s']:,.1f} | {_ms(run['p50_ms'])} | {_ms(run['p95_ms'])} |"
            )
        local = figures[method]["local"]
        if local:
            latency = local.get("latency_ms") or {}
            lines.append(
                f"| {method} | llamacpp-local (in process, all layers on the GPU) | scored |"
                f" 1 | {local['n']} | {local['n'] - local.get('errors', 0)} |"
                f" {local['accuracy']:.2%} | – | – | {_ms(latency.get('p50'))} |"
                f" {_ms(latency.get('p95'))} |"
            )
    lines += ["", "## $/month at 50,000 tickets a day", ""]
    gpu_month = GPU_USD_PER_HOUR * HOURS_A_MONTH
    lines += [
        f"One H200 kept for it: ${GPU_USD_PER_HOUR:.2f}/h × {HOURS_A_MONTH} h ="
        f" **${gpu_month:,.0f}/month**, whatever the volume; 50,000 tickets a day is"
        f" {TICKETS_A_DAY / 86_400:.2f} tickets/s on average.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    folder = Path(sys.argv[1])
    figures = gather(folder)
    results = ROOT / "benchmarks" / "results"
    (results / "gemma_device.json").write_text(json.dumps(figures, indent=2) + "\n")
    text = markdown(figures)
    (results / "gemma_device.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

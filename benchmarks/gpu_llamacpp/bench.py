"""triagedesk through llama.cpp on one GPU, measured for real (issue 8). The one entry point.

Four steps, two here and two on the device machine (an H200, no network):

    python benchmarks/gpu_llamacpp/bench.py prepare        # here: sdist, wheels, tickets, vocab
    bash benchmarks/gpu_llamacpp/device.sh                 # device: build, then `run` below
    python3 benchmarks/gpu_llamacpp/bench.py run ...       # device: models, servers, evals
    python benchmarks/gpu_llamacpp/bench.py report RESULTS.json   # here: costs, markdown

`run` measures the real CLI, `python3 -m tui eval --store`, through the `llamacpp-local`
backend (in process, n_gpu_layers=-1) and the `openai` backend against llama.cpp's own
`llama-server` (continuous batching over `-np` slots), for each model shape and concurrency,
and reads every decision back from the SQLite file it stored them in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CARRY = REPO / ".device" / "gpu_llamacpp"
"""Git-ignored folder carried to the device: repacked sdist, wheels, tickets, vocabularies."""
DATASET = Path("/work/shared/datasets/bitext_cs_llm_4k5/bitext_cs_llm_4k5.jsonl")

LABELS: dict[str, str] = {
    "account": "Creating, editing, recovering, switching or deleting a customer account",
    "order": "Placing, changing, cancelling or tracking an order",
    "refund": "Asking for a refund, its policy or its status",
    "delivery": "Delivery options and delivery times",
    "invoice": "Getting or checking invoices",
    "feedback": "Complaints about the service and reviews",
    "payment": "Payment methods and payment problems",
    "contact": "Reaching customer service or a human agent",
    "shipping_address": "Setting or changing the shipping address",
    "cancellation_fee": "Fees charged for cancelling",
    "newsletter": "Subscribing to or unsubscribing from the newsletter",
}
"""Bitext's 11 categories as departments, with the descriptions the prompt shows."""

WHEELS = [
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "typing-extensions==4.16.0",
    "platformdirs==4.14.8",
    "sqlite-utils==4.2.1",
    "sqlite-fts4==1.0.3",
    "click-default-group==1.2.4",
    "click==8.5.1",
    "ollama==0.6.3",
    "html2text==2025.4.15",
    "rapidfuzz==3.14.6",
    "diskcache==5.6.3",
    "gguf==0.19.0",
    "fastapi==0.165.0",
    "starlette==1.10.0",
    "uvicorn==0.54.0",
    "sse-starlette==3.7.0",
    "starlette-context==0.5.1",
    "pydantic-settings==2.16.3",
    "python-dotenv==1.2.4",
    "opentelemetry-api==1.45.2",
    "anyio==4.16.0",
    "annotated-doc==0.0.7",
]
"""cp312 wheels of what triagedesk, llama-cpp-python and its server need beyond the device's
image (KINDS.md's package list), pinned to the versions this repository's lock tests with."""

PLATFORMS = ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014", "manylinux1")

REALISTIC_OUTPUT_TOKENS = 12
"""`{"label": "shipping_address", "confidence": 0.93}` is about 12 tokens in a real 32k-128k
tokenizer; per-ticket figures are also given scaled to this answer length."""


# --- prepare (here) -------------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> None:
    """Fill the carried folder: repacked sdist, wheels, eval tickets and vocabularies."""
    sys.path.insert(0, str(HERE))
    import make_gguf
    import repack_sdist

    CARRY.mkdir(parents=True, exist_ok=True)
    tarball = CARRY / f"llama_cpp_python-{repack_sdist.VERSION}-stripped.tar.gz"
    if not tarball.is_file():
        sdist = args.sdist or repack_sdist.download(
            repack_sdist.VERSION, REPO / "benchmarks" / "out" / "sdist"
        )
        repack_sdist.repack(sdist, CARRY)
    wheels = CARRY / "wheels"
    if not wheels.is_dir() or not any(wheels.glob("*.whl")):
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
        command += ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
        for platform in PLATFORMS:
            command += ["--platform", f"{platform}_x86_64"]
        subprocess.run([*command, "-d", str(wheels), *WHEELS], check=True)
    rows = [json.loads(line) for line in args.dataset.read_text().splitlines() if line.strip()]
    sample = random.Random(8).sample(rows, args.n_tickets)
    with (CARRY / "tickets.jsonl").open("w") as out:
        for row in sample:
            label = row["meta"]["category"].lower()
            out.write(json.dumps({"id": row["id"], "text": row["text"], "label": label}) + "\n")
    corpus = [make_gguf.BUILTIN_CORPUS, *LABELS, *LABELS.values()]
    for row in rows:
        corpus += [row["text"], row["meta"].get("response", "")]
    for n_vocab in (32000, 4000):
        vocab = make_gguf.build_vocab(corpus, n_vocab)
        make_gguf.save_vocab(vocab, CARRY / f"vocab-{n_vocab}.json")
    size = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file()) / 2**20
    print(f"{CARRY}: {args.n_tickets} tickets, vocabularies, wheels, sdist ({size:.1f} MiB)")


# --- run (device, or here on CPU with --cpu) -----------------------------------------------


def write_config(
    path: Path, models: dict[str, Path], port: int, price: float, slots: int, cpu: bool
) -> None:
    """The triagedesk config: the labels, `local-SHAPE` and `server-SHAPE` backends."""
    lines = ["[labels]"]
    lines += [f"{name} = {json.dumps(text)}" for name, text in LABELS.items()]
    lines += ["", "[routing]", 'reference_backend = "gpt-4o-mini"', ""]
    lines += [
        "[backends.gpt-4o-mini]",
        'type = "openai"',
        'base_url = "https://api.openai.com/v1"',
        'model = "gpt-4o-mini"',
        'api_key_env = "OPENAI_API_KEY"',
        "input_usd_per_mtok = 0.15",
        "output_usd_per_mtok = 0.60",
        "",
    ]
    for shape, model in models.items():
        lines += [
            f"[backends.local-{shape}]",
            'type = "llamacpp-local"',
            f"model_path = {json.dumps(str(model))}",
            f"n_gpu_layers = {0 if cpu else -1}",
            "n_ctx = 2048",
            "timeout_s = 900",
            "max_concurrency = 32",
            f"gpu_usd_per_hour = {price}",
            "gpu_parallel_slots = 1",
            "",
            f"[backends.server-{shape}]",
            'type = "openai"',
            f'base_url = "http://127.0.0.1:{port}/v1"',
            f'model = "random-{shape}"',
            "timeout_s = 900",
            "max_retries = 0",
            "max_concurrency = 32",
            f"gpu_usd_per_hour = {price}",
            f"gpu_parallel_slots = {slots}",
            "",
        ]
    path.write_text("\n".join(lines))


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def read_decisions(db: Path) -> list[dict[str, Any]]:
    """Every stored decision of the run, oldest first, as plain dicts."""
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            "SELECT ticket_id, label, total_ms, ttft_ms, server_load_ms, server_prompt_ms,"
            " server_gen_ms, input_tokens, output_tokens, cost_usd, counterfactual_cost_usd,"
            " error_class, error_message, raw_output, created_at FROM decisions ORDER BY id"
        ).fetchall()
    return [dict(row) for row in rows]


def summarise(decisions: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """Throughput, latency, tokens and server timings of one eval run.

    The first ticket of an in-process run also waits for the model to load; tickets that
    started before the load ended are left out of the latency figures and the load time out of
    the span, so both describe the loaded model.
    """
    ok = [d for d in decisions if d["error_class"] is None and d["total_ms"] is not None]
    if not ok:
        return {"n": len(decisions), "ok": 0}
    finish = {id(d): datetime.fromisoformat(d["created_at"]).timestamp() for d in ok}
    start = {id(d): finish[id(d)] - d["total_ms"] / 1000 for d in ok}
    load_s = max((d["server_load_ms"] or 0.0) for d in ok) / 1000
    t0 = min(start.values()) + load_s
    steady = [d for d in ok if start[id(d)] >= t0 - 1e-3] or ok
    span = max(finish.values()) - t0
    counted = [d for d in ok if finish[id(d)] > t0]
    per_s = len(counted) / span if span > 0 else None

    def field(name: str, rows: list[dict[str, Any]] = steady) -> list[float]:
        return [float(d[name]) for d in rows if d[name] is not None]

    total = field("total_ms")
    normalised = []
    for d in steady:
        out, gen = d["output_tokens"], d["server_gen_ms"]
        if out and gen is not None:
            keep = min(1.0, REALISTIC_OUTPUT_TOKENS / out)
            normalised.append(d["total_ms"] - gen * (1 - keep))
    in_tok, out_tok = field("input_tokens"), field("output_tokens")
    prompt_ms, gen_ms = field("server_prompt_ms"), field("server_gen_ms")
    gen_per_token = (
        sum(gen_ms) / sum(out_tok) if gen_ms and out_tok and len(gen_ms) == len(out_tok) else None
    )
    scale = (_mean(total) / _mean(normalised)) if normalised and total else None
    return {
        "n": len(decisions),
        "ok": len(ok),
        "errors": len(decisions) - len(ok),
        "error_classes": sorted({d["error_class"] for d in decisions if d["error_class"]}),
        "steady_n": len(steady),
        "concurrency": concurrency,
        "load_ms": load_s * 1000 or None,
        "span_s": span,
        "tickets_per_s": per_s,
        "latency_ms": {"p50": percentile(total, 0.5), "p95": percentile(total, 0.95)},
        "latency_mean_ms": _mean(total),
        "ttft_ms": {
            "p50": percentile(field("ttft_ms"), 0.5),
            "p95": percentile(field("ttft_ms"), 0.95),
        },
        "input_tokens_mean": _mean(in_tok),
        "output_tokens_mean": _mean(out_tok),
        "output_tokens_range": [min(out_tok), max(out_tok)] if out_tok else None,
        "server_prompt_ms": {"p50": percentile(prompt_ms, 0.5), "mean": _mean(prompt_ms)},
        "server_gen_ms": {"p50": percentile(gen_ms, 0.5), "mean": _mean(gen_ms)},
        "gen_ms_per_output_token": gen_per_token,
        "normalised_latency_ms": {
            "p50": percentile(normalised, 0.5),
            "p95": percentile(normalised, 0.95),
        },
        "normalised_tickets_per_s": per_s * scale if per_s and scale else None,
        "sample_answer": ok[len(ok) // 2]["raw_output"],
        "cost_usd_per_1k_configured": 1000 * _mean([d["cost_usd"] or 0.0 for d in decisions]),
        "counterfactual_usd_per_1k": 1000
        * _mean([d["counterfactual_cost_usd"] or 0.0 for d in decisions]),
    }


def run_eval(
    work: Path,
    config: Path,
    backend: str,
    tickets: Path,
    concurrency: int,
    limit: int,
    timeout: float = 300,
) -> dict[str, Any]:
    """`triagedesk eval --store --json` in a fresh process and database; its figures."""
    db = work / f"{backend}-c{concurrency}.db"
    db.unlink(missing_ok=True)
    # A file of exactly `limit` tickets rather than `--limit`: `eval --store --limit` also
    # imports the labels of the tickets it left out, which the database refuses.
    data = work / f"tickets-{limit}.jsonl"
    data.write_text("".join(tickets.read_text().splitlines(keepends=True)[:limit]))
    command = [sys.executable, "-m", "tui", "--db", str(db), "--config", str(config), "eval"]
    command += ["--backend", backend, "--data", str(data), "--concurrency", str(concurrency)]
    command += ["--json", "--store"]
    started = time.perf_counter()
    result: dict[str, Any] = {"backend": backend, "concurrency": concurrency}
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=timeout,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
    except subprocess.TimeoutExpired:
        result["failed"] = f"no result within {timeout:.0f} s"
        return result
    result["wall_s"] = time.perf_counter() - started
    if done.returncode != 0:
        result["failed"] = f"exit {done.returncode}: {done.stderr.strip()[-1500:]}"
        return result
    report = json.loads(done.stdout)
    result["eval"] = {k: report[k] for k in ("n", "errors", "accuracy", "latency_ms", "cost_usd")}
    result.update(summarise(read_decisions(db), concurrency))
    return result


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until the server's /v1/models answers 200; raises when it dies or times out."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as reply:
                if reply.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server not healthy within {timeout:.0f} s")


def server_command(args: argparse.Namespace, model: Path, shape: str) -> list[str]:
    """llama-server with every layer on the GPU and `--slots` parallel sequences, or, without
    that binary, llama-cpp-python's own server (one request at a time)."""
    if args.llama_server:
        return [
            args.llama_server,
            *("-m", str(model), "--host", "127.0.0.1", "--port", str(args.port)),
            *("-ngl", "0" if args.cpu else "999", "-np", str(args.slots)),
            *("-c", str(args.slots * args.ctx_per_slot), "-a", f"random-{shape}"),
            *("--no-webui", "--metrics"),
        ]
    return [
        sys.executable,
        *("-m", "llama_cpp.server", "--model", str(model), "--model_alias", f"random-{shape}"),
        *("--host", "127.0.0.1", "--port", str(args.port), "--n_ctx", str(args.ctx_per_slot)),
        *("--n_gpu_layers", "0" if args.cpu else "-1", "--interrupt_requests", "False"),
    ]


def gpu_snapshot() -> str | None:
    """nvidia-smi's memory in use and utilisation, when there is a GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = "--query-gpu=memory.used,memory.total,utilization.gpu,clocks.sm"
    done = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True)
    return done.stdout.decode().strip() or None


def write_models(shapes: list[str], work: Path, carry: Path) -> dict[str, Path]:
    """The random-weight GGUF of each shape in `work`, written unless already there."""
    sys.path.insert(0, str(HERE))
    import make_gguf

    models: dict[str, Path] = {}
    for shape in shapes:
        model = work / f"random-{shape}.gguf"
        if not model.is_file():
            started = time.perf_counter()
            partial = model.with_suffix(".partial")
            vocab = make_gguf.load_vocab(carry / f"vocab-{make_gguf.SHAPES[shape].n_vocab}.json")
            make_gguf.write_model(partial, make_gguf.SHAPES[shape], vocab, labels=list(LABELS))
            partial.rename(model)
            size = model.stat().st_size / 2**30
            print(f"{model}: {size:.2f} GiB in {time.perf_counter() - started:.1f} s", flush=True)
        models[shape] = model
    return models


def run_plan(args: argparse.Namespace) -> list[tuple[str, str, int, int]]:
    """(shape, backend kind, concurrency, tickets), most telling first: for each shape the
    server at every concurrency and the in-process backend one at a time, then the
    in-process backend at higher concurrency (it serves one ticket at a time, so those runs
    add only queueing)."""
    plan: list[tuple[str, str, int, int]] = []
    for shape in args.shapes:
        for concurrency in args.concurrency:
            limit = args.n_server if concurrency > 1 else args.n_local
            plan.append((shape, "server", concurrency, limit))
        plan += [(shape, "local", c, args.n_local) for c in args.concurrency if c == 1]
    for shape in args.shapes:
        plan += [(shape, "local", c, args.n_local_queued) for c in args.concurrency if c > 1]
    return [step for step in plan if step[1] in args.kinds]


def start_server(
    args: argparse.Namespace, model: Path, shape: str, work: Path
) -> tuple[subprocess.Popen[bytes], float]:
    """Start the OpenAI-compatible server on `model`; it and its seconds to ready."""
    env = dict(os.environ)
    if args.llama_server:  # its shared libraries sit beside it in the build tree
        libs = str(Path(args.llama_server).parent)
        env["LD_LIBRARY_PATH"] = f"{libs}:{env.get('LD_LIBRARY_PATH', '')}"
    log = (work / f"server-{shape}.log").open("wb")
    server = subprocess.Popen(
        server_command(args, model, shape),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    try:
        return server, wait_healthy(args.port, server, 180)
    except RuntimeError:
        _stop(server)
        raise


def run(args: argparse.Namespace) -> None:
    """Models, then for each shape: server evals, in-process evals; results after each."""
    deadline = time.monotonic() + args.budget_s
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "gpu": gpu_snapshot(),
        "llama_server": args.llama_server or "llama_cpp.server (python)",
        "slots": args.slots,
        "gpu_usd_per_hour": args.price,
        "models": {},
        "runs": [],
        "skipped": [],
    }

    def save() -> None:
        (args.out / "results.json").write_text(json.dumps(results, indent=2))

    models = write_models(args.shapes, work, args.carry)
    for shape, model in models.items():
        results["models"][shape] = {"gib": model.stat().st_size / 2**30}
    config = work / "config.toml"
    write_config(config, models, args.port, args.price, args.slots, args.cpu)
    tickets = args.carry / "tickets.jsonl"
    save()

    plan = run_plan(args)
    server: subprocess.Popen[bytes] | None = None
    server_shape: str | None = None
    failed_servers: set[str] = set()
    for shape, kind, concurrency, limit in plan:
        name = f"{kind}-{shape}"
        if time.monotonic() > deadline:
            results["skipped"].append(f"{name} c{concurrency}: out of time")
            continue
        if kind == "server" and shape in failed_servers:
            results["skipped"].append(f"{name} c{concurrency}: the server did not start")
            continue
        if server is not None and (kind != "server" or server_shape != shape):
            results["models"][server_shape]["gpu_with_server"] = gpu_snapshot()
            _stop(server)
            server, server_shape = None, None
        if kind == "server" and server is None:
            try:
                server, ready = start_server(args, models[shape], shape, work)
                server_shape = shape
                results["models"][shape]["server_ready_s"] = ready
            except RuntimeError as exc:
                results["skipped"].append(f"{name}: {exc}")
                failed_servers.add(shape)
                continue
        print(f"{name} c={concurrency} n={limit} ...", flush=True)
        result = run_eval(work, config, name, tickets, concurrency, limit)
        result["shape"] = shape
        result["kind"] = kind
        results["runs"].append(result)
        save()
        print(_line(result), flush=True)
    if server is not None:
        _stop(server)
    for log in work.glob("server-*.log"):
        (args.out / log.name).write_bytes(log.read_bytes()[-4_000_000:])
    results["finished"] = datetime.now().isoformat(timespec="seconds")
    save()


def smoke(model: Path, step: str, cpu: bool) -> None:
    """One in-process answer through llama-cpp-python, without triagedesk's backend around it.

    `plain` is a bare chat completion under the answer schema; `perf` adds the backend's
    llama_perf_context reset/read; `abort` adds its abort callback. Each runs in its own
    process (a crash must not hide the others) and tells which part of the backend fails.
    """
    import faulthandler

    import llama_cpp

    from tui.core.models import Label, Taxonomy
    from tui.core.prompt import answer_schema, build_prompt

    faulthandler.enable()
    taxonomy = Taxonomy(labels=tuple(Label(name=k, description=v) for k, v in LABELS.items()))
    prompt = build_prompt("Where is my parcel? Order 4521, it is a week late.", taxonomy)
    started = time.perf_counter()
    llm = llama_cpp.Llama(str(model), n_gpu_layers=0 if cpu else -1, n_ctx=2048, verbose=False)
    print(f"{step}: loaded in {time.perf_counter() - started:.2f} s", flush=True)
    keep: list[Any] = []
    if step == "abort":
        callback = llama_cpp.ggml_abort_callback(lambda _data: False)
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, callback, None)
        keep.append(callback)
    for attempt in range(3):
        if step == "perf":
            llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
        started = time.perf_counter()
        reply = llm.create_chat_completion(
            messages=prompt.messages(),
            response_format={"type": "json_object", "schema": answer_schema(taxonomy)},
            temperature=0.0,
            max_tokens=200,
        )
        elapsed = (time.perf_counter() - started) * 1000
        perf = ""
        if step == "perf":
            data = llama_cpp.llama_perf_context(llm._ctx.ctx)
            perf = f" prompt {data.t_p_eval_ms:.1f} ms gen {data.t_eval_ms:.1f} ms"
        answer = reply["choices"][0]["message"]["content"]
        print(f"{step} {attempt}: {elapsed:.1f} ms{perf} {reply['usage']} {answer!r}", flush=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the server we started (its own process group), by its id."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _fmt(value: Any, pattern: str = "{:.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def _line(r: dict[str, Any]) -> str:
    if "failed" in r:
        return f"  {r['backend']} c{r['concurrency']}: FAILED {r['failed']}"
    if not r.get("ok"):
        return f"  {r['backend']} c{r['concurrency']}: no answers ({r.get('n')} errors)"
    return (
        f"  {r['backend']} c{r['concurrency']}: {r['ok']}/{r['n']} ok,"
        f" {_fmt(r['tickets_per_s'], '{:.1f}')}/s, p50 {_fmt(r['latency_ms']['p50'])} ms,"
        f" p95 {_fmt(r['latency_ms']['p95'])} ms, ttft {_fmt(r['ttft_ms']['p50'])} ms,"
        f" in {_fmt(r['input_tokens_mean'])} out {_fmt(r['output_tokens_mean'], '{:.1f}')} tok,"
        f" prompt {_fmt(r['server_prompt_ms']['p50'], '{:.1f}')} ms"
        f" gen {_fmt(r['server_gen_ms']['p50'], '{:.1f}')} ms"
    )


# --- report (here) -------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    prep = sub.add_parser("prepare", help="fill .device/gpu_llamacpp (here)")
    prep.add_argument("--sdist", type=Path, help="a downloaded sdist instead of pip download")
    prep.add_argument("--dataset", type=Path, default=DATASET)
    prep.add_argument("--n-tickets", type=int, default=200)

    go = sub.add_parser("run", help="models, servers, evals (device)")
    go.add_argument("--shapes", nargs="+", default=["1b", "8b"])
    go.add_argument("--kinds", nargs="+", default=["server", "local"], choices=["server", "local"])
    go.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    go.add_argument("--n-server", type=int, default=200, help="tickets per server run")
    go.add_argument(
        "--n-local", type=int, default=60, help="tickets per in-process run (and server run at c1)"
    )
    go.add_argument("--n-local-queued", type=int, default=48, help="... at concurrency > 1")
    go.add_argument("--slots", type=int, default=32, help="llama-server -np")
    go.add_argument("--ctx-per-slot", type=int, default=2048)
    go.add_argument("--port", type=int, default=8089)
    go.add_argument("--price", type=float, default=3.50, help="GPU USD per hour for the config")
    go.add_argument("--llama-server", help="path of llama.cpp's llama-server binary")
    go.add_argument("--cpu", action="store_true", help="no GPU offload (local tests)")
    go.add_argument("--budget-s", type=float, default=600, help="start no run after this")
    go.add_argument("--carry", type=Path, default=CARRY)
    go.add_argument("--work", type=Path, default=Path("/tmp/gpubench-work"))
    go.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/gpubench-out")))

    smk = sub.add_parser("smoke", help="one bare in-process answer (device)")
    smk.add_argument("model", type=Path)
    smk.add_argument("--part", dest="step_name", choices=["plain", "perf", "abort"])
    smk.add_argument("--cpu", action="store_true")

    mod = sub.add_parser("models", help="write the GGUF models (device)")
    mod.add_argument("--shapes", nargs="+", default=["1b", "8b"])
    mod.add_argument("--carry", type=Path, default=CARRY)
    mod.add_argument("--work", type=Path, default=Path("/tmp/gpubench-work"))

    rep = sub.add_parser("report", help="results JSON -> markdown with costs (here)")
    rep.add_argument("results", type=Path)
    rep.add_argument("--price", type=float, default=3.50, help="H200 USD per hour")
    rep.add_argument("--md", type=Path, default=REPO / "benchmarks/results/gpu_llamacpp.md")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args)
    elif args.step == "smoke":
        smoke(args.model, args.step_name, args.cpu)
    elif args.step == "models":
        args.work.mkdir(parents=True, exist_ok=True)
        write_models(args.shapes, args.work, args.carry)
    elif args.step == "run":
        run(args)
    else:
        from report import write_report

        write_report(args.results, args.price, args.md)


if __name__ == "__main__":
    main()

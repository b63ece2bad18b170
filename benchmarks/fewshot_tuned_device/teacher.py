# ruff: noqa
"""Issue 19, fifth pass (RESULTS.md 4c): the learning curve's pool guesses replayed on an H200
with the teacher encoder tuned contrastively on the few labels, as the product's contrastive stage
does (supervised contrastive loss, 8 labels x 4 tickets a batch, temperature 0.07, AdamW with
warm-up, word embeddings frozen), for more steps than two CPU cores allow in five minutes.

Run as it ran (copied here, reformatted and with this docstring, from .device/s29/exp19.py and .device/s29m/exp19m.py,
where they ran; the repository root on the device, PYTHONPATH=.): `.device/s29` held
`fewshot_cache`'s texts.json, minilm.npy and mpnet_int8.npy, Banking77's train.jsonl and
all-mpnet-base-v2's tokenizer files (its fp16 weights carried in four parts, .device/p0-p3);
`.device/s29m/minilm` all-MiniLM-L6-v2 in fp16. Two processes at once:
    python benchmarks/fewshot_tuned_device/teacher.py gpu      # tunes, writes the embeddings
    python benchmarks/fewshot_tuned_device/teacher.py score 7  # scores each as it appears
Scores: `benchmarks/results/fewshot_tuned_h200/teacher.jsonl`. The scoring is
`fewshot_teacher_cached`'s (the product's spreading, cross-fitted second opinion, joint head
and cascade) with the tuned embeddings in place of the cached ones.
"""

# issue 19 experiment on the H200: does tuning the MPNet teacher on the few labels
# (supervised contrastive, as the product's contrastive stage) give better pool guesses?
import glob, json, math, os, sys, time
from pathlib import Path
from concurrent.futures import ProcessPoolExecutor

import numpy as np

ROOT = Path(".device/s29")
OUT = Path(os.environ.get("OUT", "/tmp/out"))
EMB = ROOT / "emb"
os.environ["FEWSHOT_CACHE"] = str(ROOT / "cache")
import benchmarks.banking77 as B

B.DEFAULT = ROOT / "train.jsonl"
import benchmarks.fewshot_teacher_cached as H  # noqa: E402
from tui.core.learning import semi_supervised as semi  # noqa: E402
from tui.core.learning.pool_teacher import cross_fitted, guess_weights  # noqa: E402

LAB = {r["text"]: r["label"] for r in H.train}
SETTINGS = [(13, 10), (14, 10), (13, 20), (14, 20)]
VARIANTS = [
    dict(name="frozen", k=0, steps=0),
    dict(name="top2-100", k=2, steps=100, lr=5e-5),
    dict(name="all-60", k=12, steps=60, lr=2e-5),
    dict(name="all-200", k=12, steps=200, lr=2e-5),
    dict(name="all-600", k=12, steps=600, lr=2e-5),
]


def assemble():
    target = ROOT / "mpnet" / "model.safetensors"
    if not target.exists():
        parts = sorted(glob.glob(".device/p*/mp16.part.*"), key=lambda p: p.rsplit(".", 1)[1])
        with open(target, "wb") as out:
            for p in parts:
                out.write(open(p, "rb").read())
    return target


def gpu_phase():
    import torch
    from transformers import AutoModel, AutoTokenizer

    assemble()
    tok = AutoTokenizer.from_pretrained(ROOT / "mpnet")
    base = AutoModel.from_pretrained(ROOT / "mpnet", torch_dtype=torch.float32)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    dev = "cuda"
    texts_all = H.texts_all
    enc = tok(texts_all, truncation=True, max_length=64)
    ids_all = enc["input_ids"]

    def batch(idx):
        rows = [ids_all[i] for i in idx]
        n = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), n), dtype=torch.long) + tok.pad_token_id
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        return ids.to(dev), mask.to(dev)

    def pooled(model, idx):
        ids, mask = batch(idx)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state
        h = h.float()
        m = mask.unsqueeze(-1).float()
        z = (h * m).sum(1) / m.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(z, dim=-1)

    def embed_all(model):
        model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(texts_all), 512):
                out.append(
                    pooled(model, list(range(s, min(s + 512, len(texts_all))))).cpu().numpy()
                )
        return np.vstack(out).astype(np.float32)

    at = H.at
    for seed, size in SETTINGS:
        rows, targets, pool, classes = H.setup(seed, size, 7500)
        idx = np.asarray([at[t] for t in rows])
        cls = {c: i for i, c in enumerate(classes)}
        y = np.asarray([cls[t] for t in targets])
        for v in VARIANTS:
            f = EMB / f"emb_{seed}_{size}_{v['name']}.npy"
            if f.exists():
                continue
            t0 = time.time()
            model = AutoModel.from_pretrained(ROOT / "mpnet", torch_dtype=torch.float32)
            model.load_state_dict(base_state)
            model.to(dev)
            if v["steps"]:
                for p in model.parameters():
                    p.requires_grad_(False)
                for layer in model.encoder.layer[12 - v["k"] :]:
                    for p in layer.parameters():
                        p.requires_grad_(True)
                params = [p for p in model.parameters() if p.requires_grad]
                opt = torch.optim.AdamW(params, lr=v["lr"], weight_decay=0.01)
                total = v["steps"]
                warm = max(1, int(0.1 * total))
                sched = torch.optim.lr_scheduler.LambdaLR(
                    opt,
                    lambda s: (
                        (s + 1) / warm if s < warm else max(0.0, (total - s) / (total - warm))
                    ),
                )
                rng = np.random.default_rng(seed)
                members = [np.flatnonzero(y == c) for c in range(len(classes))]
                usable = [m for m in members if len(m) >= 2]
                model.train()
                for step in range(total):
                    chosen = rng.choice(len(usable), 8, replace=False)
                    sel = np.concatenate(
                        [
                            rng.choice(usable[c], min(4, len(usable[c])), replace=False)
                            for c in chosen
                        ]
                    )
                    z = pooled(model, idx[sel].tolist())
                    sim = z @ z.T / 0.07
                    yy = y[sel]
                    same = torch.from_numpy(yy[:, None] == yy[None, :]).to(dev)
                    eye = torch.eye(len(sel), dtype=torch.bool, device=dev)
                    sim = sim.masked_fill(eye, -math.inf)
                    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
                    pos = same & ~eye
                    loss = -(logp.masked_fill(~pos, 0.0).sum(1) / pos.sum(1)).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                    sched.step()
            part = f.with_name(f.name + ".part")
            with open(part, "wb") as fh:
                np.save(fh, embed_all(model))
            os.replace(part, f)
            print(
                json.dumps(
                    dict(seed=seed, size=size, v=v["name"], gpu_s=round(time.time() - t0, 1))
                ),
                flush=True,
            )
            del model
            torch.cuda.empty_cache()


def score(job):
    seed, size, name = job
    os.environ["OMP_NUM_THREADS"] = "2"
    from sklearn.linear_model import LogisticRegression

    MP = np.load(EMB / f"emb_{seed}_{size}_{name}.npy")
    E = H.E
    rows, targets, pool, classes = H.setup(seed, size, 7500)
    both = lambda ts: np.hstack([E(H.MINI, ts), E(MP, ts)])
    L, P = H.unit(both(rows)), H.unit(both(pool))
    sp = semi.spread_labels(L, targets, P, classes)
    cf = cross_fitted(both(rows), targets, both(pool), sp, classes, semi.POOL_WEIGHT)
    g = lambda labels: float(np.mean([LAB[p] == str(x) for p, x in zip(pool, labels)]))
    lr = LogisticRegression(C=10.0, max_iter=3000).fit(E(MP, rows), targets)
    teacher_alone = float((lr.predict(E(MP, H.test)) == H.truth).mean())
    w = guess_weights(cf.confidence, semi.POOL_WEIGHT)
    head, allrows, yy = H.fit_head(rows, targets, pool, cf.labels, w)
    p_head = head.predict_proba(H.test, H.Vtest)
    alone = float((head.classes_[p_head.argmax(1)] == H.truth).mean())
    casc, _ = H.cascade_acc(head, allrows, yy, len(pool), p_head)
    res = dict(
        seed=seed,
        size=size,
        v=name,
        spread=round(g(sp.labels), 4),
        guesses=round(g(cf.labels), 4),
        teacher_lr_test=round(teacher_alone, 4),
        served_alone=round(alone, 4),
        served=round(casc, 4),
    )
    with open(ROOT / "scores.jsonl", "a") as fh:
        fh.write(json.dumps(res) + "\n")
    return res


if __name__ == "__main__":
    EMB.mkdir(parents=True, exist_ok=True)
    if sys.argv[1] == "gpu":
        gpu_phase()
        (EMB / "DONE").write_text("1")
    else:
        done = set()
        if (ROOT / "scores.jsonl").exists():
            done = {
                (r["seed"], r["size"], r["v"]) for r in map(json.loads, open(ROOT / "scores.jsonl"))
            }
        futures = {}
        with ProcessPoolExecutor(int(sys.argv[2]) if len(sys.argv) > 2 else 7) as ex:
            while True:
                finished = (EMB / "DONE").exists()
                for s_, z_ in SETTINGS:
                    for v in VARIANTS:
                        job = (s_, z_, v["name"])
                        if job in done or job in futures:
                            continue
                        if (EMB / f"emb_{s_}_{z_}_{v['name']}.npy").exists():
                            futures[job] = ex.submit(score, job)
                if finished and all(f.done() for f in futures.values()):
                    break
                time.sleep(2)
            for job, f in futures.items():
                print(json.dumps(f.result()), flush=True)

"""Which embeddings the unlabelled pool's guesses should come from, on cached embeddings.

    FEWSHOT_CACHE=DIR uv run python -m benchmarks.fewshot_teacher_cached \
        '[{"graph":"mini"},{"graph":"concat","conf_weight":1}]' 13,14,15 5,10,20 cascade

The fast loop behind RESULTS.md 4c's third pass (its lines: results/fewshot_teacher_cached
.jsonl). DIR holds `texts.json` (every train/test text of the split and every label name),
`minilm.npy` (their unit-length embeddings by the product's frozen int8 MiniLM) and
`mpnet_fp32.npy` (by all-mpnet-base-v2, sentence-transformers, max 64 tokens; the
product's ONNX graph of it agrees to cosine 0.9999998). The samples, the pool and the
head are the benchmark's and the product's (`fewshot_curve`, `fewshot_kind._fit_head`),
with the encoders replaced by look-ups, so a variant costs seconds, not minutes; the
product's own run decides (`fewshot_curve_teacher.json`). Variants: `graph` mini / mpnet /
concat (both side by side), `conf_weight` (guesses weighted by the spreading's confidence),
`weight`, `oracle` (the pool's true labels: the ceiling), `lr_mix`, `teacher_head`; and the
fourth pass's `cross_fit` (the product's `pool_teacher.cross_fitted` second opinion over
both embeddings), `pool` (the most unlabelled tickets, 5,000 unless given: 7,500 is the
product's cap with a teacher) and `k` (the graph's neighbours).

`benchmarks/fewshot_cache.py` writes DIR with the product's own encoders.
"""

# ruff: noqa
import json, os, random, sys, time
import numpy as np
from collections import Counter
from benchmarks.banking77 import load_rows, split, DEFAULT
from tui.core.learning.curve import nested_sample
from tui.core.learning.fewshot_kind import label_text, ESCALATE_SHARE
from tui.core.learning import semi_supervised as semi
from tui.core.learning.joint_head import JointHead
from tui.core.learning.tfidf import build_tfidf_pipeline

CACHE = os.environ.get("FEWSHOT_CACHE", "cache")
texts_all = json.loads(open(f"{CACHE}/texts.json").read())
at = {t: i for i, t in enumerate(texts_all)}
MINI = np.load(f"{CACHE}/minilm.npy")
try:  # the third pass's sentence-transformers vectors, or FEWSHOT_MPNET=mpnet_int8 (product's)
    MP = np.load(f"{CACHE}/{os.environ.get('FEWSHOT_MPNET', 'mpnet_fp32')}.npy")
except FileNotFoundError:
    MP = None


def E(src, ts):
    return src[[at[t] for t in ts]]


def unit(v):
    return v / np.linalg.norm(v, axis=1, keepdims=True)


train, test_rows = split(load_rows(DEFAULT))
test = [r["text"] for r in test_rows]
truth = np.asarray([r["label"] for r in test_rows])
Vtest = E(MINI, test)


def setup(seed, size, n_pool=5000):
    chosen = nested_sample([r["label"] for r in train], size, seed)
    texts = [train[i]["text"] for i in chosen]
    labels = [train[i]["label"] for i in chosen]
    ins = set(chosen)
    scored = set(test)
    outside = [r["text"] for i, r in enumerate(train) if i not in ins and r["text"] not in scored]
    random.Random(seed).shuffle(outside)
    pool = semi.pool_texts(outside[:n_pool], texts, cap=n_pool)
    classes = sorted(set(labels))
    named = [(label_text(c), c) for c in classes]
    rows = texts + [t for t, _ in named]
    targets = labels + [c for _, c in named]
    return rows, targets, pool, classes


def guesses(graph_src, rows, targets, pool, classes, **kw):
    if graph_src == "concat":
        L = unit(np.hstack([E(MINI, rows), E(MP, rows)]))
        P = unit(np.hstack([E(MINI, pool), E(MP, pool)]))
    else:
        src = MINI if graph_src == "mini" else MP
        L, P = E(src, rows), E(src, pool)
    return semi.spread_labels(L, targets, P, classes, **kw)


def spread_F(graph_src, rows, targets, pool, classes, k=semi.NEIGHBOURS, alpha=semi.ALPHA):
    from scipy.sparse import csr_matrix, diags

    if graph_src == "concat":
        L = unit(np.hstack([E(MINI, rows), E(MP, rows)]))
        P = unit(np.hstack([E(MINI, pool), E(MP, pool)]))
    else:
        src = MINI if graph_src == "mini" else MP
        L, P = E(src, rows), E(src, pool)
    x = np.vstack([L, P]).astype(np.float32)
    n, nl = len(x), len(L)
    nb = semi.knn_graph(x, k)
    r = np.repeat(np.arange(n), nb.shape[1])
    c = nb.ravel()
    w = np.maximum(np.einsum("ij,ij->i", x[r], x[c]), 0.0) ** semi.SHARPEN
    g = csr_matrix((w, (r, c)), shape=(n, n))
    g = g + g.T
    d = np.asarray(g.sum(axis=1)).ravel()
    sc = diags(1.0 / np.sqrt(np.maximum(d, 1e-12)))
    S = sc @ g @ sc
    idx = {cl: i for i, cl in enumerate(classes)}
    Y = np.zeros((n, len(classes)))
    Y[np.arange(nl), [idx[t] for t in targets]] = 1.0
    f = Y.copy()
    for _ in range(semi.ITERATIONS):
        f = alpha * (S @ f) + (1 - alpha) * Y
    f = f[nl:]
    return f / np.maximum(f.sum(1, keepdims=True), 1e-12)


def fit_head(rows, targets, pool, g, weight=semi.POOL_WEIGHT, src=None):
    src = MINI if src is None else src
    allrows = rows + pool
    y = targets + [str(x) for x in g]
    w = np.concatenate([np.ones(len(rows)), np.asarray(weight) * np.ones(len(pool))])
    return JointHead().fit(allrows, E(src, allrows), y, sample_weight=w), allrows, y


def cascade_acc(head, allrows, y, n_pool, p_head):
    first = len(allrows) - n_pool
    held = {first + i for i in range(0, n_pool, 3)}
    fit_rows = [i for i in range(len(allrows)) if i not in held]
    kept = [y[i] for i in fit_rows]
    tf = build_tfidf_pipeline(Counter(kept)).fit([allrows[i] for i in fit_rows], kept)
    unseen = tf.predict_proba([allrows[i] for i in sorted(held)])
    thr = float(np.quantile(np.asarray(unseen).max(axis=1), ESCALATE_SHARE))
    p = np.asarray(tf.predict_proba(test))
    unsure = p.max(axis=1) < thr
    p[unsure] = p_head[unsure]
    return float((head.classes_[p.argmax(1)] == truth).mean()), float(unsure.mean())


def run(seed, size, variant, do_cascade=False):
    rows, targets, pool, classes = setup(seed, size, variant.get("pool", 5000))
    t = time.perf_counter()
    g_src = variant.get("graph", "mini")
    sp = guesses(g_src, rows, targets, pool, classes, k=variant.get("k", semi.NEIGHBOURS))
    if variant.get("cross_fit"):
        from tui.core.learning.pool_teacher import cross_fitted

        both = lambda ts: np.hstack([E(MINI, ts), E(MP, ts)])
        sp = cross_fitted(both(rows), targets, both(pool), sp, classes, semi.POOL_WEIGHT)
    glabels = sp.labels
    if variant.get("oracle"):
        lab0 = {r["text"]: r["label"] for r in train}
        glabels = np.asarray([lab0[p] for p in pool])
    if variant.get("lr_mix") is not None:
        from sklearn.linear_model import LogisticRegression

        src = MP if g_src in ("mpnet", "concat") else MINI
        lr = LogisticRegression(C=10.0, max_iter=3000).fit(E(src, rows), targets)
        q = lr.predict_proba(E(src, pool))
        F = spread_F(g_src, rows, targets, pool, classes)
        m = variant["lr_mix"]
        glabels = np.asarray(classes)[((1 - m) * F + m * q).argmax(1)]
    if variant.get("teacher_head"):
        # a head on the graph embeddings (labels + spread guesses), its answers as the guesses
        src = MP if g_src == "mpnet" else MINI
        th, _, _ = fit_head(rows, targets, pool, glabels, src=src)
        glabels = th.classes_[th.predict_proba(pool, E(src, pool)).argmax(1)]
    pool_truth = None
    lab = {r["text"]: r["label"] for r in train}
    gacc = float(np.mean([lab[p] == str(x) for p, x in zip(pool, glabels)]))
    weight = variant.get("weight", semi.POOL_WEIGHT)
    if variant.get("conf_weight"):
        weight = weight * np.clip(
            sp.confidence / np.median(sp.confidence), 0, variant.get("clip", 2)
        )
    head, allrows, y = fit_head(rows, targets, pool, glabels, weight)
    p_head = head.predict_proba(test, Vtest)
    acc = float((head.classes_[p_head.argmax(1)] == truth).mean())
    out = dict(
        seed=seed,
        size=size,
        variant=variant,
        alone=round(acc, 4),
        guess_acc=round(gacc, 4),
        s=round(time.perf_counter() - t, 1),
    )
    if do_cascade:
        c, share = cascade_acc(head, allrows, y, len(pool), p_head)
        out.update(cascade=round(c, 4), passed_on=round(share, 3))
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    variants = json.loads(sys.argv[1])
    seeds = [int(s) for s in sys.argv[2].split(",")]
    sizes = [int(s) for s in sys.argv[3].split(",")]
    casc = len(sys.argv) > 4
    for seed in seeds:
        for size in sizes:
            for v in variants:
                run(seed, size, v, casc)

"""Issue 19, fifth pass (RESULTS.md 4c): does re-balancing the pool's guessed classes help?

    FEWSHOT_CACHE=DIR FEWSHOT_MPNET=mpnet_int8 uv run python -m benchmarks.fewshot_balance_cached

On `fewshot_cache`'s embeddings: the product's spreading and cross-fitted second opinion
(`cf`), then the same scores with the pool's class prior re-estimated by EM (`cf_em`) or
Sinkhorn-balanced half-way (`sk0.5`) or all the way (`sk1.0`) to equal class shares; printed:
the share of guesses right for each.
"""

# ruff: noqa
import json, sys, time
import numpy as np
import benchmarks.fewshot_teacher_cached as H
from tui.core.learning import semi_supervised as semi
from tui.core.learning.pool_teacher import cross_fitted, guess_weights, side_by_side
from sklearn.linear_model import LogisticRegression

lab = {r["text"]: r["label"] for r in H.train}


def base(seed, size, pool_n=7500):
    rows, targets, pool, classes = H.setup(seed, size, pool_n)
    both = lambda ts: np.hstack([H.E(H.MINI, ts), H.E(H.MP, ts)])
    L = H.unit(both(rows))
    P = H.unit(both(pool))
    sp = semi.spread_labels(L, targets, P, classes)
    cf = cross_fitted(both(rows), targets, both(pool), sp, classes, semi.POOL_WEIGHT)
    return rows, targets, pool, classes, sp, cf, both


def gacc(pool, labels):
    return float(np.mean([lab[p] == str(x) for p, x in zip(pool, labels)]))


def em_prior(scores, iters=20):
    # Saerens et al. 2002: re-estimate the pool's class prior from the posteriors
    k = scores.shape[1]
    train_prior = np.full(k, 1.0 / k)
    prior = train_prior.copy()
    for _ in range(iters):
        adj = scores * (prior / train_prior)
        adj /= adj.sum(1, keepdims=True)
        prior = adj.mean(0)
    return adj


def sinkhorn(scores, marg, iters=50, power=1.0):
    q = scores**power
    for _ in range(iters):
        q = q * (marg / np.maximum(q.sum(0), 1e-12))
        q /= q.sum(1, keepdims=True)
    return q


def serve(rows, targets, pool, labels, conf, casc=True):
    w = guess_weights(conf, semi.POOL_WEIGHT)
    head, allrows, y = H.fit_head(rows, targets, pool, labels, w)
    p_head = head.predict_proba(H.test, H.Vtest)
    alone = float((head.classes_[p_head.argmax(1)] == H.truth).mean())
    if casc:
        c, _ = H.cascade_acc(head, allrows, y, len(pool), p_head)
        return alone, c
    return alone, None


if __name__ == "__main__":
    for seed in (13, 14, 15):
        for size in (10, 20):
            t = time.perf_counter()
            rows, targets, pool, classes, sp, cf, both = base(seed, size)
            names = np.asarray(classes)
            out = dict(seed=seed, size=size, spread=gacc(pool, sp.labels), cf=gacc(pool, cf.labels))
            em = em_prior(cf.scores)
            out["cf_em"] = gacc(pool, names[em.argmax(1)])
            for lam in (0.5, 1.0):
                marg = (1 - lam) * cf.scores.mean(0) + lam / len(classes)
                q = sinkhorn(cf.scores, marg * len(pool))
                out[f"sk{lam}"] = gacc(pool, names[q.argmax(1)])
            # second round: spread seeds = labels + confident cf guesses
            out["s"] = round(time.perf_counter() - t, 1)
            print(
                json.dumps(
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}
                ),
                flush=True,
            )

"""Statistics read from the aggregates (never a scan of the decisions): per-backend figures,
latency percentiles from the histogram, costs over time and token means."""

from __future__ import annotations

import contextlib
from collections import Counter

from tui.core.intervals import wilson_interval
from tui.core.models import BackendStats
from tui.core.scoring import score
from tui.core.store.connection import StoreBase
from tui.core.store.errors import StoreError
from tui.core.store.latency import bucket_value
from tui.core.store.trained import BEHIND, excluded_agreement, match_new_tickets


class StatsMixin(StoreBase):
    """The statistics readers."""

    def latency_percentiles(self, backend: str) -> dict[str, float | None]:
        """p50/p95 of successful decisions from the latency histogram (within 1 %)."""
        buckets = self._read(
            "SELECT bucket, n FROM latency_histogram WHERE backend = ? AND n > 0 ORDER BY bucket",
            (backend,),
        )
        total = sum(n for _, n in buckets)
        out: dict[str, float | None] = {}
        for name, q in (("p50", 0.5), ("p95", 0.95)):
            out[name] = None
            if total == 0:
                continue
            index = min(total - 1, max(0, round(q * (total - 1))))
            seen = 0
            for bucket, n in buckets:
                seen += n
                if seen > index:
                    out[name] = bucket_value(bucket)
                    break
        return out

    def backend_stats(self, *, daily_volume: int = 0) -> list[BackendStats]:
        """Per-backend figures against the agents' labels (SPEC `stats --json`), read from the
        aggregates, so they cost the same at a million decisions as at a hundred.

        Accuracy counts only labels the answering model did not train on (`scored_on`, with
        its 95 % Wilson interval); those it trained on are `excluded_trained`, read from the
        training sets (a cost proportional to them, not to the decisions)."""
        from tui.core.costs import monthly, per_1k

        totals = self._read(
            "SELECT backend, backend_type, n, errors, cost_usd FROM backend_totals ORDER BY backend"
        )
        by_backend: dict[str, Counter[tuple[str, str]]] = {}
        for backend, predicted, truth, count in self._read(
            "SELECT backend, predicted, truth, n FROM label_agreement WHERE n > 0"
        ):
            by_backend.setdefault(backend, Counter())[(predicted, truth)] += count
        excluded = self._excluded_trained()
        out: list[BackendStats] = []
        for backend, backend_type, n, errors, cost in totals:
            agreement = by_backend.get(backend, Counter())
            labelled = sum(agreement.values())
            left_out = excluded.get(backend, Counter())
            held_out = agreement - left_out  # Counter subtraction drops what reaches 0
            scored = score((p, t, c) for (p, t), c in held_out.items())
            correct = sum(c for (p, t), c in held_out.items() if p == t)
            interval = wilson_interval(correct, scored.support)
            answered = n - errors
            per_ticket = cost / answered if answered else None
            out.append(
                BackendStats(
                    backend=backend,
                    backend_type=backend_type,
                    n=n,
                    errors=errors,
                    accuracy=scored.accuracy,
                    macro_f1=scored.macro_f1,
                    labelled=labelled,
                    scored_on=scored.support,
                    excluded_trained=labelled - scored.support,
                    accuracy_low=interval.low,
                    accuracy_high=interval.high,
                    latency_ms=self.latency_percentiles(backend),
                    cost_usd=cost,
                    cost_per_1k_usd=per_1k(cost, answered),
                    projected_monthly_usd=monthly(per_ticket, daily_volume),
                    per_label=scored.per_label,
                )
            )
        return out

    def _excluded_trained(self) -> dict[str, Counter[tuple[str, str]]]:
        """Per backend, the agreement counts resting on labels the answering model trained
        on. Tickets imported since a model was recorded are matched to its training texts
        first; a database that cannot be written (read-only) is read as it stands."""
        if not self._read("SELECT 1 FROM trained_models LIMIT 1"):
            return {}
        if self._read(BEHIND):
            with contextlib.suppress(StoreError), self._write() as conn:
                match_new_tickets(conn)
        with self._reading() as conn:
            return excluded_agreement(conn)

    def latencies(self, backend: str, *, limit: int = 5000) -> list[float]:
        """The most recent successful latencies of a backend, for histograms."""
        rows = self._read(
            "SELECT total_ms FROM decisions WHERE backend = ? AND error_class IS NULL"
            " AND total_ms IS NOT NULL ORDER BY id DESC LIMIT ?",
            (backend, limit),
        )
        return [float(r[0]) for r in rows]

    def cost_timeline(self, *, bucket_chars: int = 13) -> list[tuple[str, str, float, int]]:
        """(bucket, backend, cost, decisions) by hour (ISO prefix of 13 characters) or day (10)."""
        rows = self._read(
            "SELECT substr(hour, 1, ?) AS bucket, backend, sum(cost_usd), sum(n)"
            " FROM cost_by_hour GROUP BY bucket, backend ORDER BY bucket",
            (min(bucket_chars, 13),),
        )
        return [(r[0], r[1], float(r[2]), int(r[3])) for r in rows]

    def token_means(self, backend: str) -> tuple[float | None, float | None]:
        """Mean input and output tokens per successful decision, for cost projections."""
        rows = self._read(
            "SELECT input_tokens, output_tokens, tokens_n FROM backend_totals WHERE backend = ?",
            (backend,),
        )
        if not rows or not rows[0][2]:
            return (None, None)
        tokens_in, tokens_out, n = rows[0]
        return (tokens_in / n, tokens_out / n)

    def counterfactual_mean(self) -> float | None:
        """Mean counterfactual cost per decision: the reference backend's price of a ticket."""
        row = self._read(
            "SELECT sum(counterfactual_usd), sum(counterfactual_n) FROM backend_totals"
        )[0]
        return None if not row[1] else float(row[0]) / row[1]

"""What a run did (counts, errors, skipped claims) and the percentile its figures use."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tui.core.claims import describe_skipped

if TYPE_CHECKING:
    from tui.core.models import Decision


@dataclass(slots=True)
class RunSummary:
    """What a batch run did, for the CLI's last line and the TUI's notification."""

    run_id: str
    routed: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    labels: Counter[str] = field(default_factory=Counter)
    error_classes: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    """Tickets left because another run held them: claim owner -> how many."""

    def count(self, decision: Decision) -> None:
        """Tally one routed ticket: under its label when it got one, else under its error."""
        self.routed += 1
        if decision.ok and decision.label:
            self.labels[decision.label] += 1
        else:
            self.errors += 1
            self.error_classes[decision.error_class or "?"] += 1

    @property
    def per_second(self) -> float:
        return self.routed / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def skipped_line(self) -> str | None:
        """`skipped 40 tickets claimed by another run (pid 1234)`, or None."""
        return describe_skipped(self.skipped)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile, for small in-memory samples (the status bar, eval)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return float(ordered[rank - 1])

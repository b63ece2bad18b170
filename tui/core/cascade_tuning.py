"""Choosing a cascade's confidence threshold from labelled data.

The cascade answers with `first` when its confidence reaches the threshold and escalates to
`then` otherwise (or when `first` fails), exactly as `backends.cascade` does. Routing the
labelled tickets once through each backend is enough to replay the cascade at every
threshold, so the sweep costs two routing passes, not 101.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tui.core.models import Decision

THRESHOLDS: tuple[float, ...] = tuple(round(i / 100, 2) for i in range(101))
"""0.00 to 1.00 in steps of 0.01; rounded so 0.7 is the same float as a written 0.7."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one backend answered for one ticket, as far as the cascade cares."""

    label: str | None
    """None when the backend failed."""
    confidence: float | None
    cost_usd: float = 0.0

    @classmethod
    def of(cls, decision: Decision) -> Outcome:
        label = decision.label if decision.ok else None
        return cls(label, decision.confidence if decision.ok else None, decision.cost_usd or 0.0)


@dataclass(frozen=True, slots=True)
class ThresholdRow:
    """The cascade's figures at one threshold."""

    threshold: float
    accuracy: float
    cost_per_1k_usd: float
    escalated: float
    """Share of tickets sent on to `then`."""


@dataclass(frozen=True, slots=True)
class TuningResult:
    target: float
    n: int
    rows: tuple[ThresholdRow, ...]
    pick: ThresholdRow
    reached: bool
    """Whether the pick reaches the target; if not, it is the most accurate threshold."""
    first_only: ThresholdRow
    """`first` alone (errors count as wrong), for comparison."""
    then_only: ThresholdRow
    """`then` alone, for comparison."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_accuracy": self.target,
            "n": self.n,
            "reached": self.reached,
            "pick": asdict(self.pick),
            "first_only": asdict(self.first_only),
            "then_only": asdict(self.then_only),
            "rows": [asdict(r) for r in self.rows],
        }


def _outcomes(items: Sequence[Decision | Outcome]) -> list[Outcome]:
    return [i if isinstance(i, Outcome) else Outcome.of(i) for i in items]


def tune(
    first: Sequence[Decision | Outcome],
    then: Sequence[Decision | Outcome],
    truth: Sequence[str],
    target: float = 0.9,
    thresholds: Sequence[float] = THRESHOLDS,
) -> TuningResult:
    """Replay the cascade at every threshold and pick the cheapest that reaches `target`.

    Ties in cost go to the lower threshold (fewer escalations for the same price). When no
    threshold reaches the target, the most accurate one is picked (then the cheapest).

    Args:
        first: Each ticket's answer from the first stage, aligned with `truth`.
        then: Each ticket's answer from the escalation stage.
        truth: The agents' labels.
        target: Accuracy to reach, in [0, 1].

    Raises:
        ValueError: The sequences differ in length, are empty, or the target is out of range.
    """
    if not len(first) == len(then) == len(truth):
        raise ValueError("first, then and truth must be aligned (same length)")
    if not truth:
        raise ValueError("no labelled tickets to tune on")
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target accuracy {target} is outside [0, 1]")
    a, b = _outcomes(first), _outcomes(then)
    n = len(truth)
    a_right = np.array([o.label == t for o, t in zip(a, truth, strict=True)], dtype=bool)
    b_right = np.array([o.label == t for o, t in zip(b, truth, strict=True)], dtype=bool)
    a_conf = np.array(
        [-1.0 if o.label is None or o.confidence is None else o.confidence for o in a]
    )
    a_cost = np.array([o.cost_usd for o in a])
    b_cost = np.array([o.cost_usd for o in b])
    rows = []
    for threshold in thresholds:
        escalate = a_conf < threshold
        right = np.where(escalate, b_right, a_right)
        cost = a_cost.sum() + b_cost[escalate].sum()
        rows.append(
            ThresholdRow(
                threshold=threshold,
                accuracy=float(right.mean()),
                cost_per_1k_usd=float(cost / n * 1000),
                escalated=float(escalate.mean()),
            )
        )
    reaching = [r for r in rows if r.accuracy >= target - 1e-12]
    if reaching:
        pick = min(reaching, key=lambda r: (r.cost_per_1k_usd, r.threshold))
    else:
        pick = min(rows, key=lambda r: (-r.accuracy, r.cost_per_1k_usd, r.threshold))
    first_only = ThresholdRow(-1.0, float(a_right.mean()), float(a_cost.sum() / n * 1000), 0.0)
    then_only = ThresholdRow(2.0, float(b_right.mean()), float(b_cost.sum() / n * 1000), 1.0)
    return TuningResult(target, n, tuple(rows), pick, bool(reaching), first_only, then_only)


def table_rows(result: TuningResult, every: float = 0.1) -> list[ThresholdRow]:
    """A readable subset: every `every` step plus the pick, in threshold order."""
    step = round(every * 100)
    shown = [r for r in result.rows if round(r.threshold * 100) % step == 0]
    if result.pick not in shown:
        shown.append(result.pick)
    return sorted(shown, key=lambda r: r.threshold)


_HEADER = re.compile(r"^\s*\[\s*backends\s*\.\s*(?:cascade|\"cascade\"|'cascade')\s*\]\s*(?:#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")


def _toml_value(value: Any) -> str:
    """A TOML literal for a plain value (a JSON string is a valid TOML basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(
        rf"^(\s*(?:{key}|\"{key}\"|'{key}')\s*=\s*)(\"[^\"]*\"|'[^']*'|[^\s#]+)(\s*#.*)?$"
    )


def update_cascade_block(
    text: str,
    values: Mapping[str, Any],
    extra_blocks: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """Set keys in the config's `[backends.cascade]` block, creating the block if needed.

    A text edit rather than a TOML rewrite, so the user's comments, order and formatting
    survive; a trailing comment on a replaced line is kept.

    Args:
        text: The config file's content ("" for a new file).
        values: Keys to set, e.g. type, first, then, threshold.
        extra_blocks: Other `[backends.NAME]` blocks to append (backends the cascade names
            that exist only as built-in defaults, which a file with a `[backends]` table
            would otherwise lose).
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _HEADER.match(line)), None)
    if start is None:
        block = ["[backends.cascade]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines = _append_block(lines, block)
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines)
        )
        last_key = start
        missing = dict(values)
        for i in range(start + 1, end):
            if "=" in lines[i] and not lines[i].lstrip().startswith("#"):
                last_key = i
            for key in list(missing):
                match = _key_line(key).match(lines[i])
                if match:
                    value = _toml_value(missing.pop(key))
                    lines[i] = f"{match.group(1)}{value}{match.group(3) or ''}"
        inserted = [f"{k} = {_toml_value(v)}" for k, v in missing.items()]
        lines[last_key + 1 : last_key + 1] = inserted
    for name, block_values in (extra_blocks or {}).items():
        block = [f"[backends.{_toml_key(name)}]"]
        block += [f"{k} = {_toml_value(v)}" for k, v in block_values.items()]
        lines = _append_block(lines, block)
    return "\n".join(lines) + "\n"


def _append_block(lines: list[str], block: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return [*lines, *([""] if lines else []), *block]

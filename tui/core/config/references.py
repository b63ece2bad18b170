"""Problems no single field shows: names that resolve to no backend, cascade cycles,
non-finite numbers anywhere (plugin keys included), and model paths that are folders.

These read the raw data, best effort, so they run even where a field is invalid: whatever
is malformed here is reported by the field validation instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tui.core.config.errors import key_path, short, suggest

Loc = tuple[int | str, ...]


def _get(block: Any, key: str) -> Any:
    if isinstance(block, Mapping):
        return block.get(key)
    return getattr(block, key, None)


def _non_finite(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every NaN or infinity anywhere in the raw data, plugin keys included."""
    if isinstance(value, float) and not math.isfinite(value):
        yield loc, f"{value} is not a finite number"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _non_finite(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*loc, index))


def _cascade_cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Each cycle among cascades once, as `[a, b, ..., a]` starting from its smallest name."""
    found: dict[tuple[str, ...], list[str]] = {}

    def walk(node: str, trail: list[str]) -> None:
        for target in edges.get(node, []):
            if target in trail:
                cycle = trail[trail.index(target) :]
                start = cycle.index(min(cycle))
                ring = cycle[start:] + cycle[:start]
                found.setdefault(tuple(ring), [*ring, ring[0]])
            elif target in edges:
                walk(target, [*trail, target])

    for node in sorted(edges):
        walk(node, [node])
    return [found[key] for key in sorted(found)]


def _model_file_key(kind: object) -> str | None:
    """The key naming a model file in a block of this type (a folder there fails only at
    routing time), from the type's Options."""
    if not isinstance(kind, str):
        return None
    from tui.core.config.options import options_class

    options = options_class(kind)
    return options.model_file_key if options is not None else None


def reference_problems(data: Mapping[str, Any], default_backend: str) -> list[tuple[Loc, str]]:
    """Every cross-entry problem of the raw config `data`, as (location, message) pairs.

    Args:
        data: The config as parsed (or as given in code: sections may be models).
        default_backend: The backend `[routing]` routes with when it names none.
    """
    problems = list(_non_finite(data, ()))
    backends = data.get("backends")
    if not isinstance(backends, Mapping):
        return problems
    names = [str(name) for name in backends]

    def unknown(name: str) -> str:
        listing = ", ".join(key_path([n]) for n in names) or "none"
        return f"no backend named {short(name)}{suggest(name, names)} (configured: {listing})"

    routing = data.get("routing", {})
    if isinstance(routing, Mapping | BaseModel):
        given = (
            routing
            if isinstance(routing, Mapping)
            else routing.model_dump(include=routing.model_fields_set)
        )
        active = given.get("backend", default_backend)
        if isinstance(active, str) and active not in backends:
            problems.append((("routing", "backend"), unknown(active)))
        # Only a reference the file names must exist: the built-in default one is simply
        # absent from a config that defines its own backends (no counterfactual cost then).
        reference = given.get("reference_backend")
        if isinstance(reference, str) and reference and reference not in backends:
            problems.append((("routing", "reference_backend"), unknown(reference)))
    edges: dict[str, list[str]] = {}
    for name, block in backends.items():
        kind = _get(block, "type")
        if kind == "cascade":
            targets = []
            for key in ("first", "then"):
                target = _get(block, key)
                if not isinstance(target, str):
                    continue
                if target == name:
                    problems.append((("backends", name, key), "a cascade cannot call itself"))
                elif target not in backends:
                    problems.append((("backends", name, key), unknown(target)))
                else:
                    targets.append(target)
            edges[name] = targets
        file_key = _model_file_key(kind)
        value = _get(block, file_key) if file_key else None
        if file_key and isinstance(value, str) and value and Path(value).expanduser().is_dir():
            where = ("backends", name, file_key)
            problems.append((where, "is a folder; give the model file in it"))
    cascades = {
        name: [t for t in ts if _get(backends[t], "type") == "cascade"]
        for name, ts in edges.items()
    }
    for cycle in _cascade_cycles(cascades):
        if len(cycle) > 2:  # a cascade calling itself is reported above
            path = " -> ".join(key_path([n]) for n in cycle)
            problems.append((("backends", cycle[0]), f"cascade cycle {path}: it would never end"))
    return problems

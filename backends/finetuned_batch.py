"""`label_scoring = "constrained"`: many tickets scored in a few decode batches, as a decoder
held to the taxonomy's labels would score them.

The exact scoring of `backends.llamacpp_finetuned` evaluates every node of the label trie,
each normalised over the whole vocabulary. On Banking77's 77 labels with Gemma's 262,144-token
vocabulary that is 348 rows of logits a ticket, 365 MB to copy and normalise: far slower on a
GPU than the forward passes themselves. This module scores the distribution of a decoder held
to the taxonomy instead: at each point where the labels' tokens branch, the model's logits are
normalised over the tokens the taxonomy allows there, and a label's probability is the product
of its shares at its branch points. Where only one label goes on, its tokens are forced and
their factor is exactly 1, so only branch points need logits: the prompt's last position, and a
node or two below the likeliest first tokens. A branch point whose path probability is below
`min_branch` is not expanded; its labels share its probability equally (none of them can then
outrank a label that is surer than `min_branch`).

Sequences are finite (`n_seq`), and a branch point holds its sequence until all its children
are expanded. Waiting branch points are expanded likeliest first; if every sequence is held by a
branch point whose children still wait (an unsure model on a deep taxonomy), the least likely
waiting branch point is spread like a pruned one (`Scored` stays normalised, the likelier
labels stay exact), which frees a sequence for the rest instead of failing the batch.

A few tickets on a GPU go through in one pass instead (`at_once`): every branch point's edge is
decoded in the same batch as the prompt, each edge on a sequence of its own that its ancestors'
tokens (the prompt included) also belong to, so one forward pass gives the logits of every
branch point, with no pruning. That costs a logits row per branch point (16 on Banking77) where
the level-wise path needs two or three, which a GPU does not notice and a CPU does (262,144
columns a row on Gemma); but it is one decode where the level-wise path makes one a level, and
one ticket's latency on a GPU is mostly the decodes.

Many tickets go through at once: ticket `k`'s prompt is sequence `k` of one unified KV cache,
all prompts decoded in as few batches as `n_batch` allows, then one batch a level of the tree
for every ticket, each expanded branch point on a sequence of its own that shares its ticket's
prompt cells (`seq_cp` in a unified cache copies no data). So 64 concurrent tickets cost a
handful of forward passes, not 64 times a handful.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends.llamacpp_finetuned import Scored, label_ids, normalised
from tui.core.learning.llm.prompt import prompt_ids
from tui.core.models import Taxonomy

__all__ = ["MIN_BRANCH", "LabelTree", "Node", "score_many"]

MIN_BRANCH = 1e-4
"""Branch points less probable than this are not expanded (their labels share their mass)."""
TICKETS_PER_SEQUENCES = 4
"""A group of tickets takes at most a quarter of the sequences; the rest hold branch points."""
AT_ONCE_TICKETS = 8
"""Up to this many tickets on a GPU are scored in one pass (see the module)."""


@dataclass(slots=True)
class Node:
    """A branch point of the labels' tokens, or a leaf (one label left).

    `edge` is the tokens from the parent branch point's chosen token (first) through the
    tokens every label below shares (forced) to this node; the model's logits after the last
    of them decide among `children`.
    """

    edge: tuple[int, ...]
    labels: list[str]
    children: dict[int, Node] = field(default_factory=dict)


class LabelTree:
    """The labels' answer tokens as a radix tree cut at branch points."""

    def __init__(self, answers: dict[str, list[int]]) -> None:
        self.answers = answers
        self.root = self._build((), sorted(answers), 0)

    def _build(self, edge: tuple[int, ...], labels: list[str], depth: int) -> Node:
        node = Node(edge=edge, labels=labels)
        if len(labels) < 2:
            return node
        forced: list[int] = []
        # distinct answers that end in end-of-sequence must branch before either ends
        while len({self.answers[name][depth] for name in labels}) == 1:
            forced.append(self.answers[labels[0]][depth])
            depth += 1
        node.edge = edge + tuple(forced)
        groups: dict[int, list[str]] = {}
        for name in labels:
            groups.setdefault(self.answers[name][depth], []).append(name)
        for token, members in sorted(groups.items()):
            node.children[token] = self._build((token,), members, depth + 1)
        return node

    def branch_points(self) -> int:
        """How many nodes need logits (for tests and the docs' arithmetic)."""
        stack, count = [self.root], 0
        while stack:
            node = stack.pop()
            if node.children:
                count += 1
                stack.extend(node.children.values())
        return count


@dataclass(slots=True)
class _Open:
    """One ticket's branch point with its logits over the children's tokens in hand."""

    ticket: int
    node: Node
    logprob: float
    seq: int
    last_pos: int
    """Position of the node's last edge token in `seq`."""
    logits: Any


Item = tuple[int, int, int | tuple[int, ...]]
"""A token of a decode batch: (token, position, its sequence or sequences)."""


def _decode(
    llm: Any, llama_cpp: Any, items: Sequence[Item], wanted: dict[int, list[int]], n_batch: int
) -> dict[int, Any]:
    """Decode `items` in order, in batches of at most `n_batch`; for each index in `wanted`,
    the logits of the listed tokens at that item (copied out: llama.cpp reuses its buffer)."""
    out: dict[int, Any] = {}
    n_vocab = int(llm.n_vocab())
    for start in range(0, len(items), n_batch):
        part = items[start : start + n_batch]
        seqs = [seq if isinstance(seq, tuple) else (seq,) for _token, _pos, seq in part]
        batch = llama_cpp.llama_batch_init(len(part), 0, max(len(s) for s in seqs))
        try:
            for index, (token, pos, _seq) in enumerate(part):
                batch.token[index] = token
                batch.pos[index] = pos
                batch.n_seq_id[index] = len(seqs[index])
                for j, seq in enumerate(seqs[index]):
                    batch.seq_id[index][j] = seq
                batch.logits[index] = (start + index) in wanted
            batch.n_tokens = len(part)
            status = llama_cpp.llama_decode(llm._ctx.ctx, batch)
            if status != 0:
                raise RuntimeError(
                    f"llama_decode returned {status} for a batch of {len(part)} tokens"
                    " (raise n_ctx: the tickets scored at once did not fit the KV cache)"
                )
            for index in range(len(part)):
                tokens = wanted.get(start + index)
                if tokens is not None:
                    pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, index)
                    row = np.ctypeslib.as_array(pointer, shape=(n_vocab,))
                    out[start + index] = row[tokens].astype(np.float64)
        finally:
            llama_cpp.llama_batch_free(batch)
    return out


def _log_shares(logits: Any) -> Any:
    """Log-softmax over the allowed tokens only: the constrained decoder's step."""
    top = float(logits.max())
    return logits - (top + math.log(float(np.exp(logits - top).sum())))


def groups(sizes: Sequence[int], reserve: int, n_ctx: int, n_tickets: int) -> list[list[int]]:
    """Ticket indices grouped so that a group's prompts plus `reserve` cells each fit the
    context's cells, with at most `n_tickets` tickets a group."""
    found: list[list[int]] = []
    current: list[int] = []
    cells = 0
    for index, size in enumerate(sizes):
        need = size + reserve
        if current and (cells + need > n_ctx or len(current) >= n_tickets):
            found.append(current)
            current, cells = [], 0
        current.append(index)
        cells += need
    if current:
        found.append(current)
    return found


def score_many(
    llm: Any,
    llama_cpp: Any,
    texts: Sequence[str],
    taxonomy: Taxonomy,
    n_ctx: int,
    *,
    min_branch: float = MIN_BRANCH,
    at_once: bool | None = None,
    own_tokens: Mapping[str, int] | None = None,
) -> list[Scored]:
    """Every ticket's label distribution under the constrained decoder (see the module).

    The context must come from `llamacpp_finetuned.open_for_scoring` (a unified KV cache with
    many sequences); it is left empty. `at_once`: score in one pass (exact, no pruning); None
    chooses it for up to `AT_ONCE_TICKETS` tickets on a model whose layers are on a GPU.
    `own_tokens`: each label's one reserved token (`--objective classify`; see `label_ids`).
    """
    answers = label_ids(llm, taxonomy, own_tokens)
    tree = LabelTree(answers)
    longest = max(len(ids) for ids in answers.values())
    prompts = [prompt_ids(llm, text, n_ctx - longest) for text in texts]
    if len(tree.root.labels) < 2:  # one label: nothing to decide
        return [
            Scored(probabilities=dict.fromkeys(answers, 1.0), prompt_tokens=len(p), answer_tokens=0)
            for p in prompts
        ]
    n_seq = max(1, int(llama_cpp.llama_n_seq_max(llm._ctx.ctx)))
    n_batch = max(1, int(llm.n_batch))
    if at_once is None:
        at_once = len(prompts) <= AT_ONCE_TICKETS and _on_gpu(llm, llama_cpp)
    plan = _OnePass(tree) if at_once else None
    if plan is not None and len(plan.nodes) > n_seq:
        plan = None
    scorer = _Group(llm, llama_cpp, tree, n_batch, n_seq, min_branch)
    results: list[Scored] = []
    memory = llm._ctx.memory
    llm.reset()
    try:
        if plan is not None:
            reserve, per_group = plan.cells, n_seq // len(plan.nodes)
        else:
            reserve = len(tree.root.edge) + 2 * longest
            per_group = max(1, n_seq // TICKETS_PER_SEQUENCES)
        for group in groups([len(p) for p in prompts], reserve, n_ctx, per_group):
            llama_cpp.llama_memory_clear(memory, True)
            chosen = [prompts[i] for i in group]
            if plan is not None:
                results.extend(plan.score(llm, llama_cpp, chosen, n_batch))
            else:
                results.extend(scorer.score(chosen))
    finally:
        llama_cpp.llama_memory_clear(memory, True)
        llm.n_tokens = 0
    return results


def _on_gpu(llm: Any, llama_cpp: Any) -> bool:
    """The model's layers are offloaded to a GPU (a CPU build ignores `n_gpu_layers`)."""
    layers = int(getattr(getattr(llm, "model_params", None), "n_gpu_layers", 0) or 0)
    return layers != 0 and bool(llama_cpp.llama_supports_gpu_offload())


class _OnePass:
    """Every branch point of the tree decoded in one batch with its tickets' prompts."""

    def __init__(self, tree: LabelTree) -> None:
        self.tree = tree
        self.nodes: list[Node] = []
        """The branch points (nodes with children), parents before children: the root first."""
        self.parent: list[int] = []
        self.below: list[list[int]] = []
        """Each branch point's own index and every branch point under it."""
        self._walk(tree.root, -1)
        self.cells = sum(len(node.edge) for node in self.nodes)
        """Cells a ticket needs beyond its prompt (the root's edge counts with them)."""
        self.index = {id(node): i for i, node in enumerate(self.nodes)}

    def _walk(self, node: Node, parent: int) -> list[int]:
        index = len(self.nodes)
        self.nodes.append(node)
        self.parent.append(parent)
        self.below.append([index])
        for child in node.children.values():
            if child.children:
                self.below[index].extend(self._walk(child, index))
        return self.below[index]

    def score(
        self, llm: Any, llama_cpp: Any, prompts: list[list[int]], n_batch: int
    ) -> list[Scored]:
        """One decode for the group: ticket k's branch point i is sequence k * B + i."""
        width = len(self.nodes)
        items: list[Item] = []
        wanted: dict[int, list[int]] = {}
        rows: list[list[int]] = []
        for k, ids in enumerate(prompts):
            base = k * width
            last: list[int] = [0] * width
            found: list[int] = [0] * width
            for i, node in enumerate(self.nodes):
                seqs = tuple(base + j for j in self.below[i])
                if i == 0:
                    tokens, start = [*ids, *node.edge], 0
                else:
                    tokens, start = list(node.edge), last[self.parent[i]] + 1
                items.extend((token, start + j, seqs) for j, token in enumerate(tokens))
                last[i] = start + len(tokens) - 1
                found[i] = len(items) - 1
                wanted[found[i]] = list(node.children)
            rows.append(found)
        got = _decode(llm, llama_cpp, items, wanted, n_batch)
        scored: list[Scored] = []
        for found, ids in zip(rows, prompts, strict=True):
            logp: dict[str, float] = {}
            stack: list[tuple[Node, float]] = [(self.tree.root, 0.0)]
            while stack:
                node, path = stack.pop()
                shares = _log_shares(got[found[self.index[id(node)]]])
                for share, child in zip(shares, node.children.values(), strict=True):
                    if child.children:
                        stack.append((child, path + float(share)))
                    else:
                        logp[child.labels[0]] = path + float(share)
            scored.append(
                Scored(
                    probabilities=normalised({name: logp[name] for name in self.tree.answers}),
                    prompt_tokens=len(ids),
                    answer_tokens=0,
                )
            )
        return scored


class _Group:
    """Scores one group of tickets that fits the context together."""

    def __init__(
        self, llm: Any, llama_cpp: Any, tree: LabelTree, n_batch: int, n_seq: int, floor: float
    ) -> None:
        self.llm, self.llama_cpp, self.tree = llm, llama_cpp, tree
        self.n_batch, self.n_seq = n_batch, n_seq
        self.log_floor = math.log(floor) if floor > 0 else -math.inf
        self.n_tickets = 0
        self.free: list[int] = []
        self.spread_for_room = 0
        """Branch points spread for want of a free sequence (none when `n_seq` suffices)."""

    def score(self, prompts: list[list[int]]) -> list[Scored]:
        root = self.tree.root
        children = list(root.children)
        items: list[Item] = []
        wanted: dict[int, list[int]] = {}
        ends: list[int] = []
        for k, ids in enumerate(prompts):
            full = [*ids, *root.edge]
            items.extend((token, pos, k) for pos, token in enumerate(full))
            wanted[len(items) - 1] = children
            ends.append(len(full) - 1)
        got = _decode(self.llm, self.llama_cpp, items, wanted, self.n_batch)
        opened = [
            _Open(k, root, 0.0, k, ends[k], got[index]) for k, index in enumerate(sorted(wanted))
        ]
        logp: list[dict[str, float]] = [{} for _ in prompts]
        waiting: list[tuple[_Open, Node, float]] = []
        self.n_tickets = len(prompts)
        self.free = list(range(self.n_seq - 1, len(prompts) - 1, -1))
        while opened or waiting:
            for state in opened:
                waiting.extend(self._settle(state, logp))
            opened = self._expand(waiting, logp)
        memory = self.llm._ctx.memory
        for seq in range(len(prompts)):
            self.llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
        return [
            Scored(
                probabilities=normalised({name: totals[name] for name in self.tree.answers}),
                prompt_tokens=len(ids),
                answer_tokens=0,
            )
            for totals, ids in zip(logp, prompts, strict=True)
        ]

    def _settle(
        self, state: _Open, logp: list[dict[str, float]]
    ) -> list[tuple[_Open, Node, float]]:
        """Share the node's probability among its children: leaves and unlikely branch points
        are final; the others are returned to be expanded."""
        shares = _log_shares(state.logits)
        more: list[tuple[_Open, Node, float]] = []
        for share, child in zip(shares, state.node.children.values(), strict=True):
            path = state.logprob + float(share)
            if len(child.labels) == 1:
                logp[state.ticket][child.labels[0]] = path
            elif path < self.log_floor:
                spread = path - math.log(len(child.labels))
                for name in child.labels:
                    logp[state.ticket][name] = spread
            else:
                more.append((state, child, path))
        if not more:
            self._release(state)
        return more

    def _release(self, state: _Open) -> None:
        """A branch point's own sequence is dropped once no child needs to copy it (a
        ticket's prompt sequence stays until the group ends)."""
        if state.seq >= self.n_tickets:
            self.llama_cpp.llama_memory_seq_rm(self.llm._ctx.memory, state.seq, -1, -1)
            self.free.append(state.seq)

    def _expand(
        self, waiting: list[tuple[_Open, Node, float]], logp: list[dict[str, float]]
    ) -> list[_Open]:
        """Decode as many waiting branch points as there are free sequences, likeliest first,
        in one batch; with no sequence free, spread the least likely ones (see the module)."""
        free = self.free
        waiting.sort(key=lambda entry: entry[2], reverse=True)
        while waiting and not free:
            parent, child, path = waiting.pop()
            spread = path - math.log(len(child.labels))
            for name in child.labels:
                logp[parent.ticket][name] = spread
            self.spread_for_room += 1
            if all(other is not parent for other, _child, _path in waiting):
                self._release(parent)
        if not waiting:
            return []
        taken, waiting[:] = waiting[: len(free)], waiting[len(free) :]
        memory = self.llm._ctx.memory
        items: list[Item] = []
        wanted: dict[int, list[int]] = {}
        placed: list[tuple[_Open, Node, float, int, int]] = []
        for parent, child, path in taken:
            seq = free.pop()
            self.llama_cpp.llama_memory_seq_cp(memory, parent.seq, seq, 0, parent.last_pos + 1)
            for j, token in enumerate(child.edge):
                items.append((token, parent.last_pos + 1 + j, seq))
            wanted[len(items) - 1] = list(child.children)
            placed.append((parent, child, path, seq, len(items) - 1))
        still = {id(parent) for parent, _child, _path in waiting}
        for parent in {id(p): p for p, _c, _path in taken}.values():
            if id(parent) not in still:
                self._release(parent)
        got = _decode(self.llm, self.llama_cpp, items, wanted, self.n_batch)
        return [
            _Open(parent.ticket, child, path, seq, parent.last_pos + len(child.edge), got[index])
            for parent, child, path, seq, index in placed
        ]

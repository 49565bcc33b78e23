"""``graph``: a pipeline's topology as Mermaid or Graphviz dot, without running it.

Both formats are drawn by one walk over the same ``Node`` tree; a ``_Syntax`` holds the
only things that differ (how each kind of node, a box and an edge are written), so the
two drawings cannot disagree about the topology.

A combinator is a fork node followed by one box per branch. A ``Parallel`` or a
``Route`` ends in a join node, and the chain goes on from there. A ``Tap`` sends each
branch on to its named output, and the chain goes on from the fork itself, because the
main path never waits for a tap. A ``Sync`` has no fork and no ``input``: each of its
sources is an input of its own (a stadium, like an output) feeding its branch box, and
the boxes meet at the sync's join node, labelled with its policy.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .._combinators import BranchOptions, Chain, JunctionSlot, Route, Slot, Tap
from .._pipeline import Pipeline, PipelineStage
from .._sync import Sync
from ._loading import cleanup_tree, load_pipeline

NodeKind = Literal["stage", "pipeline", "branch", "fork", "sync", "join", "source", "output"]
"""What a ``Node`` is. A ``pipeline`` (a nested pipeline) or a ``branch`` is a box
around ``children``. A ``fork`` has ``branches`` and, unless it is a tap, a ``join``. A
``sync`` has ``branches``, each fed by its ``source``, and a ``join``; it is not drawn
itself. An ``output`` is where a tap branch ends."""

_RESERVED_IDS = re.compile(r"join|out|perkey|b\d+")
_PLAIN_ID = re.compile(r"[A-Za-z][A-Za-z0-9]*")


@dataclass(frozen=True)
class Node:
    """One element of the drawing: a stage, a box of stages, or part of a combinator."""

    id: str
    label: str
    children: tuple[Node, ...] = ()
    kind: NodeKind = "stage"
    branches: tuple[Branch, ...] = ()
    """A fork's branches, in declaration order."""
    join: Node | None = None
    """The node after a fork's branches (None for a tap: its chain goes on from the fork)."""

    @property
    def entry(self) -> str:
        """The node an incoming edge points at (a box's first stage)."""
        return self.children[0].entry if self.children else self.id

    @property
    def exit(self) -> str:
        """The node an outgoing edge starts from (a box's last stage, a fork's join)."""
        if self.kind in ("fork", "sync"):
            return self.join.exit if self.join is not None else self.id
        return self.children[-1].exit if self.children else self.id


@dataclass(frozen=True)
class Branch:
    """One branch of a fork: a box of stages, the label on the edge into it (a route's
    key) and, for a tap, the output it ends in."""

    box: Node
    edge_label: str = ""
    output: Node | None = None
    source: Node | None = None
    """A ``Sync`` source: the input that feeds the box."""


def topology(pipeline: Pipeline, prefix: str = "s") -> tuple[Node, ...]:
    """The steps in order: nested pipelines (``PipelineStage``) and combinators expanded."""
    return _steps(pipeline._slots, prefix)


def _steps(slots: Sequence[Slot], prefix: str) -> tuple[Node, ...]:
    nodes = []
    for index, slot in enumerate(slots, start=1):
        node_id = f"{prefix}{index}"
        if isinstance(slot, JunctionSlot) and isinstance(slot.combinator, Sync):
            nodes.append(_sync(slot, slot.combinator, node_id))
        elif isinstance(slot, JunctionSlot):
            nodes.append(_fork(slot, node_id))
        elif isinstance(slot.stage, PipelineStage):
            mode = slot.stage.pipeline.mode
            label = f"{slot.name} ({mode})" if mode else slot.name
            children = topology(slot.stage.pipeline, f"{node_id}_")
            nodes.append(Node(node_id, label, children, kind="pipeline"))
        else:
            nodes.append(Node(node_id, slot.name))
    return tuple(nodes)


def _fork(slot: JunctionSlot, node_id: str) -> Node:
    """A combinator: the fork, a box per branch, and the join or the tap's outputs."""
    combinator = slot.combinator
    tap = combinator if isinstance(combinator, Tap) else None
    route = combinator if isinstance(combinator, Route) else None
    default = None if route is None or route.default is None else str(route.default)
    ids = _branch_ids(list(slot.branches), node_id)
    branches = tuple(
        Branch(
            _branch_box(ids[key], _branch_label(key, chain.options, tap, key == default), chain),
            edge_label=key if route is not None else "",
            output=None if tap is None else Node(f"{ids[key]}_out", key, kind="output"),
        )
        for key, chain in slot.branches.items()
    )
    if tap is not None:
        return Node(node_id, f"{slot.name} · tap", kind="fork", branches=branches)
    if route is None:
        label, join_label = "parallel", "zip by item"
    else:
        if route.factory is not None:
            branches = (_factory_placeholder(route, f"{node_id}_perkey"),)
        label = "route by key"
        join_label = "merge · input order" if route.ordered else "merge · per-key order"
    join = Node(f"{node_id}_join", join_label, kind="join")
    return Node(node_id, f"{slot.name} · {label}", kind="fork", branches=branches, join=join)


def _sync(slot: JunctionSlot, sync: Sync, node_id: str) -> Node:
    """A ``Sync``: an input per source, the source's box, and the join they meet at."""
    ids = _branch_ids(list(slot.branches), node_id)
    branches = tuple(
        Branch(
            _branch_box(ids[key], _source_label(key, chain.options), chain),
            source=Node(f"{ids[key]}_in", key, kind="source"),
        )
        for key, chain in slot.branches.items()
    )
    join = Node(f"{node_id}_join", _sync_label(slot.name, sync), kind="join")
    return Node(node_id, f"{slot.name} · sync", kind="sync", branches=branches, join=join)


def _sync_label(name: str, sync: Sync) -> str:
    """The sync's join: its policy, the tolerance and what triggers a set, then the
    options that differ from the defaults."""
    if sync.policy == "exact":
        parts = [name, "exact stamps", f"anchor {sync.anchor}"]
    elif sync.policy == "latest":
        parts = [name, f"latest ≤{_duration(sync.tolerance)} old", f"on {sync.anchor}"]
    else:
        parts = [name, f"approximate ±{_duration(sync.tolerance)}", f"anchor {sync.anchor}"]
    if sync.max_wait is not None:
        parts.append(f"max_wait {_duration(sync.max_wait)}")
    if sync.buffer != 8:
        parts.append(f"buffer {sync.buffer}")
    if sync.missing != "drop":
        parts.append(f"missing {sync.missing}")
    return " · ".join(parts)


def _source_label(key: str, options: BranchOptions) -> str:
    """A source box's label: its key and its own window, when it has one."""
    parts = [key]
    if options.max_age is not None:
        parts.append(f"max_age {_duration(options.max_age)}")
    if options.capacity is not None:
        on_full = f", {options.on_full}" if options.on_full is not None else ""
        parts.append(f"cap {options.capacity}{on_full}")
    elif options.on_full is not None:
        parts.append(options.on_full)
    return " · ".join(parts)


def _branch_box(box_id: str, label: str, chain: Chain) -> Node:
    return Node(box_id, label, _steps(chain.slots, f"{box_id}_"), kind="branch")


def _factory_placeholder(route: Route, box_id: str) -> Branch:
    """A factory route's branches exist only once their keys are seen: one stand-in box."""
    limit = "" if route.max_keys is None else f", max_keys={route.max_keys}"
    name = getattr(route.factory, "__name__", "factory")
    stand_in = Node(f"{box_id}_1", f"{'factory' if name == '<lambda>' else name}(key)")
    box = Node(box_id, f"per key (factory{limit})", (stand_in,), kind="branch")
    return Branch(box, edge_label="each key")


def _branch_ids(keys: list[str], fork_id: str) -> dict[str, str]:
    """Node ids for the branch boxes: ``s2_detect`` when every key is a plain word, else
    ``s2_b1``, ``s2_b2``... (ids never collide with a stage's ``s2_1`` or the ``_join``)."""
    plain = all(_PLAIN_ID.fullmatch(key) and not _RESERVED_IDS.fullmatch(key) for key in keys)
    return {
        key: f"{fork_id}_{key if plain else f'b{index}'}" for index, key in enumerate(keys, start=1)
    }


def _branch_label(key: str, options: BranchOptions, tap: Tap | None, default: bool) -> str:
    """A branch box's label: its key and the options that differ from the defaults (a
    tap's own bound applies to each of its branches that has none)."""
    parts = [key]
    if default:
        parts.append("default")
    if not options.required and tap is None:
        parts.append("optional")
    if options.max_age is not None:
        parts.append(f"max_age {_duration(options.max_age)}")
    if tap is not None:
        parts.append(_capacity(options.capacity or tap.capacity, options.on_full or tap.on_full))
    elif options.capacity is not None:
        parts.append(_capacity(options.capacity, options.on_full or "drop_oldest"))
    if options.select is not None:
        parts.append("select")
    return " · ".join(parts)


def _capacity(capacity: int, on_full: str) -> str:
    return f"cap {capacity}" + (", reject" if on_full == "reject" else "")


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


@dataclass(frozen=True)
class _Syntax:
    """How one format writes each part; ``{id}``, ``{label}``, ``{left}``, ``{right}`` are filled in."""

    head: Callable[[Pipeline], list[str]]
    nodes: Mapping[str, str]
    """The declaration of each kind of node that is not a box."""
    box_open: tuple[str, ...]
    box_close: str
    edge: str
    labelled_edge: str
    quote: Callable[[str], str]
    edge_quote: Callable[[str], str]
    input: str
    output: str
    tail: tuple[str, ...] = ()


def _mermaid_quote(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _mermaid_edge_quote(text: str) -> str:
    """A route key on an edge: as is when it is a plain word (``-->|front|``), else quoted."""
    return text if re.fullmatch(r"[\w .-]+", text, re.ASCII) else _mermaid_quote(text)


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mermaid_head(pipeline: Pipeline) -> list[str]:
    lines = ["flowchart LR"]
    if pipeline.name:
        lines.append(f"    %% pipeline {pipeline.name}")
    return lines


def _dot_head(pipeline: Pipeline) -> list[str]:
    return [
        f"digraph {_dot_quote(pipeline.name or 'pipeline')} {{",
        "    rankdir=LR;",
        "    node [shape=box];",
    ]


MERMAID = _Syntax(
    head=_mermaid_head,
    nodes={
        "stage": "{id}[{label}]",
        "fork": "{id}{{{{{label}}}}}",
        "join": "{id}(({label}))",
        "source": "{id}([{label}])",
        "output": "{id}([{label}])",
    },
    box_open=("subgraph {id} [{label}]", "    direction LR"),
    box_close="end",
    edge="{left} --> {right}",
    labelled_edge="{left} -->|{label}| {right}",
    quote=_mermaid_quote,
    edge_quote=_mermaid_edge_quote,
    input='input(["input"])',
    output='output(["output"])',
)
DOT = _Syntax(
    head=_dot_head,
    nodes={
        "stage": "{id} [label={label}];",
        "fork": "{id} [shape=hexagon, label={label}];",
        "join": "{id} [shape=circle, margin=0, label={label}];",
        "source": "{id} [shape=oval, label={label}];",
        "output": "{id} [shape=oval, label={label}];",
    },
    box_open=("subgraph cluster_{id} {{", "    label={label};"),
    box_close="}}",
    edge="{left} -> {right};",
    labelled_edge="{left} -> {right} [label={label}];",
    quote=_dot_quote,
    edge_quote=_dot_quote,
    input='input [shape=oval, label="input"];',
    output='output [shape=oval, label="output"];',
    tail=("}",),
)


def to_mermaid(pipeline: Pipeline) -> str:
    """A Mermaid ``flowchart LR``; nested pipelines and branches are subgraphs."""
    return _render(pipeline, MERMAID)


def to_dot(pipeline: Pipeline) -> str:
    """A Graphviz ``digraph``; nested pipelines and branches are clusters."""
    return _render(pipeline, DOT)


def _render(pipeline: Pipeline, syntax: _Syntax) -> str:
    nodes = topology(pipeline)
    lines = syntax.head(pipeline)
    if not _starts_with_sync(nodes):
        lines.append("    " + syntax.input)
    lines.extend(_declarations(nodes, syntax, indent=1))
    lines.append("    " + syntax.output)
    for left, right, label in _edges(nodes):
        edge = syntax.labelled_edge if label else syntax.edge
        lines.append("    " + edge.format(left=left, right=right, label=syntax.edge_quote(label)))
    lines.extend(syntax.tail)
    return "\n".join(lines) + "\n"


def _declarations(nodes: Sequence[Node], syntax: _Syntax, indent: int) -> Iterator[str]:
    pad = "    " * indent
    for node in nodes:
        fields = {"id": node.id, "label": syntax.quote(node.label)}
        if node.kind in ("pipeline", "branch"):
            yield from (pad + line.format(**fields) for line in syntax.box_open)
            yield from _declarations(node.children, syntax, indent + 1)
            yield pad + syntax.box_close.format()
            continue
        if node.kind == "sync":  # its sources, their boxes and the join; no node of its own
            for branch in node.branches:
                assert branch.source is not None
                yield from _declarations([branch.source, branch.box], syntax, indent)
            assert node.join is not None
            yield from _declarations([node.join], syntax, indent)
            continue
        yield pad + syntax.nodes[node.kind].format(**fields)
        boxes = [branch.box for branch in node.branches]
        ends = [branch.output for branch in node.branches if branch.output is not None]
        yield from _declarations([*boxes, *ends], syntax, indent)
        if node.join is not None:
            yield from _declarations([node.join], syntax, indent)


Edge = tuple[str, str, str]
"""(from, to, label); the label is empty except on a route's edges into its branches."""


def _starts_with_sync(nodes: Sequence[Node]) -> bool:
    """Whether the pipeline's inputs are a ``Sync``'s sources (then there is no ``input``)."""
    return bool(nodes) and nodes[0].kind == "sync"


def _edges(nodes: Sequence[Node]) -> Iterator[Edge]:
    """Every edge: input -> steps -> output (a ``Sync``'s sources instead of input), then
    what is inside each box and combinator."""
    start = [] if _starts_with_sync(nodes) else [Node("input", "")]
    yield from _chain([*start, *nodes, Node("output", "")])


def _chain(nodes: Sequence[Node]) -> Iterator[Edge]:
    for left, right in itertools.pairwise(nodes):
        yield left.exit, right.entry, ""
    for node in nodes:
        yield from _inside(node)


def _inside(node: Node) -> Iterator[Edge]:
    """A box's own chain; a fork's edges into each branch, along it, and out of it."""
    if node.kind == "sync":
        assert node.join is not None
        for branch in node.branches:
            assert branch.source is not None
            yield branch.source.id, branch.box.entry, ""
            yield from _chain(branch.box.children)
            yield branch.box.exit, node.join.id, ""
        return
    if node.kind != "fork":
        yield from _chain(node.children)
        return
    for branch in node.branches:
        yield node.id, branch.box.entry, branch.edge_label
        yield from _chain(branch.box.children)
    for branch in node.branches:
        end = branch.output if branch.output is not None else node.join
        if end is not None:
            yield branch.box.exit, end.id, ""


def graph_command(args: argparse.Namespace) -> int:
    """Print the drawing; stop whatever nested pipelines the factory started."""
    pipeline = load_pipeline(args.target)
    try:
        sys.stdout.write((to_dot if args.format == "dot" else to_mermaid)(pipeline))
    finally:
        cleanup_tree(pipeline)
    return 0

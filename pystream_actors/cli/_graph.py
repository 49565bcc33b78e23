"""``graph``: a pipeline's topology as Mermaid or Graphviz dot, without running it.

Both formats are drawn by one walk over the same ``Node`` tree; a ``_Syntax`` holds the
only things that differ (how a node, a box around a nested pipeline and an edge are
written), so the two drawings cannot disagree about the topology.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .._pipeline import Pipeline, PipelineStage
from ._loading import cleanup_tree, load_pipeline


@dataclass(frozen=True)
class Node:
    """One stage in the drawing; a nested pipeline has ``children`` and is drawn as a box."""

    id: str
    label: str
    children: tuple[Node, ...] = ()

    @property
    def entry(self) -> str:
        """The node an incoming edge points at (a nested pipeline's first stage)."""
        return self.children[0].entry if self.children else self.id

    @property
    def exit(self) -> str:
        """The node an outgoing edge starts from (a nested pipeline's last stage)."""
        return self.children[-1].exit if self.children else self.id


def topology(pipeline: Pipeline, prefix: str = "s") -> tuple[Node, ...]:
    """The stages in order, nested pipelines (``PipelineStage``) expanded."""
    nodes = []
    for index, (name, stage) in enumerate(pipeline.stages, start=1):
        node_id = f"{prefix}{index}"
        if isinstance(stage, PipelineStage):
            mode = stage.pipeline.mode
            label = f"{name} ({mode})" if mode else name
            nodes.append(Node(node_id, label, topology(stage.pipeline, f"{node_id}_")))
        else:
            nodes.append(Node(node_id, name))
    return tuple(nodes)


@dataclass(frozen=True)
class _Syntax:
    """How one format writes each part; ``{id}``, ``{label}``, ``{left}``, ``{right}`` are filled in."""

    head: Callable[[Pipeline], list[str]]
    node: str
    box_open: tuple[str, ...]
    box_close: str
    edge: str
    quote: Callable[[str], str]
    output: str
    tail: tuple[str, ...] = ()


def _mermaid_quote(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mermaid_head(pipeline: Pipeline) -> list[str]:
    lines = ["flowchart LR"]
    if pipeline.name:
        lines.append(f"    %% pipeline {pipeline.name}")
    return [*lines, '    input(["input"])']


def _dot_head(pipeline: Pipeline) -> list[str]:
    return [
        f"digraph {_dot_quote(pipeline.name or 'pipeline')} {{",
        "    rankdir=LR;",
        "    node [shape=box];",
        '    input [shape=oval, label="input"];',
    ]


MERMAID = _Syntax(
    head=_mermaid_head,
    node="{id}[{label}]",
    box_open=("subgraph {id} [{label}]", "    direction LR"),
    box_close="end",
    edge="{left} --> {right}",
    quote=_mermaid_quote,
    output='output(["output"])',
)
DOT = _Syntax(
    head=_dot_head,
    node="{id} [label={label}];",
    box_open=("subgraph cluster_{id} {{", "    label={label};"),
    box_close="}}",
    edge="{left} -> {right};",
    quote=_dot_quote,
    output='output [shape=oval, label="output"];',
    tail=("}",),
)


def to_mermaid(pipeline: Pipeline) -> str:
    """A Mermaid ``flowchart LR``; nested pipelines are subgraphs."""
    return _render(pipeline, MERMAID)


def to_dot(pipeline: Pipeline) -> str:
    """A Graphviz ``digraph``; nested pipelines are clusters."""
    return _render(pipeline, DOT)


def _render(pipeline: Pipeline, syntax: _Syntax) -> str:
    nodes = topology(pipeline)
    lines = syntax.head(pipeline)
    lines.extend(_nodes(nodes, syntax, indent=1))
    lines.append("    " + syntax.output)
    lines.extend(
        "    " + syntax.edge.format(left=left, right=right) for left, right in _edges(nodes)
    )
    lines.extend(syntax.tail)
    return "\n".join(lines) + "\n"


def _nodes(nodes: Sequence[Node], syntax: _Syntax, indent: int) -> Iterator[str]:
    pad = "    " * indent
    for node in nodes:
        fields = {"id": node.id, "label": syntax.quote(node.label)}
        if not node.children:
            yield pad + syntax.node.format(**fields)
            continue
        yield from (pad + line.format(**fields) for line in syntax.box_open)
        yield from _nodes(node.children, syntax, indent + 1)
        yield pad + syntax.box_close.format()


def _edges(nodes: Sequence[Node]) -> Iterator[tuple[str, str]]:
    """Every edge: input -> stages -> output, then the chain inside each nested pipeline."""
    yield from _chain([Node("input", ""), *nodes, Node("output", "")])


def _chain(nodes: Sequence[Node]) -> Iterator[tuple[str, str]]:
    for left, right in itertools.pairwise(nodes):
        yield left.exit, right.entry
    for node in nodes:
        yield from _chain(node.children)


def graph_command(args: argparse.Namespace) -> int:
    """Print the drawing; stop whatever nested pipelines the factory started."""
    pipeline = load_pipeline(args.target)
    try:
        sys.stdout.write((to_dot if args.format == "dot" else to_mermaid)(pipeline))
    finally:
        cleanup_tree(pipeline)
    return 0

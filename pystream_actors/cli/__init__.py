"""The ``pystream-actors`` command line (also ``python -m pystream_actors``).

``run`` feeds a pipeline from a factory through its own input loop and shows each
stage's figures live, so a bottleneck is visible without writing any code; ``graph``
prints a pipeline's topology; ``demo`` and ``bench`` run the scripts that ship with the
source tree. Only the standard library is needed; ``rich``
(``pip install 'pystream-actors[cli]'``) makes the live view a redrawn table instead of
plain text.

One module per job: ``_loading`` (MODULE:FACTORY), ``_graph`` (Mermaid and dot),
``_table`` (the stage table, plain or rich), ``_run`` (feeding and watching),
``_scripts`` (demo and bench) and ``_main`` (the parser).
"""

from __future__ import annotations

from ._errors import CliError
from ._graph import Node, to_dot, to_mermaid, topology
from ._loading import cleanup_tree, load_pipeline
from ._main import main
from ._run import EXIT_INTERRUPTED, EXIT_TERMINATED, Session
from ._table import (
    BOTTLENECK_MARK,
    RICH_BOTTLENECK_MARK,
    SETTLE_ITEMS,
    Row,
    graph_order,
    plain_table,
    rich_view,
    settled_bottleneck,
    stage_rows,
)

__all__ = [
    "BOTTLENECK_MARK",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "RICH_BOTTLENECK_MARK",
    "SETTLE_ITEMS",
    "CliError",
    "Node",
    "Row",
    "Session",
    "cleanup_tree",
    "graph_order",
    "load_pipeline",
    "main",
    "plain_table",
    "rich_view",
    "settled_bottleneck",
    "stage_rows",
    "to_dot",
    "to_mermaid",
    "topology",
]

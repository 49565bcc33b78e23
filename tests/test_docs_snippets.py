"""Every ```python block of the README and of the documentation pages runs as written.

Each block is a complete script: it runs in a fresh interpreter (a subprocess), in an
empty working folder, with the profile folder pointed there too. Blocks fenced as
```py instead are fragments shown for reading and are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_PAGES = (ROOT / "README.md", ROOT / "docs" / "getting-started.md")
"""Pages whose examples must exist and run: the first code a reader copies."""
PAGES = (
    *REQUIRED_PAGES,
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if p not in REQUIRED_PAGES),
)
BLOCK_TIMEOUT = 60.0
"""Seconds one block may take; each finishes in well under a second."""

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """(line number, dedented source) of each ```python block in ``page``."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        indent = len(match.group("indent"))
        lines = [line[indent:] for line in match.group("body").splitlines()]
        blocks.append((text.count("\n", 0, match.start()) + 1, "\n".join(lines) + "\n"))
    return blocks


def _cases() -> list[pytest.param]:
    return [
        pytest.param(page, code, id=f"{page.relative_to(ROOT)}:{line}")
        for page in PAGES
        for line, code in python_blocks(page)
    ]


@pytest.mark.parametrize("page", REQUIRED_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_required_pages_have_examples(page: Path) -> None:
    """The README and the getting-started page each show at least one runnable example."""
    assert python_blocks(page), f"{page.name} has no ```python block"


@pytest.mark.parametrize(("page", "code"), _cases())
def test_block_runs(page: Path, code: str, tmp_path: Path) -> None:
    """The block runs to the end in a fresh interpreter without an error."""
    env = {**os.environ, "PYSTREAM_ACTORS_PROFILE_DIR": str(tmp_path / "profiles")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (
        f"a block of {page.name} failed (exit {done.returncode}):\n"
        f"--- code ---\n{code}--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"
    )

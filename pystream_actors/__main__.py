"""``python -m pystream_actors``: the same command line as ``pystream-actors``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

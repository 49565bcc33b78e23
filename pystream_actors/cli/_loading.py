"""Finding the pipeline a ``MODULE:FACTORY`` target names, and stopping it afterwards.

A target is loaded the way the user would run it: a ``.py`` path from the file, a dotted
name like ``python -m`` (the current folder on the path), so the factory finds its own
imports without any setup.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from .._combinators import walk
from .._pipeline import Pipeline, PipelineStage
from .._stage import StageSlot
from ._errors import CliError


def load_pipeline(target: str) -> Pipeline:
    """Call the factory named by ``MODULE:FACTORY`` and check it made a ``Pipeline``."""
    module_name, _, factory_name = target.rpartition(":")
    if not module_name or not factory_name:
        raise CliError(f"expected MODULE:FACTORY (e.g. examples/app.py:build), got {target!r}")
    module = _import_target(module_name)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise CliError(f"{module_name} has no callable named {factory_name!r}")
    pipeline = factory()
    if not isinstance(pipeline, Pipeline):
        raise CliError(f"{target}() returned a {type(pipeline).__name__}, not a Pipeline")
    return pipeline


def cleanup_tree(pipeline: Pipeline) -> None:
    """Stop a pipeline and the nested ones its factory started for ``as_stage()``.

    A factory that nests pipelines has to start the inner ones, so even ``graph``, which
    never starts the outer one, leaves threads behind unless they are stopped here.
    Nested pipelines inside the branches of a combinator are stopped too.
    """
    for _, slot in walk(pipeline._slots):
        if isinstance(slot, StageSlot) and isinstance(slot.stage, PipelineStage):
            cleanup_tree(slot.stage.pipeline)
    pipeline.cleanup()


def _import_target(name: str) -> ModuleType:
    """A ``.py`` path is loaded from the file; anything else is imported like ``python -m``."""
    if name.endswith(".py") or os.sep in name or "/" in name:
        return _import_file(Path(name))
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as ``python -m`` would; console scripts do not
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as missing:
        if missing.name and name.startswith(missing.name):
            raise CliError(f"no module named {name!r} (a file path must end in .py)") from None
        raise


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    module_name = f"pystream_actors_app_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up here
    spec.loader.exec_module(module)
    return module

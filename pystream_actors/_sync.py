"""``Sync``: several sources at their own rates, joined by sensor time stamp.

A ``Sync`` is a pipeline's first step. Each source is a chain of its own (its own
preprocessing stages and its own in-flight window), and the samples that come out of
those chains are matched by stamp at the sync junction (``_sync_match`` holds the rules,
``_sync_junction`` the actor). ``tolerance`` is in the sensors' time; ``max_wait`` is
processing time spent waiting for certainty.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

from . import _arguments as check
from ._combinators import Combinator
from ._errors import InvalidArgument, InvalidItem
from ._sync_match import Missing, Policy

StampOf = Callable[[Any], float]
POLICIES: tuple[Policy, ...] = ("approximate", "exact", "latest")
MISSING: tuple[Missing, ...] = ("drop", "none")
SyncPolicy = Literal["approximate", "exact", "latest"]


class Sync(Combinator):
    """Join samples of several sources by time stamp (the pipeline's first step).

    ``policy="approximate"``: one set per ``anchor`` sample (default: the first source),
    with the nearest sample of every other source within ``tolerance`` seconds of sensor
    time that no earlier set used; sets leave in anchor order and never cross. A set is
    decided once no nearer sample can still come, or after ``max_wait`` seconds of waiting
    (None: always wait for certainty; 0: decide at once with what is there).
    ``policy="exact"``: the same with equal stamps only. ``policy="latest"``: every sample
    of source ``on`` with the freshest sample of each other source, if their stamps are at
    most ``tolerance`` apart; those context samples resolve as soon as they are cached.

    An anchor (trigger) without a partner within the tolerance is dropped with a reason
    naming the source (``missing="drop"``) or joined with None (``missing="none"``).
    Each source keeps at most ``buffer`` samples waiting for a partner; more are evicted,
    oldest first (dropped with a reason; for the anchor, the oldest is decided). The
    output is a ``Joined`` mapping each source to its chain's output, with ``.stamps``.

    Items enter with ``handle.submit(data, source="lidar", stamp=t)``; without ``stamp``
    it comes from ``stamp`` (one function, or one per source), else ``time.monotonic()``
    when ``submit`` is called. A source's chain may set its own ``capacity``/``on_full``.
    """

    kind = "sync"

    def __init__(
        self,
        *,
        policy: SyncPolicy = "approximate",
        tolerance: float | None = None,
        anchor: str | None = None,
        on: str | None = None,
        max_wait: float | None = None,
        buffer: int = 8,
        missing: Missing = "drop",
        stamp: StampOf | Mapping[str, StampOf] | None = None,
        **sources: Any,
    ) -> None:
        if len(sources) < 2:
            raise InvalidArgument(
                "Sync needs at least two sources, e.g. Sync(camera=undistort, lidar=voxelize, "
                "tolerance=0.02)"
            )
        self.policy: Policy = check.one_of("policy", policy, POLICIES)
        self.missing: Missing = check.one_of("missing", missing, MISSING)
        self.buffer = check.whole_number("buffer", buffer, 1)
        super().__init__(sources)
        names = tuple(self.branches)
        self.anchor = self._trigger(names, anchor, on)
        self.tolerance = self._tolerance(tolerance)
        if max_wait is not None:
            check.seconds("max_wait", max_wait)
            if self.policy == "latest":
                raise InvalidArgument(
                    "max_wait does not apply to policy='latest' (a trigger is joined at once "
                    "with the freshest sample); leave it out"
                )
        self.max_wait = max_wait
        self.stamp_of = self._stamp_functions(names, stamp)
        for key, chain in self.branches.items():
            if chain.options.select is not None or not chain.options.required:
                raise InvalidArgument(
                    f"source {key!r}: select= and required= do not apply to a Sync source "
                    "(add a stage to the source's chain instead)"
                )

    def _trigger(self, names: tuple[str, ...], anchor: str | None, on: str | None) -> str:
        if self.policy == "latest":
            if anchor is not None:
                raise InvalidArgument("policy='latest' takes on=<trigger source>, not anchor=")
            if on is None:
                raise InvalidArgument(
                    f"policy='latest' needs on=<the source that triggers a set>, one of {names}"
                )
            chosen = on
        else:
            if on is not None:
                raise InvalidArgument(
                    f"on= is for policy='latest'; policy={self.policy!r} takes anchor="
                )
            chosen = anchor if anchor is not None else names[0]
        if chosen not in names:
            raise InvalidArgument(f"{chosen!r} is not one of the sources {list(names)}")
        return chosen

    def _tolerance(self, tolerance: float | None) -> float:
        if self.policy == "exact":
            if tolerance not in (None, 0, 0.0):
                raise InvalidArgument(
                    "policy='exact' matches equal stamps only; leave tolerance out, or use "
                    "policy='approximate'"
                )
            return 0.0
        if tolerance is None:
            raise InvalidArgument(
                f"policy={self.policy!r} needs tolerance=<seconds of sensor time>, e.g. 0.02"
            )
        return check.seconds("tolerance", tolerance)  # type: ignore[return-value]

    @staticmethod
    def _stamp_functions(
        names: tuple[str, ...], stamp: StampOf | Mapping[str, StampOf] | None
    ) -> dict[str, StampOf]:
        if stamp is None:
            return {}
        if callable(stamp):
            return dict.fromkeys(names, stamp)
        if not isinstance(stamp, Mapping):
            raise InvalidArgument(
                f"stamp must be a function of the item, or a dict of them by source, got {stamp!r}"
            )
        unknown = sorted(set(stamp) - set(names))
        if unknown:
            raise InvalidArgument(f"stamp= names unknown sources {unknown}; sources: {names}")
        for key, fn in stamp.items():
            if not callable(fn):
                raise InvalidArgument(f"stamp[{key!r}] must be a function of the item")
        return dict(stamp)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.branches)


def checked_stamp(source: str, stamp: Any) -> float:
    """A stamp as given or computed: a finite real number, else ``InvalidItem``."""
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        raise InvalidItem(
            f"the stamp of a {source!r} item must be a number (seconds), got {stamp!r}"
        )
    if not math.isfinite(stamp):
        raise InvalidItem(f"the stamp of a {source!r} item must be finite, got {stamp!r}")
    return float(stamp)

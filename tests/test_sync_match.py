"""``SyncMatcher`` (the matching rules of ``Sync``) against brute-force references.

Stamps are small integers times ``SCALE`` (a power of two, so sums and differences are
exact floats and ties and equalities at the tolerance really happen).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pystream_actors._sync_match import Cached, Dropped, Matched, Outcome, Sample, SyncMatcher

SCALE = 1 / 1024
BIG = 10**6
Set = tuple[float, dict[str, float | None]]
Streams = dict[str, list[float]]

pytestmark = pytest.mark.timeout(60)
hyp = settings(max_examples=200, deadline=None)


def reference(
    streams: Streams, anchor: str, others: tuple[str, ...], tol: float, missing: str
) -> dict[float, Set | None]:
    """Greedy in anchor order: nearest free sample within ``tol`` (tie: older) per source."""
    last = {s: -1.0 for s in others}
    result: dict[float, Set | None] = {}
    for a in streams[anchor]:
        picks: dict[str, float | None] = {}
        for s in others:
            cands = [x for x in streams[s] if x > last[s] and abs(x - a) <= tol]
            picks[s] = min(cands, key=lambda x: (abs(x - a), x)) if cands else None
        if missing == "drop" and None in picks.values():
            result[a] = None
            continue
        for s, x in picks.items():
            if x is not None:
                last[s] = x
        result[a] = (a, picks)
    return result


def canon(m: Matched) -> Set:
    return (m.anchor.stamp, {s: (x.stamp if x else None) for s, x in m.members.items()})


def check_reasons(outcomes: list[Outcome], sm: SyncMatcher) -> None:
    """Every drop says why, naming the source involved (late ones: the tolerance too)."""
    for o in outcomes:
        if isinstance(o, Dropped):
            assert o.reason.startswith(o.kind), o.reason
            src = o.sample.source
            if o.kind == "unmatched" and src == sm.anchor:
                assert any(repr(s) in o.reason for s in sm.others), o.reason
            else:
                assert repr(src) in o.reason, o.reason
            if o.kind == "late":
                assert repr(src) in o.reason and f"{sm.tolerance * 1000:g} ms" in o.reason


def check_accounting(offered: list[Sample], outcomes: list[Outcome], sm: SyncMatcher) -> None:
    """One outcome per sample; sets in anchor order, never crossing, within tolerance."""
    seen: dict[Sample, int] = {}
    last: dict[str, float] = {}
    for o in outcomes:
        if isinstance(o, Matched):
            used = [o.anchor, *(x for x in o.members.values() if x is not None)]
            assert set(o.members) == set(sm.others)
            for x in o.members.values():
                if x is not None:
                    assert abs(x.stamp - o.anchor.stamp) <= sm.tolerance
        else:
            used = [o.sample]
        for x in used:
            seen[x] = seen.get(x, 0) + 1
            if isinstance(o, Matched):
                assert x.stamp > last.get(x.source, -1.0), "sets cross"
                last[x.source] = x.stamp
    assert all(n == 1 for n in seen.values())
    assert set(seen) == set(offered)


@st.composite
def scenario(draw: Any) -> tuple[Streams, list[str], float, str, str]:
    sources = ["cam", "imu", "gps"][: 1 + draw(st.integers(1, 2))]
    stamps = st.lists(st.integers(0, 60), max_size=10, unique=True)
    streams = {s: [k * SCALE for k in sorted(draw(stamps))] for s in sources}
    order = draw(st.permutations([s for s in sources for _ in streams[s]]))
    policy = draw(st.sampled_from(["approximate", "exact"]))
    tol = draw(st.sampled_from([0, 1, 2, 3, 5, 10])) * SCALE if policy == "approximate" else 0.0
    return streams, order, tol, policy, draw(st.sampled_from(["drop", "none"]))


def make(sources: list[str], policy: Any, tol: float, missing: Any, **kw: Any) -> SyncMatcher:
    limits = kw.pop("limits", dict.fromkeys(sources, BIG))
    return SyncMatcher(
        tuple(sources), policy, tol, "cam", kw.pop("max_wait", None), limits, missing
    )


def run(
    sm: SyncMatcher, streams: Streams, order: list[str]
) -> tuple[list[Sample], list[Outcome], list[Outcome]]:
    """Offer in ``order`` (each source's own order kept); outcomes before and at flush."""
    pos = dict.fromkeys(streams, 0)
    offered: list[Sample] = []
    before: list[Outcome] = []
    for t, s in enumerate(order):
        sample = Sample(s, streams[s][pos[s]], float(t))
        pos[s] += 1
        offered.append(sample)
        before += sm.offer(sample, float(t))
    return offered, before, sm.flush()


@hyp
@given(scenario())
def test_approximate_matches_the_reference_and_decides_only_when_certain(sc: Any) -> None:
    streams, order, tol, policy, missing = sc
    sm = make(list(streams), policy, tol, missing)
    ref = reference(streams, "cam", sm.others, tol, missing)
    offered, before, after = run(sm, streams, order)
    outcomes = before + after
    # 3: whatever was decided before flush() is what the reference decides for that anchor.
    for o in before:
        assert not isinstance(o, Cached)
        if isinstance(o, Matched):
            assert canon(o) == ref[o.anchor.stamp]
        elif o.sample.source == "cam":
            assert o.kind == "unmatched" and ref[o.sample.stamp] is None
    # 1: all sets, in anchor order, are the reference's; every sample has one outcome.
    assert [canon(o) for o in outcomes if isinstance(o, Matched)] == [
        r for r in ref.values() if r is not None
    ]
    assert not any(isinstance(o, Dropped) and o.kind == "evicted" for o in outcomes)
    check_accounting(offered, outcomes, sm)
    check_reasons(outcomes, sm)
    assert sm.waiting == 0


@hyp
@given(scenario(), st.randoms(use_true_random=False))
def test_sets_do_not_depend_on_the_interleaving(sc: Any, rnd: Any) -> None:
    streams, order, tol, policy, missing = sc
    other_order = list(order)
    rnd.shuffle(other_order)
    results = []
    for o in (order, other_order):
        _, before, after = run(make(list(streams), policy, tol, missing), streams, o)
        results.append([canon(x) for x in before + after if isinstance(x, Matched)])
    assert results[0] == results[1]


@hyp
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=6),
    st.sampled_from([0.5, 1.0, 2.5, 7.0]),
    st.sampled_from(["drop", "none"]),
)
def test_max_wait_decides_anchors_when_a_source_is_silent(
    gaps: list[int], max_wait: float, missing: Any
) -> None:
    sm = make(["cam", "imu"], "approximate", 0.01, missing, max_wait=max_wait)
    pending: list[Sample] = []
    decided: list[Outcome] = []
    now = 0.0
    for i, gap in enumerate(gaps):
        now += gap
        out = sm.offer(Sample("cam", i * SCALE, now), now)
        due = [a for a in pending if a.arrived + max_wait <= now]
        assert [o.anchor if isinstance(o, Matched) else o.sample for o in out] == due
        decided += out
        pending = [a for a in pending if a not in due] + [sm.anchors[-1]]
    while pending:
        deadline = sm.next_deadline()
        assert deadline == pending[0].arrived + max_wait
        assert sm.expire(deadline - 0.25) == []
        out = sm.expire(deadline)
        assert len(out) == 1
        decided += out
        pending.pop(0)
    assert sm.next_deadline() is None and sm.flush() == []
    for o in decided:
        if missing == "drop":
            assert isinstance(o, Dropped) and o.kind == "unmatched" and "'imu'" in o.reason
        else:
            assert isinstance(o, Matched) and o.members == {"imu": None}
            assert "'imu'" in o.reasons["imu"]


@hyp
@given(scenario(), st.lists(st.integers(1, 3), min_size=3, max_size=3))
def test_buffer_limits_evict_oldest_and_bound_what_is_held(sc: Any, ks: list[int]) -> None:
    streams, order, tol, policy, missing = sc
    limits = dict(zip(streams, ks))
    sm = make(list(streams), policy, tol, missing, limits=limits)
    held: dict[str, list[Sample]] = {s: [] for s in streams}
    offered: list[Sample] = []
    outcomes: list[Outcome] = []
    for t, s in enumerate(order):
        sample = Sample(s, streams[s][sum(x.source == s for x in offered)], float(t))
        offered.append(sample)
        held[s].append(sample)
        out = sm.offer(sample, float(t))
        for o in out:
            if isinstance(o, Dropped) and o.kind == "evicted":
                assert held[o.sample.source][0] is o.sample, "not the oldest evicted"
                assert o.sample.source != "cam"
            done = [o.anchor, *o.members.values()] if isinstance(o, Matched) else [o.sample]
            for x in done:
                if x is not None:
                    held[x.source].remove(x)
        outcomes += out
        assert [len(held[s]) for s in sm.others] == [len(sm.parked[s]) for s in sm.others]
        assert all(len(sm.parked[s]) <= limits[s] for s in sm.others)
        assert list(sm.anchors) == held["cam"] and len(sm.anchors) <= limits["cam"]
    outcomes += sm.flush()
    check_accounting(offered, outcomes, sm)
    check_reasons(outcomes, sm)


def test_a_full_anchor_buffer_decides_the_oldest_anchor() -> None:
    sm = make(["cam", "imu"], "approximate", 0.01, "drop", limits={"cam": 1, "imu": 5})
    first = Sample("cam", 1.0, 0.0)
    assert sm.offer(first, 0.0) == []
    [out] = sm.offer(Sample("cam", 2.0, 1.0), 1.0)
    assert isinstance(out, Dropped) and out.sample is first and out.kind == "unmatched"
    assert len(sm.anchors) == 1


def test_evicted_reason_names_the_source() -> None:
    sm = make(["cam", "imu"], "approximate", 0.01, "drop", limits={"cam": 5, "imu": 1})
    old = Sample("imu", 1.0, 0.0)
    sm.offer(old, 0.0)
    [out] = sm.offer(Sample("imu", 2.0, 1.0), 1.0)
    assert isinstance(out, Dropped) and out.sample is old and out.kind == "evicted"
    assert "'imu'" in out.reason


def test_late_samples() -> None:
    sm = make(["cam", "imu"], "approximate", 0.005, "drop")
    assert sm.offer(Sample("imu", 1.0, 0.0), 0.0) == []
    [m] = sm.offer(Sample("cam", 1.0, 1.0), 1.0)
    assert isinstance(m, Matched) and canon(m) == (1.0, {"imu": 1.0})
    for sample in (Sample("imu", 0.999, 2.0), Sample("imu", 1.0, 2.0)):  # older / reused
        [late] = sm.offer(sample, 2.0)
        assert isinstance(late, Dropped) and late.kind == "late" and late.sample is sample
        assert "'imu'" in late.reason and "5 ms" in late.reason
    for stamp in (1.0, 0.5):  # an anchor not newer than the previous one
        [late] = sm.offer(Sample("cam", stamp, 3.0), 3.0)
        assert isinstance(late, Dropped) and late.kind == "late" and "'cam'" in late.reason
    assert sm.waiting == 0


def test_exact_pairs_equal_stamps_only() -> None:
    sm = make(["cam", "imu"], "exact", 0.5, "none")
    out = [o for t in (1.0, 2.0) for o in sm.offer(Sample("imu", t, t), t)]
    out += sm.offer(Sample("cam", 1.5, 3.0), 3.0) + sm.offer(Sample("cam", 2.0, 4.0), 4.0)
    assert [canon(o) for o in out if isinstance(o, Matched)] == [
        (1.5, {"imu": None}),
        (2.0, {"imu": 2.0}),
    ]


def test_flushed_parked_sample_reason_names_its_source() -> None:
    sm = make(["cam", "imu"], "approximate", 0.01, "drop")
    sm.offer(Sample("imu", 1.0, 0.0), 0.0)
    [out] = sm.flush()
    assert isinstance(out, Dropped) and "'imu'" in out.reason


@hyp
@given(
    st.lists(st.tuples(st.sampled_from(["cam", "imu", "gps"]), st.integers(0, 40)), max_size=25),
    st.sampled_from([0, 1, 3, 8]),
    st.sampled_from(["drop", "none"]),
)
def test_latest_matches_the_reference(
    offers: list[tuple[str, int]], tol_steps: int, missing: Any
) -> None:
    tol = tol_steps * SCALE
    sm = make(["cam", "imu", "gps"], "latest", tol, missing)
    cache: dict[str, Sample] = {}
    uses: dict[str, int] = {}
    reused = 0
    for t, (src, k) in enumerate(offers):
        sample = Sample(src, k * SCALE, float(t))
        out = sm.offer(sample, float(t))
        check_reasons(out, sm)
        [o] = out
        if src != "cam":
            if src in cache and sample.stamp < cache[src].stamp:
                assert isinstance(o, Dropped) and o.kind == "late" and o.sample is sample
                continue
            cache[src], uses[src] = sample, 0
            assert isinstance(o, Cached) and o.sample is sample
            continue
        want = {
            s: (cache[s] if s in cache and abs(sample.stamp - cache[s].stamp) <= tol else None)
            for s in ("imu", "gps")
        }
        if missing == "drop" and None in want.values():
            assert isinstance(o, Dropped) and o.kind == "unmatched" and o.sample is sample
            continue
        assert isinstance(o, Matched) and o.anchor is sample and o.members == want
        assert set(o.reasons) == {s for s, x in want.items() if x is None}
        for s, x in want.items():
            if x is not None:
                reused += uses[s] > 0
                uses[s] += 1
    assert sm.reused == reused
    assert sm.flush() == [] and sm.waiting == 0

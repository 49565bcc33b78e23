"""Shared fixtures: every test must leave no pipeline thread behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pystream_actors._lifecycle import running_handles, stop_all_running

_OUR_THREAD_PREFIXES = (
    "StageActor",
    "CoordinatorActor",
    "pystream-input-loop",
    "pystream-supervisor",
    "pystream-stopper",
)


def our_threads() -> list[threading.Thread]:
    """Threads started by pystream_actors that are still alive."""
    return [t for t in threading.enumerate() if t.name.startswith(_OUR_THREAD_PREFIXES)]


@pytest.fixture(autouse=True, scope="session")
def profiles_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Profiled pipelines write their profiles under the test run's tmp, not the home folder."""
    import pystream_actors as ps

    old = ps.get_profiler_db_folder()
    ps.set_profiler_db_folder(tmp_path_factory.mktemp("profiles"))
    yield
    ps.set_profiler_db_folder(old)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a running pipeline or one of its threads behind."""
    before = set(our_threads())
    yield
    still_running = running_handles()
    stop_all_running()
    for thread in our_threads():
        thread.join(10)
    leaked_threads = [t for t in our_threads() if t not in before]
    assert not still_running, f"test left pipelines running: {still_running}"
    assert not leaked_threads, f"threads outlived their pipeline: {leaked_threads}"


class Recorder:
    """Counts calls and remembers the inputs a stage saw, thread-safely."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[object] = []

    def __call__(self, data: object) -> object:
        with self.lock:
            self.seen.append(data)
        return data

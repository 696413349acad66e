"""The suite on several pytest-xdist workers (``make test`` runs ``-n``), with every test of the
network-namespace lab on one worker, in collection order.

All labs share one subnet and take a machine-wide lock (tests/doubles/lab/netlab.py), so lab tests
spread over workers would only wait for each other, holding those workers idle. xdist's own
``xdist_group`` mark cannot say this on pytest 9 (it renames ``item._nodeid``, which pytest 9 no
longer reads), so ferry brings its scheduler: xdist's ``loadscope`` scheduling, where every test
is its own unit except the lab's, which are one. The controller never collects, so the workers
tell it which tests carry the ``lab`` mark through a file it names in their ``workerinput``.

It replaces ``--dist load`` (``-n``'s default) and ``loadgroup``. Without ``-n`` none of this
runs: ``pytest`` alone runs the suite in one process, as before.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

LAB_UNIT = "netlab"
_KEY = "ferry_lab_tests"


def _lab_file(config: pytest.Config) -> Path:
    path = getattr(config, "_ferry_lab_tests", None)
    if path is None:
        fd, name = tempfile.mkstemp(prefix="ferry-lab-tests-", suffix=".txt")
        os.close(fd)
        path = Path(name)
        config._ferry_lab_tests = path  # type: ignore[attr-defined]
        config.add_cleanup(lambda: path.unlink(missing_ok=True))
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # the controller, once per worker
    node.workerinput[_KEY] = str(_lab_file(node.config))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    target = getattr(config, "workerinput", {}).get(_KEY)
    if not target:
        return
    # Every worker collects the same tests: each writes the same list, whole (rename is atomic).
    partial = Path(f"{target}.{config.workerinput['workerid']}")
    partial.write_text("".join(f"{item.nodeid}\n" for item in items if item.get_closest_marker("lab")))
    os.replace(partial, target)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None  # another mode asked for by name: xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class LabAsOneUnit(LoadScopeScheduling):
        """Each test its own unit, the lab's tests one unit; units go out largest first (xdist's
        ``loadscope`` order), so the lab starts at once and the rest fill the other workers."""

        lab: frozenset[str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.lab is None:  # read once, after every worker collected (schedule() runs then)
                self.lab = frozenset(_lab_file(config).read_text().split("\n"))
            return LAB_UNIT if nodeid in self.lab else nodeid

    return LabAsOneUnit(config, log)

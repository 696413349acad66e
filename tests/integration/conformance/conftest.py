"""The rig fixture: each conformance test runs once per backend (sim, Proxmox double, OpenVZ lab)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doubles.pvedouble.fixtures import make_double  # noqa: F401 - fixture
from tests.integration.conformance.harness import SagaStore
from tests.integration.conformance.rigs import PveRig, Rig, SimRig


@pytest.fixture(scope="module")
def conformance_lab() -> Iterator[object]:
    from tests.integration.conformance.lab_rig import lab_available

    if why := lab_available():
        pytest.skip(why)
    from tests.doubles.lab.netlab import Lab

    with Lab().up(2) as lab:
        yield lab


@pytest.fixture(params=["sim", "proxmox", pytest.param("lab", marks=pytest.mark.lab)])
def rig(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    if request.param == "sim":
        yield SimRig(tmp_path / "sim")
    elif request.param == "proxmox":
        double = request.getfixturevalue("make_double")()
        monkeypatch.setenv("FERRY_TEST_PVE_SECRET", double.token_secret)
        yield PveRig(double)
    else:
        from tests.integration.conformance.lab_rig import LabRig

        lab_rig = LabRig(request.getfixturevalue("conformance_lab"))
        try:
            yield lab_rig
        finally:
            lab_rig.tidy()


@pytest.fixture
def store(tmp_path: Path) -> SagaStore:
    return SagaStore(tmp_path / "store")

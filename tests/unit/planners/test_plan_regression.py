"""Plans stay the same: every planner case decides what it decided when the digests were taken.

The digests (``plan_digests.json``) were written from the planner before its rules moved into one
registry; a change that alters any move, wave, reason, target storage or unplaced entry of these
cases fails here. Regenerate them only for an intended change of planning behaviour.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.planners.plan_cases import all_cases, digest

DIGESTS = json.loads((Path(__file__).parent / "plan_digests.json").read_text())
CASES = dict(all_cases())


def test_every_case_has_a_digest() -> None:
    assert sorted(CASES) == sorted(DIGESTS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_is_unchanged(name: str) -> None:
    assert digest(CASES[name]()) == DIGESTS[name]

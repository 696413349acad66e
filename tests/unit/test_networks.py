"""[networks] is checked when the config is read: pools and gateways inside their subnet, ranges
bounded, every mistake one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.errors import InputError
from service.config import load_config


def _load(tmp_path: Path, table: str):
    path = tmp_path / "ferry.toml"
    path.write_text("[networks.subnets.lan-a]\n" + table)
    return load_config(path)


def test_a_declared_network_loads_and_lists_its_free_addresses(tmp_path: Path):
    config = _load(tmp_path, 'subnet = "10.0.1.0/24"\ngateway = "10.0.1.1"\nnodes = ["n1"]\n'
                             'pool = ["10.0.1.10-10.0.1.12", "10.0.1.20"]\n')
    net = config.networks.subnets["lan-a"]
    assert list(net.free({"10.0.1.11"})) == ["10.0.1.10", "10.0.1.12", "10.0.1.20"]
    assert net.contains("10.0.1.7/24") and not net.contains("10.0.2.7")


@pytest.mark.parametrize(("table", "says"), [
    ('subnet = "10.0.1.0/24"\npool = ["10.0.2.5"]\n', "outside 10.0.1.0/24"),
    ('subnet = "10.0.1.0/24"\ngateway = "10.9.9.9"\n', "gateway 10.9.9.9 is outside"),
    ('subnet = "10.0.0.0/8"\npool = ["10.0.0.1-10.9.0.0"]\n', "use an allocate_hook"),
    ('subnet = "10.0.1.0/24"\npool = ["10.0.1.9-10.0.1.2"]\n', "from a lower to a higher"),
    ('subnet = "10.0.1.0/24"\npool = ["nope"]\n', "not an address or a range"),
])
def test_a_bad_network_is_one_line_naming_the_key(tmp_path: Path, table: str, says: str):
    with pytest.raises(InputError, match="networks.subnets.lan-a") as caught:
        _load(tmp_path, table)
    assert says in str(caught.value)

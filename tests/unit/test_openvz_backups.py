"""OpenVZ backups read from a listing: vzdump's real archive names, their age, what is skipped."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.openvz.backups import BACKUP_HOST, parse_listing, with_backup_host
from adapters.openvz.settings import load_settings
from fleet.errors import InputError


def epoch(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


LISTING = "\n".join([
    "+0200",
    f"{epoch(2026, 3, 1, 2, 0, 0)} 1048576 vzdump-openvz-101-2026_03_01-03_50_00.tgz",
    f"{epoch(2026, 3, 1, 2, 0, 5)} 2048 vzdump-openvz-101-2026_03_01-03_55_00.tar.lzo",
    f"{epoch(2026, 3, 1, 3, 0, 0)} 4096 vzdump-openvz-102-2026_03_01-04_10_00.tar.zst",
    f"{epoch(2026, 3, 1, 3, 0, 0)} 4096 vzdump-openvz-103-2026_03_01-04_10_00.tar.gz",
    f"{epoch(2026, 3, 1, 3, 0, 0)} 4096 vzdump-openvz-104-2026_03_01-04_10_00.tar",
    f"{epoch(2026, 3, 1, 3, 0, 0)} 10 vzdump-openvz-105-2026_03_01-04_10_00.log",      # the log
    f"{epoch(2026, 3, 1, 3, 0, 0)} 10 vzdump-openvz-106-2026_03_01-04_10_00.dat",      # unfinished
    f"{epoch(2026, 3, 1, 3, 0, 0)} 10 vzdump-lxc-107-2026_03_01-04_10_00.tar.zst",     # not OpenVZ
    f"{epoch(2026, 3, 1, 3, 0, 0)} 10 vzdump-openvz-108-2026_03_01-04_10_00.tgz; rm",  # hostile
])


def test_listing_keeps_vzdump_openvz_archives_with_their_start_time_in_the_hosts_zone():
    found = parse_listing(LISTING, "/backup/n1/", "bk1")
    assert sorted(b.ct for b in found) == ["101", "101", "102", "103", "104"]
    first = next(b for b in found if b.archive.endswith("03_50_00.tgz"))
    assert first.archive == "/backup/n1/vzdump-openvz-101-2026_03_01-03_50_00.tgz"
    assert first.taken_at == epoch(2026, 3, 1, 1, 50, 0)  # 03:50 at +0200 is 01:50 UTC
    assert first.bytes == 1048576 and first.storage == "bk1"


def test_the_files_mtime_caps_the_age_when_the_zone_is_wrong():
    listing = f"-0500\n{epoch(2026, 3, 1, 4, 0, 0)} 10 vzdump-openvz-101-2026_03_01-03_50_00.tgz"
    [only] = parse_listing(listing, "/b", "shared")
    assert only.taken_at == epoch(2026, 3, 1, 4, 0, 0)  # 08:50 UTC by the name: after the file ended


def test_an_empty_or_missing_directory_lists_nothing():
    assert parse_listing("+0000\n", "/b", "x") == [] and parse_listing("", "/b", "x") == []


def _settings(tmp_path: Path, **backups) -> dict:
    key = tmp_path / "id"
    key.write_text("k")
    return {"nodes": {"n1": {"host": "10.0.0.1"}}, "identity_file": str(key), "known_hosts_file": str(key),
            "backups": backups}


def test_backup_settings_name_the_directory_per_node_and_join_the_ssh_pool(tmp_path):
    settings = load_settings(_settings(tmp_path, dir="/backup/{node}", host={"host": "10.0.0.9"}))
    assert settings.backups is not None and settings.backups.dir_of("n7") == "/backup/n7"
    pooled = with_backup_host(settings)
    assert pooled.nodes[BACKUP_HOST].host == "10.0.0.9" and "n1" in pooled.nodes
    shared = load_settings(_settings(tmp_path, dir="/mnt/nfs/dump"))
    assert with_backup_host(shared) is shared


def test_a_bad_backup_directory_is_one_line_naming_the_key(tmp_path):
    with pytest.raises(InputError) as err:
        load_settings(_settings(tmp_path, dir="relative; rm -rf /"))
    assert "openvz.backups" in str(err.value)

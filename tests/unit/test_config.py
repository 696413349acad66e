"""Configuration: the documented example loads, FERRY_CONFIG is honoured, paths resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.errors import InputError
from service import config as config_module
from service.config import load_config
from tests.conftest import REPO


def test_the_example_config_is_valid_and_uses_the_documented_defaults() -> None:
    config = load_config(REPO / "config" / "ferry.example.toml")
    assert config.ferry.backend == "sim"
    assert (config.policy.max_parallel, config.policy.max_outgoing_per_node) == (8, 2)
    assert config.engine.retry_attempts == 5
    assert config.database_url.endswith(".ferry/ferry.db") and config.database_url.startswith("sqlite:///")


def test_ferry_config_env_is_used_and_relative_paths_follow_the_file(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "fleets").mkdir()
    (tmp_path / "conf.toml").write_text('[ferry]\nbackend = "sim"\nstate_dir = "st"\n[sim]\nfleet_file = "fleets/x.yaml"\n')
    monkeypatch.setenv("FERRY_CONFIG", str(tmp_path / "conf.toml"))
    config = load_config()
    settings = config.backend_settings()
    assert settings["fleet_file"] == str(tmp_path / "fleets" / "x.yaml")
    assert settings["world_file"] == str(tmp_path / "st" / "world.json")


def test_no_config_names_no_fleet_and_says_where_configs_are_found(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FERRY_CONFIG", raising=False)
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", tmp_path / "absent" / "ferry.toml")
    config = load_config()
    for read in (lambda: config.backend, lambda: config.state_dir):  # no simulated fleet, no ./.ferry
        with pytest.raises(InputError) as err:
            read()
        assert err.value.line().startswith("--config: no config: pass --config FILE, set FERRY_CONFIG or write ")
        assert "ferry demo" in err.value.line()


def test_a_config_without_a_backend_asks_for_one(tmp_path: Path) -> None:
    path = tmp_path / "ferry.toml"
    path.write_text('[policy]\nmax_parallel = 4\n')
    with pytest.raises(InputError) as err:
        load_config(path).backend_settings()
    assert err.value.line() == f"{path.resolve()}: ferry.backend: is not set: choose proxmox, openvz or sim (the simulated fleet)"


def test_the_system_config_is_found_and_keeps_its_state_in_var_lib(monkeypatch, tmp_path: Path) -> None:
    etc, var = tmp_path / "etc" / "ferry", tmp_path / "var" / "lib" / "ferry"
    etc.mkdir(parents=True)
    (etc / "ferry.toml").write_text('[ferry]\nbackend = "sim"\n')
    monkeypatch.delenv("FERRY_CONFIG", raising=False)
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", etc / "ferry.toml")
    monkeypatch.setattr(config_module, "SYSTEM_STATE_DIR", var)
    config = load_config()
    assert config.path == (etc / "ferry.toml").resolve() and config.backend == "sim"
    assert config.state_dir == var  # not /etc/ferry/.ferry
    explicit = etc / "other.toml"
    explicit.write_text('[ferry]\nbackend = "sim"\nstate_dir = "/srv/ferry"\n')
    assert load_config(explicit).state_dir == Path("/srv/ferry")  # an explicit state_dir wins
    monkeypatch.setenv("FERRY_CONFIG", str(explicit))
    assert load_config().path == explicit.resolve()  # FERRY_CONFIG before the system config


@pytest.mark.parametrize(("text", "key"), [
    ('[ferry]\nbackend = "xen"\n', "ferry.backend='xen'"),
    ("[engine]\nretry_attempts = 0\n", "engine.retry_attempts=0"),
    ("[policy]\naggressiveness = 9\n", "policy.aggressiveness=9"),
    ("[nonsense]\nx = 1\n", "nonsense"),
    ("[policy\n", "--config="),
])
def test_bad_config_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(path)
    assert key in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "needle"), [
    ("[sim]\nfault_rate = 2\n", "sim.fault_rate=2: Input should be less than or equal to 1"),
    ('[sim]\nfault_rate = "often"\n', "sim.fault_rate='often'"),
    ("[sim]\nfualt_rate = 0.1\n", "sim.fualt_rate=0.1: unknown key (did you mean 'fault_rate'?)"),
    ("[sim]\nspeedup = nan\n", "sim.speedup=nan: must be a finite number"),
    ("[sim]\nspeedup = inf\n", "sim.speedup=inf: must be a finite number"),
    ('[sim]\nfaults = [{ kind = "boom", step = "cutover-copy" }]\n', "sim.faults[0].kind='boom'"),
    ('[sim]\nfaults = [{ kind = "fail", step = "verify", remaining = -1 }]\n', "sim.faults[0].remaining=-1"),
    ('[sim]\nlink_factor = { "n1->n2" = 0 }\n', "sim.link_factor.n1->n2=0"),
    ("[policy]\nmax_paralel = 4\n", "policy.max_paralel=4: unknown key (did you mean 'max_parallel'?)"),
    ('[ferry]\ndatabse = ""\n', "did you mean 'database'?"),
    ("[polcy]\nx = 1\n", "polcy={'x': 1}: unknown key (did you mean 'policy'?)"),
    ('[ferry]\ninstance = "a\\u001b[2Jb"\n', "ferry.instance='a\\x1b[2Jb': contains U+001B"),
    ('[ferry]\ninstance = "ops\\u202eevil"\n', "contains U+202E"),
    ('[schedule]\nwindows = ["Sat 01:00-05:00\\n"]\n', "schedule.windows[0]"),
    ("[ferry]\n" + "x = " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
])
def test_config_mistakes_are_one_line_naming_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(path)
    line = info.value.line()
    assert needle in line and "\n" not in line and "\x1b" not in line, line


@pytest.mark.parametrize(("database", "needle"), [
    ("mysql://ferry@db/ferry", "unsupported database"),
    ("not a url", "is not a database URL"),
    ("sqlite:////no/such/folder/ferry.db", "the folder /no/such/folder does not exist"),
    ("postgresql+nosuchdriver://ferry:hunter2@db/ferry", "no such database driver"),
])
def test_database_urls_are_checked_before_use_and_passwords_never_shown(tmp_path: Path, database: str,
                                                                        needle: str) -> None:
    path = tmp_path / "db.toml"
    path.write_text(f'[ferry]\ndatabase = "{database}"\n')
    with pytest.raises(InputError) as info:
        load_config(path)
    line = info.value.line()
    assert line.count("ferry.database=") == 1 and needle in line and "hunter2" not in line, line


def test_a_good_sqlite_url_and_the_example_sim_table_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(f'[ferry]\nbackend = "sim"\ndatabase = "sqlite:///{tmp_path}/x.db"\n[sim]\nfault_rate = 0.5\n'
                    'faults = [{ kind = "dest_full", step = "presync-copy", ct = "105" }]\n')
    config = load_config(path)
    settings = config.backend_settings()
    assert settings["fault_rate"] == 0.5 and settings["faults"] == [
        {"kind": "dest_full", "step": "presync-copy", "ct": "105"}]  # as written: unset keys stay unset


@pytest.mark.parametrize("text", [
    '[api]\ntoken = "s3cr3t-s3cr3t-s3cr3t"\n',  # a secret pasted into a key that does not exist
    '[api]\ntoken_file = 12\n',
    '[ferry]\ndb_password = "s3cr3t-s3cr3t-s3cr3t"\n',
    '[sim]\napi_key = "s3cr3t-s3cr3t-s3cr3t"\n',
])
def test_values_of_keys_that_name_a_secret_are_never_shown(tmp_path: Path, text: str) -> None:
    path = tmp_path / "secret.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(path)
    line = info.value.line()
    assert "(value hidden)" in line and "s3cr3t" not in line and "12" not in line.split("=", 1)[1], line


def test_a_secret_pasted_into_a_backend_setting_is_hidden() -> None:
    from adapters.proxmox import parse_settings

    with pytest.raises(InputError) as info:
        parse_settings({"host": "pve1", "token_secret": "0f6b2a4c-secret-uuid"})
    assert "proxmox.token_secret=(value hidden)" in info.value.line()
    assert "0f6b2a4c" not in info.value.line()
    assert InputError("policy.max_parallel", 0, "too small").line() == "policy.max_parallel=0: too small"


def test_binary_and_non_utf8_configs_are_refused(tmp_path: Path) -> None:
    for name, content, needle in (("nul.toml", b"[ferry]\x00", "binary"), ("l1.toml", b"[ferry]\ninstance = '\xe9'", "UTF-8")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=needle):
            load_config(tmp_path / name)


def test_token_files_readable_by_others_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.api import load_token
    from service.config import ApiSection, Config

    monkeypatch.delenv("FERRY_API_TOKEN", raising=False)
    token = tmp_path / "token"
    token.write_text("a-token-of-thirty-two-characters\n")
    token.chmod(0o644)
    config = Config(api=ApiSection(token_file=str(token)))
    with pytest.raises(InputError) as info:
        load_token(config)
    assert "readable by group or others (mode 0644): chmod 600" in info.value.line()
    assert "thirty-two" not in info.value.line()
    token.chmod(0o600)
    assert load_token(config) == "a-token-of-thirty-two-characters"


def test_state_directory_and_store_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    import os
    import stat

    from sqlalchemy import text

    from service.runtime import Runtime
    from tests.conftest import sim_config

    rt = Runtime(sim_config(tmp_path))
    rt.backend.discover()
    with rt.sessions() as session:  # a write, so that the WAL exists
        session.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
        session.execute(text("INSERT INTO probe VALUES (1)"))
        session.commit()
        state = tmp_path / "state"
        modes = {p.name: stat.S_IMODE(os.stat(p).st_mode)
                 for p in [state, *state.glob("ferry.db*"), *state.glob("world.json")]}
    assert modes["state"] == 0o700
    assert modes.get("world.json") == 0o600, modes  # the simulated fleet's names and addresses
    assert {"ferry.db", "ferry.db-wal"} <= set(modes), modes
    assert all(mode == 0o600 for name, mode in modes.items() if name.startswith("ferry.db")), modes

"""What every ``ferry`` command shares: output formats, the options written once, the runtime.

Kept light on purpose: it is imported by every start of the CLI, ``ferry --help`` included, so it
brings Typer and Rich's console and nothing else: option help comes from the request fields' plain
descriptions, and ``asks`` is the operations package, whose request models (pydantic) load when a
command first names one. The config, the job store, the planners and the backends are imported by
:func:`config`, :func:`runtime` and the commands that use them.
Option help never names a Python type: every value option has a ``metavar`` saying what it is
(NODE, MiB, GiB, SECONDS), in the units the operations take.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from service import operations as asks  # noqa: F401 - the commands name their requests through it
from service.operations.request_fields import (  # noqa: F401
    DEFAULT_JOB_LIMIT,
    DEFAULT_TIME_LIMIT_S,
    DESCRIPTIONS,
    MAX_JOB_LIMIT,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from fleet.model import Inventory
    from service.config import Config
    from service.runtime import Runtime

console = Console()
err_console = Console(stderr=True)
#: The state directory of the loaded config, once known (for an internal error's trace file).
STATE_DIR: dict[str, Path] = {}


class Format(StrEnum):
    table = "table"
    json = "json"


class PlaceFormat(StrEnum):
    table = "table"
    json = "json"
    name = "name"


def described(field: str) -> str:
    """An option's help is its request field's description: written once, for both surfaces."""
    return DESCRIPTIONS[field]


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table for people, json for scripts")]
InventoryOpt = Annotated[Path | None, typer.Option("--inventory", "-i", metavar="SNAPSHOT",
                                                   help="plan offline from this snapshot")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", metavar="FILE", help="also save the plan to this file")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="execute without asking")]
WindowOpt = Annotated[bool, typer.Option("--window", help=described("window"))]
SolverOpt = Annotated[str, typer.Option(metavar="greedy|cp-sat", help=described("solver"))]
TimeLimitOpt = Annotated[float, typer.Option("--time-limit", metavar="SECONDS",
                                             help=described("time_limit"))]
WideOpt = Annotated[bool, typer.Option("--wide", help="one line per row, however wide the terminal")]
NodesArg = Annotated[list[str], typer.Argument(metavar="NODE...", help="node names, as in 'ferry inventory'")]
JobArg = Annotated[int, typer.Argument(metavar="JOB", help="the job's number, as in 'ferry jobs'")]


def config(ctx: typer.Context) -> Config:
    """The config the root options named, loaded on first use (a listing verb needs no more)."""
    root = ctx.find_root()
    if "config" not in root.obj:
        from service import render
        from service.config import load_config

        loaded = load_config(root.obj.get("config_path"))
        if loaded.path is not None or loaded.ferry.state_dir is not None:
            STATE_DIR["path"] = loaded.state_dir  # where an internal error's trace is saved
        root.obj["config"] = loaded
        if loaded.ferry.backend == "sim":
            render.mark_fleet(render.SIMULATED)
    return root.obj["config"]


def runtime(ctx: typer.Context) -> Runtime:
    """The command's runtime, built on first use from the config the root options named."""
    root = ctx.find_root()
    if "runtime" not in root.obj:
        from service.runtime import Runtime

        root.obj["runtime"] = Runtime(config(ctx))
    return root.obj["runtime"]


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def snapshot_of(path: Path | None) -> Inventory | None:
    if not path:
        return None
    from fleet.snapshot import load_inventory

    return load_inventory(path)


RequestT = TypeVar("RequestT", bound="BaseModel")


def request(model: type[RequestT], **options: Any) -> RequestT:
    """The operation's request from the command's options, refused in the API's words."""
    from fleet.snapshot import validate_model

    return validate_model(model, {k: v for k, v in options.items() if v is not None})

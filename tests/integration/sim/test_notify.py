"""Notifications through Apprise to a local HTTP receiver (json://) and a local SMTP server
(aiosmtpd), both on 127.0.0.1: each event told once, a URL's secret never shown."""

from __future__ import annotations

import datetime as dt
import email
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from service.config import ScheduleSection
from service.notify import NotifySection, sweep
from service.operations import nodes as node_ops
from service.runtime import Runtime
from service.schedule import MaintenanceWindows, parse_windows
from service.worker import Worker
from tests.conftest import sim_config
from tests.doubles.ports import free_port
from tests.integration.sim.test_cli import assert_one_line_error, ferry, write_config


class Receiver(BaseHTTPRequestHandler):
    got: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.got = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def runtime(tmp: Path, urls: list[str], **sim: object) -> Runtime:
    return Runtime(sim_config(tmp, **sim).model_copy(update={"notify": NotifySection(urls=urls)}))


def titles(server: ThreadingHTTPServer) -> list[str]:
    return [m["title"] for m in server.got]  # type: ignore[attr-defined]


def test_awaiting_approval_reaches_the_webhook_and_the_mailbox_once(tmp_path: Path, receiver, mailbox) -> None:
    box, port = mailbox
    urls = [f"json://127.0.0.1:{receiver.server_port}/ferry",
            f"mailto://127.0.0.1:{port}?from=ferry@example.org&to=ops@example.org"]
    rt = runtime(tmp_path, urls)
    job = node_ops.drain_node(rt, "a", node_ops.NodeDrainRequest(approve=False)).job_id
    assert sweep(rt) == 1
    assert titles(receiver) == [f"ferry: job {job} (drain a) awaits approval"]
    assert f"ferry job approve {job}" in receiver.got[0]["message"]
    assert [m["Subject"] for m in box.messages] == [f"ferry: job {job} (drain a) awaits approval"]
    assert box.messages[0]["To"] == "ops@example.org"
    assert sweep(rt) == 0 and sweep(Runtime(rt.config)) == 0  # told once, also after a restart
    assert len(receiver.got) == 1 and len(box.messages) == 1


def test_a_rolled_back_job_and_a_re_placed_move_are_told(tmp_path: Path, receiver) -> None:
    rt = runtime(tmp_path, [f"json://127.0.0.1:{receiver.server_port}"],
                 faults=[{"kind": "fail", "step": "preflight", "ct": "103", "remaining": 5},
                         {"kind": "start_fails", "step": "start", "ct": "101", "remaining": 1}])
    job = node_ops.drain_node(rt, "a", node_ops.NodeDrainRequest(approve=True)).job_id
    Worker(rt).run_pending()  # the worker runs the job; the sweep of serve's next round tells what happened
    sweep(rt)
    told = titles(receiver)
    assert f"ferry: job {job} (drain a) failed" in told
    assert f"ferry: move of 101 re-placed (job {job})" in told
    assert len(told) == len(set(told)) == 2


def test_a_job_whose_window_closed_before_its_moves_fit_is_told(tmp_path: Path, receiver) -> None:
    rt = runtime(tmp_path, [f"json://127.0.0.1:{receiver.server_port}"])
    rt.config = rt.config.model_copy(update={"schedule": ScheduleSection(windows=["daily 01:00 for 1min"])})
    job = node_ops.drain_node(rt, "a", node_ops.NodeDrainRequest(approve=True, window=True)).job_id
    windows = MaintenanceWindows(parse_windows("daily 01:00 for 1min"))
    late = dt.datetime(2026, 11, 16, 1, 0, 50, tzinfo=dt.UTC)  # 10 s left: no move fits
    Worker(rt, clock=lambda: late, windows=windows).run_pending()
    sweep(rt)
    assert titles(receiver) == [f"ferry: job {job} (drain a) missed its window"]
    assert "waiting for a maintenance window" in receiver.got[0]["message"]


def test_a_bad_url_is_one_line_naming_the_key_without_its_secret(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with config.open("a") as out:
        out.write('[notify]\nurls = ["json://127.0.0.1:9/ok", "nosuch://admin:hunter2@example.org/x"]\n')
    bad = ferry("inventory", config=config, check=False)
    assert_one_line_error(bad, "notify.urls[1]", "nosuch://(rest hidden)", "not an Apprise URL")
    assert "hunter2" not in bad.stderr + bad.stdout


def test_an_unreachable_receiver_is_recorded_as_not_sent_and_nothing_else_breaks(tmp_path: Path) -> None:
    rt = runtime(tmp_path, [f"json://127.0.0.1:{free_port()}/nobody"])
    node_ops.drain_node(rt, "a", node_ops.NodeDrainRequest(approve=False))
    started = time.monotonic()
    assert sweep(rt) == 1 and sweep(rt) == 0  # recorded: not retried on every poll
    assert time.monotonic() - started < 30
    from service.notify import NotificationRow

    with rt.sessions() as session:
        assert [row.sent for row in session.query(NotificationRow)] == [False]

"""The console in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by
Selenium against `ferry serve` on loopback. Log in with an operator's token, see the fleet, follow a
pending job, approve its plan and watch its moves progress over server-sent events to "succeeded",
cancel another job; who did what is on the page; /docs renders from ferry's own files. Screenshots
go to tests/artifacts/ (not in git).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.sim.test_api import AUTH, EMPTY_A, TOKEN, free_port, hand_plan, serve_answers, wait_for
from tests.integration.sim.test_cli import FERRY, ferry, write_config

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
#: Slow enough simulated time that a two-move job runs for seconds: its progress can be seen moving.
SPEEDUP = "30"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (make test installs them)")]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`ferry serve` on a free loopback port; yields its base URL and its config."""
    config = write_config(tmp_path, speedup=float(SPEEDUP))
    config.write_text(config.read_text() + "[schedule]\npoll_s = 0.2\n")
    port, log = free_port(), (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([FERRY, "--config", str(config), "serve", "--port", str(port)],
                            env={**os.environ, "FERRY_API_TOKEN": TOKEN, "PYTHONPATH": str(Path.cwd())},
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: serve_answers(proc, base, tmp_path / "serve.log"), timeout=60)
        yield base, config
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers online
    monkeypatch.setenv("SE_AVOID_STATS", "true")
    profile = tempfile.mkdtemp(prefix="ferry-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1800", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def until(condition: Callable[[], Any], timeout: float = 60.0, every: float = 0.1) -> Any:
    """Poll a page condition (bounded); a stale element mid-swap counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception:  # noqa: BLE001 - htmx replaced the element between find and read
            pass
        time.sleep(every)
    raise AssertionError("the page did not reach the expected state in time")


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"console-{name}.png"))


def job_state(driver: Any) -> tuple[str, int]:
    """The job panel's state and progress, read in one script call: htmx swaps the panel while the
    stream runs, so two separate reads could straddle a swap (a stale element)."""
    read = driver.execute_script(
        "const h = document.querySelector('#job-detail .job-state');"
        "return h ? [h.dataset.state, h.dataset.progress] : null;")
    if read is None:
        raise LookupError("the job panel is not shown")
    return read[0], int(read[1])


def click(driver: Any, css: str) -> None:
    """Click an element that htmx may be swapping out: retried (bounded) until one click lands."""
    def clicked() -> bool:
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True

    until(clicked)


def open_job(driver: Any, job_id: int) -> None:
    """Click the job in the list until its panel shows (the list is re-rendered every few seconds,
    so a click can land on a row that is being replaced)."""
    def opened() -> bool:
        if not driver.find_elements(By.ID, f"job-{job_id}"):
            driver.find_element(By.CSS_SELECTOR, f'#jobs-table tr[data-job="{job_id}"] a').click()
        return bool(driver.find_elements(By.ID, f"job-{job_id}"))

    until(opened, every=0.5)


def test_log_in_approve_watch_it_succeed_and_cancel_another(served: tuple[str, Path], browser: Any) -> None:
    base, config = served
    operator = ferry("user", "add", "otto", "--role", "operator", config=config).stdout.strip()
    plan = httpx.post(f"{base}/v1/plans/evacuate", headers=AUTH, timeout=60, json={"nodes": ["b"]}).json()
    approve_me = httpx.post(f"{base}/v1/jobs", headers=AUTH, timeout=30, json={"plan": plan})
    cancel_me = httpx.post(f"{base}/v1/jobs", headers=AUTH, timeout=30, json={"plan": hand_plan(EMPTY_A[2:3])})  # onto c: b is reserved by the evacuation
    assert approve_me.status_code == 201 and cancel_me.status_code == 201, (approve_me.text, cancel_me.text)
    first, second = approve_me.json()["id"], cancel_me.json()["id"]

    browser.get(f"{base}/")
    until(lambda: browser.find_element(By.ID, "token")).send_keys(operator)
    browser.find_element(By.ID, "login").click()
    assert until(lambda: browser.find_element(By.ID, "signed-in").text).startswith("otto")
    rows = until(lambda: browser.find_elements(By.CSS_SELECTOR, "#fleet-table tr[data-node]"))
    assert [r.get_attribute("data-node") for r in rows] == ["a", "b", "c"]
    card = until(lambda: browser.find_element(By.ID, f"plan-{first}"))
    assert len(card.find_elements(By.CSS_SELECTOR, "svg.chart rect.after")) == 3  # before -> after, per node
    browser.execute_script("window.ferryPageMarker = 1")  # gone if anything reloads the page
    shot(browser, "1-fleet-and-plans")

    open_job(browser, first)  # follow it before approval: its stream starts at 0 %
    assert until(lambda: job_state(browser)) == ("pending", 0)
    click(browser, f"#plan-{first} button.approve")
    until(lambda: "approved by otto" in browser.find_element(By.ID, "plans").text)
    seen: list[int] = [0]  # pending, as read above
    taken: list[None] = []

    def finished() -> bool:
        state, progress = job_state(browser)
        if not seen or seen[-1] != progress:
            seen.append(progress)
        if 0 < progress < 100 and not taken:
            taken.append(shot(browser, "2-job-running"))  # at the first figure in between
        return state == "succeeded"

    until(finished, timeout=120, every=0.05)
    # the progress moved: from 0 through at least one figure in between to 100, never backwards
    assert seen[-1] == 100 and seen == sorted(seen) and any(0 < p < 100 for p in seen), seen
    until(lambda: "approve by otto" in browser.find_element(By.ID, f"job-{first}").text)
    assert browser.execute_script("return window.ferryPageMarker") == 1, "the page reloaded"
    shot(browser, "3-job-succeeded")

    open_job(browser, second)
    click(browser, f"#job-{second} button.cancel")
    until(lambda: job_state(browser)[0] in ("cancelling", "cancelled"))
    until(lambda: "cancel by otto" in browser.find_element(By.ID, f"job-{second}").text)
    shot(browser, "4-job-cancelled")

    wait_for(lambda: httpx.get(f"{base}/v1/jobs/{second}", headers=AUTH, timeout=5).json()["state"] == "cancelled")
    done = httpx.get(f"{base}/v1/jobs/{first}", headers=AUTH, timeout=5).json()
    assert done["state"] == "succeeded" and [a["by"] for a in done["actions"]] == ["otto"]

    browser.get(f"{base}/docs")  # Swagger UI from ferry's own files renders the API's description
    title = until(lambda: browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text)
    assert title.startswith("ferry")
    assert until(lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    shot(browser, "5-docs")

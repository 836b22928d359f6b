"""The dashboard in a real headless Chromium: served by `perfbench dashboard`'s command line,
opened straight at a deep link, a Plotly chart drawn, a screenshot saved.

Needs Debian's chromium and Playwright's Python package (scripts/install_browser.sh); skipped
with the reason otherwise. Screenshots go to $PERFBENCH_SCREENSHOTS if set, else a tmp dir.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from results_factory import synthetic_sweep, write_run

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("PERFBENCH_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = [("", "accuracy"), ("curves", "curves"), ("roofline", "roofline"), ("models", "models"),
         ("what-if", "what-if"), ("tp", "tp")]


def _requirements() -> None:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (scripts/install_browser.sh)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/install_browser.sh installs Debian's chromium)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(port: int, server: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"streamlit exited with {server.returncode}: {server.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("streamlit did not become healthy in time")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _requirements()
    from perfbench.commands.dashboard import streamlit_argv

    results = tmp_path_factory.mktemp("results") / "h100"
    write_run(results, synthetic_sweep())
    port = _free_port()
    env = dict(os.environ, PERFBENCH_RESULTS=str(results))
    proc = subprocess.Popen(streamlit_argv(results, port, headless=True), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(port, proc)
        yield f"http://localhost:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    _requirements()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1400, "height": 1600})
        try:
            yield context.new_page()
        finally:
            context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    where = os.environ.get("PERFBENCH_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("url_path,name", PAGES, ids=[name for _, name in PAGES])
def test_page_draws_a_plotly_chart_in_chromium(url_path, name, server, browser_page, shots):
    browser_page.goto(f"{server}/{url_path}")
    browser_page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
    browser_page.wait_for_timeout(500)  # let the last traces paint before the picture
    target = shots / f"dashboard-{name}.png"
    browser_page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    assert browser_page.locator("[data-testid='stException']").count() == 0
    assert browser_page.locator("text=Page not found").count() == 0


def test_runs_page_shows_its_table_and_download(server, browser_page, shots):
    browser_page.goto(f"{server}/runs")
    browser_page.wait_for_selector("text=Download CSV", timeout=60_000)
    browser_page.screenshot(path=str(shots / "dashboard-runs.png"), full_page=True)
    assert browser_page.locator("[data-testid='stException']").count() == 0


def test_traces_page_opens_at_its_deep_link(server, browser_page, shots):
    browser_page.goto(f"{server}/traces")
    browser_page.wait_for_selector("text=Predicted vs counted: kernels per point", timeout=60_000)
    browser_page.wait_for_timeout(500)
    browser_page.screenshot(path=str(shots / "dashboard-traces.png"), full_page=True)
    assert browser_page.locator("[data-testid='stException']").count() == 0
    assert browser_page.locator("text=Page not found").count() == 0


def test_a_dashboard_table_shows_numbers_in_the_one_format(server, browser_page, shots):
    """The curves page's error table as Chromium draws it (its accessible cells): every number to four
    significant digits with the integer part whole (255.3, 2288, 0.05205), no 0.052048000000000004."""
    from dashboards.data import round_number

    browser_page.goto(f"{server}/curves")
    browser_page.wait_for_selector("[data-testid='stDataFrame'] td", state="attached", timeout=60_000)
    browser_page.wait_for_timeout(500)
    browser_page.screenshot(path=str(shots / "dashboard-curves-table.png"), full_page=True)
    grid = browser_page.locator("[data-testid='stDataFrame']").first
    headers = [grid.locator("th").nth(i).text_content() for i in range(grid.locator("th").count())]
    cells = [grid.locator("td").nth(i).text_content() for i in range(grid.locator("td").count())]
    numbers = [float(text) for text in cells if text.replace(".", "", 1).replace("-", "", 1).isdigit()]
    assert "measured ms" in headers and len(numbers) > 10
    assert all(round_number(n) == n and len(text.lstrip("-").replace(".", "").lstrip("0")) <= max(4, len(str(int(abs(n)))))
               for n, text in zip(numbers, [t for t in cells if t.replace(".", "", 1).replace("-", "", 1).isdigit()]))

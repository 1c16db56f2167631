"""Fixtures for the real-browser tests: a JupyterLab server on 127.0.0.1 and Debian's Chromium driven
by Playwright (never ``playwright install``: no browser download; ``executable_path`` instead).

Without chromium or playwright the tests are skipped, unless BROWSER_TESTS_REQUIRED=1 (CI), where
that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
REQUIRED = os.environ.get("BROWSER_TESTS_REQUIRED") == "1"
SERVER_START_S = 90
UI_TIMEOUT_MS = 60_000      # page load, kernel start, running all cells (slow 2-core machines)

CHROMIUM_ARGS = [
    "--no-sandbox",                 # needed when running as root
    "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",   # no DNS: only 127.0.0.1 answers
]


def _missing() -> Optional[str]:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (python) is not installed: pip install playwright (never `playwright install`)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)"
    try:
        import ipykernel  # noqa: F401
        import jupyterlab  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed: pip install 'lm-magics[test]'"
    return None


@pytest.fixture(scope="session")
def browser_deps():
    """Skip when chromium/playwright/jupyterlab are missing; fail instead with BROWSER_TESTS_REQUIRED=1."""
    why = _missing()
    if why is not None:
        if REQUIRED:
            pytest.fail(f"BROWSER_TESTS_REQUIRED=1 but {why}", pytrace=False)
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """JupyterLab on 127.0.0.1 with its own config, runtime, settings and IPython dirs (under base)."""

    def __init__(self, base: Path):
        self.base, self.root = base, base / "root"
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        self.proc: Optional[subprocess.Popen] = None
        for d in ("root", "config", "runtime", "ipython", "settings", "workspaces"):
            (base / d).mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        settings = {   # no toasts over the widgets, every cell kept in the DOM
            "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False,
                                                "doNotDisturbMode": True},
            "notebook-extension/tracker": {"windowingMode": "none"},
        }
        for name, value in settings.items():
            f = self.base / "settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(value))
        env = dict(os.environ)
        env.update(JUPYTER_CONFIG_DIR=str(self.base / "config"), JUPYTER_RUNTIME_DIR=str(self.base / "runtime"),
                   IPYTHONDIR=str(self.base / "ipython"), JUPYTER_PLATFORM_DIRS="1",
                   PYDEVD_DISABLE_FILE_VALIDATION="1",
                   # the kernel imports this checkout's lm_magics even if it is not pip-installed
                   PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p))
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
               f"--port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", f"--LabApp.user_settings_dir={self.base / 'settings'}",
               f"--LabApp.workspaces_dir={self.base / 'workspaces'}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly",
               # a safety net if pytest is killed: idle kernels are culled and the server exits
               "--MappingKernelManager.cull_idle_timeout=600", "--MappingKernelManager.cull_interval=60",
               "--ServerApp.shutdown_no_activity_timeout=900"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter exited rc={self.proc.returncode}\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"jupyter did not answer in {SERVER_START_S}s\n{self.log()}")
            time.sleep(0.25)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)            # the server shuts its kernels down
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)     # only the server's own process group
                p.wait(timeout=10)
        self._log.close()
        self.proc = None


def write_notebook(path: Path, cells: list) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(c) for c in cells], metadata={
        # kernelspec metadata: no "Select Kernel" dialog
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"}})
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def jupyter_server(browser_deps, tmp_path_factory):
    base = tmp_path_factory.mktemp("jlab")
    for attempt in range(3):             # a probed free port can be taken before the server binds it
        srv = JupyterServer(base)
        try:
            srv.start()
            break
        except RuntimeError:
            srv.stop()
            if attempt == 2:
                raise
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser(browser_deps):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def browser_page(browser, jupyter_server):
    """One page for the module (the notebook runs once; the tests act on its widgets in order)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(UI_TIMEOUT_MS)
    pg = ctx.new_page()
    errors: list = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # The page talks to nothing but our server.
    pg.route(re.compile(r"^(?!(http|ws)://127\.0\.0\.1[:/]|data:|blob:|about:)"), lambda route: route.abort())
    pg.console_errors = errors
    yield pg
    ctx.close()


@pytest.fixture
def page(browser_page, jupyter_server, request, tmp_path_factory):
    """The module's page; on failure, a screenshot, the console errors and the server log are printed."""
    failed_before = request.session.testsfailed
    yield browser_page
    if request.session.testsfailed > failed_before:
        shot = tmp_path_factory.getbasetemp() / f"fail-{request.node.name}.png"
        try:
            browser_page.screenshot(path=str(shot))
        except Exception as exc:  # noqa: BLE001
            shot = f"(screenshot failed: {exc})"
        print(f"\n--- failure screenshot: {shot}\n--- console errors: {browser_page.console_errors}"
              f"\n--- server log tail:\n{jupyter_server.log()}")

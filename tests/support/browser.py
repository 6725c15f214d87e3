"""Support for tests/chapters/test_browser.py: JupyterLab and headless Chromium, started and stopped by the test itself.

- `JupyterLab`: a server on 127.0.0.1 with a random token, its own runtime, config, data and settings folders (so
  nothing of the user's is read or written), autosave off (the chapters on disk are never modified), kernels in
  quick mode (MINIDIFF_QUICK=1).
- `chromium`: Debian's /usr/bin/chromium driven by Playwright (the Python package only: no browser download),
  a fresh profile, every request that is not local aborted and recorded.
Every process started here is stopped by its own PID. What a learner does with a page is in tests/support/learner.py.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync", "--disable-quic"]
INSTALL_HINT = ("install a browser for the browser tests: `apt-get install -y chromium chromium-driver` and "
                "`.venv/bin/pip install -r requirements-dev.txt` (Playwright's Python package; never run "
                "`playwright install`, which downloads a browser)")
LAB_SETTINGS = {  # JupyterLab user settings for the test server: no autosave, every cell in the DOM, no prompts
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
NOT_LOCAL = re.compile(r"^(?!(file:|data:|blob:|http://127\.0\.0\.1[:/]))")  # any URL that leaves this machine


def chromium_path() -> str | None:
    """Debian's Chromium (or the one named by MINIDIFF_CHROMIUM), or None when there is none."""
    candidates = [os.environ.get("MINIDIFF_CHROMIUM", ""), "chromium", "chromium-browser"]
    return next((shutil.which(name) for name in candidates if name and shutil.which(name)), None)


def require_browser() -> None:
    """Skip (fail under CI=true) when Playwright's Python package or a Chromium binary is missing."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package")
    if chromium_path() is None:
        missing.append("a chromium binary")
    if missing:
        message = f"no browser: missing {' and '.join(missing)}; {INSTALL_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_pids(pid: int) -> list[int]:
    """The PIDs whose parent is `pid` (read from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def pids_with_argument(argument: str) -> list[int]:
    """The PIDs whose command line contains `argument` (a path unique to this test run)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if argument in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def is_running(pid: int) -> bool:
    """True while the process exists and is not a zombie (exited, waiting for its parent to collect it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_pid(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the process, then SIGKILL it if it is still running after grace_s seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not is_running(pid):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while is_running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


class JupyterLab:
    """A JupyterLab server serving root_dir, with all its state under work_dir."""

    def __init__(self, root_dir: Path, work_dir: Path, startup_s: float = 90.0) -> None:
        self.root_dir, self.work_dir = root_dir, work_dir
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = work_dir / "jupyterlab.log"
        self.process = self.start(startup_s)
        self.kernel_pids: set[int] = set()

    def write_settings(self) -> Path:
        settings_dir = self.work_dir / "user-settings"
        for plugin, values in LAB_SETTINGS.items():
            package, name = plugin.rsplit("/", 1)
            path = settings_dir / package / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        return settings_dir

    def start(self, startup_s: float) -> subprocess.Popen:
        env = dict(os.environ, MINIDIFF_QUICK="1", JUPYTER_RUNTIME_DIR=str(self.work_dir / "runtime"),
                   JUPYTER_CONFIG_DIR=str(self.work_dir / "config"), JUPYTER_DATA_DIR=str(self.work_dir / "data"),
                   IPYTHONDIR=str(self.work_dir / "ipython"))
        env.pop("MINIDIFF_BOOK", None)
        env.pop("MPLBACKEND", None)  # the kernel draws inline, as for a learner
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
                   f"--LabApp.user_settings_dir={self.write_settings()}",
                   f"--LabApp.workspaces_dir={self.work_dir / 'workspaces'}",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.getuid() == 0:
            command.append("--allow-root")
        with open(self.log_path, "wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                self.api("GET", "/api/status")
                return process
            except OSError:
                time.sleep(0.5)
        stop_pid(process.pid)
        raise RuntimeError(f"JupyterLab did not answer within {startup_s} s:\n{self.log_path.read_text()[-3000:]}")

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(f"{self.base_url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def notebook_url(self, name: str) -> str:
        """The URL that opens the notebook in a fresh workspace (no tabs restored from an earlier one)."""
        return f"{self.base_url}/lab/tree/{name}?reset&token={self.token}"

    def wait_for_kernel(self, page, name: str, timeout_s: float) -> None:
        """Wait until the notebook `name` (open in `page`) has a kernel that has started and is idle."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sessions = self.api("GET", "/api/sessions")
            if any(session["path"] == name and session["kernel"]["execution_state"] == "idle" for session in sessions):
                return
            page.wait_for_timeout(500)  # unlike time.sleep, lets Playwright serve the page meanwhile
        raise TimeoutError(f"no idle kernel for {name} after {timeout_s:.0f} s:\n{self.log_path.read_text()[-3000:]}")

    def shut_down_kernels(self) -> None:
        """Shut down every kernel of this server (and remember their PIDs, to make sure they are gone at stop)."""
        self.kernel_pids.update(child_pids(self.process.pid))
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def stop(self) -> None:
        """Stop the server and every kernel it started, by PID."""
        self.kernel_pids.update(child_pids(self.process.pid))
        stop_pid(self.process.pid, grace_s=20.0)  # on SIGTERM the server shuts its kernels down first
        self.process.wait()
        for pid in self.kernel_pids:
            stop_pid(pid)


@contextmanager
def chromium(work_dir: Path) -> Iterator[tuple[object, list[str]]]:
    """A headless Chromium context with a fresh profile; yields (context, URLs it tried to fetch from outside)."""
    from playwright.sync_api import sync_playwright

    profile = work_dir / f"chromium-profile-{secrets.token_hex(4)}"
    flags = CHROMIUM_FLAGS + (["--no-sandbox"] if os.getuid() == 0 else [])
    blocked: list[str] = []

    def block(route) -> None:
        blocked.append(route.request.url)
        route.abort()

    playwright = sync_playwright().start()
    try:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path(), headless=True, args=flags,
            viewport={"width": 1280, "height": 900})
        try:
            context.route(NOT_LOCAL, block)  # matched inside the browser driver: local requests never wait on Python
            yield context, blocked
        finally:
            context.close()
    finally:
        playwright.stop()
        for pid in pids_with_argument(str(profile)):  # a browser process that outlived close(): stop it by PID
            stop_pid(pid)

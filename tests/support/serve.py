"""The one way the tests start ``tokenward serve`` as a real subprocess.

The child gets a clean environment: the caller's ``TOKENWARD_*`` variables are dropped, and
only the settings the test passes are set, so a developer's shell (or CI's) cannot change what
a test runs against. :func:`launch` starts the process; :meth:`Served.wait_ready` polls
``/healthz`` until it answers 200 (the process exiting first is a failure with its log);
:meth:`Served.stop` ends it (SIGTERM, then SIGKILL). :func:`serve` is the context manager.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent / "tokenward"
START_TIMEOUT = 30.0


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without any ``TOKENWARD_*`` (or ``PROMETHEUS_*``: the
    multiprocess metrics directory) variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENWARD_", "PROMETHEUS_"))}
    env.update(settings or {})
    return env


@dataclass
class Served:
    """A ``tokenward serve`` child process."""

    proc: subprocess.Popen[bytes]
    port: int
    base: str
    log_path: Path

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def ready(self) -> bool:
        """One ``/healthz`` probe; raises when the process has exited."""
        if self.proc.poll() is not None:
            raise ServeError(f"tokenward serve exited ({self.proc.returncode}):\n{self.log_tail()}")
        try:
            return httpx.get(f"{self.base}/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        """Poll ``/healthz`` until 200; returns the seconds it took. Stops the process and
        raises :class:`ServeError` when it exits or does not answer in time."""
        start = time.monotonic()
        try:
            while not self.ready():
                if time.monotonic() - start > timeout:
                    raise ServeError(
                        f"tokenward serve did not answer /healthz within {timeout} s:\n"
                        + self.log_tail()
                    )
                time.sleep(0.05)  # polling for start-up, not waiting for time to pass
        except ServeError:
            self.stop()
            raise
        return time.monotonic() - start

    def kill9(self) -> None:
        """SIGKILL the whole process group (the uvicorn workers too): no shutdown hooks."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after 15 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


class ServeError(RuntimeError):
    """``tokenward serve`` exited or never became ready."""


def launch(
    settings: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    base_host: str | None = None,
    cwd: Path | None = None,
    args: Sequence[str] = (),
    log_path: Path | None = None,
) -> Served:
    """Start ``tokenward serve --host HOST --port PORT [args]`` with :func:`clean_env`
    (``settings`` are the only ``TOKENWARD_*`` variables it sees) in its own process group;
    stdout and stderr go to ``log_path`` (a temporary file by default). Does not wait."""
    port = port or free_port()
    base = f"http://{base_host or host}:{port}"
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"tokenward-serve-{port}-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(BIN), "serve", "--host", host, "--port", str(port), *args],
            cwd=cwd,
            env=clean_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Served(proc, port, base, log_path)


@contextlib.contextmanager
def serve(
    settings: Mapping[str, str] | None = None,
    *,
    timeout: float = START_TIMEOUT,
    **kw: object,
) -> Iterator[Served]:
    """A started and ready ``tokenward serve``, stopped on exit (see :func:`launch`)."""
    served = launch(settings, **kw)  # type: ignore[arg-type]
    try:
        served.wait_ready(timeout)
        yield served
    finally:
        served.stop()


def run_cli(
    settings: Mapping[str, str] | None,
    *args: str,
    stdin: str | None = None,
    cwd: Path | None = None,
) -> str:
    """``tokenward ARGS`` with :func:`clean_env` (``settings``); asserts exit 0, returns stdout."""
    done = subprocess.run(
        [str(BIN), *args],
        env=clean_env(settings),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0, f"tokenward {' '.join(args[:2])}: {done.stderr[-1500:]}"
    return done.stdout

"""Start a real Mosquitto on a free loopback port for tests and benchmarks."""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    scheme: str = "mqtt"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on {port} within {timeout_s}s")


@contextlib.contextmanager
def mosquitto(port: int | None = None, *, settings: str = "allow_anonymous true\n",
              scheme: str = "mqtt") -> Iterator[Broker]:
    """Run `mosquitto` from PATH (or /usr/sbin) until the block ends.

    `settings` are mosquitto.conf lines for its one loopback listener and the broker
    (by default: anyone may do anything), e.g. a password_file, acl_file, pid_file, or
    certfile/keyfile/cafile with `scheme="mqtts"`. Files they name must be readable by
    the user running the tests: mosquitto started as root stays root here.
    """
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise RuntimeError("mosquitto is not installed: run scripts/test, which installs it")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="trygg-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            f"{settings}"
            # As root mosquitto would switch to the `mosquitto` user, who cannot read the
            # tests' files; as anyone else this line does nothing.
            f"user {getpass.getuser()}\n"
            "persistence false\n"
            "set_tcp_nodelay true\n"
            "max_queued_messages 100000\n"
            "log_dest none\n"
        )
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL)
        try:
            _wait_listening(port, proc)
            yield Broker("127.0.0.1", port, scheme)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()

"""A throwaway Radicale CalDAV server (Debian's package, run under Debian's python3).

Plain HTTP on a free loopback port, htpasswd users with plain passwords, owner-only
rights, storage in a temp dir. Radicale speaks sync-collection (RFC 6578) and answers a
bad token with 403 valid-sync-token; it does no scheduling (invitations go as iMIP mail).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

#: Debian's radicale runs under the system interpreter, not the project's venv
SYSTEM_PYTHON = "/usr/bin/python3"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Radicale:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="crmail-radicale-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._users: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    def add_user(self, name: str, password: str) -> str:
        """Adds a login (Radicale rereads the htpasswd file on every request)."""
        self._users[name] = password
        (self.dir / "users").write_text(
            "".join(f"{u}:{p}\n" for u, p in self._users.items()), encoding="utf-8"
        )
        return f"{self.url}{name}/"

    def __enter__(self) -> Radicale:
        if not Path(SYSTEM_PYTHON).exists() or shutil.which("radicale") is None:
            raise RuntimeError("Radicale is not installed (scripts/install.sh installs it)")
        (self.dir / "users").write_text("", encoding="utf-8")
        conf = self.dir / "config"
        conf.write_text(
            "[server]\n"
            f"hosts = 127.0.0.1:{self.port}\n"
            "[auth]\n"
            "type = htpasswd\n"
            f"htpasswd_filename = {self.dir / 'users'}\n"
            "htpasswd_encryption = plain\n"
            "delay = 0\n"
            "[rights]\n"
            "type = owner_only\n"
            "[storage]\n"
            f"filesystem_folder = {self.dir / 'collections'}\n"
            "[web]\n"
            "type = none\n"
            "[logging]\n"
            "level = warning\n",
            encoding="utf-8",
        )
        self._proc = subprocess.Popen(
            [SYSTEM_PYTHON, "-m", "radicale", "--config", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "log", "wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url, timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # it answers (401 without a login)
            except OSError:
                if self._proc.poll() is not None:
                    break
                time.sleep(0.05)
        log = (self.dir / "log").read_text(errors="replace")
        self.__exit__(None, None, None)
        raise RuntimeError(f"Radicale did not start: {log[-2000:]}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            self._proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

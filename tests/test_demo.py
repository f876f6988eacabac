"""The README's first command: `crmail demo` starts, syncs its seeded mailbox and serves."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.servers.dovecot import free_port


def test_demo_starts_syncs_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CRMAIL_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "crmail.cli", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        banner = ""
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while "Ctrl-C stops" not in banner:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, banner
            banner += line
            assert time.monotonic() < deadline, banner
        token = re.search(r"Bearer ([\w-]+)", banner)
        assert token, banner
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        base = f"http://127.0.0.1:{port}"
        # The seeded mailbox syncs: three contacts wrote, three private mails stay out.
        for _ in range(200):
            inbox = httpx.get(f"{base}/api/inbox", headers=headers, timeout=5).json()
            if len(inbox["items"]) == 3:
                break
            time.sleep(0.05)
        assert len(inbox["items"]) == 3, inbox
        status = httpx.get(f"{base}/api/accounts", headers=headers, timeout=5).json()
        assert status[0]["state"] == "live"
        assert httpx.get(f"{base}/signin", timeout=5).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _processes(*, living: bool = False) -> list[tuple[int, str, int, int]]:
    """(pid, command name, parent pid, process group) of every process; ``living``: not
    of the zombies (killed, not yet reaped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if living and fields[0] == "Z":
            continue
        found.append((int(entry.name), comm, int(fields[1]), int(fields[2])))
    return found


def _living(group: int) -> list[tuple[int, str, int, int]]:
    return [p for p in _processes(living=True) if p[3] == group]


def test_demo_stops_its_dovecot_on_sigterm(tmp_path: Path) -> None:
    """Container and service managers stop with SIGTERM: nothing the demo started stays."""
    port = free_port()
    env = {**os.environ, "CRMAIL_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "crmail.cli", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out = ""
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while "Ctrl-C stops" not in out:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, out
            out += line
            assert time.monotonic() < deadline, out
        dovecots = [
            pid for pid, comm, ppid, _ in _processes() if ppid == proc.pid and comm == "dovecot"
        ]
        assert len(dovecots) == 1, _processes()
        # Dovecot runs in its own process group (its master and every service it forks).
        group = dovecots[0]
        assert any(pgrp == group for *_, pgrp in _processes())

        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out + rest
        assert "Traceback" not in rest, rest
        # SIGKILLed processes linger a moment as zombies until the init process reaps
        # them; what must not stay is a living one.
        deadline = time.monotonic() + 10
        while (left := _living(group)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

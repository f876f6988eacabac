"""The README's first command: `crmail demo` starts, syncs its seeded mailbox and serves."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from crmail.demo.fakes import GOOGLE_MAILBOX, MICROSOFT_MAILBOX
from tests.servers.dovecot import free_port

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_demo_starts_syncs_and_serves(tmp_path: Path) -> None:
    proc, base, banner = _start_demo(tmp_path)
    try:
        token = re.search(r"Bearer ([\w-]+)", banner)
        assert token, banner
        headers = {"Authorization": f"Bearer {token.group(1)}"}
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
        _stop(proc)


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
    proc, _, out = _start_demo(tmp_path)
    try:
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


class _Form(HTMLParser):
    """The fake consent page's form: its action and hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"]] = a.get("value", "")


def _start_demo(
    tmp_path: Path, *args: str, cwd: Path | None = None
) -> tuple[subprocess.Popen[str], str, str]:
    """The demo started, its URL and its banner. Another test worker may take the free
    port before the demo binds it (seen once in CI): the demo then exits saying the
    address is in use, and is started again on a new port in a fresh data directory.
    Any other failure fails the test."""
    for attempt in range(3):
        port = free_port()
        data = tmp_path if attempt == 0 else tmp_path / f"retry{attempt}"
        env = {**os.environ, "CRMAIL_DATA_DIR": str(data)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "crmail.cli", "demo", "--port", str(port), *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            return proc, f"http://127.0.0.1:{port}", _banner(proc)
        except AssertionError as exc:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            if "address already in use" not in str(exc):
                raise
    raise AssertionError("the demo found no free port in three tries")


def _banner(proc: subprocess.Popen[str]) -> str:
    banner = ""
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while "Ctrl-C stops" not in banner:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, banner
        banner += line
        assert time.monotonic() < deadline, banner
    return banner


def _stop(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize(
    ("button", "provider", "mailbox"),
    [("google", "gmail", GOOGLE_MAILBOX), ("microsoft", "graph", MICROSOFT_MAILBOX)],
    ids=["google", "microsoft"],
)
def test_the_demo_with_fake_providers_connects_a_mailbox(
    tmp_path: Path, button: str, provider: str, mailbox: str
) -> None:
    """Sign in, press "Connect with Google/Microsoft", allow on the fake's consent page:
    the mailbox imports through the fake API, the contacts' mail only."""
    proc, base, banner = _start_demo(tmp_path, "--fake-providers")
    try:
        assert "Connect with Google" in banner and "Connect with Microsoft" in banner
        token = re.search(r"Bearer ([\w-]+)", banner)
        user = re.search(r"/signin\s+as (\S+) / (\S+)", banner)
        assert token and user, banner
        api = {"Authorization": f"Bearer {token.group(1)}"}
        with httpx.Client(base_url=base, timeout=10) as web:
            page = web.get("/signin")
            signed_in = web.post(
                "/signin",
                data={
                    "email": user.group(1),
                    "password": user.group(2),
                    "csrf_token": CSRF.search(page.text).group(1),  # type: ignore[union-attr]
                },
            )
            assert signed_in.status_code == 303, signed_in.text
            settings = web.get("/settings/email")
            assert (
                "Connect with Google" in settings.text and "Connect with Microsoft" in settings.text
            )
            csrf = CSRF.search(settings.text).group(1)  # type: ignore[union-attr]
            start = web.post(f"/settings/email/oauth/{button}/start", data={"csrf_token": csrf})
            assert start.status_code == 303, start.text
            # The fake provider's consent page, as a browser would show it: press Allow.
            consent = httpx.get(start.headers["location"], timeout=10)
            assert consent.status_code == 200 and "Allow" in consent.text, consent.text
            form = _Form()
            form.feed(consent.text)
            allowed = httpx.post(
                urljoin(start.headers["location"], form.action),
                data={**form.fields, "answer": "allow"},
                timeout=10,
            )
            assert allowed.status_code == 302, allowed.text
            back = web.get(allowed.headers["location"])
            assert back.status_code == 303, back.text
            assert "/settings/email/accounts/" in back.headers["location"]

        # The mailbox imports through the fake API: the three contacts' mail reaches
        # the Inbox, the private message stays out.
        subjects: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            inbox = httpx.get(f"{base}/api/inbox", headers=api, timeout=5).json()
            subjects = [str(item["message"]["subject"]) for item in inbox["items"]]
            if sum("checking in" in s for s in subjects) == 3:
                break
            time.sleep(0.2)
        assert sum("checking in" in s for s in subjects) == 3, inbox
        assert not any("Sunday lunch" in s for s in subjects)
        accounts = httpx.get(f"{base}/api/accounts", headers=api, timeout=5).json()
        connected = [a for a in accounts if a["provider"] == provider]
        assert len(connected) == 1 and connected[0]["email"] == mailbox, accounts
    finally:
        _stop(proc)


def test_fake_providers_outside_the_checkout_fail_in_one_line(tmp_path: Path) -> None:
    # An installed crmail (no tests/ beside it), started elsewhere: simulated by a copy
    # of the package outside the checkout.
    import shutil

    import crmail

    site = tmp_path / "site"
    shutil.copytree(Path(crmail.__file__).parent, site / "crmail")
    env = {
        **os.environ,
        "CRMAIL_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(site),
    }
    done = subprocess.run(
        [sys.executable, "-m", "crmail.cli", "demo", "--fake-providers"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: --fake-providers needs crmail's repository checkout")

"""Real-browser fixtures: Debian's Chromium driven by Playwright, against crmail served by
uvicorn on a loopback port with a real sync service, all in a background thread.

Playwright's own browser download is never used (and is blocked here): the system
Chromium is launched by path with a fresh profile directory.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crmail.api import create_app
from crmail.config import Settings
from crmail.crypto import new_key
from crmail.services import Services
from crmail.storage import crm
from crmail.storage import web as web_store
from crmail.sync.inbound import SyncOptions
from crmail.sync.service import SyncService
from crmail.sync.worker import WorkerOptions
from tests.db_fixtures import LOOPBACK
from tests.fakes.oauth import RunningFakeOAuth
from tests.servers.dovecot import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAST = WorkerOptions(sync=SyncOptions(batch_size=50), poll_interval=0.3, idle_timeout=5)
PASSWORD = "browser-test-password"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

playwright_api = pytest.importorskip("playwright.sync_api")


class LiveServer:
    """crmail (API + web + sync service) on 127.0.0.1:<free port>, in its own event loop."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._started = threading.Event()
        self._server: object = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        import uvicorn

        sync = SyncService(self.services.db, self.services.box, FAST, scan_interval=0.2)
        self.services.sync = sync
        sync.start()
        config = uvicorn.Config(
            create_app(self.services), host="127.0.0.1", port=self.port, log_level="warning"
        )
        server = uvicorn.Server(config)
        self._server = server
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        self._started.set()
        try:
            await task
        finally:
            await sync.stop()

    def __enter__(self) -> LiveServer:
        self._thread.start()
        assert self._started.wait(15), "crmail did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True  # type: ignore[attr-defined]
        self._thread.join(15)


@dataclass
class Crm:
    services: Services
    server: LiveServer
    workspace_id: int
    owner: crm.UserInfo
    teammate: crm.UserInfo

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Crm]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'crmail.db'}",
        secret_keys=(new_key(),),
        mail_allowed_networks=LOOPBACK,  # the test Dovecot
    )
    services = Services.open(settings)

    def seed(s):  # type: ignore[no-untyped-def]
        ws = crm.create_workspace(s, "Acme").id
        owner = crm.create_user(s, ws, "owner@example.test", name="Olivia Owner", role="admin").user
        mate = crm.create_user(s, ws, "mate@example.test", name="Tom Teammate").user
        for u in (owner, mate):
            web_store.set_password(s, u.id, PASSWORD)
        return ws, owner, mate

    ws, owner, mate = services.db.run(seed)
    try:
        with LiveServer(services) as server:
            yield Crm(services, server, ws, owner, mate)
    finally:
        services.close()


# Module scope, not session: while Playwright's sync API is active it marks an asyncio
# loop as running in the main thread, which would break every async test that runs later.
@pytest.fixture
def oauth() -> Iterator[RunningFakeOAuth]:
    """The fake sign-in servers (Google's and Microsoft's OAuth)."""
    with RunningFakeOAuth() as f:
        yield f


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 860},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(chromium: object) -> Iterator[object]:
    context = chromium
    context.clear_cookies()  # type: ignore[attr-defined]
    p = context.new_page()  # type: ignore[attr-defined]
    p.set_default_timeout(15_000)
    try:
        yield p
    finally:
        p.close()


def sign_in(page: object, base: str, email: str) -> None:
    page.context.clear_cookies()  # type: ignore[attr-defined]
    page.goto(f"{base}/signin")  # type: ignore[attr-defined]
    page.fill("input[name=email]", email)  # type: ignore[attr-defined]
    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    page.click("button:has-text('Sign in')")  # type: ignore[attr-defined]
    page.wait_for_url(f"{base}/inbox")  # type: ignore[attr-defined]


def shot(page: object, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]

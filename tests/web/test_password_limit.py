"""Changing a password is limited like signing in: a stolen token or session cannot be used
to guess the current password. Wrong current passwords are counted per user, over the API
and the web form together."""

from __future__ import annotations

from collections.abc import Callable

from crmail.ratelimit import FailureLimiter
from tests.api.conftest import World
from tests.web.conftest import PASSWORD, Browser

MakeBrowser = Callable[..., Browser]

NEW_PASSWORD = "a much longer new passphrase"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _change(web: World, current: str, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return web.client.post(
        "/api/me/password",
        json={"current_password": current, "new_password": NEW_PASSWORD},
        headers=headers or web.owner.headers,
    )


def test_wrong_current_passwords_are_limited_per_user(web: World, browser: MakeBrowser) -> None:
    clock = Clock()
    web.services.password_failures = FailureLimiter(max_failures=5, window=300.0, clock=clock)
    for _ in range(5):
        assert _change(web, "guess").status_code == 403
    # Even the right password is refused now: a guesser learns nothing from the answer.
    blocked = _change(web, PASSWORD)
    assert blocked.status_code == 429, blocked.text
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 301
    # The web form shares the count.
    b = browser(web.owner)
    page = b.post(
        "/settings/security/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert page.status_code == 429 and "Retry-After" in page.headers
    # Per user: a teammate is not held up by the owner's count.
    assert _change(web, "guess", web.teammate.headers).status_code == 403

    clock.now += 301  # the window has passed
    assert _change(web, PASSWORD).status_code == 204


def test_a_right_password_resets_the_count(web: World) -> None:
    web.services.password_failures = FailureLimiter(max_failures=2, window=300.0)
    assert _change(web, "guess").status_code == 403
    assert (
        web.client.post(
            "/api/me/password",
            json={"current_password": PASSWORD, "new_password": PASSWORD},
            headers=web.owner.headers,
        ).status_code
        == 204
    )
    assert _change(web, "guess").status_code == 403
    assert _change(web, "guess").status_code == 403
    assert _change(web, PASSWORD).status_code == 429

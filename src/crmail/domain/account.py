"""The life of a connected mailbox, as a state table (h11 style).

States are what a user sees on the sync-health screen; events are what the sync
worker observes. A transition not in the table is a bug and raises.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class AccountState(StrEnum):
    NEW = "new"  # saved, never connected
    CONNECTING = "connecting"
    IMPORTING = "importing"  # initial import of at least one folder still running
    LIVE = "live"  # caught up, following changes (IDLE / polling)
    RETRYING = "retrying"  # network, server or database trouble, will retry with backoff
    AUTH_ERROR = "auth_error"  # credentials refused: paused until the user reconnects
    DISCONNECTED = "disconnected"  # stopped by the user; data kept


class AccountEvent(StrEnum):
    START = "start"
    CONNECTED_IMPORTING = "connected_importing"
    CONNECTED_LIVE = "connected_live"
    IMPORT_FINISHED = "import_finished"
    NETWORK_FAILED = "network_failed"
    STORAGE_FAILED = "storage_failed"  # the database refused a write (locked, disk full)
    CRASHED = "crashed"  # the worker stopped on an unexpected error; restarted with backoff
    AUTH_FAILED = "auth_failed"
    RECONNECT = "reconnect"  # new credentials given
    DISCONNECT = "disconnect"


S, E = AccountState, AccountEvent

TRANSITIONS: dict[tuple[AccountState, AccountEvent], AccountState] = {}


def _allow(sources: tuple[AccountState, ...], event: AccountEvent, target: AccountState) -> None:
    for source in sources:
        TRANSITIONS[(source, event)] = target


_RUNNING = (S.CONNECTING, S.IMPORTING, S.LIVE, S.RETRYING)
_allow((S.NEW, S.RETRYING, S.LIVE, S.IMPORTING, S.CONNECTING), E.START, S.CONNECTING)
_allow((S.CONNECTING, S.RETRYING, S.IMPORTING, S.LIVE), E.CONNECTED_IMPORTING, S.IMPORTING)
_allow((S.CONNECTING, S.RETRYING, S.IMPORTING, S.LIVE), E.CONNECTED_LIVE, S.LIVE)
_allow((S.IMPORTING, S.LIVE), E.IMPORT_FINISHED, S.LIVE)
_allow((*_RUNNING, S.NEW), E.NETWORK_FAILED, S.RETRYING)
_allow((*_RUNNING, S.NEW), E.STORAGE_FAILED, S.RETRYING)
_allow((*_RUNNING, S.NEW), E.CRASHED, S.RETRYING)
_allow((*_RUNNING, S.NEW), E.AUTH_FAILED, S.AUTH_ERROR)
# From every state: new credentials while a connection attempt is under way restart it.
_allow(
    (S.AUTH_ERROR, S.DISCONNECTED, S.RETRYING, S.NEW, S.LIVE, S.IMPORTING, S.CONNECTING),
    E.RECONNECT,
    S.CONNECTING,
)
_allow((*_RUNNING, S.NEW, S.AUTH_ERROR, S.DISCONNECTED), E.DISCONNECT, S.DISCONNECTED)

#: States in which a worker should be running for the account.
ACTIVE = frozenset({S.NEW, S.CONNECTING, S.IMPORTING, S.LIVE, S.RETRYING})


class IllegalTransition(Exception):
    pass


def transition(state: AccountState, event: AccountEvent) -> AccountState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"{event} is not allowed in state {state}") from None


# --- retrying -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before the next connection attempt.

    The wait doubles with each failure in a row, from ``first`` up to ``cap``, and starts
    from the bottom again after one successful round: a blip an hour must not leave a
    healthy account minutes behind because the process has seen many blips in its life.
    """

    first: float = 1.0
    cap: float = 300.0
    #: failures since the last successful round
    attempt: int = 0

    def failed(self) -> Backoff:
        return replace(self, attempt=self.attempt + 1)

    def succeeded(self) -> Backoff:
        return replace(self, attempt=0)

    def delay(self, jitter: float = 1.0) -> float:
        """Seconds to wait now; ``jitter`` in [0.5, 1] (random, from the caller) keeps the
        accounts of a restarted server from all coming back at the same instant."""
        if self.attempt == 0:
            return 0.0
        doubled = self.first * float(2 ** min(self.attempt - 1, 30))
        return min(self.cap, doubled) * jitter

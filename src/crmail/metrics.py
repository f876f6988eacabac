"""The cluster's figures (:mod:`crmail.storage.metrics`) in Prometheus' text format.

Every figure is a gauge read from the database when scraped; a few lines of writing,
no client library: nothing here counts in memory between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterable

from crmail.storage.metrics import Snapshot

#: the text exposition format's content type
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float]


def prometheus_text(snap: Snapshot, *, process_leases: int | None = None) -> str:
    """``process_leases``: leases held by the process answering, when it runs sync."""
    out: list[str] = []

    def gauge(name: str, help: str, samples: Iterable[Sample]) -> None:
        out.append(f"# HELP {name} {help}")
        out.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            out.append(f"{name}{_labels(labels)} {_number(value)}")

    gauge(
        "crmail_accounts",
        "Mail accounts per sync state.",
        (({"state": st}, n) for st, n in sorted(snap.accounts.items())),
    )
    gauge(
        "crmail_accounts_unowned",
        "Accounts to be synced that no process holds the lease of.",
        [({}, snap.unowned)],
    )
    gauge(
        "crmail_sync_processes",
        "Sync processes with a current heartbeat.",
        [({}, snap.processes)],
    )
    gauge(
        "crmail_account_leases",
        "Unexpired account leases per process (host:pid:random; account 0 is the default sender).",
        (({"owner": o}, n) for o, n in sorted(snap.leases.items())),
    )
    if process_leases is not None:
        gauge(
            "crmail_process_account_leases",
            "Account leases held by the process that answered this scrape.",
            [({}, process_leases)],
        )
    gauge(
        "crmail_outbox_actions",
        "Actions and sends owed to mail servers, per state.",
        (({"state": st}, n) for st, n in sorted(snap.outbox.items())),
    )
    gauge(
        "crmail_outbox_oldest_pending_seconds",
        "Age of the oldest pending outbox action (0: none pending).",
        [({}, snap.outbox_oldest_age)],
    )
    gauge(
        "crmail_webhook_deliveries",
        "Webhook deliveries pending (due or retrying) and failed (given up).",
        (({"state": st}, n) for st, n in sorted(snap.webhooks.items())),
    )
    ages = [("0.5", snap.check_age_p50), ("1", snap.check_age_max)]
    gauge(
        "crmail_account_check_age_seconds",
        "Over accounts being synced: seconds since each one's least recently checked "
        "folder was compared with the server (quantile 0.5 and 1 = max).",
        (({"quantile": q}, age) for q, age in ages if age is not None),
    )
    gauge(
        "crmail_sends_last_hour",
        "Messages sent from the CRM in the last hour, by outcome.",
        [
            ({"outcome": "sent"}, snap.sends_last_hour),
            ({"outcome": "failed"}, snap.sends_failed_last_hour),
        ],
    )
    return "\n".join(out) + "\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"

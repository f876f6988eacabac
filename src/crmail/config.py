"""Configuration from the environment (12-factor), with safe local defaults."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from crmail.crypto import SecretKeyError, new_key
from crmail.domain.netpolicy import AddressPolicy, IPNetwork, parse_networks
from crmail.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("data")
    database_url: str = ""
    #: comma-separated Fernet keys, newest first
    secret_keys: tuple[str, ...] = field(default_factory=tuple)
    host: str = "127.0.0.1"
    port: int = 8025
    history_days: int = 365
    batch_size: int = 200
    poll_interval: float = 30.0  # other folders than INBOX
    #: IDLE is re-issued this often: keeps NAT/firewalls from dropping a quiet connection,
    #: finds a dead one, and bounds the lag the status page can show (RFC 9051: < 29 min)
    idle_timeout: float = 60.0
    account_scan_interval: float = 2.0  # how often the service looks for new accounts
    #: seconds a database statement waits for a lock held elsewhere before it fails (and
    #: is reported and retried)
    db_lock_timeout: float = 30.0
    #: allow http:// webhook endpoints on loopback (local development and tests only);
    #: off, endpoints must be https and resolve to public addresses
    webhook_allow_http_loopback: bool = False
    #: webhook events whose deliveries are all finished are forgotten after this many days
    #: (with their delivery log); 0 keeps them forever
    webhook_retention_days: int = 30
    #: mark the web app's session cookie Secure (sent over HTTPS only): turn on behind TLS;
    #: off by default so the loopback demo on plain http works
    cookie_secure: bool = False
    #: reverse proxies whose X-Forwarded-For / X-Forwarded-Proto headers are believed
    #: (addresses or networks); empty: nobody's, the connection's peer is the client
    trusted_proxies: tuple[IPNetwork, ...] = ()
    #: networks where mail servers may be besides public addresses (self-hosted servers
    #: on a private network, 127.0.0.0/8 for a local one); empty: public addresses only
    mail_allowed_networks: tuple[IPNetwork, ...] = ()
    #: seconds between calendar sync rounds of one calendar account (CalDAV)
    calendar_sync_interval: float = 300.0
    #: allow plain http:// CalDAV URLs (a local server, tests); off: https only
    calendar_allow_http: bool = False
    #: the workspace's default sending provider, for bulk and workflow email that does not
    #: go out through a user's own mailbox: smtp://user:pass@host:587 (STARTTLS),
    #: smtps://...:465 (implicit TLS), or smtp://host:25?security=none; ?ca_file=PATH
    default_smtp_url: str = ""
    #: From address of workflow email sent through the default provider
    default_from: str = ""
    #: recipients (To + Cc + Bcc) one message sent from the CRM may have
    max_recipients: int = 100
    #: messages one user may send from the CRM per rolling hour (providers suspend
    #: accounts that spray); 0: no limit
    sends_per_hour: int = 200
    #: crmail's SMTP listener for BCC drop addresses (<token>@drop_domain): started when
    #: a port is set; point the drop domain's MX (or a relay) at it
    drop_smtp_host: str = "127.0.0.1"
    drop_smtp_port: int | None = None
    drop_domain: str = ""
    #: where users reach crmail (https://crm.example.com): OAuth redirect URIs are
    #: {public_url}/oauth/google/callback and /oauth/microsoft/callback
    public_url: str = ""
    #: "Connect with Google" (docs/providers/google.md): the OAuth client of the operator
    google_client_id: str = ""
    google_client_secret: str = ""
    #: where Google's OAuth endpoints are (a test's fake); empty: Google's own
    google_auth_base: str = ""
    #: "Connect with Microsoft" (docs/providers/microsoft.md): the app registration
    microsoft_client_id: str = ""
    microsoft_client_secret: str = ""
    #: common | organizations | consumers | a tenant id
    microsoft_tenant: str = "common"
    #: where Microsoft's identity platform is (a test's fake); empty: Microsoft's own
    microsoft_auth_base: str = ""
    #: what "Connect with Google" creates: "gmail" (the Gmail API, with push) or "imap"
    #: (IMAP + SMTP over XOAUTH2)
    google_mail_api: str = "gmail"
    #: where the Gmail API is (a test's or the demo's fake); empty: Google's own
    gmail_api_url: str = ""
    #: Gmail push (docs/providers/google.md "Push"): the Pub/Sub topic users.watch names,
    #: and the secret token in the push endpoint's path (/api/push/gmail/<token>)
    gmail_push_topic: str = ""
    gmail_push_token: str = ""
    #: Gmail push authenticated by Pub/Sub's OIDC token (docs/providers/google.md "Push"):
    #: the subscription's --push-auth-service-account and --push-auth-token-audience
    #: (default {public_url}/api/push/gmail); set, every push needs a valid token
    gmail_push_service_account: str = ""
    gmail_push_audience: str = ""
    #: where Google's token-signing keys are (a test's or the demo's fake); empty: Google's
    google_certs_url: str = ""
    #: what "Connect with Microsoft" creates: "graph" (Microsoft Graph, with push) or
    #: "imap" (IMAP + SMTP over XOAUTH2)
    microsoft_mail_api: str = "graph"
    #: where Microsoft Graph is (a test's or the demo's fake); empty: Microsoft's own
    graph_api_url: str = ""
    #: seconds an account's lease lasts without renewal (renewed every third of it, and
    #: given up if a renewal is half of it late): a process that dies is replaced within
    #: about this long plus its accounts' restart (several processes on one PostgreSQL;
    #: docs/operations.md "Running several processes", with the measurements)
    lease_ttl: float = 15.0
    #: most accounts one process syncs; 0: a fair share of the live processes
    max_accounts_per_process: int = 0
    #: the bearer secret of GET /metrics (Prometheus); empty: the endpoint is off (404)
    metrics_token: str = ""

    @property
    def mail_policy(self) -> AddressPolicy:
        """Where mail servers may be: connection tests, saved accounts and the sync workers."""
        return AddressPolicy(allowed_networks=self.mail_allowed_networks)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "crmail.db"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        e = dict(os.environ if env is None else env)
        data_dir = Path(e.get("CRMAIL_DATA_DIR", "data"))
        values: dict[str, object] = {
            "data_dir": data_dir,
            "database_url": e.get("CRMAIL_DATABASE_URL", ""),
            "host": e.get("CRMAIL_HOST", "127.0.0.1"),
            "port": int(e.get("CRMAIL_PORT", "8025")),
            "history_days": int(e.get("CRMAIL_HISTORY_DAYS", "365")),
            "batch_size": int(e.get("CRMAIL_BATCH_SIZE", "200")),
            "poll_interval": float(e.get("CRMAIL_POLL_INTERVAL", "30")),
            "db_lock_timeout": float(e.get("CRMAIL_DB_LOCK_TIMEOUT", "30")),
            "default_smtp_url": e.get("CRMAIL_DEFAULT_SMTP_URL", ""),
            "default_from": e.get("CRMAIL_DEFAULT_FROM", ""),
            "max_recipients": int(e.get("CRMAIL_MAX_RECIPIENTS", "100")),
            "sends_per_hour": int(e.get("CRMAIL_SENDS_PER_HOUR", "200")),
            "drop_smtp_host": e.get("CRMAIL_DROP_SMTP_HOST", "127.0.0.1"),
            "drop_smtp_port": (
                int(e["CRMAIL_DROP_SMTP_PORT"]) if e.get("CRMAIL_DROP_SMTP_PORT") else None
            ),
            "drop_domain": e.get("CRMAIL_DROP_DOMAIN", "").strip().lower(),
            "public_url": e.get("CRMAIL_PUBLIC_URL", "").strip().rstrip("/"),
            "google_client_id": e.get("CRMAIL_GOOGLE_CLIENT_ID", "").strip(),
            "google_client_secret": e.get("CRMAIL_GOOGLE_CLIENT_SECRET", "").strip(),
            "google_auth_base": e.get("CRMAIL_GOOGLE_AUTH_BASE", "").strip().rstrip("/"),
            "microsoft_client_id": e.get("CRMAIL_MICROSOFT_CLIENT_ID", "").strip(),
            "microsoft_client_secret": e.get("CRMAIL_MICROSOFT_CLIENT_SECRET", "").strip(),
            "microsoft_tenant": e.get("CRMAIL_MICROSOFT_TENANT", "").strip() or "common",
            "microsoft_auth_base": e.get("CRMAIL_MICROSOFT_AUTH_BASE", "").strip().rstrip("/"),
            "webhook_allow_http_loopback": e.get("CRMAIL_WEBHOOK_ALLOW_HTTP_LOOPBACK", "").lower()
            in ("1", "true", "yes", "on"),
            "webhook_retention_days": int(e.get("CRMAIL_WEBHOOK_RETENTION_DAYS", "30")),
            "google_mail_api": e.get("CRMAIL_GOOGLE_MAIL_API", "").strip().lower() or "gmail",
            "gmail_api_url": e.get("CRMAIL_GMAIL_API_URL", "").strip().rstrip("/"),
            "gmail_push_topic": e.get("CRMAIL_GMAIL_PUSH_TOPIC", "").strip(),
            "gmail_push_token": e.get("CRMAIL_GMAIL_PUSH_TOKEN", "").strip(),
            "gmail_push_service_account": e.get("CRMAIL_GMAIL_PUSH_SERVICE_ACCOUNT", "")
            .strip()
            .lower(),
            "gmail_push_audience": e.get("CRMAIL_GMAIL_PUSH_AUDIENCE", "").strip(),
            "google_certs_url": e.get("CRMAIL_GOOGLE_CERTS_URL", "").strip(),
            "microsoft_mail_api": e.get("CRMAIL_MICROSOFT_MAIL_API", "").strip().lower() or "graph",
            "graph_api_url": e.get("CRMAIL_GRAPH_API_URL", "").strip().rstrip("/"),
            "lease_ttl": float(e.get("CRMAIL_LEASE_TTL", "15")),
            "max_accounts_per_process": int(e.get("CRMAIL_MAX_ACCOUNTS_PER_PROCESS", "0")),
            "metrics_token": _metrics_token(e.get("CRMAIL_METRICS_TOKEN", "").strip()),
            "cookie_secure": e.get("CRMAIL_COOKIE_SECURE", "").lower()
            in ("1", "true", "yes", "on"),
            "trusted_proxies": _networks(e, "CRMAIL_TRUSTED_PROXIES"),
            "mail_allowed_networks": _networks(e, "CRMAIL_MAIL_ALLOWED_NETWORKS"),
            "calendar_sync_interval": float(e.get("CRMAIL_CALENDAR_SYNC_INTERVAL", "300")),
            "calendar_allow_http": e.get("CRMAIL_CALENDAR_ALLOW_HTTP", "").lower()
            in ("1", "true", "yes", "on"),
        }
        keys = [k.strip() for k in e.get("CRMAIL_SECRET_KEY", "").split(",") if k.strip()]
        values["secret_keys"] = tuple(keys)
        values.update(overrides)
        s = cls(**values)  # type: ignore[arg-type]
        if not s.database_url:
            s = _with(s, database_url=f"sqlite:///{s.sqlite_path}")
        if s.gmail_push_audience and not s.gmail_push_service_account:
            # An audience alone proves nothing: any project can have Google sign for it.
            raise InvalidInput(
                "CRMAIL_GMAIL_PUSH_AUDIENCE is set without CRMAIL_GMAIL_PUSH_SERVICE_ACCOUNT",
                hint="set the push subscription's service account too",
            )
        if s.gmail_push_service_account and not s.gmail_push_jwt_audience:
            raise InvalidInput(
                "CRMAIL_GMAIL_PUSH_SERVICE_ACCOUNT needs CRMAIL_GMAIL_PUSH_AUDIENCE or "
                "CRMAIL_PUBLIC_URL (the audience defaults to the push endpoint's URL)"
            )
        return s

    @property
    def gmail_push_jwt_audience(self) -> str:
        """The audience push tokens must name; empty: push tokens are not checked."""
        if not self.gmail_push_service_account:
            return ""
        return self.gmail_push_audience or (
            f"{self.public_url}/api/push/gmail" if self.public_url else ""
        )

    def ensure_secret_key(self) -> Settings:
        """Without a configured key, use (and on first run create) one in the data dir.

        Convenient for a single machine; a deployment passes CRMAIL_SECRET_KEY instead so
        the key does not sit beside the database it protects.
        """
        if self.secret_keys:
            return self
        path = self.data_dir / "secret.key"
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                _create_key_file(path)
            key = path.read_text().strip()
        except OSError as exc:
            raise SecretKeyError(
                f"cannot create or read the secret key {path}: {exc.strerror or exc}",
                hint="free space or fix permissions in the data directory, "
                "or set CRMAIL_SECRET_KEY",
            ) from exc
        if not key:
            # Nothing can have been sealed with an empty key (it is no valid key), but
            # replacing it here could race another process that starts at the same time.
            raise SecretKeyError(
                f"the secret key file {path} is empty (an interrupted first start?)",
                hint="delete it and start again: a new key is made",
            )
        return _with(self, secret_keys=(key,))


def _create_key_file(path: Path) -> None:
    """Write a new key beside ``path`` and link it into place: the key file is never
    seen half-written (a full disk, a crash), and when two processes start at once the
    first link wins and both read the same key."""
    spare = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(new_key())
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: its key is the one
            os.link(spare, path)
    finally:
        spare.unlink(missing_ok=True)


def _metrics_token(token: str) -> str:
    if token and len(token) < 24:
        # It guards every workspace's figures: a guessable one is refused, not used.
        raise InvalidInput(
            "CRMAIL_METRICS_TOKEN is too short (at least 24 characters)",
            hint="make one with: openssl rand -hex 32",
        )
    return token


def _networks(env: dict[str, str], name: str) -> tuple[IPNetwork, ...]:
    try:
        return parse_networks(env.get(name, ""), setting=name)
    except ValueError as exc:
        raise InvalidInput(
            str(exc), hint="give addresses or CIDR networks, comma-separated"
        ) from None


def _with(s: Settings, **changes: object) -> Settings:
    from dataclasses import replace

    return replace(s, **changes)  # type: ignore[arg-type]

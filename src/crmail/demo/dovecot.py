"""A private, throwaway Dovecot (IMAP + IMAPS + LMTP) for `crmail demo`, tests and benchmarks.

Everything lives in one temp dir: config, passwd-file, TLS material, mail, and a
fresh ``base_dir``/``state_dir`` per run (a killed master can leave an
``instances.lock`` behind that stalls the next start for ~13 s).

The server is stopped with SIGKILL to its process group: SIGTERM takes seconds
and there is nothing to flush (``mail_fsync = never``, the dir is deleted).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import ipaddress
import os
import pwd
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"

#: Text of the login failure for users added with ``app_password_required=True``.
#: Mirrors Gmail's answer for accounts with 2FA when a normal password is used.
APP_PASSWORD_REASON = "Application-specific password required"

SPECIAL_USE = {
    "Drafts": "\\Drafts",
    "Sent": "\\Sent",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}


def _check_traversable(directory: Path) -> None:
    """Dovecot's auth and mail processes run as other users and must traverse every
    parent directory: say so clearly instead of failing later with "temporary
    authentication failure"."""
    for parent in directory.parents:
        if not parent.stat().st_mode & 0o001:
            raise RuntimeError(
                f"{parent} is not traversable by other users (mode "
                f"{oct(parent.stat().st_mode & 0o777)}): Dovecot cannot reach {directory}; "
                "use a directory under /tmp or chmod o+x the parents"
            )


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago.

    The sockets are held together until all ports are known, so the kernel cannot hand
    the same port out twice (Dovecot refuses a config with a duplicate listener).
    """
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """A loopback port that was free a moment ago (racy, good enough for tests)."""
    return free_ports(1)[0]


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA plus a leaf for localhost/127.0.0.1: (ca.pem, cert.pem, key.pem).

    A separate CA (rather than one self-signed leaf) keeps strict verifiers
    (VERIFY_X509_STRICT, default on newer Pythons) happy.
    """
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crmail test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


@dataclass(frozen=True)
class MailboxAccount:
    """One test user on the fixture server: everything a client needs."""

    email: str
    password: str
    host: str
    port: int  # plaintext IMAP (STARTTLS offered)
    tls_port: int  # implicit TLS (IMAPS)
    ca_file: str
    lmtp_port: int


class Dovecot:
    """A private Dovecot instance; use as a context manager or start()/stop()."""

    host = "127.0.0.1"

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        oauth2_introspection_url: str | None = None,
        submission_relay: tuple[str, int] | None = None,
    ) -> None:
        """``oauth2_introspection_url``: also offer XOAUTH2/OAUTHBEARER logins, checking
        each bearer token with this RFC 7662 introspection endpoint.
        ``submission_relay``: also run Dovecot's SMTP submission service (on
        ``submission_port``, same logins as IMAP), relaying accepted mail to this
        (host, port); it can be set after construction, before :meth:`start`."""
        self.oauth2_introspection_url = oauth2_introspection_url
        self.submission_relay = submission_relay
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="crmail-dovecot-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        _check_traversable(self.dir.resolve())
        # mkdtemp makes 0700; Dovecot's auth (user dovecot) and mail processes
        # (nobody) must traverse it to read the passwd-file and the mail.
        self.dir.chmod(0o755)
        self.imap_port, self.imaps_port, self.lmtp_port, self.submission_port = free_ports(4)
        self.conf = self.dir / "dovecot.conf"
        self.passwd_dir = self.dir / "passwd.d"
        self.mail_root = self.dir / "mail"
        self.log_file = self.dir / "dovecot.log"
        self._users: dict[str, tuple[str, str]] = {}  # email -> (password, extra fields)
        self._passwd_stamp = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.ca_file = self.cert_file = self.key_file = ""
        # Mail runs as nobody when we are root (Dovecot refuses uid 0 for mail).
        self._as_root = os.geteuid() == 0
        self._mail_uid = pwd.getpwnam("nobody").pw_uid if self._as_root else os.geteuid()
        self._mail_gid = pwd.getpwnam("nobody").pw_gid if self._as_root else os.getegid()

    # --- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 15.0) -> Dovecot:
        for sub in ("run", "state"):
            # Fresh every start: see the module docstring about instances.lock.
            shutil.rmtree(self.dir / sub, ignore_errors=True)
            (self.dir / sub).mkdir(parents=True)
        self.mail_root.mkdir(exist_ok=True)
        self._chown(self.mail_root)
        ca, cert, key = make_tls_files(self.dir)
        self.ca_file, self.cert_file, self.key_file = str(ca), str(cert), str(key)
        self._write_passwd()
        if self.oauth2_introspection_url:
            (self.dir / "oauth2.conf.ext").write_text(
                "introspection_mode = post\n"
                f"introspection_url = {self.oauth2_introspection_url}\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )
        self.conf.write_text(self._render_config(cert, key))
        self._proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.log", "wb"),  # noqa: SIM115 - child owns it
            start_new_session=True,  # own process group: stop() kills the whole tree
            env={**os.environ, "CRMAIL_APP_PASSWORD_REASON": APP_PASSWORD_REASON},
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dovecot exited at start:\n{self.logs()}")
            try:
                with socket.create_connection((self.host, self.imap_port), timeout=1):
                    break
            except OSError as e:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"dovecot did not listen in {timeout}s:\n{self.logs()}"
                    ) from e
                time.sleep(0.01)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def logs(self) -> str:
        parts = []
        for name in ("stderr.log", "dovecot.log"):
            p = self.dir / name
            if p.exists():
                parts.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    # --- users -------------------------------------------------------------

    def add_user(
        self, email: str, password: str, *, app_password_required: bool = False
    ) -> MailboxAccount:
        """Create (or overwrite: change the password of) a user.

        With ``app_password_required`` a correct password is still refused, with
        :data:`APP_PASSWORD_REASON` as the failure text (passdb ``nologin`` + ``reason``).
        """
        if any(c in email + password for c in ":\n\r "):
            raise ValueError("passwd-file cannot hold ':', spaces or newlines here")
        # passwd-file splits extra fields on spaces, so the multi-word reason comes
        # from an environment variable that the config imports (%{env:...}).
        extra = "nologin reason=%{env:CRMAIL_APP_PASSWORD_REASON}" if app_password_required else ""
        self._users[email] = (password, extra)
        self._write_passwd(email)
        return self.account(email)

    def set_password(self, email: str, password: str) -> None:
        """Change a user's password (e.g. to simulate a revoked app password).

        Takes about a second: Dovecot checks a passwd-file for changes at most once
        per second, so this waits until the change is certainly visible.
        """
        _, extra = self._users[email]
        self._users[email] = (password, extra)
        self._write_passwd(email)
        time.sleep(1.1)

    def remove_user(self, email: str) -> None:
        self._users.pop(email, None)
        self._write_passwd(email)

    def account(self, email: str) -> MailboxAccount:
        return MailboxAccount(
            email=email,
            password=self._users[email][0],
            host=self.host,
            port=self.imap_port,
            tls_port=self.imaps_port,
            ca_file=self.ca_file,
            lmtp_port=self.lmtp_port,
        )

    def _write_passwd(self, email: str | None = None) -> None:
        """Write one user's passwd-file (``passwd.d/<email>``), or all of them.

        One file per user because Dovecot stat()s a passwd-file at most once per
        second: a user added right after another one would otherwise be unknown for
        up to a second. A new file is read on its first lookup.
        """
        self.passwd_dir.mkdir(exist_ok=True)
        for user in [email] if email is not None else list(self._users):
            path = self.passwd_dir / user
            if user not in self._users:
                path.unlink(missing_ok=True)
                continue
            pw, extra = self._users[user]
            tmp = path.with_name(user + ".tmp")
            tmp.write_text(f"{user}:{{PLAIN}}{pw}::::::{extra}\n")
            # Changed size or mtime is what makes Dovecot re-read it; force a new mtime.
            self._passwd_stamp = max(int(time.time()), self._passwd_stamp + 1)
            os.utime(tmp, (self._passwd_stamp, self._passwd_stamp))
            tmp.replace(path)

    # --- mail --------------------------------------------------------------

    def deliver(self, rcpt: str, raw: bytes, sender: str = "sender@example.test") -> None:
        """Deliver one message to INBOX through LMTP (like an MTA would)."""
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=10) as lmtp:
            lmtp.sendmail(sender, [rcpt], raw)

    def imap_login(self, user: str) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        imap.login(user, self._users[user][0])
        return imap

    def append(
        self,
        user: str,
        folder: str,
        raw: bytes,
        flags: Iterable[str] = (),
        date: dt.datetime | None = None,
    ) -> None:
        """APPEND through a quick imaplib session (a second, independent client)."""
        imap = self.imap_login(user)
        try:
            flag_str = "(" + " ".join(flags) + ")"
            when = imaplib.Time2Internaldate(date) if date is not None else None
            typ, data = imap.append(folder, flag_str, when, raw)
            if typ != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
        finally:
            imap.logout()

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm -c conf ARGS`` (plays "another mail client")."""
        proc = subprocess.run(
            [DOVEADM, "-c", str(self.conf), *args],
            capture_output=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"doveadm {' '.join(args)} failed ({proc.returncode}): "
                f"{proc.stderr.decode(errors='replace')}"
            )
        return proc.stdout.decode(errors="replace")

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        """The Maildir++ directory of a folder (INBOX is the Maildir root)."""
        root = self.mail_root / user / "Maildir"
        if folder.upper() == "INBOX":
            return root
        # Maildir++ layout: "a/b" lives in ".a.b". Only plain ASCII names are
        # supported here (no mUTF-7 encoding).
        return root / ("." + folder.replace("/", "."))

    def seed_maildir(
        self,
        user: str,
        folder: str,
        messages: Iterable[bytes],
        flags: str | Sequence[str] = "",
        mtime: float | None = None,
    ) -> int:
        """Write messages straight into Maildir ``cur/`` (fast bulk seeding).

        Dovecot indexes them on the next SELECT/STATUS, assigning UIDs in file-name
        order. ``flags`` are Maildir info letters (``"S"`` seen, ``"F"`` flagged,
        ``"R"`` answered, ``"T"`` deleted, ``"D"`` draft) for all messages, or one
        string per message. File mtime becomes the INTERNALDATE. Returns the count.
        """
        root = self.mail_root / user / "Maildir"
        target = self.maildir(user, folder)
        created = [p for p in (self.mail_root / user, root) if not p.exists()]
        for sub in ("cur", "new", "tmp"):
            p = target / sub
            if not p.exists():
                created.append(p)
                p.mkdir(parents=True)
        if target != root and not (target / "maildirfolder").exists():
            (target / "maildirfolder").touch()
            created.append(target / "maildirfolder")
        for p in (self.mail_root / user, root, target):
            self._chown(p)
        for p in created:
            self._chown(p)
        cur = target / "cur"
        base = f"{int(time.time())}.M{{}}P{os.getpid()}.crmail"
        when = mtime if mtime is not None else time.time()
        n = 0
        for i, raw in enumerate(messages):
            f = flags if isinstance(flags, str) else flags[i]
            # Zero-padded counter keeps name order == seeding order == UID order.
            # ",S=" is the physical size Dovecot may trust instead of stat().
            name = base.format(f"{i:08d}") + f",S={len(raw)}:2,{''.join(sorted(f))}"
            path = cur / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, raw)
                if self._as_root:
                    os.fchown(fd, self._mail_uid, self._mail_gid)
            finally:
                os.close(fd)
            os.utime(path, (when, when))
            n += 1
        return n

    def _chown(self, path: Path) -> None:
        if self._as_root:
            os.chown(path, self._mail_uid, self._mail_gid)

    # --- config ------------------------------------------------------------

    def _render_config(self, cert: Path, key: Path) -> str:
        mailboxes = "\n".join(
            f"  mailbox {name} {{\n    special_use = {use}\n    auto = subscribe\n  }}"
            for name, use in SPECIAL_USE.items()
        )
        dh = "/usr/share/dovecot/dh.pem"
        ssl_dh = f"ssl_dh = <{dh}\n" if os.path.exists(dh) else ""
        mail_ids = (
            "mail_uid = nobody\nmail_gid = nogroup\nfirst_valid_uid = 1\n" if self._as_root else ""
        )
        d = self.dir
        return f"""# Rendered by tests/servers/dovecot.py; do not edit.
base_dir = {d}/run
state_dir = {d}/state
instance_name = crmail-test-{os.getpid()}-{self.imap_port}
protocols = imap lmtp{" submission" if self.submission_relay else ""}
listen = 127.0.0.1
log_path = {self.log_file}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{ssl_dh}disable_plaintext_auth = no
auth_mechanisms = plain login{" xoauth2 oauthbearer" if self.oauth2_introspection_url else ""}
auth_failure_delay = 0
auth_cache_size = 0
mail_location = maildir:{self.mail_root}/%u/Maildir
mail_fsync = never
{mail_ids}mailbox_idle_check_interval = 1 secs
lda_mailbox_autocreate = yes
import_environment = TZ CRMAIL_APP_PASSWORD_REASON

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
{self._oauth2_passdb()}userdb {{
  driver = static
  args = allow_all_users=yes
}}

namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
  process_min_avail = 1
}}
# No auth penalty (login delays of 2-15 s per IP after a failed login): tests fail
# logins on purpose. Auth cannot reach this socket, so it skips penalties.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
protocol imap {{
  mail_max_userip_connections = 1000
}}
{self._submission()}
protocol lmtp {{
  postmaster_address = postmaster@example.test
}}
"""

    def _submission(self) -> str:
        if not self.submission_relay:
            return ""
        host, port = self.submission_relay
        return (
            f"hostname = localhost\nsubmission_relay_host = {host}\n"
            f"submission_relay_port = {port}\nsubmission_relay_trusted = yes\n"
            "service submission-login {\n  inet_listener submission {\n"
            f"    address = 127.0.0.1\n    port = {self.submission_port}\n  }}\n}}\n"
        )

    def _oauth2_passdb(self) -> str:
        if not self.oauth2_introspection_url:
            return ""
        return f"passdb {{\n  driver = oauth2\n  args = {self.dir}/oauth2.conf.ext\n}}\n"

    # Convenience for tests that compare with a TLS client.
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

"""The deployment files (deploy/) say what the real crmail understands.

No container runtime or systemd runs here, so what can be proven offline is: every
`crmail …` command line in the units, the image and the compose file parses with the
real CLI and names existing options; every CRMAIL_* variable they set is one config.py
reads; compose.yaml is valid YAML whose crmail services share one database URL that
points at its PostgreSQL service.
"""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from sqlalchemy.engine import make_url

from crmail.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
SETTING = re.compile(r"CRMAIL_[A-Z_]+")
READ = set(SETTING.findall((ROOT / "src/crmail/config.py").read_text()))


def parses(args: list[str]) -> list[str]:
    """Parse ``crmail ARGS`` as the CLI would, without running it; returns the command path.
    Unknown commands or options, bad choices and bad numbers raise click's errors."""
    ctx = main.make_context("crmail", list(args), resilient_parsing=False)
    path = ["crmail"]
    group: click.Command = main
    while isinstance(group, click.Group) and (rest := _unparsed(ctx)):
        name, cmd, rest = group.resolve_command(ctx, rest)
        assert cmd is not None and name is not None
        path.append(name)
        ctx = cmd.make_context(name, rest, parent=ctx)
        group = cmd
    assert path != ["crmail"], "no command given"
    return path


def _unparsed(ctx: click.Context) -> list[str]:
    """What a group left for its subcommand (click 8.2 moves it from protected_args)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*ctx.protected_args, *ctx.args]


def test_the_parser_refuses_what_the_cli_refuses() -> None:
    assert parses(["run", "--role", "sync"]) == ["crmail", "run"]
    for bad in (["run", "--role", "worker"], ["run", "--workers", "2"], ["serve"]):
        with pytest.raises(click.UsageError):
            parses(bad)


def unit(path: Path) -> dict[str, list[str]]:
    """systemd's key=value lines (comments and sections dropped), values per key."""
    keys: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        keys.setdefault(key, []).append(value)
    return keys


def crmail_args(command_line: str) -> list[str]:
    argv = shlex.split(command_line)
    assert Path(argv[0]).name == "crmail", argv
    return argv[1:]


def test_there_is_an_api_unit_and_a_sync_template() -> None:
    names = {p.name for p in UNITS}
    assert {"crmail-api.service", "crmail-sync@.service", "crmail-migrate.service"} <= names


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_each_unit_runs_a_real_command_hardened(path: Path) -> None:
    keys = unit(path)
    (exec_start,) = keys["ExecStart"]
    command = parses(crmail_args(exec_start))
    settings = {
        name
        for value in keys.get("Environment", [])
        for word in shlex.split(value)
        for name in SETTING.findall(word.partition("=")[0])
    }
    assert settings <= READ, f"{path.name} sets settings crmail does not read"
    assert keys["EnvironmentFile"] == ["/etc/crmail/crmail.env"]
    for hardening in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes"):
        key, value = hardening.split("=")
        assert keys.get(key) == [value], f"{path.name}: {hardening}"
    assert keys["StateDirectory"] == ["crmail"]
    if command == ["crmail", "run"]:
        assert keys["Restart"] == ["on-failure"]
        assert keys["KillSignal"] == ["SIGTERM"]
        # The graceful stop waits up to 10 s for the workers (sync.service.STOP_TIMEOUT),
        # then hands the leases over: the manager must not SIGKILL before that.
        from crmail.sync.service import STOP_TIMEOUT

        assert int(keys["TimeoutStopSec"][0]) >= 2 * STOP_TIMEOUT


def test_the_sync_template_runs_sync_only_and_the_api_unit_api_only() -> None:
    sync = crmail_args(unit(DEPLOY / "systemd/crmail-sync@.service")["ExecStart"][0])
    api = crmail_args(unit(DEPLOY / "systemd/crmail-api.service")["ExecStart"][0])
    assert sync[sync.index("--role") + 1] == "sync"
    assert api[api.index("--role") + 1] == "api"


def test_the_example_environment_names_real_settings() -> None:
    names = [
        line.partition("=")[0]
        for line in (DEPLOY / "crmail.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert names and set(names) <= READ
    assert "CRMAIL_SECRET_KEY" in names and "CRMAIL_DATABASE_URL" in names


def containerfile() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined."""
    text = (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_the_image_runs_crmail_as_a_user_with_a_healthcheck() -> None:
    import json

    lines = containerfile()
    last = {ins: rest for ins, rest in lines}  # the final stage's wins
    entrypoint, cmd = json.loads(last["ENTRYPOINT"]), json.loads(last["CMD"])
    assert entrypoint == ["crmail"]
    assert parses(cmd) == ["crmail", "run"]
    assert last["USER"] not in ("root", "0")
    assert "/healthz" in last["HEALTHCHECK"]
    assert any(".[postgres]" in rest for ins, rest in lines if ins == "RUN")
    env = " ".join(rest for ins, rest in lines if ins == "ENV")
    assert set(SETTING.findall(env)) <= READ
    assert last["FROM"].startswith("python:") and "slim" in last["FROM"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def crmail_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith("crmail")
    }


def test_compose_services_run_real_commands(compose: dict[str, Any]) -> None:
    services = crmail_services(compose)
    assert {"api", "sync", "migrate"} <= set(services)
    for name, svc in services.items():
        args = [*svc.get("entrypoint", [])[1:], *svc["command"]]
        parses(args)
        env = svc.get("environment", {})
        assert set(env) <= READ, f"{name} sets settings crmail does not read"
        for file in svc["env_file"]:
            assert (DEPLOY / (file["path"] + ".example")).exists()
        assert svc["stop_signal"] == "SIGTERM"
    assert services["sync"]["command"][-2:] == ["--role", "sync"]
    assert services["api"]["command"][:3] == ["run", "--role", "api"]
    assert services["sync"]["deploy"]["replicas"] >= 2
    assert services["sync"]["healthcheck"] == {"disable": True}  # no HTTP there


def test_compose_wires_every_process_to_its_one_database(compose: dict[str, Any]) -> None:
    services = crmail_services(compose)
    urls = {svc["environment"]["CRMAIL_DATABASE_URL"] for svc in services.values()}
    assert len(urls) == 1
    (url,) = urls
    # ${POSTGRES_PASSWORD:?…} is compose's interpolation: stand a value in for it.
    u = make_url(re.sub(r"\$\{POSTGRES_PASSWORD[^}]*\}", "pw", url))
    db = compose["services"]["db"]
    assert u.drivername == "postgresql+psycopg"
    assert u.host == "db" and u.host in compose["services"]
    assert u.username == db["environment"]["POSTGRES_USER"]
    assert u.database == db["environment"]["POSTGRES_DB"]
    assert "POSTGRES_PASSWORD" in db["environment"]["POSTGRES_PASSWORD"]
    volume, _, mount = db["volumes"][0].partition(":")
    assert mount == "/var/lib/postgresql/data" and volume in compose["volumes"]
    for name, svc in services.items():
        if name != "migrate":
            assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"

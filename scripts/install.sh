#!/usr/bin/env bash
# Installs what crmail and its tests need on a fresh Debian machine: Dovecot (IMAP, LMTP,
# submission), PostgreSQL, and a virtualenv with crmail and its test dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-core dovecot-imapd dovecot-lmtpd)
# SMTP submission (the XOAUTH2 sending test logs in to Dovecot's own submission service)
[ -x /usr/lib/dovecot/submission ] || need+=(dovecot-submissiond)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
# a throwaway CalDAV server for the calendar sync tests (runs under Debian's python3)
[ -d /usr/lib/python3/dist-packages/radicale ] || need+=(radicale)
# the browser tests drive Debian's Chromium (Playwright's own browser download is not used)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# caldav depends on niquests, whose urllib3-future wheel replaces the real urllib3 at every
# interpreter start (a .pth file), breaking libraries built on requests; built from its
# sdist with URLLIB3_NO_OVERRIDE it installs beside urllib3 instead.
URLLIB3_NO_OVERRIDE=1 .venv/bin/python -m pip install -q --no-binary urllib3-future -e '.[test]'
if compgen -G ".venv/lib/python*/site-packages/urllib3_future.pth" >/dev/null; then
  echo "install.sh: urllib3-future still overrides urllib3 (see the comment above)" >&2; exit 1
fi

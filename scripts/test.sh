#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs every test on SQLite and the
# database-backed tests again on PostgreSQL, plus ruff and mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
# Tests spend most of their time waiting on servers (IDLE, delivery, subprocesses), so
# four workers share two cores well; every worker starts its own servers on free ports.
WORKERS=${CRMAIL_TEST_WORKERS:-4}
# Every test on the embedded default (SQLite)...
.venv/bin/python -m pytest -q -p no:cacheprovider -n "$WORKERS" "$@"
# ...and every test that touches the database again on PostgreSQL.
CRMAIL_TEST_DB=postgres .venv/bin/python -m pytest -q -p no:cacheprovider -n "$WORKERS" -m db "$@"

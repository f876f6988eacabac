#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs every test on SQLite and the
# database-backed tests again on PostgreSQL, plus ruff and mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
# Every test on the embedded default (SQLite)...
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
# ...and every test that touches the database again on PostgreSQL.
CRMAIL_TEST_DB=postgres .venv/bin/python -m pytest -q -p no:cacheprovider -m db "$@"

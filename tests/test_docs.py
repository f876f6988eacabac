"""The operations guide documents every setting crmail reads from the environment."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTING = re.compile(r"CRMAIL_[A-Z_]+")


def test_every_environment_setting_is_documented_and_every_documented_one_exists() -> None:
    read = set(SETTING.findall((ROOT / "src/crmail/config.py").read_text()))
    documented = set(SETTING.findall((ROOT / "docs/operations.md").read_text()))
    assert read, "config.py reads no setting?"
    assert read - documented == set(), "settings missing from docs/operations.md"
    assert documented - read == set(), "docs/operations.md names settings nobody reads"

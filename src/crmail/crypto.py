"""Secrets at rest: mailbox passwords and OAuth tokens are stored only encrypted.

Fernet (AES-128-CBC + HMAC-SHA256) from ``cryptography``. Several keys may be given,
newest first, so a key can be rotated without re-entering every password.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from crmail.errors import CrmailError


class SecretKeyError(CrmailError):
    code = "secret_key_error"


def new_key() -> str:
    return Fernet.generate_key().decode()


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyError("no secret key configured (CRMAIL_SECRET_KEY)")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except ValueError as exc:
            raise SecretKeyError(
                "CRMAIL_SECRET_KEY is not a valid key", hint="generate one with `crmail keygen`"
            ) from exc

    def seal(self, secrets: dict[str, str]) -> bytes:
        return self._fernet.encrypt(json.dumps(secrets).encode())

    def open(self, token: bytes) -> dict[str, str]:
        try:
            data = json.loads(self._fernet.decrypt(token))
        except InvalidToken as exc:
            raise SecretKeyError(
                "stored credentials cannot be decrypted with the configured key",
                hint="restore the previous CRMAIL_SECRET_KEY (keys can be listed comma-separated)",
            ) from exc
        return {str(k): str(v) for k, v in data.items()}

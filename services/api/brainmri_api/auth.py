"""API keys from ``BRAINMRI_API_KEYS="key:role,key:role"``; roles ``user`` and ``admin``.

Keys travel as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Only a short hash of a
key (its *key id*) is ever stored (as a job's owner) or logged.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from brainmri.config import api_key_values, is_placeholder_secret
from brainmri.errors import BrainMRIError, ConfigurationError

Role = Literal["user", "admin"]
MIN_KEY_LENGTH = 16


class AuthenticationError(BrainMRIError):
    code = "unauthenticated"


class PermissionDeniedError(BrainMRIError):
    code = "forbidden"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def owner_filter(self) -> str | None:
        """Admins see every job; users only their own."""
        return None if self.is_admin else self.key_id


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class KeyRing:
    """The configured keys, compared in constant time."""

    def __init__(self, spec: str, *, production: bool = False) -> None:
        self._keys: list[tuple[bytes, Principal]] = []
        for number, (key, role) in enumerate(api_key_values(spec), start=1):
            if not key or role not in ("user", "admin"):
                raise ConfigurationError(
                    "BRAINMRI_API_KEYS entries must look like key:user or key:admin"
                )
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigurationError(f"API keys must be at least {MIN_KEY_LENGTH} characters")
            # Checked here as well as in Settings: a KeyRing can be built from any spec.
            # The message names the entry, never the key.
            if production and is_placeholder_secret(key):
                raise ConfigurationError(
                    f"BRAINMRI_API_KEYS entry {number} (role {role}) is a documented placeholder "
                    "key; production needs real keys"
                )
            self._keys.append((key.encode(), Principal(key_id(key), role)))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise AuthenticationError(
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        candidate = presented.encode()
        match = None
        for key, principal in self._keys:
            if hmac.compare_digest(key, candidate):
                match = principal
        if match is None:
            raise AuthenticationError("invalid API key")
        return match

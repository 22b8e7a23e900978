"""API key generation, hashing and verification: the only module that touches key secrets.

A key looks like ``ais_<prefix>.<secret>``: the prefix (8 hex characters) is stored in clear
for lookup and display, the whole key only as a SHA-256 digest. Keys carry 256 bits of
randomness, so a fast digest is as safe as a slow password hash and keeps auth cheap.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_SCHEME = "ais"
PREFIX_LENGTH = 8
# Fresh keys tried when a prefix is taken: with 2**32 prefixes, even a million keys clash once in 4,000 tries.
KEY_GENERATION_ATTEMPTS = 5
MAX_KEY_LENGTH = 128  # anything longer is not one of ours; rejected before hashing
_KEY_PATTERN = re.compile(rf"^{KEY_SCHEME}_([0-9a-f]{{{PREFIX_LENGTH}}})\.([A-Za-z0-9_-]{{20,100}})$")
# Compared against when the prefix is unknown, so that both failures cost the same.
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class GeneratedKey:
    raw_key: str  # shown to the user once, never stored
    prefix: str
    hashed_key: str


def generate_key() -> GeneratedKey:
    """Return a fresh random key with its lookup prefix and digest."""
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    raw_key = f"{KEY_SCHEME}_{prefix}.{secrets.token_urlsafe(32)}"
    return GeneratedKey(raw_key=raw_key, prefix=prefix, hashed_key=hash_key(raw_key))


def hash_key(raw_key: str) -> str:
    """Return the hex SHA-256 digest stored for ``raw_key``."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def parse_prefix(raw_key: str) -> str | None:
    """Return the lookup prefix of a well-formed key, or None for anything else."""
    if len(raw_key) > MAX_KEY_LENGTH:
        return None
    match = _KEY_PATTERN.match(raw_key)
    return match.group(1) if match else None


def verify_key(raw_key: str, hashed_key: str | None) -> bool:
    """Constant-time check of ``raw_key`` against a stored digest (None: unknown prefix)."""
    expected = hashed_key if hashed_key is not None else _DUMMY_HASH
    matches = hmac.compare_digest(hash_key(raw_key), expected)
    return matches and hashed_key is not None

"""API token rules: how a token looks, how it is stored (hashed), how it is shown (prefix).

A token is ``dbx_`` followed by 32 random bytes in URL-safe base64 (256 bits of entropy), so
a plain SHA-256 is enough to store it: nobody can guess a preimage, and lookup is by hash.
The clear token is shown to the user once, at creation, and never stored.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "dbx_"
"""Every Devbox token starts with this, so secret scanners and people recognise it."""

TOKEN_BYTES = 32
"""Random bytes in a token."""

DISPLAY_PREFIX_LENGTH = 8
"""How many leading characters are kept in clear (``ApiToken.prefix``) for listings."""


def generate_token() -> str:
    """A new random API token, e.g. ``dbx_Q2x…`` (47 characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The stored form of ``token``: hex SHA-256 of its UTF-8 bytes (64 characters)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def display_prefix(token: str) -> str:
    """The first characters of ``token``, safe to store and show (``dbx_Q2xA``)."""
    return token[:DISPLAY_PREFIX_LENGTH]


def looks_like_token(value: str) -> bool:
    """True when ``value`` has the shape of a Devbox token (cheap check before a lookup)."""
    return value.startswith(TOKEN_PREFIX) and len(value) == len(generate_token())

"""Signing a webhook's body, and checking a signature as a receiver does.

The header, one per request (Stripe's scheme)::

    Aicrm-Signature: t=1764669000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff5…

``t`` is the Unix time of the attempt, ``v1`` the hex HMAC-SHA256, keyed by the
subscription's secret, of ``f"{t}.".encode() + body``: the timestamp is signed with
the body, so a receiver that refuses a ``t`` outside its replay window (five minutes
by default) refuses a captured request played again later. Each retry is signed anew.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from aicrm.errors import InvalidInput

HEADER = "Aicrm-Signature"
SCHEME = "v1"
TOLERANCE = 300.0  # seconds: the receiver's replay window


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes, URL-safe base64."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``timestamp.body`` keyed by ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of the :data:`HEADER` header for ``body``, signed at ``timestamp``
    (default: now)."""
    at = int(time.time()) if timestamp is None else timestamp
    return f"t={at},{SCHEME}={signature(secret, at, body)}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance: float = TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a request as a receiver must: a ``v1`` signature of ``body`` that matches
    (compared in constant time) and a timestamp inside the replay window. Returns the
    timestamp; raises :class:`InvalidInput` saying what is wrong (never the secret)."""
    if not header:
        raise InvalidInput(f"The request has no {HEADER} header; it was not sent by aicrm.")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        at = int(fields["t"][0])
    except (KeyError, ValueError):
        raise InvalidInput(f"The {HEADER} header has no valid t=TIMESTAMP.") from None
    current = time.time() if now is None else now
    if abs(current - at) > tolerance:
        raise InvalidInput(
            f"The signature's timestamp is {abs(current - at):.0f} s away from now, outside the "
            f"{tolerance:.0f} s replay window: a replayed request, or a clock to fix."
        )
    expected = signature(secret, at, body)
    if not any(hmac.compare_digest(expected, given) for given in fields.get(SCHEME, [])):
        raise InvalidInput(
            "The signature does not match the body: the secret differs or the body was changed."
        )
    return at


__all__ = ["HEADER", "TOLERANCE", "new_secret", "sign", "signature", "verify"]

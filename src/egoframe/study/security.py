"""Secrets of a study server: invite tokens, the admin password hash, signed cookies and form tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from sqlalchemy.orm import Session

from egoframe.errors import InputError
from egoframe.study.db import Setting

SECRET_KEY = "signing_secret"
PASSWORD_KEY = "admin_password"
# scrypt work factors: ~50 ms per check, so a stolen hash resists guessing and a login stays snappy.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_CHARS = 8


def new_token() -> str:
    """An invite token: 32 random bytes, URL-safe (256 bits: not guessable, not enumerable)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InputError(f"admin password must have at least {MIN_PASSWORD_CHARS} characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(candidate, bytes.fromhex(digest))  # constant time: no timing oracle


def get_setting(session: Session, key: str) -> str | None:
    row = session.get(Setting, key)
    return row.value if row else None


def set_setting(session: Session, key: str, value: str) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


def ensure_secret(session: Session) -> bytes:
    """The signing secret, created once per database so every server process signs alike."""
    value = get_setting(session, SECRET_KEY)
    if value is None:
        value = secrets.token_hex(32)
        set_setting(session, SECRET_KEY, value)
        session.commit()
    return bytes.fromhex(value)


def sign(secret: bytes, *parts: str) -> str:
    mac = hmac.new(secret, "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def verify(secret: bytes, signature: str, *parts: str) -> bool:
    return hmac.compare_digest(sign(secret, *parts).encode(), (signature or "").encode())


def make_admin_cookie(secret: bytes, password_hash: str, max_age_s: int) -> str:
    """``expiry.signature``; signed over the password hash too, so a password change logs everyone out."""
    expiry = str(int(time.time()) + max_age_s)
    return f"{expiry}.{sign(secret, 'admin', expiry, password_hash)}"


def check_admin_cookie(secret: bytes, password_hash: str | None, cookie: str | None) -> bool:
    if not cookie or not password_hash or "." not in cookie:
        return False
    expiry, signature = cookie.split(".", 1)
    if not expiry.isdigit() or int(expiry) < time.time():
        return False
    return verify(secret, signature, "admin", expiry, password_hash)

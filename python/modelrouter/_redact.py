"""Credentials out of everything shown: URLs and DSNs as they may appear in reprs, errors, logs
and metrics labels, with the password replaced by ``***``. (The Redis backend's URLs are
redacted by the core the same way: ``redis://user:***@host``.)"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@host  (the password runs up to the last '@' before the host)
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^\s]*?)(?=@[^@\s]*$|@[^@\s/?#]*[/?#])"
)
# password=... in a query string or a libpq key=value DSN (quoted or not)
_KV_PASSWORD = re.compile(
    r"(?P<head>\b(?:password|sslpassword|pass)\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^&\s;#]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every URL password and ``password=`` value replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, text)


def scrub(text: str, *secrets: str | None) -> str:
    """``redact(text)``, and each of ``secrets`` (when 4+ characters) masked wherever it
    appears (a driver may quote a password in its own words)."""
    out = redact(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, MASK)
    return out


def url_password(url: str) -> str | None:
    """The password of ``scheme://user:password@host...`` or of ``password=`` (unquoted)."""
    m = _URL_PASSWORD.search(url)
    if m:
        return m.group("pw")
    m = _KV_PASSWORD.search(url)
    return m.group("pw").strip("'") if m else None

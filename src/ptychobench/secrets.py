"""The one secret scrubber: every secret value the process knows, and the shapes secrets
take, replaced by ``***`` in anything the tool writes or shows.

Patterns alone miss a key a server echoes back in its own words (``Incorrect API key
provided: ...``), a token given as a URL's user name (``http://TOKEN@host/v1``) and the
base64 of ``user:pass`` in a ``Basic`` header quoted by a proxy. So the scrubber also
knows the values: API keys from a config's ``backend_options``, a URL's user info, and the
environment variables whose names say they hold a secret (``*_API_KEY``, ``*TOKEN*``,
``*SECRET*``, ``*PASSWORD*``, and those an experiment ``requires_env``). Each value is
replaced as written, URL-quoted and base64-encoded (alone and as ``user:pass``).

Every writer of text goes through :func:`scrub`: the prediction store, ``write_atomic``
(config copies, reports, ``scores.json``) and the CLI's error line.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from urllib.parse import quote, unquote, urlsplit

#: shorter values are not scrubbed as values (``"none"``, ``"x"`` would hit ordinary words)
MIN_SECRET_CHARS = 6
#: environment variable names that hold a secret
_SECRET_ENV = re.compile(r"(?i)(api[_-]?key|token|secret|password|passwd)")

_PATTERNS = (
    # user info in a URL: user:pass@, then a lone token@
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]*@"), r"\1***:***@"),
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)(?!\*\*\*)[^/\s:@]+@"), r"\1***@"),
    (re.compile(r"(?i)\b(bearer|basic)\s+(?!\*\*\*)[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
    (
        re.compile(
            r"(?i)(api[_-]?key|authorization|x-api-key|password|token)([\"']?\s*[:=]\s*[\"']?)"
            r"(?!\*\*\*)(?!bearer\b|basic\b)[^\"'\s,}&]+"
        ),
        r"\1\2***",
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-***"),
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), "hf_***"),
)

_known: set[str] = set()
_env_seen: set[tuple[str, str]] = set()
_lock = threading.Lock()


def _forms(value: str) -> set[str]:
    """The ways a secret value shows up in text: as is, URL-quoted, base64."""
    out = {value, quote(value, safe=""), unquote(value)}
    for v in list(out):
        b = base64.b64encode(v.encode()).decode()
        out |= {b, b.rstrip("="), base64.urlsafe_b64encode(v.encode()).decode().rstrip("=")}
    return {v for v in out if len(v) >= MIN_SECRET_CHARS}


def remember(value: object) -> None:
    """Add a secret value (an API key, a password) to those scrubbed from now on."""
    if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_CHARS:
        with _lock:
            _known.update(_forms(value.strip()))


def remember_url(url: object) -> None:
    """Remember a URL's user info: the user name, the password and ``user:pass``."""
    if not isinstance(url, str) or "@" not in url:
        return
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return
    if "@" not in parts.netloc:
        return
    info = parts.netloc.rpartition("@")[0]
    user, _, password = info.partition(":")
    for v in (info, unquote(info), user, password, f"{unquote(user)}:{unquote(password)}"):
        remember(v)


def remember_env(names: object = ()) -> None:
    """Remember the values of environment variables named in ``names`` (an experiment's
    ``requires_env``) or whose names say they hold a secret."""
    wanted = set(names) if isinstance(names, (list, tuple, set, frozenset)) else set()
    for name, value in os.environ.items():
        if (name, value) not in _env_seen and (name in wanted or _SECRET_ENV.search(name)):
            remember(value)
            _env_seen.add((name, value))


def scrub(text: str) -> str:
    """``text`` with every known secret value and every secret-shaped string replaced by ``***``."""
    if not isinstance(text, str) or not text:
        return text
    remember_env()
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, "***")
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def forget_all() -> None:
    """Tests only: start from no known values."""
    with _lock:
        _known.clear()
        _env_seen.clear()

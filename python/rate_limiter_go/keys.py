"""State keys: ``<prefix>:<algo>:<dimension>:<limit>/<window_s>:{<identity>}`` (docs/semantics.md §6).

The braces are a Redis Cluster hash tag (§11): a key's slot depends on its identity alone.

Both backends use the same keys, so the escaping here is part of the contract
with the Go engine: same identity in, same bytes out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from rate_limiter_go.config import ALGORITHM_KEY_TAGS, KEY_PREFIX_PATTERN, Rate

__all__ = [
    "ALGORITHM_CODES",
    "DIMENSION_NAMES",
    "MAX_ESCAPED_IDENTITY",
    "escape_identity",
    "key_prefix",
    "key_segment",
    "state_key",
    "user_server_identity",
    "user_server_segment",
]

#: Algorithm name (config) -> the short code used in keys (§6): the one table in config.py.
ALGORITHM_CODES: Mapping[str, str] = ALGORITHM_KEY_TAGS
#: Dimension names allowed in keys, in evaluation order (§4).
DIMENSION_NAMES: tuple[str, ...] = ("user", "user_per_server", "tenant", "tool")
#: An escaped identity longer than this many bytes is replaced by its hash (§6).
MAX_ESCAPED_IDENTITY = 128

_PREFIX_RE = re.compile(KEY_PREFIX_PATTERN, re.ASCII)  # the one prefix rule (config.py)
# Identities made only of kept bytes and short enough need no work at all:
# one C-level match instead of a per-byte loop. Explicit ranges, no flags, so
# no non-ASCII character (e.g. the Kelvin sign) can match.
_PLAIN_RE = re.compile(r"[A-Za-z0-9._@+\-]{0,%d}" % MAX_ESCAPED_IDENTITY)
_KEPT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-@+")
# Byte value -> its escaped form: itself if kept, else %XX (upper-case hex).
_ESCAPED_BYTE: tuple[str, ...] = tuple(chr(b) if b in _KEPT else "%%%02X" % b for b in range(256))


def escape_identity(identity: str) -> str:
    """Escape a user, tenant id or tool name for use as the last key segment (§6).

    UTF-8 bytes (lone surrogates encoded with ``surrogatepass``); bytes in
    ``A-Z a-z 0-9 . _ - @ +`` kept, every other byte written ``%XX``. A
    result longer than 128 bytes becomes ``~`` + SHA-256 hex of the UTF-8 bytes.
    """
    if _PLAIN_RE.fullmatch(identity) is not None:
        return identity
    data = identity.encode("utf-8", "surrogatepass")
    escaped = "".join([_ESCAPED_BYTE[b] for b in data])
    if len(escaped) > MAX_ESCAPED_IDENTITY:
        return "~" + hashlib.sha256(data).hexdigest()
    return escaped


def user_server_identity(user: str, server: str) -> str:
    """The identity segment of a ``user_per_server`` key (§6): ``escape(user) + ":" + escape(server)``.

    ``:`` is never kept raw by the escaping, so distinct pairs give distinct
    segments. A composed segment longer than 128 bytes becomes ``~`` + the
    SHA-256 hex of its (ASCII) bytes.
    """
    composed = escape_identity(user) + ":" + escape_identity(server)
    if len(composed) > MAX_ESCAPED_IDENTITY:
        return "~" + hashlib.sha256(composed.encode("ascii")).hexdigest()
    return composed


def key_segment(identity: str) -> str:
    """The last segment of a user, tenant or tool key (§6): the escaped identity in a hash tag."""
    return "{" + escape_identity(identity) + "}"


def user_server_segment(user: str, server: str) -> str:
    """The last segment of a ``user_per_server`` key (§6): ``{escape(user)}:escape(server)``.

    The hash tag holds the user part, so a user's ``user`` and ``user_per_server`` keys
    share a Cluster slot. A composed identity longer than 128 bytes is hashed whole and
    tagged whole: ``{~<hex>}``.
    """
    user_part = escape_identity(user)
    server_part = escape_identity(server)
    if len(user_part) + 1 + len(server_part) > MAX_ESCAPED_IDENTITY:
        return "{" + user_server_identity(user, server) + "}"
    return "{" + user_part + "}:" + server_part


def key_prefix(prefix: str, algorithm: str, dimension: str, rate: Rate) -> str:
    """Everything of a state key before the identity, ending with ``:``.

    ``algorithm`` is a config name (``fixed_window``, ...) or its code
    (``fw``, ``sw``, ``tb``). Engines compute this once per dimension at init
    and append :func:`escape_identity` per request. Raises ValueError for a
    prefix, algorithm or dimension outside §6.
    """
    if not isinstance(prefix, str) or _PREFIX_RE.fullmatch(prefix) is None:
        raise ValueError(f"key prefix {prefix!r} must match [A-Za-z0-9_.-]{{1,64}}")
    code = ALGORITHM_CODES.get(algorithm)
    if code is None:
        if algorithm not in ALGORITHM_CODES.values():
            raise ValueError(f"unknown algorithm {algorithm!r}")
        code = algorithm
    if dimension not in DIMENSION_NAMES:
        raise ValueError(f"unknown dimension {dimension!r}")
    return f"{prefix}:{code}:{dimension}:{rate.limit}/{rate.window_s}:"


def state_key(prefix: str, algorithm: str, dimension: str, rate: Rate, identity: str) -> str:
    """The full state key of one dimension for one identity (§6)."""
    return key_prefix(prefix, algorithm, dimension, rate) + key_segment(identity)

"""Plugin configuration: the one place where settings are parsed and validated.

``parse_config(raw)`` turns the plugin's ``config:`` mapping into a frozen
:class:`LimiterConfig` or raises one ValueError listing every problem. Engines
receive only LimiterConfig, never the raw mapping. Rules: docs/semantics.md §1,
§5, §6, §8, §10 and the README's configuration table.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Mapping

ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket")
BACKENDS = ("memory", "redis")
FAIL_MODES = ("open", "closed")

# --- the settings table --------------------------------------------------------
# The one definition of every bound and default, for both engines: the Go engine's
# core/settings_gen.go is rendered from these names by tools/build/gen_settings.py, and
# tests_py/test_config.py fails when that file is stale.


@dataclass(frozen=True, slots=True)
class IntSetting:
    """An integer setting: its default and its inclusive bounds."""

    default: int
    lo: int
    hi: int


INT_SETTINGS: Mapping[str, IntSetting] = MappingProxyType(
    {
        "redis_connect_timeout_ms": IntSetting(default=50, lo=1, hi=60_000),
        "redis_timeout_ms": IntSetting(default=50, lo=1, hi=60_000),
        "redis_breaker_failures": IntSetting(default=5, lo=1, hi=1_000),
        "redis_breaker_cooldown_ms": IntSetting(default=1000, lo=1, hi=600_000),
        "memory_max_keys": IntSetting(default=100_000, lo=1, hi=100_000_000),
        # §12: keys remembered as refused per Redis backend; 0 turns local refusals off.
        "redis_blocked_max_keys": IntSetting(default=10_000, lo=0, hi=1_000_000),
    }
)
#: §6: algorithm name -> its short tag in state keys (the algorithm is part of every key).
ALGORITHM_KEY_TAGS: Mapping[str, str] = MappingProxyType(
    {"fixed_window": "fw", "sliding_window": "sw", "token_bucket": "tb"}  # nosec B105 # key tags, not passwords
)
DEFAULT_ALGORITHM = "fixed_window"
DEFAULT_BACKEND = "memory"
DEFAULT_KEY_PREFIX = "rl"
DEFAULT_TLS_CHECK_HOSTNAME = True
#: §11: how the redis backend reaches Redis, the default first.
REDIS_MODES = ("standalone", "sentinel", "cluster")
DEFAULT_REDIS_MODE = REDIS_MODES[0]
#: §11: at most this many sentinel addresses.
MAX_SENTINELS = 16
#: §6: what a redis_key_prefix may be (ASCII letters, digits, _ . -; 1 to 64 of them).
KEY_PREFIX_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
#: §1: the largest count of a rate.
MAX_RATE_COUNT = 1_000_000
# §1: window length in seconds per unit spelling (matched case-insensitively).
UNIT_SECONDS: Mapping[str, int] = MappingProxyType(
    {
        "s": 1,
        "sec": 1,
        "second": 1,
        "m": 60,
        "min": 60,
        "minute": 60,
        "h": 3600,
        "hr": 3600,
        "hour": 3600,
    }
)
#: Keys of canonical_json() that only the plugin layer applies: the Go engine accepts
#: them (the JSON is also the memory store's identity, §10) and does not read them.
PLUGIN_LAYER_KEYS = ("fail_mode",)


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``window_s`` seconds (§1)."""

    limit: int
    window_s: int

    @property
    def window_us(self) -> int:
        return self.window_s * 1_000_000

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_s}"


@dataclass(frozen=True, slots=True)
class LimiterConfig:
    """A validated configuration. Tool names in ``by_tool`` are normalised (§5)."""

    by_user: Rate | None = None
    # The user within the virtual server of the call (global_context.server_id), tool calls only (§5).
    by_user_per_server: Rate | None = None
    by_tenant: Rate | None = None
    by_tool: Mapping[str, Rate] = field(default_factory=lambda: MappingProxyType({}))
    algorithm: str = DEFAULT_ALGORITHM
    backend: str = DEFAULT_BACKEND
    redis_url: str | None = None
    redis_key_prefix: str = DEFAULT_KEY_PREFIX
    fail_mode: str = "open"
    redis_connect_timeout_ms: int = INT_SETTINGS["redis_connect_timeout_ms"].default
    redis_timeout_ms: int = INT_SETTINGS["redis_timeout_ms"].default
    redis_breaker_failures: int = INT_SETTINGS["redis_breaker_failures"].default
    redis_breaker_cooldown_ms: int = INT_SETTINGS["redis_breaker_cooldown_ms"].default
    memory_max_keys: int = INT_SETTINGS["memory_max_keys"].default
    redis_blocked_max_keys: int = INT_SETTINGS["redis_blocked_max_keys"].default
    # TLS material for rediss:// (PEM file paths). None: the system trust store, no client certificate.
    redis_tls_ca_file: str | None = None
    redis_tls_cert_file: str | None = None
    redis_tls_key_file: str | None = None
    # False: verify the server's certificate chain but not that it names the host (config key
    # redis_ssl_check_hostname). Only used with rediss://.
    redis_tls_check_hostname: bool = DEFAULT_TLS_CHECK_HOSTNAME
    # §11: standalone (one Redis at redis_url), sentinel (the primary named redis_sentinel_master,
    # found through redis_sentinels, "host:port" each) or cluster (redis_url is a seed node).
    redis_mode: str = DEFAULT_REDIS_MODE
    redis_sentinels: tuple[str, ...] = ()
    redis_sentinel_master: str | None = None
    # The plugin layer, not the engines: hand an admitted call's X-RateLimit-* headers to the
    # HTTP response through the http_post_request hook (when that hook is listed). Not in
    # canonical_json: it changes no count.
    admitted_headers: bool = True

    def canonical_json(self) -> str:
        """A deterministic JSON rendering: identifies the shared memory store
        (§10) and is the configuration handed to the Go engine. Rates are
        written as ``{"limit": n, "window_s": w}``."""

        def rate(r: Rate | None) -> dict[str, int] | None:
            return None if r is None else {"limit": r.limit, "window_s": r.window_s}

        doc = {
            "algorithm": self.algorithm,
            "backend": self.backend,
            "by_tenant": rate(self.by_tenant),
            "by_tool": {name: rate(r) for name, r in sorted(self.by_tool.items())},
            "by_user": rate(self.by_user),
            "fail_mode": self.fail_mode,
            "memory_max_keys": self.memory_max_keys,
            "redis_breaker_cooldown_ms": self.redis_breaker_cooldown_ms,
            "redis_breaker_failures": self.redis_breaker_failures,
            "redis_connect_timeout_ms": self.redis_connect_timeout_ms,
            "redis_key_prefix": self.redis_key_prefix,
            "redis_timeout_ms": self.redis_timeout_ms,
            "redis_url": self.redis_url,
        }
        # Written only when set, so the JSON (and the memory store identity, §10) of a
        # configuration without them is unchanged.
        if self.by_user_per_server is not None:
            doc["by_user_per_server"] = rate(self.by_user_per_server)
        for key in _TLS_FILE_KEYS:
            value = getattr(self, key)
            if value is not None:
                doc[key] = value
        if not self.redis_tls_check_hostname:
            doc["redis_tls_check_hostname"] = False
        if self.redis_mode != DEFAULT_REDIS_MODE:
            doc["redis_mode"] = self.redis_mode
        if self.redis_blocked_max_keys != INT_SETTINGS["redis_blocked_max_keys"].default:
            doc["redis_blocked_max_keys"] = self.redis_blocked_max_keys
        if self.redis_mode == "sentinel":
            doc["redis_sentinels"] = list(self.redis_sentinels)
            doc["redis_sentinel_master"] = self.redis_sentinel_master
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))


# --- parsing -----------------------------------------------------------------

# ASCII digits only: \d would also take other scripts' digits, which int() accepts.
_RATE_RE = re.compile(r"\s*([0-9]+)\s*/\s*([A-Za-z]+)\s*", re.ASCII)
_PREFIX_RE = re.compile(KEY_PREFIX_PATTERN, re.ASCII)
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")
_TLS_FILE_KEYS = ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file")
_RATE_KEYS = ("by_user", "by_user_per_server", "by_tenant")

# Setting names as written in a plugin's config: (documented name, LimiterConfig field).
# The documented names are cpex-rate-limiter's, so its configurations load unchanged; the
# field names (redis_tls_*) were this plugin's own spelling and stay accepted as aliases.
# Giving both spellings of one setting is an error.
SETTING_ALIASES: dict[str, str] = {
    "redis_ssl_ca_certs": "redis_tls_ca_file",
    "redis_ssl_certfile": "redis_tls_cert_file",
    "redis_ssl_keyfile": "redis_tls_key_file",
    "redis_ssl_check_hostname": "redis_tls_check_hostname",
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "algorithm": ALGORITHMS,
    "backend": BACKENDS,
    "fail_mode": FAIL_MODES,
    "redis_mode": REDIS_MODES,
}
#: Every setting name a config may use: the documented names and the field names.
KNOWN_KEYS: tuple[str, ...] = tuple(f.name for f in fields(LimiterConfig)) + tuple(SETTING_ALIASES)


class ConfigError(ValueError):
    """Every problem found in one configuration; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"invalid rate limiter configuration ({count} problem{'s' if count != 1 else ''})"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


def _show(value: object, limit: int = 60) -> str:
    """A short repr for error messages, so a huge value cannot flood the log."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_rate(text: object) -> Rate:
    """Parse ``"<count>/<unit>"`` (§1) into a Rate; anything else raises ValueError.

    A non-string (a number, None, a list) is an error, never "no limit".
    """
    if not isinstance(text, str):
        raise ValueError(f"a rate must be a string like '10/m', got {type(text).__name__} {_show(text)}")
    match = _RATE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{_show(text)} is not a rate of the form '<count>/<unit>', e.g. '10/s', '100/m', '1000/h'")
    digits, unit = match.groups()
    window_s = UNIT_SECONDS.get(unit.lower())
    if window_s is None:
        raise ValueError(f"{_show(text)} has unknown unit {unit!r}; use s/sec/second, m/min/minute or h/hr/hour")
    significant = digits.lstrip("0")
    # Length check first: int() of a very long digit string is slow or refused.
    if not significant or len(significant) > len(str(MAX_RATE_COUNT)) or int(significant) > MAX_RATE_COUNT:
        raise ValueError(f"{_show(text)}: the count must be between 1 and {MAX_RATE_COUNT}")
    return Rate(limit=int(significant), window_s=window_s)


def _rate_setting(raw: Mapping[Any, Any], key: str, problems: list[str]) -> Rate | None:
    """A rate, or None when absent or null (YAML ``~``): that dimension is off."""
    if raw.get(key) is None:
        return None
    try:
        return parse_rate(raw[key])
    except ValueError as e:
        problems.append(f"{key}: {e}")
        return None


def _tool_rates(value: object, problems: list[str]) -> Mapping[str, Rate]:
    """by_tool: null is no tool limits; a tool whose rate is null is not limited."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        problems.append(f"by_tool: must be a mapping of tool name to rate, got {type(value).__name__} {_show(value)}")
        return MappingProxyType({})
    rates: dict[str, Rate] = {}
    spelled: dict[str, str] = {}  # normalised name -> name as written, to report collisions
    for name, rate_text in value.items():
        if not isinstance(name, str):
            problems.append(f"by_tool: tool names must be strings, got {type(name).__name__} {_show(name)}")
            continue
        normalised = name.strip().lower()  # the same normalisation as identity.tool_key (§5)
        if not normalised:
            problems.append(f"by_tool: tool name {_show(name)} is empty after stripping whitespace")
            continue
        try:
            rate = None if rate_text is None else parse_rate(rate_text)
        except ValueError as e:
            problems.append(f"by_tool[{name!r}]: {e}")
            rate = None
        if normalised in spelled:
            problems.append(
                f"by_tool: tool names {_show(spelled[normalised])} and {_show(name)} "
                f"collide (both are {normalised!r} after strip().lower())"
            )
            continue
        spelled[normalised] = name
        if rate is not None:
            rates[normalised] = rate
    return MappingProxyType(rates)


def _int_setting(raw: Mapping[Any, Any], key: str, default: int, problems: list[str]) -> int:
    if key not in raw:
        return default
    value = raw[key]
    lo, hi = INT_SETTINGS[key].lo, INT_SETTINGS[key].hi
    # bool is a subclass of int; `true` for a timeout is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{key}: must be an integer between {lo} and {hi}, got {type(value).__name__} {_show(value)}")
        return default
    if not lo <= value <= hi:
        problems.append(f"{key}: must be between {lo} and {hi}, got {value}")
        return default
    return value


def _choice_setting(raw: Mapping[Any, Any], key: str, default: str, problems: list[str]) -> str:
    if key not in raw:
        return default
    value = raw[key]
    allowed = _CHOICES[key]
    if not isinstance(value, str) or value not in allowed:
        problems.append(f"{key}: must be one of {', '.join(allowed)}; got {_show(value)}")
        return default
    return value


def _unknown_key_problem(key: object) -> str:
    if not isinstance(key, str):
        return f"{_show(key)}: setting names must be strings"
    hint = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
    suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"{key}: unknown setting{suffix}"


def parse_config(raw: Mapping[str, Any] | None) -> LimiterConfig:
    """Validate the plugin's ``config:`` mapping and build a LimiterConfig.

    ``None`` (no ``config:`` block) gives the defaults, which limit nothing.
    Every problem is collected and reported in ONE :class:`ConfigError`
    (a ValueError), each line naming its key, so a bad file is fixed in one go.
    """
    if raw is None:
        return LimiterConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError([f"config: must be a mapping of settings, got {type(raw).__name__} {_show(raw)}"])

    defaults = LimiterConfig()
    problems: list[str] = [_unknown_key_problem(k) for k in raw if k not in KNOWN_KEYS]
    raw, spelled = _resolve_aliases(raw, problems)

    rates = {key: _rate_setting(raw, key, problems) for key in _RATE_KEYS}
    by_tool = _tool_rates(raw["by_tool"], problems) if "by_tool" in raw else defaults.by_tool

    algorithm = _choice_setting(raw, "algorithm", defaults.algorithm, problems)
    backend = _choice_setting(raw, "backend", defaults.backend, problems)
    fail_mode = _choice_setting(raw, "fail_mode", defaults.fail_mode, problems)

    redis_url = raw.get("redis_url")
    if redis_url is not None:
        # The URL may hold a password: describe it, never echo it.
        if not isinstance(redis_url, str):
            problems.append(f"redis_url: must be a string, got {type(redis_url).__name__}")
            redis_url = None
        elif not redis_url.startswith(REDIS_URL_SCHEMES):
            problems.append(f"redis_url: must start with {', '.join(REDIS_URL_SCHEMES)}")
            redis_url = None
    elif backend == "redis":
        problems.append("redis_url: required when backend is redis")

    prefix = raw.get("redis_key_prefix", defaults.redis_key_prefix)
    if not isinstance(prefix, str) or _PREFIX_RE.fullmatch(prefix) is None:
        problems.append(f"redis_key_prefix: must match [A-Za-z0-9_.-]{{1,64}}, got {_show(prefix)}")
        prefix = defaults.redis_key_prefix

    ints = {key: _int_setting(raw, key, getattr(defaults, key), problems) for key in INT_SETTINGS}
    tls = _tls_files(raw, redis_url, spelled, problems)
    # Accepted with any URL (cpex-rate-limiter's default config carries it); used only with rediss://.
    check_hostname = _bool_setting(raw, "redis_tls_check_hostname", spelled, problems)
    admitted_headers = _bool_setting(raw, "admitted_headers", spelled, problems)
    deployment = _deployment(raw, backend, redis_url, problems)

    if problems:
        raise ConfigError(problems)
    return LimiterConfig(
        **rates,
        by_tool=by_tool,
        algorithm=algorithm,
        backend=backend,
        redis_url=redis_url,
        redis_key_prefix=prefix,
        fail_mode=fail_mode,
        **ints,
        **tls,
        redis_tls_check_hostname=check_hostname,
        **deployment,
        admitted_headers=admitted_headers,
    )


def _bool_setting(raw: Mapping[Any, Any], key: str, spelled: Mapping[str, str], problems: list[str]) -> bool:
    """A strict boolean (YAML true/false); anything else, "yes" and 1 included, is an error."""
    default: bool = getattr(LimiterConfig(), key)
    value = raw.get(key, default)
    if not isinstance(value, bool):
        problems.append(f"{spelled.get(key, key)}: must be true or false, got {type(value).__name__} {_show(value)}")
        return default
    return value


def _resolve_aliases(raw: Mapping[Any, Any], problems: list[str]) -> tuple[Mapping[Any, Any], dict[str, str]]:
    """The mapping keyed by LimiterConfig field, and field -> the name the config used (for messages)."""
    resolved = dict(raw)
    spelled = {field_name: documented for documented, field_name in SETTING_ALIASES.items()}
    for documented, field_name in SETTING_ALIASES.items():
        if field_name in raw:
            spelled[field_name] = field_name
        if documented not in raw:
            continue
        if field_name in raw:
            problems.append(f"{documented}: also given as {field_name} (the same setting); give it once")
        spelled[field_name] = documented
        resolved[field_name] = resolved.pop(documented)
    return resolved, spelled


def _readable_file(key: str, value: object, problems: list[str]) -> str | None:
    if not isinstance(value, str) or not value:
        problems.append(f"{key}: must be the path of a PEM file, got {type(value).__name__} {_show(value)}")
        return None
    try:
        with open(value, "rb"):  # readable by this process now, not merely present
            pass
    except OSError as e:
        problems.append(f"{key}: cannot read {_show(value)}: {e.strerror or type(e).__name__}")
        return None
    return value


def _tls_files(
    raw: Mapping[Any, Any], redis_url: object, spelled: Mapping[str, str], problems: list[str]
) -> dict[str, str | None]:
    """TLS files (raw keyed by field): readable, only with a rediss:// URL, certificate and key together.

    Messages name each setting as the config spelled it."""
    files: dict[str, str | None] = {key: None for key in _TLS_FILE_KEYS}
    given = [key for key in _TLS_FILE_KEYS if raw.get(key) is not None]
    if not given:
        return files
    if not (isinstance(redis_url, str) and redis_url.startswith("rediss://")):
        for key in given:
            problems.append(f"{spelled[key]}: only allowed with a rediss:// redis_url (TLS)")
        return files
    for key in given:
        files[key] = _readable_file(spelled[key], raw[key], problems)
    has_cert, has_key = "redis_tls_cert_file" in given, "redis_tls_key_file" in given
    if has_cert != has_key:
        missing = spelled["redis_tls_key_file" if has_cert else "redis_tls_cert_file"]
        present = spelled["redis_tls_cert_file" if has_cert else "redis_tls_key_file"]
        problems.append(f"{present}: needs {missing} too (a client certificate and its key go together)")
    return files


_SENTINEL_MASTER_RE = re.compile(r"[!-~]{1,128}", re.ASCII)  # printable ASCII, no spaces
_HOST_PORT_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})", re.ASCII)


def _deployment(raw: Mapping[Any, Any], backend: str, redis_url: object, problems: list[str]) -> dict[str, Any]:
    """redis_mode and its settings (§11): sentinels and master only in sentinel mode, a Cluster URL without a database."""
    mode = _choice_setting(raw, "redis_mode", DEFAULT_REDIS_MODE, problems)
    out: dict[str, Any] = {"redis_mode": mode}
    if mode != DEFAULT_REDIS_MODE and backend != "redis":
        problems.append(f"redis_mode: {mode} needs backend redis")
    if mode != "sentinel":
        for key in ("redis_sentinels", "redis_sentinel_master"):
            if raw.get(key) is not None:
                problems.append(f"{key}: only with redis_mode sentinel")
    if mode != DEFAULT_REDIS_MODE and isinstance(redis_url, str) and redis_url.startswith("unix://"):
        problems.append(f"redis_url: redis_mode {mode} needs redis:// or rediss://, not a unix socket")
    if mode == "cluster" and isinstance(redis_url, str) and _url_database(redis_url) not in (None, 0):
        problems.append("redis_url: a Redis Cluster has only database 0")
    if mode == "sentinel":
        out["redis_sentinels"] = _sentinel_addresses(raw.get("redis_sentinels"), problems)
        master = raw.get("redis_sentinel_master")
        if not isinstance(master, str) or _SENTINEL_MASTER_RE.fullmatch(master) is None:
            problems.append(
                "redis_sentinel_master: required with redis_mode sentinel: the monitored name "
                f"(1 to 128 printable characters, no spaces), got {_show(master)}"
            )
        else:
            out["redis_sentinel_master"] = master
    return out


def _url_database(url: str) -> int | None:
    """The database number in a redis URL's path, None when it has none, -1 when it is not a number."""
    path = url.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0]
    _, slash, db = path.partition("/")
    if not slash or db == "":
        return None
    return int(db) if db.isdigit() else -1


def _sentinel_addresses(value: object, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_SENTINELS:
        problems.append(
            f"redis_sentinels: required with redis_mode sentinel: a list of 1 to {MAX_SENTINELS} "
            f"'host:port' strings, got {_show(value)}"
        )
        return ()
    addresses = []
    for item in value:
        match = _HOST_PORT_RE.fullmatch(item) if isinstance(item, str) else None
        if match is None or not 1 <= int(match.group(2)) <= 65535:
            problems.append(f"redis_sentinels: {_show(item)} is not a 'host:port' with a port from 1 to 65535")
            continue
        addresses.append(item)
    if len(set(addresses)) != len(addresses):
        problems.append("redis_sentinels: an address is listed twice")
    return tuple(addresses)

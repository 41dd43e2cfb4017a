"""Identities: extraction of user, tenant and tool exactly as docs/semantics.md §5 says, and
hostile identities and names through the real plugin hooks (§5, §6, §8)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from cpex.framework import GlobalContext, PluginContext, PromptPrehookPayload, ToolPreInvokePayload
from rate_limiter_go.identity import ANONYMOUS, tenant_identity, tool_key, user_identity
from rate_limiter_go.plugin import RateLimiterPlugin
from support.go_helpers import require_go_engine
from support.plugin_helpers import make_plugin, unique_name


class _Weird:
    def __str__(self) -> str:
        return "  weird-user  "


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("  alice@example.com\n", "alice@example.com"),  # stripped
        ("", ANONYMOUS),
        ("   \t", ANONYMOUS),
        (None, ANONYMOUS),
        # dict: email, then id, then sub: the first not None and non-empty
        ({"email": "bob@example.com", "id": "u1", "sub": "s1"}, "bob@example.com"),
        ({"id": "u1", "sub": "s1"}, "u1"),
        ({"sub": "s1"}, "s1"),
        ({"email": None, "id": None, "sub": "s1"}, "s1"),
        ({"email": None, "id": 42}, "42"),  # converted with str()
        ({"id": 0}, "0"),  # 0 is present and not None
        ({"email": " carol@example.com "}, "carol@example.com"),
        ({"name": "no usable field"}, ANONYMOUS),
        ({}, ANONYMOUS),
        # an empty field is skipped, so a usable id is not lumped into anonymous (§5)
        ({"email": "  ", "id": "u1"}, "u1"),
        ({"email": "", "id": "", "sub": None}, ANONYMOUS),
        (12345, "12345"),  # any other non-None value: str(value)
        (_Weird(), "weird-user"),
        ("ünïcødé", "ünïcødé"),
    ],
)
def test_user_identity(user: object, expected: str) -> None:
    assert user_identity(user) == expected


def test_anonymous_is_the_documented_name() -> None:
    assert ANONYMOUS == "anonymous"


@pytest.mark.parametrize(
    ("tenant", "expected"),
    [
        ("team-1", "team-1"),
        ("  team-1 ", "team-1"),
        ("team:1 {a}", "team:1 {a}"),
        (None, None),  # the dimension is skipped, not a shared tenant
        ("", None),
        ("  ", None),
        (7, "7"),
    ],
)
def test_tenant_identity(tenant: object, expected: str | None) -> None:
    assert tenant_identity(tenant) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("search", "search"),
        ("  Search\t", "search"),
        ("WEB_Fetch", "web_fetch"),
        ("", ""),
        (None, ""),
    ],
)
def test_tool_key(name: object, expected: str) -> None:
    assert tool_key(name) == expected


# --- hostile identities and names through the plugin hooks (§5, §6, §8) ----------------
#
# Separators, hash-tag braces, 64 KiB strings, unicode, NUL, lone surrogates,
# the Go wire marker "\x01", non-strings and objects whose ``__str__`` fails:
#
# * no two distinct identities share a counter: each is admitted exactly up to
#   its limit, whatever was sent before it (§5, §6);
# * nothing escapes a hook (§8);
# * Redis keys stay within the §6 bound and never carry a raw separator or brace;
# * the Python and the Go engine give the same answers call for call.
#
# Runs on the engine RATE_LIMITER_ENGINE selects; the parity test builds both.


LIMIT = 3
BIG = 64 * 1024
#: §6: prefix (<= 64) + ":" algo ":" dimension ":" rate ":" "{" identity (<= 128 escaped or "~" + 64 hex) "}".
MAX_KEY_BYTES = 64 + 4 + 7 + 17 + 128 + 4 + 2


class BrokenStr:
    """A value whose str() raises: identity extraction must fail inside the hook, not escape it."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


# Near-colliding strings: each pair differs only in a way an escaping or
# hashing bug would erase (case, escaped vs raw, NFC vs NFD, NUL position,
# hashed-form look-alikes, one byte at the end of a 64 KiB string).
HOSTILE_STRINGS: tuple[str, ...] = (
    "a:b",
    "a%3Ab",
    "a%3ab",
    "a%253Ab",
    "A:B",
    "a b",
    "a+b",
    "a%20b",
    "{a}",
    "{a",
    "a}",
    "{user}:x",
    "~",
    "~" + "0" * 64,
    "%",
    "%%",
    "%00",
    "a\x00b",
    "a\x00",
    "\x00a",
    "ab\x00",
    "a\ud800b",
    "a\udc00b",
    "\ud800",
    "\x01a",
    "\x01a%3Ab",
    "\x01\x01",
    "a",
    "ユーザー@例え.jp",
    "\u00e9",  # é, NFC
    "e\u0301",  # é, NFD
    "\U0001f600",
    "x" * BIG,
    "x" * (BIG - 1) + "y",
    "x" * 128,  # escaped form exactly at the hashing threshold
    "x" * 129,  # just over it: hashed
    "~" * 43,  # escapes to 129 bytes: hashed
    "\t\n\r\x0b",  # whitespace only after strip: anonymous
)

# Non-string values: these go through str() (§5); collisions with their
# string form are the contract (str(7) is "7"), not a bug.
NON_STRING_USERS: tuple[Any, ...] = (7, 7.5, -1, True, ("t", 1), {"email": "", "id": 42}, {"sub": "{s}"}, {"x": 1})


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.param == "memory":
        yield {"backend": "memory"}
    else:
        url = request.getfixturevalue("redis_url")
        yield {"backend": "redis", "redis_url": url, "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000}


def _context(user: Any = "u@example.com", tenant: Any = None) -> PluginContext:
    gctx = GlobalContext(request_id="req", user="placeholder")
    gctx.user = user  # bypass the model's type check: a gateway may hand over anything
    gctx.tenant_id = tenant
    return PluginContext(global_context=gctx)


async def _tool(plugin: RateLimiterPlugin, tool: Any, user: Any = "u@example.com", tenant: Any = None) -> Any:
    # model_construct skips validation: the payload model is frozen and typed, and the point is a hostile value.
    payload = ToolPreInvokePayload.model_construct(name=tool, args={})
    return await plugin.tool_pre_invoke(payload, _context(user, tenant))


def _outcome(result: Any) -> tuple[bool, str | None, str | None]:
    """(admitted, X-RateLimit-Remaining, code) of a hook result."""
    if result.continue_processing:
        headers = result.http_headers or {}
        return True, headers.get("X-RateLimit-Remaining"), None
    return False, result.violation.http_headers.get("X-RateLimit-Remaining"), result.violation.code


def _distinct(values: tuple[Any, ...], normalise: Any) -> list[Any]:
    """One value per distinct normalised identity, in order (e.g. "a" and " a " are one identity)."""
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(normalise(v), v)
    return list(seen.values())


async def _exhaust(call: Any, values: list[Any]) -> list[tuple[bool, str | None, str | None]]:
    """For every value in turn: LIMIT admitted calls (remaining LIMIT-1 .. 0), then one refused."""
    outcomes = []
    for value in values:
        for i in range(LIMIT + 1):
            got = _outcome(await call(value))
            outcomes.append(got)
            if i < LIMIT:
                assert got == (True, str(LIMIT - 1 - i), None), f"call {i + 1} of {value!r:.60}: {got}"
            else:
                assert got[0] is False and got[2] == "RATE_LIMIT", f"call {i + 1} of {value!r:.60}: {got}"
    return outcomes


async def test_users_never_share_a_counter(backend: dict[str, Any]) -> None:
    """§5/§6: each distinct user identity has its own counter, however close to another it is."""
    plugin = make_plugin({"by_user": f"{LIMIT}/h", **backend})
    users = _distinct(HOSTILE_STRINGS + NON_STRING_USERS, user_identity)
    assert len(users) > 40
    await _exhaust(lambda u: _tool(plugin, "t", user=u), users)
    await plugin.shutdown()


async def test_tenants_never_share_a_counter(backend: dict[str, Any]) -> None:
    """§5/§6: the same for tenant ids; empty-after-strip tenants skip the dimension."""
    plugin = make_plugin({"by_tenant": f"{LIMIT}/h", **backend})
    tenants = [t for t in _distinct(HOSTILE_STRINGS + (7, 7.5), tenant_identity) if tenant_identity(t) is not None]
    await _exhaust(lambda t: _tool(plugin, "t", tenant=t), tenants)
    # A whitespace-only tenant is no tenant (§5): nothing limits it.
    for _ in range(LIMIT + 2):
        assert _outcome(await _tool(plugin, "t", tenant="\t\n\r\x0b")) == (True, None, None)
    await plugin.shutdown()


async def test_tool_names_never_share_a_counter(backend: dict[str, Any]) -> None:
    """§5: hostile by_tool names (configured) each get their own shared counter, matched after strip().lower()."""
    names = [n for n in _distinct(HOSTILE_STRINGS, tool_key) if tool_key(n)]
    go = os.environ.get("RATE_LIMITER_ENGINE", "").strip().lower() == "go"
    if go:  # the Go engine refuses a lone surrogate in a by_tool name at init (JSON cannot carry it to Go)
        names = [n for n in names if not _has_surrogate(n)]
    plugin = make_plugin({"by_tool": {n: f"{LIMIT}/h" for n in names}, **backend})
    await _exhaust(lambda n: _tool(plugin, n), names)
    # Case and surrounding space do not make a new tool (§5): "A:B " is "a:b", already used up.
    got = _outcome(await _tool(plugin, "  A:B  "))
    assert got[0] is False and got[2] == "RATE_LIMIT"
    await plugin.shutdown()


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_values_that_cannot_be_read_do_not_escape(backend: dict[str, Any], fail_mode: str) -> None:
    """§8: a user, tenant or tool whose str() raises is an error inside the hook: fail_mode applies."""
    plugin = make_plugin({"by_user": "5/h", "by_tenant": "5/h", "by_tool": {"t": "5/h"}, "fail_mode": fail_mode,
                          **backend})
    cases = [
        dict(tool="t", user=BrokenStr()),
        dict(tool="t", user={"email": BrokenStr()}),
        dict(tool="t", tenant=BrokenStr()),
        dict(tool=BrokenStr()),
    ]
    for case in cases:
        result = await _tool(plugin, **case)
        if fail_mode == "open":
            assert _outcome(result) == (True, None, None), case
        else:
            assert _outcome(result) == (False, None, "BACKEND_UNAVAILABLE"), case
    # The prompt hook takes the same path.
    payload = PromptPrehookPayload.model_construct(prompt_id=BrokenStr(), args={})
    result = await plugin.prompt_pre_fetch(payload, _context())
    assert result.continue_processing is (fail_mode == "open")
    # And the plugin still works afterwards.
    assert _outcome(await _tool(plugin, "t", user="ok@example.com")) == (True, "4", None)
    await plugin.shutdown()


async def test_redis_keys_are_bounded_and_escaped(redis_url: str, redis_server: Any) -> None:
    """§6: every key written for hostile identities is <= 226 bytes, has exactly the four separators, and braces
    only around the whole identity (the hash tag: an identity never brings a brace of its own)."""
    prefix = "p" * 64  # the longest prefix allowed
    plugin = make_plugin(
        {
            "by_user": "1000000/h",
            "by_tenant": "1000000/h",
            "by_tool": {n: "999999/h" for n in _distinct(HOSTILE_STRINGS[:20], tool_key) if tool_key(n)},
            "backend": "redis",
            "redis_url": redis_url,
            "redis_key_prefix": prefix,
            "redis_timeout_ms": 2000, "redis_connect_timeout_ms": 2000,
        }
    )
    users = _distinct(HOSTILE_STRINGS + NON_STRING_USERS, user_identity)
    for u in users:
        assert _outcome(await _tool(plugin, HOSTILE_STRINGS[0], user=u, tenant=u))[0]
    await plugin.shutdown()
    with redis_server.client() as c:
        keys = list(c.scan_iter(match=prefix + ":*", count=1000))
    tenants = {tenant_identity(u) for u in users} - {None}
    assert len(keys) == len(users) + len(tenants) + 1  # one tool key: every call used the same tool
    for key in keys:
        assert len(key) <= MAX_KEY_BYTES, (len(key), key[:100])
        assert key.count(b":") == 4, key[:100]
        head, _, segment = key.rpartition(b":")
        assert segment.startswith(b"{") and segment.endswith(b"}"), key[:100]
        assert b"{" not in head + segment[1:-1] and b"}" not in head + segment[1:-1], key[:100]
        assert all(0x21 <= b < 0x7F for b in key), key[:100]  # printable ASCII only
    hashed = [k for k in keys if k.rsplit(b":", 1)[1].startswith(b"{~")]
    assert len(hashed) >= 4  # the 64 KiB strings, "x"*129 and "~"*43 went through SHA-256


async def test_engines_agree_on_hostile_identities(
    backend: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parity: the Python and the Go engine answer the same hostile call sequence identically."""
    require_go_engine()
    users = _distinct(HOSTILE_STRINGS + NON_STRING_USERS, user_identity)
    tools = [n for n in _distinct(HOSTILE_STRINGS, tool_key) if tool_key(n) and not _has_surrogate(n)][:12]
    sequences = []
    for engine in ("python", "go"):
        monkeypatch.setenv("RATE_LIMITER_ENGINE", engine)
        # Distinct prefixes on Redis so the second engine starts from empty state as the first did.
        extra = {"redis_key_prefix": unique_name(engine)} if backend["backend"] == "redis" else {}
        plugin = make_plugin(
            {"by_user": "2/h", "by_tenant": "3/h", "by_tool": {t: "4/h" for t in tools}, **backend, **extra}
        )
        assert plugin.engine.name == engine
        seq = []
        for round_ in range(3):
            for i, u in enumerate(users):
                result = await _tool(plugin, tools[i % len(tools)], user=u, tenant=users[(i + round_) % len(users)])
                seq.append(_outcome(result))
        sequences.append(seq)
        await plugin.shutdown()
    python_seq, go_seq = sequences
    diffs = [(i, p, g) for i, (p, g) in enumerate(zip(python_seq, go_seq)) if p != g]
    assert not diffs, f"{len(diffs)} differing answers, first: {diffs[:3]}"
    assert any(not admitted for admitted, _, _ in python_seq)  # the sequence did reach the limits

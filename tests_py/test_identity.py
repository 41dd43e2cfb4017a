"""Identity extraction: user, tenant and tool exactly as docs/semantics.md §5 says."""

from __future__ import annotations

import pytest
from rate_limiter_go.identity import ANONYMOUS, tenant_identity, tool_key, user_identity


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

"""§6 keys: layout, escaping, hashing of long identities."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rate_limiter_go.config import Rate
from rate_limiter_go.keys import MAX_ESCAPED_IDENTITY, escape_identity, key_prefix, state_key

KEPT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-@+"


def spec_escape(identity: str) -> str:
    """§6 read literally, one byte at a time: the reference the fast paths must match."""
    data = identity.encode("utf-8", "surrogatepass")
    out = "".join(chr(b) if chr(b) in KEPT else f"%{b:02X}" for b in data)
    return out if len(out) <= 128 else "~" + hashlib.sha256(data).hexdigest()


def test_section6_examples() -> None:
    assert state_key("rl", "fixed_window", "user", Rate(10, 60), "alice@example.com") == (
        "rl:fw:user:10/60:alice@example.com"
    )
    assert state_key("rl", "token_bucket", "tenant", Rate(5, 1), "team:1 {a}") == "rl:tb:tenant:5/1:team%3A1%20%7Ba%7D"


@pytest.mark.parametrize(
    ("algorithm", "code"),
    [("fixed_window", "fw"), ("sliding_window", "sw"), ("token_bucket", "tb"), ("fw", "fw"), ("tb", "tb")],
)
def test_algorithm_code_in_key(algorithm: str, code: str) -> None:
    assert key_prefix("rl", algorithm, "tool", Rate(100, 3600)) == f"rl:{code}:tool:100/3600:"


@pytest.mark.parametrize(
    ("identity", "escaped"),
    [
        (KEPT, KEPT),  # every kept byte stays raw
        ("a:b", "a%3Ab"),
        ("%", "%25"),  # the escape character itself is escaped, so escaping is injective
        ("~", "%7E"),  # never raw, so a hashed identity (~...) cannot equal an escaped one
        ("{tag}", "%7Btag%7D"),  # no raw braces: no accidental Redis Cluster hash tags
        (" x\t\n", "%20x%09%0A"),
        ("\x00\x7f", "%00%7F"),
        ("é", "%C3%A9"),  # UTF-8 bytes, upper-case hex
        ("日本", "%E6%97%A5%E6%9C%AC"),
        ("\ud800", "%ED%A0%80"),  # lone surrogate: surrogatepass
        ("", ""),
    ],
)
def test_escape_identity(identity: str, escaped: str) -> None:
    assert escape_identity(identity) == escaped
    assert escaped == spec_escape(identity)


def test_length_boundary_128_bytes_kept_129_hashed() -> None:
    assert escape_identity("a" * MAX_ESCAPED_IDENTITY) == "a" * 128
    long_plain = "a" * 129
    assert escape_identity(long_plain) == "~" + hashlib.sha256(long_plain.encode()).hexdigest()
    # The limit is on the escaped length: 42 escaped bytes are 126 chars, 43 are 129.
    assert escape_identity(":" * 42) == "%3A" * 42
    hashed = escape_identity(":" * 43)
    assert hashed == "~" + hashlib.sha256(b":" * 43).hexdigest()
    assert len(hashed) == 65


def test_hash_uses_surrogatepass_bytes() -> None:
    identity = "\udc80" * 50  # 150 escaped bytes
    assert escape_identity(identity) == "~" + hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


def test_key_is_bounded() -> None:
    key = state_key("p" * 64, "sliding_window", "tenant", Rate(1_000_000, 3600), "x" * 10_000)
    assert len(key.encode()) <= 64 + 4 + 7 + 17 + 128 + 4


@given(st.text(max_size=200))
def test_escape_matches_the_byte_by_byte_reading_of_section6(identity: str) -> None:
    assert escape_identity(identity) == spec_escape(identity)


@given(st.text(max_size=60), st.text(max_size=60))
def test_distinct_identities_give_distinct_escapes(a: str, b: str) -> None:
    if a != b:
        assert escape_identity(a) != escape_identity(b)


@given(st.text(max_size=300))
def test_escaped_identity_has_only_safe_characters(identity: str) -> None:
    out = escape_identity(identity)
    assert len(out) <= 128
    assert all(c in KEPT or c == "%" or c in "0123456789abcdef~" for c in out)
    assert ":" not in out and "{" not in out and " " not in out


@pytest.mark.parametrize("prefix", ["", "a:b", "a b", "x" * 65, "rl{1}", "é"])
def test_bad_prefix_is_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        key_prefix(prefix, "fixed_window", "user", Rate(1, 1))


def test_unknown_algorithm_and_dimension_are_rejected() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        key_prefix("rl", "leaky_bucket", "user", Rate(1, 1))
    with pytest.raises(ValueError, match="dimension"):
        key_prefix("rl", "fixed_window", "team", Rate(1, 1))


def test_non_string_identity_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        escape_identity(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        escape_identity(b"alice")  # type: ignore[arg-type]

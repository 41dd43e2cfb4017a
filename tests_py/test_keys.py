"""§6 keys: layout, escaping, hashing of long identities, the composed user_per_server identity."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rate_limiter_go.config import Rate
from rate_limiter_go.keys import (
    DIMENSION_NAMES,
    MAX_ESCAPED_IDENTITY,
    escape_identity,
    key_prefix,
    state_key,
    user_server_identity,
    user_server_segment,
)

KEPT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-@+"


def spec_escape(identity: str) -> str:
    """§6 read literally, one byte at a time: the reference the fast paths must match."""
    data = identity.encode("utf-8", "surrogatepass")
    out = "".join(chr(b) if chr(b) in KEPT else f"%{b:02X}" for b in data)
    return out if len(out) <= 128 else "~" + hashlib.sha256(data).hexdigest()


def test_section6_examples() -> None:
    assert state_key("rl", "fixed_window", "user", Rate(10, 60), "alice@example.com") == (
        "rl:fw:user:10/60:{alice@example.com}"
    )
    assert state_key("rl", "token_bucket", "tenant", Rate(5, 1), "team:1 {a}") == "rl:tb:tenant:5/1:{team%3A1%20%7Ba%7D}"


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
    """§6: at most 227 bytes, for every dimension and the longest prefix and rate."""
    longest = 64 + 1 + 2 + 1 + len("user_per_server") + 1 + len("1000000/3600") + 1 + 2 + 128
    assert longest == 227
    rate = Rate(1_000_000, 3600)
    for dimension in DIMENSION_NAMES:
        assert len(state_key("p" * 64, "sliding_window", dimension, rate, "x" * 10_000).encode()) <= longest
    prefix = key_prefix("p" * 64, "sliding_window", "user_per_server", rate)
    for user, server in [("x" * 128, "y" * 128), ("x" * 10_000, "%" * 10_000), ("a" * 63, "b" * 64)]:
        assert len((prefix + user_server_segment(user, server)).encode()) <= longest


def spec_user_server(user: str, server: str) -> str:
    """§6 user_per_server identity read literally."""
    composed = spec_escape(user) + ":" + spec_escape(server)
    return composed if len(composed) <= 128 else "~" + hashlib.sha256(composed.encode("ascii")).hexdigest()


@pytest.mark.parametrize(
    ("user", "server", "identity"),
    [
        ("bob", "srv 1", "bob:srv%201"),  # the §6 example
        ("a:b", "c", "a%3Ab:c"),  # a raw ':' only ever separates the two parts
        ("a", "b:c", "a:b%3Ac"),
        ("anonymous", "s1", "anonymous:s1"),
        ("a" * 63, "b" * 64, "a" * 63 + ":" + "b" * 64),  # 128 bytes: kept
        ("a" * 64, "b" * 64, "~" + hashlib.sha256(("a" * 64 + ":" + "b" * 64).encode()).hexdigest()),  # 129
        # A long user is hashed on its own first, then the composed 65 + 1 + 2 bytes are kept.
        ("u" * 200, "s1", "~" + hashlib.sha256(b"u" * 200).hexdigest() + ":s1"),
        ("\ud800", "é", "%ED%A0%80:%C3%A9"),
    ],
)
def test_user_server_identity(user: str, server: str, identity: str) -> None:
    assert user_server_identity(user, server) == identity == spec_user_server(user, server)
    assert len(identity) <= MAX_ESCAPED_IDENTITY
    assert key_prefix("rl", "sliding_window", "user_per_server", Rate(20, 3600)) == "rl:sw:user_per_server:20/3600:"


@given(st.text(max_size=80), st.text(max_size=80), st.text(max_size=80), st.text(max_size=80))
def test_distinct_user_server_pairs_give_distinct_identities(u1: str, s1: str, u2: str, s2: str) -> None:
    if (u1, s1) != (u2, s2):
        assert user_server_identity(u1, s1) != user_server_identity(u2, s2)
    assert user_server_identity(u1, s1) == spec_user_server(u1, s1)


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


@pytest.mark.parametrize(
    ("user", "server", "segment"),
    [
        ("bob", "srv 1", "{bob}:srv%201"),  # the §6 example: the tag holds the user part
        ("a" * 63, "b" * 64, "{" + "a" * 63 + "}:" + "b" * 64),  # composed 128 bytes: kept
        ("a" * 64, "b" * 64, "{~" + hashlib.sha256(("a" * 64 + ":" + "b" * 64).encode()).hexdigest() + "}"),
    ],
)
def test_user_server_segment_tags_the_user(user: str, server: str, segment: str) -> None:
    assert user_server_segment(user, server) == segment


def test_a_users_keys_share_a_cluster_slot() -> None:
    """§6, §11: the hash tag makes a user's user and user_per_server keys one slot."""
    from rate_limiter_go.engine_python.redis_cluster import key_slot

    user_key = state_key("rl", "fixed_window", "user", Rate(10, 60), "alice")
    per_server = key_prefix("rl", "fixed_window", "user_per_server", Rate(2, 1)) + user_server_segment("alice", "s")
    assert key_slot(user_key) == key_slot(per_server) == key_slot("{alice}")

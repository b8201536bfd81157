"""Anonymous session tokens: a random session id, HMAC-signed with the gateway's secret."""

from __future__ import annotations

import pytest

from channels.webchat import issue_token, verify_token


def test_a_token_names_its_session_and_only_its_secret_accepts_it() -> None:
    session_id, token = issue_token("k1")
    assert verify_token("k1", token) == session_id
    assert verify_token("k2", token) is None


def test_sessions_are_random_and_url_safe() -> None:
    pairs = [issue_token("k1") for _ in range(200)]
    assert len({sid for sid, _ in pairs}) == 200
    for sid, token in pairs:
        assert len(sid) >= 24 and token.startswith(sid + ".")
        assert all(c.isalnum() or c in "-_." for c in token)


def test_a_session_id_cannot_be_swapped_under_another_signature() -> None:
    (sid_a, token_a), (_, token_b) = issue_token("k1"), issue_token("k1")
    mac_b = token_b.split(".", 1)[1]
    assert verify_token("k1", f"{sid_a}.{mac_b}") is None


@pytest.mark.parametrize("position", [0, 10, -1])
def test_any_changed_character_is_refused(position: int) -> None:
    _, token = issue_token("k1")
    chars = list(token)
    if chars[position] == ".":
        position += 1
    chars[position] = "A" if chars[position] != "A" else "B"
    assert verify_token("k1", "".join(chars)) is None


@pytest.mark.parametrize("junk", ["", ".", "abc", "abc.", ".abc", "x" * 500, "a.b.c", "é.é"])
def test_garbage_is_refused_not_an_error(junk: str) -> None:
    assert verify_token("k1", junk) is None

"""What a backend-error warning says, and how often one is written (docs/semantics.md §8).

A Redis or engine error can echo a key or an identity; ``sanitise_error``
turns it into a log text without either. ``ErrorLog`` writes at most one such
warning per interval per plugin instance, counting the ones it held back.
No framework objects here: the plugin hands in its logger and name.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Callable

from rate_limiter_go.keys import escape_identity

__all__ = ["ERROR_LOG_INTERVAL_S", "ErrorLog", "sanitise_error"]

#: Seconds between two backend-error warnings of one plugin instance (§8).
ERROR_LOG_INTERVAL_S = 10.0

_MAX_ERROR_TEXT = 160


def _is_word_char(ch: str) -> bool:
    """True for a character that continues a word (what ``\\w`` matches): letters, digits, ``_``."""
    return ch.isalnum() or ch == "_"


def _identity_spans(text: str, form: str) -> list[tuple[int, int]]:
    """Where ``form`` occurs in ``text`` as a whole token, overlapping occurrences included.

    An occurrence is a token unless a word continues across one of its edges:
    a form that starts (ends) with a letter, digit or ``_`` must not have one
    right before (after) it. Edges that are punctuation or spaces need nothing,
    so identities like ``team:1 {a}`` or ``%7Bx%7D`` match wherever they stand.
    """
    spans = []
    word_start, word_end = _is_word_char(form[0]), _is_word_char(form[-1])
    start = text.find(form)
    while start != -1:
        end = start + len(form)
        if not (word_start and start > 0 and _is_word_char(text[start - 1])) and not (
            word_end and end < len(text) and _is_word_char(text[end])
        ):
            spans.append((start, end))
        start = text.find(form, start + 1)
    return spans


def _redact_identities(text: str, identities: tuple[str | None, ...]) -> str:
    """Replace every whole-token occurrence of each identity, raw and §6-escaped, with ``<id>``.

    All spans are found in the original text first and overlapping ones are
    merged, so one identity's redaction cannot cut another into a fragment
    that escapes its own match.
    """
    spans: list[tuple[int, int]] = []
    for identity in identities:
        if identity:
            for form in {identity, escape_identity(identity)}:
                spans.extend(_identity_spans(text, form))
    if not spans:
        return text
    spans.sort()
    parts, last = [], 0
    merged_start, merged_end = spans[0]
    for start, end in spans[1:]:
        if start <= merged_end:
            merged_end = max(merged_end, end)
            continue
        parts += [text[last:merged_start], "<id>"]
        last, (merged_start, merged_end) = merged_end, (start, end)
    parts += [text[last:merged_start], "<id>", text[merged_end:]]
    return "".join(parts)


def sanitise_error(exc: BaseException, key_prefix: str, identities: tuple[str | None, ...] = ()) -> str:
    """Describe an engine error for a log line without any identity in it.

    Redis and engine messages can echo a key (which contains the user, tenant
    or tool), so every ``<prefix>:...`` token is replaced, every identity of
    the request (raw and §6-escaped) is redacted where it stands as a whole
    token (a tool named ``t`` leaves ``TimeoutError`` alone), and the text is
    truncated. The exception class names (with the ``__cause__`` chain) always
    remain.
    """
    names = [type(exc).__name__]
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(names) < 4:
        names.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break the error path
        text = ""
    # A key starts where no prefix character ([A-Za-z0-9_.-], §6) precedes it: "url:" is not key "rl:".
    text = re.sub(r"(?<![\w.-])" + re.escape(key_prefix) + r":\S*", "<key>", text)
    text = _redact_identities(text, identities)
    text = " ".join(text.split())  # no embedded newlines in a log line
    if len(text) > _MAX_ERROR_TEXT:
        text = text[: _MAX_ERROR_TEXT - 3] + "..."
    return f"{' <- '.join(names)}: {text}" if text else " <- ".join(names)


class ErrorLog:
    """Backend-error warnings of one plugin instance, rate limited (§8).

    At most one WARNING per ``interval_s`` seconds on ``logger`` (the plugin's);
    errors in between are counted and the count goes out with the next warning.
    ``clock`` returns monotonic seconds and may be replaced (tests).
    """

    __slots__ = ("_plugin_name", "_interval_s", "_logger", "clock", "_next_at", "_suppressed")

    def __init__(
        self,
        plugin_name: str,
        interval_s: float,
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._plugin_name = plugin_name
        self._logger = logger
        self._interval_s = interval_s
        self.clock = clock  # replaceable in tests
        self._next_at = float("-inf")
        self._suppressed = 0

    def report(self, describe: Callable[[], str], fail_mode: str) -> None:
        """Count one error; write a WARNING (text from ``describe()``, called only then) if the interval allows."""
        now = self.clock()
        if now < self._next_at:
            self._suppressed += 1
            return
        suppressed, self._suppressed = self._suppressed, 0
        self._next_at = now + self._interval_s
        self._logger.warning(
            "rate limiter %s: engine error, fail_mode=%s applied: %s (%d more errors suppressed since the last warning)",
            self._plugin_name,
            fail_mode,
            describe(),
            suppressed,
        )

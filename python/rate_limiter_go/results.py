"""cpex result objects built from our own trusted values without validating them again.

Part of the plugin layer (it speaks cpex); the plugin and the benchmark's floor
(bench/rlbench/floor.py) build every result here. pydantic validates each field
on construction, which costs more than the rest of a memory-backend hook
(bench/results/issue13-hook/), and ``model_construct`` is no way out: pydantic
2.14's calls ``inspect.signature`` on every default factory per call (over a
millisecond). The values the plugin passes are its own (``str`` headers,
``int`` numbers, fixed strings, a violation built here), so validating them
again proves nothing.

The fast builders fill an instance the way validated construction leaves it:
every field in declaration order (a fresh ``{}``/``[]`` where the model has a
``default_factory``), the set of fields given, no extras, and fresh private
attributes. That mirrors cpex 0.1.3 and 0.1.4 with pydantic 2: so each builder is checked
once, at import, against validated construction of sample values (same type,
``__dict__``, fields set, extras, private attributes, ``model_dump()``), and
the validated form is used instead when anything differs (another cpex
version). ``FAST`` says which one is in use; tests_py/test_results.py checks
both against each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cpex.framework import PluginViolation, PromptPrehookResult, ToolPreInvokeResult

__all__ = ["BUILDERS", "FAST", "ResultBuilders", "new_violation", "same_model"]

_new = object.__new__
_set = object.__setattr__

_VIOLATION_FIELDS = frozenset(("reason", "description", "code", "details", "http_status_code", "http_headers"))


def _violation_fast(
    reason: str, description: str, code: str, details: dict[str, Any], status: int, headers: dict[str, str]
) -> PluginViolation:
    m = _new(PluginViolation)
    _set(
        m,
        "__dict__",
        {
            "reason": reason,
            "description": description,
            "code": code,
            "details": details,
            "mcp_error_code": None,
            "http_status_code": status,
            "http_headers": headers,
        },
    )
    _set(m, "__pydantic_fields_set__", set(_VIOLATION_FIELDS))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", {"_plugin_name": ""})  # the manager sets plugin_name later
    return m


def _violation_validated(
    reason: str, description: str, code: str, details: dict[str, Any], status: int, headers: dict[str, str]
) -> PluginViolation:
    return PluginViolation(
        reason=reason,
        description=description,
        code=code,
        details=details,
        http_status_code=status,
        http_headers=headers,
    )


# The result fields whose default is a factory, with that factory (cpex 0.1.3 and 0.1.4).
_RESULT_FACTORIES = {"metadata": dict, "background_tasks": list, "executions": list}
# Every field the builders set per instance.
_RESULT_SET_FIELDS = {"continue_processing", "violation", "http_headers", *_RESULT_FACTORIES}


def _result_template(result_type: Any) -> dict[str, Any] | None:
    """Every field of ``result_type`` with its default, in declaration order (factory fields hold
    None, replaced per instance), or None when its defaults are not all known immutables and factories."""
    template: dict[str, Any] = {}
    for name, info in result_type.model_fields.items():
        if info.default_factory is not None:
            if _RESULT_FACTORIES.get(name) is not info.default_factory:
                return None
            template[name] = None
        elif info.is_required() or type(info.default) not in (type(None), bool, int, str):
            return None
        else:
            template[name] = info.default
    return template if _RESULT_SET_FIELDS <= set(template) else None


class ResultBuilders:
    """The three shapes of one hook's result: ``empty()``, ``admitted(headers)``, ``refused(violation)``."""

    __slots__ = ("empty", "admitted", "refused")

    def __init__(self, result_type: Any, fast: bool) -> None:
        self.empty: Callable[[], Any]
        self.admitted: Callable[[dict[str, str]], Any]
        self.refused: Callable[[PluginViolation], Any]
        template = _result_template(result_type) if fast else None
        if template is None:
            self.empty = result_type
            self.admitted = lambda headers: result_type(http_headers=headers)
            self.refused = lambda violation: result_type(continue_processing=False, violation=violation)
            return
        copy_template = template.copy

        def state(continue_processing: bool, violation: Any, headers: dict[str, str] | None) -> dict[str, Any]:
            d = copy_template()
            d["continue_processing"] = continue_processing
            d["violation"] = violation
            d["metadata"] = {}
            d["background_tasks"] = []
            d["http_headers"] = headers
            d["executions"] = []
            return d

        def empty() -> Any:
            m = _new(result_type)
            _set(m, "__dict__", state(True, None, None))
            _set(m, "__pydantic_fields_set__", set())
            _set(m, "__pydantic_extra__", None)
            _set(m, "__pydantic_private__", None)
            return m

        def admitted(headers: dict[str, str]) -> Any:
            m = _new(result_type)
            _set(m, "__dict__", state(True, None, headers))
            _set(m, "__pydantic_fields_set__", {"http_headers"})
            _set(m, "__pydantic_extra__", None)
            _set(m, "__pydantic_private__", None)
            return m

        def refused(violation: PluginViolation) -> Any:
            m = _new(result_type)
            _set(m, "__dict__", state(False, violation, None))
            _set(m, "__pydantic_fields_set__", {"continue_processing", "violation"})
            _set(m, "__pydantic_extra__", None)
            _set(m, "__pydantic_private__", None)
            return m

        self.empty, self.admitted, self.refused = empty, admitted, refused


def same_model(a: Any, b: Any) -> bool:
    """True when two pydantic instances are indistinguishable: type, fields (and their order), fields set,
    extras, private attributes, dump."""
    return (
        type(a) is type(b)
        and a.__dict__ == b.__dict__
        and list(a.__dict__) == list(b.__dict__)
        and a.__pydantic_fields_set__ == b.__pydantic_fields_set__
        and a.__pydantic_extra__ == b.__pydantic_extra__
        and a.__pydantic_private__ == b.__pydantic_private__
        and a.model_dump() == b.model_dump()
        and a == b
    )


_SAMPLE_HEADERS = {"X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1", "Retry-After": "1"}
_SAMPLE_DETAILS = {
    "dimension": "user",
    "limit": 1,
    "window_s": 1,
    "remaining": 0,
    "reset_at_unix": 1,
    "retry_after_s": 1,
}
_SAMPLE = ("Rate limit exceeded", "text", "RATE_LIMIT", _SAMPLE_DETAILS, 429, _SAMPLE_HEADERS)


def _fast_is_exact() -> bool:
    """Whether every fast builder gives what validated construction gives, for this cpex and pydantic."""
    try:
        fast_v, slow_v = _violation_fast(*_SAMPLE), _violation_validated(*_SAMPLE)
        if not same_model(fast_v, slow_v):
            return False
        for t in (ToolPreInvokeResult, PromptPrehookResult):
            fast, slow = ResultBuilders(t, True), ResultBuilders(t, False)
            if not (
                same_model(fast.empty(), slow.empty())
                and same_model(fast.admitted(dict(_SAMPLE_HEADERS)), slow.admitted(dict(_SAMPLE_HEADERS)))
                and same_model(fast.refused(fast_v), slow.refused(slow_v))
            ):
                return False
    except Exception:  # a model shape the fast form cannot mirror: the validated form is always right
        return False
    return True


#: True when results are built without validation (the check above passed).
FAST = _fast_is_exact()

#: ``new_violation(reason, description, code, details, http_status_code, http_headers)``
new_violation: Callable[[str, str, str, dict[str, Any], int, dict[str, str]], PluginViolation] = (
    _violation_fast if FAST else _violation_validated
)

#: Builders by result type, shared by the plugin and the benchmark's floor.
BUILDERS = {t: ResultBuilders(t, FAST) for t in (ToolPreInvokeResult, PromptPrehookResult)}

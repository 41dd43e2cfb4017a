"""Who is asking, and for which tool: identity extraction (docs/semantics.md §5).

Runs on every request, so each function is a handful of type checks and one
``strip()``; no framework objects are imported here. The plugin passes in
``global_context.user``, ``global_context.tenant_id``,
``global_context.server_id`` (tool calls only) and the payload's tool name
(or prompt id).
"""

from __future__ import annotations

from collections.abc import Mapping

#: The shared identity of every caller without a usable user (§5).
ANONYMOUS = "anonymous"

# Looked up in this order in a user dict; the first not None and non-empty wins.
_USER_FIELDS = ("email", "id", "sub")


def user_identity(user: object) -> str:
    """The user of a request: never empty, ``"anonymous"`` when unknown.

    A string is used as is; a dict gives the first of email, id, sub that is
    not None and not empty once converted with ``str()`` and stripped; any
    other value gives ``str(value)``. The result is stripped, and an empty
    result becomes ``"anonymous"``.
    """
    if type(user) is str:  # the common case: the gateway passes an email
        text = user.strip()
        return text if text else ANONYMOUS
    if user is None:
        return ANONYMOUS
    if isinstance(user, Mapping):
        # An empty email must not lump a user with a usable id into "anonymous".
        for field in _USER_FIELDS:
            value = user.get(field)
            if value is not None:
                text = (value if isinstance(value, str) else str(value)).strip()
                if text:
                    return text
        return ANONYMOUS
    text = str(user).strip()
    return text if text else ANONYMOUS


def tenant_identity(tenant_id: object) -> str | None:
    """The tenant of a request, stripped, or None when the tenant dimension does not apply.

    None, an empty string and whitespace all mean "no tenant": such requests
    skip the tenant limit instead of sharing one anonymous tenant (§5).
    """
    if tenant_id is None:
        return None
    text = (tenant_id if isinstance(tenant_id, str) else str(tenant_id)).strip()
    return text if text else None


def server_identity(server_id: object) -> str | None:
    """The virtual server of a tool call, stripped, or None when by_user_per_server does not apply.

    Same rule as the tenant (§5): None, an empty string and whitespace mean
    "no server", and such calls skip the per-user-per-server limit.
    """
    return tenant_identity(server_id)


def tool_key(name: object) -> str:
    """A tool name (or prompt id) normalised as ``by_tool`` keys are: stripped, lower-cased."""
    if name is None:
        return ""
    return (name if isinstance(name, str) else str(name)).strip().lower()

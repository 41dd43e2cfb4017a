"""The pure-Python engine: fallback for the Go engine and the reference it is checked against.

Modules: ``algorithms`` (§3 over memory state), ``selection`` (§4, §7),
``memory`` (the shared store, §10), ``redis_backend`` (§8, §9), ``engine``
(PythonEngine, the Engine protocol implementation).
"""

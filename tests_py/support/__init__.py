"""Support code shared by the tests, the benchmarks, the chaos runs and the rig.

* ``redis_server``: a private redis-server on a free loopback port (plain,
  TLS, ACL, unix socket), started and stopped reliably. Standard library only.
* ``tls_certs``: throw-away TLS material made with the openssl CLI.
  Standard library only.
* ``plugin_helpers``, ``go_helpers``: real plugins and cpex calls, the Go
  engine class for tests (these need cpex, pytest and the package).
* ``gunicorn_app``: a WSGI app serving the plugin, for the gunicorn
  ``--preload`` fork tests (``support.gunicorn_app:app``; needs cpex).

Import path: pytest puts ``tests_py/`` on ``sys.path`` (rootdir conftest),
so tests write ``from support.redis_server import RedisServer``. Code run from
the repository root (bench/, tools/, rig/) does the same after
``sys.path.insert(0, str(REPO_ROOT / "tests_py"))``. The modules import each
other relatively, so ``tests_py.support.redis_server`` (repository root on
``sys.path``) works as well.
"""

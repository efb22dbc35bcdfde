"""Helpers for tests and benchmarks (of modelrouter, or of code built on it); not part of the
routing API. Each peer is started on a free loopback port in a temporary directory, without
persistence, and stopped (its directory removed) when its block ends:

- :mod:`modelrouter.testing.redis_server`: a throwaway ``redis-server`` (``RedisServer``) or a
  3-node Redis Cluster (``Cluster``); ``with running(RedisServer) as server: server.url``.
- :mod:`modelrouter.testing.postgres`: a throwaway PostgreSQL cluster
  (``with cluster() as admin_url``) and fresh databases on it (``with database(admin_url)``).
- :mod:`modelrouter.testing.reference`: an independent numpy implementation of the cost matrix.
- :mod:`modelrouter.testing.fake_upstream`: OpenAI-compatible fake deployments in a process of
  their own (latency, 500, 429 + Retry-After, hangs, streams), recording every arrival.
- :mod:`modelrouter.testing.asgi_server`: an ASGI app served by uvicorn in a thread
  (``with serving(app) as base_url``).

The peers need the Debian server packages (redis-server, postgresql); without them starting
one raises (``postgres.Unavailable`` says why) and the tests skip.
"""

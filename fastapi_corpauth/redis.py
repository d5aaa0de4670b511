"""Redis support for several workers: ``pip install fastapi-corpauth[redis]``.

Setting ``CORPAUTH_REDIS_URL`` (with ``CORPAUTH_REDIS_MODE=cluster`` for a Redis
Cluster), or ``CORPAUTH_REDIS_MODE=sentinel`` with ``CORPAUTH_REDIS_SENTINELS`` and
``CORPAUTH_REDIS_SERVICE``, is all ``CorpAuth`` needs; these classes are for wiring the
parts by hand (``RedisSessionStore`` as ``CorpAuth(session_store=...)``,
``RedisTokenCache`` as ``TokenService(shared=...)``). Both take a client from
``redis_client`` (one server), ``redis_cluster_client`` (a cluster, through any node) or
redis-py's ``Sentinel(...).master_for(...)``.
"""

from ._redis import (
    OutageGuard,
    RedisSessionStore,
    RedisTokenCache,
    redis_client,
    redis_cluster_client,
)
from ._shared_cache import SharedTokenCache

__all__ = [
    "OutageGuard",
    "RedisSessionStore",
    "RedisTokenCache",
    "SharedTokenCache",
    "redis_client",
    "redis_cluster_client",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("fastapi_corpauth._"):
        _obj.__module__ = "fastapi_corpauth.redis"
del _name, _obj

"""Redis support for several workers: ``pip install fastapi-corpauth[redis]``.

Setting ``CORPAUTH_REDIS_URL`` is all ``CorpAuth`` needs; these classes are for wiring
the parts by hand (``RedisSessionStore`` as ``CorpAuth(session_store=...)``,
``RedisTokenCache`` as ``TokenService(shared=...)``).
"""

from ._redis import OutageGuard, RedisSessionStore, RedisTokenCache, redis_client
from ._shared_cache import SharedTokenCache

__all__ = [
    "OutageGuard",
    "RedisSessionStore",
    "RedisTokenCache",
    "SharedTokenCache",
    "redis_client",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("fastapi_corpauth._"):
        _obj.__module__ = "fastapi_corpauth.redis"
del _name, _obj

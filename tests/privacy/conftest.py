from tests.features.conftest import redis_online, redis_server  # noqa: F401

"""The real-Redis helpers (tests/redis_servers.py) do what the outage and failover tests rely
on: a server answers, refuses while stopped and answers again on the same URL; a Sentinel
topology names a new primary after the old one is killed, and that primary takes writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.redis_servers import RedisServer, SentinelTopology, redis_running


def test_a_server_restarts_on_the_same_url(redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.ping()
        client.set("k", "v")
    redis_server.stop()
    with redis.Redis.from_url(redis_server.url) as client, pytest.raises(redis.ConnectionError):
        client.ping()
    redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.ping()
        assert client.get("k") is None  # no persistence: a restart starts empty


def test_a_password_is_required_when_set(tmp_path: Path) -> None:
    with redis_running(tmp_path / "r", password="pw-0123456789") as server:
        assert ":pw-0123456789@" in server.url
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
        with (
            redis.Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0)) as client,
            pytest.raises(redis.AuthenticationError),
        ):
            client.ping()


def _named_primary(sentinel: str, service: str) -> tuple[str, int]:
    host, port = sentinel.split(":")
    with redis.Redis(host=host, port=int(port), decode_responses=True) as client:
        named = client.execute_command("SENTINEL", "get-master-addr-by-name", service)
    return named[0], int(named[1])


def test_sentinels_fail_over_to_the_replica(redis_sentinel: SentinelTopology) -> None:
    service = redis_sentinel.service
    for sentinel in redis_sentinel.sentinels:
        assert _named_primary(sentinel, service) == ("127.0.0.1", redis_sentinel.primary.port)
    promoted = redis_sentinel.fail_over()
    for sentinel in redis_sentinel.sentinels:
        assert _named_primary(sentinel, service) == ("127.0.0.1", promoted.port)
    with redis.Redis(host="127.0.0.1", port=promoted.port) as client:
        assert client.set("after", "failover")  # a primary: writes are accepted

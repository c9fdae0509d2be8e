"""The state store's round trip of many commands, against real Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from drippulse.settings import Settings
from streams.state import redis_batch

pytestmark = pytest.mark.stack


def test_replies_come_back_raw_and_in_command_order(stack: Any, settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    key = f"test:{uuid.uuid4().hex}"
    commands: list[redis_batch.Command] = [
        ("HSET", key, "a", 1, "b", b"two"),
        ("HGETALL", key),
        ("HMGET", key, "b", "missing", "a"),
        ("EXPIRE", key, 60),
    ]
    replies = redis_batch.execute(client, commands)
    hash_items = replies[1] if isinstance(replies[1], list) else [x for pair in replies[1].items() for x in pair]
    assert replies[0] == 2
    assert dict(zip(hash_items[::2], hash_items[1::2], strict=True)) == {b"a": b"1", b"b": b"two"}
    assert replies[2:] == [[b"two", None, b"1"], 1]


def test_an_error_reply_raises_and_the_connection_stays_in_step(stack: Any, settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    key = f"test:{uuid.uuid4().hex}"
    with pytest.raises(redis.ResponseError):
        redis_batch.execute(client, [("SET", key, "text"), ("HSET", key, "f", "v"), ("SET", f"{key}:after", "x")])
    assert client.get(f"{key}:after") == b"x", "commands after the failing one still ran"
    assert redis_batch.execute(client, [("GET", key), ("GET", f"{key}:after")]) == [b"text", b"x"]

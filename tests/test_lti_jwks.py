"""The platform's signing keys, fetched without blocking (against the local LTI platform)."""

from __future__ import annotations

import pytest
from ltiauthenticator.lti13.error import ValidationError

from classroom_spawner.local.lti import LTIPlatform, new_key
from classroom_spawner.lti import JWKSCache


@pytest.fixture
async def lms():
    async with LTIPlatform(tool_url="http://127.0.0.1:9/") as lms:
        yield lms


async def test_a_rotated_key_is_fetched_again(lms):
    cache = JWKSCache(f"{lms.url}/jwks", min_refetch=0)
    first = await cache.key(lms.kid)
    assert first.public_numbers() == lms.key.public_key().public_numbers()
    lms.key, lms.kid = new_key(), "platform-rotated"
    second = await cache.key("platform-rotated")
    assert second.public_numbers() == lms.key.public_key().public_numbers()


async def test_unknown_keys_do_not_refetch_more_than_once_per_interval(lms):
    cache = JWKSCache(f"{lms.url}/jwks", min_refetch=3600)
    await cache.key(lms.kid)
    with pytest.raises(
        ValidationError, match="the platform's key set has no key 'forged-kid'"
    ):
        await cache.key("forged-kid")


async def test_an_unreachable_key_set_is_a_clear_error():
    cache = JWKSCache("http://127.0.0.1:9/jwks", timeout=5)
    with pytest.raises(
        ValidationError,
        match="cannot fetch the platform's keys from http://127.0.0.1:9/jwks",
    ):
        await cache.key("any")

"""Requests-per-minute limits shared by every worker, through a Prefect global concurrency
limit used as a rate limit (slots that decay), not a home-made token bucket.

A block with ``rate_limit=N`` owns a limit named ``taskmark-llm-<slug>`` with ``N`` slots
and a decay of ``N/60`` slots per second: up to ``N`` calls at once, then ``N`` a minute.
The limit is created (or updated, if ``N`` changed) on first use in each process, so it
needs no set-up step; an operator can also create or tune it in the Prefect UI.
"""

from __future__ import annotations

import asyncio
import re

__all__ = ["acquire_rate_limit", "limit_name"]

_ENSURED: dict[str, int] = {}
_PENDING: dict[tuple[int, str, int], asyncio.Future[None]] = {}


def limit_name(key: str) -> str:
    """The global concurrency limit's name for a block (or model) ``key``."""
    slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") or "default"
    return f"taskmark-llm-{slug}"[:100]


async def acquire_rate_limit(key: str, per_minute: int, *, timeout_s: float | None) -> None:
    """Wait until one call under ``key``'s limit of ``per_minute`` may start.

    Args:
        key: The block name, or the model when the block was not saved.
        per_minute: Requests per minute allowed across every process.
        timeout_s: Give up waiting after this long (None: wait as long as it takes).

    Raises:
        TimeoutError: No slot within ``timeout_s``.
    """
    from prefect.concurrency.asyncio import rate_limit

    name = limit_name(key)
    await _ensure_limit(name, per_minute)
    # strict: a limit that vanished (deleted in the UI) must not silently stop limiting.
    await rate_limit(name, occupy=1, timeout_seconds=timeout_s, strict=True)


async def _ensure_limit(name: str, per_minute: int) -> None:
    if _ENSURED.get(name) == per_minute:
        return
    # Concurrent first calls share one upsert instead of racing to create the limit.
    key = (id(asyncio.get_running_loop()), name, per_minute)
    pending = _PENDING.get(key)
    if pending is None:
        pending = asyncio.ensure_future(_upsert(name, per_minute))
        _PENDING[key] = pending
    try:
        await asyncio.shield(pending)
    finally:
        if pending.done():
            _PENDING.pop(key, None)


async def _upsert(name: str, per_minute: int) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectAlreadyExists

    async with get_client() as client:
        try:
            await client.upsert_global_concurrency_limit_by_name(
                name, limit=per_minute, slot_decay_per_second=per_minute / 60.0
            )
        except ObjectAlreadyExists:
            # Another worker created it between our read and our create: same outcome.
            pass
    _ENSURED[name] = per_minute

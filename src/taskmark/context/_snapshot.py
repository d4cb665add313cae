"""How a stored bundle is named: the artifact key and the tag of the calls that used it."""

from __future__ import annotations

__all__ = ["SNAPSHOT_TAG", "snapshot_key", "snapshot_tag"]

SNAPSHOT_TAG = "taskmark-context:"
"""Prefix of the tag that names a call's context bundle by its hash."""

_HASH_CHARS = 24


def snapshot_key(bundle_hash: str) -> str:
    """The artifact key of the bundle with ``bundle_hash`` (also accepts the tag's short form).

    Example:
        >>> snapshot_key("0123456789abcdef0123456789abcdef")
        'context-0123456789abcdef01234567'
    """
    return f"context-{bundle_hash[:_HASH_CHARS]}"


def snapshot_tag(bundle_hash: str) -> str:
    """The tag a call that used the bundle with ``bundle_hash`` carries."""
    return SNAPSHOT_TAG + bundle_hash[:_HASH_CHARS]

"""Identifiers: time-ordered, URL-safe, with a prefix naming the kind of thing."""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["new_id", "stable_id"]

_NAMESPACE = uuid.UUID("6f1f3c1e-5e0b-4c55-9a43-6d1a4c2f7b10")


def new_id(prefix: str) -> str:
    """A new UUIDv7-like identifier (sortable by creation time) such as ``hcp_0193…``."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | (0x7 << 76) | (rand & ((1 << 76) - 1))
    value = (value & ~(0xC << 60)) | (0x8 << 60)
    return f"{prefix}_{uuid.UUID(int=value).hex}"


def stable_id(prefix: str, *parts: str) -> str:
    """A deterministic identifier derived from ``parts`` (same parts, same id)."""
    return f"{prefix}_{uuid.uuid5(_NAMESPACE, chr(31).join(parts)).hex}"

"""Bounds on what one parse may cost: hostile mail is cut, recorded as a defect."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "ParseLimits"]


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_header_bytes: int = 256 * 1024
    max_addresses_per_header: int = 1000
    max_body_chars: int = 2_000_000
    max_parts: int = 500
    max_depth: int = 50


DEFAULT_LIMITS = ParseLimits()

"""Checks of backend options (`--model-args k=v,...`) shared by every backend; errors name the option and the fix."""
from __future__ import annotations

from typing import Any, Sequence

from evalkit.errors import UserError


def reject_unknown_options(options: dict[str, Any], known: Sequence[str], backend: str) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UserError(
            f"unknown {backend} backend option(s) {', '.join(unknown)}; known options: {', '.join(known)}"
        )


def positive_int_option(value: Any, backend: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{backend} option {name}={value!r} must be a positive integer")
    return value


def flag_option(value: Any, backend: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{backend} option {name}={value!r} must be true or false")
    return value

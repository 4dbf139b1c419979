"""argparse types shared by the commands, refusing a value with the words of the library's own checks.

A value that parses is checked by :func:`inspyrenet_lite.checks.check_options`
or :mod:`inspyrenet_lite.options`, so ``--threshold 1.5`` is refused as
``threshold=1.5`` is in Python and over HTTP.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from inspyrenet_lite.registry import decode_base_size


def checked(name: str, convert: Callable[[str], object] = float, what: str = "a number") -> Callable[[str], object]:
    """An argparse type: ``convert(text)`` then the library's check of option ``name``."""

    def parse(text: str) -> object:
        from inspyrenet_lite.checks import check_options

        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {what}, got {text!r}") from None
        try:
            return check_options(**{name: value})[name]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name  # argparse names the type in its own messages
    return parse


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``, described as ``what`` in errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


threshold = checked("threshold")
hr_blend = checked("hr_blend")
positive_int = int_at_least(1, "a positive integer")
pixel_limit = int_at_least(0, "a pixel count (0 for no limit)")


def quality(text: str) -> int:
    """``--quality``: an integer in 1..100 (the range of :class:`~inspyrenet_lite.options.OutputOptions`)."""
    from inspyrenet_lite.options import QUALITY_RANGE

    low, high = QUALITY_RANGE
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"quality must be an integer in {low}..{high}, got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"quality must be an integer in {low}..{high}, got {value!r}")
    return value


def output_format(text: str) -> str:
    """``--format``: a name of :data:`inspyrenet_lite.options.FORMATS` (lower-cased)."""
    from inspyrenet_lite.options import output_format as lookup

    try:
        lookup(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip().lower()


def base_size(text: str) -> tuple[int, int]:
    """``--base-size HxW``."""
    try:
        return decode_base_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

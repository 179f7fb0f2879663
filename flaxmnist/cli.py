"""Argument types and the parser class the command lines share (flags, one-line errors)."""

from __future__ import annotations

import argparse
import math


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but bad arguments give a single line (no usage dump) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of seeds, samples, devices)."""
    return _int_at_least(text, 1, "a positive integer")


def natural(text: str) -> int:
    """An integer >= 0 (a first seed, a process id)."""
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, low: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


_SI = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def flops(text: str) -> float:
    """A positive number of FLOPs: ``2.2e13``, or with an SI suffix, ``22T``."""
    number, scale = (text[:-1], _SI[text[-1]]) if text[-1:] in _SI else (text, 1.0)
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of FLOPs such as 2.2e13 or 22T, got {text!r}"
        ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of FLOPs, got {text!r}")
    return value


def parse_bytes(text: str) -> int:
    """``'12G'``, ``'12GiB'``, ``'500M'``, ``'1e9'`` → bytes (K, M, G, T are powers of 1024).

    Raises:
      ValueError: not a positive size.

    Example::

        >>> parse_bytes("12G"), parse_bytes("500MiB")
        (12884901888, 524288000)
    """
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    body = text.strip().upper().removesuffix("IB").removesuffix("B")
    suffix = body[-1:] if body[-1:] in units else ""
    try:
        value = float(body[: len(body) - len(suffix)]) * units[suffix]
    except ValueError:
        raise ValueError(f"expected a size such as 12G, 500M or 8GiB, got {text!r}") from None
    if not (math.isfinite(value) and value >= 1):
        raise ValueError(f"expected a positive, finite size, got {text!r}")
    return int(value)


def size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None

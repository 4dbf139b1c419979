"""The ``--model`` / ``--mode`` options that every command loading one model shares."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--model NAME`` (registry name, Hub repo or save_pretrained folder) and its alias ``--mode``."""
    from inspyrenet_lite.registry import MODELS

    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="a model name (see `inspyrenet-lite models`; default fast), a Hub repo owner/name, "
        "or a folder saved with save_pretrained",
    )
    parser.add_argument("--mode", choices=tuple(MODELS), default=None, help="a model name (alias of --model)")


def load_problem(exc: BaseException) -> str:
    """Why a model did not load, in the command line's words: missing weights name ``--ckpt PATH``
    (:attr:`~inspyrenet_lite.weights.WeightsUnavailableError.cli_message`), not the Python API's ``ckpt=``."""
    return getattr(exc, "cli_message", None) or str(exc)

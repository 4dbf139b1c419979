"""The ``inspyrenet-lite`` command and its sub-commands.

``inspyrenet-lite INPUT... [options]`` removes backgrounds (the default
command, :mod:`inspyrenet_lite.cli.remove`). Other work has a sub-command of
its own, each in a module of this package with a ``main(argv) -> int``:
``inspyrenet-lite models``, ``eval``, ``train``, ``export``, ``serve``, ``ray``
(:data:`SUBCOMMANDS`; ``inspyrenet-lite --help`` lists them with
:data:`SUMMARIES`). A file or folder that happens to carry a sub-command's
name is given as ``./NAME``.

Nothing heavy is imported here, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

from inspyrenet_lite._interrupts import exit_quietly_on_interrupt

_PROGRAM = "inspyrenet-lite"
__all__ = ["main", "build_parser", "collect_jobs", "SUBCOMMANDS", "SUMMARIES", "help_text"]

#: Sub-command name -> module (in this package) whose ``main(argv)`` runs it.
SUBCOMMANDS: dict[str, str] = {
    "eval": "eval",
    "models": "models",
    "train": "train",
    "export": "export",
    "serve": "serve",
    "ray": "ray",
}

#: Sub-command name -> its one line in ``inspyrenet-lite --help``.
SUMMARIES: dict[str, str] = {
    "models": "list the named models (name, backbone, base size, training data, cached)",
    "eval": "score saliency maps or models against masks (S, F, E, wF, MAE, mBA)",
    "train": "fine-tune a model on your own images and masks",
    "export": "export a model as a verified ONNX graph (float32 or int8)",
    "serve": "serve background removal over HTTP (native API and remove.bg's)",
    "ray": "remove backgrounds with Ray Data, locally or on a cluster, from folders or buckets",
}

_HELP_FLAGS = ("-h", "--help")


def help_text() -> str:
    """The default command's help with every sub-command listed, one line each."""
    from inspyrenet_lite.cli import remove

    parser = remove.build_parser()
    width = max(len("INPUT..."), *map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {SUMMARIES.get(name, '')}".rstrip() for name in SUBCOMMANDS]
    parser.description = (
        f"{parser.description}\n\n"
        "commands (inspyrenet-lite COMMAND --help for each one's options):\n"
        f"  {'INPUT...':<{width}}  remove backgrounds (the default command: its options follow)\n"
        + "\n".join(lines)
    )
    parser.usage = "inspyrenet-lite INPUT... [options]\n       inspyrenet-lite COMMAND [options]"
    return parser.format_help()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Ctrl-C at any point (the imports of torch & co. included) gives status 130 and one line, not a
    traceback; run as the program (``argv`` None), also after the work, while Python shuts down.
    """
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt as exc:
        print(f"{_PROGRAM}: interrupted", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", signal.SIGINT))
    finally:
        if argv is None:
            exit_quietly_on_interrupt(_PROGRAM)


def _dispatch(args: list[str]) -> int:
    if args and args[0] in SUBCOMMANDS:
        module = importlib.import_module(f"inspyrenet_lite.cli.{SUBCOMMANDS[args[0]]}")
        return module.main(args[1:])
    if any(arg in _HELP_FLAGS for arg in args[: args.index("--") if "--" in args else len(args)]):
        sys.stdout.write(help_text())
        return 0
    from inspyrenet_lite.cli import remove

    return remove.main(args)


def __getattr__(name: str) -> Any:
    # The default command's parser and planner, without this package importing its own modules at import.
    if name in ("build_parser", "collect_jobs"):
        from inspyrenet_lite.cli import remove

        return getattr(remove, name)
    raise AttributeError(f"module 'inspyrenet_lite.cli' has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

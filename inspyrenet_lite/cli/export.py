"""``inspyrenet-lite export --format onnx``: the network as an ONNX graph for deployment.

The graph takes ``image``, float32 (batch, 3, H, W): RGB scaled to [0, 1] and
normalised with the ImageNet mean and std; it returns ``map``, float32
(batch, 1, H, W) in [0, 1], min-max normalised per image. H and W are fixed
at export (default: the model's base size); the batch is dynamic. The graph is
run by ONNX Runtime and checked against PyTorch on probe images before the
file is written; a graph that disagrees is refused and nothing is written.
With ``--precision int8`` the linear layers of that graph are then quantised
to int8 (what ``Remover(precision="int8")`` runs; input and output unchanged).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from inspyrenet_lite.cli.model_args import add_model_arguments, load_problem


def _multiple_of_32(text: str) -> int:
    from inspyrenet_lite.constants import STRIDE

    value = int(text)
    if value < STRIDE or value % STRIDE:
        raise argparse.ArgumentTypeError(f"{value} is not a positive multiple of {STRIDE}")
    return value


#: onnx_export.EXPORTERS, spelled out so that ``export --help`` does not import torch.
EXPORTERS = ("auto", "torchscript", "dynamo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspyrenet-lite export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="graph format (onnx)")
    add_model_arguments(parser)
    parser.add_argument("--ckpt", default=None, metavar="PATH", help="local checkpoint instead of the download")
    parser.add_argument(
        "--base-size", type=_multiple_of_32, nargs=2, metavar=("H", "W"), default=None,
        help="base size of a --ckpt that does not say it",
    )
    parser.add_argument(
        "--size", type=_multiple_of_32, nargs=2, metavar=("H", "W"), default=None,
        help="the graph's input size (default: the model's base size)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="file to write (default inspyrenet-MODEL-HxW.onnx)"
    )
    parser.add_argument(
        "--precision", choices=("fp32", "int8"), default="fp32",
        help="fp32, or int8: the linear layers quantised (ONNX Runtime's dynamic int8; see README, int8)",
    )
    parser.add_argument("--atol", type=float, default=None, help="largest map difference the check accepts")
    parser.add_argument("--no-verify", action="store_true", help="skip the check against PyTorch")
    parser.add_argument(
        "--exporter", choices=EXPORTERS, default="auto", help="torch.onnx exporter (default auto: torchscript if present)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from inspyrenet_lite.backends import onnxruntime_missing

    missing = onnxruntime_missing()
    if missing is not None:
        print(f"inspyrenet-lite export: {missing}", file=sys.stderr)
        return 2
    if args.atol is not None and not args.atol > 0:
        print(f"inspyrenet-lite export: --atol must be a positive number, got {args.atol}", file=sys.stderr)
        return 2
    if args.output is not None and args.output.is_dir():
        print(f"inspyrenet-lite export: -o {str(args.output)!r} is a folder; give a file name ending in .onnx", file=sys.stderr)
        return 2
    from inspyrenet_lite import model_source
    from inspyrenet_lite.backends.onnx_export import DEFAULT_ATOL, OnnxVerificationError, export_onnx

    try:
        name = model_source.pick_name(args.model, args.mode)
        model = model_source.load(name, ckpt=args.ckpt, base_size=args.base_size, device="cpu").model
    except (RuntimeError, ValueError, OSError, KeyError) as exc:
        print(f"inspyrenet-lite export: cannot load the model: {load_problem(exc)}", file=sys.stderr)
        return 2
    size = tuple(args.size) if args.size else tuple(model.base_size)
    # A folder ('.' included) by its own name, a Hub id 'owner/name' by its name: never a path into a folder.
    label = Path(name).resolve().name if Path(name).exists() else name.rsplit("/", 1)[-1]
    output = args.output or Path(f"inspyrenet-{label}-{size[0]}x{size[1]}.onnx")
    try:
        if args.precision == "int8":
            _export_int8(model, output, size, args)
        else:
            export_onnx(
                model, output, size, verify=not args.no_verify, atol=args.atol or DEFAULT_ATOL, exporter=args.exporter
            )
    except OnnxVerificationError as exc:
        print(f"inspyrenet-lite export: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"inspyrenet-lite export: cannot write {str(output)!r}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("inspyrenet-lite export: interrupted; nothing written", file=sys.stderr)
        return 130
    except Exception as exc:  # the exporter's own errors: say so without a traceback (-v shows it)
        logging.getLogger(__name__).debug("export failed", exc_info=True)
        print(f"inspyrenet-lite export: the export failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    checked = "not verified" if args.no_verify else "verified against PyTorch"
    if args.precision == "int8":
        checked = "linear layers in int8, checked against PyTorch's float32 maps"
    print(f"wrote {output} (input 'image' float32 [batch, 3, {size[0]}, {size[1]}], output 'map'; {checked})")
    return 0


def _export_int8(model, output: Path, size: tuple[int, int], args: argparse.Namespace) -> None:
    """The float32 graph into a private temporary folder beside ``output``, then its int8 version to ``output``."""
    import tempfile

    from inspyrenet_lite.backends.onnx_export import DEFAULT_ATOL, export_onnx
    from inspyrenet_lite.backends.onnx_quantize import quantize_int8

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".inspyrenet-export-", dir=output.parent) as folder:
        fp32 = export_onnx(
            model, Path(folder) / "fp32.onnx", size, verify=not args.no_verify, atol=args.atol or DEFAULT_ATOL,
            exporter=args.exporter,
        )
        quantize_int8(fp32, output, model, size)

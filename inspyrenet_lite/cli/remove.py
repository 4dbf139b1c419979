"""``inspyrenet-lite INPUT...``: remove backgrounds from files and folders.

Inputs are files, folders (searched recursively for images) and glob
patterns. Each result goes to ``-o DIR`` (default: the current folder) as
``<name>.<format>``, keeping the sub-folders of a folder input. Work is never
lost:

* an input is never written over: an output name that would hit an input
  (or another output) becomes ``<name>_<input suffix>.<format>``;
* every output is written to a temporary name and renamed when complete, so
  an interrupted run leaves no half-written file;
* ``--skip-existing`` skips inputs whose output already exists (resume);
* a file that fails is reported and counted, the others are still processed,
  and the exit code is 1 if any failed (2 for bad arguments or no model).

torch is imported only once there is work to do, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inspyrenet_lite import __version__
from inspyrenet_lite.cli import video as video_cli
from inspyrenet_lite.registry import MODELS, decode_base_size

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

#: Suffixes picked up when searching a folder (explicit files may have any suffix).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif", ".ppm", ".pgm", ".pbm"}
)
FORMATS = {"png": "PNG", "webp": "WEBP", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "tiff": "TIFF"}
_NO_ALPHA_FORMATS = {"JPEG", "BMP"}  # Pillow writes no alpha into these
MODES = tuple(MODELS)


@dataclass
class Job:
    """One input file and where its result goes (``error`` if it cannot be done)."""

    source: Path
    output: Path | None = None
    error: str | None = None


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _int_at_least(minimum: int, what: str):
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


_positive_int = _int_at_least(1, "a positive integer")
_pixel_limit = _int_at_least(0, "a pixel count (0 for no limit)")


def _base_size(text: str) -> tuple[int, int]:
    try:
        return decode_base_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``inspyrenet-lite``."""
    parser = argparse.ArgumentParser(
        prog="inspyrenet-lite",
        description="Remove image backgrounds with InSPyReNet (Kim et al., ACCV 2022).",
        epilog=(
            "examples:\n"
            "  inspyrenet-lite photo.jpg -o out\n"
            "  inspyrenet-lite photos/ -o out --type white --format jpg\n"
            "  inspyrenet-lite 'shots/**/*.png' -o out --skip-existing --hr-blend 1\n"
            "\nexit status: 0 all done, 1 some inputs failed, 2 bad arguments or no model."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or glob patterns")
    parser.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: current folder)")
    parser.add_argument(
        "-t",
        "--type",
        default="rgba",
        help="rgba (default), map, green, white, blur, overlay, a colour ('#rrggbb' or 'r,g,b') "
        "or the path of a background image",
    )
    parser.add_argument("--threshold", type=_unit_float, default=None, help="hard mask: map values above it are kept")
    parser.add_argument("--reverse", action="store_true", help="keep the background instead of the object")
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="a model name (see `inspyrenet-lite models`; default fast), a Hub repo owner/name, "
        "or a folder saved with save_pretrained",
    )
    parser.add_argument("--mode", choices=MODES, default=None, help="a model name (alias of --model)")
    parser.add_argument(
        "--base-size", type=_base_size, default=None, metavar="HxW", help="base size of a --ckpt that does not say it"
    )
    parser.add_argument(
        "--hr-blend",
        type=_unit_float,
        default=None,
        metavar="BETA",
        help="pyramid blending with a high-resolution pass, strength in [0, 1] (default: the model's; 0 = off)",
    )
    parser.add_argument(
        "--resize",
        choices=("static", "dynamic"),
        default=None,
        help="network input size (default: the model's, static for fast and base)",
    )
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1, mps (default: best available)"
    )
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32", help="inference precision")
    parser.add_argument(
        "--ckpt", default=None, metavar="PATH", help="local checkpoint (.pth or .safetensors) instead of the download"
    )
    parser.add_argument("--format", choices=sorted(FORMATS), default="png", help="output format (default png)")
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1,
        metavar="N",
        help="images per network pass: faster on a GPU (default 1)",
    )
    parser.add_argument("--skip-existing", action="store_true", help="skip inputs whose output file already exists")
    parser.add_argument(
        "--max-pixels",
        type=_pixel_limit,
        default=None,
        metavar="N",
        help="refuse images with more pixels (default 100000000; 0: no limit, Pillow's own guard included)",
    )
    video_cli.add_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _walk(folder: Path, exclude: Path | None) -> list[tuple[Path, Path]]:
    """Image files under ``folder`` as (path, path relative to folder), sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (exclude is None or (root_path / d).resolve() != exclude)
        )
        for name in sorted(files):
            path = root_path / name
            if not name.startswith(".") and (path.suffix.lower() in IMAGE_SUFFIXES or video_cli.is_video(path)):
                found.append((path, path.relative_to(folder)))
    return found


def collect_jobs(inputs: Sequence[str], output_dir: Path, suffix: str | Callable[[Path], str]) -> list[Job]:
    """Expand inputs and plan an output path for each file, never an input's path.

    ``suffix`` is the output suffix, or a function of the input path giving it.
    """
    exclude = output_dir.resolve()
    found: list[tuple[Path, Path]] = []
    jobs_without_source: list[Job] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            # An output folder inside the input folder is not searched: its files are results.
            inner = exclude if exclude != path.resolve() else None
            found.extend(_walk(path, inner))
        elif path.is_file():
            found.append((path, Path(path.name)))
        elif _is_glob(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                jobs_without_source.append(Job(path, error="the pattern matches no file"))
            found.extend((m, Path(m.name)) for m in matches)
        else:
            jobs_without_source.append(Job(path, error="no such file or folder"))

    jobs: list[Job] = []
    seen: set[Path] = set()
    for path, rel in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            jobs.append(Job(path, output=output_dir / rel))

    taken = set(seen)  # every input is off limits
    fixed = suffix
    suffix_of = suffix if callable(suffix) else lambda _path: fixed
    for job in jobs:
        rel = job.output
        assert rel is not None
        out_suffix = suffix_of(job.source)
        plain = rel.with_name(rel.stem + out_suffix)
        candidates = [plain, rel.with_name(f"{rel.stem}_{rel.suffix.lstrip('.') or 'file'}{out_suffix}")]
        candidate = next((c for c in candidates if c.resolve() not in taken), None)
        counter = 2
        while candidate is None:
            trial = rel.with_name(f"{rel.stem}_{counter}{out_suffix}")
            if trial.resolve() not in taken:
                candidate = trial
            counter += 1
        taken.add(candidate.resolve())
        job.output = candidate
    return jobs_without_source + jobs


def _prepare_for_format(img: Image.Image, fmt: str) -> Image.Image:
    """Pillow cannot write every mode in every format: flatten what needs it."""
    if fmt in _NO_ALPHA_FORMATS and img.mode not in ("RGB", "L"):
        return img.convert("RGB")
    return img


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # huggingface_hub prints through a handler of its own: without this, each of
    # its warnings would be printed twice (once bare, once by the handler above).
    logging.getLogger("huggingface_hub").propagate = False
    fmt = FORMATS[args.format]

    from inspyrenet_lite.compositing import parse_output_type
    from inspyrenet_lite.image_io import DEFAULT_MAX_PIXELS, save_image

    # --max-pixels is the only pixel limit: 0 lifts it (image_io lifts Pillow's guard to match).
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else (args.max_pixels or None)
    spec = None  # a background video (--type clip.mp4) is read by the video pipeline
    if not (video_cli.is_video(args.type) and Path(args.type).is_file()):
        try:
            spec = parse_output_type(args.type, max_pixels=max_pixels)
        except ValueError as exc:
            parser.error(str(exc))
    video_cli.check_arguments(parser, args)
    if spec is not None and spec.has_alpha and fmt in _NO_ALPHA_FORMATS:
        parser.error(f"--format {args.format} cannot store transparency; use png or webp, or a --type such as white")

    output_dir = Path(args.output)
    if output_dir.exists() and not output_dir.is_dir():
        parser.error(f"-o {args.output!r} is a file, not a folder")
    if not output_dir.exists() and (output_dir.suffix.lower() in IMAGE_SUFFIXES or video_cli.is_video(output_dir)):
        parser.error(
            f"-o takes a folder, and {args.output!r} looks like a file name; "
            f"use -o {str(output_dir.parent / output_dir.stem)!r} (results are named after their inputs)"
        )
    jobs = collect_jobs(args.inputs, output_dir, video_cli.output_suffix(args, "." + args.format))
    if not any(job.error is None for job in jobs):
        for job in jobs:
            print(f"inspyrenet-lite: {job.source}: {job.error}", file=sys.stderr)
        print("inspyrenet-lite: no input images found", file=sys.stderr)
        return 2

    from tqdm.auto import tqdm

    from inspyrenet_lite.remover import Remover

    try:
        remover = Remover(
            model=args.model,
            mode=args.mode,
            base_size=args.base_size,
            device=args.device,
            ckpt=args.ckpt,
            resize=args.resize,
            precision=args.precision,
            max_pixels=max_pixels,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"inspyrenet-lite: cannot load the model: {exc}", file=sys.stderr)
        return 2

    video_jobs = [job for job in jobs if job.error is None and video_cli.is_video(job.source)]
    jobs = [job for job in jobs if job not in video_jobs]
    for job in jobs:
        if spec is None and job.error is None:
            job.error = "a background video (--type) applies to video inputs only"
    done = skipped = failed = 0
    if video_jobs:
        try:
            done, skipped, failed = video_cli.run_jobs(remover, video_jobs, args, spec)
        except KeyboardInterrupt:
            print("inspyrenet-lite: interrupted", file=sys.stderr)
            return 130
    options = {"type": spec, "threshold": args.threshold, "hr_blend": args.hr_blend, "reverse": args.reverse}

    def save(job: Job, result: Image.Image) -> None:
        assert job.output is not None
        job.output.parent.mkdir(parents=True, exist_ok=True)
        save_image(_prepare_for_format(result, fmt), job.output, format=fmt)

    def fail(job: Job, exc: BaseException | str) -> None:
        nonlocal failed
        failed += 1
        if isinstance(exc, BaseException):
            logger.debug("failure on %s", job.source, exc_info=exc)
        tqdm.write(f"failed: {job.source}: {exc}", file=sys.stderr)

    bar = tqdm(total=len(jobs), unit="image", disable=True if args.quiet else None, file=sys.stderr)
    try:
        for start in range(0, len(jobs), args.batch_size):
            chunk = jobs[start : start + args.batch_size]
            todo = []
            for job in chunk:
                if job.error is not None:
                    fail(job, job.error)
                elif args.skip_existing and job.output is not None and job.output.exists():
                    skipped += 1
                else:
                    todo.append(job)
            results = None
            if len(todo) > 1:
                try:
                    results = remover.process([str(j.source) for j in todo], batch_size=len(todo), **options)
                except Exception:  # a bad file in the batch: redo it one by one to find it
                    logger.debug("batch failed; processing its files one at a time", exc_info=True)
            for i, job in enumerate(todo):
                try:
                    save(job, results[i] if results is not None else remover.process(str(job.source), **options))
                    done += 1
                except Exception as exc:  # one bad file must not stop the others
                    fail(job, exc)
            bar.update(len(chunk))
    except KeyboardInterrupt:
        bar.close()
        print(f"inspyrenet-lite: interrupted: {done} done, {skipped} skipped, {failed} failed", file=sys.stderr)
        return 130
    bar.close()
    print(f"inspyrenet-lite: {done} done, {skipped} skipped, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


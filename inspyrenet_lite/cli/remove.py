"""``inspyrenet-lite INPUT...``: remove backgrounds from files and folders.

Inputs are files, folders (searched recursively for images) and glob
patterns. Each result goes to ``-o DIR`` (default: the current folder) as
``<name>.<format>``, keeping the sub-folders of a folder input. Work is never
lost (planning rules in :mod:`inspyrenet_lite.cli.plan`, the output folder's
record in :mod:`inspyrenet_lite.cli.manifest`):

* no file is written over unless this tool wrote it for the same input
  (``--overwrite`` lifts that for files that are not inputs);
* every output is written to a temporary name and renamed when complete, so
  an interrupted run (Ctrl-C, SIGTERM, SIGHUP) leaves no half-written file;
* ``--skip-existing`` resumes: inputs whose recorded output is done and whose
  file has not changed are skipped, and an input an earlier run died on is
  reported and skipped (``--retry-failed`` tries it again);
* a file that fails is reported and counted, the others are still processed,
  and the exit code is 1 if any failed (2 for bad arguments, no model or an
  unwritable output folder; 128 + the signal's number when stopped by one);
  a full disk stops the run.

torch is imported only once there is work to do, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from inspyrenet_lite import __version__
from inspyrenet_lite.cli.manifest import Manifest, Record
from inspyrenet_lite.cli.model_args import add_model_arguments
from inspyrenet_lite.cli.plan import IMAGE_SUFFIXES, Job, assign_outputs, find_inputs, probe_folder, remove_leftovers
from inspyrenet_lite.cli import video as video_cli
from inspyrenet_lite.registry import MODELS, decode_base_size

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["main", "build_parser", "collect_jobs", "Job", "IMAGE_SUFFIXES"]

logger = logging.getLogger(__name__)

FORMATS = {"png": "PNG", "webp": "WEBP", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "tiff": "TIFF"}
_NO_ALPHA_FORMATS = {"JPEG", "BMP"}  # Pillow writes no alpha into these
_QUALITY_FORMATS = {"JPEG", "WEBP"}
MODES = tuple(MODELS)
#: Errors after which no further file can be written: the run stops.
_FATAL_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


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


def _quality(text: str) -> int:
    value = _positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..100, got {text!r}")
    return value


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
            "\nexit status: 0 all done, 1 some inputs failed or the disk is full, 2 bad arguments, no model or\n"
            "an unwritable -o, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP."
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
    add_model_arguments(parser)
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
        "--backend",
        choices=("torch", "onnxruntime", "auto"),
        default="torch",
        help="torch; onnxruntime (CPU fp32, needs the [onnx] extra; exported once; faster on AMD CPUs, "
        "about equal on Intel ones); or auto (onnxruntime where its matrix products are faster)",
    )
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
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="resume: skip inputs done by an earlier run into -o (unchanged since), and inputs an earlier run died on",
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="with --skip-existing: retry the inputs an earlier run died on"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files this tool did not write when they have an output's name (inputs never are)",
    )
    parser.add_argument(
        "--quality",
        type=_quality,
        default=None,
        metavar="N",
        help="1-100: jpg quality (default 95); makes webp lossy (default: lossless)",
    )
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


def collect_jobs(
    inputs: Sequence[str],
    output_dir: Path,
    suffix: str | Callable[[Path], str],
    manifest: Manifest | None = None,
    overwrite: bool = False,
) -> list[Job]:
    """Expand inputs and plan an output path for each file (rules in :mod:`inspyrenet_lite.cli.plan`).

    Without ``manifest``, the output folder's own is read (and its file
    system probed for case-insensitivity where it can be written).
    """
    if manifest is None:
        try:
            case_insensitive = probe_folder(output_dir)
        except OSError:
            case_insensitive = False
        manifest = Manifest.load(output_dir, case_insensitive)
    found, problems = find_inputs(inputs, output_dir, manifest)
    return problems + assign_outputs(found, output_dir, suffix, manifest, overwrite)


def _prepare_for_format(img: Image.Image, fmt: str) -> Image.Image:
    """Pillow cannot write every mode in every format: flatten what needs it."""
    if fmt in _NO_ALPHA_FORMATS and img.mode not in ("RGB", "L"):
        return img.convert("RGB")
    return img


def _device_problem(name: str | None) -> str | None:
    """Why ``--device name`` cannot run a model here (None if it can)."""
    if name is None:
        return None
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        return f"--device {name!r} is not a torch device ({exc}); use e.g. cpu, cuda, cuda:1 or mps"
    if device.type == "meta":
        return "--device meta holds no data and cannot run a model; use cpu, cuda or mps"
    try:
        torch.ones(1, device=device).add(1).cpu()
    except Exception as exc:  # not compiled in, no such GPU, driver problems...
        return f"--device {name!r} cannot run here ({str(exc).splitlines()[0]}); use cpu, or omit --device"
    return None


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled as Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _DiskFull(Exception):
    pass


@contextlib.contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`_Stopped` while the block runs (main thread only)."""
    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {}

    def stop(signum, frame):
        raise _Stopped(signum)

    try:
        for name in names:
            signum = getattr(signal, name)
            previous[signum] = signal.signal(signum, stop)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _prepare_onnx_graph(remover, args: argparse.Namespace) -> int:
    """Export (or open) the ONNX Runtime graph before the first image, saying so when it takes a while."""
    backend = getattr(remover, "backend", None)
    if getattr(backend, "name", None) != "onnxruntime":
        return 0
    hr_blend = args.hr_blend if args.hr_blend is not None else remover.hr_blend
    if remover.resize != "static" or hr_blend:
        return 0  # every pass runs in PyTorch (the backend logs why)
    try:  # before an export the backend warns how long it takes and why (shown through logging)
        backend.session(remover.base_size)
    except KeyboardInterrupt:
        print("inspyrenet-lite: interrupted during the ONNX export; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # only with --backend onnxruntime; auto falls back by itself
        print(f"inspyrenet-lite: the ONNX Runtime backend failed: {exc}; use --backend torch", file=sys.stderr)
        return 2
    return 0


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
    from inspyrenet_lite.image_io import DEFAULT_MAX_PIXELS

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
    if args.quality is not None and fmt not in _QUALITY_FORMATS:
        parser.error(f"--quality applies to jpg and webp; --format {args.format} is always lossless")

    output_dir = Path(args.output)
    if output_dir.is_file():
        parser.error(f"-o {args.output!r} is a file, not a folder")
    if not output_dir.exists() and (output_dir.suffix.lower() in IMAGE_SUFFIXES or video_cli.is_video(output_dir)):
        parser.error(
            f"-o takes a folder, and {args.output!r} looks like a file name; "
            f"use -o {str(output_dir.parent / output_dir.stem)!r} (results are named after their inputs)"
        )
    try:
        case_insensitive = probe_folder(output_dir)
    except OSError as exc:
        print(f"inspyrenet-lite: cannot write into -o {args.output!r}: {exc}", file=sys.stderr)
        return 2
    manifest = Manifest.load(output_dir, case_insensitive)
    jobs = collect_jobs(
        args.inputs, output_dir, video_cli.output_suffix(args, "." + args.format), manifest, args.overwrite
    )
    if not any(job.error is None and job.skip is None for job in jobs):
        for job in jobs:
            print(f"inspyrenet-lite: {job.source}: {job.error or job.skip}", file=sys.stderr)
        print("inspyrenet-lite: no input images found", file=sys.stderr)
        return 2
    problem = _device_problem(args.device)
    if problem is not None:
        print(f"inspyrenet-lite: {problem}", file=sys.stderr)
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
            backend=args.backend,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"inspyrenet-lite: cannot load the model: {exc}", file=sys.stderr)
        return 2
    status = _prepare_onnx_graph(remover, args)
    if status != 0:
        return status
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        manifest.compact()
        remove_leftovers(output_dir, jobs)
    except OSError as exc:
        print(f"inspyrenet-lite: cannot write into -o {args.output!r}: {exc}", file=sys.stderr)
        return 2

    from inspyrenet_lite.image_io import save_image

    video_jobs = [job for job in jobs if job.error is None and video_cli.is_video(job.source)]
    jobs = [job for job in jobs if job not in video_jobs]
    for job in jobs:
        if spec is None and job.error is None:
            job.error = "a background video (--type) applies to video inputs only"
    done = skipped = failed = 0
    options = {"type": spec, "threshold": args.threshold, "hr_blend": args.hr_blend, "reverse": args.reverse}

    def note(job: Job, status: str, error: str | None = None) -> None:
        assert job.output_name is not None
        manifest.record(Record(job.output_name, job.key, job.size, job.mtime_ns, status, error))

    def save(job: Job, result: Image.Image) -> None:
        assert job.output is not None
        job.output.parent.mkdir(parents=True, exist_ok=True)
        save_image(_prepare_for_format(result, fmt), job.output, format=fmt, quality=args.quality)

    def fail(job: Job, exc: BaseException | str) -> None:
        nonlocal failed
        failed += 1
        if isinstance(exc, BaseException):
            logger.debug("failure on %s", job.source, exc_info=exc)
        tqdm.write(f"failed: {job.source}: {exc}", file=sys.stderr)

    def triage(job: Job) -> bool:
        """Whether ``job`` is to be processed now (else it was counted)."""
        nonlocal skipped
        if job.error is not None:
            fail(job, job.error)
            return False
        if job.skip is not None:
            skipped += 1
            tqdm.write(f"skipped: {job.source}: {job.skip}", file=sys.stderr)
            return False
        record = manifest.get(job.output_name or "")
        same = record is not None and (record.input, record.size, record.mtime_ns) == (job.key, job.size, job.mtime_ns)
        if not (args.skip_existing and same):
            return True
        assert record is not None and job.output is not None
        if record.status == "done" and job.output.exists():
            skipped += 1
            return False
        if record.status == "started" and not args.retry_failed:
            fail(
                job,
                "an earlier run stopped while processing it (killed, perhaps for lack of memory); "
                "skipped: --retry-failed tries it again, --max-pixels or a smaller image may help",
            )
            return False
        return True

    bar = tqdm(total=len(jobs), unit="image", disable=True if args.quiet else None, file=sys.stderr)
    todo: list[Job] = []
    finished: set[int] = set()
    try:
        with _signals_as_interrupts():
            for job in video_jobs:  # one at a time; frames are batched inside
                if not triage(job):
                    continue
                todo, finished = [job], set()  # what the interrupt handler marks "interrupted"
                note(job, "started")
                try:
                    video_cli.run_one(remover, job, args, spec)
                    note(job, "done")
                    done += 1
                except Exception as exc:  # one bad video must not stop the others
                    note(job, "failed", str(exc))
                    fail(job, exc)
                finished.add(0)
            for start in range(0, len(jobs), args.batch_size):
                chunk = jobs[start : start + args.batch_size]
                todo = [job for job in chunk if triage(job)]
                finished = set()
                for job in todo:  # recorded before the work: a resume knows what killed a run
                    note(job, "started")
                results = None
                if len(todo) > 1:
                    try:
                        results = remover.process([str(j.source) for j in todo], batch_size=len(todo), **options)
                    except Exception:  # a bad file in the batch: redo it one by one to find it
                        logger.debug("batch failed; processing its files one at a time", exc_info=True)
                for i, job in enumerate(todo):
                    try:
                        save(job, results[i] if results is not None else remover.process(str(job.source), **options))
                        note(job, "done")
                        done += 1
                    except Exception as exc:  # one bad file must not stop the others
                        note(job, "failed", str(exc))
                        fail(job, exc)
                        if isinstance(exc, OSError) and exc.errno in _FATAL_WRITE_ERRORS:
                            raise _DiskFull(exc) from exc
                    finished.add(i)
                bar.update(len(chunk))
    except KeyboardInterrupt as exc:
        bar.close()
        for i, job in enumerate(todo):
            if i not in finished:
                note(job, "interrupted")
        print(f"inspyrenet-lite: interrupted: {done} done, {skipped} skipped, {failed} failed", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, _Stopped) else 130
    except _DiskFull as exc:
        bar.close()
        print(
            f"inspyrenet-lite: stopped: no more files can be written to {args.output!r} ({exc}); "
            f"{done} done, {skipped} skipped, {failed} failed; free some space and rerun with --skip-existing",
            file=sys.stderr,
        )
        return 1
    bar.close()
    print(f"inspyrenet-lite: {done} done, {skipped} skipped, {failed} failed", file=sys.stderr)
    return 1 if failed else 0

"""``inspyrenet-lite INPUT...``: remove backgrounds from files and folders.

Inputs are files, folders (searched recursively for images) and glob
patterns. Each result goes to ``-o DIR`` (default: the current folder) as
``<name>.<format>``, keeping the sub-folders of a folder input. Work is never
lost (planning rules in :mod:`inspyrenet_lite.jobs.plan`, the output folder's
record in :mod:`inspyrenet_lite.jobs.manifest`, the run in :mod:`inspyrenet_lite.jobs.run`;
this module only parses, checks and reports):

* one run at a time per output folder: a second run into the same ``-o``
  is refused at once (exit 2) while the first holds it;
* no file is written over unless this tool wrote it for the same input and
  it was not changed since (``--overwrite`` lifts that for files that are
  not inputs);
* every output is written to a temporary name and renamed when complete, so
  an interrupted run (Ctrl-C, SIGTERM, SIGHUP) leaves no half-written file;
* ``--skip-existing`` resumes: inputs whose recorded output is done, whose
  file has not changed and whose output was made with the same options and
  model (weights, precision, resize) are skipped, and an input an earlier run
  died on is reported and skipped (``--retry-failed`` tries it again);
* a file that fails is reported and counted, the others are still processed,
  and the exit code is 1 if any failed (2 for bad arguments, no model or an
  unwritable output folder; 128 + the signal's number when stopped by one);
  a full disk stops the run.

torch is imported only once there is work to do, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from inspyrenet_lite import __version__
from inspyrenet_lite.cli import argtypes
from inspyrenet_lite.cli import video as video_cli
from inspyrenet_lite.cli.devices import device_problem
from inspyrenet_lite.cli.model_args import add_model_arguments
from inspyrenet_lite.constants import IMAGE_SUFFIXES, PRECISIONS
from inspyrenet_lite.jobs.manifest import Manifest
from inspyrenet_lite.jobs.plan import Job, collect_jobs, probe_folder, remove_leftovers
from inspyrenet_lite.options import FORMATS
from inspyrenet_lite.registry import MODELS

__all__ = ["main", "build_parser", "collect_jobs", "Job", "IMAGE_SUFFIXES"]

logger = logging.getLogger(__name__)

MODES = tuple(MODELS)


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
            "  cat photo.jpg | inspyrenet-lite - -o - --type white --format jpg > cutout.jpg\n"
            "\nexit status: 0 all done, 1 some inputs failed or the disk is full, 2 bad arguments, no model or\n"
            "an unwritable -o, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_inputs_and_outputs(parser)
    _add_network_arguments(parser)
    _add_device_arguments(parser)
    _add_file_arguments(parser)
    video_cli.add_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _add_inputs_and_outputs(parser: argparse.ArgumentParser) -> None:
    """What to read, where to write, and what the result shows."""
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image files, folders (recursive) or glob patterns; with -o -, one image file, http(s) address or - (stdin)",
    )
    parser.add_argument(
        "-o", "--output", default=".", metavar="DIR",
        help="output folder (default: current folder); - writes the one result to stdout in --format",
    )
    parser.add_argument(
        "-t",
        "--type",
        default="rgba",
        help="rgba (default), map, green, white, blur, overlay, a colour ('#rrggbb' or 'r,g,b') "
        "or the path of a background image",
    )
    parser.add_argument("--threshold", type=argtypes.threshold, default=None, help="hard mask: map values above it are kept")
    parser.add_argument("--reverse", action="store_true", help="keep the background instead of the object")


def _add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """Which model, and how it sees the image."""
    add_model_arguments(parser)
    parser.add_argument(
        "--ckpt", default=None, metavar="PATH", help="local checkpoint (.pth or .safetensors) instead of the download"
    )
    parser.add_argument(
        "--base-size", type=argtypes.base_size, default=None, metavar="HxW", help="base size of a --ckpt that does not say it"
    )
    parser.add_argument(
        "--hr-blend",
        type=argtypes.hr_blend,
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


def _add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how fast the network runs."""
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1, mps (default: best available)"
    )
    parser.add_argument(
        "--devices",
        default=None,
        metavar="LIST",
        help="several devices, one model replica and worker process each, work shared as they go: "
        "all (every GPU), or e.g. cuda:0,cuda:1 or cpu,cpu",
    )
    parser.add_argument(
        "--workers",
        type=argtypes.positive_int,
        default=None,
        metavar="N",
        help="worker processes (per device of --devices; else on --device, default cpu), "
        "each CPU worker with its share of the cores (default: one process)",
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help="inference precision (int8: CPU, with --backend onnxruntime or auto; see README)",
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime", "auto"),
        default="torch",
        help="torch; onnxruntime (CPU fp32 or int8, needs the [onnx] extra; exported once; faster on AMD CPUs, "
        "about equal on Intel ones); or auto (onnxruntime where its matrix products are faster, "
        "and always for --precision int8)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the network with torch.compile: minutes before the first image of each size, "
        "then faster forwards where it pays (see README); falls back to uncompiled if compiling fails",
    )


def _add_file_arguments(parser: argparse.ArgumentParser) -> None:
    """The files written: format, batches, resuming and limits."""
    parser.add_argument(
        "--format", type=argtypes.output_format, default="png", metavar="{" + ",".join(FORMATS) + "}",
        help="output format (default png)",
    )
    parser.add_argument(
        "--batch-size",
        type=argtypes.positive_int,
        default=1,
        metavar="N",
        help="images per network pass: faster on a GPU (default 1)",
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="resume: skip inputs done by an earlier run into -o (unchanged since, same options and model), "
        "and inputs an earlier run died on",
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="with --skip-existing: retry the inputs an earlier run died on"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files this tool did not write, or outputs edited since it wrote them, when they "
        "have an output's name (inputs never are)",
    )
    parser.add_argument(
        "--quality",
        type=argtypes.quality,
        default=None,
        metavar="N",
        help="1-100: jpg quality (default 95); makes webp lossy (default: lossless)",
    )
    parser.add_argument(
        "--max-pixels",
        type=argtypes.pixel_limit,
        default=None,
        metavar="N",
        help="refuse images with more pixels (default 100000000; 0: no limit, Pillow's own guard included)",
    )


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled as Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Stopped` while the block runs (main thread only)."""
    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {}

    def stop(signum, frame):
        raise Stopped(signum)

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


def _warm_up(remover, args: argparse.Namespace) -> int:
    """Pay the backend's one-time cost before the first image: the ONNX Runtime backend exports (or
    opens) its graph here, where it warns how long that takes and a failure or Ctrl-C is reported plainly."""
    if getattr(getattr(remover, "backend", None), "name", None) != "onnxruntime":
        return 0
    hr_blend = args.hr_blend if args.hr_blend is not None else remover.hr_blend
    if remover.resize != "static" or hr_blend:
        return 0  # every pass runs in PyTorch (the backend logs why)
    try:
        remover.predictor.warmup()
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
    setup_logging(args.verbose)
    if args.output == STREAM or STREAM in args.inputs:
        return _run_stream(parser, args)
    fmt, spec, max_pixels = _check_arguments(parser, args)
    with output_held(args.output) as status:
        if status:
            return status
        planned = plan_jobs(parser, args)
        if isinstance(planned, int):
            return planned
        manifest, jobs = planned
        devices = _parallel_devices(args)
        if isinstance(devices, int):
            return devices
        remover = _load_remover(args, max_pixels) if devices is None else _remover_factory(args, max_pixels)
        if isinstance(remover, int):
            return remover
        status = prepare_output(args.output, manifest, jobs)
        if status:
            return status
        return _run(args, remover, manifest, jobs, spec, fmt, devices)


@contextlib.contextmanager
def output_held(output: str) -> Iterator[int]:
    """Hold the output folder for this run (:class:`~inspyrenet_lite.jobs.lock.FolderLock`, from planning to
    the last manifest line); yields 0, or 2 after saying why not (another run holds it, it cannot be made).
    A folder this made is removed again if the run leaves nothing in it."""
    from inspyrenet_lite.jobs.lock import FolderBusy, FolderLock

    folder = Path(output)
    created = not os.path.lexists(folder)
    lock = FolderLock(folder)
    try:
        lock.acquire()
    except FolderBusy as exc:
        print(f"inspyrenet-lite: {exc}", file=sys.stderr)
        yield 2
        return
    except OSError as exc:
        print(f"inspyrenet-lite: cannot write into -o {output!r}: {exc}", file=sys.stderr)
        yield 2
        return
    try:
        yield 0
    finally:
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: nothing was planned into it


#: ``-`` as INPUT reads the image from stdin; as ``-o`` writes the result to stdout (for pipes).
STREAM = "-"


def _run_stream(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """One image from stdin, a file or an http(s) address to stdout (``-o -``) in ``--format``."""
    if args.output != STREAM:
        parser.error("reading the image from stdin (-) writes its result to stdout: add -o -")
    if len(args.inputs) != 1:
        parser.error(f"-o - writes one result to stdout: give one input, not {len(args.inputs)}")
    source = args.inputs[0]
    if source != STREAM and (Path(source).is_dir() or video_cli.is_video(source)):
        parser.error(f"-o - takes one image (a file, an http(s) address or - for stdin), not {source!r}")
    fmt, spec, max_pixels = _check_arguments(parser, args)
    if spec is None:
        parser.error("a background video (--type) applies to video inputs only")
    remover = _load_remover(args, max_pixels)
    if isinstance(remover, int):
        return remover
    from inspyrenet_lite.image_io import encode_image

    try:
        result = remover.process(
            sys.stdin.buffer if source == STREAM else source,
            type=spec, threshold=args.threshold, hr_blend=args.hr_blend, reverse=args.reverse,
        )
        data = encode_image(result, fmt, args.quality)
    except (ValueError, OSError) as exc:  # ImageLoadError is a ValueError: one line naming the input
        print(f"inspyrenet-lite: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


def prepare_output(output: str, manifest: Manifest, jobs: list[Job]) -> int:
    """Create the output folder, compact its manifest, remove stale temporaries; 0, or 2 after saying why not."""
    try:
        Path(output).mkdir(parents=True, exist_ok=True)
        manifest.compact()
        remove_leftovers(Path(output), jobs)
    except OSError as exc:
        print(f"inspyrenet-lite: cannot write into -o {output!r}: {exc}", file=sys.stderr)
        return 2
    return 0


def _parallel_devices(args: argparse.Namespace) -> list[str] | None | int:
    """The worker devices of --devices/--workers (None: one process), or an exit status after saying why not."""
    if args.devices is None and args.workers is None:
        return None
    from inspyrenet_lite.jobs.parallel import parse_devices

    problem = None
    if args.devices is not None and args.device is not None:
        problem = "give --device or --devices, not both"
    elif args.backend != "torch":
        problem = f"--devices/--workers run the torch backend; drop --backend {args.backend} or run one process"
    elif args.precision == "int8":
        problem = "--devices/--workers run the torch backend, which has no int8; use --precision fp32 or bf16"
    if problem is None:
        try:
            devices = parse_devices(args.devices, args.workers, args.device)
        except ValueError as exc:
            problem = str(exc)
    for name in [] if problem else sorted(set(devices)):
        problem = problem or device_problem(name, "--devices" if args.devices is not None else "--device")
    if problem is not None:
        print(f"inspyrenet-lite: {problem}", file=sys.stderr)
        return 2
    return devices


def _remover_factory(args: argparse.Namespace, max_pixels: int | None):
    """What each worker process builds its Remover with (the options of :func:`_load_remover`)."""
    from inspyrenet_lite.jobs.parallel import RemoverFactory

    return RemoverFactory(
        model=args.model, mode=args.mode, base_size=args.base_size, ckpt=args.ckpt, resize=args.resize,
        precision=args.precision, max_pixels=max_pixels, backend=args.backend, compile=args.compile,
    )


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # huggingface_hub prints through a handler of its own: without this, each of
    # its warnings would be printed twice (once bare, once by the handler above).
    logging.getLogger("huggingface_hub").propagate = False


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """(Pillow format, parsed --type or None for a background video, pixel limit); parser.error otherwise."""
    from inspyrenet_lite.compositing import parse_output_type
    from inspyrenet_lite.image_io import DEFAULT_MAX_PIXELS

    from inspyrenet_lite.compositing import OutputSpec
    from inspyrenet_lite.options import OutputOptions

    # --max-pixels is the only pixel limit: 0 lifts it (image_io widens Pillow's guard to match).
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else (args.max_pixels or None)
    spec = None  # a background video (--type clip.mp4) is read by the video pipeline
    if not (video_cli.is_video(args.type) and Path(args.type).is_file()):
        try:
            spec = parse_output_type(args.type, max_pixels=max_pixels)
        except ValueError as exc:
            parser.error(str(exc))
    video_cli.check_arguments(parser, args)
    try:  # a background video gives results without alpha, as a map does
        options = OutputOptions(spec=spec or OutputSpec("map"), threshold=args.threshold, reverse=args.reverse,
                                format=args.format, quality=args.quality)
    except ValueError as exc:
        parser.error(str(exc))
    fmt = options.output_format.pillow
    output_dir = Path(args.output)
    if output_dir.is_file():
        parser.error(f"-o {args.output!r} is a file, not a folder")
    if not output_dir.exists() and (output_dir.suffix.lower() in IMAGE_SUFFIXES or video_cli.is_video(output_dir)):
        parser.error(
            f"-o takes a folder, and {args.output!r} looks like a file name; "
            f"use -o {str(output_dir.parent / output_dir.stem)!r} (results are named after their inputs)"
        )
    return fmt, spec, max_pixels


def plan_jobs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Manifest, list[Job]] | int:
    """The output folder's manifest and the jobs, or an exit status when there is nothing to do."""
    output_dir = Path(args.output)
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
    return manifest, jobs


def _load_remover(args: argparse.Namespace, max_pixels: int | None):
    """The Remover (warmed up), or an exit status after saying why not."""
    problem = device_problem(args.device)
    if problem is not None:
        print(f"inspyrenet-lite: {problem}", file=sys.stderr)
        return 2
    from inspyrenet_lite.remover import Remover
    from inspyrenet_lite.weights import WeightsUnavailableError

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
            compile=args.compile,
        )
    except WeightsUnavailableError as exc:  # its way out on the command line is --ckpt, not Remover(ckpt=)
        print(f"inspyrenet-lite: cannot load the model: {exc.cli_message}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"inspyrenet-lite: cannot load the model: {exc}", file=sys.stderr)
        return 2
    status = _warm_up(remover, args)
    return remover if status == 0 else status


def _run(
    args: argparse.Namespace, remover, manifest: Manifest, jobs: list[Job], spec, fmt: str, devices=None
) -> int:
    """Run the jobs with a progress bar; the exit status (1 if any failed, 128 + signal when stopped).
    With ``devices``, ``remover`` is the workers' RemoverFactory."""
    import functools

    from tqdm.auto import tqdm

    from inspyrenet_lite.jobs.parallel import ParallelJobRunner, WorkerError
    from inspyrenet_lite.jobs.run import DiskFull, ImageOutput, JobRunner

    for job in jobs:
        if spec is None and job.error is None and not video_cli.is_video(job.source):
            job.error = "a background video (--type) applies to video inputs only"
    image_count = sum(1 for job in jobs if not (job.error is None and video_cli.is_video(job.source)))
    bar = tqdm(total=image_count, unit="image", disable=True if args.quiet else None, file=sys.stderr)
    output = ImageOutput(spec, args.threshold, args.hr_blend, args.reverse, fmt, args.quality)
    common = {"batch_size": args.batch_size, "skip_existing": args.skip_existing, "reporter": _BarReporter(bar)}
    common["retry_failed"] = args.retry_failed
    if devices is None:
        video = lambda job: video_cli.run_one(remover, job, args, spec)  # noqa: E731
        runner = JobRunner(remover, manifest, output, video=video, **common)
    else:
        video = functools.partial(video_cli.run_one, args=args, spec=spec)
        runner = ParallelJobRunner(remover, devices, manifest, output, video=video, **common)
    try:
        with signals_as_interrupts():
            runner.run(jobs)
    except KeyboardInterrupt as exc:
        bar.close()
        print(f"inspyrenet-lite: interrupted: {runner.counts}", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, Stopped) else 130
    except WorkerError as exc:
        bar.close()
        print(f"inspyrenet-lite: stopped: {exc}; {runner.counts}", file=sys.stderr)
        return 2 if runner.counts.done == 0 and not runner.counts.failed else 1
    except DiskFull as exc:
        bar.close()
        print(
            f"inspyrenet-lite: stopped: no more files can be written to {args.output!r} ({exc}); "
            f"{runner.counts}; {exc.advice()} with --skip-existing",
            file=sys.stderr,
        )
        return 1
    bar.close()
    print(f"inspyrenet-lite: {runner.counts}", file=sys.stderr)
    return 1 if runner.counts.failed else 0


class _BarReporter:
    """Failures and skips as lines above the progress bar; progress on it."""

    def __init__(self, bar) -> None:
        self.bar = bar

    def failed(self, job: Job, error: BaseException | str) -> None:
        self.bar.write(f"failed: {job.source}: {error}", file=sys.stderr)

    def skipped(self, job: Job, reason: str) -> None:
        self.bar.write(f"skipped: {job.source}: {reason}", file=sys.stderr)

    def advanced(self, count: int) -> None:
        self.bar.update(count)

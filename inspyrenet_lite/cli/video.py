"""Video inputs of the default command (``inspyrenet-lite clip.mp4 -o out/``).

The default command (:mod:`inspyrenet_lite.cli.remove`) plans the jobs and
calls these functions for the inputs whose suffix is a video's: the options
(:func:`add_arguments`), the output name of a video (:func:`output_suffix`)
and the processing of one video job (:func:`run_one`). Planning, the manifest,
``--skip-existing``, signals and failure counts are the default command's,
the same as for images.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from inspyrenet_lite.video.formats import DEFAULT_CRF, OUTPUT_FORMATS, VIDEO_SUFFIXES, crf_not_applicable, is_video

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The video options of the default command."""
    group = parser.add_argument_group("video inputs (" + " ".join(sorted(VIDEO_SUFFIXES)) + ")")
    group.add_argument(
        "--video-format",
        choices=sorted(OUTPUT_FORMATS),
        default=None,
        help="webm (VP9; with alpha for --type rgba, the default), mov (ProRes 4444, alpha), "
        "mp4 (H.264, default for other types), png (a folder of frames)",
    )
    group.add_argument(
        "--stability",
        choices=("on", "off"),
        default="on",
        help="smooth the mask over time where the picture is still (default on)",
    )
    group.add_argument(
        "--crf", type=int, default=None, metavar="N", help="quality of mp4 (default 18) and webm (default 30): lower is better"
    )


def output_suffix(args: argparse.Namespace, image_suffix: str) -> Any:
    """A function giving the output suffix of an input: the video's for videos, ``image_suffix`` otherwise."""
    from inspyrenet_lite.video.pipeline import output_suffix as video_suffix

    suffix = video_suffix(args.type, args.video_format)
    return lambda path: suffix if is_video(path) else image_suffix


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Argument errors of the video options, before any work."""
    kind = str(args.type).strip().lower()
    if kind == "rgba" and args.video_format == "mp4":
        parser.error("--video-format mp4 (H.264) cannot store transparency; use webm or mov, or a --type such as white")
    from inspyrenet_lite.checks import check_options

    fmt = args.video_format or ("webm" if kind == "rgba" else "mp4")
    if args.crf is not None and fmt not in DEFAULT_CRF:
        parser.error(f"--{crf_not_applicable(fmt)}")
    try:
        check_options(**{"crf_mp4" if fmt == "mp4" else "crf": args.crf})
    except ValueError as exc:
        parser.error(f"--{exc}")


def run_one(remover: Any, job: Any, args: argparse.Namespace, spec: Any) -> None:
    """Process one video job (planned, triaged and recorded by the default
    command like an image); raises on failure. ``spec`` is the parsed
    ``--type``, or ``None`` when it names a background video. The progress
    bar shows frames, frames/s and time left."""
    from tqdm.auto import tqdm

    from inspyrenet_lite.video.pipeline import process_video

    bar = tqdm(
        total=_frame_count(job.source),
        unit="frame",
        desc=job.source.name,
        disable=True if args.quiet else None,
        file=sys.stderr,
    )
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        process_video(
            remover,
            job.source,
            job.output,
            type=spec if spec is not None else args.type,
            format=args.video_format,
            threshold=args.threshold,
            hr_blend=args.hr_blend,
            reverse=args.reverse,
            batch_size=args.batch_size,
            stability=args.stability == "on",
            crf=args.crf,
            progress=bar.update,
        )
    finally:
        bar.close()


def _frame_count(path: Path) -> int | None:
    try:
        import av

        with av.open(str(path)) as container:
            return container.streams.video[0].frames or None
    except Exception:  # noqa: BLE001 - the run itself reports unreadable files
        return None

"""``inspyrenet-lite ray INPUT... -o DIR``: the default command's work on Ray Data (the ``[ray]`` extra).

Inputs are planned as the default command plans them (same output names,
same manifest, same ``--skip-existing`` rules); Ray actors (``--actors``,
each with its own model) decode, run and encode; the driver writes into a
local folder. Without ``--address`` a local Ray instance is started on
loopback only, without the dashboard.

URIs (``s3://``, ``gs://``, ``file://``) are listed with pyarrow and read by
Ray with the same pyarrow file system, so what pyarrow's ``from_uri`` honours
reaches the reads: an S3-compatible endpoint given in the URI
(``s3://bucket/photos?endpoint_override=host:9000&scheme=http``) or in
``AWS_ENDPOINT_URL`` (Ray alone keeps the query in the object key).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import posixpath
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from inspyrenet_lite.cli import argtypes, remove
from inspyrenet_lite.cli.model_args import add_model_arguments
from inspyrenet_lite.constants import IMAGE_SUFFIXES
from inspyrenet_lite.jobs.manifest import Manifest
from inspyrenet_lite.jobs.plan import Job, collect_jobs, edited_output, new_output_name, probe_folder
from inspyrenet_lite.options import FORMATS


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``inspyrenet-lite ray``."""
    parser = argparse.ArgumentParser(
        prog="inspyrenet-lite ray",
        description="Remove backgrounds with Ray Data actors (local instance, or a cluster with --address).",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or glob patterns")
    parser.add_argument("-o", "--output", default=".", metavar="DIR", help="output folder (default: current folder)")
    parser.add_argument("-t", "--type", default="rgba", help="as the default command's --type (not a video)")
    parser.add_argument("--threshold", type=argtypes.threshold, default=None, help="hard mask threshold in [0, 1]")
    parser.add_argument("--reverse", action="store_true", help="keep the background instead of the object")
    add_model_arguments(parser)
    parser.add_argument(
        "--hr-blend", type=argtypes.hr_blend, default=None, metavar="BETA", help="as the default command's"
    )
    parser.add_argument("--resize", choices=("static", "dynamic"), default=None, help="network input size")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32", help="inference precision")
    parser.add_argument("--ckpt", default=None, metavar="PATH", help="local checkpoint instead of the download")
    parser.add_argument("--device", default=None, help="each actor's torch device (default: its GPU if any, else cpu)")
    parser.add_argument(
        "--format", type=argtypes.output_format, default="png", metavar="{" + ",".join(FORMATS) + "}",
        help="output format (default png)",
    )
    parser.add_argument("--quality", type=argtypes.quality, default=None, metavar="N", help="1-100 for jpg and webp")
    parser.add_argument(
        "--max-pixels", type=argtypes.pixel_limit, default=None, metavar="N", help="as the default command's"
    )
    parser.add_argument(
        "--batch-size", type=argtypes.positive_int, default=8, metavar="N", help="images per actor call (default 8)"
    )
    parser.add_argument(
        "--actors", type=argtypes.positive_int, default=1, metavar="N", help="actors, one model each (default 1)"
    )
    parser.add_argument("--num-gpus", type=float, default=None, metavar="G", help="GPUs per actor (e.g. 1)")
    parser.add_argument("--address", default=None, help="join this Ray cluster (default: start a local instance)")
    parser.add_argument("--skip-existing", action="store_true", help="resume, as the default command's")
    parser.add_argument(
        "--retry-failed", action="store_true", help="with --skip-existing: retry inputs an earlier run died on"
    )
    parser.add_argument("--overwrite", action="store_true", help="as the default command's")
    parser.add_argument(
        "-q", "--quiet", action="store_true",
        help="no progress output and none of Ray's own log lines: only failures and the summary",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    return parser


#: Where Ray (>= 2.60) looks for a cluster's token when neither RAY_AUTH_TOKEN nor RAY_AUTH_TOKEN_PATH is set.
DEFAULT_TOKEN_FILE = "~/.ray/auth_token"


def available_token() -> str | None:
    """Where a Ray authentication token is found (a variable's name or the file), or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return "RAY_AUTH_TOKEN_PATH" if os.path.isfile(os.path.expanduser(path)) else None
    return DEFAULT_TOKEN_FILE if os.path.isfile(os.path.expanduser(DEFAULT_TOKEN_FILE)) else None


def use_token_if_available() -> str | None:
    """Before joining a cluster by address: Ray turns token authentication on by itself only for a
    cluster it finds locally, never for an explicit address; so when ``RAY_AUTH_MODE`` is unset and a
    token is available, ask for token mode (a cluster without authentication ignores the token).
    Returns where the token was found."""
    found = available_token()
    if found is not None and not os.environ.get("RAY_AUTH_MODE"):
        os.environ["RAY_AUTH_MODE"] = "token"
        from ray._raylet import Config

        Config.initialize("")  # Ray read the mode when it was imported: as Ray itself does, read it again
    return found


def join_problem(address: str, exc: BaseException) -> str:
    """One line on why joining ``address`` failed; names token authentication and where the token goes."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    reason = reason.split(". Ensure that the token", 1)[0]  # Ray's paragraph of advice: ours follows
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return f"cannot join the Ray cluster at {address}: {reason}"
    if available_token() is not None:
        return (f"cannot join the Ray cluster at {address}: {reason} (tried token authentication with the token "
                f"from {available_token()}: check it is this cluster's; `ray get-auth-token` on its head prints it)")
    return (f"cannot join the Ray cluster at {address}: {reason}; if the cluster uses token authentication (Ray >= 2.60 "
            f"turns it on for `ray start --head` when a token exists), copy its token (`ray get-auth-token` on the "
            f"head) into {DEFAULT_TOKEN_FILE} or RAY_AUTH_TOKEN here; a cluster started with RAY_AUTH_MODE=disabled "
            "needs none")


def _start_ray(address: str | None, quiet: bool) -> None:
    import ray

    level = logging.ERROR if quiet else logging.WARNING
    common = {"logging_level": level, "log_to_driver": not quiet}
    if address is not None:
        use_token_if_available()
        try:
            ray.init(address=address, **common)
        except Exception as exc:
            raise RuntimeError(join_problem(address, exc)) from exc
    else:  # advertised on 127.0.0.1, no dashboard; Ray's servers themselves bind every interface (README)
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, **common)
    if quiet:
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``inspyrenet-lite ray``; returns the exit status (as the default command's)."""
    from inspyrenet_lite.image_io import DEFAULT_MAX_PIXELS
    from inspyrenet_lite.jobs.run import ImageOutput
    from inspyrenet_lite.options import OutputOptions

    parser = build_parser()
    args = parser.parse_args(argv)
    remove.setup_logging(args.verbose)
    if importlib.util.find_spec("ray") is None:
        print('inspyrenet-lite: ray needs the [ray] extra: pip install "inspyrenet-lite[ray]"', file=sys.stderr)
        return 2
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else (args.max_pixels or None)
    try:
        options = OutputOptions.of(args.type, max_pixels=max_pixels, threshold=args.threshold, reverse=args.reverse,
                                   format=args.format, quality=args.quality)
    except ValueError as exc:
        parser.error(str(exc))
    spec, fmt = options.spec, options.output_format.pillow
    if "://" in args.output:
        print(
            f"inspyrenet-lite: -o must be a local folder, not {args.output!r}: write the outputs locally, "
            "then copy them to the bucket (e.g. `aws s3 sync DIR s3://bucket/prefix/`)",
            file=sys.stderr,
        )
        return 2
    args.video_format = None  # videos are refused below; their planned names do not matter
    with remove.output_held(args.output) as status:
        if status:
            return status
        planned = _plan(parser, args)
        if isinstance(planned, int):
            return planned
        manifest, jobs, filesystems = planned
        constructor = {
            "model": args.model or args.mode, "device": args.device, "type": args.type, "threshold": args.threshold,
            "hr_blend": args.hr_blend, "reverse": args.reverse, "format": fmt, "quality": args.quality,
            "remover_options": {
                "ckpt": args.ckpt, "resize": args.resize, "precision": args.precision, "max_pixels": max_pixels,
            },
        }
        output = ImageOutput(spec, args.threshold, args.hr_blend, args.reverse, fmt, args.quality)
        return _run(args, manifest, jobs, filesystems, output, constructor)


def _plan(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The default command's planning for local inputs, plus URIs (``s3://``, ``gs://``, ``file://``):
    the manifest, the jobs and the pyarrow file system of each URI job's key; or an exit status."""
    uris = [text for text in args.inputs if "://" in text]
    local = [text for text in args.inputs if "://" not in text]
    if not uris:
        planned = remove.plan_jobs(parser, args)
        return planned if isinstance(planned, int) else (*planned, {})
    output_dir = Path(args.output)
    try:
        manifest = Manifest.load(output_dir, probe_folder(output_dir))
    except OSError as exc:
        print(f"inspyrenet-lite: cannot write into -o {args.output!r}: {exc}", file=sys.stderr)
        return 2
    jobs = collect_jobs(local, output_dir, "." + args.format, manifest, args.overwrite) if local else []
    try:
        uri_jobs, filesystems = plan_uris(uris, output_dir, "." + args.format, manifest, args.overwrite, jobs)
    except InputError as exc:  # no such bucket, no credentials, an unknown scheme...
        print(f"inspyrenet-lite: {exc}", file=sys.stderr)
        return 2
    jobs += uri_jobs
    if not any(job.error is None and job.skip is None for job in jobs):
        print("inspyrenet-lite: no input images found", file=sys.stderr)
        return 2
    return manifest, jobs, filesystems


class InputError(ValueError):
    """A URI that cannot be listed; the message says which and what to check."""


#: What to check when a URI cannot be listed, by scheme.
_HINTS = {
    "s3": "check the bucket name, the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile) and, "
    "for MinIO or another S3-compatible store, the endpoint (?endpoint_override=host:port&scheme=http "
    "or AWS_ENDPOINT_URL)",
    "gs": "check the bucket name and the credentials (GOOGLE_APPLICATION_CREDENTIALS)",
}
_HINTS["gcs"] = _HINTS["gs"]


def _listing(uri: str) -> tuple[Any, list[Any], str]:
    """The pyarrow file system of ``uri``, the image files under it (file infos, sorted) and the folder
    their names are relative to; :class:`InputError` says why it cannot be listed."""
    from pyarrow import fs

    scheme = uri.split("://", 1)[0].lower()
    hint = _HINTS.get(scheme)
    try:
        filesystem, root = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
        if info.type == fs.FileType.File:
            return filesystem, [info], posixpath.dirname(root)
        if info.type != fs.FileType.Directory:
            raise InputError(f"{_without_query(uri)}: no such file or folder" + (f"; {hint}" if hint else ""))
        entries = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    except (OSError, ValueError) as exc:  # ArrowInvalid (a ValueError): an unknown scheme, a malformed URI
        if isinstance(exc, InputError):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Unrecognized filesystem type" in reason:
            hint = "use a local path or an s3://, gs:// or file:// URI"
        raise InputError(f"cannot list {_without_query(uri)}: {reason}" + (f"; {hint}" if hint else "")) from exc
    images = [
        e for e in entries
        if e.type == fs.FileType.File and posixpath.splitext(e.path)[1].lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in posixpath.relpath(e.path, root).split("/"))
    ]
    return filesystem, sorted(images, key=lambda e: e.path), root


def _without_query(uri: str) -> str:
    """``uri`` as shown to the user: without its ``?query`` (endpoint options, possibly secrets)."""
    return uri.split("?", 1)[0]


def plan_uris(
    uris: Sequence[str], output_dir: Path, suffix: str, manifest: Manifest, overwrite: bool,
    local_jobs: Sequence[Job] = (),
) -> tuple[list[Job], dict[str, Any]]:
    """Jobs for the image files under ``uris``, named as the default command names a folder's files,
    and the pyarrow file system to read each job's key with (its key is ``scheme://`` and that
    file system's path; a file listed by two URIs is one job). ``local_jobs``, planned already, keep
    their names, and a ``file://`` URI of one of their files is that job, not a second one.
    :class:`InputError` if a URI cannot be listed."""
    jobs: list[Job] = []
    filesystems: dict[str, Any] = {}
    planned = {manifest.key(job.output_name) for job in local_jobs if job.output_name and job.output is not None}
    local_keys = {manifest.key(job.key) for job in local_jobs if job.key}
    for uri in uris:
        scheme = uri.split("://", 1)[0]
        filesystem, files, root = _listing(uri)
        for info in files:
            rel = posixpath.relpath(info.path, root)
            key = f"{scheme}://{info.path}"
            if key in filesystems or (scheme.lower() == "file" and _local_key(info.path, manifest) in local_keys):
                continue
            filesystems[key] = filesystem
            job = Job(Path(rel), output_name=rel, key=key, size=info.size or 0, mtime_ns=info.mtime_ns or 0)
            name = manifest.output_for(key, suffix)
            if name is None or manifest.key(name) in planned:
                name = new_output_name(job, output_dir, suffix, manifest, local_keys, planned, overwrite)
            planned.add(manifest.key(name))
            job.output_name, job.output = name, output_dir / name
            job.skip = edited_output(job, manifest, overwrite)
            jobs.append(job)
    return jobs, filesystems


def _local_key(path: str, manifest: Manifest) -> str:
    """A ``file://`` URI's path as the default command keys that file (resolved)."""
    try:
        return manifest.key(str(Path(path).resolve(strict=True)))
    except (OSError, RuntimeError):
        return manifest.key(path)


def _run(args: argparse.Namespace, manifest, jobs, filesystems, output, constructor) -> int:
    from inspyrenet_lite.integrations.ray import RayJobRunner

    status = remove.prepare_output(args.output, manifest, jobs)
    if status:
        return status
    for job in jobs:
        if job.error is None and remove.video_cli.is_video(job.source):
            job.error = "videos are not handled by `inspyrenet-lite ray`; use the default command"
    reporter = _Reporter()
    runner = RayJobRunner(
        manifest, output, constructor, batch_size=args.batch_size, actors=args.actors, num_gpus=args.num_gpus,
        skip_existing=args.skip_existing, retry_failed=args.retry_failed, reporter=reporter,
    )
    with contextlib.ExitStack() as quiet:
        if args.quiet:  # Ray's C++ core writes to file descriptor 2 itself, past Python's logging
            quiet.enter_context(native_stderr_silenced())
            quiet.callback(_shutdown_ray)  # before stderr comes back: shutting down logs too
        return _run_on_ray(args, runner, jobs, filesystems)


def _shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to the null device while Python's
    ``sys.stderr`` (and the logging handlers writing to it) keep the terminal."""
    sys.stderr.flush()
    terminal = os.dup(2)
    python_stderr = sys.stderr
    kept = os.fdopen(os.dup(terminal), "w", buffering=1, encoding=python_stderr.encoding, errors="backslashreplace")
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is python_stderr]
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    sys.stderr = kept
    for handler in handlers:
        handler.setStream(kept)
    try:
        yield
    finally:
        kept.flush()
        os.dup2(terminal, 2)
        os.close(terminal)
        sys.stderr = python_stderr
        for handler in handlers:
            handler.setStream(python_stderr)
        kept.close()


def _run_on_ray(args: argparse.Namespace, runner, jobs, filesystems) -> int:
    from inspyrenet_lite.jobs.run import DiskFull

    try:
        _start_ray(args.address, args.quiet)
    except Exception as exc:  # a wrong --address, a port in use...
        reason = str(exc).splitlines()[0]
        print(f"inspyrenet-lite: {reason}" if reason.startswith("cannot join") else
              f"inspyrenet-lite: cannot start or join Ray: {reason}", file=sys.stderr)
        return 2
    try:
        with remove.signals_as_interrupts():
            runner.run(jobs, filesystems)
    except KeyboardInterrupt as exc:
        print(f"inspyrenet-lite: interrupted: {runner.counts}", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, remove.Stopped) else 130
    except DiskFull as exc:
        print(f"inspyrenet-lite: stopped: no more files can be written ({exc}); {runner.counts}", file=sys.stderr)
        return 1
    except OSError as exc:  # Ray could not read an input: no access (credentials), a vanished object, the network
        print(f"inspyrenet-lite: cannot read the inputs: {_read_problem(exc, jobs)}; {runner.counts}", file=sys.stderr)
        return 2
    print(f"inspyrenet-lite: {runner.counts}", file=sys.stderr)
    return 1 if runner.counts.failed else 0


def _read_problem(exc: OSError, jobs: list[Job]) -> str:
    """Why Ray could not read: its message's first line, pyarrow's cause, and what to check."""
    reason = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__).split(". ", 1)[0]  # Ray's long advice
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and str(cause):
        reason += f" ({str(cause).splitlines()[0]})"
    schemes = {job.key.split("://", 1)[0].lower() for job in jobs if "://" in job.key}
    hints = [_HINTS[scheme] for scheme in sorted(schemes) if scheme in _HINTS]
    return "; ".join([reason, *hints])


def _shown(job: Job) -> str:
    """An input as the user gave it: its URI, or its path."""
    return job.key if "://" in job.key else str(job.source)


class _Reporter:
    def failed(self, job, error) -> None:
        print(f"failed: {_shown(job)}: {error}", file=sys.stderr)

    def skipped(self, job, reason: str) -> None:
        print(f"skipped: {_shown(job)}: {reason}", file=sys.stderr)

    def advanced(self, count: int) -> None:
        pass

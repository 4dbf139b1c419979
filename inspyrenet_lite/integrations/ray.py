"""Ray Data: remove backgrounds from a folder or bucket of images on a cluster (the ``[ray]`` extra).

:class:`BackgroundRemover` is a callable class for ``Dataset.map_batches``:
each actor loads the model once (GPU or CPU), takes a batch of raw file
bytes (the ``bytes`` column of ``ray.data.read_binary_files``) of any mix of
sizes, decodes and resizes inside the actor (Ray's tensor columns cannot hold
images of different sizes, and bytes are smaller in the object store), and
returns encoded results (``returns="encoded"``) or uint8 arrays
(``returns="array"``). A file that cannot be decoded or processed gets its
message in the ``error`` column and an empty result; the job goes on.

Recipe::

    import ray
    from inspyrenet_lite.integrations.ray import BackgroundRemover, map_batches_options

    ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
    out = ds.map_batches(BackgroundRemover, fn_constructor_kwargs={"model": "fast", "type": "white"},
                         batch_size=8, **map_batches_options(actors=4, num_gpus=1))
    for row in out.iter_rows(): ...   # row["path"], row["result"] (bytes), row["error"]

:func:`map_batches_options` spells the actor pool as the installed Ray wants
it (``compute=ActorPoolStrategy(size=n)`` from Ray 2.51, ``concurrency=n``
before).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from inspyrenet_lite.jobs.parallel import encode, write_result
from inspyrenet_lite.jobs.run import ImageOutput, process_batch

logger = logging.getLogger(__name__)

#: Images per ``map_batches`` call when none is given: bounded, so an actor's batch stays small in memory.
DEFAULT_BATCH_SIZE = 8
#: The first Ray release that deprecates ``concurrency=`` in favour of ``compute=ActorPoolStrategy(...)``.
COMPUTE_SINCE = (2, 51)


def _version_numbers(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def map_batches_options(
    actors: int = 1, num_gpus: float | None = None, ray_version: str | None = None, num_cpus: float | None = None
) -> dict:
    """``map_batches`` keyword arguments for a pool of ``actors`` actors, in the installed Ray's spelling
    (``num_cpus``/``num_gpus``: each actor's share, if given)."""
    if actors < 1:
        raise ValueError(f"actors must be at least 1, got {actors}")
    if ray_version is None:
        import ray

        ray_version = ray.__version__
    options: dict[str, Any] = {}
    if _version_numbers(ray_version) >= COMPUTE_SINCE:
        from ray.data import ActorPoolStrategy

        options["compute"] = ActorPoolStrategy(size=actors)
    else:
        options["concurrency"] = actors
    if num_gpus:
        options["num_gpus"] = num_gpus
    if num_cpus is not None:
        options["num_cpus"] = num_cpus
    return options


def actor_cpus(actors: int, cluster_cpus: float) -> float:
    """Each actor's CPU share: one, unless the actors would take every CPU of the cluster and leave
    none for the read tasks that feed them (Ray Data then waits for ever, e.g. two actors on two CPUs)."""
    return min(1.0, max(0.1, (cluster_cpus - 1) / actors)) if cluster_cpus > 1 else 0.5


class BackgroundRemover:
    """A ``map_batches`` callable: the model is loaded once per actor.

    Args:
        model: a model name, Hub repo or ``save_pretrained`` folder (as :class:`~inspyrenet_lite.Remover`).
        device: torch device (default: the actor's GPU if Ray gave it one, else CPU).
        type, threshold, hr_blend, reverse: the output (as ``Remover.process``).
        format, quality: how ``returns="encoded"`` results are encoded (Pillow format name).
        returns: ``"encoded"`` (bytes in ``format``) or ``"array"`` (uint8 arrays, HxW for maps, HxWx3/4 else).
        column: the input column of raw bytes (``read_binary_files``'s ``bytes``).
        remover_options: other :class:`~inspyrenet_lite.Remover` arguments (``resize``, ``precision``...).

    Output columns: the input's columns other than the bytes (e.g. ``path``), ``result``
    (bytes, or an array) and ``error`` (``""`` when the file went well).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        type: Any = "rgba",
        threshold: float | None = None,
        hr_blend: float | None = None,
        reverse: bool = False,
        format: str = "PNG",
        quality: int | None = None,
        returns: str = "encoded",
        column: str = "bytes",
        remover_options: dict[str, Any] | None = None,
    ) -> None:
        from inspyrenet_lite.compositing import parse_output_type
        from inspyrenet_lite.remover import Remover

        if returns not in ("encoded", "array"):
            raise ValueError(f"returns must be 'encoded' or 'array', got {returns!r}")
        self.remover = Remover(model=model, device=device, **(remover_options or {}))
        spec = parse_output_type(type, max_pixels=self.remover.max_pixels)
        self.output = ImageOutput(spec, threshold, hr_blend, reverse, format.upper(), quality)
        self.returns = returns
        self.column = column

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """One batch (a dict of columns, Ray's ``numpy`` batch format) in, the same rows out."""
        from inspyrenet_lite.image_io import load_image

        raw = list(batch[self.column])
        results: list[Any] = [None] * len(raw)
        errors = [""] * len(raw)
        decoded, where = [], []
        for i, data in enumerate(raw):
            try:
                decoded.append(load_image(bytes(data), max_pixels=self.remover.max_pixels).rgb)
                where.append(i)
            except Exception as exc:  # a corrupt file or a non-image: reported, the job goes on
                errors[i] = str(exc)
        for i, result in zip(where, self._process(decoded), strict=True):
            try:
                if isinstance(result, Exception):
                    raise result
                results[i] = encode(result, self.output) if self.returns == "encoded" else np.asarray(result)
            except Exception as exc:
                errors[i] = str(exc)
        empty: Any = b"" if self.returns == "encoded" else np.zeros((0, 0), np.uint8)
        out = {name: list(values) for name, values in batch.items() if name != self.column}
        out["result"] = [empty if r is None else r for r in results]
        out["error"] = errors
        return out

    def _process(self, images: list[Any]) -> list[Any]:
        return process_batch(self.remover, images, self.output)


class RayJobRunner:
    """Runs planned jobs (:func:`inspyrenet_lite.jobs.collect_jobs`) through Ray Data into their outputs.

    The driver keeps the output folder's manifest with the one-process runner's
    resume rules (a :class:`~inspyrenet_lite.jobs.run.JobRunner` decides what is
    to do and records), reads the inputs' bytes with ``read_binary_files``, and
    writes each result as it streams back (``iter_batches``: bounded memory).
    """

    def __init__(
        self,
        manifest: Any,
        output: ImageOutput,
        constructor: dict[str, Any],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        actors: int = 1,
        num_gpus: float | None = None,
        skip_existing: bool = False,
        retry_failed: bool = False,
        reporter: Any = None,
    ) -> None:
        from inspyrenet_lite.jobs.run import JobRunner

        self.book = JobRunner(
            None, manifest, output, skip_existing=skip_existing, retry_failed=retry_failed, reporter=reporter,
            model=constructor_identity(constructor),
        )
        self.constructor = constructor
        self.batch_size = batch_size
        self.actors = actors
        self.num_gpus = num_gpus

    @property
    def counts(self) -> Any:
        return self.book.counts

    def run(self, jobs: list[Any], filesystems: Mapping[str, Any] | None = None) -> Any:
        """Process ``jobs``; ``KeyboardInterrupt`` or an ``OSError`` of the reads records the jobs in
        flight ``interrupted`` (a resumed run redoes them) and is raised again.

        ``filesystems`` maps the key of a URI job (``scheme://path``) to the pyarrow file system
        that reads ``path`` (e.g. an ``S3FileSystem`` with an ``endpoint_override``); other jobs'
        keys are read as Ray resolves them itself.
        """
        import ray

        book = self.book
        todo = []
        for job in (job for job in jobs if book.to_do(job)):
            problem = unreadable_by_ray(job.key)
            if problem is None:
                todo.append(job)
            else:  # one failed line for it; Ray would stop the whole dataset on it
                book.settle(job, ValueError(problem), None)
        book.manifest.folder.mkdir(parents=True, exist_ok=True)
        by_path = {job.key: job for job in todo}
        by_path.update({job.key.split("://", 1)[1]: job for job in todo if "://" in job.key})  # Ray drops the scheme
        if not todo:
            return book.counts
        dataset = _read(todo, filesystems or {})  # OSError (no access, no such object) before anything is noted
        for job in todo:
            book.note(job, "started")
        book.in_flight = list(todo)
        cpus = actor_cpus(self.actors, ray.cluster_resources().get("CPU", 1.0))
        mapped = dataset.map_batches(
            BackgroundRemover, fn_constructor_kwargs=self.constructor, batch_size=self.batch_size,
            batch_format="numpy", **map_batches_options(self.actors, self.num_gpus, num_cpus=cpus),
        )
        try:
            for batch in mapped.iter_batches(batch_size=self.batch_size, batch_format="numpy"):
                for path, result, error in zip(batch["path"], batch["result"], batch["error"], strict=True):
                    job = _job_for(by_path, str(path))
                    failure = RuntimeError(str(error)) if str(error) else None
                    write = None if failure else (lambda done, job=job, data=bytes(result): write_result(job, data, done))
                    book.settle(job, failure, write)
                    book.reporter.advanced(1)
        except (KeyboardInterrupt, OSError):  # OSError: a read failed mid-way (network, access): redo them next time
            book.interrupt_in_flight()
            raise
        finally:
            book.in_flight = []
        return book.counts


def unreadable_by_ray(key: str) -> str | None:
    """Why Ray Data cannot read the input ``key`` (a local path; URIs are checked when listed), or None.

    A file gone since planning, or a name Arrow cannot carry (not UTF-8) or Ray's path handling splits
    (a newline or TAB), would make ``read_binary_files`` fail the whole run."""
    if "://" in key:
        return None
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8, which Ray cannot read; rename it or use the default command"
    if "\n" in key or "\t" in key or "\r" in key:
        return "its name holds a newline or TAB, which Ray cannot read; rename it or use the default command"
    if not os.path.isfile(key):
        return "it was removed or moved after the run was planned"
    return None


def constructor_identity(constructor: Mapping[str, Any]) -> dict[str, str | None]:
    """The model part of the outputs' fingerprints (:func:`~inspyrenet_lite.jobs.run.model_identity`) for
    actors built with :class:`BackgroundRemover`'s ``constructor`` arguments, told without loading the model
    on the driver: the weights' digest where they are a local file (``ckpt``, ``$INSPYRENET_LITE_CKPT``
    or a checkpoint file as the model), else unknown (the name decides)."""
    from inspyrenet_lite import model_source
    from inspyrenet_lite.jobs.run import model_identity
    from inspyrenet_lite.predictor import inference_defaults
    from inspyrenet_lite.weights import ENV_CKPT

    options = dict(constructor.get("remover_options") or {})
    name = model_source.pick_name(constructor.get("model"), None)
    ckpt = options.get("ckpt") or (os.environ.get(ENV_CKPT) if name in model_source.MODELS else None)
    local = ckpt or (name if os.path.isfile(name) else None)
    resize = options.get("resize") or inference_defaults(model_source.MODELS.get(name))["resize"]
    return model_identity(name, local, options.get("precision", "fp32"), resize)


def _read(jobs: list[Any], filesystems: Mapping[str, Any]) -> Any:
    """One dataset of the jobs' bytes, each read with its own file system (a union where they differ:
    Ray reads every path of one call with one file system)."""
    import ray

    groups: dict[int, tuple[Any, list[str]]] = {}
    for job in jobs:
        filesystem = filesystems.get(job.key)
        path = job.key.split("://", 1)[1] if filesystem is not None else job.key
        groups.setdefault(id(filesystem), (filesystem, []))[1].append(path)
    datasets = [
        ray.data.read_binary_files(paths, filesystem=filesystem, include_paths=True)
        for filesystem, paths in groups.values()
    ]
    return datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]


def _job_for(by_path: dict[str, Any], path: str) -> Any:
    """The job of a row's ``path`` (Ray may drop the leading ``/`` of a local path)."""
    return by_path.get(path) or by_path["/" + path.lstrip("/")]

"""Whether a ``--device`` name can run a model here: shared by the commands that take one."""

from __future__ import annotations


def device_problem(name: str | None, flag: str = "--device") -> str | None:
    """Why device ``name``, given with option ``flag``, cannot run a model here (None if it can or is not given).

    The check itself is :func:`inspyrenet_lite.predictor.device_problem` (``Remover`` makes the same one);
    torch is imported only once a device is named, so ``--help`` stays fast.
    """
    if name is None:
        return None
    from inspyrenet_lite.predictor import device_problem as problem

    return problem(name, flag)

"""Whether a ``--device`` name can run a model here: shared by the commands that take one."""

from __future__ import annotations


def device_problem(name: str | None, flag: str = "--device") -> str | None:
    """Why device ``name``, given with option ``flag``, cannot run a model here (None if it can)."""
    if name is None:
        return None
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        return f"{flag} {name!r} is not a torch device ({exc}); use e.g. cpu, cuda, cuda:1 or mps"
    if device.type == "meta":
        return f"{flag} meta holds no data and cannot run a model; use cpu, cuda or mps"
    try:
        torch.ones(1, device=device).add(1).cpu()
    except Exception as exc:  # not compiled in, no such GPU, driver problems...
        return f"{flag} {name!r} cannot run here ({str(exc).splitlines()[0]}); use cpu, or omit {flag}"
    return None

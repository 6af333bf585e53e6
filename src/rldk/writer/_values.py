"""How the writer reads the values it is given: tensors, numpy scalars, text, strictness."""
from __future__ import annotations


# --------------------------------------------------------------- value helpers
def _numel(v) -> int:
    numel = getattr(v, "numel", None)
    if callable(numel):
        return numel()
    size = getattr(v, "size", None)
    return size if isinstance(size, int) else (1 if not hasattr(v, "shape") else -1)


def _fetch_together(values: dict, names: list, out: dict) -> None:
    """Copy one-element accelerator tensors to the host in a single transfer."""
    import torch

    try:
        stacked = torch.stack([values[n].detach().reshape(()).to(torch.float64) for n in names])
        for name, v in zip(names, stacked.cpu().tolist()):
            out[name] = v
    except Exception:  # mixed dtypes that cannot stack: one by one, still never raising
        for name in names:
            try:
                out[name] = values[name].item()
            except Exception:
                out[name] = repr(values[name])


def _scalar(v):
    from rldk.writer._encode import scalar_fields

    return scalar_fields(v)


def _text(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)


def _check_strict_step(step) -> None:
    if not isinstance(step, int) or isinstance(step, bool):
        raise ValueError(f"rldk strict mode: step {step!r} is not an integer")


def _check_strict(values: dict) -> None:
    from rldk.writer._encode import scalar_fields

    for name, v in values.items():
        problem = scalar_fields(v)[3]
        if problem is not None:
            raise ValueError(f"rldk strict mode: metric {name!r}: {problem}")


LAYOUTS = ("flat", "hive")



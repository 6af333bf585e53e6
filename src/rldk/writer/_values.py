"""How the writer reads the values it is given: tensors, numpy scalars, text, strictness."""
from __future__ import annotations

from rldk.writer._limits import _PLAIN


# --------------------------------------------------------------- value helpers
def _snapshot(values: dict, strict: bool) -> dict:
    """Read tensors and arrays now (they may change in place before encoding); ``values``
    is the writer's own copy.

    One-element tensors on an accelerator are fetched together: one
    device-to-host copy per call and device, not one sync per value.
    """
    if strict:
        _check_strict(values)
    out = values
    on_device: dict = {}
    for name, v in values.items():
        if type(v) in _PLAIN or not hasattr(v, "item"):
            continue
        device = getattr(v, "device", None)
        if device is not None and getattr(device, "type", "cpu") != "cpu" and _numel(v) == 1:
            on_device.setdefault(device, []).append(name)
        elif _numel(v) == 1:
            try:
                out[name] = v.item()
            except Exception:  # stored as text by the encoder, never raised
                out[name] = repr(v)
        elif hasattr(v, "shape"):
            out[name] = f"<{type(v).__name__} shape={tuple(v.shape)}>"
    for names in on_device.values():
        _fetch_together(values, names, out)
    return out


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



"""Choosing a compute device by name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

One picker for extractors and analyses alike. torch is imported only when a device
is resolved (the core does not depend on it).
"""

from __future__ import annotations

import re
from typing import Any

from actstore.errors import ParameterError

_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device(name: str, parameter: str = "device") -> str:
    """``name`` if it spells a device (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

    Examples
    --------
    >>> check_device("cuda:1")
    'cuda:1'
    >>> check_device("gpu")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: device must be auto, cpu, cuda or cuda:N, got 'gpu'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ParameterError(parameter, f"must be auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def resolve_device(name: str, parameter: str = "device") -> Any:
    """The ``torch.device`` for ``name``: ``auto`` is CUDA where available, else CPU.

    Raises :class:`~actstore.errors.ParameterError` for a device that cannot be used.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    check_device(name, parameter)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(parameter, f"{name!r} asked for, but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ParameterError(
                parameter,
                f"{name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist",
            )
    return device

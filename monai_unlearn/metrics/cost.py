# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Wall time and peak memory of a run, for the cost comparison of a revision against retraining.

Peak memory is measured where the work happens:

- on CUDA devices, ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``: the peak of
  tensor memory allocated by PyTorch on that device during the window;
- on the host, the peak resident set size (RSS) of the process. On Linux the kernel's high-water mark ``VmHWM`` is
  reset at the start of the window (by writing ``5`` to ``/proc/self/clear_refs``) and read at its end, so the value is
  the peak within the window. Where that reset is unavailable (other systems, restricted containers) the value is
  ``resource.getrusage(...).ru_maxrss``, the peak over the whole process lifetime, and ``rss_scope`` records it.

``tracemalloc`` is not used: it sees only allocations made through Python's allocator, not the tensors that torch
allocates, so it would miss most of a network's memory.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["RunCost", "CostMonitor", "peak_rss_bytes", "reset_peak_rss"]

_STATUS_FILE = "/proc/self/status"
_CLEAR_REFS_FILE = "/proc/self/clear_refs"


def reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark (Linux); return False where that is not possible."""
    try:
        with open(_CLEAR_REFS_FILE, "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """Return the RSS high-water mark in bytes: ``VmHWM`` on Linux, else ``ru_maxrss`` (None if neither exists)."""
    try:
        with open(_STATUS_FILE, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (AttributeError, OSError):
        return None
    # ru_maxrss is in kibibytes on Linux and in bytes on macOS.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


@dataclass
class RunCost:
    """Cost of a run.

    Attributes:
        wall_seconds: elapsed wall-clock time in seconds.
        peak_rss_bytes: peak resident set size of the process, in bytes (None where unavailable).
        rss_scope: ``"window"`` when the peak is that of the measured window, ``"process"`` when it is the peak over
            the process lifetime (no reset possible), ``"unavailable"`` otherwise.
        peak_cuda_bytes: peak tensor memory allocated by PyTorch on the CUDA device, in bytes; None on CPU.
        device: the device the run used.
    """

    wall_seconds: float
    peak_rss_bytes: int | None
    rss_scope: str
    peak_cuda_bytes: int | None
    device: str

    @property
    def peak_memory_bytes(self) -> int | None:
        """The peak memory of the run's device: CUDA tensor memory on a GPU, the process RSS on the CPU."""
        return self.peak_cuda_bytes if self.peak_cuda_bytes is not None else self.peak_rss_bytes

    def to_dict(self) -> dict[str, Any]:
        """Return the cost as plain JSON-ready values, including ``peak_memory_bytes``."""
        return {**asdict(self), "peak_memory_bytes": self.peak_memory_bytes}


class CostMonitor:
    """Measure wall time and peak memory between :meth:`start` and :meth:`stop`; also usable as a context manager.

    Args:
        device: the device of the run; peak CUDA memory is measured when it is a CUDA device.

    Note:
        The RSS high-water mark is per process, so monitors whose windows overlap reset each other's peak.
    """

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._is_cuda = self.device.type == "cuda" and torch.cuda.is_available()
        self._started_at: float | None = None
        self._rss_peak: int | None = None
        self._cuda_peak: int | None = None
        self._rss_scope = "unavailable"
        self.cost: RunCost | None = None

    def reset_peaks(self) -> None:
        """Reset the RSS high-water mark and the CUDA peak, so that later samples see only later allocations."""
        self._rss_scope = "window" if reset_peak_rss() else "process"
        if self._is_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def start(self) -> CostMonitor:
        """Reset the memory peaks and start the clock."""
        self.reset_peaks()
        self._rss_peak = self._cuda_peak = None
        self.cost = None
        if self._is_cuda:
            torch.cuda.synchronize(self.device)
        self._started_at = time.perf_counter()
        return self

    def sample(self) -> None:
        """Fold the current memory peaks into the recorded maxima (cheap: no device synchronisation)."""
        rss = peak_rss_bytes()
        if rss is not None:
            self._rss_peak = rss if self._rss_peak is None else max(self._rss_peak, rss)
        if self._is_cuda:
            cuda = int(torch.cuda.max_memory_allocated(self.device))
            self._cuda_peak = cuda if self._cuda_peak is None else max(self._cuda_peak, cuda)

    def stop(self) -> RunCost:
        """Stop the clock, sample the peaks and return the cost of the window.

        Raises:
            RuntimeError: when the monitor was not started.
        """
        if self._started_at is None:
            raise RuntimeError("CostMonitor.stop() was called before start().")
        if self._is_cuda:
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self._started_at
        self._started_at = None
        self.sample()
        self.cost = self.result(seconds)
        return self.cost

    def result(self, wall_seconds: float) -> RunCost:
        """Return a :class:`RunCost` with ``wall_seconds`` and the peaks sampled so far."""
        return RunCost(
            wall_seconds=float(wall_seconds),
            peak_rss_bytes=self._rss_peak,
            rss_scope=self._rss_scope if self._rss_peak is not None else "unavailable",
            peak_cuda_bytes=self._cuda_peak,
            device=str(self.device),
        )

    def __enter__(self) -> CostMonitor:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

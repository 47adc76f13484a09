# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Handler that records the wall time of a training run, so that a later revision can be compared with it."""

from __future__ import annotations

import datetime
import logging
import os
import time
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_unlearn.metrics.cost import CostMonitor
from monai_unlearn.utils import atomic_write_json

__all__ = ["TrainingTimeRecorder"]


class TrainingTimeRecorder:
    """Write the wall time of a run (``Events.STARTED`` to ``Events.COMPLETED``) to a JSON file.

    Attach it to a bundle's training workflow; the unlearning report reads the file to compare the revision's cost
    with the original training. The record contains ``wall_time_seconds``, ``epochs``, ``iterations``, ``device``,
    the completion time in UTC, and the peak memory of the run: ``peak_memory_bytes`` (CUDA tensor memory on a GPU,
    the process RSS on the CPU), ``peak_rss_bytes``, ``rss_scope`` and ``peak_cuda_bytes`` (see
    :mod:`monai_unlearn.metrics.cost`). It also contains ``process_time_seconds``, the CPU time of the training
    process, which depends less on other processes sharing the machine than the wall time does.

    Args:
        output_file: path of the JSON record, for example ``$@ckpt_dir + '/training_time.json'``.
        name: name of the handler's logger.
    """

    def __init__(self, output_file: str | os.PathLike, name: str = "TrainingTimeRecorder") -> None:
        self.output_file = output_file
        self.logger = logging.getLogger(name)
        self._start: float | None = None
        self._monitor: CostMonitor | None = None
        self._process_start: float | None = None

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine``'s STARTED and COMPLETED events."""
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self._monitor = CostMonitor(getattr(engine.state, "device", None)).start()
        self._start = time.perf_counter()
        self._process_start = time.process_time()

    def _completed(self, engine: Engine) -> None:
        if self._start is None:
            raise RuntimeError("TrainingTimeRecorder saw COMPLETED without STARTED; attach it before running.")
        seconds = time.perf_counter() - self._start
        cost = self._monitor.stop() if self._monitor is not None else None
        device = getattr(engine.state, "device", None)
        record: dict[str, Any] = {
            "wall_time_seconds": seconds,
            "process_time_seconds": time.process_time() - (self._process_start or 0.0),
            "epochs": int(engine.state.epoch),
            "iterations": int(engine.state.iteration),
            "device": str(device) if device is not None else None,
            "torch_threads": torch.get_num_threads(),
            "completed_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if cost is not None:
            record.update(
                peak_memory_bytes=cost.peak_memory_bytes,
                peak_rss_bytes=cost.peak_rss_bytes,
                rss_scope=cost.rss_scope,
                peak_cuda_bytes=cost.peak_cuda_bytes,
            )
        atomic_write_json(self.output_file, record)
        self.logger.info("Training took %.1f s over %d epochs; recorded in %s.", seconds, record["epochs"], self.output_file)

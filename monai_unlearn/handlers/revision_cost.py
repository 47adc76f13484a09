# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Handler that measures the wall time and peak memory of the passes of a revision, without the evaluations.

Evaluation handlers run at ``Events.STARTED``, ``Events.EPOCH_COMPLETED`` and ``Events.COMPLETED``; their work is not
part of the revision's cost. This handler therefore counts, for each pass, ignite's epoch time as it is when
``EPOCH_COMPLETED`` fires (``engine.state.times["EPOCH_COMPLETED"]``: the ``EPOCH_STARTED`` handlers, the data loading
and every outer step with its iteration handlers, but none of the ``EPOCH_COMPLETED`` handlers). Peak memory (see
:mod:`monai_unlearn.metrics.cost`) is reset when each pass starts and sampled after each iteration.
"""

from __future__ import annotations

import logging
from typing import Any

from ignite.engine import Engine, Events

from monai_unlearn.metrics.cost import CostMonitor, RunCost

__all__ = ["RevisionCostRecorder"]


class RevisionCostRecorder:
    """Measure the cost of the passes of a run: wall time and peak memory (host RSS and CUDA).

    The result is in :attr:`cost` after each pass and in ``engine.state.revision_cost`` (a dict, see
    :meth:`~monai_unlearn.metrics.RunCost.to_dict`).

    Note:
        Work a method does in its ``on_pass_completed`` hook (at ``EPOCH_COMPLETED``) or ``finalize`` hook (at
        ``COMPLETED``) is not counted; the boundary methods do no work there.

    Args:
        name: name of the handler's logger.
    """

    def __init__(self, name: str = "RevisionCostRecorder") -> None:
        self.logger = logging.getLogger(name)
        self.monitor: CostMonitor | None = None
        self.seconds = 0.0
        self.passes = 0
        self.cost: RunCost | None = None

    def attach(self, engine: Engine) -> None:
        """Register the measurement on ``engine``'s pass and iteration events."""
        engine.add_event_handler(Events.EPOCH_STARTED, self.pass_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.pass_completed)

    def pass_started(self, engine: Engine) -> None:
        """Reset the memory peaks for the pass."""
        if self.monitor is None:
            self.monitor = CostMonitor(getattr(engine.state, "device", None))
        self.monitor.reset_peaks()

    def iteration_completed(self, engine: Engine) -> None:
        """Sample the memory peaks."""
        if self.monitor is not None:
            self.monitor.sample()

    def pass_completed(self, engine: Engine) -> None:
        """Add the pass's time and publish the cost so far."""
        if self.monitor is None:
            return
        self.seconds += float(engine.state.times.get(Events.EPOCH_COMPLETED.name) or 0.0)
        self.passes += 1
        self.cost = self.monitor.result(self.seconds)
        engine.state.revision_cost = {**self.cost.to_dict(), "passes": self.passes}

    def state_dict(self) -> dict[str, Any]:
        """Return the time and pass count measured so far, so that a resumed run adds to them."""
        return {"seconds": self.seconds, "passes": self.passes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the values returned by :meth:`state_dict`."""
        self.seconds = float(state.get("seconds", 0.0))
        self.passes = int(state.get("passes", 0))

"""What a recording says about the cell before any model is fitted: the step protocol, sweep quality
control, passive properties and the f–I curve, and the search ranges they imply for a model."""

from .levels import noise_level_mV
from .steps import MIN_STEP_MS, StepEpoch, current_epochs, protocol_steps

__all__ = ["noise_level_mV", "StepEpoch", "current_epochs", "protocol_steps", "MIN_STEP_MS"]

"""What a recording says about the cell before any model is fitted: the step protocol, sweep quality
control, passive properties and the f–I curve, and the search ranges they imply for a model."""

from .levels import MIN_HYSTERESIS_MV, THRESHOLD_STEP_MV, noise_level_mV, recording_spike_levels
from .passive import CellProperties, fit_time_constant, measure_cell, passive_sweeps, sag_ratio
from .qc import QC_REASONS, QCConfig, QCReport, SweepQC, check_sweeps, sweep_spike_times
from .steps import MIN_STEP_MS, StepEpoch, current_epochs, protocol_steps

__all__ = ["noise_level_mV", "recording_spike_levels", "MIN_HYSTERESIS_MV", "THRESHOLD_STEP_MV", "StepEpoch", "current_epochs", "protocol_steps", "MIN_STEP_MS",
           "QCConfig", "SweepQC", "QCReport", "check_sweeps", "sweep_spike_times", "QC_REASONS",
           "CellProperties", "measure_cell", "fit_time_constant", "passive_sweeps", "sag_ratio"]

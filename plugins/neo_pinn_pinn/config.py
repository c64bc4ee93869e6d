"""The ``pinn`` backend's options: a frozen, typed configuration in groups that say what they control.

Every option keeps its own flat name (``PINN(rwf=False)``, ``--option rwf=false``); the groups only
organise them (``cfg.network.width`` or ``cfg["width"]``). A bad value raises
:class:`~neo_pinn.errors.ConfigurationError` naming the option and what it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

from neo_pinn.config import (BOOL, FINITE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, STRINGS,
                             BackendConfig, Check, OptionGroup, between, either, group, is_integer, is_number,
                             one_of, option, optional)

__all__ = ["PINNConfig", "EnsembleOptions", "NetworkOptions", "SegmentOptions", "PointOptions", "StageOptions",
           "RateOptions", "BalanceOptions", "ResidualOptions", "SlowStateOptions", "ScreenOptions", "OutputOptions"]

AUTO_OR_BOOL = one_of("auto", True, False)
SHARE_BELOW_ONE = Check(lambda x: is_number(x) and 0.0 <= x < 1.0, "give a number in [0, 1)")
AT_LEAST_ONE = Check(lambda x: is_number(x) and x >= 1.0, "give a number ≥ 1")
AT_LEAST_TWO_INT = Check(lambda x: is_integer(x) and x >= 2, "give an integer ≥ 2")


@dataclass(frozen=True)
class EnsembleOptions(OptionGroup):
    """How many members, where they start, and which of them make the estimate."""

    n_members: int = option(6, POSITIVE_INT, "Independent networks (and parameter starts) trained as one batch.")
    random_starts: str = option("jitter", one_of("bounds", "jitter"),
                                "Starts after the first: log-uniform within the bounds, or log-normal around member 0.")
    jitter: float = option(0.7, NON_NEGATIVE, "Spread (std of log θ) of 'jitter' starts.")
    accept_factor: float = option(1.25, AT_LEAST_ONE,
                                  "Members whose final loss ≤ accept_factor × the best make the estimate.")


@dataclass(frozen=True)
class NetworkOptions(OptionGroup):
    """Architecture of each member's time → state networks and their inputs."""

    width: int = option(64, POSITIVE_INT, "Hidden-layer width.")
    depth: int = option(3, POSITIVE_INT, "Number of hidden layers.")
    fourier_features: bool = option(True, BOOL, "Spectral and trainable Fourier features; off: local time only.")
    n_fourier: int = option(24, NON_NEGATIVE_INT, "Fixed frequencies taken from the voltage's spectrum.")
    n_trainable_frequencies: int = option(4, NON_NEGATIVE_INT,
                                          "Trainable frequencies per member, started at sub-harmonics.")
    max_frequency_hz: float = option(500.0, POSITIVE, "Highest spectral frequency used as a feature, Hz.")
    rwf: bool = option(True, BOOL, "Random weight factorization of every dense layer.")
    rwf_mean: float = option(0.5, FINITE, "Mean of the initial log-scale factors of the factorization.")
    rwf_std: float = option(0.1, NON_NEGATIVE, "Spread of the initial log-scale factors of the factorization.")
    gate_states: tuple | None = option(None, optional(STRINGS),
                                       "States kept in (0, 1) through a logistic; None: the model's gates.")


@dataclass(frozen=True)
class SegmentOptions(OptionGroup):
    """How each sweep is cut into segments, one network per segment, tied by continuity."""

    spikes_per_segment: float = option(2.0, NON_NEGATIVE, "Target spikes per segment (0: one segment per sweep).")
    segment_ms: float | None = option(None, optional(POSITIVE), "Fixed segment length instead, ms.")


@dataclass(frozen=True)
class PointOptions(OptionGroup):
    """Which samples of the recording each training step evaluates."""

    batch_points: int = option(256, POSITIVE_INT, "Random points per member and step, shared among its segments.")
    min_segment_points: int = option(48, POSITIVE_INT, "Lower limit of the points per segment and step.")
    spike_sampling: float | str = option("auto", either(one_of("auto"), SHARE_BELOW_ONE),
                                         "Share of points drawn on the spikes; 'auto': 0.5 where spikes are brief.")
    spike_sampling_ms: float = option(2.0, POSITIVE, "Width around fast samples that shares their weight, ms.")
    spike_sampling_below: float = option(0.03, between(0.0, 1.0),
                                         "Share of samples the spikes fill below which 'auto' samples them.")


@dataclass(frozen=True)
class StageOptions(OptionGroup):
    """The two training stages: voltage only (with the warm start), then physics-informed."""

    two_stage: bool = option(True, BOOL, "Fit the voltage alone before the physics stage.")
    warm_start_hidden: bool = option(True, BOOL, "In stage 1, pull hidden outputs towards the voltage-driven states.")
    warm_spinup: bool = option(True, BOOL,
                               "Start the voltage-driven states at one period's fixed point where the data repeat.")
    stage1_steps: int = option(1000, NON_NEGATIVE_INT, "Adam steps of stage 1.")
    stage2_steps: int = option(8000, POSITIVE_INT, "Adam steps of stage 2 (where the parameters are estimated).")
    warmup_steps: int = option(300, NON_NEGATIVE_INT, "Stage-2 steps over which the learning rates ramp up linearly.")
    param_delay: int = option(300, NON_NEGATIVE_INT, "Stage-2 steps before the parameters start to move.")


@dataclass(frozen=True)
class RateOptions(OptionGroup):
    """Learning rates and their exponential schedules."""

    lr_stage1: float = option(3e-3, POSITIVE, "Network learning rate of stage 1 (decays tenfold).")
    lr_net: float = option(1e-3, POSITIVE, "Network learning rate at the start of stage 2.")
    lr_net_final: float = option(5e-5, POSITIVE, "Network learning rate at the end of stage 2.")
    lr_params: float = option(2e-2, POSITIVE, "Parameter learning rate (log coordinates) at the start of stage 2.")
    lr_params_final: float = option(1e-4, POSITIVE, "Parameter learning rate at the end of stage 2.")
    separate_optimizers: bool = option(True, BOOL, "Own optimisers for networks and parameters; off: one Adam.")


@dataclass(frozen=True)
class BalanceOptions(OptionGroup):
    """Adaptive weights of the stage-2 loss terms (gradient-norm balancing)."""

    adaptive_weights: bool = option(True, BOOL, "Gradient-norm loss balancing; off: every term weighs 1.")
    balance_every: int = option(50, POSITIVE_INT, "Steps between weight updates.")
    balance_alpha: float = option(0.9, SHARE_BELOW_ONE, "Moving-average factor of the weights.")
    balance_eps: float = option(1e-3, POSITIVE, "ε of the weights (a weight is at most 1/ε).")


@dataclass(frozen=True)
class ResidualOptions(OptionGroup):
    """Form and normalisation of the physics residual of every state equation."""

    residual_form: str = option("strong", one_of("strong", "weak", "both"),
                                "Pointwise (du/dt − f), integral over short intervals, or both.")
    weak_samples: int = option(40, POSITIVE_INT, "Interval length of the integral form, in samples.")
    weak_intervals: int = option(16, POSITIVE_INT, "Intervals of the integral form per segment and step.")
    residual_norm: str = option("relative", one_of("relative", "fixed"),
                                "Also divide by the current spread of both sides ('relative'), or not.")
    relative_floor: float = option(1e-4, POSITIVE, "Floor of that spread (normalised units).")
    local_weights: bool = option(False, BOOL, "Weight the voltage residual by 1/(|dV/dt|/r_V + local_floor)².")
    local_floor: float = option(0.1, POSITIVE, "Floor of those local weights.")
    rate_scaled_residuals: bool | str = option("auto", AUTO_OR_BOOL,
                                               "Divide fast hidden states' residuals by their relaxation rate.")


@dataclass(frozen=True)
class SlowStateOptions(OptionGroup):
    """Hidden states on the burst time scale: their integral residual and held parameters."""

    slow_states: tuple | str = option("auto", either(one_of("auto"), STRINGS),
                                      "Slow hidden states (integral residual); 'auto': found from the warm start.")
    slow_points: int = option(128, AT_LEAST_TWO_INT, "Stratified quadrature points per slow interval.")
    slow_interval_isi: float = option(3.0, POSITIVE, "Length of the slow intervals, in median inter-spike intervals.")
    slow_intervals: int = option(4, POSITIVE_INT, "Slow intervals per segment and step.")
    slow_weight: float = option(1.0, NON_NEGATIVE, "Extra factor on the slow states' residual terms.")
    periodic_slow_states: bool = option(True, BOOL, "Where the voltage repeats, ask slow states to repeat too.")
    periodic_pairs: int = option(64, NON_NEGATIVE_INT, "Pairs of times one period apart per repeating sweep.")
    hold_slow_parameters: bool | str = option("auto", AUTO_OR_BOOL,
                                              "Hold parameters of slow states at their screened values in stage 2.")


@dataclass(frozen=True)
class ScreenOptions(OptionGroup):
    """The network-free parameter screen that replaces every member's start before training."""

    screen_candidates: int = option(64, NON_NEGATIVE_INT, "Candidates per member and round (0: no screen).")
    screen_rounds: int = option(6, POSITIVE_INT, "Rounds of the cross-entropy search.")
    screen_spread: float = option(1.0, NON_NEGATIVE, "Spread of the first round around the start (log units).")
    screen_interval_ms: float = option(1.0, POSITIVE, "Shortest interval of the integral-form voltage misfit, ms.")
    screen_smooth_ms: float = option(0.0, NON_NEGATIVE, "Smoothing of the screen's driving voltage, ms (0: none).")


@dataclass(frozen=True)
class OutputOptions(OptionGroup):
    """What is recorded and checked, and the resources used."""

    forward_check: bool = option(True, BOOL, "Simulate the fitted model under the recorded stimulus afterwards.")
    log_every: int = option(25, POSITIVE_INT, "Steps between history records and progress updates.")
    eval_chunk: int = option(4096, POSITIVE_INT, "Samples per segment evaluated at once in the final reconstruction.")
    num_threads: int | None = option(None, optional(POSITIVE_INT), "torch CPU threads during the fit; None: unchanged.")


@dataclass(frozen=True)
class PINNConfig(BackendConfig):
    """Options of the ``pinn`` backend, by group (every option also by its flat name)."""

    ensemble: EnsembleOptions = group(EnsembleOptions)
    network: NetworkOptions = group(NetworkOptions)
    segments: SegmentOptions = group(SegmentOptions)
    points: PointOptions = group(PointOptions)
    stages: StageOptions = group(StageOptions)
    rates: RateOptions = group(RateOptions)
    balance: BalanceOptions = group(BalanceOptions)
    residuals: ResidualOptions = group(ResidualOptions)
    slow: SlowStateOptions = group(SlowStateOptions)
    screen: ScreenOptions = group(ScreenOptions)
    output: OutputOptions = group(OutputOptions)

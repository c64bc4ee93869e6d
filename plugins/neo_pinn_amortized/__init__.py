"""``amortized``: an inverse map trained once on simulations, then instant estimates with calibrated intervals.

Rudi, Bessac & Lenzi (2022) train dense and convolutional networks on simulated FitzHugh–Nagumo traces with
AR(1) noise to map a trace straight to its parameters. This package builds that for any registered model:

* :mod:`.priors` — per-parameter priors (uniform, log-uniform, truncated normal, draws e.g. from a file), JSON
  round trip;
* :mod:`.training_set` — the generative model (:class:`GenerativeSpec`, :class:`Protocol`) and the batched
  simulation of a training set with noise;
* :mod:`.networks` — the paper's dense network and CNN and a residual CNN, each with a Gaussian head;
* :mod:`.train` — :class:`TrainConfig` and :func:`train_estimator`;
* :mod:`.estimator` — :class:`AmortizedEstimator`: predict, intervals, posterior samples, save/load of one
  folder (JSON manifest + plain ``.npz`` weights; nothing executed on load);
* :mod:`.reference` — independent scipy reference traces for tests and benchmarks;
* :mod:`.ood` — the out-of-distribution checks (training-set feature statistics, reconstruction);
* :mod:`.backend` — the ``amortized`` backend (:class:`Amortized`, options :class:`AmortizedConfig`),
  :func:`predict_traces` (an (N, T) array in, per-target means and stds out), :func:`amortized_init`
  (the warm start of another backend) and :func:`warm_start`, the initializer ``amortized`` of any fit
  (``neo_pinn.estimate(..., init="amortized:DIR")``, ``neo-pinn fit --init amortized:DIR``);
* :mod:`.recorded_protocol` — :func:`protocol_of_recording`: the protocol of one sweep of a recording (sampling,
  length, its step current as a stimulus spec), to train an estimator that reads it;
* :mod:`.cli_train` — the ``neo-pinn train`` command (registered through ``neo_pinn_register_commands``).

Importing this package imports none of them (torch-heavy): the names below load on first use.
"""

from __future__ import annotations

from importlib import import_module

__all__ = ["AmortizedEstimator", "TrainConfig", "train_estimator", "rudi2022_config", "GenerativeSpec", "Protocol",
           "Uniform", "LogUniform", "TruncatedNormal", "make_training_set", "reference_test_set", "Amortized",
           "AmortizedConfig", "ProtocolMismatchError", "predict_traces", "amortized_init", "load_estimator",
           "warm_start", "protocol_of_recording", "Draws"]

_LAZY = {"AmortizedEstimator": "estimator", "TrainConfig": "train", "train_estimator": "train",
         "rudi2022_config": "train", "GenerativeSpec": "training_set", "Protocol": "training_set",
         "make_training_set": "training_set", "Uniform": "priors", "LogUniform": "priors",
         "TruncatedNormal": "priors", "reference_test_set": "reference", "Amortized": "backend",
         "AmortizedConfig": "config", "ProtocolMismatchError": "backend", "predict_traces": "backend",
         "amortized_init": "backend", "load_estimator": "backend", "warm_start": "backend",
         "protocol_of_recording": "recorded_protocol", "Draws": "priors"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""A trained amortized inverse map: traces in, parameters with calibrated uncertainty out, instantly.

An :class:`AmortizedEstimator` holds a network of :mod:`.networks`, the generative model it was trained
to invert (:class:`~.training_set.GenerativeSpec`: model, preset, priors, noise, protocol) and the
normalisations. It is saved as **one folder**:

``manifest.json``
    Everything but the weights, as plain JSON: format version, model, preset, free parameters, priors,
    noise model, protocol (sampling interval, length, stimulus), normalisation (input shift/scale, each
    target's coordinate, per-target temperature), architecture name and options, training
    hyper-parameters, package versions, training and validation metrics (R², RMSE, coverage), the training
    traces' feature statistics of the out-of-distribution check (``ood``, :mod:`.ood`; format 2) and the
    SHA-256 of the weights file.
``weights.npz``
    The network's tensors as plain numeric arrays (``numpy.savez``).

Loading never executes anything from the folder: the manifest is JSON, the weights are read with
``numpy.load(..., allow_pickle=False)`` (an object array — pickled Python objects — is refused), and the
network is rebuilt from an architecture *name* of the fixed registry :data:`.networks.NETWORKS`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from scipy.special import ndtr, ndtri

from neo_pinn.errors import ConfigurationError, InputFormatError, InputPathError, OutputPathError

from .metrics import score, z_quantile
from .networks import NETWORKS, build_network
from .ood import FeatureStats
from .training_set import GenerativeSpec

__all__ = ["AmortizedEstimator", "FORMAT", "FORMATS", "MANIFEST", "WEIGHTS"]

#: the manifest's format tag (its version grows when the layout changes); 2 added ``ood`` (feature statistics)
FORMAT = "neo_pinn_amortized/2"
#: formats :meth:`AmortizedEstimator.load` reads (a format-1 estimator has no feature statistics: the
#: out-of-distribution feature check is then skipped, and says so)
FORMATS = ("neo_pinn_amortized/1", FORMAT)
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
#: traces per forward pass in predict (memory bound)
EVAL_BATCH = 1024


def package_versions() -> dict[str, str]:
    """Versions of the packages a trained estimator depends on (as installed)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("neo-pinn", "torch", "numpy", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class AmortizedEstimator:
    """A trained inverse map from traces to the targets' predictive distributions.

    Parameters
    ----------
    spec : GenerativeSpec
        What the network was trained to invert (targets: ``spec.target_names``).
    arch : str
        Architecture name in :data:`.networks.NETWORKS`.
    arch_options : mapping
        Its options (plain numbers or lists of numbers).
    network : torch.nn.Module
        The trained network (kept in eval mode).
    input_shift, input_scale : float
        Traces are fed as ``(v − shift) / scale`` (voltage unit of the model).
    temperature : array_like
        Per-target factor on the predicted standard deviation, fitted on the validation split (1: none).
    metrics : mapping, optional
        Training and validation scores (JSON-ready).
    training : mapping, optional
        Training hyper-parameters and facts (JSON-ready).
    versions : mapping, optional
        Package versions at training (default: the current ones).
    feature_stats : FeatureStats, optional
        Summary statistics of the training traces for the out-of-distribution check (:mod:`.ood`); None for
        an estimator of manifest format 1.
    """

    def __init__(self, spec: GenerativeSpec, arch: str, arch_options: Mapping[str, Any], network: torch.nn.Module, *,
                 input_shift: float, input_scale: float, temperature: Any = None,
                 metrics: Mapping[str, Any] | None = None, training: Mapping[str, Any] | None = None,
                 versions: Mapping[str, str] | None = None, feature_stats: FeatureStats | None = None) -> None:
        if arch not in NETWORKS:
            raise ConfigurationError(f"Unknown network {arch!r}; choose one of {', '.join(NETWORKS)}.")
        if not (math.isfinite(input_scale) and input_scale > 0 and math.isfinite(input_shift)):
            raise ConfigurationError("input_scale must be a positive number and input_shift a finite one.")
        self.spec = spec
        self.arch = arch
        self.arch_options = dict(arch_options)
        self.network = network.eval()
        self.input_shift, self.input_scale = float(input_shift), float(input_scale)
        P = len(spec.target_names)
        tau = np.ones(P) if temperature is None else np.asarray(temperature, dtype=float).reshape(-1)
        if tau.shape != (P,) or not np.all(np.isfinite(tau) & (tau > 0)):
            raise ConfigurationError(f"temperature needs {P} positive numbers (one per target).")
        self.temperature = tau
        self.metrics = dict(metrics or {})
        self.training = dict(training or {})
        self.versions = dict(versions or package_versions())
        if feature_stats is not None and not isinstance(feature_stats, FeatureStats):
            raise ConfigurationError("feature_stats must be a FeatureStats (neo_pinn_amortized.ood.feature_stats).")
        self.feature_stats = feature_stats

    # ------------------------------------------------------------------ facts
    @property
    def target_names(self) -> tuple[str, ...]:
        """What is estimated, in column order: the free parameters, then the noise parameters."""
        return self.spec.target_names

    @property
    def protocol(self):
        """The :class:`~.training_set.Protocol` a trace must follow."""
        return self.spec.protocol

    def __repr__(self) -> str:
        p = self.protocol
        return (f"AmortizedEstimator({self.spec.model}, targets={list(self.target_names)}, arch={self.arch!r}, "
                f"{p.n_samples} samples at {p.sample_dt_ms:g} ms)")

    # ------------------------------------------------------------------ inference
    def predict_scaled(self, traces: Any, dt_ms: float) -> tuple[np.ndarray, np.ndarray]:
        """Mean and calibrated std of every target in the scaled coordinate (N, P) each (float64)."""
        x = self.protocol.check(traces, dt_ms)
        device = next(self.network.parameters()).device
        means, stds = [], []
        self.network.eval()
        with torch.no_grad():
            for i in range(0, x.shape[0], EVAL_BATCH):
                xb = torch.as_tensor((x[i:i + EVAL_BATCH] - self.input_shift) / self.input_scale, device=device)
                m, lv = self.network(xb.float())
                means.append(m.double().cpu().numpy())
                stds.append(torch.exp(0.5 * lv).double().cpu().numpy())
        return np.concatenate(means), np.concatenate(stds) * self.temperature

    def _priors(self):
        return list(self.spec.target_priors.values())

    def predict(self, traces: Any, dt_ms: float) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of every target, in its canonical unit.

        Parameters
        ----------
        traces : array_like
            One trace (T,) or several (N, T): the recorded voltage (state 0, the model's unit) sampled
            as the estimator's protocol says (``protocol.n_samples`` samples from the sweep start).
        dt_ms : float
            The traces' sampling interval, ms.

        Returns
        -------
        mean, std : numpy.ndarray
            (N, P), columns in :attr:`target_names` order. The predictive distribution is Gaussian in the
            scaled coordinate; a log-uniform target is log-normal in its unit (its mean and std are given).

        Raises
        ------
        ConfigurationError
            Traces of another length or sampling interval than the protocol's (the message says which).
        """
        return self.physical(*self.predict_scaled(traces, dt_ms))

    def physical(self, mz: Any, sz: Any) -> tuple[np.ndarray, np.ndarray]:
        """Gaussians in the scaled coordinate (N, P) → mean and std in canonical units (N, P).

        A linear-coordinate target's mean is ``prior.unscale(mz)`` and its std ``sz × width``; a log-uniform
        target is log-normal in its unit, and its mean and std are those of that log-normal.
        """
        mz, sz = np.atleast_2d(np.asarray(mz, float)), np.atleast_2d(np.asarray(sz, float))
        mean, std = np.empty_like(mz), np.empty_like(sz)
        for k, prior in enumerate(self._priors()):
            if prior.log_scaled:
                mu_log = math.log(prior.low) + mz[:, k] * prior.width
                s_log = sz[:, k] * prior.width
                mean[:, k] = np.exp(mu_log + 0.5 * s_log**2)
                std[:, k] = mean[:, k] * np.sqrt(np.expm1(s_log**2))
            else:
                mean[:, k] = prior.unscale(mz[:, k])
                std[:, k] = sz[:, k] * prior.width
        return mean, std

    def evaluate(self, traces: Any, dt_ms: float, truth: Any) -> dict[str, Any]:
        """Scores against the true targets ``truth`` (N, P), canonical units, in :attr:`target_names` order.

        Returns
        -------
        dict
            ``n``, ``nll_scaled`` (mean Gaussian NLL in the scaled coordinate, constant dropped) and, per
            target, ``r2``, ``rmse`` (canonical unit), ``coverage_50``, ``coverage_90`` and ``mean_std_z``
            (see :func:`.metrics.score`).
        """
        mz, sz = self.predict_scaled(traces, dt_ms)
        truth = np.asarray(truth, dtype=float)
        if truth.shape != mz.shape:
            raise ConfigurationError(f"truth must have shape {mz.shape} (one column per target: "
                                     f"{', '.join(self.target_names)}); got {truth.shape}.")
        tz = np.stack([p.scale(truth[:, k]) for k, p in enumerate(self._priors())], 1)
        mean, _ = self.physical(mz, sz)
        nll = float(np.mean(np.log(sz) + 0.5 * ((tz - mz) / sz) ** 2))
        return {"n": int(truth.shape[0]), "nll_scaled": nll,
                "targets": score(truth, mean, tz, mz, sz, self.target_names)}

    def interval(self, traces: Any, dt_ms: float, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central ``level`` interval of every target, canonical units: (low, high), (N, P) each."""
        if not 0 < float(level) < 1:
            raise ConfigurationError(f"level={level!r}: give a probability between 0 and 1 (e.g. 0.9).")
        mz, sz = self.predict_scaled(traces, dt_ms)
        q = z_quantile(level)
        lo, hi = np.empty_like(mz), np.empty_like(mz)
        for k, prior in enumerate(self._priors()):
            lo[:, k] = prior.unscale(mz[:, k] - q * sz[:, k])
            hi[:, k] = prior.unscale(mz[:, k] + q * sz[:, k])
        return lo, hi

    def sample(self, traces: Any, n: int, dt_ms: float, seed: int | None = None) -> np.ndarray:
        """``n`` posterior draws per trace, (N, n, P), canonical units.

        Each target is drawn from its Gaussian in the scaled coordinate truncated to the prior's support
        (the prior has no mass outside it), by inverting the CDF; targets are drawn independently.
        """
        return self.sample_scaled(*self.predict_scaled(traces, dt_ms), n, seed)

    def sample_scaled(self, mz: Any, sz: Any, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """``n`` draws of each Gaussian ``(mz, sz)`` of the scaled coordinate, (N, n, P), canonical units.

        As :meth:`sample` but from given means and standard deviations (N, P) in the scaled coordinate, e.g. the
        combination of several sweeps' predictions; ``seed`` may be a numpy Generator.
        """
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            raise ConfigurationError(f"n={n!r}: give a positive number of samples.")
        mz, sz = np.atleast_2d(np.asarray(mz, float)), np.atleast_2d(np.asarray(sz, float))
        if mz.shape != sz.shape or mz.shape[1] != len(self.target_names) or not np.all(sz > 0):
            raise ConfigurationError(f"mz and sz must both have shape (N, {len(self.target_names)}) with sz > 0.")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        pa, pb = ndtr((0.0 - mz) / sz), ndtr((1.0 - mz) / sz)          # (N, P): the support is [0, 1]
        u = rng.uniform(size=(mz.shape[0], n, mz.shape[1]))
        p = pa[:, None, :] + (pb - pa)[:, None, :] * u
        z = np.clip(mz[:, None, :] + sz[:, None, :] * ndtri(np.clip(p, 1e-15, 1 - 1e-15)), 0.0, 1.0)
        out = np.empty_like(z)
        for k, prior in enumerate(self._priors()):
            out[..., k] = prior.unscale(z[..., k])
        return out

    # ------------------------------------------------------------------ files
    def manifest(self) -> dict[str, Any]:
        """The JSON-ready manifest (without the weights' hash, which :meth:`save` adds)."""
        spec = self.spec.to_dict()
        n_weights = int(sum(p.numel() for p in self.network.parameters()))
        out = {
            "format": FORMAT,
            "model": spec["model"], "preset": spec["preset"],
            "free_parameters": list(self.spec.free), "targets": list(self.target_names),
            "priors": spec["priors"],
            "noise": {"kind": spec["noise"], "priors": spec["noise_priors"], "estimated": spec["estimate_noise"],
                      "parametrisation": "ar1: eta_i = rho*eta_(i-1) + eps_i, eps_i ~ N(0, s^2), stationary start; "
                                         "white: N(0, sigma^2)"},
            "protocol": spec["protocol"],
            "fixed_values": spec["values"],
            "simulation": {"dt_ms": self.spec.integration()[0], "dt_ms_requested": spec["dt_ms"],
                           "method": spec["method"], "dtype": "float32", "settle_ms": spec["settle_ms"]},
            "normalisation": {
                "input": {"shift": self.input_shift, "scale": self.input_scale},
                "targets": {n: {"coordinate": "log" if p.log_scaled else "linear", "low": p.low, "high": p.high}
                            for n, p in self.spec.target_priors.items()},
                "temperature": {n: float(t) for n, t in zip(self.target_names, self.temperature)},
            },
            "architecture": {"name": self.arch, "options": self.arch_options, "n_weights": n_weights,
                             "head": "gaussian (mean, log-variance per scaled target)"},
            "training": self.training,
            "metrics": self.metrics,
            "versions": self.versions,
        }
        if self.feature_stats is not None:
            out["ood"] = self.feature_stats.to_dict()
        return out

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the estimator to the folder ``path`` (``manifest.json`` + ``weights.npz``), atomically.

        Both files are written to a temporary folder beside ``path``, which is then renamed onto it; an estimator
        being replaced is set aside first and removed only once the new one is in place (put back if the rename
        fails), so ``path`` holds the old estimator or the new one, whole.

        Raises
        ------
        OutputPathError
            ``path`` exists (pass ``overwrite=True`` to replace an estimator folder) or is not writable.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise OutputPathError(f"{path} exists; choose a new folder or pass overwrite=True.")
        if path.exists() and not (path.is_dir() and (path / MANIFEST).is_file()):
            raise OutputPathError(f"{path} is not an estimator folder; it is never replaced. Choose a new folder.")
        parent = path.parent if str(path.parent) else Path(".")
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=parent))
        except OSError as exc:
            raise OutputPathError(f"Cannot write in {parent}: {exc}. Choose a writable folder.") from None
        try:
            arrays = {k: v.detach().cpu().numpy() for k, v in self.network.state_dict().items()}
            np.savez(tmp / WEIGHTS, **arrays)
            manifest = self.manifest()
            manifest["weights"] = {"file": WEIGHTS, "sha256": _sha256(tmp / WEIGHTS), "n_arrays": len(arrays)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=True) + "\n")
            if path.exists():  # the old estimator is set aside, not deleted, until the new one is in place
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=parent))
                os.replace(path, old / path.name)
                try:
                    os.replace(tmp, path)
                except BaseException:
                    os.replace(old / path.name, path)
                    raise
                finally:
                    if path.exists():
                        shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "AmortizedEstimator":
        """Read an estimator folder written by :meth:`save`; nothing in it is executed.

        Raises
        ------
        InputPathError
            No folder, or no manifest/weights in it.
        InputFormatError
            A manifest that is not this format's JSON, an unknown architecture, weights that do not match
            it, a hash mismatch, or a weights file holding object arrays (pickles are never loaded).
        """
        path = Path(path)
        mpath, wpath = path / MANIFEST, path / WEIGHTS
        for p in (mpath, wpath):
            if not p.is_file():
                raise InputPathError(f"{p} is missing; an estimator folder holds {MANIFEST} and {WEIGHTS} "
                                     "(written by AmortizedEstimator.save).")
        try:
            manifest = json.loads(mpath.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputFormatError(f"{mpath} is not JSON ({exc}); re-save the estimator.") from None
        if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise InputFormatError(f"{mpath} is not an amortized-estimator manifest of a format this version reads "
                                   f"({', '.join(FORMATS)}; found {found!r}); re-train or re-save the estimator.")
        arch_entry, weights_entry = manifest.get("architecture"), manifest.get("weights")
        arch = arch_entry.get("name") if isinstance(arch_entry, dict) else None
        if arch not in NETWORKS:
            raise InputFormatError(f"{mpath} names the network {arch!r}, which is not one of "
                                   f"{', '.join(NETWORKS)}; only those are ever built.")
        want_hash = weights_entry.get("sha256") if isinstance(weights_entry, dict) else None
        if want_hash is not None and want_hash != _sha256(wpath):
            raise InputFormatError(f"{wpath} does not match the manifest's SHA-256 (changed or corrupted); "
                                   "re-save the estimator.")
        arrays = _read_weights(wpath)
        try:
            spec = GenerativeSpec.from_dict(_spec_dict(manifest))
            norm = manifest["normalisation"]
            temperature = [norm["temperature"][n] for n in spec.target_names]
            network = build_network(arch, spec.protocol.n_samples, len(spec.target_names),
                                    arch_entry.get("options", {}))
            stats = FeatureStats.from_dict(manifest["ood"]) if "ood" in manifest else None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise InputFormatError(f"{mpath} lacks or mistypes an entry ({exc}); re-save the estimator.") from None
        _load_state(network, arrays, wpath)
        return cls(spec, arch, arch_entry.get("options", {}), network.to(device),
                   input_shift=norm["input"]["shift"], input_scale=norm["input"]["scale"], temperature=temperature,
                   metrics=manifest.get("metrics"), training=manifest.get("training"),
                   versions=manifest.get("versions"), feature_stats=stats)


def _spec_dict(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The :meth:`GenerativeSpec.to_dict` form of a manifest's entries."""
    noise, sim = manifest["noise"], manifest["simulation"]
    free = list(manifest["free_parameters"])
    if list(manifest["priors"]) != free:
        raise InputFormatError("The manifest's priors do not name its free parameters in order; re-save it.")
    return {"model": manifest["model"], "preset": manifest.get("preset"), "priors": manifest["priors"],
            "protocol": manifest["protocol"], "noise": noise["kind"], "noise_priors": noise["priors"],
            "estimate_noise": noise["estimated"], "dt_ms": sim.get("dt_ms_requested"), "method": sim["method"],
            "values": manifest.get("fixed_values") or {}, "settle_ms": sim.get("settle_ms", 0.0)}


def _read_weights(wpath: Path) -> dict[str, np.ndarray]:
    """Every array of a weights file, read with ``allow_pickle=False`` (an object array is an InputFormatError)."""
    pickled = (f"{wpath} holds pickled Python objects (an object array); it is never loaded, since unpickling "
               "can run code. Weights are plain numeric arrays: re-save the estimator with AmortizedEstimator.save.")
    try:
        data = np.load(wpath, allow_pickle=False)
    except ValueError:  # numpy refuses a pickle file without allow_pickle
        raise InputFormatError(pickled) from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputFormatError(f"{wpath} cannot be read as .npz ({exc}); re-save the estimator.") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise InputFormatError(f"{wpath} is not an .npz archive; re-save the estimator.")
    arrays: dict[str, np.ndarray] = {}
    with data:
        for key in data.files:
            try:
                arrays[key] = data[key]
            except ValueError:  # numpy refuses object arrays without allow_pickle
                raise InputFormatError(pickled) from None
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise InputFormatError(f"{wpath}: array {key!r} cannot be read ({exc}); re-save the estimator.") \
                    from None
    for key, arr in arrays.items():
        if arr.dtype.kind not in "fiub":
            raise InputFormatError(f"{wpath}: array {key!r} has dtype {arr.dtype}, not a number type.")
    return arrays


def _load_state(network: torch.nn.Module, arrays: Mapping[str, np.ndarray], wpath: Path) -> None:
    """Copy ``arrays`` into ``network``'s tensors; names and shapes must match exactly."""
    state = network.state_dict()
    missing, extra = sorted(set(state) - set(arrays)), sorted(set(arrays) - set(state))
    if missing or extra:
        raise InputFormatError(f"{wpath} does not fit the manifest's network (missing {missing[:3]}, extra "
                               f"{extra[:3]}); re-save the estimator.")
    for key, tensor in state.items():
        if tuple(arrays[key].shape) != tuple(tensor.shape):
            raise InputFormatError(f"{wpath}: {key!r} has shape {arrays[key].shape}, the network needs "
                                   f"{tuple(tensor.shape)}.")
        state[key] = torch.as_tensor(arrays[key]).to(tensor.dtype)
    network.load_state_dict(state)
    network.eval()

"""The amortized estimator side by side with sbi's NPE on the same simulations (issue 18).

The case is FitzHugh–Nagumo with AR(1) noise in the set-up of Rudi, Bessac & Lenzi (2022)
(:func:`neo_pinn_amortized.train.rudi2022_config`: T = 200, Δt = 0.2, 1,000 samples; θ0, θ1, ρ and s estimated).
One training set of ``--n`` noisy traces plus a quarter as many for validation (seed ``--seed``) feeds both:

* **ours**: :func:`~neo_pinn_amortized.train.train_estimator` with ``--arch`` (default ``rescnn``) and no renoise,
  so it sees exactly these noisy traces; AdamW, cosine decay, early stopping on the validation NLL (patience
  ``--patience``), intervals calibrated by a per-target temperature on the validation split.
* **sbi NPE** (sbi 0.27, ``sbi.inference.NPE``, single round): a masked autoregressive flow
  (``posterior_nn(model="maf")``, sbi's defaults: 5 transforms, 50 hidden units) conditioned on an embedding
  network that is our ``--arch`` network without its Gaussian head
  (:func:`~neo_pinn_amortized.networks.build_network` with the head replaced by the identity), on the same
  normalised traces (our estimator's shift and scale; sbi's own z-scoring of x is off, θ is z-scored by sbi). The same (θ, x) pairs go in through
  ``append_simulations`` with the same training/validation split as ours; sbi's own training loop (Adam,
  learning rate ``--npe-lr``, gradient clipping 5, early stopping after ``--npe-patience`` epochs without a better
  validation loss), mini-batch ``--npe-batch``. The prior handed to sbi is a ``BoxUniform`` over the priors'
  supports: θ0 and θ1 were drawn from truncated normals, but single-round NPE only uses the prior to reject
  posterior draws outside its support; the flow learns the posterior under the distribution the pairs were
  drawn from (the truncated normals), the same one our estimator learns.

Both are scored on the same ``--n-test`` traces of the independent reference solver (scipy LSODA, noise added as
in training; the ``--cache`` files are those of ``bench_amortized.py``): R² of the posterior mean per target (NPE:
the mean of ``--samples`` posterior draws per trace), 50 % and 90 % central-interval coverage (NPE: the draws'
quantiles; ours: :meth:`~neo_pinn_amortized.estimator.AmortizedEstimator.interval`), training seconds (without the
shared simulation) and inference traces per second (ours: one batched network pass, the intervals in closed form;
NPE: ``sample_batched`` of ``--samples`` draws per trace in chunks of ``--npe-chunk`` traces, with sbi's rejection of
draws outside the prior's support; a chunk whose acceptance is too low to finish within ``--max-sampling-s`` — an
untrained flow — takes the flow's draws as they are, and the output counts those traces).

    python benchmarks/bench_amortized_sbi.py [--n 1024] [--n-test 2048] [--arch rescnn] [--epochs 200]
        [--patience 50] [--npe-patience 20] [--npe-lr 5e-4] [--npe-batch 32] [--samples 500] [--npe-chunk 128]
        [--max-sampling-s 300] [--seed 0] [--threads 1] [--cache DIR] [--progress]

Needs sbi (``pip install "neo-pinn[bench]"``, which pins sbi 0.27.0). Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_amortized's reference-set cache

from bench_amortized import cached_test_set  # noqa: E402

from neo_pinn_amortized.metrics import r2_score  # noqa: E402
from neo_pinn_amortized.networks import NETWORKS, build_network  # noqa: E402
from neo_pinn_amortized.train import rudi2022_config, train_estimator  # noqa: E402
from neo_pinn_amortized.training_set import make_training_set  # noqa: E402

LEVELS = (0.5, 0.9)
SBI_VERSION = "0.27.0"
NAMES = {"theta0": "θ0", "theta1": "θ1", "rho": "ρ", "s": "s"}


def require_sbi():
    """The ``sbi`` module, or SystemExit with how to install it (an optional benchmark dependency)."""
    try:
        import sbi
        import sbi.inference  # noqa: F401  (NPE)
    except ImportError as exc:
        raise SystemExit(f"bench_amortized_sbi.py needs sbi, an optional benchmark dependency ({exc}). Install it "
                         f"with  pip install \"neo-pinn[bench]\"  (or  pip install sbi=={SBI_VERSION})  and run "
                         "again.") from None
    return sbi


class HeadlessEmbedding(torch.nn.Module):
    """One of our networks (:data:`NETWORKS`) without its Gaussian head: traces (N, T) → features (N, F).

    sbi sizes the flow by embedding one trace (``batch[:1]``) while the module is in training mode, which batch
    norm (``rescnn``) refuses; a single trace is therefore embedded in evaluation mode.
    """

    def __init__(self, arch: str, n_samples: int, n_targets: int, options=None) -> None:
        super().__init__()
        self.net = build_network(arch, n_samples, n_targets, options)
        self.net.head = torch.nn.Identity()  # every network ends in self.head(features)
        self.net.eval()
        with torch.no_grad():
            self.n_features = int(self.net(torch.zeros(2, n_samples)).shape[1])
        self.net.train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            self.net.eval()
            try:
                return self.net(x)
            finally:
                self.net.train()
        return self.net(x)


_T0 = time.perf_counter()


def _log(text: str) -> None:
    """A progress line on stderr (the tables go to stdout)."""
    print(f"[{time.perf_counter() - _T0:7.1f} s] {text}", file=sys.stderr, flush=True)


class NullTracker:
    """sbi's tracker protocol, doing nothing: by default sbi writes TensorBoard logs into ``./sbi-logs``."""

    log_dir = None

    def log_metric(self, name, value, step=None) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_params(self, params) -> None:
        pass

    def add_figure(self, name, figure, step=None) -> None:
        pass

    def flush(self) -> None:
        pass


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _coverage(truth: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return ((truth >= lo) & (truth <= hi)).mean(0)


# ---------------------------------------------------------------------------------------------- ours
def run_ours(config, test_x: np.ndarray, test_truth: np.ndarray) -> dict:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a few draws may diverge and are redrawn
        est = train_estimator(config)
    wall = time.perf_counter() - start
    dt = est.protocol.sample_dt_ms
    est.predict_scaled(test_x[:64], dt)  # warm-up
    start = time.perf_counter()
    est.predict_scaled(test_x, dt)  # mean and std of every target: the intervals follow in closed form
    t_inf = time.perf_counter() - start
    mean, _ = est.predict(test_x, dt)
    out = {"method": f"ours ({config.arch}, Gaussian head)", "r2": r2_score(test_truth, mean),
           "train_s": wall - est.training["simulate_s"], "inference_s": t_inf, "est": est,
           "epochs": est.training["epochs_run"], "best_epoch": est.training["best_epoch"],
           "params": _n_params(est.network)}
    for level in LEVELS:
        lo, hi = est.interval(test_x, dt, level)
        out[f"cov_{round(100 * level)}"] = _coverage(test_truth, lo, hi)
    return out


# ---------------------------------------------------------------------------------------------- sbi NPE
def run_npe(args, spec, theta_tr, x_tr, theta_val, x_val, test_x, test_truth) -> dict:
    from sbi.inference import NPE
    from sbi.neural_nets import posterior_nn
    from sbi.utils import BoxUniform

    class FixedSplitNPE(NPE):
        """sbi's NPE with our training/validation split (sbi draws its own with ``torch.randperm`` otherwise)."""

        def get_dataloaders(self, starting_round=0, training_batch_size=200, validation_fraction=0.1,
                            resume_training=False, dataloader_kwargs=None):
            n_tr = theta_tr.shape[0]
            self.train_indices = torch.arange(n_tr)
            self.val_indices = torch.arange(n_tr, n_tr + theta_val.shape[0])
            return super().get_dataloaders(starting_round, training_batch_size, validation_fraction,
                                           resume_training=True, dataloader_kwargs=dataloader_kwargs)

    priors = list(spec.target_priors.values())
    prior = BoxUniform(low=torch.tensor([p.low for p in priors], dtype=torch.float32),
                       high=torch.tensor([p.high for p in priors], dtype=torch.float32))
    torch.manual_seed(args.seed)
    embedding = HeadlessEmbedding(args.arch, x_tr.shape[1], len(priors))
    builder = posterior_nn(model="maf", z_score_x="none", embedding_net=embedding)
    inference = FixedSplitNPE(prior=prior, density_estimator=builder, show_progress_bars=args.progress,
                              tracker=NullTracker())
    theta = torch.as_tensor(np.concatenate([theta_tr, theta_val]), dtype=torch.float32)
    x = torch.as_tensor(np.concatenate([x_tr, x_val]), dtype=torch.float32)
    n_val = theta_val.shape[0]
    start = time.perf_counter()
    with warnings.catch_warnings():  # its outlier check is about z-scoring x, which is off (x is normalised)
        warnings.filterwarnings("ignore", message="Data has extreme outliers")
        inference.append_simulations(theta, x)
    net = inference.train(training_batch_size=args.npe_batch, learning_rate=args.npe_lr,
                          validation_fraction=n_val / theta.shape[0], stop_after_epochs=args.npe_patience,
                          max_num_epochs=max(args.epochs - 1, 1))  # sbi runs max_num_epochs + 1 (≥ 2)
    posterior = inference.build_posterior()
    train_s = time.perf_counter() - start
    summary = inference.summary
    val_loss = np.asarray(summary["validation_loss"], float)

    chunks = range(0, test_x.shape[0], args.npe_chunk)
    if args.progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="NPE posterior draws", unit="chunk", leave=False)
    torch.manual_seed(args.seed)
    means, qs, unrejected = [], [], 0
    probs = torch.tensor(sorted({0.5 - lv / 2 for lv in LEVELS} | {0.5 + lv / 2 for lv in LEVELS}))
    start = time.perf_counter()
    with torch.no_grad():
        for i in chunks:
            xb = torch.as_tensor(test_x[i:i + args.npe_chunk], dtype=torch.float32)
            try:  # sbi's rejection of draws outside the prior's support (its default)
                draws = posterior.sample_batched((args.samples,), x=xb, max_sampling_batch_size=args.samples,
                                                 show_progress_bars=False, max_sampling_time=args.max_sampling_s)
            except RuntimeError:  # acceptance too low (an untrained flow): the flow's draws as they are
                draws = posterior.sample_batched((args.samples,), x=xb, show_progress_bars=False,
                                                 reject_outside_prior=False)
                unrejected += xb.shape[0]
            draws = draws.reshape(args.samples, xb.shape[0], -1)  # (samples, B, P)
            means.append(draws.mean(0).double().numpy())
            qs.append(torch.quantile(draws.double(), probs.double(), dim=0).numpy())  # (Q, B, P)
    t_inf = time.perf_counter() - start
    _log(f"NPE: trained in {train_s:.1f} s, sampled in {t_inf:.1f} s")
    mean = np.concatenate(means)
    q = np.concatenate(qs, 1)
    qi = {round(float(p), 3): k for k, p in enumerate(probs)}
    out = {"method": f"sbi NPE (MAF + {args.arch} body)", "r2": r2_score(test_truth, mean), "train_s": train_s,
           "inference_s": t_inf, "epochs": int(summary["epochs_trained"][-1]),
           "best_epoch": int(np.argmin(val_loss)) + 1 if val_loss.size else 0, "params": _n_params(net),
           "unrejected": unrejected}
    for level in LEVELS:
        lo, hi = q[qi[round(0.5 - level / 2, 3)]], q[qi[round(0.5 + level / 2, 3)]]
        out[f"cov_{round(100 * level)}"] = _coverage(test_truth, lo, hi)
    return out


# ---------------------------------------------------------------------------------------------- main
def _pct(values) -> str:
    return " / ".join(f"{100 * v:.1f}" for v in values) + " %"


def _r2(v: float) -> str:
    return f"{v:.4f}".replace("-", "−")


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1024, help="training traces (validation: a quarter more)")
    ap.add_argument("--n-test", type=int, default=2048, help="reference test traces")
    ap.add_argument("--arch", choices=sorted(NETWORKS), default="rescnn",
                    help="our network, and (without its head) NPE's embedding network")
    ap.add_argument("--epochs", type=int, default=200, help="most epochs (both; NPE at least 2)")
    ap.add_argument("--patience", type=int, default=50, help="our early-stopping patience, epochs")
    ap.add_argument("--npe-patience", type=int, default=20, help="sbi's stop_after_epochs (its default 20)")
    ap.add_argument("--npe-lr", type=float, default=5e-4, help="sbi's Adam learning rate (its default 5e-4)")
    ap.add_argument("--npe-batch", type=int, default=32, help="sbi's training batch (ours is 32; sbi's default 200)")
    ap.add_argument("--samples", type=int, default=500, help="NPE posterior draws per test trace")
    ap.add_argument("--npe-chunk", type=int, default=128, help="test traces per sample_batched call")
    ap.add_argument("--max-sampling-s", type=float, default=300.0, help="seconds of sbi's rejection sampling per "
                    "chunk before the chunk's draws are taken without rejection (counted in the output)")
    ap.add_argument("--seed", type=int, default=0, help="seed of simulation, training and sampling")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--cache", default=None, help="folder keeping the reference test sets (bench_amortized.py's)")
    ap.add_argument("--progress", action="store_true", help="progress bars")
    args = ap.parse_args(argv)
    sbi = require_sbi()
    if args.n < 8 or args.n_test < 2 or args.epochs < 1 or args.samples < 2:
        ap.error("give --n ≥ 8, --n-test ≥ 2, --epochs ≥ 1 and --samples ≥ 2")
    torch.set_num_threads(args.threads)
    cache = Path(args.cache) if args.cache else None

    n_val = max(2, args.n // 4)
    config = rudi2022_config(n=args.n + n_val, validation_fraction=n_val / (args.n + n_val), arch=args.arch,
                             renoise=False, epochs=args.epochs, patience=args.patience, seed=args.seed,
                             device="cpu", progress=args.progress)
    spec = config.spec()

    # The training set train_estimator simulates (same spec, n, seed and device) and its split, rebuilt for NPE.
    _log(f"simulating {config.n} training traces")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        data = make_training_set(spec, config.n, seed=config.seed, device="cpu")
    t_sim = time.perf_counter() - start
    order = np.random.default_rng([config.seed, 1]).permutation(config.n)
    tr, va = order[config.n_validation:], order[:config.n_validation]
    theta_all = data.targets(spec)

    _log(f"reference test set ({args.n_test} traces; cached: {cache is not None})")
    test_x, test_truth, t_ref = cached_test_set(spec, args.n_test, 12345 + args.seed, cache)

    _log(f"training ours ({args.arch})")
    ours = run_ours(config, test_x, test_truth)
    est = ours.pop("est")
    shift, scale = float(data.traces[tr].mean()), float(data.traces[tr].std())
    same = (shift, scale) == (est.input_shift, est.input_scale)
    if not same:
        print(f"WARNING: the rebuilt training split (mean {shift:.6g}, std {scale:.6g}) is not the one "
              f"train_estimator used (mean {est.input_shift:.6g}, std {est.input_scale:.6g}); the comparison is "
              "not on the same simulations.", file=sys.stderr)

    def norm(a: np.ndarray) -> np.ndarray:
        return ((a - est.input_shift) / est.input_scale).astype(np.float32)

    _log(f"training sbi NPE (MAF + {args.arch} body); then {args.samples} draws per test trace")
    npe = run_npe(args, spec, theta_all[tr], norm(data.traces[tr]), theta_all[va], norm(data.traces[va]),
                  norm(test_x), test_truth)

    names = [NAMES.get(n, n) for n in spec.target_names]
    print(f"\n## amortized vs sbi NPE, FitzHugh–Nagumo (Rudi et al. 2022 set-up), {len(tr)} training + {len(va)} "
          f"validation traces (seed {args.seed}), {test_x.shape[0]} reference test traces\n")
    print(f"torch {torch.__version__}, sbi {sbi.__version__}, {torch.get_num_threads()} intra-op thread(s) on "
          f"{os.cpu_count()} cores ({platform.machine()}), CPU; shared simulation {t_sim:.1f} s; reference test set "
          f"{t_ref:.1f} s; the same split as train_estimator's: {'yes' if same else 'NO'}; NPE: {args.samples} "
          f"posterior draws per trace, batch {args.npe_batch}, lr {args.npe_lr:g}, patience {args.npe_patience}; "
          f"ours: batch {config.batch_size}, lr {config.lr:g}, patience {args.patience}")
    if npe["unrejected"]:
        print(f"NPE draws taken without sbi's rejection (acceptance too low within {args.max_sampling_s:g} s): "
              f"{npe['unrejected']}/{test_x.shape[0]} test traces")
    print()
    print(f"| method | weights | {' | '.join('R² ' + n for n in names)} | 50 % coverage {' / '.join(names)} | "
          f"90 % coverage {' / '.join(names)} | epochs (best) | training s | inference traces/s |")
    print("|---|---|" + "---|" * len(names) + "---|---|---|---|---|")
    for r in (ours, npe):
        print(f"| {r['method']} | {r['params']:,} | {' | '.join(_r2(v) for v in r['r2'])} | {_pct(r['cov_50'])} | "
              f"{_pct(r['cov_90'])} | {r['epochs']} ({r['best_epoch']}) | {r['train_s']:.1f} | "
              f"{test_x.shape[0] / r['inference_s']:,.0f} |")
    return [ours, npe]


if __name__ == "__main__":
    main()

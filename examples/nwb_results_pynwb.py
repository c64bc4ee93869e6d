"""Read a neo_pinn fit from an NWB file with plain pynwb and matplotlib (no neo_pinn needed).

Usage::

    python nwb_results_pynwb.py FIT.nwb STATE.png

prints each run's parameter table (parameter, value, unit, std) and plots the first hidden state of the
first fitted sweep of the first run (the state after the membrane voltage, e.g. the K+ activation n of
Morris-Lecar) to STATE.png. The file is one written by ``neo-pinn fit ... --out FIT.nwb``: the results
are in the processing module "icephys", named after the run (see neo_pinn.io.nwb_results).
"""

import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from pynwb import NWBHDF5IO, TimeSeries  # noqa: E402


def main(nwb_path: str, png_path: str) -> int:
    with NWBHDF5IO(nwb_path, mode="r") as io:
        nwbfile = io.read()
        module = nwbfile.processing["icephys"]
        runs = sorted(name[: -len("_fit_provenance")] for name in module.data_interfaces
                      if name.endswith("_fit_provenance"))
        if not runs:
            print(f"{nwb_path} holds no neo_pinn fit", file=sys.stderr)
            return 1
        for run in runs:
            params = module[f"{run}_parameters"]
            prov = module[f"{run}_fit_provenance"]
            info = dict(zip(prov["field"][:], prov["value"][:]))
            print(f"run {run}: {info['model']} fitted with {info['backend']}, status {info['status']}, "
                  f"RMSE {float(info['rmse']):.3g} mV")
            stds = params["std"][:] if "std" in params.colnames else [math.nan] * len(params)
            print(f"{'parameter':>10} {'value':>12} {'unit':>6} {'std':>10}")
            for name, value, unit, std in zip(params["parameter"][:], params["value"][:], params["unit"][:], stds):
                print(f"{name:>10} {value:>12.6g} {unit:>6} {'' if math.isnan(std) else f'{std:.3g}':>10}")
        info = dict(zip(module[f"{runs[0]}_fit_provenance"]["field"][:],
                        module[f"{runs[0]}_fit_provenance"]["value"][:]))
        hidden = info["state_names"].split(",")[1]
        sweep = info["fitted_sweeps"].split(",")[0]
        name = f"{info['model']}_{info['backend']}_{runs[0]}_sweep{sweep}_{hidden}"
        series = module[name]
        if not isinstance(series, TimeSeries):
            print(f"{name} is not a TimeSeries", file=sys.stderr)
            return 1
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot(series.get_timestamps(), series.get_data_in_units(), lw=0.8)
        ax.set_xlabel("time in session (s)")
        ax.set_ylabel(f"{hidden} ({series.unit})")
        ax.set_title(name, fontsize=8)
        fig.tight_layout()
        fig.savefig(png_path, dpi=100)
        print(f"plotted {name} ({series.unit}) to {png_path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))

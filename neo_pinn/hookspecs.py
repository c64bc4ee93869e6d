"""pluggy hook specifications of the project ``neo_pinn``.

Built-in models and backends register through exactly these hooks, as a third party's would. Hooks are
called with keyword arguments only; their signatures only ever grow.
"""

from __future__ import annotations

import pluggy

PROJECT = "neo_pinn"
#: Version of the hook specifications; the minor number grows when a hook or an argument is added.
#: 1.1: ``BackendRegistry.register(cls)`` keys a backend by its class's ``name``.
#: 1.2: ``neo_pinn_register_initializers(registry)`` (warm starts: ``init="SCHEME:ARG"``, ``fit --init SCHEME:ARG``)
#: and ``neo_pinn_register_commands(registry)`` (``neo-pinn`` subcommands contributed by a plugin).
HOOKSPEC_VERSION = "1.2"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "HOOKSPEC_VERSION", "hookspec", "hookimpl", "NeoPinnSpec"]


class NeoPinnSpec:
    """The hooks a neo_pinn plugin may implement."""

    @hookspec
    def neo_pinn_register_models(self, registry):
        """Register neuron models: call ``registry.register(model_instance)``.

        Parameters
        ----------
        registry : neo_pinn.registry.ModelRegistry
        """

    @hookspec
    def neo_pinn_register_backends(self, registry):
        """Register estimator backends: call ``registry.register(EstimatorSubclass)`` (keyed by its ``name``).

        Parameters
        ----------
        registry : neo_pinn.registry.BackendRegistry
        """

    @hookspec
    def neo_pinn_register_initializers(self, registry):
        """Register warm starts of any backend: call ``registry.register(name, function)``.

        ``neo_pinn.estimate(..., init="NAME:ARGUMENT")`` (CLI ``fit --init NAME:ARGUMENT``) calls
        ``function(argument, traces, model, free, device)`` on the fit's sweeps and starts the backend from the
        values it returns (canonical units); see :class:`~neo_pinn.registry.InitializerRegistry`. Added in 1.2.

        Parameters
        ----------
        registry : neo_pinn.registry.InitializerRegistry
        """

    @hookspec
    def neo_pinn_register_commands(self, registry):
        """Register ``neo-pinn`` subcommands: call ``registry.register(name, help, add_arguments, run)``.

        Called while the command line builds its parser (``neo-pinn --help`` included), so the hook and
        ``add_arguments`` must import nothing heavy (no torch): import it inside ``run``. A name that is a built-in
        command or another plugin's is an error. See :class:`~neo_pinn.registry.CommandRegistry`. Added in 1.2.

        Parameters
        ----------
        registry : neo_pinn.registry.CommandRegistry
        """

    @hookspec(firstresult=True)
    def neo_pinn_find_stimulus(self, signal, segment):
        """Recover the injected current of one sweep.

        Parameters
        ----------
        signal : neo.AnalogSignal
            The membrane-voltage signal of the sweep.
        segment : neo.Segment
            Its segment.

        Returns
        -------
        tuple (numpy.ndarray, str) or None
            The current in pA sampled at the signal's times and a short name of the source; None to
            let the next finder try. The first non-None result wins.
        """

    @hookspec
    def neo_pinn_after_fit(self, problem, result):
        """Called after every successful fit with the problem and its :class:`EstimationResult`."""

"""Fit the model's workload to a host bundle, and replay the fit under another policy.

- ``observe``: what the bundle shows (counters, objects in use, memory by migratetype, the log);
- ``workload``: the workload the fit describes and where the search starts;
- ``fitter``: the loss, the model run against the bundle's snapshots;
- ``search``: the fit itself and its uncertainty (``calibrate``);
- ``whatif``: the fitted workload replayed under another policy or setting;
- ``recovery``: bundles emitted from known parameters on a real host's state, to check a fit
  against the model's own truth.

The plot of a fit is ``analyzer.plots.plot_fit``.
"""
from models.calibrate.fitter import BOUNDS, LINEAR, TOLERANCE, Fitter
from models.calibrate.observe import DATA_CACHE, TYPES, VMSTAT, Observations, observe
from models.calibrate.search import PROFILE_STEPS, calibrate
from models.calibrate.whatif import whatif
from models.calibrate.workload import KERNEL_SHARE, default_start, scenario_for, send_window

__all__ = ["BOUNDS", "DATA_CACHE", "KERNEL_SHARE", "LINEAR", "PROFILE_STEPS", "TOLERANCE", "TYPES",
           "VMSTAT", "Fitter", "Observations", "calibrate", "default_start", "observe",
           "scenario_for", "send_window", "whatif"]

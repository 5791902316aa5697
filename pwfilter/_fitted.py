"""Cost-model constants (seconds), fitted on a 2-core machine by benchmarks/fit_costs.py.

Regenerate with ``python benchmarks/fit_costs.py --write`` on the target machine.
"""

DIRECT_ND = {"per_mac": 2.394e-10, "per_sample": 8.926e-10, "fixed": 2.763e-03}
DIRECT_1D = {"per_mac": 1.744e-10, "per_sample": 7.464e-10, "fixed": 2.923e-04}
DIRECT_SEP = {"per_mac": 3.898e-11, "per_sample": 1.455e-09, "fixed": 8.498e-05}
FFT = {"per_nlogn": 1.568e-10, "per_sample": 0.000e+00, "fixed": 3.197e-04}
FFT_1D_FACTOR = 1.5

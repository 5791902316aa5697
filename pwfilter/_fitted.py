"""Cost-model constants (seconds), fitted on a 2-core machine by benchmarks/fit_costs.py.

Regenerate with ``python benchmarks/fit_costs.py --write`` on the target machine.
"""

DIRECT_ND = {"per_mac": 2.260e-10, "per_sample": 1.078e-09, "fixed": 1.260e-03}
DIRECT_1D = {"per_mac": 1.784e-10, "per_sample": 6.142e-10, "fixed": 3.324e-04}
DIRECT_SEP = {"per_mac": 1.723e-10, "per_sample": 4.867e-10, "fixed": 7.644e-04}
FFT_1D = {"per_nlogn": 1.111e-10, "per_sample": 1.052e-09}
FFT = {"per_nlogn": 2.270e-10, "per_sample": 0.000e+00, "fixed": 4.882e-04}

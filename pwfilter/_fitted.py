"""Cost-model constants (seconds), fitted on a 2-core machine by benchmarks/fit_costs.py.

Regenerate with ``python benchmarks/fit_costs.py --write`` on the target machine.
"""

DIRECT_ND = {"per_mac": 4.0e-10, "per_sample": 2.0e-09, "fixed": 1.0e-04}
DIRECT_1D = {"per_mac": 3.5e-10, "per_sample": 2.0e-09, "fixed": 1.0e-04}
DIRECT_SEP = {"per_mac": 1.6e-10, "per_sample": 2.0e-09, "fixed": 1.0e-04}
FFT = {"per_nlogn": 2.7e-10, "per_sample": 1.0e-09, "fixed": 2.0e-04}
FFT_1D_FACTOR = 1.5

"""Arithmetic cost of a standard k x k convolution versus its depthwise separable form.

Per output position (one pixel of a ``same``-size output):

- standard:  MACs = k² · C_in · C_out,  weights = k² · C_in · C_out
- depthwise: MACs = k² · C_in,          weights = k² · C_in
- pointwise: MACs = C_in · C_out / G,   weights = C_in · C_out / G

The ratio separable / standard = 1/C_out + 1/k² (for G = 1): with k = 3 the
separable form needs roughly 1/9 of the work.
"""

from __future__ import annotations

from pwfilter.errors import PwfilterError


def conv_cost(cin: int, cout: int, k: int, *, groups: int = 1, height: int | None = None,
              width: int | None = None) -> dict:
    """MACs and weight counts (no biases) of both forms, their ratio and the saving."""
    if cin % groups or cout % groups:
        raise PwfilterError(f"--groups {groups} must divide --cin {cin} and --cout {cout}")
    standard = k * k * cin * cout
    depthwise = k * k * cin
    pointwise = cin * cout // groups
    separable = depthwise + pointwise
    out = {
        "cin": cin, "cout": cout, "k": k, "groups": groups,
        "standard_macs": standard, "separable_macs": separable,
        "depthwise_macs": depthwise, "pointwise_macs": pointwise,
        "standard_params": standard, "separable_params": separable,
        "ratio": separable / standard,
        "saving_percent": 100.0 * (1 - separable / standard),
    }
    if height is not None and width is not None:
        positions = height * width
        out.update(height=height, width=width,
                   standard_macs_per_image=standard * positions,
                   separable_macs_per_image=separable * positions)
    return out


def format_cost(c: dict) -> str:
    g = f", pointwise in {c['groups']} groups" if c["groups"] > 1 else ""
    w = max(16, len(f"{c['standard_macs']:,}") + 2)
    lines = [
        f"k={c['k']}, C_in={c['cin']}, C_out={c['cout']}{g}",
        f"{'':22}{'MACs/position':>{w}}{'weights':>{w}}",
        f"{'standard k x k':22}{c['standard_macs']:>{w},}{c['standard_params']:>{w},}",
        f"{'depthwise separable':22}{c['separable_macs']:>{w},}{c['separable_params']:>{w},}",
        f"{'  depthwise':22}{c['depthwise_macs']:>{w},}{c['depthwise_macs']:>{w},}",
        f"{'  pointwise':22}{c['pointwise_macs']:>{w},}{c['pointwise_macs']:>{w},}",
    ]
    if "standard_macs_per_image" in c:
        lines.append(f"per {c['width']}x{c['height']} image: {c['standard_macs_per_image']:,} vs "
                     f"{c['separable_macs_per_image']:,} MACs")
    saving = c["saving_percent"]
    verdict = f"{saving:.1f} % fewer" if saving >= 0 else f"{-saving:.1f} % more"
    lines.append(f"ratio {c['ratio']:.4f} (1/C_out + 1/k^2 = "
                 f"{1 / c['cout'] + 1 / c['k'] ** 2:.4f} for one group): {verdict}")
    return "\n".join(lines)

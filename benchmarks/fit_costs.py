"""Refit the shipped cost model (``SHIPPED`` in pwfilter/costs.py) on this machine.

    python benchmarks/fit_costs.py            # print the fitted constants
    python benchmarks/fit_costs.py --write    # and rewrite SHIPPED in pwfilter/costs.py

The same measurement and fit as ``pwfilter calibrate`` (pwfilter/calibrate.py),
which users run to fit their own machine; this script is for the defaults
that ship, fitted on the project's reference machine (2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import re

from pwfilter import calibrate, costs


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite SHIPPED in pwfilter/costs.py")
    args = ap.parse_args()
    constants, errors = calibrate.calibrate(progress=lambda what: print(f"timing {what}"))
    lines = ["SHIPPED = {"]
    for formula, values in constants.items():
        items = [f'"{t}": {v:.3e}' for t, v in values.items()]
        line = f'    "{formula}": {{{", ".join(items)}}},'
        if len(line) > 99:  # the project's line length: one constant per line
            line = f'    "{formula}": {{\n' + "".join(f"        {i},\n" for i in items) + "    },"
        lines.append(line)
    lines.append("}")
    text = "\n".join(lines)
    print(text)
    print("worst relative fit errors:", {k: round(v, 2) for k, v in errors.items()})
    if args.write:
        path = os.path.join(os.path.dirname(costs.__file__), "costs.py")
        with open(path) as fh:
            source = fh.read()
        machine = f"{os.cpu_count()}-core {platform.machine()} ({cpu_name()})"
        source = re.sub(r"(?:#:[^\n]*\n)*SHIPPED = \{\n(?:    .*\n)*?\}\n",
                        f"#: Fitted by benchmarks/fit_costs.py on a {machine},\n"
                        f"#: {costs.backend()}.\n{text}\n", source)
        with open(path, "w") as fh:
            fh.write(source)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

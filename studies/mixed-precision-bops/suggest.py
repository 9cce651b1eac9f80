"""Print the --layer-bits of `adpdm analyze`'s bit-operation suggestion for a saved analysis.

Usage: PYTHONPATH=. .venv/bin/python studies/mixed-precision-bops/suggest.py ANALYSIS_JSON BUDGET
(BUDGET: a fraction of the preset's bit-operations, e.g. 10%). Prints the layer-bits spec on stdout and
the cost on stderr.
"""

import sys

from adpdm.analysis import SensitivityReport, suggest_bops

report = SensitivityReport.load(sys.argv[1])
s = suggest_bops(report, sys.argv[2])
sys.stderr.write(f"{len(s.layer_bits)} layers, +{s.extra_bops / s.base_bops:.1%} BOPs, "
                 f"{s.covered:.0%} of the candidates' score\n")  # fmt: skip
sys.stdout.write(",".join(f"{n}=W{w}A{a}" for n, w, a in s.layer_bits) + "\n")

"""Quality against bit-operations for the rows of several results files in one figure (uniform presets and
their mixed-precision runs together): the frontier a user chooses from.

Usage: python scripts/frontier.py OUT.png METRIC FILE [FILE ...]   (METRIC: fid_fp, fid_data, psnr, ...)
"""

import json
import sys
from pathlib import Path

from adpdm.bench_figures import frontier

out, metric, *files = sys.argv[1:]
path = frontier([json.loads(Path(f).read_text()) for f in files], Path(out), metric)
sys.stdout.write(f"{path}\n" if path else "no row states its bit-operations (results of versions before 0.8.0)\n")

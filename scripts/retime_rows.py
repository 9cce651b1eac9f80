"""Take runs out of a results file so that a resumed `adpdm bench` runs them again, for their calibration time.

A run's calibration time is only comparable with its peer's of the same model, preset and draw if both ran
under the same load. When a side job started or stopped while one of the two ran, the pair is re-run here: the
old rows move to the file's ``replaced_rows`` with the reason, and the next `--resume` redoes them. A run on one
thread is deterministic, so the re-run must reproduce every quality number (``--check`` compares). Run it only
while no benchmark writes the file (a running one rewrites the whole file after every run).

Usage: python scripts/retime_rows.py FILE REASON PRESET:DRAW [PRESET:DRAW ...]   (qdiffusion and adpdm runs)
       python scripts/retime_rows.py FILE --check   (replaced rows against their re-runs)
"""

import json
import sys

METHODS = ("qdiffusion", "adpdm")
QUALITY = ("psnr", "fid_fp", "fid_data", "haze", "accuracy")
path = sys.argv[1]
data = json.load(open(path))


def key(row: dict) -> str:
    return f"{row['model']}|{row['method']}|{row['preset']}|{row['draw']}"


if sys.argv[2] == "--check":
    now = {key(r): r for r in data["rows"]}
    for old in data.get("replaced_rows", []):
        new = now.get(key(old))
        if new is None:
            print(f"{key(old)}: not re-run yet")
            continue
        differ = {q: (old.get(q), new.get(q)) for q in QUALITY if old.get(q) != new.get(q)}
        print(f"{key(old)}: calibration {old['calib_seconds']:.1f} s -> {new['calib_seconds']:.1f} s, quality "
              f"{'identical' if not differ else f'DIFFERENT: {differ}'}")  # fmt: skip
    sys.exit()
reason, wanted = sys.argv[2], [(p, int(d)) for p, d in (s.split(":") for s in sys.argv[3:])]
out = [r for r in data["rows"] if r["method"] in METHODS and (r["preset"], r["draw"]) in wanted]
data.setdefault("replaced_rows", []).extend({**r, "replaced_because": reason} for r in out)
data["rows"] = [r for r in data["rows"] if r not in out]
for r in out:
    data["reports"].pop(key(r), None)
json.dump(data, open(path, "w"), indent=1)
print(f"{path}: {len(out)} runs taken out for re-running: {[key(r) for r in out]}")

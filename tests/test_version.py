"""One version, everywhere: the package, the command line, the changelog and every results file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import adpdm
from adpdm.cli.main import main
from adpdm.utils.resources import provenance

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_semantic():
    assert re.fullmatch(r"\d+\.\d+\.\d+", adpdm.__version__)


def test_cli_prints_the_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"adpdm {adpdm.__version__}"


def test_changelog_leads_with_this_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", text, flags=re.M)
    assert versions[0] == adpdm.__version__
    # newest first, no version twice
    keys = [tuple(map(int, v.split("."))) for v in versions]
    assert keys == sorted(set(keys), reverse=True)


def test_provenance_names_version_and_commit():
    code = provenance()
    assert code["adpdm_version"] == adpdm.__version__
    if (ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", code["commit"])


def test_every_results_file_records_version_and_commit():
    files = sorted((ROOT / "benchmarks" / "results").glob("*.json")) + sorted(
        (ROOT / "benchmarks" / "archive").rglob("*.json")
    )
    assert files
    for path in files:
        data = json.loads(path.read_text())
        code = data.get("code", data)  # analysis reports keep it under "code"
        assert code.get("adpdm_version") and code.get("commit"), path

"""The command blocks marked runnable (an ``<!-- runnable -->`` line right above the fence) of the README
and of ``docs/getting-started.md``, run as written: the README's "Your own model" walkthrough on a tiny
pipeline in the fast suite (smaller counts, a stand-in Inception network) and on the embedded model in the
slow one; the getting-started page on the embedded model with smaller counts."""

from __future__ import annotations

import re
import shlex
import sys
import types
from pathlib import Path

import pytest
from diffusers import DDPMScheduler
from pipeline_folders import fake_inception, tiny_unet

from adpdm.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
MARK = "<!-- runnable -->"
# the fast run: the same commands on fewer samples, steps and iterations
SMALLER = ((r"--num-samples \d+", "--num-samples 4"), (r"--num \d+", "--num 2"), (r"--iters \d+", "--iters 2"),
           (r"--steps \d+", "--steps 4"), (r"images\[:\d+\]", "images[:6]"))  # fmt: skip


def runnable(path: Path) -> list[tuple[str, str]]:
    """(language, code) of every block of ``path`` marked runnable, in order."""
    return re.findall(re.escape(MARK) + r"\n```(python|bash)\n(.*?)```", path.read_text(), flags=re.S)


def walkthrough() -> list[tuple[str, str]]:
    """The runnable blocks of the README: its section "Your own model"."""
    return runnable(README)


def smaller(blocks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    for pattern, repl in SMALLER:
        blocks = [(lang, re.sub(pattern, repl, code)) for lang, code in blocks]
    return blocks


def run_walkthrough(blocks: list[tuple[str, str]], source: Path = README) -> None:
    for lang, code in blocks:
        if lang == "python":
            exec(compile(code, str(source), "exec"), {"__name__": "__readme__"})
            continue
        for line in code.splitlines():
            if line.strip() and not line.startswith("#"):
                argv = shlex.split(line)
                assert argv[0] == "adpdm", line
                assert main(argv[1:]) == 0, line


def test_every_runnable_block_of_the_readme_is_in_the_walkthrough():
    text = README.read_text()
    section = text.split("\n## Your own model\n", 1)[1].split("\n## ", 1)[0]
    assert walkthrough()
    assert len(walkthrough()) == len(re.findall(r"```(?:python|bash)\n", section))  # every block of the section
    assert all(code in section for _, code in walkthrough())


def test_the_walkthrough_covers_every_step():
    commands = " ".join(code for _, code in walkthrough())
    for step in ("save_pretrained", "adpdm quantize", "adpdm sample --quantized", "adpdm fid-stats",
                 "adpdm evaluate --quantized", "--ref", "adpdm export", "--backend onnxruntime"):  # fmt: skip
        assert step in commands


def test_readme_walkthrough_on_a_tiny_pipeline(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    scheduler_config = dict(DDPMScheduler(num_train_timesteps=1000).config)
    tiny = types.SimpleNamespace(unet=tiny_unet(), scheduler_config=scheduler_config, num_classes=None, null_class=None)
    monkeypatch.setitem(sys.modules, "adpdm.embedded", types.SimpleNamespace(load_embedded=lambda name: tiny))
    inception = fake_inception(tmp_path / "inception.pt")
    monkeypatch.setattr("adpdm.eval.inception.default_inception_path", lambda: inception)
    monkeypatch.chdir(tmp_path)
    run_walkthrough(smaller(walkthrough()))
    assert Path("my_compare.png").is_file() and Path("my_onnx.png").is_file() and Path("my_eval.json").is_file()


@pytest.mark.slow
def test_readme_walkthrough_as_written(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    run_walkthrough(walkthrough())
    assert Path("my_eval.json").is_file()


def test_getting_started_runs_as_written(tmp_path, monkeypatch):
    blocks = runnable(GETTING_STARTED)
    assert len(blocks) >= 2 and any(lang == "bash" for lang, _ in blocks)
    inception = fake_inception(tmp_path / "inception.pt")
    monkeypatch.setattr("adpdm.eval.inception.default_inception_path", lambda: inception)
    monkeypatch.chdir(tmp_path)
    run_walkthrough(smaller(blocks), GETTING_STARTED)

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pipeline_folders import write_images

import adpdm.eval.evaluate as ev
import adpdm.eval.inception as inception
from adpdm.cli.main import main
from adpdm.eval.reference import load_image, load_reference_stats

DIM = 12


class _TinyNet(torch.nn.Module):
    """Stands in for Inception: (N, 3, 299, 299) -> (N, 12) mean colours of the four quadrants."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(img, (2, 2)).flatten(1)


@pytest.fixture
def fake_inception(monkeypatch):
    """``load_inception`` replaced (for the CLI and the Evaluator) by a 12-feature stand-in; records calls."""
    calls = []

    def load(path=None, device=None, bf16=False):
        calls.append({"path": path, "bf16": bf16})
        ex = inception.InceptionFeatures(_TinyNet(), path or "fake.pt", bf16=bf16)
        ex.num_features = DIM
        return ex

    monkeypatch.setattr(inception, "load_inception", load)
    monkeypatch.setattr(ev, "load_inception", load)
    monkeypatch.setattr(ev, "load_classifier", lambda: pytest.fail("the MNIST classifier must not be loaded"))
    return calls


def test_fid_stats_npz_gives_the_same_fid_as_the_folder(fake_inception, tmp_path, caplog):
    write_images(tmp_path / "ref", 9)
    out = tmp_path / "stats.npz"
    with caplog.at_level(logging.INFO, logger="adpdm"):
        rc = main(["fid-stats", str(tmp_path / "ref"), "--out", str(out), "--inception", "net.pt", "--bf16",
                   "--batch-size", "4", "--device", "cpu"])  # fmt: skip
    assert rc == 0 and fake_inception == [{"path": "net.pt", "bf16": True}]
    assert f"wrote FID statistics of 9 images in {tmp_path / 'ref'} to {out}" in caplog.text
    with np.load(out, allow_pickle=False) as z:
        assert sorted(z.files) == ["mu", "n", "sigma"] and z["mu"].dtype == np.float64 and int(z["n"][0]) == 9
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fids = [
        ev.Evaluator(ev.EvalConfig(ref=str(ref), mnist=False), progress=False).evaluate(images).fid_data
        for ref in (tmp_path / "ref", out)
    ]
    assert fids[0] > 0 and fids[1] == pytest.approx(fids[0], rel=1e-6)


def test_fid_stats_bad_inputs_fail_clearly_and_write_nothing(fake_inception, tmp_path, caplog):
    write_images(tmp_path / "ref", 3)
    (tmp_path / "one").mkdir()
    write_images(tmp_path / "one", 1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "old.npz").write_bytes(b"keep")
    cases = [
        (["ref", "--out", "stats.npy"], r"stats.npy must end in .npz"),
        (["ref", "--out", "old.npz"], "old.npz already exists: choose another name or overwrite it (--force)"),
        (["ref", "--out", "no/stats.npz"], "does not exist: create it first"),
        (["empty", "--out", "s.npz"], "empty holds no .png/.jpg/.jpeg image"),
        (["missing", "--out", "s.npz"], "missing does not exist"),
        (["one", "--out", "s.npz"], f"FID needs at least 2 reference images, {tmp_path / 'one'} has 1"),
        (["ref", "--out", "s.npz", "--batch-size", "0"], "--batch-size must be >= 1"),
    ]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for args, message in cases:
        caplog.clear()
        folder, _, out, *rest = args
        assert main(["fid-stats", str(tmp_path / folder), "--out", str(tmp_path / out), *rest]) == 2, args
        assert message in caplog.text, (args, caplog.text)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "old.npz").read_bytes() == b"keep"
    assert len(fake_inception) == 1  # only the 1-image folder got as far as loading the network
    assert main(["fid-stats", str(tmp_path / "ref"), "--out", str(tmp_path / "old.npz"), "--force"]) == 0
    assert load_reference_stats(tmp_path / "old.npz", dim=DIM).n == 3


def test_fid_stats_with_the_packaged_inception(tmp_path):
    # The one test with the real network: 3 small images, ~3 s on 2 cores (no 2048-dim FID: ~15 s).
    try:
        extractor = inception.load_inception()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    paths = write_images(tmp_path / "ref", 3, sizes=((16, 16), (20, 12)))
    out = tmp_path / "stats.npz"
    assert main(["fid-stats", str(tmp_path / "ref"), "--out", str(out), "--device", "cpu"]) == 0
    stats = load_reference_stats(out)
    feats = torch.cat([extractor(load_image(p)[None]) for p in paths]).double()  # (3, 2048)
    assert stats.n == 3 and stats.mu.shape == (2048,) and stats.sigma.shape == (2048, 2048)
    np.testing.assert_allclose(stats.mu, feats.mean(0).numpy(), rtol=1e-4, atol=1e-5)

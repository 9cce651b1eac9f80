import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pipeline_folders import write_images

import adpdm.eval.evaluate as ev
from adpdm.eval.frechet import FeatureStats, frechet_distance
from adpdm.eval.inception import InceptionFeatures
from adpdm.eval.metrics import fid_from_features
from adpdm.eval.reference import (
    UNKNOWN_N,
    folder_stats,
    list_images,
    load_image,
    load_reference_stats,
    reference_from_path,
    save_reference_stats,
)

# The classifiers below are built with torch.jit.script/save, deprecated in torch 2.13.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning")

DIM = 12  # features of the fake extractor: FID on 12 x 12 covariances costs nothing


class _TinyNet(torch.nn.Module):
    """Stands in for Inception: (N, 3, 299, 299) -> (N, 12) mean colours of the four quadrants."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(img, (2, 2)).flatten(1)


def tiny_extractor(path="fake.pt", device=None, bf16=False) -> InceptionFeatures:
    """An :class:`InceptionFeatures` around :class:`_TinyNet`, with ``load_inception``'s signature."""
    ex = InceptionFeatures(_TinyNet(), path or "fake.pt", bf16=bf16)
    ex.num_features = DIM
    return ex


def _no_mnist_classifier():
    raise AssertionError("the MNIST classifier must not be loaded")


# --- images ---------------------------------------------------------------------------------


def test_load_image_converts_every_mode_to_rgb_in_range(tmp_path):
    grey = np.array([[0, 255], [128, 64]], dtype=np.uint8)
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., :3], rgba[..., 3] = (10, 20, 30), 0  # fully transparent: the colour is kept
    pal = Image.fromarray(np.array([[0, 1, 1]], dtype=np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    images = {
        "grey.png": Image.fromarray(grey, "L"),
        "rgb.jpg": Image.fromarray(np.full((5, 7, 3), 200, dtype=np.uint8), "RGB"),
        "rgba.png": Image.fromarray(rgba, "RGBA"),
        "pal.png": pal,
        "la.png": Image.fromarray(grey, "L").convert("LA"),
        "g16.png": Image.fromarray(np.array([[0, 65535, 128 * 257, 300]], dtype=np.uint16)),
    }
    for name, img in images.items():
        img.save(tmp_path / name)
    out = {name: load_image(tmp_path / name) for name in images}
    for name, x in out.items():
        assert x.dtype == torch.float32 and x.shape[0] == 3 and -1 <= x.min() <= x.max() <= 1, name
    assert out["rgb.jpg"].shape == (3, 5, 7) and out["grey.png"].shape == (3, 2, 2)
    torch.testing.assert_close(out["grey.png"], torch.from_numpy(grey).float().expand(3, 2, 2) / 127.5 - 1)
    torch.testing.assert_close(out["la.png"], out["grey.png"])
    assert out["rgba.png"][:, 0, 0].tolist() == pytest.approx([10 / 127.5 - 1, 20 / 127.5 - 1, 30 / 127.5 - 1])
    assert out["pal.png"][:, 0, :].T.tolist() == [[1, -1, -1], [-1, -1, 1], [-1, -1, 1]]
    # 16 bits are scaled by 1/257 and rounded (PIL's own conversion would clip 300 and 32896 to 255)
    levels = torch.round((out["g16.png"][0, 0] + 1) * 127.5)
    assert levels.tolist() == [0, 255, 128, 1]


def test_list_images_recursive_sorted_filtered(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("z.PNG", "a.jpeg", "b/c.JPG", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.jpeg", "b/c.JPG", "z.PNG"]


def test_list_images_errors_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path / 'nope'} does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(ValueError, match="is not a folder"):
        list_images(tmp_path / "f.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"empty holds no \.png/\.jpg/\.jpeg image"):
        list_images(tmp_path / "empty")


def test_unreadable_image_names_the_file(tmp_path):
    write_images(tmp_path, 3)
    bad = tmp_path / "img001.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    with pytest.raises(ValueError, match=f"cannot read image {bad}: .*; remove it or fix it"):
        load_image(bad)
    with pytest.raises(ValueError, match="cannot read image .*img001.png"):
        folder_stats(tiny_extractor(), tmp_path, progress=False)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image .*junk.jpg: .*; remove it or fix it"):
        load_image(tmp_path / "junk.jpg")


# --- folder statistics ----------------------------------------------------------------------


def test_folder_stats_equal_the_features_of_each_image(tmp_path):
    paths = write_images(tmp_path, 7, sizes=((8, 8), (6, 10), (31, 5)))
    ex = tiny_extractor()
    stats = folder_stats(ex, tmp_path, batch_size=3, progress=False)
    direct = FeatureStats.from_features(torch.cat([ex(load_image(p)[None]) for p in paths]))
    assert stats.n == 7 and stats.dim == DIM
    np.testing.assert_allclose(stats.mu, direct.mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.sigma, direct.sigma, rtol=1e-10, atol=1e-12)


def test_folder_stats_needs_two_images(tmp_path):
    write_images(tmp_path, 1)
    with pytest.raises(ValueError, match=f"FID needs at least 2 reference images, {tmp_path} has 1"):
        folder_stats(tiny_extractor(), tmp_path, progress=False)


# --- statistics files -----------------------------------------------------------------------


def _stats(dim: int = DIM, n: int = 20, seed: int = 0) -> FeatureStats:
    return FeatureStats.from_features(np.random.default_rng(seed).standard_normal((n, dim)))


def test_save_load_round_trip_is_exact(tmp_path):
    stats = _stats()
    path = save_reference_stats(stats, tmp_path / "s.npz")
    back = load_reference_stats(path, dim=DIM)
    assert back.n == 20 and (back.mu == stats.mu).all() and (back.sigma == stats.sigma).all()
    assert sorted(np.load(path).files) == ["mu", "n", "sigma"]
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temporary file left


def test_save_refuses_bad_paths_and_writes_nothing(tmp_path):
    stats = _stats()
    with pytest.raises(ValueError, match=r"must end in \.npz"):
        save_reference_stats(stats, tmp_path / "s.npy")
    (tmp_path / "old.npz").write_bytes(b"keep")
    with pytest.raises(ValueError, match="already exists"):
        save_reference_stats(stats, tmp_path / "old.npz")
    with pytest.raises(ValueError, match="does not exist"):
        save_reference_stats(stats, tmp_path / "missing" / "s.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["old.npz"] and (tmp_path / "old.npz").read_bytes() == b"keep"
    save_reference_stats(stats, tmp_path / "old.npz", overwrite=True)
    assert load_reference_stats(tmp_path / "old.npz", dim=DIM).n == 20


def test_external_npz_with_only_mu_and_sigma_loads(tmp_path):
    stats = _stats()
    # pytorch-fid writes float32-or-64 mu/sigma with savez_compressed and no n
    np.savez_compressed(tmp_path / "ext.npz", mu=stats.mu.astype(np.float32), sigma=stats.sigma)
    back = load_reference_stats(tmp_path / "ext.npz", dim=DIM)
    assert back.n == UNKNOWN_N and back.mu.dtype == np.float64
    other = _stats(seed=1)
    assert frechet_distance(other, back) == pytest.approx(frechet_distance(other, stats), rel=1e-6)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, r"missing\.npz not found: write one with `adpdm fid-stats"),
        (lambda p: p.with_name("text.npz").write_text("mu sigma") and p.with_name("text.npz"), "is not an .npz file"),
        (lambda p: _npz(p.with_name("nomu.npz"), sigma=np.eye(DIM)), "has no 'mu' array"),
        (lambda p: _npz(p.with_name("nosigma.npz"), mu=np.zeros(DIM)), "has no 'sigma' array"),
        (
            lambda p: _npz(p.with_name("d64.npz"), mu=np.zeros(64), sigma=np.eye(64)),
            "mu has 64 values, the FID Inception network gives 12: this file was not written for FID Inception",
        ),
        (lambda p: _npz(p.with_name("sig.npz"), mu=np.zeros(DIM), sigma=np.eye(3)), r"sigma has shape \(3, 3\)"),
        (lambda p: _npz(p.with_name("nan.npz"), mu=np.full(DIM, np.nan), sigma=np.eye(DIM)), "NaN or inf"),
        (
            lambda p: _npz(p.with_name("obj.npz"), mu=np.array([None] * DIM, dtype=object), sigma=np.eye(DIM)),
            "'mu' cannot be read without pickle",
        ),
        (lambda p: _npz(p.with_name("str.npz"), mu=np.array(["a"] * DIM), sigma=np.eye(DIM)), "expected numbers"),
        (lambda p: _npz(p.with_name("n1.npz"), mu=np.zeros(DIM), sigma=np.eye(DIM), n=[1]), "n must be one count"),
    ],
)
def test_bad_statistics_files_give_clear_errors(tmp_path, make, message):
    path = make(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=message) as err:
        load_reference_stats(path, dim=DIM)
    assert str(path) in str(err.value)


def test_real_dimension_message(tmp_path):
    path = _npz(tmp_path / "d64.npz", mu=np.zeros(64), sigma=np.eye(64))
    with pytest.raises(ValueError, match="mu has 64 values, the FID Inception network gives 2048"):
        load_reference_stats(path)


def test_reference_from_path_folder_and_npz_give_the_same_fid(tmp_path):
    write_images(tmp_path / "ref", 9)
    ex = tiny_extractor()
    from_folder = reference_from_path(ex, tmp_path / "ref", progress=False)
    save_reference_stats(from_folder, tmp_path / "ref.npz")
    from_npz = reference_from_path(ex, tmp_path / "ref.npz")
    samples = FeatureStats.from_features(ex(torch.rand(10, 3, 8, 8) * 2 - 1))
    fid = fid_from_features(samples, from_folder)
    assert fid > 0 and fid_from_features(samples, from_npz) == pytest.approx(fid, rel=1e-6)
    (tmp_path / "ref.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a folder nor an .npz file"):
        reference_from_path(ex, tmp_path / "ref.txt")
    with pytest.raises(ValueError, match="does not exist"):
        reference_from_path(ex, tmp_path / "gone")


# --- Evaluator ------------------------------------------------------------------------------


def test_eval_config_validates_ref_and_classifier(tmp_path):
    with pytest.raises(ValueError, match="EvalConfig.ref .*nope does not exist"):
        ev.EvalConfig(ref=str(tmp_path / "nope"))
    (tmp_path / "r.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a folder nor an .npz"):
        ev.EvalConfig(ref=str(tmp_path / "r.txt"))
    with pytest.raises(ValueError, match="drop ref or inception=False"):
        ev.EvalConfig(ref=str(tmp_path), inception=False)
    with pytest.raises(ValueError, match="EvalConfig.classifier .*clf.pt not found"):
        ev.EvalConfig(classifier=str(tmp_path / "clf.pt"))
    assert ev.EvalConfig() == ev.EvalConfig(ref_num=10_000, ref=None, mnist=True, classifier=None)


def test_evaluator_folder_and_npz_references_without_mnist(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "load_classifier", _no_mnist_classifier)
    monkeypatch.setattr(ev, "load_inception", tiny_extractor)
    write_images(tmp_path / "ref", 9)
    folder_eval = ev.Evaluator(ev.EvalConfig(ref=str(tmp_path / "ref"), mnist=False), progress=False)
    save_reference_stats(folder_eval.reference(), tmp_path / "ref.npz")
    npz_eval = ev.Evaluator(ev.EvalConfig(ref=str(tmp_path / "ref.npz"), mnist=False), progress=False)
    g = torch.Generator().manual_seed(0)
    images, fp = torch.rand(6, 3, 16, 16, generator=g) * 2 - 1, torch.rand(6, 3, 16, 16, generator=g) * 2 - 1
    a = folder_eval.evaluate(images, labels=torch.zeros(6, dtype=torch.long), fp_images=fp)
    b = npz_eval.evaluate(images, fp_images=fp)
    assert a.fid_data > 0 and b.fid_data == pytest.approx(a.fid_data, rel=1e-6)
    assert a.fid_fp > 0 and a.psnr is not None
    assert a.accuracy is None and a.clf_fid_data is None and a.clf_fid_fp is None  # no classifier at all
    assert a.extra["reference"] == str(tmp_path / "ref")
    no_ref = ev.Evaluator(ev.EvalConfig(mnist=False), progress=False).evaluate(images, fp_images=fp)
    assert no_ref.fid_data is None and no_ref.fid_fp == pytest.approx(a.fid_fp)


class _BrightestChannel(torch.nn.Module):
    """Logits (N, C): the mean of each channel, so the predicted class is the brightest channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class _Brightness(torch.nn.Module):
    """Two-class logits (N, 2): class 1 for images brighter than mid-grey."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1)


class _BadShape(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))  # (N,), not (N, K)


def _script(module: torch.nn.Module, path) -> str:
    torch.jit.save(torch.jit.script(module), str(path))
    return str(path)


def _one_hot_images(channels: list[int], num_channels: int = 3, size: int = 8) -> torch.Tensor:
    x = -torch.ones(len(channels), num_channels, size, size)
    x[torch.arange(len(channels)), channels] = 1.0
    return x


def test_scripted_classifier_accuracy(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "load_classifier", _no_mnist_classifier)
    clf = _script(_BrightestChannel(), tmp_path / "clf.pt")
    evaluator = ev.Evaluator(ev.EvalConfig(inception=False, mnist=False, classifier=clf), progress=False)
    images = _one_hot_images([0, 1, 2, 1])  # predictions 0, 1, 2, 1
    res = evaluator.evaluate(images, labels=torch.tensor([0, 1, 2, 0]))
    assert res.accuracy == 0.75 and res.clf_fid_data is None and res.fid_data is None
    with pytest.raises(ValueError, match=r"labels span 0\.\.5 but classifier .*clf.pt gives 3 classes"):
        evaluator.evaluate(images, labels=torch.tensor([0, 1, 5, 0]))


def test_scripted_classifier_overrides_the_mnist_one(tmp_path):
    clf = _script(_Brightness(), tmp_path / "clf.pt")
    evaluator = ev.Evaluator(ev.EvalConfig(ref_num=20, inception=False, classifier=clf), progress=False)
    evaluator.classifier.forward = lambda x: (_ for _ in ()).throw(AssertionError("MNIST logits used"))
    images = torch.tensor([-0.5, 0.5, 0.5, -0.5]).view(4, 1, 1, 1).expand(4, 1, 32, 32)  # MNIST layout
    res = evaluator.evaluate(images, labels=torch.tensor([0, 1, 0, 0]))  # predictions 0, 1, 1, 0
    assert res.accuracy == 0.75 and res.clf_fid_data is not None  # MNIST features still measured


def test_scripted_classifier_errors_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "load_classifier", _no_mnist_classifier)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match="classifier .*garbage.pt is not a loadable TorchScript file"):
        ev.Evaluator(ev.EvalConfig(inception=False, mnist=False, classifier=str(garbage)))
    bad = _script(_BadShape(), tmp_path / "bad.pt")
    evaluator = ev.Evaluator(ev.EvalConfig(inception=False, mnist=False, classifier=bad), progress=False)
    with pytest.raises(ValueError, match=r"bad.pt must map 4 images to logits \(4, K\), got \(4,\)"):
        evaluator.evaluate(_one_hot_images([0, 1, 2, 1]), labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"bad.pt fails on images \(4, 3, 8\)"):
        evaluator.evaluate(torch.zeros(4, 3, 8), labels=torch.zeros(4, dtype=torch.long))

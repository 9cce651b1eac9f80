"""FID reference statistics from the user's own data: a folder of images or a statistics file.

A reference is either a folder of PNG/JPEG images, whose Inception statistics are computed
here, or an ``.npz`` holding ``mu`` (2048,) and ``sigma`` (2048, 2048), the format of
pytorch-fid (``--save-stats``) and of ``adpdm fid-stats``; ``adpdm fid-stats`` also stores
``n``, the number of images. Files written by other tools have no ``n``: they load with
``n = UNKNOWN_N``, a sentinel that no image count can equal (FID uses only ``mu`` and
``sigma``).

Example::

    extractor = load_inception()
    ref = reference_from_path(extractor, "my_images/")  # or "my_images.npz"
    fid = fid_from_features(image_stats(extractor, samples), ref)
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .frechet import FeatureStats, StatsAccumulator
from .inception import NUM_FEATURES, InceptionFeatures

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# ``n`` of statistics whose image count is unknown (files from other tools have no ``n``).
# FeatureStats needs an int >= 2; no real image set is this large, so it cannot be mistaken.
UNKNOWN_N = 2**63 - 1  # the largest int64, so it survives a save and a load
_MAX_16BIT = 65535


def list_images(folder: str | os.PathLike) -> list[Path]:
    """PNG/JPEG files (``.png``, ``.jpg``, ``.jpeg``, any case) under ``folder``, sorted.

    The search is recursive (class sub-folders are common); files and folders whose name
    starts with ``.`` are skipped (hidden files, e.g. macOS ``._x.png`` metadata).
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise ValueError(f"image folder {folder} {what}: give a folder of .png/.jpg/.jpeg images")
    paths = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not paths:
        raise ValueError(f"image folder {folder} holds no .png/.jpg/.jpeg image: put the reference images there")
    return paths


def _to_uint8(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 pixels of an opened image."""
    if img.mode.startswith("I"):  # 16-bit greyscale PNG ("I;16", or "I" in older Pillow)
        levels = np.asarray(img, dtype=np.float64)
        if levels.min(initial=0) < 0 or levels.max(initial=0) > _MAX_16BIT:
            raise ValueError(f"pixel values outside 0..{_MAX_16BIT} in a mode {img.mode} image")
        grey = np.round(levels / 257.0).astype(np.uint8)  # 65535 / 255 = 257: scale, not clip
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """One image file as a float32 (3, H, W) tensor in [-1, 1] (8-bit level ``u`` -> ``u / 127.5 - 1``).

    Conversion is PIL's ``convert("RGB")``: greyscale (L, 1) is repeated over the three
    channels, palette (P) images are looked up, and alpha (RGBA, LA, PA) is dropped without
    compositing (transparent pixels keep their colour). 16-bit greyscale is scaled to 8 bits
    by rounding ``v / 257``; Pillow itself reduces 16-bit colour PNGs to their high byte.
    EXIF orientation is ignored, as in pytorch-fid.
    """
    try:
        with Image.open(path) as img:
            pixels = _to_uint8(img)  # (H, W, 3)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path}: {e}; remove it or fix it") from e
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1.0


def _add_batch(acc: StatsAccumulator, extractor: InceptionFeatures, images: list[torch.Tensor]) -> None:
    """Features of images of mixed sizes: one forward pass per size (the statistics ignore order)."""
    by_size: dict[tuple[int, int], list[torch.Tensor]] = {}
    for img in images:
        by_size.setdefault(tuple(img.shape[-2:]), []).append(img)
    for group in by_size.values():
        acc.update(extractor(torch.stack(group)))  # resized to 299x299 by its preprocessing


def folder_stats(
    extractor: InceptionFeatures, folder: str | os.PathLike, batch_size: int = 32, progress: bool = True
) -> FeatureStats:
    """Inception statistics of every image of :func:`list_images` ``(folder)``, streamed in batches.

    Args:
        extractor: from :func:`adpdm.eval.inception.load_inception`.
        folder: a folder of PNG/JPEG images of any sizes and modes (see :func:`load_image`).
        batch_size: images read and sent through the network at a time. Default 32.
        progress: show a tqdm bar. Default ``True``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    paths = list_images(folder)
    if len(paths) < 2:
        raise ValueError(f"FID needs at least 2 reference images, {folder} has {len(paths)}")
    acc = StatsAccumulator()
    with tqdm(total=len(paths), disable=not progress, desc="fid reference", unit="img") as bar:
        for i in range(0, len(paths), batch_size):
            chunk = paths[i : i + batch_size]
            _add_batch(acc, extractor, [load_image(p) for p in chunk])
            bar.update(len(chunk))
    logger.info("FID statistics of %d images in %s", acc.n, folder)
    return acc.finalize()


def check_stats_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` as a :class:`Path` if statistics may be written there, else a ValueError saying why:
    not ending in ``.npz``, already existing (unless ``overwrite``), or in a missing folder."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ValueError(f"statistics file {path} must end in .npz (the format FID tools read)")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} already exists: choose another name or overwrite it (--force)")
    if not path.parent.is_dir():
        raise ValueError(f"folder {path.parent} does not exist: create it first")
    return path


def save_reference_stats(stats: FeatureStats, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``mu``, ``sigma`` and ``n`` to an ``.npz`` (pytorch-fid's format plus ``n``).

    The file is written to a temporary name and renamed, so it is never seen half-written.
    Refuses what :func:`check_stats_path` refuses.
    """
    path = check_stats_path(path, overwrite)
    stats.save(path)
    return path


def _array(arrays: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """``arrays[key]``, with an error naming the file when it is absent or not numeric."""
    if key not in arrays.files:
        raise ValueError(f"{path} has no '{key}' array (found {arrays.files}): not FID statistics (mu, sigma)")
    try:
        a = arrays[key]
    except ValueError as e:  # object arrays need pickle, which is refused
        raise ValueError(f"{path}: '{key}' cannot be read without pickle ({e}); rewrite it as numbers") from e
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{path}: '{key}' has dtype {a.dtype}, expected numbers")
    return a


def _check_shapes(mu: np.ndarray, sigma: np.ndarray, dim: int, path: Path) -> None:
    hint = "this file was not written for FID Inception pool3 features"
    if mu.ndim != 1 or mu.shape[0] != dim:
        what = f"{mu.shape[0]} values" if mu.ndim == 1 else f"shape {mu.shape}"
        raise ValueError(f"{path}: mu has {what}, the FID Inception network gives {dim}: {hint}")
    if sigma.shape != (dim, dim):
        raise ValueError(f"{path}: sigma has shape {sigma.shape}, expected ({dim}, {dim}): {hint}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{path}: mu or sigma contain NaN or inf: recompute the statistics")


def _count(arrays: np.lib.npyio.NpzFile, path: Path) -> int:
    if "n" not in arrays.files:
        return UNKNOWN_N
    n = _array(arrays, "n", path).reshape(-1)
    if n.size != 1 or not np.issubdtype(n.dtype, np.integer) or not n[0] >= 2:
        raise ValueError(f"{path}: n must be one count >= 2, got {n.tolist()}")
    return int(n[0])


def load_reference_stats(path: str | os.PathLike, dim: int = NUM_FEATURES) -> FeatureStats:
    """Read FID statistics from an ``.npz`` with ``mu`` (dim,) and ``sigma`` (dim, dim).

    Reads files of :func:`save_reference_stats` and of other FID tools (pytorch-fid); never
    unpickles. Without ``n`` in the file, the result has ``n = UNKNOWN_N``.

    Args:
        path: the ``.npz`` file.
        dim: the feature dimension expected. Default 2048 (Inception pool3).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"FID statistics file {path} not found: write one with `adpdm fid-stats IMAGES --out FILE`")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz file (a zip of arrays): give one written by `adpdm fid-stats`")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            mu, sigma = (_array(arrays, key, path).astype(np.float64) for key in ("mu", "sigma"))
            n = _count(arrays, path)
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"cannot read {path}: {e}; rewrite it with `adpdm fid-stats`") from e
    _check_shapes(mu, sigma, dim, path)
    return FeatureStats(mu=mu, sigma=sigma, n=n)


def reference_from_path(
    extractor: InceptionFeatures, path: str | os.PathLike, batch_size: int = 32, progress: bool = True
) -> FeatureStats:
    """FID reference statistics from a folder of images (:func:`folder_stats`) or an ``.npz``
    (:func:`load_reference_stats`, checked against ``extractor.num_features``)."""
    path = Path(path)
    if path.is_dir():
        return folder_stats(extractor, path, batch_size=batch_size, progress=progress)
    if path.suffix.lower() == ".npz":
        return load_reference_stats(path, dim=extractor.num_features)
    what = "does not exist" if not path.exists() else "is neither a folder nor an .npz file"
    raise ValueError(f"FID reference {path} {what}: give a folder of images or an .npz of `adpdm fid-stats`")

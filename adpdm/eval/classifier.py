"""A small MNIST classifier shipped by the project, for judging generated digits.

``load_classifier()`` returns the trained CNN; ``features`` gives its penultimate layer for
Frechet-style distances on MNIST, ``forward`` its logits for label accuracy of
class-conditional samples. ``train_classifier`` (run by ``scripts/train_classifier.py``)
produces ``adpdm/embedded/assets/classifier/{model.safetensors, config.json, train_log.txt}``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from adpdm.data.mnist import load_mnist

logger = logging.getLogger(__name__)

CLASSIFIER_DIR = Path(__file__).resolve().parent.parent / "embedded" / "assets" / "classifier"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


@dataclass
class ClassifierConfig:
    """Shape of :class:`MnistClassifier` (saved as ``config.json`` beside the weights)."""

    channels: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 128
    num_classes: int = 10

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) != 3 or min(self.channels) <= 0:
            raise ValueError(f"channels must be three positive widths, got {self.channels}")
        if self.feature_dim <= 0 or self.num_classes < 2:
            raise ValueError(f"bad feature_dim={self.feature_dim} or num_classes={self.num_classes}")


class MnistClassifier(nn.Module):
    """Three conv+BN+ReLU+max-pool stages (32 -> 16 -> 8 -> 4), one hidden layer, logits.

    Input: (N, 1, 32, 32) in [-1, 1], the layout of :func:`adpdm.data.mnist.load_mnist`.
    """

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config or ClassifierConfig()
        layers: list[nn.Module] = []
        c_in = 1
        for c in self.config.channels:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.hidden = nn.Linear(c_in * 4 * 4, self.config.feature_dim)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(self.config.feature_dim, self.config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, feature_dim), after the ReLU of the hidden layer."""
        if x.dim() != 4 or x.shape[1:] != (1, 32, 32):
            raise ValueError(f"expected images of shape (N, 1, 32, 32), got {tuple(x.shape)}")
        h = self.body(x).flatten(1)  # (N, C * 4 * 4)
        return F.relu(self.hidden(h))  # (N, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes)."""
        return self.head(self.dropout(self.features(x)))


def load_classifier(folder: str | Path | None = None) -> MnistClassifier:
    """The shipped classifier in eval mode (fp32), from ``folder`` (default: the package's copy)."""
    folder = Path(folder) if folder is not None else CLASSIFIER_DIR
    if not (folder / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(
            f"classifier weights missing in {folder}; produce them with `python scripts/train_classifier.py`"
        )
    config = ClassifierConfig(**json.loads((folder / CONFIG_NAME).read_text()))
    model = MnistClassifier(config)
    model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    return model.eval()


@torch.no_grad()
def accuracy(model: MnistClassifier, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on ``images`` (N, 1, 32, 32)."""
    model.eval()
    correct = sum(
        int((model(images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum())
        for i in range(0, len(images), batch)
    )
    return correct / len(images)


@dataclass
class ClassifierTrainConfig:
    """How :func:`train_classifier` trains (AdamW, one-cycle-like warmup + cosine, batch 128)."""

    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    augment: bool = True  # small random affine jitter: generated digits are less centred
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0 or not self.lr > 0 or self.warmup_steps < 0:
            raise ValueError(f"invalid classifier training config {self}")


@dataclass
class ClassifierTrainResult:
    """Outcome of :func:`train_classifier`."""

    valid_accuracy: float
    test_accuracy: float
    wall_time_s: float


def random_affine(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Jitter each image by a random rotation (+-10 deg), scale (0.9-1.1) and shift (+-2 px)."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    scale = 0.9 + 0.2 * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 / 16)  # 2 px in [-1, 1] coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, 32, 32, 2)
    # grid_sample pads with 0, so sample x + 1 (background 0) and shift back.
    return F.grid_sample(x + 1, grid, align_corners=False) - 1


def train_classifier(cfg: ClassifierTrainConfig, out_dir: str | Path = CLASSIFIER_DIR) -> ClassifierTrainResult:
    """Train :class:`MnistClassifier` on the MNIST train split and save it in ``out_dir``.

    Writes ``model.safetensors``, ``config.json`` and ``train_log.txt`` (losses, the
    validation and the test accuracy).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    images, labels = load_mnist("train")
    model = MnistClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min((k + 1) / max(1, cfg.warmup_steps), 0.5 * (1 + math.cos(math.pi * k / total)))
    )
    log = open(out_dir / "train_log.txt", "w")
    t0 = time.perf_counter()
    try:
        for epoch in range(cfg.epochs):
            model.train()
            order = torch.randperm(len(images), generator=gen)
            running = 0.0
            for i in tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", mininterval=10):
                idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                x = random_affine(images[idx], gen) if cfg.augment else images[idx]
                loss = F.cross_entropy(model(x), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running += loss.item()
            valid = accuracy(model, *load_mnist("valid"))
            line = f"epoch {epoch + 1} loss {running / steps_per_epoch:.4f} valid_acc {valid:.4f}"
            logger.info(line)
            log.write(line + "\n")
        test = accuracy(model, *load_mnist("test"))
        wall = time.perf_counter() - t0
        line = f"test_acc {test:.4f} (official MNIST test set, 10000 images); wall {wall:.0f}s"
        logger.info(line)
        log.write(line + "\n")
    finally:
        log.close()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / WEIGHTS_NAME))
    cfg_dict = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(model.config).items()}
    (out_dir / CONFIG_NAME).write_text(json.dumps(cfg_dict, indent=2) + "\n")
    (out_dir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return ClassifierTrainResult(valid, test, wall)

"""Training of the project's embedded default models (small MNIST DDPMs)."""

from .ddpm import TrainConfig, TrainResult, build_scheduler, build_unet, train_ddpm

__all__ = ["TrainConfig", "TrainResult", "build_scheduler", "build_unet", "train_ddpm"]

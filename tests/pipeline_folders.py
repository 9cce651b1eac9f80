"""Tiny diffusers pipeline folders, built and saved the way a user's would be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_cond_unet
from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel


def tiny_unet(num_class_embeds: int | None = None) -> UNet2DModel:
    """A 16x16 one-channel UNet2DModel of 8/16 channels (random weights)."""
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1, norm_num_groups=4, num_class_embeds=num_class_embeds,
    ).eval()  # fmt: skip


def ddim_folder(path: Path, num_class_embeds: int | None = None) -> Path:
    """A ``DDIMPipeline`` folder (a class-conditional UNet when ``num_class_embeds`` is set)."""
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    DDIMPipeline(unet=tiny_unet(num_class_embeds), scheduler=scheduler).save_pretrained(path)
    return path


def tiny_vae(sample_size: int = 32):
    """A two-level AutoencoderKL of 8/16 channels, 4 latent channels (random weights)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
        norm_num_groups=8, sample_size=sample_size,
    ).eval()  # fmt: skip


def sd_pipeline(tmp_path: Path):
    """A Stable Diffusion pipeline of tiny random parts, with a character-level CLIP tokenizer."""
    transformers = pytest.importorskip("transformers")
    from diffusers import StableDiffusionPipeline

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in letters:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(
        str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=16
    )
    torch.manual_seed(0)
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )).eval()  # fmt: skip
    vae = tiny_vae()
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=make_cond_unet(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)  # fmt: skip


def sd_folder(path: Path) -> Path:
    """The tiny Stable Diffusion pipeline saved as a folder."""
    sd_pipeline(path.parent / f"{path.name}_tokenizer").save_pretrained(path)
    return path


def tiny_dit(in_channels: int = 4, learn_sigma: bool = True):
    """A class-conditional DiT of two blocks on 16x16 latents, patch 4, 10 classes plus the null label."""
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    return DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=in_channels,
        out_channels=2 * in_channels if learn_sigma else in_channels, num_layers=2, sample_size=16, patch_size=4,
        num_embeds_ada_norm=10,
    ).eval()  # fmt: skip


def dit_folder(path: Path) -> Path:
    """A latent ``DiTPipeline`` folder: the tiny DiT (learned variance, as the released DiTs) and a tiny VAE."""
    from diffusers import DiTPipeline

    torch.manual_seed(0)
    vae = tiny_vae()
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    DiTPipeline(transformer=tiny_dit(), vae=vae, scheduler=scheduler).save_pretrained(path)
    return path


class _PooledPixels(torch.nn.Module):
    """A stand-in for the FID Inception network: (N, 3, 299, 299) -> (N, 2048) pooled pixels."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(img, (26, 27)).flatten(1)[:, :2048]


def fake_inception(path: Path) -> Path:
    """A TorchScript file ``adpdm evaluate --inception`` accepts, fast enough for tests."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(_PooledPixels()), str(path))
    return path


def write_images(folder: Path, n: int, seed: int = 0, sizes=((8, 8), (6, 10))) -> list[Path]:
    """``n`` random RGB PNGs in ``folder``, cycling through ``sizes`` (H, W)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        paths.append(folder / f"img{i:03d}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def pixart_folder(path: Path) -> Path:
    """A ``PixArtAlphaPipeline`` folder of tiny random parts: a T5 encoder with a character-level tokenizer
    (built offline from a unigram vocabulary), a VAE and a PixArt transformer on 8x8 latents."""
    transformers = pytest.importorskip("transformers")
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    vocab += [(c, -1.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    unigram = Tokenizer(models.Unigram(vocab, unk_id=2))
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer = transformers.T5TokenizerFast(tokenizer_object=unigram, pad_token="<pad>", eos_token="</s>",
                                             unk_token="<unk>", extra_ids=0, model_max_length=16)  # fmt: skip
    torch.manual_seed(0)
    text_encoder = transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=len(vocab), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, pad_token_id=0,
        eos_token_id=1,
    )).eval()  # fmt: skip
    vae = tiny_vae(16)
    transformer = PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, cross_attention_dim=16, caption_channels=16, norm_num_groups=1,
    ).eval()  # fmt: skip
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000)
    PixArtAlphaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                        scheduler=scheduler).save_pretrained(path)  # fmt: skip
    return path

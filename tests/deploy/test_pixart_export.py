"""A PixArt transformer through the ONNX export: the text embeddings and their padding mask are inputs of
the graph (any batch and token count), and ONNX Runtime computes what PyTorch does."""

from __future__ import annotations

import pytest
import torch
from deploy_helpers import STEPS, frozen_pixart

import adpdm
from adpdm.deploy import OnnxDenoiser, export_onnx
from adpdm.eval.metrics import psnr

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def pixart(tmp_path_factory):
    """A frozen W8A8 PixArt (2 timestep groups) and its export."""
    model = frozen_pixart(groups=2)
    out = tmp_path_factory.mktemp("pixart_onnx")
    export_onnx(model, out)
    return model, OnnxDenoiser(out)


def _padded(batch: int, tokens: int, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (B, T, 16) embeddings and a (B, T) mask with ``lengths[i]`` tokens in row i, padding after."""
    mask = (torch.arange(tokens) < torch.tensor(lengths)[:, None]).float()
    return torch.randn(batch, tokens, 16), mask


def test_the_graph_takes_the_embeddings_and_their_mask(pixart):
    _, denoiser = pixart
    assert denoiser.inputs == ["sample", "timestep", "encoder_hidden_states", "encoder_attention_mask"]
    assert len(denoiser.sessions) == 2 and denoiser.values is not None  # one graph, a session per group


@pytest.mark.parametrize(("batch", "tokens", "lengths"), [(3, 11, [11, 6, 2]), (1, 120, [9])])
def test_onnxruntime_matches_pytorch_with_padded_prompts(pixart, batch, tokens, lengths):
    model, denoiser = pixart
    x = torch.randn(batch, 4, 8, 8)
    emb, mask = _padded(batch, tokens, lengths)
    for k in range(STEPS):
        t = torch.full((batch,), 999 - 160 * k)
        with adpdm.step_context(k), torch.no_grad():
            ref = model(x, t, encoder_hidden_states=emb, encoder_attention_mask=mask).sample
            unmasked = model(x, t, encoder_hidden_states=emb).sample
            out = denoiser(x, t, encoder_hidden_states=emb, encoder_attention_mask=mask).sample
        assert out.shape == (batch, 8, 8, 8)  # eps and the learned variance, about [-2, 2]
        assert float(psnr(out, ref).min()) > 30
        # the mask reaches the graph: on padded prompts ignoring it costs far more than ONNX Runtime's rounding
        padded = torch.tensor(lengths) < tokens
        assert bool((psnr(out, ref) > psnr(unmasked, ref) + 10)[padded].all())


def test_no_mask_attends_to_every_token_as_pytorch_does(pixart):
    model, denoiser = pixart
    x, (emb, _) = torch.randn(2, 4, 8, 8), _padded(2, 5, [5, 5])
    with adpdm.step_context(0), torch.no_grad():
        ref = model(x, torch.full((2,), 999), encoder_hidden_states=emb).sample
        out = denoiser(x, torch.full((2,), 999), encoder_hidden_states=emb).sample
    assert float(psnr(out, ref).min()) > 30
    with pytest.raises(ValueError, match="encoder_attention_mask must be"), adpdm.step_context(0):
        denoiser(x, torch.full((2,), 999), encoder_hidden_states=emb, encoder_attention_mask=torch.zeros(2, 1, 5))

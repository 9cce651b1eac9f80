import pytest
import torch

from adpdm.tensor.packing import pack_int4, unpack_int4


@pytest.mark.parametrize("shape", [(7,), (4, 3, 3, 3), (1,)])
def test_round_trip(shape):
    codes = torch.randint(0, 16, shape, dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.numel() == (codes.numel() + 1) // 2
    assert torch.equal(unpack_int4(packed, shape), codes)


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        pack_int4(torch.tensor([16], dtype=torch.uint8))
    with pytest.raises(ValueError):
        unpack_int4(torch.zeros(3, dtype=torch.uint8), (10,))

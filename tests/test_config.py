import pytest

from adpdm import QuantConfig


def test_presets_and_overrides():
    cfg = QuantConfig.preset("w4a8", groups=4, num_steps=100)
    assert (cfg.wbits, cfg.abits, cfg.groups, cfg.num_steps) == (4, 8, 4, 100)
    assert QuantConfig.preset("W6A6").abits == 6
    with pytest.raises(ValueError, match="preset"):
        QuantConfig.preset("w3a3")


def test_json_round_trip_has_type_and_version():
    cfg = QuantConfig.preset("w8a8", groups=2, num_steps=10, exclude=("conv_in",))
    data = cfg.to_dict()
    assert data["_type"] == "adpdm.QuantConfig" and data["_version"] == 1
    assert QuantConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"wbits": 9}, "wbits"),
        ({"abits": 1}, "abits"),
        ({"groups": 11, "num_steps": 10}, "groups"),
        ({"partition": "random"}, "partition"),
        ({"softmax_bits": 17}, "softmax_bits"),
        ({"weight_init": "max"}, "weight_init"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"QuantConfig.{field}"):
        QuantConfig(**kwargs)


def test_from_dict_rejects_foreign_or_newer():
    with pytest.raises(ValueError, match="_type"):
        QuantConfig.from_dict({"_type": "other", "_version": 1})
    with pytest.raises(ValueError, match="version"):
        QuantConfig.from_dict({"_type": "adpdm.QuantConfig", "_version": 99})
    with pytest.raises(ValueError, match="unknown"):
        QuantConfig.from_dict({"_type": "adpdm.QuantConfig", "_version": 1, "bogus": 1})

"""Official variants: exact state_dict keys (names, order, shapes) and parameter counts."""
import pytest
import torch

from resformer_deploy.model.config import ConfigError, ResformerConfig
from resformer_deploy.model.resformer import build_model, count_parameters
from resformer_deploy.model.variants import VARIANTS, get_config

# Published / official-code counts excluding BatchNorm (paper convention), and including it.
EX_BN = {"ti": 11_141_312, "s": 17_761_472, "m": 35_523_776, "l": 60_270_976, "cifar": 10_753_472,
         "dvsg": 2_689_990}
ALL = {"ti": 11_180_992, "s": 17_813_824, "m": 35_601_472, "l": 60_375_680, "cifar": 10_793_152,
       "dvsg": 2_709_830}
SPEC = {  # planes, heads, stem channels/kernel, group size, classes, plif
    "ti": ((64, 192, 384), (1, 3, 6), 7, 64, 1000, False),
    "s": ((64, 256, 512), (1, 4, 8), 7, 64, 1000, False),
    "m": ((64, 384, 768), (1, 6, 12), 7, 64, 1000, False),
    "l": ((128, 512, 1024), (2, 8, 16), 7, 64, 1000, False),
    "cifar": ((64, 192, 384), (1, 3, 6), 3, 64, 10, False),
    "dvsg": ((32, 96, 192), (1, 3, 6), 3, 32, 11, True),
}


def bn_keys(p, n):
    return [(f"{p}.bn.weight", (n,)), (f"{p}.bn.bias", (n,)), (f"{p}.bn.running_mean", (n,)),
            (f"{p}.bn.running_var", (n,)), (f"{p}.bn.num_batches_tracked", ())]


def expected_keys(name):
    """The official key list, generated from the naming rules of the upstream module tree."""
    planes, heads, k, G, K, plif = SPEC[name]

    def w(p):
        return [(f"{p}.w", ())] if plif else []

    keys = [("prologue.0.weight", (planes[0], 3, k, k))] + bn_keys("prologue.1", planes[0])
    patches = (4, 2, 1)
    for i, (C, h, p) in enumerate(zip(planes, heads, patches)):
        j = 0
        if i:
            q = f"layers.{i}.0"
            keys += [(f"{q}.conv.weight", (C, planes[i - 1], 3, 3))] + bn_keys(f"{q}.norm", C)
            keys += w(f"{q}.activation")
            j = 1
        for _ in range(i + 1):
            q = f"layers.{i}.{j}"
            keys += [(f"{q}.firing_rate_x", (1, 1, h, 1, 1)), (f"{q}.firing_rate_attn", (1, 1, h, 1, 1))]
            keys += w(f"{q}.activation_in")
            keys += [(f"{q}.W.weight", (2 * C, C, p, p))] + bn_keys(f"{q}.norm", 2 * C)
            keys += w(f"{q}.activation_attn") + w(f"{q}.activation_out")
            keys += [(f"{q}.Wproj.weight", (C, C, 1, 1))] + bn_keys(f"{q}.norm_proj", C)
            q = f"layers.{i}.{j + 1}"
            keys += w(f"{q}.up.0") + [(f"{q}.up.1.weight", (4 * C, C, 1, 1))] + bn_keys(f"{q}.up.2", 4 * C)
            keys += w(f"{q}.conv.0.0") + [(f"{q}.conv.0.1.weight", (4 * C, G, 3, 3))]
            keys += bn_keys(f"{q}.conv.0.2", 4 * C)
            keys += w(f"{q}.down.0") + [(f"{q}.down.1.weight", (C, 4 * C, 1, 1))] + bn_keys(f"{q}.down.2", C)
            j += 2
    keys += [("classifier.weight", (K, planes[-1]))]
    return keys


@pytest.mark.parametrize("name", ["ti", "s", "m", "l", "cifar", "dvsg"])
def test_official_variant_keys_shapes_and_counts(name):
    model = build_model(name)
    sd = model.state_dict()
    got = [(k, tuple(v.shape)) for k, v in sd.items()]
    assert got == expected_keys(name)  # names, order and shapes
    assert len(sd) == (249 if name == "dvsg" else 211)
    assert count_parameters(model) == EX_BN[name]
    assert count_parameters(model, exclude_bn=False) == ALL[name]
    assert sd["layers.0.0.firing_rate_x"].dtype == torch.float32
    assert sd["prologue.1.bn.num_batches_tracked"].dtype == torch.int64


def test_lenth_follows_construction_image_size():
    assert [m.lenth for _, m in build_model("ti").dssa_layers()] == [196] * 6
    assert [m.lenth for _, m in build_model("l", img_size=288).dssa_layers()] == [324] * 6
    assert [m.lenth for _, m in build_model("cifar").dssa_layers()] == [64] * 6
    assert [m.lenth for _, m in build_model("cifar", img_size=64).dssa_layers()] == [256] * 6


def test_grouped_conv_groups():
    m = build_model("ti")
    assert m.layers[0][1].conv[0][1].groups == 4
    assert m.layers[1][2].conv[0][1].groups == 12
    assert m.layers[2][2].conv[0][1].groups == 24
    assert build_model("dvsg").layers[2][2].conv[0][1].groups == 24  # 768/32


def test_plif_initial_decay_and_no_weight_decay():
    m = build_model("dvsg")
    assert m.layers[0][0].activation_in.decay() == pytest.approx(0.5)
    assert len(m.no_weight_decay()) == 38


def test_invalid_configs_list_every_problem():
    with pytest.raises(ConfigError) as e:
        ResformerConfig(planes=(30, 64), num_heads=(4, 2), patch_sizes=(4, 3), blocks=(1, 1),
                        stem="conv3x3", img_size=8, group_size=64)
    msg = str(e.value)
    assert "planes 30 not divisible by num_heads 4" in msg
    assert "GWFFN width 120 not divisible by group_size 64" in msg
    assert "stage 1: feature map 4x4" in msg and "patch size 3" in msg
    with pytest.raises(ConfigError, match="unknown variant 'xl'"):
        get_config("xl")


def test_input_shape_errors():
    m = build_model("digits").eval()
    from resformer_deploy.model.calibration import randomize_state
    randomize_state(m)
    with pytest.raises(ValueError, match="built for 1 channels of 8x8"):
        m(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\[B,C,H,W\] or \[B,T,C,H,W\]"):
        m(torch.zeros(8, 8))
    assert tuple(m(torch.zeros(3, 1, 8, 8)).shape) == (4, 3, 10)
    assert set(VARIANTS) >= {"ti", "s", "m", "l", "cifar", "dvsg", "digits"}

"""Checkpoint layouts, strict matching and the one-line errors for bad files."""
import collections
import os

import pytest
import torch

from resformer_deploy.model.checkpoint import (infer_config, load_checkpoint, save_checkpoint)
from resformer_deploy.model.checkpoint_records import TrainingRecord
from resformer_deploy.errors import CheckpointError
from resformer_deploy.model.resformer import build_model
from resformer_deploy.model.calibration import randomize_state


def official_style(tmp_path, model, name="ckpt.pth", half_buffers=False):
    sd = model.state_dict()
    if half_buffers:  # AMP-trained checkpoints may hold fp16 firing-rate buffers
        sd = {k: (v.half() if "firing_rate" in k else v) for k, v in sd.items()}
    path = tmp_path / name
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": []}, "epoch": 311,
                "max_acc1": 74.382, "lr_scheduler": {"last_epoch": 311}}, path)
    return path


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k].float(), sb[k].float()), k


@pytest.mark.parametrize("variant,img,T", [("ti", 224, 4), ("cifar", 32, 4), ("dvsg", 64, 16)])
def test_official_training_checkpoint_is_detected(tmp_path, variant, img, T):
    ref = randomize_state(build_model(variant))
    ck = load_checkpoint(official_style(tmp_path, ref))
    assert ck.variant == variant and ck.config_source == "inferred"
    assert (ck.config.img_size, ck.config.T) == (img, T)  # official defaults per variant
    assert ck.meta == {"epoch": 311, "max_acc1": 74.382}
    assert_same_weights(ck.model, ref)
    assert not ck.model.training


def test_float16_buffers_are_cast_and_reported(tmp_path):
    ref = randomize_state(build_model("cifar"))
    ck = load_checkpoint(official_style(tmp_path, ref, half_buffers=True))
    assert ck.model.layers[0][0].firing_rate_x.dtype == torch.float32
    assert torch.equal(ck.model.layers[0][0].firing_rate_x, ref.layers[0][0].firing_rate_x.half().float())
    assert any("12 half-precision" in n for n in ck.notes)


def test_bare_state_dict_ddp_prefix_and_overrides(tmp_path):
    ref = randomize_state(build_model("s"))
    p = tmp_path / "bare.pth"
    torch.save(collections.OrderedDict(("module." + k, v) for k, v in ref.state_dict().items()), p)
    ck = load_checkpoint(p, img_size=128, T=10)
    assert ck.variant == "s" and ck.config.img_size == 128 and ck.config.T == 10
    assert [m.lenth for _, m in ck.model.dssa_layers()] == [64] * 6
    assert_same_weights(ck.model, ref)


def test_transfer_checkpoint_with_other_class_count(tmp_path):
    ref = randomize_state(build_model("s", num_classes=10, img_size=128))
    ck = load_checkpoint(official_style(tmp_path, ref), img_size=128)
    assert ck.config.num_classes == 10 and ck.variant == "s"


def test_our_checkpoint_round_trip(tmp_path):
    ref = randomize_state(build_model("digits"))
    p = tmp_path / "d.pt"
    save_checkpoint(p, ref, epoch=3, max_acc1=50.0, record={"training": {"seed": 1}})
    ck = load_checkpoint(p)
    assert ck.config_source == "checkpoint" and ck.config == ref.config
    assert ck.records.training == TrainingRecord(version=2, seed=1)  # written at the current version
    assert_same_weights(ck.model, ref)
    assert [f for f in os.listdir(tmp_path)] == ["d.pt"]  # no temp files left


def test_missing_file():
    with pytest.raises(CheckpointError, match="checkpoint file not found: /nonexistent/x.pth"):
        load_checkpoint("/nonexistent/x.pth")


def test_corrupt_and_truncated_files(tmp_path):
    p = tmp_path / "garbage.pth"
    p.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="garbage.pth: not a readable PyTorch checkpoint"):
        load_checkpoint(p)
    good = tmp_path / "good.pth"
    torch.save(build_model("digits").state_dict(), good)
    t = tmp_path / "trunc.pth"
    t.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="trunc.pth: not a readable PyTorch checkpoint"):
        load_checkpoint(t)
    e = tmp_path / "empty.pth"
    e.write_bytes(b"")
    with pytest.raises(CheckpointError, match="checkpoint file is empty"):
        load_checkpoint(e)


class Payload:  # a pickled object that weights_only loading must refuse
    def __init__(self):
        self.sd = build_model("digits").state_dict()


def test_weights_only_refuses_pickled_objects_unless_opted_out(tmp_path):
    p = tmp_path / "pickled.pth"
    torch.save({"model": Payload().sd, "extra": Payload()}, p)
    with pytest.raises(CheckpointError, match="refused by weights_only=True loading.*--unsafe-load"):
        load_checkpoint(p, img_size=8)
    ck = load_checkpoint(p, variant="digits", weights_only=False)
    assert ck.variant == "digits"


def test_other_architecture(tmp_path):
    p = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)}, p)
    with pytest.raises(CheckpointError,
                       match=r"not a SpikingResformer checkpoint: key 'prologue.0.weight' missing"):
        load_checkpoint(p)
    q = tmp_path / "list.pth"
    torch.save([1, 2, 3], q)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(q)


def test_missing_unexpected_and_shape_mismatch_are_named(tmp_path):
    sd = build_model("ti").state_dict()
    del sd["layers.2.5.W.weight"]
    sd["layers.9.extra"] = torch.zeros(1)
    sd["classifier.weight"] = torch.zeros(10, 383)
    p = tmp_path / "bad.pth"
    torch.save(sd, p)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(p, variant="ti")
    msg = str(e.value)
    assert "\n" not in msg
    assert "1 missing key(s): layers.2.5.W.weight" in msg
    assert "1 unexpected key(s): layers.9.extra" in msg
    assert "classifier.weight: checkpoint (10, 383) vs model (1000, 384)" in msg


def test_variant_forced_on_wrong_checkpoint(tmp_path):
    p = tmp_path / "cifar.pth"
    torch.save(build_model("cifar").state_dict(), p)
    with pytest.raises(CheckpointError, match=r"does not fit SpikingResformer 'ti'.*shape mismatch"):
        load_checkpoint(p, variant="ti")


def test_custom_architecture_needs_image_size(tmp_path):
    m = build_model(build_model("digits").config.replace(planes=(16, 32, 48), name="custom"))
    p = tmp_path / "custom.pth"
    torch.save(m.state_dict(), p)
    with pytest.raises(CheckpointError, match="custom architecture.*pass --img-size"):
        load_checkpoint(p)
    ck = load_checkpoint(p, img_size=8)
    assert ck.variant == "custom" and ck.config.planes == (16, 32, 48) and ck.config.in_channels == 1


def test_infer_config_reads_every_field():
    cfg = infer_config(build_model("dvsg").state_dict())
    assert (cfg.planes, cfg.num_heads, cfg.group_size, cfg.neuron, cfg.stem, cfg.num_classes) == (
        (32, 96, 192), (1, 3, 6), 32, "plif", "conv3x3", 11)

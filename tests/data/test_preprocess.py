"""Presets against independent computations: torchvision transforms on the PIL image (the steps of
timm's transforms_imagenet_eval), numpy by hand for CIFAR at 32 and for the antialiased resize of
event frames."""
import math

import numpy as np
import pytest
import torch
from torchvision import transforms as T
from torchvision.datasets.folder import pil_loader

from resformer_deploy.data.preprocess import PRESETS, Preprocessor, Preset, preprocessor_for, preset_for
from resformer_deploy.model.variants import get_config
from resformer_deploy.data.sources import open_source
from resformer_deploy.errors import DeployError
from tests.support import datasets as D

# (height, width): portrait, landscape, square, smaller than the crop, odd margins
SIZES = ((40, 30), (17, 64), (33, 33), (9, 12), (64, 47), (100, 37))


def torchvision_eval(img_size, crop_pct, mean, std, gray=False):
    steps = [T.Grayscale()] if gray else []
    steps += [T.Resize(int(img_size / crop_pct), interpolation=T.InterpolationMode.BICUBIC),
              T.CenterCrop(img_size), T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


@pytest.mark.parametrize("preset,img_size,fmt", [("imagenet", 32, "PNG"), ("imagenet", 24, "JPEG"),
                                                 ("cifar10", 32, "PNG"), ("cifar100", 20, "JPEG")])
def test_image_presets_match_torchvision(tmp_path, preset, img_size, fmt):
    p = PRESETS[preset]
    src = open_source(D.image_folder(tmp_path, n_per_class=3, classes=2, sizes=SIZES, fmt=fmt))
    pre = Preprocessor(preset, img_size, 3)
    ref = torchvision_eval(img_size, p.crop_pct, p.mean, p.std)
    for i in range(len(src)):
        x = pre(src.load(i))
        want = ref(pil_loader(src.ref(i).name))
        assert x.dtype == torch.float32 and x.shape == (3, img_size, img_size)
        assert torch.allclose(x, want, atol=1e-6, rtol=0), (src.ref(i).name, (x - want).abs().max())


def test_imagenet_resize_size_is_floor_of_img_over_crop():
    pre = Preprocessor("imagenet", 224, 3)
    assert pre.resize_to == math.floor(224 / 0.95) == 235
    assert pre.to_json()["resize"] == 235 and pre.to_json()["crop"] == 224
    assert pre.describe() == ("preset imagenet: images: resize shorter side to 235 (bicubic), center crop 224, "
                              "/255, normalize mean (0.4850, 0.4560, 0.4060) std (0.2290, 0.2240, 0.2250)")


def test_cifar_at_32_is_only_normalized(tmp_path):
    src = open_source(D.cifar10(tmp_path, n=2, n_test=3))
    pre = Preprocessor("cifar10", 32, 3)
    mean, std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2023, 0.1994, 0.2010])
    for i in range(len(src)):
        raw = src.load(i)
        by_hand = (raw.astype(np.float64) / 255 - mean) / std
        assert np.allclose(pre(raw).numpy(), by_hand.transpose(2, 0, 1), atol=1e-5)
        # the official loader (timm prefetcher) normalizes uint8: (x - 255 mean) / (255 std)
        prefetch = (raw.astype(np.float32) - 255 * mean.astype(np.float32)) / (255 * std.astype(np.float32))
        assert np.allclose(pre(raw).numpy(), prefetch.transpose(2, 0, 1), atol=1e-5)


def test_cifar100_mean_std():
    p = PRESETS["cifar100"]
    assert np.allclose(np.array(p.mean) * 255, [129.3, 124.1, 112.4])
    assert np.allclose(np.array(p.std) * 255, [68.2, 65.4, 70.4])
    assert PRESETS["imagenet"].crop_pct == 0.95 and PRESETS["cifar10"].crop_pct == 1.0


def test_grayscale_file_for_rgb_model_as_pil_loader(tmp_path):
    src = open_source(D.image_folder(tmp_path, n_per_class=2, classes=1, gray=True, sizes=SIZES))
    pre = Preprocessor("imagenet", 16, 3)
    ref = torchvision_eval(16, 0.95, PRESETS["imagenet"].mean, PRESETS["imagenet"].std)
    for i in range(len(src)):
        assert torch.allclose(pre(src.load(i)), ref(pil_loader(src.ref(i).name)), atol=1e-6, rtol=0)


def test_digits_preset(tmp_path):
    digits = open_source("digits")
    pre = Preprocessor("digits", 8, 1)
    assert torch.equal(pre(digits.load(5), "tensor"), torch.from_numpy(digits.load(5)))
    # RGB images for the 1-channel digits model: PIL convert("L") (torchvision Grayscale), resize, /255
    src = open_source(D.image_folder(tmp_path, n_per_class=2, classes=1, sizes=SIZES))
    ref = torchvision_eval(8, 1.0, (0.0,), (1.0,), gray=True)
    for i in range(len(src)):
        assert torch.allclose(pre(src.load(i)), ref(pil_loader(src.ref(i).name)), atol=1e-6, rtol=0)


def antialiased_bilinear_1d(n_in, n_out):
    """Weights [n_out, n_in] of PIL-style antialiased bilinear (triangle filter widened by the
    scale when downsampling), written from the definition."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    w = np.zeros((n_out, n_in))
    for j in range(n_out):
        center = (j + 0.5) * scale
        for i in range(n_in):
            w[j, i] = max(0.0, 1 - abs((i + 0.5 - center) / support))
        w[j] /= w[j].sum()
    return w


@pytest.mark.parametrize("size,img", [(16, 8), (12, 8), (10, 16)])
def test_dvs_resize_by_hand(size, img):
    f = np.random.RandomState(0).poisson(1.0, (3, 2, size, size + 2)).astype(np.float32)
    x = Preprocessor("dvs", img, 2, T=3)(f)
    wh, ww = antialiased_bilinear_1d(size, img), antialiased_bilinear_1d(size + 2, img)
    by_hand = np.einsum("ah,tchw,bw->tcab", wh, f.astype(np.float64), ww)
    assert x.shape == (3, 2, img, img)
    assert np.allclose(x.numpy(), by_hand, atol=1e-4)


def test_dvs_third_channel_and_no_resize():
    f = np.random.RandomState(1).poisson(1.0, (4, 2, 8, 8)).astype(np.float32)
    x = Preprocessor("dvs", 8, 3, T=4)(f)
    assert x.shape == (4, 3, 8, 8)
    assert torch.equal(x[:, :2], torch.from_numpy(f)) and torch.equal(x[:, 2], torch.from_numpy(f.sum(1)))


def test_none_preset_checks_shape():
    pre = Preprocessor("none", 4, 2, T=3)
    a = np.arange(32, dtype=np.float64).reshape(2, 4, 4)
    assert torch.equal(pre(a, "tensor"), torch.from_numpy(a.astype(np.float32)))
    assert pre(np.zeros((3, 2, 4, 4)), "tensor").shape == (3, 2, 4, 4)
    with pytest.raises(DeployError) as e:
        pre(np.zeros((3, 4, 4)), "tensor")
    assert str(e.value) == "sample has shape [3, 4, 4], the model takes [2, 4, 4] or [3, 2, 4, 4]"


def test_errors():
    rgb = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(DeployError, match="preset imagenet normalizes 3 channels; the model takes 1"):
        Preprocessor("imagenet", 32, 1)
    plain = Preset("plain", "image", "bicubic", 1.0, (0.5,), (0.5,), "no grayscale conversion")
    with pytest.raises(DeployError) as e:
        Preprocessor(plain, 8, 1)(rgb)
    assert str(e.value) == ("model takes 1 input channel(s), image is RGB (3 channel(s)); "
                            "preset plain does not convert")
    with pytest.raises(DeployError) as e:
        Preprocessor("dvs", 8, 2, T=16)(np.zeros((4, 2, 8, 8), np.float32))
    assert str(e.value) == "frames have T=4 time steps, the model takes T=16"
    with pytest.raises(DeployError) as e:
        Preprocessor("dvs", 8, 1, T=4)(np.zeros((4, 2, 8, 8), np.float32))
    assert str(e.value).startswith("model takes 1 input channel(s); event frames give 2")
    with pytest.raises(DeployError) as e:
        Preprocessor("imagenet", 8, 3)(np.zeros((4, 2, 8, 8), np.float32), "frames")
    assert str(e.value) == "preset imagenet takes image data, not frames (shape [4, 2, 8, 8])"
    with pytest.raises(DeployError) as e:
        Preprocessor("dvs", 8, 2)(rgb)
    assert str(e.value) == "preset dvs takes frames data, not image (shape [10, 12, 3])"
    with pytest.raises(DeployError, match="unknown preset 'timm'"):
        Preprocessor("timm", 8, 3)


@pytest.mark.parametrize("variant,classes,kind,want", [
    ("ti", 1000, "imagefolder", "imagenet"), ("l", 1000, "imagefolder", "imagenet"),
    ("cifar", 10, "cifar10", "cifar10"), ("cifar", 100, "cifar100", "cifar100"),
    ("cifar", 100, "imagefolder", "cifar100"), ("dvsg", 11, "frames", "dvs"),
    ("digits", 10, "digits", "digits"), ("ti", 1000, "npz", "none"), ("cifar", 10, "npz", "none"),
    ("custom", 10, "cifar100", "cifar100")])
def test_preset_for(variant, classes, kind, want):
    assert preset_for(variant, classes, kind) == want


def test_preprocessor_for_model_and_source(tmp_path):
    cifar = open_source(D.cifar100(tmp_path, n=1, n_test=2))
    pre = preprocessor_for(cifar, get_config("cifar", num_classes=100))
    assert (pre.preset.name, pre.img_size, pre.in_channels, pre.T) == ("cifar100", 32, 3, 4)
    assert preprocessor_for(cifar, get_config("ti"), preset="cifar10").preset.name == "cifar10"
    assert preprocessor_for(open_source("digits"), get_config("digits")).preset.name == "digits"

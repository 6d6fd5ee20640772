"""SpikingResformer (Shi et al., CVPR 2024) in plain PyTorch.

Module tree, attribute names and state_dict keys match the official
implementation, so official checkpoints load with strict key matching, and the
forward pass performs the same float operations in the same order.
Tensors are multi-step ``[T, B, C, H, W]``; the model returns per-step logits
``[T, B, K]`` (the caller averages over T).
"""

import torch
import torch.nn as nn

from resformer_deploy.model.config import ResformerConfig
from resformer_deploy.errors import CalibrationError
from resformer_deploy.model.layers import BN, SeqConv2d, SeqGlobalAvgPool, SeqLinear, SeqMaxPool2d, SpikingMatmul, conv1x1, conv3x3
from resformer_deploy.model.neurons import NEURONS


class GWFFN(nn.Module):
    """Grouped-wise spiking FFN: up 1x1 -> grouped 3x3 (+inner residual) -> down 1x1 (+residual)."""

    def __init__(self, channels: int, num_conv: int = 1, ratio: int = 4, group_size: int = 64,
                 neuron=NEURONS["lif"]):
        super().__init__()
        inner = channels * ratio
        # index 0 is the neuron: it owns no keys but fixes the official indices up.1 / up.2
        self.up = nn.Sequential(neuron(), conv1x1(channels, inner), BN(inner))
        self.conv = nn.ModuleList(
            nn.Sequential(neuron(), conv3x3(inner, inner, groups=inner // group_size), BN(inner))
            for _ in range(num_conv))
        self.down = nn.Sequential(neuron(), conv1x1(inner, channels), BN(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.up(x)
        g = u
        for block in self.conv:
            g = block(g)
        return self.down(g + u) + x


class DSSA(nn.Module):
    """Dual Spike Self-Attention (multi-head).

    attn = LIF((y1^T @ s) * c1),  out = BN(Wproj(LIF((y2 @ attn) * c2))) + x
    with s = LIF(x), y = BN(W_p(s)) split per head into y1 | y2,
    c1 = 1/sqrt(rate(s) * d), c2 = 1/sqrt(rate(attn) * Np).
    """

    def __init__(self, dim: int, num_heads: int, lenth: int, patch_size: int, neuron=NEURONS["lif"]):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.lenth = lenth  # Np, fixed at construction from img_size (not in the state_dict)
        self.patch_size = patch_size
        # Buffers first so state_dict key order matches the official model.
        self.register_buffer("firing_rate_x", torch.zeros(1, 1, num_heads, 1, 1))
        self.register_buffer("firing_rate_attn", torch.zeros(1, 1, num_heads, 1, 1))
        self.init_firing_rate_x = False
        self.init_firing_rate_attn = False
        self.momentum = 0.999
        self.calibrating = False  # see resformer_deploy.model.calibration
        self._calib = {}

        self.activation_in = neuron()
        self.W = SeqConv2d(dim, dim * 2, patch_size, patch_size, bias=False)
        self.norm = BN(dim * 2)
        self.matmul1 = SpikingMatmul("r")
        self.matmul2 = SpikingMatmul("r")
        self.activation_attn = neuron()
        self.activation_out = neuron()
        self.Wproj = conv1x1(dim, dim)
        self.norm_proj = BN(dim)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def _track_rate(self, name: str, spikes: torch.Tensor):
        """Update a firing-rate buffer (training EMA as upstream, or exact calibration mean)."""
        rate = spikes.detach().mean((0, 1, 3, 4), keepdim=True)
        if self.calibrating:
            total, count = self._calib.get(name, (0.0, 0))
            n = spikes.shape[0] * spikes.shape[1]
            total, count = total + rate * n, count + n
            self._calib[name] = (total, count)
            setattr(self, f"firing_rate_{name}", (total / count).to(rate))
            return
        buf = getattr(self, f"firing_rate_{name}")
        flag = f"init_firing_rate_{name}"
        if not getattr(self, flag) and torch.all(buf == 0):
            buf = rate
        setattr(self, flag, True)
        setattr(self, f"firing_rate_{name}", buf * self.momentum + rate * (1 - self.momentum))

    def check_calibrated(self, path: str = "DSSA"):
        for name in ("x", "attn"):
            buf = getattr(self, f"firing_rate_{name}")
            if not bool(torch.isfinite(buf).all()) or not bool((buf > 0).all()):
                raise CalibrationError(
                    f"{path}.firing_rate_{name} = {buf.flatten().tolist()} is not positive: the "
                    f"attention scale 1/sqrt(rate*n) would be inf/NaN; load a trained checkpoint or "
                    f"run resformer_deploy.model.calibration.calibrate_firing_rates(model, batches)")

    def scales(self):
        """Per-head (c1, c2) as used in the forward pass, shape [1,1,h,1,1] each."""
        c1 = 1. / torch.sqrt(self.firing_rate_x * (self.dim // self.num_heads))
        c2 = 1. / torch.sqrt(self.firing_rate_attn * self.lenth)
        return c1, c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        h, d = self.num_heads, C // self.num_heads
        s = self.activation_in(x)
        y = self.norm(self.W(s)).reshape(T, B, h, 2 * d, -1)
        y1, y2 = y[:, :, :, :d, :], y[:, :, :, d:, :]  # per-head interleaved split
        s = s.reshape(T, B, h, d, -1)
        if self.training or self.calibrating:
            self._track_rate("x", s)
        c1 = 1. / torch.sqrt(self.firing_rate_x * (self.dim // self.num_heads))
        attn = self.matmul1(y1.transpose(-1, -2), s) * c1
        attn = self.activation_attn(attn)
        if self.training or self.calibrating:
            self._track_rate("attn", attn)
        c2 = 1. / torch.sqrt(self.firing_rate_attn * self.lenth)
        out = (self.matmul2(y2, attn) * c2).reshape(T, B, C, H, W)
        out = self.norm_proj(self.Wproj(self.activation_out(out)))
        return out + x


class DownsampleLayer(nn.Module):
    """LIF -> 3x3 stride-2 conv -> BN (real-valued output, no residual)."""

    def __init__(self, cin: int, cout: int, stride: int = 2, neuron=NEURONS["lif"]):
        super().__init__()
        self.conv = conv3x3(cin, cout, stride=stride)
        self.norm = BN(cout)
        self.activation = neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.activation(x)))


def build_stem(cfg: ResformerConfig) -> nn.Sequential:
    c0 = cfg.planes[0]
    if cfg.stem == "imagenet":
        return nn.Sequential(SeqConv2d(cfg.in_channels, c0, 7, 2, 3, bias=False), BN(c0),
                             SeqMaxPool2d(kernel_size=3, stride=2, padding=1))
    return nn.Sequential(SeqConv2d(cfg.in_channels, c0, 3, 1, 1, bias=False), BN(c0))


class SpikingResformer(nn.Module):
    def __init__(self, cfg: ResformerConfig):
        super().__init__()
        self.config = cfg
        self.T = cfg.T
        self.skip = ["prologue.0", "classifier"]  # excluded from SOP counting (paper convention)
        neuron = NEURONS[cfg.neuron]
        self.prologue = build_stem(cfg)
        self.layers = nn.Sequential()
        sizes = cfg.stage_sizes()
        for i, (c, h, p, n) in enumerate(zip(cfg.planes, cfg.num_heads, cfg.patch_sizes, cfg.blocks)):
            stage = nn.Sequential()
            if i:
                stage.append(DownsampleLayer(cfg.planes[i - 1], c, stride=2, neuron=neuron))
            for _ in range(n):
                stage.append(DSSA(c, h, (sizes[i] // p) ** 2, p, neuron=neuron))
                stage.append(GWFFN(c, ratio=cfg.ffn_ratio, group_size=cfg.group_size, neuron=neuron))
            self.layers.append(stage)
        self.avgpool = SeqGlobalAvgPool()
        self.classifier = SeqLinear(cfg.planes[-1], cfg.num_classes, bias=False)
        self.init_weight()

    def init_weight(self):
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def dssa_layers(self):
        return [(n, m) for n, m in self.named_modules() if isinstance(m, DSSA)]

    def check_calibrated(self):
        for name, m in self.dssa_layers():
            m.check_calibrated(name)

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """[B,C,H,W] static image -> repeated [T,B,C,H,W]; [B,T,C,H,W] event frames -> [T,B,C,H,W]."""
        cfg = self.config
        if x.dim() == 4:
            x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        elif x.dim() == 5:
            x = x.transpose(0, 1)
        else:
            raise ValueError(f"input must be [B,C,H,W] or [B,T,C,H,W], got shape {tuple(x.shape)}")
        if x.shape[2] != cfg.in_channels or x.shape[-2:] != (cfg.img_size, cfg.img_size):
            raise ValueError(
                f"input has {x.shape[2]} channels of {x.shape[-2]}x{x.shape[-1]}, model "
                f"'{cfg.name}' was built for {cfg.in_channels} channels of {cfg.img_size}x{cfg.img_size}")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and not any(m.calibrating for _, m in self.dssa_layers()):
            self.check_calibrated()
        x = self.to_sequence(x)
        x = self.prologue(x)
        x = self.layers(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 2)
        return self.classifier(x)

    def no_weight_decay(self):
        return {f"{n}.w" for n, m in self.named_modules() if isinstance(m, NEURONS["plif"])}


def build_model(cfg_or_name, **overrides) -> SpikingResformer:
    from resformer_deploy.model.variants import get_config
    cfg = cfg_or_name if isinstance(cfg_or_name, ResformerConfig) else get_config(cfg_or_name, **overrides)
    if overrides and isinstance(cfg_or_name, ResformerConfig):
        cfg = cfg.replace(**overrides)
    return SpikingResformer(cfg)


def count_parameters(model: nn.Module, exclude_bn: bool = True) -> int:
    """Parameter count; the paper's convention excludes BatchNorm affine parameters."""
    total = 0
    for name, p in model.named_parameters():
        if exclude_bn and ".bn." in f".{name}":
            continue
        total += p.numel()
    return total

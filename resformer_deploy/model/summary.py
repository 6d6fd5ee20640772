"""What `resformer-deploy info` reports about a loaded checkpoint (``CheckpointSummary``, typed)."""
import dataclasses
from dataclasses import dataclass
from typing import List, Optional

import torch

from resformer_deploy.errors import one_line
from resformer_deploy.util.memory_budget import check_bytes
from resformer_deploy.model.checkpoint import LoadedCheckpoint
from resformer_deploy.model.checkpoint_records import EvaluationRecord, TrainingRecord, to_plain
from resformer_deploy.model.config import ResformerConfig
from resformer_deploy.model.resformer import count_parameters
from resformer_deploy.model.variants import OFFICIAL_PARAMS_EX_BN, VARIANTS


@dataclass(frozen=True)
class FiringRates:
    """One DSSA layer's firing-rate buffers (per head) and its attention scales c1, c2 (None
    unless every buffer is positive and finite: ``calibrated``)."""
    layer: str
    heads: int
    head_dim: int
    lenth: int
    firing_rate_x: List[float]
    firing_rate_attn: List[float]
    c1: Optional[List[float]]
    c2: Optional[List[float]]
    calibrated: bool


@dataclass(frozen=True)
class RecordedEvaluation:
    """The held-out accuracy an evaluation record states, with its sample count and data set's name."""
    test_accuracy: float
    n_test: Optional[int]
    dataset: Optional[str]


@dataclass(frozen=True)
class CheckpointSummary:
    """What `info` reports about a loaded checkpoint; ``to_json``: `info --json`, the fields in order."""
    checkpoint: str
    variant: str
    config_source: str
    config: ResformerConfig
    stage_sizes: List[int]
    lenths: List[int]
    params_ex_bn: int
    params_total: int
    official_params_ex_bn: Optional[int]  # the paper's count for this variant (None: none published)
    state_dict_keys: int
    state_dict_parameters: int
    state_dict_buffers: int
    epoch: Optional[int]  # the official layout's counters (checked as loaded: model/checkpoint.py)
    max_acc1: Optional[float]
    training_record: Optional[TrainingRecord]
    evaluation_record: Optional[EvaluationRecord]
    recorded_evaluation: Optional[RecordedEvaluation]
    firing_rates: List[FiringRates]
    calibrated: bool  # every DSSA firing-rate buffer positive and finite: runs in eval mode
    notes: List[str]

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        rec = self.recorded_evaluation
        out.update(config=self.config.to_dict(),
                   training_record=None if self.training_record is None else to_plain(self.training_record),
                   evaluation_record=None if self.evaluation_record is None else to_plain(self.evaluation_record),
                   recorded_evaluation=None if rec is None else dataclasses.asdict(rec),
                   firing_rates=[dataclasses.asdict(r) for r in self.firing_rates])
        return out


def checkpoint_summary(ck: LoadedCheckpoint) -> CheckpointSummary:
    cfg, model = ck.config, ck.model
    sd = model.state_dict()
    n_params = len(dict(model.named_parameters()))
    rates = []
    for name, m in model.dssa_layers():
        ok = bool(torch.isfinite(m.firing_rate_x).all() and (m.firing_rate_x > 0).all()
                  and torch.isfinite(m.firing_rate_attn).all() and (m.firing_rate_attn > 0).all())
        c1, c2 = m.scales()
        rates.append(FiringRates(name, m.num_heads, m.head_dim, m.lenth, m.firing_rate_x.flatten().tolist(),
                                 m.firing_rate_attn.flatten().tolist(), c1.flatten().tolist() if ok else None,
                                 c2.flatten().tolist() if ok else None, ok))
    training = ck.records.training if ck.records else None
    evaluation = ck.evaluation  # both checked when the file was loaded
    params = count_parameters(model)
    official = OFFICIAL_PARAMS_EX_BN.get(ck.variant)
    if official is not None and cfg.num_classes != VARIANTS[ck.variant].num_classes:
        official = None  # published counts are for the variant's own number of classes
    return CheckpointSummary(
        checkpoint=ck.path, variant=ck.variant, config_source=ck.config_source, config=cfg,
        stage_sizes=cfg.stage_sizes(), lenths=cfg.lenths(), params_ex_bn=params,
        params_total=count_parameters(model, exclude_bn=False), official_params_ex_bn=official,
        state_dict_keys=len(sd), state_dict_parameters=n_params, state_dict_buffers=len(sd) - n_params,
        epoch=ck.meta.get("epoch"), max_acc1=ck.meta.get("max_acc1"), training_record=training,
        evaluation_record=evaluation, recorded_evaluation=recorded_accuracy(evaluation), firing_rates=rates,
        calibrated=all(r.calibrated for r in rates), notes=ck.notes)


TEXT = 120  # characters of a record's data-set name shown in `info`'s table


def recorded_accuracy(evaluation: Optional[EvaluationRecord]) -> Optional[RecordedEvaluation]:
    """The held-out accuracy an evaluation record states (None without a record), with the sample
    count and the data set's name (a generated set: its generator; else its path) when it states them."""
    if evaluation is None:
        return None
    ds = evaluation.dataset
    data = None if ds is None else ds.name or ds.generator or ds.path
    data = one_line(data)[:TEXT] if data and data.strip() else None
    return RecordedEvaluation(evaluation.test_accuracy, evaluation.n_test, data)


# ops, the drift ladder and the report keep, per neuron, step and sample, a target's whole spike record
# (1 B) and possibly its membranes (8 B in float64), the PyTorch record (spikes and near-threshold
# masks, 2 bits: analysis/compare.py TorchRecord) and per-layer temporaries: 32 B bounds them all.
RECORD_BYTES_PER_NEURON_STEP = 32
# verify keeps only the packed PyTorch record (its target's run is estimated and checked separately)
PACKED_RECORD_BYTES_PER_NEURON_STEP = 0.25
# the drift ladder (verify / report / drift on a fixed-point target) keeps the packed PyTorch record and
# the fixed-point rung's bool spikes (1 B); its other rungs' runs are estimated and checked separately
LADDER_RECORD_BYTES_PER_NEURON_STEP = PACKED_RECORD_BYTES_PER_NEURON_STEP + 1


def neurons_per_step(model) -> int:
    """Spiking neurons of one sample and one step, counted by running the model once with T = 1
    on a single blank input (the count does not depend on T, B or the values)."""
    import torch
    from resformer_deploy.model.neurons import LIF, PLIF

    cfg, count = model.config, []
    hooks = [m.register_forward_hook(lambda m, i, o: count.append(o[0].numel()))
             for m in model.modules() if isinstance(m, (LIF, PLIF))]
    T, model.T = model.T, 1
    try:
        with torch.no_grad():
            dtype = next(model.parameters()).dtype
            model(torch.zeros(1, cfg.in_channels, cfg.img_size, cfg.img_size, dtype=dtype))
    finally:
        model.T = T
        for h in hooks:
            h.remove()
    return sum(count)


def check_recording(model, samples: int, bytes_per_value: float = RECORD_BYTES_PER_NEURON_STEP,
                    what: str = "recording spikes and membranes") -> None:
    """verify / ops record every neuron of every step and sample: refuse what cannot be held."""
    n = neurons_per_step(model)
    need = int(n * model.config.T * samples * bytes_per_value)
    check_bytes(need, f"{samples:,} samples x T={model.config.T} x {n:,} neurons per step: {what} needs about "
                      f"{need:,} bytes")


def check_ladder_recording(model, samples: int) -> None:
    """The drift ladder's records of ``samples`` evaluation samples fit (checked before any work)."""
    check_recording(model, samples, LADDER_RECORD_BYTES_PER_NEURON_STEP,
                    "the drift ladder's records (packed PyTorch spikes, fixed-point spikes)")

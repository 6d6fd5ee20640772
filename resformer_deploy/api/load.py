"""Load a checkpoint and describe it (the `info` command).

    >>> from resformer_deploy import api
    >>> ck = api.load("examples/digits/digits_resformer.pt")
    >>> info = api.inspect_checkpoint(ck)
    >>> info.variant, info.calibrated
    ('digits', True)
"""
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional

from resformer_deploy.api.options import CheckpointOptions

if TYPE_CHECKING:  # model.summary imports torch: not at import time of the API
    from resformer_deploy.model.summary import CheckpointSummary

__all__ = ["CheckpointInfo", "inspect_checkpoint", "load"]


def load(path: str, options: CheckpointOptions = CheckpointOptions()):
    """The checkpoint at ``path`` as a model.checkpoint.LoadedCheckpoint (model in eval mode,
    config, variant, metadata); a missing, unreadable or mismatching file raises DeployError naming it."""
    from resformer_deploy.model.checkpoint import load_checkpoint
    return load_checkpoint(path, variant=options.variant, img_size=options.img_size, T=options.T,
                           num_classes=options.num_classes, weights_only=not options.unsafe_load)


@dataclass(frozen=True)
class CheckpointInfo:
    """What `info` shows: the headline facts, and the whole description in ``summary``
    (model.summary.CheckpointSummary: config, counts, firing-rate buffers, records; ``to_json``:
    `info --json`)."""
    checkpoint: str
    variant: str
    params_ex_bn: int
    official_params_ex_bn: Optional[int]  # the paper's count for this variant (None: none published)
    calibrated: bool  # every DSSA firing-rate buffer positive and finite: runs in eval mode
    notes: List[str]
    summary: "CheckpointSummary"

    @property
    def matches_official(self) -> Optional[bool]:
        return None if self.official_params_ex_bn is None else self.official_params_ex_bn == self.params_ex_bn


def inspect_checkpoint(ck) -> CheckpointInfo:
    """Describe a loaded checkpoint (``load``)."""
    from resformer_deploy.model.summary import checkpoint_summary
    s = checkpoint_summary(ck)
    return CheckpointInfo(s.checkpoint, s.variant, s.params_ex_bn, s.official_params_ex_bn, s.calibrated,
                          list(s.notes), s)

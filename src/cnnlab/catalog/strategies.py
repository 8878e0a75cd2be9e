"""The transfer-learning strategies: the one list of their names, and what each one does.

A strategy says what it freezes, how its backbone's rate follows the head's (a ratio, as Lightning's
``BackboneFinetuning`` carries), whether the frozen features can be computed once, and which schedule it
defaults to. Everything else asks it: the config validates against ``NAMES``, the plan resolves ``auto``
here, the transfer callback and the report read the attributes. No torch here: the CLI lists the names
without importing it (the callback that applies a strategy is in ``cnnlab.training.transfer``).
"""
from __future__ import annotations

from dataclasses import dataclass

from cnnlab.catalog.registry import Registry

AUTO = "auto"  # two-phase from pretrained weights, full from scratch


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    freezes_backbone: bool  # the backbone starts frozen (BatchNorm statistics too)
    top_blocks_from_start: bool  # the top ``unfreeze`` blocks train from the first epoch (fine-tune)
    top_blocks_later: bool  # the top blocks join after the head-only epochs (two-phase): a parameter group added later
    # what the report says trains, with the number of top blocks that join
    trains: str

    @property
    def cacheable(self) -> bool:
        """Only the head ever trains: the backbone's features can be computed once (without augmentation)."""
        return self.freezes_backbone and not (self.top_blocks_from_start or self.top_blocks_later)

    @property
    def default_schedule(self) -> str:
        """One-cycle cannot follow a parameter group added during training: cosine then."""
        return "cosine" if self.top_blocks_later else "onecycle"

    def backbone_ratio(self, mult: float) -> float:
        """The ratio of the backbone's rate to the head's at the start of training (1: one group at one rate);
        the blocks that join later take ``mult`` x the optimizer's rate when they join (TransferSchedule)."""
        return mult if self.top_blocks_from_start else 1.0

    def describe_training(self, unfreeze: int) -> str:
        return self.trains.format(unfreeze=unfreeze)

    def trained_blocks(self, unfreeze: int) -> int:
        """Of a frozen backbone, the top blocks that train by the end of training (0: the head alone)."""
        return unfreeze if self.top_blocks_from_start or self.top_blocks_later else 0


STRATEGIES: Registry = Registry("strategy", hint=f"or {AUTO}")
for _s in (
    Strategy("feature-extract", "the backbone frozen, only the head trains", True, False, False, "the head only"),
    Strategy("fine-tune", "the top blocks train too, at lr x backbone_lr_mult", True, True, False,
             "the head and the top {unfreeze} blocks"),
    Strategy("full", "everything trains", False, False, False, "all layers"),
    Strategy("two-phase", "the head alone for head_epochs, then the top blocks join at the lower rate", True, False, True,
             "the head, then the top {unfreeze} blocks"),
):
    STRATEGIES.register(_s.name, description=_s.description)(_s)

NAMES: tuple[str, ...] = (AUTO, *STRATEGIES.names())


def get(name: str) -> Strategy:
    return STRATEGIES.get(name)


def resolve(name: str, weights_kind: str) -> Strategy:
    """``auto``: two-phase from pretrained weights (ImageNet, a file, a run), full from scratch."""
    if name == AUTO:
        name = "two-phase" if weights_kind != "none" else "full"
    return STRATEGIES.get(name)


def recorded(name: str | None) -> Strategy:
    """The strategy a run's training.json names (runs before it was recorded trained everything)."""
    return STRATEGIES.get(name if name in STRATEGIES else "full")

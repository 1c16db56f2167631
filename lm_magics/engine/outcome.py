"""How a training run ended, decided once for every kind of model and every front-end.

Two rules live here, as pure functions of what the run produced:

- **Divergence.** A run diverged when its loss or weights are not all finite numbers, or when its best
  validation perplexity is far worse than guessing (above GUESSING_FACTOR times the vocabulary size: a
  uniform guess among V words has perplexity V). A diverged run
  is never a result: ``lm.train`` raises ``TrainingDiverged`` (the model is on the exception as
  ``.model`` for inspection), so nothing is registered over an existing model, written over an existing
  file, or reported as "Trained".
- **Finishing.** After the last step a run still builds things (the best weights restored, the n-gram
  baseline, the mixture weight, the copy index, whatever a later version adds). A Ctrl-C in any of
  these phases keeps the trained run: ``Finishing.run`` turns it into an interrupted run whose later
  phases are skipped, instead of losing the run as if no step had been made.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, TypeVar

import torch

from ..errors import TrainingDiverged

# A uniform guess among V words has perplexity V; a freshly initialised network is about there, and a run
# on a tiny text can end a little above it (its best epoch overfits a few dozen words). Twice V is beyond
# what any run that learned anything ends at, and far below what a run that diverged does (1e21 under
# lr=1e30 with clipping).
GUESSING_FACTOR = 2.0

__all__ = ["GUESSING_FACTOR", "worse_than_guessing", "divergence", "diverged_error", "finite_weights", "Finishing"]

T = TypeVar("T")


def finite_weights(net: Optional[torch.nn.Module]) -> bool:
    """True when every parameter and buffer of net is a finite number (True for no network)."""
    if net is None:
        return True
    with torch.no_grad():
        return all(bool(torch.isfinite(t).all()) for t in net.state_dict().values() if t.is_floating_point())


def divergence(report: Any, net: Optional[torch.nn.Module], vocab_size: int) -> Optional[str]:
    """Why the run diverged (a phrase), or None when it did not. ``report`` is a TrainReport."""
    if not finite_weights(net):
        return "its weights became NaN or infinite"
    # A loss that is NaN or infinite ends the loop itself (training.fit raises); with clipping the loss can
    # stay finite while the model is useless, which the validation perplexity shows. Judged on a validated
    # run only: one stopped after a few steps is near V by nature.
    best = getattr(report, "best_val_ppl", None)
    if best is not None and getattr(report, "history", None) and best > GUESSING_FACTOR * vocab_size:
        return (f"its best validation perplexity {best:,.0f} is far worse than guessing among the "
                f"{vocab_size:,} words")
    return None


def worse_than_guessing(report: Any, vocab_size: int) -> Optional[str]:
    """A note for a run whose best validation perplexity is above the vocabulary size but not by the
    margin of a divergence (tiny texts can end near V): kept, with what to try."""
    best = getattr(report, "best_val_ppl", None)
    if best is not None and best > vocab_size:
        cfg = report.config
        return (f"validation perplexity {best:,.0f} is worse than guessing among the {vocab_size:,} words: "
                f"lower lr ({cfg.optimizer} lr {cfg.lr:g}), train longer, or give more text")
    return None


def diverged_error(reason: str, cfg: Any) -> TrainingDiverged:
    """The one-line error for a diverged run: what happened and what to change."""
    lr = f"{cfg.optimizer} lr {cfg.lr:g}" if getattr(cfg, "lr", None) is not None else "the learning rate"
    return TrainingDiverged(f"Training diverged: {reason}; lower lr (it was {lr}, try 10x smaller), or give "
                            f"more text")


class Finishing:
    """The phases after the loop, run so that a Ctrl-C in any of them keeps the trained run.

    ``fin.run(what, fn, default)`` returns ``fn()``; after a Ctrl-C (in this phase or an earlier one) it
    returns ``default`` instead, marks the report interrupted, and notes which phase was cut short.

    >>> fin = Finishing(report)                                              # doctest: +SKIP
    >>> ngram = fin.run("the n-gram baseline", lambda: fit_baseline(), None)  # doctest: +SKIP
    """

    def __init__(self, report: Any):
        self.report = report
        self.skipped: List[str] = []

    @property
    def cut(self) -> bool:
        return bool(self.skipped)

    def run(self, what: str, fn: Callable[[], T], default: T) -> T:
        if self.cut:
            self.skipped.append(what)
            return default
        try:
            return fn()
        except KeyboardInterrupt:
            self.skipped.append(what)
            r = self.report
            if not r.interrupted:
                r.notes.append(f"Ctrl-C came as the run ended ({r.stop_reason}); it counts as interrupted")
            r.interrupted, r.stop_reason = True, "interrupted"
            return default

    def note(self) -> None:
        """Add one note naming the phases left out (call once, after the last phase)."""
        if self.skipped:
            self.report.notes.append(f"Ctrl-C after training: kept the trained model without "
                                     f"{', '.join(self.skipped)}")

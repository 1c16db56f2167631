"""A training progress bar for the magics and the CLI: epoch, loss, perplexity, tokens/s and time left.

``tqdm.auto`` picks a widget bar in JupyterLab, Notebook 7 and VS Code, and a text bar in a terminal.
Without tqdm the callbacks do nothing (training still works).

    with TrainProgress() as p:
        model = lm.train(text, on_step=p.on_step, on_epoch=p.on_epoch)
"""

from __future__ import annotations

import math
from typing import Any, Optional

from .engine.training import EpochInfo, StepInfo

__all__ = ["TrainProgress"]

# Runs that end before the planned last step and are still a success: the bar stays short but is not
# an error (tqdm's notebook bar turns red when closed short).
_ENDED_EARLY = {"early stop": "early stop after epoch {epoch}", "max_time": "time limit, epoch {epoch}",
                "budget": "time budget, epoch {epoch}"}


class TrainProgress:
    """on_step / on_epoch callbacks that drive one tqdm bar; ``close()`` (or ``with``) ends it."""

    def __init__(self, desc: str = "training", file: Any = None, leave: bool = True):
        self.desc, self.file, self.leave = desc, file, leave
        self._bar: Any = None
        self._val_ppl: Optional[float] = None
        self._epoch = 0

    def _make_bar(self, total: int) -> Any:
        try:
            if self.file is not None:          # an explicit stream (the CLI's stderr): plain text bar
                from tqdm import tqdm
            else:
                from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm(total=total, desc=self.desc, unit="step", file=self.file, leave=self.leave,
                    dynamic_ncols=True, mininterval=0.2)

    def on_step(self, info: StepInfo) -> None:
        if self._bar is None:
            self._bar = self._make_bar(info.total_steps) or False
        if not self._bar:
            return
        if self._bar.total != info.total_steps:
            self._bar.total = info.total_steps
        self._epoch = info.epoch
        post = {"epoch": info.epoch, "loss": f"{info.loss:.3f}", "ppl": f"{math.exp(min(info.loss, 50)):,.1f}"}
        if self._val_ppl is not None:
            post["val_ppl"] = f"{self._val_ppl:,.1f}"
        post["tok/s"] = f"{info.tokens_per_s:,.0f}"
        self._bar.set_postfix(post, refresh=False)   # tqdm redraws at most every mininterval
        self._bar.update(info.step - self._bar.n)

    def on_epoch(self, info: EpochInfo) -> None:
        self._val_ppl = info.val_ppl

    def close(self, status: str = "") -> None:
        """End the bar; status (the report's stop_reason, e.g. 'early stop') is added to its label, since
        the bar may end short. An early stop or a time limit ends short but green: a success."""
        bar, self._bar = self._bar, None
        if not bar:
            return
        if status:
            label = _ENDED_EARLY.get(status, status).format(epoch=self._epoch)
            bar.set_description_str(f"{self.desc} ({label})", refresh=False)
        if status in _ENDED_EARLY and hasattr(bar, "container"):
            _close_as_success(bar)
        else:
            bar.close()

    def __enter__(self) -> "TrainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_as_success(bar: Any) -> None:
    """Close a tqdm.notebook bar that ends short without its red "error" style.

    tqdm.notebook's close() marks a bar that ends before its total with bar_style 'danger' (through its
    ``disp``); here that one style is turned into 'success', so the bar never flashes red."""
    disp = bar.disp

    def disp_success(*args: Any, bar_style: Optional[str] = None, **kwargs: Any) -> Any:
        return disp(*args, bar_style="success" if bar_style == "danger" else bar_style, **kwargs)

    bar.disp = disp_success
    try:
        bar.close()
    finally:
        bar.disp = disp

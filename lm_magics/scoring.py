"""Scoring a DataFrame column: per-row perplexity and surprisal, written back as new columns.

    report = lm.scoring.score_frame(model, df, "text")     # adds df["text_ppl"], df["text_bits"]
    report.top                                              # the most surprising rows
    %lm_score --df df --column text --top 5                 # the same in IPython

A row's perplexity is exp(mean NLL per token, its <eos> included); its bits are the mean surprisal in
bits per token (log2 of the perplexity). Missing values get NaN. ``ScoreReport`` shows the most and
least surprising rows with every word shaded by its surprisal, and a histogram of the scores.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ConfigError, DataError, LMError

if TYPE_CHECKING:
    import pandas as pd

    from .api import LanguageModel

__all__ = ["ScoredRow", "ScoreReport", "score_frame", "ScoreMagics"]

_CSS = "font-family:var(--jp-ui-font-family,sans-serif);font-size:13px"
_SHADE = (230, 80, 40)      # surprising words get this colour, more opaque the more surprising
_SHADE_MAX_BITS = 16.0      # a word with >= 16 bits of surprisal gets the full colour
_TEXT_WIDTH = 72            # characters of a row shown in the plain-text view


@dataclass
class ScoredRow:
    """One row of the report: its index label, text, perplexity, bits per token and per-word surprisal."""

    index: Any
    text: str
    ppl: float
    bits: float
    words: List[Tuple[str, float]] = field(default_factory=list)   # (word, bits), <eos> not included


@dataclass
class ScoreReport:
    """What ``%lm_score`` / ``score_frame`` return: ``.scores`` (perplexity per row, aligned to the frame's
    index), ``.bits``, ``.top`` (most surprising rows first) and ``.bottom`` (least surprising first)."""

    column: str
    ppl_column: str
    bits_column: str
    scores: "pd.Series"
    bits: "pd.Series"
    top: List[ScoredRow]
    bottom: List[ScoredRow]
    model_name: str = ""

    @property
    def missing(self) -> int:
        return int(self.scores.isna().sum())

    def _headline(self) -> str:
        n = len(self.scores)
        ok = self.scores.dropna()
        med = f"median perplexity {float(ok.median()):,.1f}" if len(ok) else "no text to score"
        by = f" with '{self.model_name}'" if self.model_name else ""
        miss = f", {self.missing:,} missing (NaN)" if self.missing else ""
        return (f"Scored {n:,} rows of '{self.column}'{by}: {med}{miss}; "
                f"wrote '{self.ppl_column}' (perplexity) and '{self.bits_column}' (bits per token)")

    # ------------------------------------------------------------------------------ plain text

    def __repr__(self) -> str:
        lines = [self._headline()]
        for title, rows in (("Most surprising", self.top), ("Least surprising", self.bottom)):
            if not rows:
                continue
            lines.append(f"{title}:")
            width = max(len(str(r.index)) for r in rows)
            for r in rows:
                text = " ".join(r.text.split())
                if len(text) > _TEXT_WIDTH:
                    text = text[: _TEXT_WIDTH - 1] + "…"
                lines.append(f"  {str(r.index):>{width}}  ppl {r.ppl:9.1f}  {r.bits:5.2f} bits  {text}")
        return "\n".join(lines)

    # ------------------------------------------------------------------------------ HTML

    def _repr_html_(self) -> str:
        e = html.escape
        parts = [f"<div class='lm-score-report' style='{_CSS}'><div><b>{e(self._headline())}</b></div>",
                 "<div style='display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap'>"]
        for title, rows in (("Most surprising", self.top), ("Least surprising", self.bottom)):
            if not rows:
                continue
            body = "".join(
                f"<tr><td style='color:#888;padding:2px 6px;vertical-align:top'>{e(str(r.index))}</td>"
                f"<td style='padding:2px 6px;text-align:right;vertical-align:top'>{r.ppl:,.1f}</td>"
                f"<td style='padding:2px 6px;max-width:520px'>{shade_words(r.words)}</td></tr>" for r in rows)
            parts.append(f"<table class='lm-score-rows' style='border-collapse:collapse'><caption "
                         f"style='text-align:left'>{title}</caption><tr><th>row</th><th>ppl</th>"
                         f"<th style='text-align:left'>text (shaded by surprisal)</th></tr>{body}</table>")
        parts.append("</div>")
        parts.append(histogram_svg(self.bits.dropna().to_numpy(), label="bits per token"))
        parts.append("</div>")
        return "".join(parts)


def shade_words(words: Sequence[Tuple[str, float]]) -> str:
    """Words as HTML spans whose background is more opaque the more surprising the word (bits)."""
    r, g, b = _SHADE
    out = []
    for w, bits in words:
        a = min(1.0, max(0.0, bits / _SHADE_MAX_BITS))
        out.append(f"<span title='{bits:.1f} bits' style='background:rgba({r},{g},{b},{a:.2f});"
                   f"padding:0 1px;border-radius:2px'>{html.escape(w)}</span>")
    return " ".join(out)


def histogram_svg(values: np.ndarray, bins: int = 30, width: int = 360, height: int = 90,
                  label: str = "") -> str:
    """A histogram of values as inline SVG (no plotting library needed)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return ""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1.0
    counts, _ = np.histogram(values, bins=bins, range=(lo, hi))
    top = counts.max() or 1
    plot_h = height - 16
    bw = (width - 4) / bins
    bars = "".join(
        f"<rect x='{2 + i * bw:.1f}' y='{plot_h - c / top * (plot_h - 4):.1f}' width='{max(bw - 1, 1):.1f}' "
        f"height='{c / top * (plot_h - 4):.1f}' fill='#4c8bf5'><title>{c}</title></rect>"
        for i, c in enumerate(counts) if c)
    return (f"<svg class='lm-score-hist' width='{width}' height='{height}' role='img' "
            f"aria-label='histogram of {html.escape(label)}'>{bars}"
            f"<text x='2' y='{height - 2}' font-size='10' fill='#666'>{lo:.2f}</text>"
            f"<text x='{width / 2:.0f}' y='{height - 2}' font-size='10' fill='#666' "
            f"text-anchor='middle'>{html.escape(label)}</text>"
            f"<text x='{width - 2}' y='{height - 2}' font-size='10' fill='#666' text-anchor='end'>{hi:.2f}</text>"
            f"</svg>")


# ---------------------------------------------------------------------------------------------- scoring

def score_frame(model: "LanguageModel", df: "pd.DataFrame", column: str, into: Optional[str] = None,
                overwrite: bool = False, top: int = 5, model_name: str = "") -> ScoreReport:
    """Score every row of ``df[column]`` and write the scores back into ``df`` (in place).

    Adds ``into`` (default ``f"{column}_ppl"``: perplexity per row) and ``into`` with ``_ppl`` replaced
    by ``_bits`` (or ``+ "_bits"``: mean surprisal in bits per token). Missing rows get NaN. Existing
    columns are only replaced with ``overwrite=True``. Returns a ScoreReport with the ``top`` most and
    least surprising rows.

    >>> report = score_frame(model, df, "text", top=3)     # doctest: +SKIP
    >>> df.sort_values("text_ppl").tail(3)                  # doctest: +SKIP
    """
    if not hasattr(df, "columns") or not hasattr(df, "index"):
        raise DataError(f"Expected a pandas DataFrame, got {type(df).__name__}.")
    if column not in df.columns:
        near = ", ".join(repr(c) for c in list(df.columns)[:10])
        raise DataError(f"No column {column!r} in the DataFrame (columns: {near}).")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 0:
        raise ConfigError(f"top must be a whole number of at least 0, got {top!r}.")
    ppl_col = into or f"{column}_ppl"
    bits_col = ppl_col[:-4] + "_bits" if ppl_col.endswith("_ppl") else ppl_col + "_bits"
    if not overwrite:
        taken = [c for c in (ppl_col, bits_col) if c in df.columns]
        if taken:
            raise ConfigError(f"Column {taken[0]!r} already exists; choose another with --into NAME "
                              f"(into=...) or pass --overwrite (overwrite=True) to replace it.")
    import pandas as pd

    series = df[column]
    if getattr(series, "ndim", 1) != 1:
        raise DataError(f"Column name {column!r} is not unique in the DataFrame; rename the duplicates.")
    nll = model._row_nll(series)                        # one packed pass over all rows
    mean = np.array([v.mean() if v is not None else np.nan for v in nll], dtype=np.float64)
    ppl = pd.Series(np.exp(mean), index=df.index, name=ppl_col)
    bits = pd.Series(mean / math.log(2), index=df.index, name=bits_col)
    df[ppl_col] = ppl.to_numpy()     # by position: an index with duplicate labels must not misalign
    df[bits_col] = bits.to_numpy()

    def rows(labels_positions: Sequence[int]) -> List[ScoredRow]:
        out = []
        for pos in labels_positions:
            text = str(series.iloc[pos])
            out.append(ScoredRow(df.index[pos], text, float(ppl.iloc[pos]), float(bits.iloc[pos]),
                                 model.surprisal(text)))
        return out

    valid = np.flatnonzero(np.isfinite(mean))
    order = valid[np.argsort(mean[valid], kind="stable")]   # least surprising first
    n = min(int(top), order.size)
    most = rows(order[::-1][:n]) if n else []
    least = rows(order[:n]) if n else []
    return ScoreReport(column, ppl_col, bits_col, ppl, bits, most, least, model_name)


# ---------------------------------------------------------------------------------------------- magic

try:  # IPython is optional: score_frame works without it
    from IPython.core.error import UsageError
    from IPython.core.magic import Magics, line_magic, magics_class
    from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
except ImportError:  # pragma: no cover - exercised only without IPython
    ScoreMagics = None  # type: ignore[assignment,misc]
else:
    @magics_class
    class ScoreMagics(Magics):
        """``%lm_score``: per-row perplexity of a DataFrame column."""

        @magic_arguments()
        @argument("--name", default=None, help="model to score with [default: the current model]")
        @argument("--df", required=True, metavar="VAR", help="DataFrame variable in the notebook")
        @argument("--column", required=True, metavar="COL", help="text column to score")
        @argument("--into", default=None, metavar="NEWCOL",
                  help="perplexity column to write [default: COL_ppl]; bits per token go to NEWCOL_bits")
        @argument("--overwrite", action="store_true", help="replace the score columns if they exist")
        @argument("--top", type=int, default=5, metavar="N",
                  help="show the N most and least surprising rows [default: 5]")
        @line_magic
        def lm_score(self, line: str) -> ScoreReport:
            """Score each row of a DataFrame text column with a language model.

            Writes perplexity and bits per token as new columns (missing rows: NaN) and returns a report
            of the most and least surprising rows, e.g. ``%lm_score --df reviews --column text --top 3``.
            """
            from .registry import get_registry

            try:
                args = parse_argstring(self.lm_score, line)
            except UsageError:
                raise
            except SystemExit:  # pragma: no cover - argparse exits on --help
                raise UsageError("Usage: %lm_score [--name NAME] --df VAR --column COL [--into NEWCOL] "
                                 "[--overwrite] [--top N]") from None
            df = _lookup_frame(self.shell, args.df)
            try:
                registry = get_registry(self.shell)
                name = registry.resolve(args.name)
                model = registry.get(name)
                return score_frame(model, df, _unquote(args.column), into=_unquote(args.into),
                                   overwrite=args.overwrite, top=args.top, model_name=name)
            except LMError as exc:
                raise UsageError(str(exc)) from None


def _unquote(s: Optional[str]) -> Optional[str]:
    if s and len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _lookup_frame(shell: Any, var: str) -> Any:
    """The pandas DataFrame called var in the user's namespace (UsageError otherwise)."""
    from IPython.core.error import UsageError

    from .frames import lookup

    try:
        df = lookup(shell.user_ns, var)
    except LMError as exc:
        raise UsageError(str(exc)) from None
    if not (hasattr(df, "columns") and hasattr(df, "index") and type(df).__module__.startswith("pandas")):
        raise UsageError(f"'{var}' is a {type(df).__name__}, not a pandas DataFrame; pass --df with a "
                         f"pandas DataFrame variable (polars: df.to_pandas()).")
    return df

"""Result objects: what a magic returns and a notebook shows.

Each has a deterministic text ``__repr__`` (terminal IPython, nbval, logs) and a ``_repr_html_`` for
notebooks. They hold plain data a user can keep (``x = %lm_complete the cat``; ``x.words``).
Pure string building: no IPython import.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .formatting import num_text, pairs_text, prob_text, token_text
from .frames import ref_text
from .rules import MAX_ROWS, clip_rows, clip_text, more_note

# Words of one text a display shows (shaded or listed); a longer text's other words are counted.
MAX_WORDS = 400

__all__ = ["Completions", "Generation", "TrainSummary", "ScoredRow", "ScoreReport", "model_text", "model_html",
           "sparkline_svg", "shade_words", "histogram_svg", "Explanation", "GroupComparison", "DataOverview",
           "bars_svg", "interrupted_text"]

_CSS = "font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;border-collapse:collapse"
_BAR = "#4c8bf5"


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _fmt_ppl(v: Optional[float]) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:,.1f}"


def _fmt_int(v: Optional[int]) -> str:
    return "n/a" if v is None else f"{int(v):,}"


def sparkline_svg(values: Sequence[float], width: int = 220, height: int = 48, label: str = "") -> str:
    """A tiny line chart (inline SVG) of values, e.g. the training loss curve.

    The highest and lowest values are written in a gutter left of the curve, never over it (a loss curve
    starts at its highest value, top left)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if len(vals) < 2:
        return ""
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    hi_text, lo_text = f"{hi:.2f}", f"{lo:.2f}"
    gutter = 6 + 5 * max(len(hi_text), len(lo_text))      # about 5 px a digit at font-size 9
    x0, x1 = gutter, width - 2
    pts = " ".join(f"{x0 + i * (x1 - x0) / (len(vals) - 1):.1f},{height - 4 - (v - lo) / span * (height - 8):.1f}"
                   for i, v in enumerate(vals))
    return (f'<svg class="lm-curve" width="{width}" height="{height}" role="img" aria-label="{_e(label)}">'
            f'<polyline fill="none" stroke="{_BAR}" stroke-width="1.5" points="{pts}"/>'
            f'<text x="{gutter - 4}" y="10" font-size="9" fill="#666" text-anchor="end">{hi_text}</text>'
            f'<text x="{gutter - 4}" y="{height - 2}" font-size="9" fill="#666" text-anchor="end">{lo_text}</text>'
            f'</svg>')


def interrupted_text(how: str, steps: int, new: str, new_ppl: Optional[float], earlier: Optional[str] = None,
                     earlier_ppl: Optional[float] = None) -> str:
    """The one line after an interrupted or stopped run that says which model is which.

    ``new`` / ``earlier`` are shown as given ("'good'" in a session, a path in the CLI); ``earlier`` is
    the model or file of that name that the run did not replace (None: the name was new).

    >>> interrupted_text("interrupted", 8, "'good_interrupted'", 440.9, "'good'", 322.9)
    "Training interrupted after 8 steps: kept the earlier 'good' (val ppl 322.9); the interrupted model is 'good_interrupted' (val ppl 440.9)."
    """
    head = f"Training {how} after {steps:,} step{'' if steps == 1 else 's'}: "
    if earlier is None:
        return head + f"kept the best model so far as {new} (val ppl {_fmt_ppl(new_ppl)})."
    was = "" if earlier_ppl is None else f" (val ppl {_fmt_ppl(earlier_ppl)})"
    return head + f"kept the earlier {earlier}{was}; the {how} model is {new} (val ppl {_fmt_ppl(new_ppl)})."


# ------------------------------------------------------------------------------------------ completions

@dataclass
class Completions:
    """Next-word predictions: ``x.words``, ``x.probs``, iterable as (word, prob) pairs."""

    prefix: str
    pairs: List[Tuple[str, float]]
    model_name: str = ""

    @property
    def words(self) -> List[str]:
        return [w for w, _ in self.pairs]

    @property
    def probs(self) -> List[float]:
        return [p for _, p in self.pairs]

    def __iter__(self):
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):
        return self.pairs[i]

    def __repr__(self) -> str:
        head = (f"Next words after {clip_text(self.prefix, 200)}" + (f" ({clip_text(self.model_name, 60)[1:-1]})"
                if self.model_name else "") + ":")
        if not self.pairs:
            return head + "\n  (no candidates)"
        pairs, more = clip_rows(self.pairs)
        shown = [clip_text(token_text(w), 60)[1:-1] if len(token_text(w)) > 60 else token_text(w) for w, _ in pairs]
        width = max(len(w) for w in shown)
        top = max(self.probs) or 1.0
        lines = [f"  {i + 1:>2}. {w:<{width}}  {prob_text(p, 1):>6}  {'█' * max(1, round(20 * p / top))}"
                 for i, (w, (_, p)) in enumerate(zip(shown, pairs))]
        return "\n".join([head] + lines + ([f"  {more_note(more, 'words')}"] if more else []))

    def _repr_html_(self) -> str:
        top = max(self.probs, default=1.0) or 1.0
        rows = "".join(
            f"<tr><td style='color:#888;padding:1px 6px'>{i + 1}</td>"
            f"<td style='padding:1px 8px;font-weight:600'>{_e(token_text(w))}</td>"
            f"<td style='padding:1px 6px;text-align:right'>{_e(prob_text(p, 1))}</td>"
            f"<td style='padding:1px 6px'><div style='background:{_BAR};height:10px;width:{max(2, round(160 * p / top))}px'>"
            f"</div></td></tr>" for i, (w, p) in enumerate(clip_rows(self.pairs)[0]))
        more = more_note(clip_rows(self.pairs)[1], "words")
        rows += f"<tr><td colspan='4' style='color:#888'>{more}</td></tr>" if more else ""
        cap = (f"Next words after <code>{_e(clip_text(self.prefix, 200)[1:-1])}</code>"
               + (f" · {_e(clip_text(self.model_name, 60)[1:-1])}" if self.model_name else ""))
        return (f"<table class='lm-completions' style='{_CSS}'><caption style='text-align:left'>{cap}</caption>"
                f"{rows}</table>")


@dataclass
class Generation:
    """Generated text: ``x.text`` (the continuation) and ``x.prefix``."""

    prefix: str
    text: str
    model_name: str = ""
    settings: dict = field(default_factory=dict)
    full: str = ""           # prefix and text joined with the tokenizer's spacing
    copies: Optional[List[dict]] = None    # runs copied from training rows (None: the model cannot tell)

    def _copy_note(self) -> str:
        if not self.copies:
            return ""
        return "; ".join(f"copies {c['length']} tokens of training row {c['row']}: {c['text']!r}"
                         for c in self.copies)

    def __str__(self) -> str:
        return self.full or (f"{self.prefix} {self.text}".strip() if self.prefix else self.text)

    def __repr__(self) -> str:
        note = self._copy_note()
        return str(self) + (f"\n[{note}]" if note else "")

    def _repr_html_(self) -> str:
        note = self._copy_note()
        return (f"<div class='lm-generation' style='font-family:var(--jp-content-font-family,serif);"
                f"white-space:pre-wrap'><span style='color:#888'>{_e(self.prefix)}</span>{self._sep()}"
                f"<b>{_e(self.text)}</b></div>"
                + (f"<div class='lm-copies' style='color:#c60'>⚠ {_e(note)}</div>" if note else ""))

    def _sep(self) -> str:
        """The space between prefix and text, as the joined text has it ("dog" + "," gets none)."""
        if not self.prefix:
            return ""
        if self.full:
            return self.full[len(self.prefix):len(self.prefix) + 1] if self.full.startswith(self.prefix) and \
                self.full[len(self.prefix):len(self.prefix) + 1] == " " else ""
        return " "


# ------------------------------------------------------------------------------------------ models

def _model_facts(i: dict) -> List[Tuple[str, str]]:
    """The lines that describe a model, from its ``info`` dict."""
    kind = i.get("kind", "lstm")
    lstm = (f"LSTM {i['num_layers']}x{i['hidden_dim']}, embedding {i['embed_dim']}, {i['softmax']} softmax"
            + (", tied" if i["tie_weights"] else ""))
    ngram = f"{i.get('order')}-gram, interpolated modified Kneser-Ney"
    network = {"lstm": lstm, "ngram": ngram,
               "mix": f"{lstm} + {ngram} (LSTM weight {i.get('mix_weight') or 0:.2f})"}[kind]
    facts = [
        ("vocabulary", f"{i['vocab_size']:,} {i['level']} tokens" + (" (lowercased)" if i["lowercase"] else "")),
        ("network" if kind != "ngram" else "model", network),
        ("parameters" if kind != "ngram" else "n-grams", f"{i['parameters']:,}"),
        ("trained on", f"{_fmt_int(i['rows'])} rows, {_fmt_int(i['tokens'])} tokens; seen {_fmt_int(i['tokens_seen'])}"),
        ("validation perplexity", _fmt_ppl(i["val_ppl"])),
    ]
    if kind == "lstm":
        b = i.get("baseline")
        facts.append(("baseline", "none (trained with baseline=False, stripped, or an older file)" if not b else
                      f"{b['order']}-gram over the same rows, {b['ngrams']:,} n-grams, validation perplexity "
                      f"{_fmt_ppl(b['val_ppl'])}; mixture weight {i.get('mix_weight') or 0:.2f} ({i.get('mix_note')})"))
    c = i.get("copy_check")
    facts.append(("copy check", "not available (no copy index: copy_window=0, stripped, or an older file)"
                  if not c else f"runs of {c['window']}+ tokens of a training row; {c['windows']:,} hashes, "
                  f"{c['bytes'] / 1e6:.1f} MB in the file" + (f", 1 in {c['every']} kept" if c["every"] > 1 else "")
                  + "; model.strip() removes it before sharing"))
    prov = i.get("provenance")
    if prov:
        facts.append(("data from", _provenance_text(prov)))
    return facts


def _provenance_text(p: dict) -> str:
    parts = []
    if p.get("cell"):
        parts.append("a notebook cell")
    if p.get("dataframe"):
        parts.append(f"DataFrame {p['dataframe']}[{p.get('column')!r}]"
                     + (f" where {clip_text(str(p['where']), 200)[1:-1]}" if p.get("where") else ""))
    listed, more = clip_rows(p.get("files") or [], 5)       # a summary names a few files and counts the rest
    for f in listed:
        parts.append(f"{f['path']} ({f['bytes']:,} bytes, modified {f['mtime']})")
    more += int(p.get("files_not_listed") or 0)
    if more:
        parts.append(more_note(more, "files"))
    if not parts and p.get("source"):
        parts.append(str(p["source"]))
    c = p.get("continued_from")
    if c:
        parts.append(f"continued from the model trained {c.get('trained_at')} (fingerprint {c.get('fingerprint')})")
    parts.append(str(p.get("package", "")))
    return "; ".join(x for x in parts if x)


def model_text(info: dict) -> str:
    """A model's text view, from ``model.info``."""
    return "LanguageModel(\n" + "\n".join(f"  {k}: {v}" for k, v in _model_facts(info)) + "\n)"


def model_html(info: dict) -> str:
    rows = "".join(f"<tr><th style='text-align:left;padding:1px 8px'>{_e(k)}</th><td>{_e(v)}</td></tr>"
                   for k, v in _model_facts(info))
    return f"<table class='lm-model' style='{_CSS}'><caption style='text-align:left'><b>LanguageModel</b></caption>{rows}</table>"


@dataclass
class TrainSummary:
    """What ``%%lm_train`` shows: data, vocabulary, size, validation perplexity, time, curve, samples."""

    name: str
    model: Any               # the LanguageModel: its info, meta and report are read
    samples: List[Tuple[str, List[Tuple[str, float]]]] = field(default_factory=list)
    note: str = ""           # what registering it did (registry.Placement.note): "replaced the earlier 'x' (...)"

    @property
    def report(self):
        return self.model.report

    @property
    def val_ppl(self) -> Optional[float]:
        return self.model.meta.get("val_ppl")

    @property
    def interrupted(self) -> bool:
        return self.model.interrupted

    def _facts(self) -> List[Tuple[str, str]]:
        r, m = self.report, self.model.meta
        facts = [("model", self.name)] + _model_facts(self.model.info)
        if r is not None:
            facts += [
                ("epochs", f"{len(r.history)} ({r.stop_reason}), {r.steps:,} steps, best epoch {r.best_epoch or 'n/a'}"),
                ("time", f"{r.elapsed:.1f} s training, {r.tokens_per_s:,.0f} tokens/s, {r.precision} on {r.device}"
                         + (f", {r.threads} thread{'s' if r.threads != 1 else ''}" if getattr(r, "threads", None) else "")),
            ]
        facts.append(("data", f"{_fmt_int(m.get('rows'))} rows ({_fmt_int(m.get('missing'))} missing), "
                              f"{_fmt_int(m.get('tokens'))} training / {_fmt_int(m.get('val_tokens'))} validation tokens"))
        return facts

    def _notes(self) -> List[str]:
        notes = list(self.report.notes) if self.report else []
        if self.interrupted:
            notes.insert(0, "Training was interrupted: the best model so far is kept and registered.")
        if self.note:
            notes.insert(0, self.note[0].upper() + self.note[1:] + ".")
        return notes

    def __repr__(self) -> str:
        lines = [f"Trained '{self.name}'" + (" (interrupted)" if self.interrupted else "")]
        lines += [f"  {k}: {v}" for k, v in self._facts()]
        lines += [f"  note: {n}" for n in self._notes()]
        for prefix, pairs in self.samples:
            lines.append(f"  after {prefix!r}: {pairs_text(pairs)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left;padding:1px 8px'>{_e(k)}</th><td>{_e(v)}</td></tr>"
                       for k, v in self._facts())
        notes = "".join(f"<li>{_e(n)}</li>" for n in self._notes())
        samples = "".join(f"<li><code>{_e(p)}</code> → " + ", ".join(f"<b>{_e(token_text(w))}</b> {_e(prob_text(q))}"
                                                                 for w, q in pairs)
                          + "</li>" for p, pairs in self.samples)
        curve = sparkline_svg(self.report.losses if self.report else [], label="training loss")
        return (f"<div class='lm-train-summary' style='{_CSS}'><b>Trained '{_e(self.name)}'</b>"
                f"{' <span style=color:#c60>(interrupted)</span>' if self.interrupted else ''}"
                f"<div style='display:flex;gap:16px;align-items:flex-start'><table>{rows}</table>"
                f"<div>{curve}<div style='color:#888;font-size:11px'>training loss per step</div></div></div>"
                + (f"<ul style='margin:4px 0'>{notes}</ul>" if notes else "")
                + (f"<div>Sample next words:</div><ul style='margin:4px 0'>{samples}</ul>" if samples else "")
                + "</div>")


# ------------------------------------------------------------------------------------------ scores

_SCORE_CSS = "font-family:var(--jp-ui-font-family,sans-serif);font-size:13px"
_SHADE = (230, 80, 40)      # surprising words get this colour, more opaque the more surprising
_SHADE_MAX_BITS = 16.0      # a word with >= 16 bits of surprisal gets the full colour
_TEXT_WIDTH = 72            # characters of a row shown in the plain-text view


@dataclass
class ScoredRow:
    """One row of the report: its index label, text, perplexity, bits per token, per-word surprisal, its
    unusualness and why it stands out (the strongest signal, or that it is a copy of a training row)."""

    index: Any
    text: str
    ppl: float
    bits: float
    words: List[Tuple[str, float]] = field(default_factory=list)   # (word, bits), <eos> not included
    side: dict = field(default_factory=dict)    # part name -> this row's perplexity under it (--baseline)
    unusual: float = float("nan")
    why: str = ""                               # "unseen words (above 99% of validation rows): 2 ..."
    percentiles: dict = field(default_factory=dict)   # signal -> percentile among the validation rows
    nearest: str = ""                           # the nearest usual (training) row, cut to 200 characters
    nearest_dist: float = float("nan")


_PART_NAMES = {"lstm": "LSTM", "ngram": "n-gram", "mix": "mixture"}
_PART_SHORT = {"lstm": "lstm", "ngram": "n-gram", "mix": "mix"}      # column heads beside "ppl"


@dataclass
class ScoreReport:
    """What ``%lm_score`` / ``score_frame`` return: ``.scores`` (perplexity per row, aligned to the frame's
    index), ``.bits``, ``.unusual`` (the unusualness), ``.top`` (most unusual rows first, by ``.signal``)
    and ``.bottom`` (least unusual first), ``.notes`` (rows that were training text, signals left out...)."""

    column: str
    ppl_column: str
    bits_column: str
    scores: Any              # a pandas Series aligned to the frame's index
    bits: Any
    top: List[ScoredRow]
    bottom: List[ScoredRow]
    model_name: str = ""
    kind: str = "lstm"
    side: dict = field(default_factory=dict)    # part name -> perplexity Series (n-gram, mix or lstm)
    auc: dict = field(default_factory=dict)     # kind or part name -> ROC AUC (None: one class only)
    label: str = ""                             # what the AUC separates ("is_comment", "label == 'spam'")
    labelled: int = 0                           # rows with a label
    agreement: dict = field(default_factory=dict)   # part name -> Spearman rank correlation with the model
    unusual: Any = None                         # the unusualness Series (None: not computed)
    unusual_column: str = ""
    signal: str = "unusual"                     # what ranks .top and .bottom
    signals: dict = field(default_factory=dict)   # signal name -> its Series (--signal NAME / all)
    used: List[str] = field(default_factory=list)   # the signals the unusual score combined
    notes: List[str] = field(default_factory=list)
    # A frame whose rows stay where they are (Spark): scores and bits are None, and this holds "rows",
    # "missing", "median" (perplexity, None without text) and "note" (where the scored frame went).
    summary: Optional[dict] = None

    @property
    def missing(self) -> int:
        if self.summary is not None:
            return int(self.summary["missing"])
        return int(self.scores.isna().sum())

    @property
    def columns(self) -> List[str]:
        """Every column this report wrote to the frame."""
        cols = [self.ppl_column, self.bits_column] + ([self.unusual_column] if self.unusual_column else [])
        return cols + [s.name for s in self.signals.values()] + [s.name for s in self.side.values()]

    def _ranked_by(self) -> str:
        if self.signal in ("unusual", "all"):
            return "unusualness" if self.unusual_column else "perplexity"
        return {"ppl": "perplexity"}.get(self.signal, f"the {self.signal} signal")

    def _headline(self) -> str:
        if self.summary is not None:
            n, median = int(self.summary["rows"]), self.summary.get("median")
        else:
            n = len(self.scores)
            ok = self.scores.dropna()
            median = float(ok.median()) if len(ok) else None
        med = f"median perplexity {median:,.1f}" if median is not None else "no text to score"
        by = f" with '{self.model_name}'" if self.model_name else ""
        miss = f", {self.missing:,} missing (NaN)" if self.missing else ""
        side = "".join(f", '{s.name}'" for s in list(self.signals.values()) + list(self.side.values()))
        unusual = (f", '{self.unusual_column}' (unusualness: {' + '.join(self.used) or 'mean bits'})"
                   if self.unusual_column else "")
        note = f". {self.summary['note']}" if self.summary and self.summary.get("note") else ""
        return (f"Scored {n:,} rows of '{self.column}'{by}: {med}{miss}; "
                f"wrote '{self.ppl_column}' (perplexity), '{self.bits_column}' (bits per token){unusual}{side}{note}")

    def _auc_line(self) -> str:
        if not self.auc:
            return ""
        names = {**_PART_NAMES, "unusual": "unusualness"}
        cells = [f"{names.get(k, k.replace('signal:', ''))}{' (this model)' if k == self.kind and len(self.auc) > 1 else ''} "
                 + ("n/a" if v is None else f"{v:.3f}") for k, v in self.auc.items()]
        return (f"ROC AUC for {self.label} (more surprising = positive), {self.labelled:,} labelled rows: "
                + " | ".join(cells))

    def _side_line(self) -> str:
        """Without labels: each side score's median and how far it orders the rows as the model does."""
        if not self.side or self.auc:
            return ""
        cells = []
        for k, s in self.side.items():
            ok = s.dropna()
            med = f"median perplexity {float(ok.median()):,.1f}" if len(ok) else "no scores"
            rho = self.agreement.get(k)
            cells.append(f"{_PART_NAMES.get(k, k)} {med}"
                         + ("" if rho is None else f", rank agreement with the model {num_text(rho, 2)}"))
        return (f"Beside it: {'; '.join(cells)} (Spearman, 1 = same order). Which ranking to trust: label some "
                f"rows and pass --label COL (label=...) for the ROC AUC of each.")

    def _side_cells(self, r: ScoredRow) -> str:
        return "".join(f"  {_PART_SHORT.get(k, k)} {v:9.1f}" for k, v in r.side.items())

    # ------------------------------------------------------------------------------ plain text

    def _titles(self) -> Tuple[str, str]:
        if self._ranked_by() == "perplexity":
            return "Most surprising", "Least surprising"
        by = "" if self._ranked_by() == "unusualness" else f" (by {self._ranked_by()})"
        return f"Most unusual{by}", f"Least unusual{by}"

    def _unusual_cell(self, r: ScoredRow) -> str:
        return f"  unusual {r.unusual:5.3f}" if self.unusual_column and math.isfinite(r.unusual) else ""

    def __repr__(self) -> str:
        lines = [self._headline()] + ([self._auc_line()] if self.auc else [])
        lines += [self._side_line()] if self._side_line() else []
        lines += [f"note: {n}" for n in self.notes]
        for title, rows in zip(self._titles(), (self.top, self.bottom)):
            rows, more = clip_rows(rows)
            if not rows:
                continue
            lines.append(f"{title}:" + (f" {more_note(more)}" if more else ""))
            width = max(len(str(r.index)) for r in rows)
            for r in rows:
                text = " ".join(r.text.split())
                if len(text) > _TEXT_WIDTH:
                    text = text[: _TEXT_WIDTH - 1] + "…"
                lines.append(f"  {str(r.index):>{width}}  ppl {r.ppl:9.1f}{self._side_cells(r)}  "
                             f"{num_text(r.bits, 2, width=5)} bits{self._unusual_cell(r)}  {text}")
                if r.why and title.startswith("Most"):
                    lines.append(f"  {'':>{width}}  why: {r.why}")
        return "\n".join(lines)

    # ------------------------------------------------------------------------------ HTML

    def _repr_html_(self) -> str:
        e = _e
        parts = [f"<div class='lm-score-report' style='{_SCORE_CSS}'><div><b>{e(self._headline())}</b></div>",
                 f"<div class='lm-auc'>{e(self._auc_line())}</div>" if self.auc else "",
                 f"<div class='lm-side' style='color:#555'>{e(self._side_line())}</div>" if self._side_line() else "",
                 "".join(f"<div class='lm-note' style='color:#a15c00'>note: {e(n)}</div>" for n in self.notes),
                 "<div style='display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap'>"]
        cell = "padding:2px 6px;text-align:right;vertical-align:top"
        for title, rows in zip(self._titles(), (self.top, self.bottom)):
            rows, more = clip_rows(rows)
            if not rows:
                continue
            title += f" {more_note(more)}" if more else ""
            why = title.startswith("Most")
            body = "".join(
                f"<tr><td style='color:#888;padding:2px 6px;vertical-align:top'>{e(str(r.index))}</td>"
                + (f"<td style='{cell}'>{r.unusual:,.3f}</td>" if self.unusual_column else "")
                + f"<td style='{cell}'>{r.ppl:,.1f}</td>"
                + "".join(f"<td style='{cell};color:#666'>{v:,.1f}</td>" for v in r.side.values())
                + f"<td style='padding:2px 6px;max-width:520px'>{shade_words(r.words)}"
                + (f"<div class='lm-why' style='color:#666;font-size:11px'>why: {e(r.why)}</div>"
                   if why and r.why else "") + "</td></tr>" for r in rows)
            side_heads = "".join(f"<th>{e(_PART_SHORT.get(k, k))}</th>" for k in self.side)
            unusual_head = "<th>unusual</th>" if self.unusual_column else ""
            parts.append(f"<table class='lm-score-rows' style='border-collapse:collapse'><caption "
                         f"style='text-align:left'>{title}</caption><tr><th>row</th>{unusual_head}<th>ppl</th>"
                         f"{side_heads}<th style='text-align:left'>text (shaded by surprisal)</th></tr>{body}</table>")
        parts.append("</div>")
        if self.bits is not None:           # a Spark frame's scores stay on the executors: no histogram
            parts.append(histogram_svg(self.bits.dropna().to_numpy(), label="bits per token"))
        parts.append("</div>")
        return "".join(parts)


def shade_words(words: Sequence[Tuple[str, float]]) -> str:
    """Words as HTML spans whose background is more opaque the more surprising the word (bits)."""
    r, g, b = _SHADE
    out = []
    for w, bits in words:
        a = min(1.0, max(0.0, bits / _SHADE_MAX_BITS))
        out.append(f"<span title='{num_text(bits)} bits' style='background:rgba({r},{g},{b},{a:.2f});"
                   f"padding:0 1px;border-radius:2px'>{_e(w)}</span>")
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
            f"aria-label='histogram of {_e(label)}'>{bars}"
            f"<text x='2' y='{height - 2}' font-size='10' fill='#666'>{num_text(lo, 2)}</text>"
            f"<text x='{width / 2:.0f}' y='{height - 2}' font-size='10' fill='#666' "
            f"text-anchor='middle'>{_e(label)}</text>"
            f"<text x='{width - 2}' y='{height - 2}' font-size='10' fill='#666' text-anchor='end'>{num_text(hi, 2)}</text>"
            f"</svg>")


# ------------------------------------------------------------------------------------------ explain

@dataclass
class Explanation:
    """What ``lm.explain`` / ``%lm_explain`` / the chat's ``/explain`` return: per-word surprisal (``.words``,
    (word, bits)) and, at the most surprising words, what the model expected there (``.alternatives``:
    (position, word, bits, [(likely word, probability), ...]))."""

    text: str
    words: List[Tuple[str, float]]
    alternatives: List[Tuple[int, str, float, List[Tuple[str, float]]]]
    model_name: str = ""
    unusual: float = float("nan")               # the unusualness (as in COL_unusual); NaN without a calibration
    why: str = ""                               # the signal that stands out most, or that it is a training row
    percentiles: dict = field(default_factory=dict)   # signal -> percentile among the validation rows
    unseen: List[Tuple[str, float]] = field(default_factory=list)   # (unseen word, its novelty bits)
    nearest: str = ""                           # the nearest usual (training) row
    nearest_dist: float = float("nan")          # its cosine distance (0 = the same character n-grams)
    copied: bool = False                        # (nearly) a training row
    notes: List[str] = field(default_factory=list)

    @property
    def bits(self) -> float:
        """Mean surprisal in bits per word (NaN for a text without words)."""
        return float(np.mean([b for _, b in self.words])) if self.words else float("nan")

    def _headline(self) -> str:
        by = f" under '{self.model_name}'" if self.model_name else ""
        if not self.words:
            return f"No words to explain in {clip_text(self.text, 200)}"
        return (f"{len(self.words)} words{by}: {num_text(self.bits, 2)} bits per word "
                f"(perplexity {2 ** self.bits:,.1f})")

    def _details(self) -> List[str]:
        """The unusualness lines: score and strongest signal, percentiles, unseen words, nearest row, notes."""
        out = []
        if math.isfinite(self.unusual):
            why = self.why if self.why.startswith(("nothing", "a (near) copy")) else f"stands out by: {self.why}"
            out.append(f"unusual {self.unusual:.3f}" + (f"; {why}" if self.why else ""))
        elif self.why:
            out.append(self.why)
        if self.percentiles:
            out.append("percentile among validation rows: " + ", ".join(
                f"{k} {math.floor(100 * v)}%" for k, v in self.percentiles.items() if math.isfinite(v)))
        if self.unseen:
            out.append("unseen words: " + ", ".join(f"{w!r}" + (f" ({b:.1f} bits as a new word)" if math.isfinite(b)
                                                               else "") for w, b in self.unseen))
        if self.nearest:
            near = " ".join(self.nearest.split())
            near = near if len(near) <= _TEXT_WIDTH else near[: _TEXT_WIDTH - 1] + "…"
            out.append(f"nearest usual row (distance {self.nearest_dist:.2f}"
                       + (", a near-copy: this text was in the training text" if self.copied else "")
                       + f"): {near!r}")
        elif self.copied:
            out.append("this text repeats a training row: its scores are lower than a new text would get")
        out += [f"note: {n}" for n in self.notes]
        return out

    def __repr__(self) -> str:
        lines = [self._headline()]
        if self.words:
            words, more = clip_rows(self.words, MAX_WORDS)
            lines.append("  " + " ".join(f"{w}[{num_text(b)}]" for w, b in words)
                         + (f" {more_note(more, 'words')}" if more else ""))
        alternatives, more = clip_rows(self.alternatives)
        for pos, w, b, alts in alternatives:
            lines.append(f"  word {pos + 1} {w!r} ({num_text(b)} bits); expected: {pairs_text(clip_rows(alts)[0])}")
        lines += [f"  {more_note(more, 'surprising words')}"] if more else []
        lines += [f"  {d}" for d in self._details()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        alts = "".join(
            f"<li><b>{_e(w)}</b> <span style='color:#888'>({num_text(b)} bits, word {pos + 1})</span> — expected "
            + (", ".join(f"<code>{_e(token_text(a))}</code> {_e(prob_text(p))}" for a, p in al) or "(none)") + "</li>"
            for pos, w, b, al in clip_rows(self.alternatives)[0])
        words, more = clip_rows(self.words, MAX_WORDS)
        more = f" <span style='color:#888'>{more_note(more, 'words')}</span>" if more else ""
        return (f"<div class='lm-explain' style='{_SCORE_CSS}'><div><b>{_e(self._headline())}</b></div>"
                f"<div style='margin:4px 0;line-height:1.7'>{shade_words(words)}{more}</div>"
                + (f"<div>At the most surprising words the model expected:</div><ul style='margin:2px 0'>"
                   f"{alts}</ul>" if alts else "")
                + "".join(f"<div class='lm-why' style='color:#555'>{_e(d)}</div>" for d in self._details())
                + "</div>")


# ------------------------------------------------------------------------------------------ compare groups

def bars_svg(labels: Sequence[str], values: Sequence[float], width: int = 360, label: str = "") -> str:
    """Horizontal bars around zero (positive to the right, in the accent colour; negative to the left, grey)
    as inline SVG: one row per label."""
    vals = [float(v) for v in values]
    if not vals:
        return ""
    row, text_w = 16, 110
    span = max(abs(v) for v in vals if math.isfinite(v)) if any(math.isfinite(v) for v in vals) else 1.0
    span = span or 1.0
    plot_w = width - text_w - 50
    zero = text_w + plot_w / 2
    height = row * len(vals) + 16
    parts = []
    for i, (name, v) in enumerate(zip(labels, vals)):
        y = i * row + 2
        w = 0.0 if not math.isfinite(v) else abs(v) / span * plot_w / 2
        x = zero if v >= 0 else zero - w
        shown = str(name) if len(str(name)) <= 16 else str(name)[:15] + "…"
        parts.append(f"<text x='{text_w - 4}' y='{y + 11}' font-size='11' text-anchor='end' fill='#333'>"
                     f"{_e(shown)}</text><rect x='{x:.1f}' y='{y + 2}' width='{max(w, 1):.1f}' height='{row - 5}' "
                     f"fill='{_BAR if v >= 0 else '#bbb'}'><title>{_e(name)}: {num_text(v, 3, sign=True)}</title></rect>"
                     f"<text x='{zero + (w + 3 if v >= 0 else 3):.1f}' y='{y + 11}' font-size='10' fill='#666'>"
                     f"{num_text(v, 2, sign=True)}</text>")
    axis = f"<line x1='{zero:.1f}' y1='0' x2='{zero:.1f}' y2='{height - 14}' stroke='#999' stroke-width='1'/>"
    return (f"<svg class='lm-bars' width='{width}' height='{height}' role='img' aria-label='{_e(label)}'>"
            f"{axis}{''.join(parts)}<text x='{zero:.1f}' y='{height - 2}' font-size='10' fill='#666' "
            f"text-anchor='middle'>{_e(label)}</text></svg>")


@dataclass
class GroupComparison:
    """What ``lm.compare_groups`` / ``%lm_compare`` / the chat's ``/compare`` return.

    ``.table``: a DataFrame, one row per group (most unusual first): ``rows``, ``bits`` (mean bits per word
    of its rows), ``rest_bits`` (the same over all other rows), ``excess_bits`` (bits - rest_bits: how much
    more surprising the group is than the rest) and ``words`` (the words that characterise it).
    ``.too_small``: groups with fewer than ``min_rows`` rows, {group: rows}, left out of the comparison.
    """

    column: str
    by: str
    table: Any
    too_small: dict
    min_rows: int
    model_name: str
    skipped: int = 0          # rows without text or without a group
    agreement: Optional[float] = None   # Spearman of excess_bits and ngram_excess_bits over the groups

    @property
    def has_baseline(self) -> bool:
        return "ngram_excess_bits" in getattr(self.table, "columns", ())

    def _headline(self) -> str:
        return (f"'{self.column}' by '{self.by}': {len(self.table)} groups compared with {self.model_name}")

    def _baseline_line(self) -> str:
        if not self.has_baseline:
            return ""
        agree = ("" if self.agreement is None else
                 f"; rank agreement with the model {num_text(self.agreement, 2)} (Spearman, 1 = the same order of groups)")
        return f"beside it: the model's n-gram baseline (n-gram vs rest){agree}"

    def _notes(self) -> List[str]:
        notes = []
        if self.too_small:
            listed = ", ".join(f"{_cell(g)} ({n})" for g, n in list(self.too_small.items())[:8])
            more = f", ... ({len(self.too_small)} in all)" if len(self.too_small) > 8 else ""
            notes.append(f"too small to compare (under {self.min_rows} rows): {listed}{more}")
        if self.skipped:
            notes.append(f"{self.skipped:,} rows without text or group left out")
        return notes

    def __repr__(self) -> str:
        lines = [self._headline()]
        table, more = self._shown()
        if len(table):
            width = min(60, max(len(str(g)) for g in table.index))
            for g, r in table.iterrows():
                base = f" (n-gram {num_text(r['ngram_excess_bits'], 2, sign=True, width=6)})" if self.has_baseline else ""
                lines.append(f"  {_cell(g):<{width}}  {int(r['rows']):>6,} rows  {num_text(r['bits'], 2, width=6)} bits  "
                             f"{num_text(r['excess_bits'], 2, sign=True, width=6)} vs rest{base}  "
                             f"{_words(r['words'])}")
        lines += [f"  {more_note(more, 'groups')}"] if more else []
        lines += [f"  {self._baseline_line()}"] if self.has_baseline else []
        lines += [f"  note: {n}" for n in self._notes()]
        return "\n".join(lines)

    def _shown(self) -> Tuple[Any, int]:
        """The groups a display shows (the most unusual MAX_ROWS) and how many more there are."""
        more = max(0, len(self.table) - MAX_ROWS)
        return (self.table.iloc[:MAX_ROWS] if more else self.table), more

    def _repr_html_(self) -> str:
        table, more = self._shown()
        body = "".join(
            f"<tr><td style='padding:2px 8px'><b>{_e(_cell(g))}</b></td><td style='padding:2px 8px;text-align:right'>"
            f"{int(r['rows']):,}</td><td style='padding:2px 8px;text-align:right'>{num_text(r['bits'], 2)}</td>"
            f"<td style='padding:2px 8px;text-align:right'>{num_text(r['excess_bits'], 2, sign=True)}</td>"
            + (f"<td style='padding:2px 8px;text-align:right;color:#666'>{num_text(r['ngram_excess_bits'], 2, sign=True)}</td>"
               if self.has_baseline else "")
            + f"<td style='padding:2px 8px'>{_e(_words(r['words']))}</td></tr>" for g, r in table.iterrows())
        body += f"<tr><td colspan='6' style='color:#888;padding:2px 8px'>{more_note(more, 'groups')}</td></tr>" if more else ""
        heads = [("group", "left"), ("rows", "right"), ("bits/word", "right"), ("vs rest", "right")]
        heads += [("n-gram vs rest", "right")] if self.has_baseline else []
        head = "".join(f"<th style='padding:2px 8px;text-align:{a}'>{h}</th>" for h, a in
                       heads + [("characteristic words", "left")])
        chart = bars_svg([_cell(g) for g in table.index], table["excess_bits"].tolist(),
                         label="bits per word above the rest")
        notes = "".join(f"<div style='color:#777;font-size:12px'>{_e(n)}</div>"
                        for n in ([self._baseline_line()] if self.has_baseline else []) + self._notes())
        return (f"<div class='lm-compare' style='{_SCORE_CSS}'><div><b>{_e(self._headline())}</b></div>"
                f"<div style='display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap'>"
                f"<table class='lm-compare-table' style='border-collapse:collapse'><tr>{head}</tr>{body}</table>"
                f"{chart}</div>{notes}</div>")


def _cell(value: Any) -> str:
    """A value in a table cell: its text, cut to 60 characters."""
    text = str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _words(words: Sequence[str]) -> str:
    """A group's characteristic words, at most 20 of them."""
    shown, more = clip_rows(words, 20)
    return ", ".join(_cell(w) for w in shown) + (f" {more_note(more)}" if more else "")


# ------------------------------------------------------------------------------------------ data overview

@dataclass
class DataOverview:
    """The notebook's text data (the chat's ``/data``): one dict per column, from ``frames.text_overview``
    (var, column, kind, role, rows, missing, mean_words). Text columns are a table; label columns (few
    distinct short values) and time columns are listed apart, below it: they are not text to model."""

    entries: List[dict]

    def _of(self, role: str) -> List[dict]:
        return [d for d in self.entries if "missing" in d and d.get("role", "text") == role]

    def _more(self) -> int:
        return max(0, len(self._all_cells()) - MAX_ROWS)

    def _cells(self) -> List[Tuple[str, str, str, str, str]]:
        """The rows the table shows (MAX_ROWS at most; _more() counts the rest)."""
        return self._all_cells()[:MAX_ROWS]

    def _all_cells(self) -> List[Tuple[str, str, str, str, str]]:
        out = []
        for d in self.entries:
            name = _cell(ref_text(d["var"], d["column"]))
            if "missing" not in d:
                out.append((name, d["kind"], _fmt_int(d["rows"]), "", "no text columns"))
                continue
            if d.get("role", "text") != "text":
                continue
            mean = "n/a" if not math.isfinite(d["mean_words"]) else f"{d['mean_words']:.1f}"
            out.append((name, d["kind"], _fmt_int(d["rows"]), _fmt_int(d["missing"]),
                        mean + (" (sampled)" if d.get("sampled") else "")))
        return out

    def _others(self) -> List[Tuple[str, List[Tuple[str, str]]]]:
        """(heading, [(reference, note)]) for the label and the time columns that there are."""
        out = []
        labels = [(_cell(ref_text(d["var"], d["column"])), f"{d['values']:,} value{'' if d['values'] == 1 else 's'}" if "values" in d else "")
                  for d in self._of("label")]
        labels, more = clip_rows(labels)
        labels += [(more_note(more), "")] if more else []
        if labels:
            out.append(("labels (few distinct short values, not text to model)", labels))
        times, more = clip_rows([(_cell(ref_text(d["var"], d["column"])), "") for d in self._of("time")])
        times += [(more_note(more), "")] if more else []
        if times:
            out.append(("dates and times", times))
        return out

    def __repr__(self) -> str:
        if not self.entries:
            return "No DataFrames, Series or lists of text in the notebook yet."
        lines = []
        cells = self._cells()
        if cells:
            cells = [("column", "kind", "rows", "missing", "mean words")] + cells
            w = [max(len(r[i]) for r in cells) for i in range(5)]
            lines = ["  ".join(f"{c:{'>' if i in (2, 3) else '<'}{w[i]}}" for i, c in enumerate(r)).rstrip()
                     for r in cells]
            lines += [more_note(self._more(), "columns")] if self._more() else []
        else:
            lines = ["No text columns."]
        for heading, refs in self._others():
            lines.append(f"{heading[0].upper()}{heading[1:]}: "
                         + ", ".join(f"{r} ({n})" if n else r for r, n in refs))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.entries:
            return f"<div>{_e(repr(self))}</div>"
        table = "<div>No text columns.</div>"
        if self._cells():
            head = "".join(f"<th style='padding:1px 8px;text-align:{a}'>{h}</th>" for h, a in
                           (("column", "left"), ("kind", "left"), ("rows", "right"), ("missing", "right"),
                            ("mean words", "right")))
            body = "".join("<tr>" + "".join(f"<td style='padding:1px 8px;text-align:{a}'>"
                                            + (f"<code>{_e(c)}</code>" if i == 0 else _e(c)) + "</td>"
                                            for i, (c, a) in enumerate(zip(r, ("left", "left", "right", "right",
                                                                               "right"))))
                           + "</tr>" for r in self._cells())
            body += (f"<tr><td colspan='5' style='color:#888'>{more_note(self._more(), 'columns')}</td></tr>"
                     if self._more() else "")
            table = f"<table class='lm-data' style='border-collapse:collapse'><tr>{head}</tr>{body}</table>"
        others = "".join(
            f"<div class='lm-data-{'labels' if heading.startswith('labels') else 'times'}' style='margin-top:4px'>"
            f"{_e(heading[0].upper() + heading[1:])}: "
            + ", ".join(f"<code>{_e(r)}</code>" + (f" <span style='color:#777'>({_e(n)})</span>" if n else "")
                        for r, n in refs) + "</div>"
            for heading, refs in self._others())
        return table + others


# Public names for the magics.
escape = _e
ppl_text = _fmt_ppl

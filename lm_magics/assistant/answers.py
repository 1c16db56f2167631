"""The chat's answers that compute something, without a widget: each returns an ``Answer`` (its text, an
HTML body, the result object and the line that computes it again in a cell) or, for the long ones, a
``Work`` that the chat runs inline or in the background.

The magic lines are written by one function, ``magic_line``, from the magics' own parsers (whose flags come
from config.py's option specs), so no flag is re-typed here.

    >>> magic_line("lm_score", {"df": "reviews", "column": "text", "top": 3})
    '%lm_score --df reviews --column text --top 3'
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

from .. import progress
from ..analysis import compare_groups, explain as explain_text, score_frame
from ..display import DataOverview
from ..errors import ConfigError, DataError
from ..formatting import num_text, pairs_text, token_text
from ..frames import is_dataframe, ref_text, resolve_column, text_overview
from ..rules import MAX_ROWS, clip_text
from .grammar import USAGE, column_and_options, quote

__all__ = ["Answer", "Work", "magic_line", "data", "next_words", "score_text", "explain", "unusual", "compare",
           "learn_line", "estimate_seconds", "record_time", "duration", "clock", "plan_line", "progress_line"]

# Progress callback of a long computation: (units done, units in all); it may raise to stop the work.
OnChunk = Callable[[int, int], None]
# How the chat finds a model: ``with NAME`` -> (NAME, model); None -> (the chat's name or None, its model).
ModelFor = Callable[[Optional[str]], Tuple[Optional[str], Any]]


@dataclass
class Answer:
    """What the chat shows for a command: text (the message's text; the code is appended to it), an HTML
    body (None: the text), the line that computes it again (``code``, shown with a Copy button), the result
    object, and the columns it wrote (``wrote``: (frame, [columns]))."""

    text: str
    html: Optional[str] = None
    code: Optional[str] = None
    result: Any = None
    wrote: Optional[Tuple[Any, List[str]]] = None


@dataclass
class Work:
    """A computation that may take a while: ``run(on_chunk)`` returns its Answer. ``rows`` and ``seconds``
    (estimated; 0 for one that is always quick) let the chat decide to run it in the background."""

    title: str
    run: Callable[[Optional[OnChunk]], Answer]
    rows: int = 0
    seconds: float = 0.0
    model: Any = None          # the model whose speed the estimate used (record_time learns from the run)


# ---------------------------------------------------------------------------------------------- magic lines

def _parser(magic: str) -> Any:
    from ..magics import LMMagics       # the magics' parsers: IPython, never ipywidgets

    fn = getattr(LMMagics, magic, None)
    parser = getattr(fn, "parser", None)
    if parser is None:
        raise ValueError(f"No magic %{magic} with options.")
    return parser


def magic_line(magic: str, options: Mapping[str, Any], text: str = "") -> str:
    """The line ``%magic --flag value ... text`` for the options (keyed by the parser's dest names, in the
    order given; None and False are left out, True of a switch is the bare flag, a list is several values).
    Every flag is looked up in the magic's own parser: a name it does not have is a ValueError."""
    parser = _parser(magic)
    actions = {a.dest: a for a in parser._actions}
    parts = [f"%{magic}"]
    for key, value in options.items():
        action = actions.get(key)
        if action is None or not action.option_strings:
            raise ValueError(f"%{magic} has no option {key!r}.")
        if value is None or value is False:
            continue
        flag = max(action.option_strings, key=len)          # --output rather than -o
        if action.nargs == 0:                               # a switch: --overwrite
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag] + [quote(str(v)) for v in value]
        else:
            parts += [flag, quote(str(value).lower() if isinstance(value, bool) else str(value))]
    if text:
        # The magics keep the text after the options verbatim, but take a text that starts like an option
        # for one and unwrap a quoted one: "--" ends the options and keeps the text as it is.
        quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
        parts += (["--"] if text.startswith("-") or quoted else []) + [text]
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------- how long

# The time texts and the scoring estimate are progress.py's: the monitor, the bars and the magics use them too.
duration = progress.duration          # "48 s", "2 min 5 s"
clock = progress.clock                # "0:48", "2:05"
_time_left_of = progress.time_left
_plan_of = progress.plan_text


_corrections: "weakref.WeakKeyDictionary[Any, float]" = weakref.WeakKeyDictionary()


def estimate_seconds(model: Any, texts: Sequence[Any], passes: float = 1) -> float:
    """How long scoring ``texts`` with ``model`` takes, ``passes`` times: rows x mean tokens / the model's
    speed, measured once on a few evenly spaced rows (and kept for the model), times how far the model's
    last long run was off (``record_time``). The chat's one estimate for /unusual and /compare; from
    ``ChatAssistant.background_seconds`` on they run in the background."""
    return float(progress.measure_scoring(model, texts, passes)) * _corrections.get(model, 1.0)


def record_time(model: Any, estimated: float, real: float) -> None:
    """After a command of a second or more: real / estimated, so the next estimate for the model is closer
    (a speed measured on a few rows, on a busy machine, can be off by a few times)."""
    if model is None or estimated <= 0 or real < 1.0:
        return
    try:
        _corrections[model] = min(8.0, max(0.125, _corrections.get(model, 1.0) * real / estimated))
    except TypeError:          # an object that cannot be weakly referenced: no memory of it
        pass


def plan_line(plan: Any = None, step: Any = None) -> str:
    """What /learn says once the plan is known ("about 50 s, 8 epochs"): the engine's plan (``on_plan``)
    when there is one, else an estimate from the first steps (total time from the time left); "" before."""
    if plan is not None:
        text = _plan_of(plan)
        if text:
            return text
    if step is None:
        return ""
    left = _time_left_of(step)
    if left is None:
        return ""
    return _plan_of({"seconds": step.elapsed + left, "steps": step.total_steps})


def progress_line(elapsed: float, step: Any = None) -> str:
    """``0:12 elapsed, about 0:38 left`` (the time left once the first steps are timed)."""
    left = _time_left_of(step) if step is not None else None
    return f"{clock(elapsed)} elapsed" + ("" if left is None else f", about {clock(left)} left")


def work_line(elapsed: float, estimate: float, fraction: Optional[float]) -> str:
    """The progress of a long command: ``42% · 0:12 elapsed, about 0:17 left``; the time left from the
    work done so far (``fraction``), or from the estimate before the first part is done."""
    if fraction:
        left = elapsed * (1 - fraction) / fraction
    else:
        left = estimate - elapsed
    head = f"{fraction:.0%} · " if fraction else ""
    tail = f"about {clock(left)} left" if left >= 1 else "a little longer than estimated" if not fraction \
        else "almost done"
    return f"{head}{clock(elapsed)} elapsed, {tail}"


# ---------------------------------------------------------------------------------------------- quick answers

def data(ns: Mapping[str, Any]) -> Answer:
    """/data: the notebook's text data."""
    overview = DataOverview(text_overview(ns))
    return Answer(repr(overview), overview._repr_html_(), result=overview)


def next_words(model: Any, name: Optional[str], text: str, k: int) -> Answer:
    """/next TEXT: the k likeliest next words (``%lm_complete`` computes them again)."""
    pairs = model.next_words(text, k)
    code = (magic_line("lm_complete", {"name": name, "k": k}, text) if name
            else f"model.next_words({text!r}, k={k})")
    return Answer(f"after {clip_text(text, 200)}: {pairs_text(pairs[:MAX_ROWS])}", code=code, result=pairs)


def score_text(model: Any, name: Optional[str], text: str, k: int) -> Answer:
    """/score TEXT: the perplexity of the text and its k most surprising words, as ``%lm_explain --top k``
    computes them (the line it offers shows them again, with what the model expected there)."""
    if not text.strip():
        raise ConfigError("Give the text to score: /score TEXT.")
    result = explain_text(model, text, top=k, k=k, model_name=name or "")
    worst = [(w, b) for _, w, b, _ in result.alternatives]
    code = (magic_line("lm_explain", {"name": name, "top": k, "k": k}, text) if name
            else f"lm.explain(model, {text!r}, top={k}, k={k})")
    return Answer(f"perplexity {2 ** result.bits:,.1f}; most surprising: "
                  + (", ".join(f"{token_text(w)} ({num_text(b)} bits)" for w, b in worst) or "(none)"),
                  code=code, result=result)


def explain(model: Any, name: Optional[str], text: str, k: int) -> Answer:
    """/explain TEXT: the surprisal of each word, and what the model expected at the most surprising."""
    text = text.strip()
    if not text:
        raise ConfigError("Give the text to explain: /explain the cat sat on the river.")
    result = explain_text(model, text, top=3, k=k, model_name=name or "")
    code = (magic_line("lm_explain", {"name": name, "k": k}, text) if name
            else f"lm.explain(model, {text!r}, k={k})")
    return Answer(repr(result), result._repr_html_(), code, result)


# ---------------------------------------------------------------------------------------------- long answers

def _score_columns(frame: Any, column: str, own: set, parts: Tuple[str, ...] = ()) -> Tuple[str, bool]:
    """The perplexity column for /unusual: COL_ppl, unless the user has a column of that name (or of its
    _bits partner, or of the parts' COL_ngram_ppl ...), then COL_2_ppl, COL_3_ppl, ... Columns in ``own``
    (the chat wrote them) may be replaced: returns (column, whether it replaces ones it wrote)."""
    n = 1
    while True:
        into = f"{column}_ppl" if n == 1 else f"{column}_{n}_ppl"
        pair = (into, into[:-4] + "_bits", into[:-4] + "_unusual", *(f"{into[:-4]}_{p}_ppl" for p in parts))
        if not any(c in frame.columns and c not in own for c in pair):
            return into, any(c in frame.columns for c in pair)
        n += 1


def unusual(ns: Mapping[str, Any], arg: str, model_for: ModelFor, own: Callable[[Any], set]) -> Work:
    """/unusual COLUMN [with MODEL] [top N]: score every row (new columns) and show the most and least
    surprising. ``own(frame)`` is the set of that frame's columns the chat wrote (it may replace them)."""
    ref, opts = column_and_options(ns, arg, USAGE["unusual"], {"with": str, "top": int})
    frame = ref.frame
    if ref.column is None or not is_dataframe(frame):
        raise DataError(f"'{ref.var}' is a {type(frame).__name__}; /unusual writes its scores as columns, so "
                        f"name a DataFrame column (e.g. {ref.var}_df = {ref.var}.to_frame() in a cell).")
    if type(frame).__module__.startswith("polars"):
        raise DataError(f"'{ref.var}' is a polars DataFrame, which cannot take new columns in place; run "
                        f"`{ref.var}_pd = {ref.var}.to_pandas()` in a cell and /unusual {ref.var}_pd.…")
    top = opts.get("top", 5)
    if top < 1:
        raise ConfigError(f"top must be at least 1, got {top}.")
    name, model = model_for(opts.get("with"))
    # The model's n-gram baseline goes beside its scores when it has one: a column per row and a line
    # saying how far the two rankings agree.
    baseline = model.kind != "ngram" and model.ngram is not None
    parts = ("ngram", "mix" if model.kind == "lstm" else "lstm") if baseline else ()
    into, replace = _score_columns(frame, ref.column, own(frame), parts)
    default_into = into == f"{ref.column}_ppl"

    def run(on_chunk: Optional[OnChunk] = None) -> Answer:
        report = score_frame(model, frame, ref.column, into=None if default_into else into, overwrite=replace,
                             top=top, model_name=name or "", baseline=baseline, on_chunk=on_chunk)
        # The columns exist now (the chat wrote them): the line replaces them, so it runs again as given.
        code = magic_line("lm_score", {"df": ref.var, "column": ref.column, "name": name,
                                       "into": None if default_into else into, "overwrite": True,
                                       "top": top, "baseline": baseline})
        if name is None:
            code = (f"lm.score_frame(model, {ref.var}, {ref.column!r}"
                    f"{'' if default_into else f', into={into!r}'}, overwrite=True, top={top}"
                    f"{', baseline=True' if baseline else ''})")
        note = "" if default_into else f" ('{ref.column}_ppl' is your column, so the scores went to '{into}')"
        body = (f"<div>{_esc(note.strip(' ()'))}</div>" if note else "") + report._repr_html_()
        wrote = report.columns
        return Answer(repr(report) + note, body, code, report, (frame, wrote))

    # One pass of the model: an LSTM model's n-gram and mixture columns come from it; a mix model's LSTM
    # alone is a second pass.
    seconds = estimate_seconds(model, frame[ref.column], 2 if baseline and model.kind == "mix" else 1)
    return Work(f"Scoring {len(frame):,} rows of {ref_text(ref.var, ref.column)}", run, rows=len(frame),
                seconds=seconds, model=model)


def compare(ns: Mapping[str, Any], arg: str, model_for: ModelFor) -> Work:
    """/compare COLUMN by GROUP [with MODEL] [min N]: which groups are most unusual, and their words."""
    usage = USAGE["compare"]
    ref, opts = column_and_options(ns, arg, usage, {"by": str, "with": str, "min": int})
    if "by" not in opts:
        raise ConfigError(f"Say which column holds the groups: {usage}.")
    if ref.column is None or not is_dataframe(ref.frame):
        raise DataError(f"'{ref.var}' is a {type(ref.frame).__name__}; /compare needs a DataFrame with a text "
                        f"column and a group column.")
    resolve_column(ns, ref_text(ref.var, opts["by"]), need_text=False)   # names close matches
    name = opts.get("with")
    model = model_for(name)[1] if name else None
    code = magic_line("lm_compare", {"df": ref.var, "column": ref.column, "by": opts["by"], "name": name,
                                     "min_rows": opts.get("min")})

    def run(on_chunk: Optional[OnChunk] = None) -> Answer:
        result = compare_groups(ref.frame, ref.column, opts["by"], model, min_rows=opts.get("min", 5),
                                model_name=name or "", on_chunk=on_chunk)
        return Answer(repr(result), result._repr_html_(), code, result)

    # Word counts (no model) are quick for any number of rows; a model scores each row once (its n-gram
    # beside it is quick).
    seconds = estimate_seconds(model, ref.values) if model is not None else 0.0
    return Work(f"Comparing groups of {ref_text(ref.var, ref.column)} ({len(ref.frame):,} rows)", run,
                rows=len(ref.frame) if model is not None else 0, seconds=seconds, model=model)


def learn_line(name: str, source: Mapping[str, Any]) -> str:
    """The ``%%lm_train ... --background`` line that trains what /learn trains."""
    return magic_line("lm_train", {"name": name, **source, "background": True})


def _esc(text: object) -> str:
    import html

    return html.escape(str(text), quote=True)

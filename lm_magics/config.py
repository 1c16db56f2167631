"""The one place where options are named, documented and checked.

``TrainConfig`` and ``GenerateConfig`` are the contract shared by the Python API (keywords), the magics
(``--flags``), the CLI and model files (checkpoint keys). Front-ends generate their flags from the
fields below, so a new option appears everywhere at once.

Options left at ``None`` are chosen from the data and the time budget by
:func:`lm_magics.engine.planning.plan` ("defaults that fit the data"); the training summary shows what
was chosen and why.
"""

from __future__ import annotations

import argparse
import difflib
import math
import numbers
import os
import re
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any, Iterator, Mapping, Optional

from .errors import ConfigError

__all__ = ["TrainConfig", "GenerateConfig", "option_specs", "OptionSpec", "add_arguments", "PRECISION_ENV",
           "precision_override", "arg_type", "check_parsed", "check_device", "MAX_SEED", "parse_budget"]

# Seeds feed torch.manual_seed / torch.Generator, which take a signed 64-bit integer.
MAX_SEED = 2**63 - 1
# The devices lm_magics can run on. torch.device() accepts more ('meta', 'xla', 'ipu', ...), and those fail
# deep inside training or generation with messages that say nothing about the option.
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:[0-9]{1,4})?)\Z")


def check_device(name: Any) -> str:
    """The device name if lm_magics can use it ('auto', 'cpu', 'cuda', 'cuda:N', 'mps'), else ConfigError."""
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ConfigError(f"Unknown device {name!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    return name


# A time: a number of seconds, or numbers with units ("90s", "10m", "1h30m", "1.5 h").
_TIME_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)?\s*")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0}
# The longest budget taken at its word: a week (a typo like "1000h" is still allowed; "1e30" is not).
_MAX_BUDGET_S = 7 * 24 * 3600.0


def parse_budget(value: Any) -> Any:
    """A ``budget`` as stored: seconds (float), None (no budget) or "auto" (the default for interactive
    runs). Accepts a number of seconds, text like "90s", "10m", "1h", "1h30m", and "none"/"off"."""
    fix = "give seconds (90) or a time like '90s', '10m', '1h'; 'none' trains to convergence"
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"budget must be a time, got {value!r}; {fix}.")
    if isinstance(value, numbers.Real):
        seconds = _number("budget", value, float)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "default"):
            return "auto"
        if text in ("none", "off", "no"):
            return None
        parts, pos = [], 0
        while pos < len(text):
            m = _TIME_PART.match(text, pos)
            # A bare number only alone ("90"); "10m5" or "m" is not a time.
            if not m or (m.group(2) is None and (parts or m.end() < len(text))):
                raise ConfigError(f"budget {value!r} is not a time; {fix}.")
            parts.append(float(m.group(1)) * _UNIT_S[(m.group(2) or "s")[0]])
            pos = m.end()
        if not parts:
            raise ConfigError(f"budget {value!r} is not a time; {fix}.")
        seconds = sum(parts)
    else:
        raise ConfigError(f"budget must be a time, got {_short(value)}; {fix}.")
    if seconds <= 0:
        raise ConfigError(f"budget must be above 0 seconds, got {_short(value)}; 'none' means no budget.")
    if seconds > _MAX_BUDGET_S:
        raise ConfigError(f"budget must be at most a week ({_MAX_BUDGET_S:,.0f} s), got {_short(value)}; 'none' "
                          f"means no budget.")
    return float(seconds)


def _opt(default: Any, help: str, *, choices: tuple | None = None, min: float | None = None,
         max: float | None = None, positive: bool = False, check: Any = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "min": min, "max": max,
                                            "positive": positive, "check": check})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is built and trained. ``None`` means "choose from the data"."""

    # -- tokenizer
    level: str = _opt("word", "tokens: 'word' (words, numbers, punctuation), 'whitespace' (text is "
                      "already tokenized: split on spaces) or 'char'", choices=("word", "whitespace", "char"))
    lowercase: bool = _opt(False, "lowercase the text before building the vocabulary")
    min_freq: int = _opt(1, "words seen fewer times than this become <unk>", min=1)
    max_vocab: int = _opt(50_000, "keep at most this many most frequent words (the rest become <unk>)", min=3)
    # -- model (None: sized from the number of training tokens, see auto_config)
    embed_dim: Optional[int] = _opt(None, "word embedding size (default: from data size)", positive=True)
    hidden_dim: Optional[int] = _opt(None, "LSTM hidden size (default: from data size)", positive=True)
    num_layers: Optional[int] = _opt(None, "stacked LSTM layers (default: from data size)", positive=True)
    dropout: Optional[float] = _opt(None, "dropout between layers (default: from data size)", min=0.0, max=0.95)
    tie_weights: bool = _opt(True, "share input embedding and output weights (full softmax only)")
    softmax: str = _opt("auto", "output layer: 'full', 'adaptive' (fast for big vocabularies) or 'auto' "
                        "(adaptive from adaptive_threshold words on)", choices=("auto", "full", "adaptive"))
    adaptive_threshold: int = _opt(8_000, "vocabulary size from which softmax='auto' is adaptive", min=3)
    # -- optimisation
    seq_len: int = _opt(35, "tokens per truncated-BPTT window", positive=True)
    batch_size: Optional[int] = _opt(None, "parallel token streams per step (default: from data size)",
                                     positive=True)
    epochs: Optional[int] = _opt(None, "passes over the training data (default: from data size)", positive=True)
    max_steps: Optional[int] = _opt(None, "stop after this many optimizer steps in all", positive=True)
    max_time: Optional[float] = _opt(None, "stop after this many seconds of training", positive=True)
    # A time, not a number: "90s", "10m", "1h" read as well as 90 (see parse_budget).
    budget: Optional[Any] = _opt("auto", "time for the whole call (tokenizing, n-gram and copy index included): "
                                 "seconds or '90s', '10m', '1h'; 'none': train to convergence; 'auto': about a "
                                 "minute for a column of 300k tokens, less for less text, none when epochs or "
                                 "max_steps is given (the CLI has none unless given)", check=parse_budget)
    lr: Optional[float] = _opt(None, "peak learning rate (sgd 20; AdamW 0.03, 0.01 from 50k tokens, "
                               "0.003 from 300k)", positive=True)
    optimizer: str = _opt("auto", "'auto' (sgd below 300k training tokens, else adamw; a given lr: sgd from 1 "
                          "on, else adamw), 'adamw' (sparse-aware, fused) or 'sgd'", choices=("auto", "adamw", "sgd"))
    weight_decay: float = _opt(0.01, "AdamW weight decay on dense weight matrices", min=0.0)
    grad_clip: Optional[float] = _opt(None, "clip the gradient norm to this (0: no clipping; sgd 0.25, adamw "
                                      "1.0)", min=0.0)
    schedule: str = _opt("cosine", "learning-rate schedule after warm-up: 'cosine' or 'constant'",
                         choices=("cosine", "constant"))
    patience: int = _opt(3, "stop after this many epochs without a better validation perplexity", min=1)
    val_fraction: float = _opt(0.1, "share of rows (or lines) held out for validation", min=0.0, max=0.5)
    precision: str = _opt("auto", "'auto' (bf16 where the hardware has it), 'bf16' or 'fp32'",
                          choices=("auto", "bf16", "fp32"))
    seed: int = _opt(0, "random seed: same seed, same data, same CPU -> same model", min=0, max=MAX_SEED)
    device: str = _opt("auto", "'auto' (cuda, then mps, then cpu), 'cpu', 'cuda', 'cuda:1', 'mps'",
                       check=check_device)
    # torch itself has no limit: 10**6 threads crashed the process (segmentation fault) instead of an error.
    threads: Optional[int] = _opt(None, "CPU threads for torch (default: torch's own choice)", positive=True,
                                  max=1024)
    # -- model kind, n-gram baseline, copy check
    kind: str = _opt("lstm", "'lstm', 'ngram' (interpolated modified Kneser-Ney: trains in seconds) or 'mix' "
                     "(the LSTM interpolated with its n-gram, the weight fitted on the validation rows)",
                     choices=("lstm", "ngram", "mix"))
    order: Optional[int] = _opt(None, "n-gram order, 2-5 (default: 3 below 100k training tokens, 4 below 5M, "
                                "else 5)", min=2, max=5)
    baseline: bool = _opt(True, "also count an n-gram over the same rows and vocabulary (seconds; for "
                          "scores with --baseline and the mixture)")
    copy_window: int = _opt(8, "keep hashes of every run of this many tokens of the training rows, so "
                            "generation can flag a continuation that copies one (0: keep none)", min=0)

    def __post_init__(self) -> None:
        _check(self)
        if self.copy_window == 1:
            raise ConfigError("copy_window must be 0 (no copy check) or at least 2; the default is 8.")
        if self.kind == "ngram":
            # Options that only shape or train a network mean nothing to a count model: say so, once.
            given = [f.name for f in fields(self) if f.name in _LSTM_ONLY and getattr(self, f.name) != f.default]
            if given:
                raise ConfigError(f"kind='ngram' has no {', '.join(given)} (those train an LSTM); drop "
                                  f"{'it' if len(given) == 1 else 'them'} or use kind='lstm'.")
        if self.kind == "mix" and not self.baseline:
            raise ConfigError("kind='mix' interpolates the LSTM with its n-gram; drop baseline=False.")

    def replace(self, **changes: Any) -> "TrainConfig":
        return replace(self, **_checked_names(type(self), changes))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, **overrides: Any) -> "TrainConfig":
        if not isinstance(d, Mapping):
            raise ConfigError(f"TrainConfig.from_dict needs a dict of options, got {type(d).__name__}.")
        known = {f.name for f in fields(cls)}
        base = {k: v for k, v in d.items() if k in known}  # tolerate keys from other versions
        base.update(_checked_names(cls, overrides))
        return cls(**base)


# Options that only shape or train the network (kind='ngram' refuses them; device is harmless).
_LSTM_ONLY = frozenset({"embed_dim", "hidden_dim", "num_layers", "dropout", "tie_weights", "softmax",
                        "adaptive_threshold", "seq_len", "batch_size", "epochs", "max_steps", "max_time", "lr",
                        "optimizer", "weight_decay", "grad_clip", "schedule", "patience", "precision",
                        "threads"})


@dataclass(frozen=True)
class GenerateConfig:
    """How text is generated from a prefix."""

    # The cap only stops a typo (-n 10000000000) from generating for days: a million words is ~10 minutes.
    n_words: int = _opt(20, "number of tokens to generate", positive=True, max=1_000_000)
    # By 100 the distribution is nearly flat (log-probs a few dozen nats apart); the cap keeps it meaningful.
    temperature: float = _opt(1.0, "sampling temperature: <1 safer, >1 wilder, 0 = always the top word",
                              min=0.0, max=100.0)
    top_k: int = _opt(0, "sample only among the k most likely words (0: all)", min=0)
    top_p: float = _opt(1.0, "sample only among the most likely words whose probabilities add up to p",
                        min=0.0, max=1.0)
    beam: int = _opt(1, "beam search width (1: sampling; >1: the most likely continuation)", positive=True)
    seed: Optional[int] = _opt(None, "random seed for sampling (default: fresh randomness)", min=0, max=MAX_SEED)
    # -- against loops (a small model on play-formatted text otherwise writes "MENENIUS:\nMENENIUS:\n..."):
    # what text generators offer, with defaults that keep an answer readable; 1 / 0 / false give the model's
    # own distribution. Both look at the last 128 tokens, the prefix's included.
    repetition_penalty: float = _opt(1.3, "a word (not punctuation or a line end) already among the last 128 "
                                     "tokens is this many times less likely (1: no penalty)", min=1.0, max=1e6)
    no_repeat_ngram: int = _opt(4, "never repeat a run of this many tokens from the last 128, line ends "
                                "included (0: allow any)", min=0, max=128)
    stop_at_blank_line: bool = _opt(True, "end the text at a blank line (the end of a paragraph or a speech) "
                                    "once it has a word")

    def __post_init__(self) -> None:
        _check(self)
        if self.top_p == 0:
            raise ConfigError("top_p must be above 0 (1.0 keeps every word); try --top-p 0.9.")
        if self.no_repeat_ngram == 1:
            raise ConfigError("no_repeat_ngram must be 0 (allow repeats) or at least 2 (1 would forbid every "
                              "word already written); try --no-repeat-ngram 4.")

    def replace(self, **changes: Any) -> "GenerateConfig":
        return replace(self, **_checked_names(type(self), changes))


# ------------------------------------------------------------------------------ environment override

# Forces the training precision everywhere, explicit ``precision=`` arguments included: CI runs the
# tutorials once under ``fp32`` so the suite does not depend on whether the CPU has bf16 hardware, and a
# user can rule bf16 out without touching code.
PRECISION_ENV = "LM_MAGICS_PRECISION"


def precision_override() -> Optional[str]:
    """The precision that ``$LM_MAGICS_PRECISION`` forces ('auto', 'bf16' or 'fp32'), or None when unset."""
    value = os.environ.get(PRECISION_ENV, "").strip().lower()
    if not value:
        return None
    choices = fields_by_name(TrainConfig)["precision"].metadata["choices"]
    if value not in choices:
        raise ConfigError(f"{PRECISION_ENV}={value!r} is not a precision; set it to one of "
                          f"{', '.join(choices)}, or unset it.")
    return value


def fields_by_name(cls: type) -> dict:
    return {f.name: f for f in fields(cls)}


# ---------------------------------------------------------------------------------------------- checks

def _checked_names(cls: type, kw: dict) -> dict:
    known = [f.name for f in fields(cls)]
    for name in kw:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else f" Known options: {', '.join(known)}."
            raise ConfigError(f"Unknown option '{name}'.{hint}")
    return kw


def _check(cfg: Any) -> None:
    """Validate types and ranges of every field; raise ConfigError with a one-line fix.

    Numbers are stored as plain int / float (numpy scalars are accepted and converted), so a config
    always goes into a model file as plain data."""
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        m = f.metadata
        typ = _base_type(f.type)
        if v is None:
            if "Optional" in str(f.type):
                continue
            raise ConfigError(f"{f.name} needs a value.")
        if typ is bool:
            if not isinstance(v, bool):
                raise ConfigError(f"{f.name} must be True or False, got {_short(v)}.")
            continue
        if typ is object:                # a value of its own kind (budget): its check returns it as stored
            if m.get("check") is not None:
                object.__setattr__(cfg, f.name, m["check"](v))
            continue
        if typ in (int, float):
            v = _number(f.name, v, typ)
            if m.get("positive") and v <= 0:
                raise ConfigError(f"{f.name} must be above 0, got {_short(v)}.")
            if m.get("min") is not None and v < m["min"]:
                raise ConfigError(f"{f.name} must be at least {m['min']}, got {_short(v)}.")
            if m.get("max") is not None and v > m["max"]:
                raise ConfigError(f"{f.name} must be at most {m['max']}, got {_short(v)}.")
            object.__setattr__(cfg, f.name, v)
        if typ is str:
            if not isinstance(v, str):
                raise ConfigError(f"{f.name} must be text, got {_short(v)}.")
            if m.get("choices") and v not in m["choices"]:
                raise ConfigError(f"{f.name} must be one of {', '.join(m['choices'])}; got {v!r}.")
            if m.get("check") is not None:
                m["check"](v)


def _number(name: str, v: Any, typ: type) -> Any:
    """v as a finite Python int (typ int) or float, or a ConfigError."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {_short(v)}.")
    if isinstance(v, numbers.Integral):
        v = int(v)                      # exact, however big: ranges are checked on the int
        if typ is int:
            return v
    try:
        x = float(v)
    except OverflowError:               # an int beyond float range (10**400)
        raise ConfigError(f"{name} must be a finite number, got {_short(v)}.") from None
    if not math.isfinite(x):
        raise ConfigError(f"{name} must be a finite number, got {v!r}.")
    if typ is int:
        if not x.is_integer():
            raise ConfigError(f"{name} must be a whole number, got {v!r}.")
        return int(x)
    return x


def _short(v: Any) -> str:
    """repr(v), cut to a length that keeps an error message on one short line."""
    r = repr(v) if not isinstance(v, int) or v.bit_length() < 200 else f"a {len(str(v))}-digit number"
    r = " ".join(r.split())
    return r if len(r) <= 60 else r[:57] + "..."


def _base_type(annotation: Any) -> type:
    s = str(annotation)
    for t in (bool, int, float, str):
        if t.__name__ in s:
            return t
    return object


# --------------------------------------------------------------------------- flags for magics and CLI

@dataclass(frozen=True)
class OptionSpec:
    name: str        # field name: keyword and checkpoint key
    flag: str        # --flag-name for magics and CLI
    type: type
    default: Any
    help: str
    choices: Optional[tuple]


def option_specs(cls: type) -> Iterator[OptionSpec]:
    """The options of a config class, in declaration order, as front-ends need them."""
    for f in fields(cls):
        default = f.default if f.default is not MISSING else None
        yield OptionSpec(f.name, "--" + f.name.replace("_", "-"), _base_type(f.type), default,
                         f.metadata.get("help", ""), f.metadata.get("choices"))


class _Invalid:
    """A command-line value that could not be converted.

    argparse would report a bad value as a usage mistake (exit code 2, like an unknown flag), but a value
    of the wrong kind is an option-value problem (exit code 1, a ConfigError): the converters below
    return this marker instead of failing, and ``check_parsed`` raises its ConfigError after parsing."""

    def __init__(self, message: str):
        self.message = message

    def __repr__(self) -> str:
        return f"<invalid value: {self.message}>"


def arg_type(typ: type, choices: Optional[tuple] = None) -> Any:
    """An argparse ``type=`` for bool / int / float / str (with choices) values; see ``_Invalid``."""
    def convert(text: str) -> Any:
        t = text.strip()
        if typ is bool:
            if t.lower() in ("1", "true", "yes", "on"):
                return True
            if t.lower() in ("0", "false", "no", "off"):
                return False
            return _Invalid(f"expected true or false, got {text!r}")
        if choices is not None and text not in choices:
            return _Invalid(f"invalid choice {text!r} (choose from {', '.join(choices)})")
        if typ in (int, float):
            try:
                return typ(t)
            except ValueError:
                return _Invalid(f"expected {'a whole number' if typ is int else 'a number'}, got {text!r}")
        return text
    convert.__name__ = typ.__name__
    return convert


def check_parsed(namespace: argparse.Namespace) -> argparse.Namespace:
    """Raise ConfigError for the first option whose value could not be converted (see ``arg_type``)."""
    for dest, value in vars(namespace).items():
        if isinstance(value, _Invalid):
            name = dest.rstrip("_").replace("_", "-")
            raise ConfigError(f"{'-' if len(name) == 1 else '--'}{name}: {value.message}.")
    return namespace


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple = (),
                  short: dict | None = None) -> None:
    """Add one ``--flag`` per config field to an argparse parser (defaults None = "not given")."""
    short = short or {}
    for spec in option_specs(cls):
        if spec.name in skip:
            continue
        names = [spec.flag] + ([short[spec.name]] if spec.name in short else [])
        shown = "from data" if spec.default is None else spec.default
        kw: dict = dict(dest=spec.name, default=None, help=f"{spec.help} [default: {shown}]")
        if spec.type is bool:
            kw.update(type=arg_type(bool), metavar="BOOL")
        elif spec.choices:
            kw.update(type=arg_type(str, spec.choices), metavar="{" + ",".join(spec.choices) + "}")
        elif spec.type in (int, float):
            kw.update(type=arg_type(spec.type), metavar=spec.type.__name__.upper())
        elif spec.name == "budget":
            kw.update(metavar="TIME")
        parser.add_argument(*names, **kw)


def given(namespace: argparse.Namespace, cls: type) -> dict:
    """The config options the user actually gave on a command line (after ``check_parsed``)."""
    return {s.name: getattr(namespace, s.name) for s in option_specs(cls)
            if getattr(namespace, s.name, None) is not None}


LSTM_ONLY = _LSTM_ONLY    # the public name, for the API

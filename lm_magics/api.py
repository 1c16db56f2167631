"""The public Python API: ``train``, ``load`` and ``LanguageModel``.

Magics, widgets and the CLI are thin layers over exactly these calls::

    import lm_magics as lm
    model = lm.train(text, epochs=5, seed=0)
    model.next_words("the cat", k=5)        # [(word, probability), ...]
    model.generate("the cat", n_words=20, temperature=0.8, seed=0)
    model.save("cats.lm"); lm.load("cats.lm")

Scoring a column, explaining a text and comparing groups are the analysis layer's (``analysis.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

from .config import LSTM_ONLY as _LSTM_ONLY, GenerateConfig, TrainConfig, precision_override
from .engine import memory, persistence, planning, schema
from .engine.data import DataStats, fingerprint_span, prepare
from .engine.distributed import Ranks, peak_rss_mb, process_group, require_torchrun
from .engine.inference import Predictor
from .engine.model import LSTMLanguageModel, adaptive_cutoffs, build_network, network_hparams
from .engine.outcome import Finishing, divergence, diverged_error, finite_weights, worse_than_guessing
from .engine.ngram import (CopyIndex, MixPredictor, NGramModel, NGramPredictor, copy_report, default_order,
                           fit_mix_weight, stream_rows)
from .engine.novelty import NeighbourIndex
from .engine.tokenizer import EOS, Tokenizer
from .engine.planning import Plan
from .engine.training import EpochInfo, StepInfo, TrainReport, clone_model, fit, resolve_device
from .engine.unusual import CALIBRATION_ROWS, Unusualness, build_unusualness, encode_rows, rows_signals
from .errors import ConfigError, DataError

__all__ = ["LanguageModel", "train", "load"]

# An n-gram's config keeps the LSTM-only options at their defaults (kind='ngram' refuses others).
_LSTM_DEFAULTS = {k: v for k, v in TrainConfig().to_dict().items() if k in _LSTM_ONLY}
# Validation tokens used to fit the mixture weight (one LSTM pass over them; more changes nothing).
_MIX_FIT_TOKENS = 200_000


class LanguageModel:
    """A trained word-level language model with its tokenizer, settings and training record.

    ``kind`` (``config.kind``) says what predicts: ``"lstm"`` (the network ``net``), ``"ngram"`` (the
    count model ``ngram``, no network) or ``"mix"`` (both, interpolated with ``meta["mix_weight"]``).
    An LSTM usually carries its n-gram baseline in ``ngram`` too (``model.baseline``), and ``copy_index``
    holds what ``copies()`` needs (None when it was not kept or was stripped). ``unusualness`` (the
    spelling model for unseen words and the signals' calibration) and ``neighbours`` (the nearest-usual-row
    index, which holds training text: ``strip()`` drops it) make the ``unusual`` score (None in older files).
    """

    def __init__(self, net: Optional[LSTMLanguageModel], tokenizer: Tokenizer, config: TrainConfig,
                 meta: Optional[dict] = None, report: Optional[TrainReport] = None, *,
                 ngram: Optional[NGramModel] = None, copy_index: Optional[CopyIndex] = None,
                 unusualness: Optional[Unusualness] = None, neighbours: Optional[NeighbourIndex] = None):
        if not (net is None or isinstance(net, torch.nn.Module)) or not isinstance(tokenizer, Tokenizer) \
                or not isinstance(config, TrainConfig):
            raise ConfigError(f"LanguageModel(net, tokenizer, config) takes a network, a Tokenizer and a TrainConfig, "
                              f"got {type(net).__name__}, {type(tokenizer).__name__}, {type(config).__name__}; make "
                              f"models with lm.train(...) or lm.load(path).")
        self.net = net.eval() if net is not None else None
        self.tokenizer, self.config = tokenizer, config
        self.meta = dict(meta or {})
        self.report = report
        self.ngram, self.copy_index = ngram, copy_index
        self.unusualness, self.neighbours = unusualness, neighbours
        self._make_predictor()

    def _check_usable(self) -> None:
        """A model whose weights are NaN or infinite (a diverged run, kept on TrainingDiverged.model) says so
        in one line instead of failing inside torch's sampling."""
        if getattr(self, "_finite", None) is None:
            self._finite = finite_weights(self.net)
        if not self._finite:
            raise ConfigError("This model's weights are NaN or infinite (its training diverged); train it "
                              "again with a smaller lr.")

    def _make_predictor(self) -> None:
        self._finite: Optional[bool] = None       # checked on first use (_check_usable)
        kind = self.kind
        if kind == "ngram":
            self._predictor = NGramPredictor(self.ngram, self.tokenizer)
            return
        lstm = Predictor(self.net, self.tokenizer, self.config.precision, self.config.threads)
        if kind == "mix":
            self._predictor = MixPredictor(lstm, self.ngram, self.tokenizer, self.meta.get("mix_weight", 0.5))
        else:
            self._predictor = lstm

    @property
    def kind(self) -> str:
        """'lstm', 'ngram' or 'mix' (files of format 1 are all 'lstm')."""
        return self.config.kind

    @property
    def baseline(self) -> Optional["LanguageModel"]:
        """The n-gram over the same training rows and vocabulary, as a model of its own (None if the
        model has none; an n-gram model is its own baseline)."""
        if self.ngram is None:
            return None
        if self.kind == "ngram":
            return self
        cfg = TrainConfig.from_dict({**self.config.to_dict(), **_LSTM_DEFAULTS}, kind="ngram",
                                    order=self.ngram.order)
        meta = {k: self.meta.get(k) for k in ("rows", "tokens", "fingerprint", "trained_at", "seed")}
        meta["val_ppl"] = self.meta.get("baseline_val_ppl")
        return LanguageModel(None, self.tokenizer, cfg, meta, ngram=self.ngram)

    def part(self, name: str) -> Optional["LanguageModel"]:
        """One part of the model by name: 'lstm', 'ngram' (the baseline) or 'mix' (None if absent)."""
        if name == "ngram":
            return self.baseline
        if self.net is None:
            return None
        if name == "lstm":
            return self if self.kind == "lstm" else self._variant("lstm")
        if name == "mix":
            if self.ngram is None:
                return None
            return self if self.kind == "mix" else self._variant("mix")
        raise ConfigError(f"No model part {name!r}; use 'lstm', 'ngram' or 'mix'.")

    def _variant(self, kind: str) -> "LanguageModel":
        """The same network and n-gram predicting as another kind (shares weights; no copy)."""
        return LanguageModel(self.net, self.tokenizer, self.config.replace(kind=kind), self.meta, self.report,
                             ngram=self.ngram, copy_index=self.copy_index, unusualness=self.unusualness,
                             neighbours=self.neighbours)

    # --------------------------------------------------------------------------- copies

    def copies(self, text: str) -> Optional[List[dict]]:
        """Runs of text that repeat ``copy_window`` (default 8) or more consecutive tokens of one training
        row: ``[{"start", "length", "row", "text"}, ...]`` (start and length in tokens of text, row = the
        training row, numbered from 0 in the order rows were read, missing values skipped). Returns None
        when the model keeps no copy index (trained with copy_window=0, stripped, or an older file): "not
        available", which is not the same as "no copies" (``[]``).

        >>> model.copies("the cat sat on the mat and then it rained")    # doctest: +SKIP
        [{'start': 0, 'length': 10, 'row': 12, 'text': 'the cat sat on the mat and then it rained'}]
        """
        _check_text(text, "text")
        if self.copy_index is None:
            return None
        ids = self.tokenizer.encode(text)
        found = copy_report(self.copy_index, ids)
        for c in found:
            c["text"] = self.tokenizer.decode(ids[c["start"]: c["start"] + c["length"]])
        return found

    def copied(self, prefix: str, continuation: str) -> Optional[List[dict]]:
        """The copies (see :meth:`copies`) in prefix + continuation that reach into the continuation:
        what generation flags. None when the model keeps no copy index."""
        if self.copy_index is None:
            return None
        n_prefix = len(self.tokenizer.encode(prefix)) if prefix.strip() else 0
        found = self.copies(self.join_text(prefix, continuation)) or []
        return [c for c in found if c["start"] + c["length"] > n_prefix]

    def strip(self, baseline: bool = False) -> "LanguageModel":
        """Drop what holds pieces of the training rows, before sharing a model file: the copy index and the
        nearest-usual-row index (the ``knn`` signal then leaves the ``unusual`` score), and
        with ``baseline=True`` the n-gram baseline too (whose counts hold every n-gram of the rows; a
        'mix' model becomes an 'lstm'). An n-gram model is made of counts: strip keeps them. In place;
        returns the model."""
        self.copy_index = self.neighbours = None
        self.meta.pop("copy_check", None)
        if baseline and self.kind != "ngram" and self.ngram is not None:
            self.ngram = None
            self.config = self.config.replace(kind="lstm", baseline=False)
            for k in ("mix_weight", "mix_note", "baseline_val_ppl"):
                self.meta.pop(k, None)
        self._make_predictor()
        return self

    # --------------------------------------------------------------------------- predictions

    def next_words(self, prefix: str = "", k: int = 5, *, include_special: bool = False,
                   startswith: Optional[str] = None) -> List[Tuple[str, float]]:
        """The k most likely next words after prefix, as (word, probability), most likely first.

        Unseen words in the prefix count as <unk>; an empty prefix asks for the first word of a text.
        ``startswith`` keeps only words beginning with it (completing a half-typed word).

        >>> model.next_words("the cat", k=3)            # doctest: +SKIP
        [('sat', 0.31), ('is', 0.12), ('was', 0.08)]
        """
        _check_text(prefix, "prefix")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a whole number of at least 1, got {k!r}.")
        _check_flag(include_special, "include_special")
        if startswith is not None:
            _check_text(startswith, "startswith")
        self._check_usable()
        return self._predictor.next_words(prefix, int(k), include_special, startswith)

    def generate(self, prefix: str = "", n_words: int = 20, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, beam: int = 1, seed: Optional[int] = None, *,
                 repetition_penalty: float = GenerateConfig.repetition_penalty,
                 no_repeat_ngram: int = GenerateConfig.no_repeat_ngram,
                 stop_at_blank_line: bool = GenerateConfig.stop_at_blank_line,
                 stop_at_eos: bool = False, include_prefix: bool = False) -> str:
        """Continue prefix by up to n_words tokens; returns the continuation (or prefix + continuation).

        temperature 0 is greedy; top_k / top_p restrict sampling; beam > 1 returns the most likely
        continuation by beam search. A seed makes sampling repeatable. repetition_penalty,
        no_repeat_ngram and stop_at_blank_line keep the text from looping (see GenerateConfig;
        ``repetition_penalty=1, no_repeat_ngram=0, stop_at_blank_line=False`` samples the model as it is).
        """
        _check_text(prefix, "prefix")
        cfg = GenerateConfig(n_words=n_words, temperature=temperature, top_k=top_k, top_p=top_p, beam=beam,
                             seed=seed, repetition_penalty=repetition_penalty, no_repeat_ngram=no_repeat_ngram,
                             stop_at_blank_line=stop_at_blank_line)
        return self.generate_with(prefix, cfg, stop_at_eos=stop_at_eos, include_prefix=include_prefix)

    def generate_with(self, prefix: str, cfg: GenerateConfig, *, stop_at_eos: bool = False,
                      include_prefix: bool = False) -> str:
        """``generate`` with the settings in a GenerateConfig (what the magics and the CLI build)."""
        _check_generate(prefix, cfg)
        _check_flag(stop_at_eos, "stop_at_eos")
        _check_flag(include_prefix, "include_prefix")
        self._check_usable()
        ids = self._predictor.generate(prefix, cfg, stop_at_eos=stop_at_eos)
        if stop_at_eos and ids and ids[-1] == self.tokenizer.eos_id:
            ids = ids[:-1]
        text = self.tokenizer.decode(ids)
        return self.join_text(prefix, text) if include_prefix else text

    def join_text(self, prefix: str, continuation: str) -> str:
        """prefix + continuation, spaced the way decode spaces tokens ("The dog" + ", and" -> "The dog, and")."""
        _check_text(prefix, "prefix")
        _check_text(continuation, "continuation")
        if not prefix:
            return continuation
        if not continuation:
            return prefix
        return self.tokenizer.join(self._tokens_keeping_lines(prefix) + self._tokens_keeping_lines(continuation))

    def _tokens_keeping_lines(self, text: str) -> List[str]:
        toks: List[str] = []
        for i, line in enumerate(text.split("\n")):
            if i:
                toks.append(EOS)   # join() turns it back into a line break
            toks.extend(self.tokenizer.tokenize(line))
        return toks

    def iter_generate(self, prefix: str, cfg: GenerateConfig, stop_at_eos: bool = True):
        """Yield the generated tokens one at a time (for streaming into a chat bubble)."""
        _check_generate(prefix, cfg)
        self._check_usable()
        for i in self._predictor.generate(prefix, cfg, stop_at_eos=stop_at_eos):
            if i == self.tokenizer.eos_id:
                return
            yield self.tokenizer.itos[i]

    def surprisal(self, text: str) -> List[Tuple[str, float]]:
        """Per-token surprisal in bits, -log2 p(token | everything before it), for a line of text."""
        _check_text(text, "text")
        nll = self._predictor.row_nll([" ".join(text.splitlines())])[0]
        toks = [self.tokenizer.itos[i] for i in self.tokenizer.encode_line(" ".join(text.splitlines()), eos=False)]
        shown = self.tokenizer.tokenize(" ".join(text.splitlines()))
        # Show the words as written (an <unk> keeps its spelling); score them as the model saw them.
        words = shown if len(shown) == len(toks) else toks
        return [(w, float(b) / math.log(2)) for w, b in zip(words, nll[:-1])]

    def score(self, texts: Any) -> Any:
        """Per-text perplexity: a numpy array, or a Series aligned to the input's index for a Series.
        Missing values (None/NaN) get NaN. Each text is scored on its own, from the start of text."""
        return _like(texts, np.exp(self._row_mean_nll(texts)), "perplexity")

    def bits_per_word(self, texts: Any) -> Any:
        """Per-text mean surprisal in bits per token (log2 of the perplexity)."""
        return _like(texts, self._row_mean_nll(texts) / math.log(2), "bits_per_word")

    def perplexity(self, texts: Any) -> float:
        """Perplexity of all texts together (total surprisal over all tokens); a str counts line by line."""
        if isinstance(texts, str):
            texts = texts.splitlines()
        nll = [v for v in self._row_nll(texts) if v is not None]
        n = sum(len(v) for v in nll)
        if n == 0:
            raise DataError("No text to score: every value is missing.")
        return float(math.exp(sum(float(v.sum()) for v in nll) / n))

    def _row_nll(self, texts: Any) -> List[Optional[np.ndarray]]:
        if isinstance(texts, str):
            texts = [texts]
        stats = DataStats()
        values = _values_with_missing(texts, stats)
        return self._predictor.row_nll(values)

    def row_mean_nll(self, texts: Any, progress: bool = True,
                     on_chunk: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
        """Each row's mean negative log-likelihood in nats (NaN for a missing row), chunk by chunk: what the
        analysis layer's scores are made of."""
        return self._row_mean_nll(texts, progress=progress, on_chunk=on_chunk)

    def _row_mean_nll(self, texts: Any, progress: bool = True,
                      on_chunk: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
        """Mean NLL per row (float64, NaN for a missing row), chunk by chunk: memory stays flat for a
        million rows, and a progress bar appears once a run has taken more than a few seconds."""
        if isinstance(texts, str):
            texts = [texts]
        values = _values_with_missing(texts, DataStats())
        out = np.full(len(values), np.nan)
        for a, rows in _in_chunks(values, progress, on_chunk):
            out[a:a + len(rows)] = [v.mean() if v is not None else np.nan for v in self._predictor.row_nll(rows)]
        return out

    def signals(self, texts: Any, progress: bool = True,
                on_chunk: Optional[Callable[[int, int], None]] = None, sides: bool = False) -> dict:
        """Every per-row signal of the ``unusual`` score, as numpy arrays over the rows (NaN for a
        missing row): ``bits`` and ``ppl`` (the model's own mean bits per token: log2 of ``score``);
        ``max``, ``topk``, ``unseen``, ``unseen_words`` and ``ngram`` (with an n-gram baseline), where
        words the model never saw count at their novelty bits (``engine.novelty.SpellingModel``); ``knn``, ``nearest``, ``nearest_dist`` (with a neighbour
        index) and ``copied`` (with a copy index). ``sides`` (an LSTM model with an n-gram baseline): also
        ``ngram_nats`` and ``mix_nats``, each row's mean NLL under the n-gram and the mixture, from the same
        pass. Chunk by chunk: memory stays flat."""
        if isinstance(texts, str):
            texts = [texts]
        values = _values_with_missing(texts, DataStats())
        u = self.unusualness
        spelling = u.spelling if u is not None else None
        fallback = u.unk_val_bits if u is not None else 0.0
        ngram = self.ngram if self.kind != "ngram" else None
        mix_weight = float(self.meta.get("mix_weight", 0.5)) if sides and self.kind == "lstm" and ngram is not None \
            else None
        parts: List[dict] = []
        for _, chunk in _in_chunks(values, progress, on_chunk):
            encoded, spelled, novelty = encode_rows(self.tokenizer, spelling, chunk, fallback)
            parts.append(rows_signals(encoded, novelty, self.tokenizer, self._predictor.encoded_nll, ngram,
                                      self.neighbours, spelled, self.copy_index,
                                      ngram_novelty=bool(u is not None and u.ngram_novelty),
                                      mix_weight=mix_weight))
        if not parts:
            return {"bits": np.zeros(0)}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def unusual(self, texts: Any) -> Any:
        """Per-text unusualness, higher = more unusual (a Series aligned to a Series input): the calibrated
        signals combined by the model's rule (see ``lm_magics.score_frame``). NaN for a missing row; a model
        without a calibration (an older file) gives its mean surprisal in bits."""
        sig = self.signals(texts)
        cal = self.unusualness.calibration if self.unusualness is not None else None
        score = cal.combine(sig)[0] if cal is not None else sig["bits"]
        return _like(texts, score, "unusual")

    # --------------------------------------------------------------------------- info & files

    @property
    def interrupted(self) -> bool:
        """True when the last training run was interrupted (the best model so far was kept)."""
        return bool(self.report and self.report.interrupted)

    @property
    def vocab(self) -> List[str]:
        return list(self.tokenizer.itos)

    @property
    def info(self) -> dict:
        """Kind, vocabulary size, parameters, tokens seen, validation perplexity, baseline, copy check,
        where the text came from. For an n-gram model, parameters counts the stored n-grams."""
        h = self.net.hparams() if self.net is not None else {}
        ng = self.ngram
        copy = self.copy_index
        return {
            "kind": self.kind, "vocab_size": len(self.tokenizer),
            "parameters": self.net.num_parameters() if self.net is not None else ng.num_ngrams,
            "embed_dim": h.get("embed_dim"), "hidden_dim": h.get("hidden_dim"), "num_layers": h.get("num_layers"),
            "softmax": ("adaptive" if h["adaptive"] else "full") if h else None, "tie_weights": h.get("tie_weights"),
            "level": self.tokenizer.level, "lowercase": self.tokenizer.lowercase,
            **{k: self.meta.get(k) for k in ("rows", "tokens", "tokens_seen", "val_ppl", "epochs_trained",
                                            "elapsed", "seed", "fingerprint", "trained_at", "runs")},
            "order": ng.order if ng is not None else None,
            "ngrams": ng.num_ngrams if ng is not None else None,
            "baseline": (None if ng is None or self.kind == "ngram" else
                         {"order": ng.order, "ngrams": ng.num_ngrams, "val_ppl": self.meta.get("baseline_val_ppl")}),
            "mix_weight": self.meta.get("mix_weight"), "mix_note": self.meta.get("mix_note"),
            "copy_check": (None if copy is None else
                           {"window": copy.window, "windows": int(copy.hashes.size), "bytes": copy.nbytes,
                            "every": copy.every}),
            "provenance": self.meta.get("provenance"),
        }

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the model to one file (atomically: an existing file is replaced whole or not at all).

        Only a regular file is replaced (a link to one is written through); a directory, device, FIFO or
        socket, a read-only or full disk and a bad path are each a one-line ModelFileError, with the old
        file intact. A replaced file keeps its mode; a new one gets the umask's (0644 under 022)."""
        payload: dict = {"kind": self.kind, "config": self.config.to_dict(), "tokenizer": self.tokenizer.to_dict(),
                         "meta": _plain(self.meta)}
        if self.net is not None:
            payload["hparams"] = self.net.hparams()
            payload["state_dict"] = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        if self.ngram is not None:
            payload["ngram"] = self.ngram.to_dict()
        if self.copy_index is not None:
            payload["copies"] = self.copy_index.to_dict()
        if self.unusualness is not None:
            payload["unusual"] = self.unusualness.to_dict()
        if self.neighbours is not None:
            payload["neighbours"] = self.neighbours.to_dict()
        persistence.write_checkpoint(path, payload)

    def to(self, device: Union[str, torch.device]) -> "LanguageModel":
        """Move the model to a device ('cpu', 'cuda', 'cuda:N', 'mps' or 'auto')."""
        dev = resolve_device(device)           # checked for every kind, n-gram models included
        if self.net is not None:
            self.net.to(dev)
        self._make_predictor()
        return self

    def __repr__(self) -> str:
        from .display import model_text

        return model_text(self.info)

    def _repr_html_(self) -> str:
        from .display import model_html

        return model_html(self.info)


# ---------------------------------------------------------------------------------------------- train

def train(data: Any, *, val_data: Any = None, init: Optional[LanguageModel] = None,
          config: Optional[TrainConfig] = None,
          on_step: Optional[Callable[[StepInfo], None]] = None,
          on_epoch: Optional[Callable[[EpochInfo], None]] = None,
          on_plan: Optional[Callable[[Plan], None]] = None,
          on_baseline: Optional[Callable[["LanguageModel"], None]] = None,
          stream: Optional[bool] = None, cache_dir: Optional[str] = None, cache_check: str = "stat",
          distributed: bool = False, provenance: Optional[dict] = None, **options: Any) -> LanguageModel:
    """Train a language model on text and return it.

    Parameters
    ----------
    data : str, list of str, pandas/polars Series, pathlib.Path or lm.files(...)
        The text. A str is split into lines; each line, list item or Series value is one row.
    val_data : same kinds, optional
        Validation text; by default about ``val_fraction`` of the rows are held out (seeded). Given, it
        must hold at least a word (an empty one is a DataError).
    init : LanguageModel, optional
        Continue training this model: its vocabulary and network are kept (new words become <unk>,
        counted in the summary). Settings that made them (level, lowercase, min_freq, max_vocab,
        embed_dim, hidden_dim, num_layers, tie_weights, softmax, adaptive_threshold) cannot change: a
        different value is a ConfigError. The others (lr, epochs, dropout, seq_len, batch_size, ...)
        apply. ``init`` itself is never modified.
    config : TrainConfig, optional
        Base settings; ``options`` (any TrainConfig field, e.g. ``epochs=5, hidden_dim=256``) override it.
    on_step, on_epoch : callables, optional
        Progress callbacks receiving StepInfo / EpochInfo; raising StopTraining ends training early.
        ``StepInfo.eta`` is the estimated seconds of training left (None until the first steps are
        timed) and ``StepInfo.budget`` the run's time budget in seconds (None: no budget).
    on_plan : callable, optional
        Called once with the ``Plan`` (engine/planning.py) when it is fixed, after the first steps are
        timed: ``plan.describe()`` says "about 50 s, 8 epochs (1,360 steps) in a 60 s budget";
        ``plan.estimate_s``, ``plan.epochs``, ``plan.total_steps``, ``plan.reasons``. Also kept as
        ``model.report.plan``.
    on_baseline : callable, optional
        Called with the n-gram baseline as a usable LanguageModel of kind "ngram" (same tokenizer) as
        soon as it is counted, before the LSTM's first step: a front-end can answer from it while the
        LSTM trains. Not called with ``baseline=False``, for ``kind="ngram"`` or a streamed corpus.
    stream : bool, optional
        Tokenize into a memory-mapped token file (cached in ``cache_dir``, default ~/.cache/lm_magics)
        and train from it without holding the text in memory. Default: on for files of 256 MB or more,
        and for files in a distributed run.
    cache_check : "stat" or "hash"
        How a streamed file source finds its cache entry: from the files' sizes and modification times
        without reading them (default), or by re-reading them and comparing a content hash.
    distributed : bool
        Inside torchrun: train with DistributedDataParallel, each process on its shard of the token
        stream; every rank returns the same model (save it on rank 0 only, ``model.meta["ddp"]``).
        A streamed corpus is prepared before the ranks join: the first rank to take the cache's file
        lock builds the token files and the vocabulary, the others wait and then load both from the cache.
    provenance : dict, optional
        Where the text came from, as front-ends know it (``{"dataframe": "df", "column": "text", "where":
        ...}``, ``{"cell": True}``); files, the model continued from and the package version are added
        here. Kept in ``model.meta["provenance"]`` and shown by ``%lm_info``.

    The time budget (``budget``, a TrainConfig option): ``"auto"`` gives a run without ``epochs`` or
    ``max_steps`` about a minute for a column of 300k tokens (less for less text); ``budget="10m"`` or
    ``600`` gives more, ``budget=None`` trains to convergence. The budget covers the whole call; the
    steps that fit it are planned once the first steps are timed, and the run ends at it with its best
    weights (``model.report.stop_reason == "budget"``). The summary says what the budget bought and
    what more time would likely give (``model.report.outlook``).

    ``kind="ngram"`` counts an interpolated modified Kneser-Ney n-gram instead (seconds, no network);
    ``kind="mix"`` trains the LSTM and interpolates it with its n-gram. An LSTM keeps an n-gram over
    the same rows as its baseline unless ``baseline=False``, and a copy index unless ``copy_window=0``.

    Returns the trained LanguageModel; ``model.report`` tells what happened. A KeyboardInterrupt (or
    StopTraining) after the first step, in the loop or in any phase after it (restoring the best weights,
    the n-gram baseline, the mixture weight, the copy index), ends training and returns the best model so
    far with ``model.interrupted`` set (the phases not finished are left out and named in a note); one
    before the first step propagates (nothing was trained).

    A run that diverged raises ``TrainingDiverged`` (an LMError) instead of returning: its loss or weights
    stopped being finite numbers, or its best validation perplexity is far worse than guessing (above
    twice the vocabulary size; a run just above it is kept, with a note). The message says what to change (a smaller lr); the useless model is on the
    exception as ``exc.model``, for inspection only.

    >>> model = lm.train("the cat sat on the mat.\\nthe dog sat on the log.", epochs=2, seed=0)  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    if init is not None and not isinstance(init, LanguageModel):
        raise ConfigError(f"init must be a LanguageModel (from lm.train or lm.load), got {type(init).__name__}.")
    if init is not None:
        _check_continuable(init, options.get("kind"))
    if config is not None and not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig (lm.TrainConfig(epochs=5, ...)), got {type(config).__name__}; "
                          f"or pass the options as keywords.")
    for fn, what in ((on_step, "on_step"), (on_epoch, "on_epoch"), (on_plan, "on_plan"),
                     (on_baseline, "on_baseline")):
        if fn is not None and not callable(fn):
            raise ConfigError(f"{what} must be a function (or None), got {type(fn).__name__}.")
    if stream is not None:
        _check_flag(stream, "stream")
    if cache_dir is not None:
        _check_path(cache_dir, "cache_dir")
    if init is not None:
        cfg = continue_config(init, config, **options)
        tokenizer = Tokenizer.from_dict(init.tokenizer.to_dict())  # fitted: the vocabulary is kept
    else:
        cfg = (config or TrainConfig()).replace(**options)
        tokenizer = Tokenizer(cfg.level, cfg.lowercase, cfg.min_freq, cfg.max_vocab)
    precision_override()   # a bad $LM_MAGICS_PRECISION is reported before any work
    if distributed and init is not None:
        raise ConfigError("Continuing a model is not supported under torchrun; continue it in one process "
                          "(drop --nproc), or train a new model with several.")
    if distributed and cfg.kind == "ngram":
        raise ConfigError("An n-gram model counts in one process (a million tokens take seconds); drop --nproc.")
    prov = _provenance(data, init, provenance)
    if not distributed and cfg.kind != "ngram":
        # An unknown or absent device, and a hopeless size, fail before the data is read.
        _check_memory(cfg, max(4, len(tokenizer)), init, 0, resolve_device(cfg.device),
                      init.net.adaptive if init is not None else None)
    if distributed:
        require_torchrun()
    from .engine.streaming import prepare_stream, should_stream

    # Prepared before joining the process group: a cache build of many minutes must not run inside the
    # group's collective timeout (the ranks that wait, wait on the cache's file lock instead).
    if should_stream(data, stream, distributed):
        corpus = prepare_stream(data, tokenizer, val_source=val_data, val_fraction=cfg.val_fraction,
                                seed=cfg.seed, cache_dir=cache_dir, cache_check=cache_check)
    else:
        corpus = prepare(data, tokenizer, val_source=val_data, val_fraction=cfg.val_fraction, seed=cfg.seed)
    group = process_group(cfg.device) if distributed else contextlib.nullcontext((Ranks(), None))
    with group as (ranks, device):
        device = device or resolve_device(cfg.device)
        # Same ids and the same vocabulary on every rank (each node may have built its own cache).
        vocab = hashlib.blake2b("\n".join(tokenizer.itos).encode(), digest_size=8).hexdigest() \
            if ranks.distributed else ""
        if len(set(ranks.gather((corpus.fingerprint, vocab)))) != 1:
            raise DataError("The ranks read different text (token fingerprints differ); give every node the "
                            "same files.")
        notes = list(corpus.stats.notes)
        if corpus.train.size - corpus.stats.train_rows <= 0 and corpus.train.size < 2:
            raise DataError("Too little text to train on; give at least a sentence or two.")
        if ranks.distributed and corpus.train.size // ranks.world < 2:   # every rank sees the same sizes
            raise DataError(f"Too little text for {ranks.world} processes: {corpus.train.size:,} training "
                            f"token(s) leave each fewer than 2; give more text, or train in one process "
                            f"(drop --nproc).")

        if cfg.kind == "ngram":
            return _train_ngram(corpus, tokenizer, cfg, notes, t_start, prov)

        # ---- the plan: sizes now, steps once the first ones are timed (engine/planning.py)
        V = len(tokenizer)
        n_tokens, shard = corpus.stats.train_tokens, int(corpus.train.size // ranks.world)
        first = planning.plan(cfg, n_tokens, V, shard_tokens=shard, distributed=ranks.distributed)
        asked, cfg = cfg.replace(budget=first.budget_s), first.config
        hparams, _ = network_hparams(cfg, V)
        adaptive = init.net.adaptive if init is not None else hparams["adaptive"]
        # Every size is known now: refuse in one line what cannot fit, before anything big is allocated.
        # Ranks on one machine share its memory; they refuse together, so none is left waiting.
        shard_tokens = 0 if isinstance(corpus.train, np.memmap) else shard
        try:
            _check_memory(cfg, V, init, shard_tokens, device, adaptive,
                          processes=ranks.local_world if device.type == "cpu" else 1)
            refusal = ""
        except ConfigError as exc:
            refusal = str(exc)
        refusals = [r for r in ranks.gather(refusal) if r]
        if refusals:
            raise ConfigError(refusals[0])

        # ---- the n-gram baseline and the copy index first: seconds, and usable while the LSTM trains
        if isinstance(corpus.train, np.memmap) and cfg.kind == "lstm" and (cfg.baseline or cfg.copy_window):
            # Both hold every n-gram / token run of the training stream in memory, on every rank: not for a
            # corpus that was streamed because it does not fit.
            cfg = cfg.replace(baseline=False, copy_window=0)
            notes.append("streamed corpus: no n-gram baseline and no copy index (both would hold the "
                         "whole corpus in memory)")
        ngram, baseline_val_ppl = _count_baseline(tokenizer, corpus, cfg) if cfg.baseline else (None, None)
        if ngram is not None and on_baseline is not None:
            on_baseline(_ngram_part(tokenizer, cfg, ngram, corpus, baseline_val_ppl, prov))
        copy_index = _copy_index(corpus, cfg)

        if init is not None:
            net = clone_model(init.net)
            net.drop.p = cfg.dropout
            net.lstm.dropout = cfg.dropout if net.num_layers > 1 else 0.0
            unk = corpus.stats.unk_tokens
            notes.append(f"continued from a model trained on {init.meta.get('tokens_seen', 0):,} tokens; kept "
                         f"its vocabulary of {len(tokenizer):,} words"
                         + (f" ({unk:,} new-word tokens became <unk>)" if unk else ""))
        else:
            net = build_network(hparams, seed=cfg.seed)   # the same initial weights on every rank
        if ranks.distributed:
            notes.append(f"DistributedDataParallel: {ranks.world} processes ({ranks.backend}), "
                         f"{corpus.train.size // ranks.world:,} tokens each")

        report = TrainReport(config=cfg, notes=first.reasons + notes, plan=first)
        val_tokens = int(ranks.val_shard(corpus.val).size if ranks.distributed else corpus.val.size)

        def replan(step_s: float, val_s: Optional[float], done: int) -> Tuple[int, Optional[float]]:
            """The steps that fit the budget now that a step (and maybe a validation) has been timed."""
            after = _after_training_s(cfg, corpus, step_s)
            p = planning.plan(asked, n_tokens, V, shard_tokens=shard, distributed=ranks.distributed,
                              step_s=step_s, spent_s=time.perf_counter() - t_start, after_s=after, val_s=val_s,
                              done_steps=done, val_tokens=val_tokens)
            told = report.plan is not first
            report.plan = p
            if not told and on_plan is not None:
                on_plan(p)
            if p.budget_s is None:
                return p.total_steps, None, None
            val_each = val_s if val_s is not None else planning.val_seconds(val_tokens, p.config, step_s)
            now = time.perf_counter()
            # The planned steps end by the deadline; only the fewest a run takes (a budget spent before
            # training) may pass it. p.config may change the optimizer and dropout (few epochs fit).
            return (p.total_steps, max(t_start + p.budget_s - after - val_each, now + (p.total_steps - done) * step_s),
                    p.config)

        report = fit(net, corpus, cfg, on_step=on_step, on_epoch=on_epoch, report=report, ranks=ranks,
                     device=device, replan=replan, budget=first.budget_s)
        if report.plan is first and on_plan is not None:
            on_plan(first)            # a run too short to time: the plan it had
        shards = ranks.gather(_shard_record(ranks, corpus, report)) if ranks.distributed else None
    # From here to the return, a Ctrl-C keeps the trained run (as an interrupted one) whatever phase it
    # cuts short; a diverged run is never returned (outcome.py has both rules). The n-gram baseline and the
    # copy index were built before the first step; only the mixture weight is left.
    fin = Finishing(report)
    net = fin.run("moving it to the CPU", net.cpu, net)
    why = divergence(report, net, len(tokenizer))
    if why is not None:
        error = diverged_error(why, cfg)
        error.model = LanguageModel(net, tokenizer, cfg, {"val_ppl": report.best_val_ppl, "diverged": why}, report)
        raise error
    note = worse_than_guessing(report, len(tokenizer))
    if note:
        report.notes.append(note)
    unfitted = {"mix_weight": 0.5, "mix_note": "Ctrl-C before the weight was fitted: a fixed weight of 0.5",
                **({"baseline_val_ppl": baseline_val_ppl} if baseline_val_ppl is not None else {})}
    extra = fin.run("the mixture weight",
                    lambda: _mix_weight(net, tokenizer, corpus, cfg, report, ngram, baseline_val_ppl),
                    unfitted) if ngram is not None else {}
    if report.plan is not None:
        # The epochs the plan gave (the budget's, or all), and the optimizer and dropout the run ended with.
        ran = report.config
        cfg = cfg.replace(epochs=report.plan.epochs, optimizer=ran.optimizer, lr=ran.lr, grad_clip=ran.grad_clip,
                          dropout=ran.dropout)
    report.config = cfg
    report.outlook = planning.outlook(report.history, report.elapsed, report.plan)
    report.notes += planning.summary_lines(report.plan, report.steps, report.tokens_seen, len(report.history),
                                           report.stop_reason, report.outlook)
    prev = init.meta if init is not None else {}
    meta = {
        "rows": corpus.stats.rows, "missing": corpus.stats.missing, "tokens": corpus.stats.train_tokens,
        "val_tokens": corpus.stats.val_tokens, "unk_tokens": corpus.stats.unk_tokens,
        "tokens_seen": int(prev.get("tokens_seen", 0)) + report.tokens_seen,
        "epochs_trained": int(prev.get("epochs_trained", 0)) + len(report.history),
        "val_ppl": report.best_val_ppl, "seed": cfg.seed, "fingerprint": corpus.fingerprint,
        "elapsed": round(time.perf_counter() - t_start, 3), "train_elapsed": round(report.elapsed, 3),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": int(prev.get("runs", 0)) + 1,
        "interrupted": report.interrupted, "precision": report.precision, "threads": report.threads,
        "budget_s": report.plan.budget_s if report.plan is not None else None,
        "history": [[e.epoch, e.train_loss, e.val_ppl] for e in report.history],
    }
    if shards is not None:
        meta["ddp"] = {"world_size": ranks.world, "backend": ranks.backend, "shards": shards}
    meta.update(extra, provenance=prov)
    model = LanguageModel(net, tokenizer, cfg, meta, report, ngram=ngram, copy_index=copy_index)
    fin.run("the unusual score's calibration", lambda: _add_unusualness(model, corpus), None)
    fin.note()
    return model


def _train_ngram(corpus: Any, tokenizer: Tokenizer, cfg: TrainConfig, notes: List[str], t_start: float,
                 prov: dict) -> LanguageModel:
    """kind='ngram': count the training stream; validation perplexity from the held-out rows."""
    t0 = time.perf_counter()
    order = cfg.order or default_order(corpus.stats.train_tokens)
    why = [] if cfg.order else [f"order {order} chosen for {corpus.stats.train_tokens:,} training tokens"]
    ng = NGramModel.fit(corpus.train, len(tokenizer), tokenizer.eos_id, order)
    val_ppl = float(np.exp(ng.stream_nll(corpus.val).mean())) if corpus.val.size else None
    elapsed = time.perf_counter() - t0
    cfg = cfg.replace(order=order)
    report = TrainReport(config=cfg, notes=why + notes, tokens_seen=int(corpus.train.size), elapsed=elapsed,
                         best_val_ppl=val_ppl, stop_reason="counted")
    meta = {
        "rows": corpus.stats.rows, "missing": corpus.stats.missing, "tokens": corpus.stats.train_tokens,
        "val_tokens": corpus.stats.val_tokens, "unk_tokens": corpus.stats.unk_tokens,
        "tokens_seen": int(corpus.train.size), "epochs_trained": 0, "val_ppl": val_ppl, "seed": cfg.seed,
        "fingerprint": corpus.fingerprint, "elapsed": round(time.perf_counter() - t_start, 3),
        "train_elapsed": round(elapsed, 3), "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": 1,
        "interrupted": False, "provenance": prov,
    }
    model = LanguageModel(None, tokenizer, cfg, meta, report, ngram=ng, copy_index=_copy_index(corpus, cfg))
    _add_unusualness(model, corpus)
    return model


def _count_baseline(tokenizer: Tokenizer, corpus: Any, cfg: TrainConfig) -> Tuple[NGramModel, Optional[float]]:
    """The n-gram over the LSTM's own training stream, and its validation perplexity (None without
    validation rows)."""
    order = cfg.order or default_order(corpus.stats.train_tokens)
    ng = NGramModel.fit(corpus.train, len(tokenizer), tokenizer.eos_id, order)
    val_ppl = float(np.exp(ng.stream_nll(corpus.val).mean())) if corpus.val.size else None
    return ng, val_ppl


def _ngram_part(tokenizer: Tokenizer, cfg: TrainConfig, ngram: NGramModel, corpus: Any,
                val_ppl: Optional[float], prov: dict) -> LanguageModel:
    """The baseline as a model of its own (what ``model.baseline`` returns), for ``on_baseline``."""
    ng_cfg = TrainConfig.from_dict({**cfg.to_dict(), **_LSTM_DEFAULTS}, kind="ngram", order=ngram.order)
    meta = {"rows": corpus.stats.rows, "tokens": corpus.stats.train_tokens, "fingerprint": corpus.fingerprint,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "seed": cfg.seed, "val_ppl": val_ppl,
            "provenance": prov}
    return LanguageModel(None, tokenizer, ng_cfg, meta, ngram=ngram)


def _after_training_s(cfg: TrainConfig, corpus: Any, step_s: float) -> float:
    """Seconds the call is expected to take after the training loop (for the budget): the mixture weight's
    LSTM pass over up to _MIX_FIT_TOKENS validation tokens, priced from the step time, and a margin for the
    rest (restoring the best weights, the model object)."""
    mix = 0.0
    if cfg.baseline and corpus.val.size > 0 and corpus.val is not corpus.train:
        mix = planning.val_seconds(min(int(corpus.val.size), _MIX_FIT_TOKENS), cfg, step_s)
    # The unusual score's calibration scores up to CALIBRATION_ROWS validation rows with the LSTM.
    row_tokens = corpus.stats.train_tokens / max(1, corpus.stats.train_rows)
    calib = planning.val_seconds(int(min(corpus.val.size, CALIBRATION_ROWS * row_tokens)), cfg, step_s)
    return mix + calib + 0.3


def _mix_weight(net: LSTMLanguageModel, tokenizer: Tokenizer, corpus: Any, cfg: TrainConfig,
                report: TrainReport, ng: NGramModel, baseline_val_ppl: Optional[float]) -> dict:
    """The mixture weight of the LSTM and its n-gram, fitted on validation rows (with the baseline's
    validation perplexity, for meta)."""
    extra: dict = {}
    held_out = corpus.val.size > 0 and corpus.val is not corpus.train
    if baseline_val_ppl is not None:
        extra["baseline_val_ppl"] = baseline_val_ppl
    if held_out:
        rows = stream_rows(np.asarray(corpus.val[:_MIX_FIT_TOKENS]), tokenizer.eos_id)
        lstm = np.concatenate(Predictor(net, tokenizer, cfg.precision, cfg.threads).encoded_nll([r.tolist() for r in rows]))
        ngram = np.concatenate(ng.rows_nll([r.tolist() for r in rows]))
        extra["mix_weight"] = fit_mix_weight(lstm, ngram)
        extra["mix_note"] = f"weight fitted on {lstm.size:,} validation tokens"
    else:
        extra["mix_weight"] = 0.5
        extra["mix_note"] = "no held-out validation rows: a fixed weight of 0.5"
    if cfg.kind == "mix":
        report.notes.append(f"mixture: LSTM weight {extra['mix_weight']:.2f} ({extra['mix_note']})")
    return extra


def _add_unusualness(model: LanguageModel, corpus: Any) -> None:
    """The unusual score's parts (engine.unusual.build_unusualness): the spelling model for unseen words, the
    nearest-usual-row index and each signal's calibration on the validation rows. A second or so."""
    held_out = corpus.val.size > 0 and corpus.val is not corpus.train
    u, index, notes = build_unusualness(model.tokenizer, corpus.train, corpus.val, corpus.train_row_numbers,
                                        model._predictor.encoded_nll, model.ngram if model.kind != "ngram" else None,
                                        model.copy_index, model.config.seed, held_out)
    model.unusualness, model.neighbours = u, index
    if model.report is not None:
        model.report.notes.extend(notes)


def _copy_index(corpus: Any, cfg: TrainConfig) -> Optional[CopyIndex]:
    """Hashes of the training rows' token runs (None with copy_window=0)."""
    if not cfg.copy_window:
        return None
    eos = corpus.tokenizer.eos_id
    rows = [r[:-1] if len(r) and r[-1] == eos else r for r in stream_rows(np.asarray(corpus.train), eos)]
    numbers = corpus.train_row_numbers
    if numbers is None or len(numbers) != len(rows):
        numbers = np.arange(len(rows))
    return CopyIndex.build(rows, numbers, cfg.copy_window)


def _provenance(data: Any, init: Optional[LanguageModel], given_by_caller: Optional[dict]) -> dict:
    """Where the text came from: the caller's description, files with sizes and mtimes, the model
    continued from, and the package version."""
    from importlib import metadata

    from .engine.data import Files, files

    try:   # the installed distribution's version (importing the package's __version__ would be a cycle)
        version = metadata.version("lm-magics")
    except metadata.PackageNotFoundError:
        version = "unknown"
    prov: dict = {"package": f"lm_magics {version}"}
    prov.update(given_by_caller or {})
    if isinstance(data, (Files, os.PathLike)):
        paths = (data if isinstance(data, Files) else files(data)).paths()   # a missing file: DataError
        prov["files"] = [{"path": os.path.abspath(p), "bytes": os.path.getsize(p),
                          "mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(os.path.getmtime(p)))}
                         for p in paths[:100]]
        if len(paths) > 100:
            prov["files_not_listed"] = len(paths) - 100
    elif "source" not in prov:
        name = getattr(data, "name", None)
        prov["source"] = ("text" if isinstance(data, str) else
                          f"Series {name!r}" if hasattr(data, "dtype") else type(data).__name__)
    if init is not None:
        prov["continued_from"] = {k: init.meta.get(k) for k in ("fingerprint", "trained_at", "tokens_seen")}
        if init.meta.get("provenance"):
            prov["continued_from"]["provenance"] = init.meta["provenance"]
    return prov


def _shard_record(ranks: Ranks, corpus: Any, report: TrainReport) -> dict:
    """What one rank trained on, for ``meta['ddp']``: its slice of the token stream and its loss."""
    start, stop = ranks.shard_bounds(corpus.train.size)
    return {"rank": ranks.rank, "start": int(start), "stop": int(stop),
            "fingerprint": fingerprint_span(corpus.train, start, stop),
            "first_loss": report.losses[0] if report.losses else None,
            "last_loss": report.losses[-1] if report.losses else None,
            "streamed": isinstance(corpus.train, np.memmap), "peak_rss_mb": peak_rss_mb()}


def _check_memory(cfg: TrainConfig, V: int, init: Optional[LanguageModel], tokens: int, device: torch.device,
                  adaptive: Optional[bool] = None, processes: int = 1) -> None:
    """Refuse a run whose estimated memory does not fit. Sizes still left to the data count at their
    smallest (the smallest of auto_config's tiers), so the check can run before the data is read."""
    memory.check_training(memory.training_estimate(
        V, cfg.embed_dim or 128, cfg.hidden_dim or 200, cfg.num_layers or 1, cfg.tie_weights,
        _adaptive(cfg, V) if adaptive is None else adaptive, cfg.batch_size or 1, cfg.seq_len, cfg.optimizer,
        keep_original=init is not None, tokens=tokens), device, processes=processes)


def _adaptive(cfg: TrainConfig, vocab_size: int) -> bool:
    """Whether cfg's softmax setting gives an adaptive output layer for this vocabulary size."""
    return network_hparams(cfg, vocab_size)[0]["adaptive"]


# Settings that made a model's vocabulary and network: continuing it cannot change them.
FIXED_WHEN_CONTINUING = ("level", "lowercase", "min_freq", "max_vocab", "embed_dim", "hidden_dim", "num_layers",
                         "tie_weights", "softmax", "adaptive_threshold")


def _check_continuable(init: Any, kind: Any = None) -> None:
    """The one check of what can be continued, for lm.train(init=...) and every front-end's --continue."""
    if not isinstance(init, LanguageModel):
        raise ConfigError(f"init must be a LanguageModel (from lm.train or lm.load), got {type(init).__name__}.")
    if init.kind == "ngram" or init.net is None or kind == "ngram":
        raise ConfigError("An n-gram model cannot be continued; train a new one on all the text "
                          "(it takes seconds).")


def continue_config(init: LanguageModel, config: Optional[TrainConfig] = None, **options: Any) -> TrainConfig:
    """The settings for training ``init`` further: its structural settings, then the given ones that apply.

    The structural settings (FIXED_WHEN_CONTINUING) come from the model itself (its tokenizer and network,
    so the result tells the truth even for a file whose config did not); a given value that differs is a
    one-line ConfigError. The data-sized settings (batch_size, epochs, optimizer, lr, grad_clip, max_steps,
    max_time, budget) are chosen afresh for the new text unless given; the rest (dropout, seq_len, seed, ...) are the model's
    unless given. ``config``'s fields that differ from TrainConfig's defaults count as given.
    """
    _check_continuable(init, options.get("kind"))
    given_cfg = {}
    if config is not None:
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}.")
        default = TrainConfig().to_dict()
        given_cfg = {k: v for k, v in config.to_dict().items() if v != default[k]}
    TrainConfig.from_dict({}, **options)          # names and values checked first, with the usual messages
    wanted = {**given_cfg, **options}
    tok, h = init.tokenizer, init.net.hparams()
    V = len(tok)
    old = {"level": tok.level, "lowercase": tok.lowercase, "min_freq": tok.min_freq, "max_vocab": tok.max_vocab,
           "embed_dim": h["embed_dim"], "hidden_dim": h["hidden_dim"], "num_layers": h["num_layers"],
           "tie_weights": init.config.tie_weights, "softmax": init.config.softmax,
           "adaptive_threshold": init.config.adaptive_threshold}
    probe = TrainConfig.from_dict(init.config.to_dict(), **{k: wanted[k] for k in ("softmax", "adaptive_threshold")
                                                              if k in wanted})
    conflicts = []
    for key in FIXED_WHEN_CONTINUING:
        if key not in wanted or wanted[key] == old[key]:
            continue
        if key == "tie_weights" and (wanted[key] and not init.net.adaptive) == init.net.tied:
            continue      # the same network either way (an adaptive output layer is never tied)
        if key in ("softmax", "adaptive_threshold") and _adaptive(probe, V) == init.net.adaptive:
            continue      # resolves to the output layer the model has
        shown = "adaptive" if key == "softmax" and init.net.adaptive else (
            "full" if key == "softmax" else old[key])
        conflicts.append(f"{key}={wanted[key]!r} (the model has {shown!r})")
    if conflicts:
        raise ConfigError(f"Continuing a model keeps its vocabulary and network, so {', '.join(conflicts)} "
                          f"cannot apply; leave {'it' if len(conflicts) == 1 else 'them'} out, or train a new "
                          f"model instead.")
    base = init.config.to_dict()
    base.update(batch_size=None, epochs=None, lr=None, max_steps=None, max_time=None, optimizer="auto",
                grad_clip=None, budget="auto")
    base.update({k: v for k, v in wanted.items() if k not in FIXED_WHEN_CONTINUING})
    base.update({k: old[k] for k in FIXED_WHEN_CONTINUING})
    return TrainConfig.from_dict(base)


# ---------------------------------------------------------------------------------------------- load

def load(path: Union[str, "os.PathLike[str]"], device: str = "cpu") -> LanguageModel:
    """Load a model saved with ``model.save(path)``. Never runs code from the file.

    The sizes the file declares are checked against the tensors it holds (and its vocabulary) before
    the network is built, so a small crafted file cannot make this allocate gigabytes.
    """
    from .errors import ModelFileError

    resolve_device(device)      # a bad device name fails before the file is read
    ckpt = persistence.read_checkpoint(path)
    shown = persistence.shown_path(path if isinstance(path, (str, os.PathLike)) else str(path))

    def damaged(exc: BaseException) -> ModelFileError:
        why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return ModelFileError(f"{shown} is damaged: {why}. Save the model again.")

    try:
        kind = ckpt["kind"]
        # Field by field, before anything is built from the file (engine/schema.py): nothing that loads
        # can fail later in a table, a summary or a generation.
        schema.check_tokenizer(ckpt["tokenizer"])
        schema.check_meta(ckpt["meta"])
        schema.check_tensors(ckpt.get("state_dict"))
        schema.check_tensors(ckpt.get("ngram"), "n-gram tables")
        tok = Tokenizer.from_dict(ckpt["tokenizer"])
        net = ngram = copy_index = None
        h = ckpt.get("hparams")
        n_params = _check_declared_sizes(h, ckpt["state_dict"], len(tok)) if kind != "ngram" else 0
        if isinstance(ckpt.get("ngram"), dict):
            declared = ckpt["ngram"].get("vocab_size")
            if declared != len(tok):     # compared before anything of that size is allocated
                raise ValueError(f"its vocabulary has {len(tok):,} words but its n-gram declares "
                                 f"{memory.fmt_count(declared) if isinstance(declared, int) else repr(declared)}")
            ngram = NGramModel.from_dict(ckpt["ngram"])   # checks shapes, ranges and key order
            if ngram.vocab_size != len(tok) or ngram.eos_id != tok.eos_id:
                raise ValueError(f"its vocabulary has {len(tok):,} words but its n-gram counts "
                                 f"{ngram.vocab_size:,}")
        if isinstance(ckpt.get("copies"), dict):
            copy_index = CopyIndex.from_dict(ckpt["copies"])
        unusualness, neighbours = _unusual_fields(ckpt, tok)
        cfg = TrainConfig.from_dict(ckpt["config"], kind=kind)
    except Exception as exc:
        raise damaged(exc) from None
    if kind != "ngram":
        # The file's tensors are in memory already; building the network takes as much again.
        memory.check(4 * n_params, f"Loading {shown} ({memory.fmt_count(n_params)} parameters)",
                     "load it where more memory is free", error=ModelFileError)
        try:
            net = build_network(h)
            net.load_state_dict(ckpt["state_dict"])
            # The config tells what the network and vocabulary are (a file written by an older version
            # after `--continue` could claim otherwise).
            cfg = cfg.replace(level=tok.level, lowercase=tok.lowercase, min_freq=tok.min_freq,
                              max_vocab=tok.max_vocab, embed_dim=net.embed_dim, hidden_dim=net.hidden_dim,
                              num_layers=net.num_layers)
        except Exception as exc:
            raise damaged(exc) from None
    else:
        cfg = cfg.replace(level=tok.level, lowercase=tok.lowercase, min_freq=tok.min_freq, max_vocab=tok.max_vocab)
    model = LanguageModel(net, tok, cfg, ckpt["meta"], ngram=ngram, copy_index=copy_index, unusualness=unusualness,
                          neighbours=neighbours)
    return model.to(device) if device != "cpu" else model


def _unusual_fields(ckpt: dict, tok: Tokenizer) -> Tuple[Optional[Unusualness], Optional[NeighbourIndex]]:
    """The unusual score's fields of a model file, each checked (Unusualness.from_dict and
    NeighbourIndex.from_dict check types, finiteness and sizes; a ValueError names the bad field). A file
    without them (older ones) loads without them."""
    raw_u, raw_n = ckpt.get("unusual"), ckpt.get("neighbours")
    if raw_u is not None and not isinstance(raw_u, dict):
        raise ValueError("its unusualness field is not a table")
    if raw_n is not None and not isinstance(raw_n, dict):
        raise ValueError("its neighbour index is not a table")
    return (None if raw_u is None else Unusualness.from_dict(raw_u),
            None if raw_n is None else NeighbourIndex.from_dict(raw_n))


def _check_declared_sizes(h: dict, state_dict: dict, n_words: int) -> int:
    """Check the sizes a file declares against the tensors it holds; return the parameter count.

    Raises ValueError naming the first disagreement. Cheap: compares shapes, allocates nothing (the
    reference network is built on torch's "meta" device, which has shapes and no storage)."""
    sizes = {k: h.get(k) for k in ("vocab_size", "embed_dim", "hidden_dim", "num_layers")}
    for key, value in sizes.items():
        if type(value) is not int or value < 1:
            raise ValueError(f"it declares {key}={value!r}")
    if not isinstance(h.get("head_bias", False), bool):
        raise ValueError(f"it declares head_bias={h.get('head_bias')!r}")
    for key in ("tie_weights", "adaptive"):
        if not isinstance(h.get(key), bool):
            raise ValueError(f"it declares {key}={h.get(key)!r}")
    V, E, H, L = sizes["vocab_size"], sizes["embed_dim"], sizes["hidden_dim"], sizes["num_layers"]
    if n_words != V:
        raise ValueError(f"its vocabulary has {n_words:,} words but its settings declare vocab_size={V:,}")
    if not isinstance(state_dict, dict) or not all(isinstance(t, torch.Tensor) for t in state_dict.values()):
        raise ValueError("its weights are not all tensors")
    shapes = {str(k): tuple(t.shape) for k, t in state_dict.items()}
    if shapes.get("embed.weight") != (V, E):
        raise ValueError(f"its settings declare a {V:,} x {E:,} embedding but it holds "
                         f"{shapes.get('embed.weight', 'none')}")
    layers = sum(1 for k in shapes if k.startswith("lstm.weight_ih_l") and k[16:].isdigit())
    if layers != L or shapes.get("lstm.weight_hh_l0") != (4 * H, H):
        raise ValueError(f"its settings declare {L} LSTM layer(s) of {H:,} units but it holds {layers} layer(s) "
                         f"with weight_hh_l0 {shapes.get('lstm.weight_hh_l0', 'missing')}")
    cutoffs = h.get("cutoffs") or (adaptive_cutoffs(V) if h["adaptive"] else [])
    tails = sum(1 for k in shapes if k.startswith("head.tail.") and k.endswith(".0.weight"))
    if not isinstance(cutoffs, (list, tuple)) or len(cutoffs) != (tails if h["adaptive"] else 0):
        raise ValueError(f"its settings declare cut-offs {cutoffs!r} for {tails} tail cluster(s)")
    # Every declared size now matches a tensor of the file, so the reference network is no bigger than
    # the file: build it without storage and compare every shape.
    with torch.device("meta"):
        ref = LSTMLanguageModel(V, E, H, L, 0.0, h["tie_weights"], h["adaptive"], list(cutoffs) or None,
                                bool(h.get("head_bias", False)))
    expected = {k: tuple(t.shape) for k, t in ref.state_dict().items()}
    for k in sorted(expected.keys() | shapes.keys()):
        if expected.get(k) != shapes.get(k):
            raise ValueError(f"weights {k!r} have shape {shapes.get(k, 'missing')} where its settings need "
                             f"{expected.get(k, 'none')}")
    return ref.num_parameters()


# ---------------------------------------------------------------------------------------------- helpers

def _check_text(s: Any, what: str) -> None:
    if not isinstance(s, str):
        raise DataError(f"{what} must be text (str), got {type(s).__name__}.")


def _check_model(model: Any) -> None:
    if not isinstance(model, LanguageModel):
        raise ConfigError(f"model must be a LanguageModel (from lm.train or lm.load), got {type(model).__name__}.")


def _check_flag(v: Any, what: str) -> None:
    if not isinstance(v, (bool, np.bool_)):
        raise ConfigError(f"{what} must be True or False, got {type(v).__name__}.")


def _check_path(path: Any, what: str = "path") -> None:
    if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes) or not os.fspath(path):
        raise ConfigError(f"{what} must be a path (str or pathlib.Path), got "
                          f"{repr(path) if isinstance(path, str) else type(path).__name__}.")


def _check_generate(prefix: Any, cfg: Any) -> None:
    _check_text(prefix, "prefix")
    if not isinstance(cfg, GenerateConfig):
        raise ConfigError(f"cfg must be a GenerateConfig (lm.GenerateConfig(n_words=20, ...)), got "
                          f"{type(cfg).__name__}; or call generate() with keywords.")


def _values_with_missing(texts: Any, stats: DataStats) -> List[Optional[str]]:
    """Rows of a scoring input with missing values kept in place as None (to align the output)."""
    from .engine.data import is_missing as _is_missing, series_values as _series_values

    vals = _series_values(texts)
    if vals is None:
        if hasattr(texts, "columns"):
            raise DataError("Got a whole DataFrame; pass one text column, e.g. df['text'].")
        if isinstance(texts, bytes) or not isinstance(texts, Iterable):
            raise DataError(f"Cannot score a {type(texts).__name__}; pass a str, a list of str or a Series.")
        vals = list(texts)
    return [None if _is_missing(v) else (v if isinstance(v, str) else str(v)) for v in vals]


_SCORE_CHUNK_ROWS = 20_000   # rows per scoring chunk: a few seconds of work, bounded memory


def _in_chunks(values: List[Optional[str]], progress: bool,
               on_chunk: Optional[Callable[[int, int], None]]) -> Iterator[Tuple[int, List[Optional[str]]]]:
    """(start, rows) in chunks of _SCORE_CHUNK_ROWS, so memory stays flat for a million rows: a progress bar
    for a long run, and ``on_chunk(rows done, rows in all)`` after each chunk (it may raise to stop)."""
    bar = _score_bar(len(values)) if progress and len(values) > _SCORE_CHUNK_ROWS else None
    try:
        for a in range(0, len(values), _SCORE_CHUNK_ROWS):
            rows = values[a:a + _SCORE_CHUNK_ROWS]
            yield a, rows
            if bar is not None:
                bar.update(len(rows))
            if on_chunk is not None:
                on_chunk(a + len(rows), len(values))
    finally:
        if bar is not None:
            bar.close()


def _score_bar(total: int) -> Any:
    """A tqdm bar for a long scoring run, shown only after 3 s (short runs print nothing); None without tqdm."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="scoring", unit="row", delay=3.0, mininterval=0.5, leave=False)


def _like(texts: Any, values: np.ndarray, name: str) -> Any:
    """Return values as a Series with the input's index when the input is a pandas Series."""
    if type(texts).__module__.startswith("pandas") and hasattr(texts, "index"):
        import pandas as pd

        return pd.Series(values, index=texts.index, name=name)
    return values


def _plain(obj: Any) -> Any:
    """Meta as plain containers only (weights_only loading accepts nothing else)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


# The API's argument checks, for the analysis layer (one message for each mistake).
check_text = _check_text
check_model = _check_model

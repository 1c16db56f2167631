"""IPython magics: ``%%lm_train``, ``%lm_complete``, ``%lm_generate``, ``%lm_models`` and friends
(``%lm_score``, ``%lm_explain`` and ``%lm_compare`` explore a text column).

Each magic is a thin layer: parse the line (flags generated from TrainConfig / GenerateConfig, so
``%lm_train?`` shows every option with its default) -> config -> the public API -> a result object from
display.py that renders itself. An ``LMError`` (or a malformed option) becomes a one-line ``UsageError``
that says what to do; anything else is a bug and keeps its traceback. Models live in the shell's
``ModelRegistry``, so they survive ``%reload_ext lm_magics``.

    %load_ext lm_magics
    %%lm_train --name zen --epochs 10
    ...text...
    %lm_complete --name zen Beautiful is
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import shlex
import sys
from typing import Any, Callable, Iterator, List, Optional, Tuple

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import ArgDecorator, argument, magic_arguments
from IPython.utils.process import arg_split
from traitlets import Bool, Int, Unicode

from . import analysis, api
from .config import GenerateConfig, TrainConfig, add_arguments, check_parsed, given
from .display import Completions, Generation, TrainSummary, interrupted_text
from .display import escape as _e, ppl_text as _fmt_ppl
from .errors import ConfigError, DataError, Interrupted, LMError, clip_message
from .engine.data import files
from .frames import column_of, is_dataframe, is_spark_dataframe, lookup, text_rows
from .progress import INTERIM, WorkProgress, accepts, measure_scoring
from .registry import ModelRegistry, Placement, get_registry, register_run
from .rules import MAX_ROWS, check_name, clip_rows, more_note

__all__ = ["LMMagics", "ModelTable", "load_ipython_extension", "unload_ipython_extension"]

class config_options(ArgDecorator):
    """``@config_options(TrainConfig)``: one ``--flag`` per config field, in their own help section."""

    def __init__(self, cls: type, title: str, **kw: Any):
        self.cls, self.title, self.kw = cls, title, kw

    def add_to_parser(self, parser: Any, group: Any) -> None:
        add_arguments(parser.add_argument_group(self.title), self.cls, **self.kw)


def _user_errors(method: Callable) -> Callable:
    """Turn the user's mistakes (LMError) into a one-line UsageError; let bugs keep their traceback."""

    @functools.wraps(method)
    def wrapper(self: "LMMagics", *args: Any, **kw: Any) -> Any:
        try:
            return method(self, *args, **kw)
        except LMError as exc:
            if not self.short_errors:
                raise
            raise UsageError(str(exc)) from None
        except UsageError as exc:     # argparse's own ("unrecognized arguments: ..."): short whatever was typed
            text = clip_message(str(exc))
            if text == str(exc):
                raise
            raise UsageError(text) from None
    return wrapper


def _split_options(parser: Any, line: str) -> Tuple[str, str]:
    """Split ``--name x -k 3 the cat's hat`` into the options and the free text after them.

    The free text is kept verbatim (apostrophes, quotes, several spaces), which shlex-splitting the whole
    line would not; ``--`` ends the options explicitly. Surrounding quotes on the text are removed.
    """
    lex = shlex.shlex(line, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    pos, expect_value = 0, False
    while True:
        start = lex.instream.tell()
        try:
            tok = lex.get_token()
        except ValueError:          # an unbalanced quote: from here on it is text
            break
        if tok is None or tok == lex.eof:
            return line, ""
        if expect_value:
            expect_value, pos = False, lex.instream.tell()
            continue
        if tok == "--":
            return line[:start], line[lex.instream.tell():].strip()
        if not tok.startswith("-") or tok == "-" or _is_number(tok):
            pos = start
            break
        action = parser._option_string_actions.get(tok)
        expect_value = action is not None and action.nargs != 0
        pos = lex.instream.tell()
    text = line[pos:].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return line[:pos], text


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _widgets(module: str, name: str) -> Any:
    """A widget class, or a one-line error that says which extra to install (the magic stays listed)."""
    try:
        return getattr(importlib.import_module(f"lm_magics.widgets.{module}"), name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("ipywidgets", "tqdm"):
            raise ConfigError(f"%lm_{module} needs {exc.name}: pip install 'lm-magics[widgets]'.") from None
        raise


def _provenance(args: Any) -> dict:
    """Where %%lm_train's text came from, as the line says it (files are described by api.train)."""
    if args.df:
        prov = {"dataframe": args.df, "column": args.column, "where": args.where}
        return {**prov, "sample": args.sample} if args.sample is not None else prov
    return {} if args.file else {"cell": True}


def _name_of(registry: ModelRegistry, model: Optional[api.LanguageModel]) -> Optional[str]:
    """The name model is registered under, if it is."""
    return next((n for n in registry.names() if model is not None and registry.get(n) is model), None)


LONG_COMMAND_S = 3.0     # %lm_score / %lm_compare estimated to take longer show a progress bar at once
_ESTIMATE_FROM_ROWS = 200   # fewer rows are scored in well under a second: no estimate, no bar


@contextlib.contextmanager
def _long_command(model: Optional[api.LanguageModel], df: Any, column: str, passes: int,
                  desc: str) -> Iterator[Any]:
    """A WorkProgress bar (``bar.on_chunk`` for the work's progress) when scoring df[column] with model is
    estimated to take more than LONG_COMMAND_S, shown before the work starts; else None. A column that
    cannot be read is left for the work itself to report."""
    bar = None
    if model is not None:
        try:
            texts = column_of(df, column).to_list()
        except (LMError, AttributeError, TypeError):
            texts = []
        if len(texts) >= _ESTIMATE_FROM_ROWS:
            seconds = estimate_seconds(model, texts, passes)
            if seconds > LONG_COMMAND_S:
                bar = WorkProgress(len(texts), seconds, desc=f"{desc} '{column}':")
    try:
        yield bar
    except BaseException:
        if bar is not None:
            bar.close(discard=True)
        raise
    if bar is not None:
        bar.close()


def estimate_seconds(model: api.LanguageModel, texts: List[Any], passes: int = 1) -> float:
    """Seconds that scoring texts with model is expected to take (see progress.measure_scoring)."""
    return measure_scoring(model, texts, passes)


def _placed_after_ctrl_c(registry: ModelRegistry, name: str, model: api.LanguageModel) -> Placement:
    """Where a run went when a Ctrl-C cut its registration short: where the registry already has it, else
    under the rule for interrupted runs (never over the model that has its name)."""
    placed = _name_of(registry, model)
    if placed is not None:
        return Placement(placed, name, replaced=placed == name, default=registry.default == placed)
    return register_run(registry, name, model)


def _is_comments(cell: str) -> bool:
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in cell.splitlines())


class ModelTable:
    """``%lm_models``: the models of the session (name, vocabulary, parameters, validation perplexity)."""

    def __init__(self, registry: ModelRegistry):
        self.default = registry.default
        self.rows: List[Tuple[str, int, int, Optional[float]]] = []
        self.interim: List[str] = []      # names answered by an n-gram while their LSTM trains (the monitor's)
        names = registry.names()
        # What is shown is bounded: the default model and the first MAX_ROWS others; the rest are counted.
        shown = ([self.default] if self.default in names else []) + [n for n in names if n != self.default]
        where = {n: i for i, n in enumerate(names)}
        shown, self.more = sorted(shown[:MAX_ROWS], key=where.__getitem__), max(0, len(names) - MAX_ROWS)
        for name in shown:
            model = registry.get(name)
            info = model.info
            ppl = info["val_ppl"]
            # One model with an odd record (made by hand, not loaded: files are checked) never breaks the table.
            ppl = float(ppl) if isinstance(ppl, (int, float)) and not isinstance(ppl, bool) else None
            self.rows.append((name, int(info["vocab_size"]), int(info["parameters"] or 0), ppl))
            if model.meta.get(INTERIM):
                self.interim.append(name)

    @property
    def _caption(self) -> str:
        more = "".join(f"; '{n}' is its n-gram baseline until its LSTM is done" for n in self.interim[:5])
        return f"* = default model{more}" + (f"; {more_note(self.more, 'models')}" if self.more else "")

    @property
    def names(self) -> List[str]:
        return [r[0] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def _cells(self) -> List[Tuple[str, str, str, str, str]]:
        return [("*" if n == self.default else "", n if len(n) <= 60 else n[:59] + "…", f"{v:,}", f"{p:,}",
                 _fmt_ppl(ppl)) for n, v, p, ppl in self.rows]

    def __repr__(self) -> str:
        if not self.rows:
            return "No models yet. Train one with %%lm_train or load one with %lm_load PATH."
        head = ("", "name", "vocab", "params", "val ppl")
        cells = [head] + self._cells()
        w = [max(len(r[i]) for r in cells) for i in range(5)]
        align = ["<", "<", ">", ">", ">"]
        lines = ["  ".join(f"{c:{a}{n}}" for c, a, n in zip(r, align, w)).rstrip() for r in cells]
        return "\n".join(lines + [f"({self._caption})"])

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p>{_e(repr(self))}</p>"
        th = "".join(f"<th style='padding:2px 8px;text-align:{a}'>{h}</th>" for h, a in
                     (("", "left"), ("name", "left"), ("vocab", "right"), ("params", "right"), ("val ppl", "right")))
        rows = "".join("<tr>" + "".join(f"<td style='padding:2px 8px;text-align:{a}'>{_e(c)}</td>"
                                        for c, a in zip(r, ("left", "left", "right", "right", "right"))) + "</tr>"
                       for r in self._cells())
        return (f"<table class='lm-models' style='border-collapse:collapse'><thead><tr>{th}</tr></thead>"
                f"<tbody>{rows}</tbody><caption style='caption-side:bottom;text-align:left;color:#888'>"
                f"{_e(self._caption)}</caption></table>")


@magics_class
class LMMagics(Magics):
    """Train and use word-level LSTM language models from IPython. Settings: ``%config LMMagics``."""

    device = Unicode("", help="Device for %%lm_train and %lm_load when --device is not given: 'auto', "
                              "'cpu', 'cuda', 'mps' ('' = the config's default, 'auto').").tag(config=True)
    default_model = Unicode("", help="Model used when a magic gets no --name, and the name %%lm_train gives "
                                     "a new model ('' = the last trained, loaded or %lm_use'd model; new "
                                     "models are called 'model').").tag(config=True)
    short_errors = Bool(True, help="Show your mistakes as a one-line UsageError; False re-raises the "
                                   "lm_magics error with its traceback.").tag(config=True)
    quiet = Bool(False, help="Never show the training progress bar (as if --quiet were given).").tag(config=True)
    sample_words = Int(3, help="How many frequent start words the training summary shows completions for "
                               "(0: none).").tag(config=True)

    @property
    def registry(self) -> ModelRegistry:
        return get_registry(self.shell)

    def _ns(self) -> dict:
        return self.shell.user_ns if self.shell is not None else {}

    def _model(self, name: Optional[str]) -> Tuple[str, api.LanguageModel]:
        key = self.registry.resolve(name or self.default_model or None)
        return key, self.registry.get(key)

    def _store(self, var: Optional[str], value: Any) -> None:
        """Put a result in the notebook variable var (None: only check that var is a valid name)."""
        if var is not None:
            check_name(var, "result variable (-o VAR)", variable=True, example="-o result")
            if value is not None:
                self._ns()[var] = value

    @staticmethod
    def _parse(func: Callable, line: str) -> Any:
        try:
            # posix splitting, unlike parse_argstring: quotes group words and are removed ("label == 'x'").
            args = func.parser.parse_args(arg_split(line, posix=True))
        except UsageError as exc:
            raise UsageError(f"{func.__name__}: {exc} (see `%{func.__name__}?`)") from None
        except ValueError as exc:   # shlex: "No closing quotation"
            raise UsageError(f"{func.__name__}: {exc}; check the quotes in the line.") from None
        return check_parsed(args)   # a value of the wrong kind (--epochs many): ConfigError

    # ----------------------------------------------------------------------------------------- training

    @magic_arguments()
    @argument("--name", default=None, help="register the model under this name [default: "
                                           "LMMagics.default_model, else 'model']")
    @argument("--df", metavar="VAR", default=None,
              help="train on a DataFrame column (with --column; pandas, polars or Spark), a Series or a list of str "
                   "from this variable")
    @argument("--column", metavar="COL", default=None, help="the text column of the --df DataFrame")
    @argument("--where", metavar="EXPR", default=None,
              help="keep only some rows of --df: a DataFrame.query expression (\"label == 'ham'\") or the "
                   "name of a boolean mask variable; for a Spark DataFrame, a Spark SQL condition")
    @argument("--sample", metavar="FRACTION", type=float, default=None,
              help="train on about this fraction of a Spark DataFrame's rows (seeded by --seed)")
    @argument("--file", metavar="PATH", nargs="+", default=None,
              help="train on text files (glob patterns allowed), one row per line")
    @argument("--encoding", metavar="ENC", default=None,
              help="the text encoding of the --file files, e.g. latin-1, cp1252, utf-16 [default: utf-8]")
    @argument("--continue", dest="continue_", action="store_true",
              help="train the named model further on this text (keeps its vocabulary and settings)")
    @argument("--quiet", action="store_true", help="no progress bar")
    @argument("--background", action="store_true",
              help="train in a background thread and show a live monitor (needs ipywidgets)")
    @argument("-o", "--output", metavar="VAR", default=None, help="also store the training summary in VAR")
    @config_options(TrainConfig, "training options (default 'from data': chosen from the data size)")
    @line_cell_magic
    @_user_errors
    def lm_train(self, line: str, cell: Optional[str] = None) -> Any:
        """Train a word-level LSTM language model on the cell's text, a DataFrame column or files.

        The cell's text is the data (one row per line) unless --df or --file is given. The model is
        registered under --name and becomes the default model; the result is a training summary.
        """
        args = self._parse(self.lm_train, line)
        self._store(args.output, None)       # a bad -o name fails now, not after training
        try:
            data = self._train_data(args, cell)   # --df --where on a big frame takes a while
        except KeyboardInterrupt:
            raise Interrupted("Training interrupted while reading the data; nothing has changed.") from None
        options = given(args, TrainConfig)
        if "device" not in options and self.device:
            options["device"] = self.device
        init = None
        if args.continue_:   # train the named (or default) model further
            name, init = self._model(args.name)
        else:
            name = args.name if args.name is not None else (self.default_model or "model")
        check_name(name, example="--name reviews")
        TrainConfig().replace(**options)     # check option values before anything starts
        if init is not None:
            api.continue_config(init, **options)   # settings that cannot change when continuing: refused now

        if args.background:
            try:
                from .widgets.monitor import start_background_training
            except ImportError:
                raise UsageError("--background needs ipywidgets: pip install 'lm-magics[widgets]', or train "
                                 "without --background.") from None
            monitor = start_background_training(shell=self.shell, registry=self.registry, name=name, data=data,
                                                options=options, continue_from=init)
            self._store(args.output, monitor)
            return monitor

        from .progress import TrainProgress

        reg = self.registry
        progress = None if (args.quiet or self.quiet) else TrainProgress(desc=f"training '{name}'")
        model = placement = None
        try:
            plan = {"on_plan": progress.on_plan} if progress is not None and accepts(api.train, "on_plan") else {}
            model = api.train(data, init=init, on_step=progress and progress.on_step,
                              on_epoch=progress and progress.on_epoch, provenance=_provenance(args), **plan,
                              **options)
            if progress is not None:
                progress.close(model.report.stop_reason if model.report else "")
            # The rule for runs (registry.register_run): an interrupted run never replaces the model that
            # has its name, one stopped before its first validation is kept aside, a replacement is said.
            placement = register_run(reg, name, model)
            samples = self._samples(model)
        except KeyboardInterrupt:
            if model is None:    # lm.train raises it only before the first step; nothing has changed
                kept = f"'{name}' is unchanged" if name in reg else f"no model '{name}' was made"
                raise Interrupted(f"Training interrupted before the first step; {kept}.") from None
            if placement is None:    # Ctrl-C as the finished run was registered: it is an interrupted run now
                model.report.interrupted, model.report.stop_reason = True, "interrupted"
                model.meta["interrupted"] = True
                placement = _placed_after_ctrl_c(reg, name, model)
            samples = []         # Ctrl-C while picking sample completions: the summary goes without them
        except FloatingPointError as exc:   # diverged: the user can fix it with a smaller lr
            kept = f"'{name}' is unchanged" if name in reg else f"no model '{name}' was made"
            raise UsageError(f"{exc}. {kept}.") from None
        finally:
            if progress is not None:
                progress.close()
        summary = TrainSummary(placement.name, model, samples, note=placement.note)
        self._store(args.output, summary)
        if model.interrupted:
            old = (f"'{name}'", placement.earlier_ppl) if placement.kept_earlier else ()
            print(interrupted_text("interrupted", model.report.steps, f"'{placement.name}'",
                                   model.meta.get("val_ppl"), *old), file=sys.stderr)
        return summary

    def _train_data(self, args: Any, cell: Optional[str]) -> Any:
        has_text = cell is not None and not _is_comments(cell)
        if args.df and args.file:
            raise DataError("Give either --df or --file, not both.")
        if args.where is not None and not args.where.strip():
            raise DataError("--where is empty; give a condition such as \"label == 'ham'\" or a boolean mask "
                            "variable, or leave --where out.")
        if (args.column or args.where) and not args.df:
            raise DataError(f"--{'column' if args.column else 'where'} needs --df VAR (the DataFrame to read).")
        if args.sample is not None and not args.df:
            raise DataError("--sample needs --df VAR (a Spark DataFrame to sample).")
        if args.encoding is not None and not args.file:
            raise DataError("--encoding is the encoding of --file PATH; the cell's text and --df data are "
                            "already text.")
        if args.df or args.file:
            if has_text:
                src = "--df" if args.df else "--file"
                raise DataError(f"The cell has text and {src} is given; use one (the cell may hold comments).")
            if args.df:
                frame = lookup(self._ns(), args.df)
                if is_spark_dataframe(frame):   # streamed to the driver, cached as token files
                    from .spark import spark_rows

                    return spark_rows(frame, args.column, args.where, args.sample, args.seed or 0, f"'{args.df}'")
                if args.sample is not None:
                    raise DataError("--sample is for a Spark DataFrame; for pandas or polars pick the rows with "
                                    "--where or df.sample(frac=...).")
                return text_rows(self._ns(), args.df, args.column, args.where)
            return files(*args.file, encoding=args.encoding or "utf-8")
        if cell is None:
            raise DataError("Nothing to train on: use %%lm_train with text in the cell, or %lm_train --df VAR "
                            "--column COL, or %lm_train --file PATH.")
        if not cell.strip():
            raise DataError("The cell is empty: put text to train on below %%lm_train, or use --df VAR "
                            "--column COL or --file PATH.")
        return cell

    def _samples(self, model: api.LanguageModel) -> List[Tuple[str, List[Tuple[str, float]]]]:
        """Completions after the words the model most expects at the start of a row."""
        if self.sample_words <= 0:
            return []
        n = min(self.sample_words, MAX_ROWS)     # a summary shows a bounded number of samples
        starts = [w for w, _ in model.next_words("", k=4 * n) if any(c.isalnum() for c in w)]
        # include_special: a model that expects the line to end says so ("⏎ (end of line) 93%").
        return [(w, model.next_words(w, k=3, include_special=True)) for w in starts[:n]]

    # ----------------------------------------------------------------------------------------- using

    @magic_arguments()
    @argument("--name", default=None, help="the model to use [default: the default model]")
    @argument("-k", type=int, default=5, help="how many words to show [default: 5]")
    @argument("-o", "--output", metavar="VAR", default=None, help="also store the result in VAR")
    @argument("prefix", nargs="*", help="the text so far (empty: the start of a text)")
    @line_magic
    @_user_errors
    def lm_complete(self, line: str) -> Completions:
        """The most likely next words after PREFIX, with their probabilities.

        ``x = %lm_complete the cat`` keeps the result: ``x.words``, ``x.probs``.
        """
        args, prefix = self._parse_with_text(self.lm_complete, line)
        if args.k < 1:
            raise ConfigError(f"-k must be at least 1, got {args.k}.")
        name, model = self._model(args.name)
        result = Completions(prefix, model.next_words(prefix, k=args.k), name)
        self._store(args.output, result)
        return result

    @magic_arguments()
    @argument("--name", default=None, help="the model to use [default: the default model]")
    @argument("-o", "--output", metavar="VAR", default=None, help="also store the result in VAR")
    @config_options(GenerateConfig, "generation options", short={"n_words": "-n"})
    @argument("prefix", nargs="*", help="the text to continue (empty: the start of a text)")
    @line_magic
    @_user_errors
    def lm_generate(self, line: str) -> Generation:
        """Continue PREFIX with generated text (sampling with temperature / top-k / top-p, or beam search)."""
        args, prefix = self._parse_with_text(self.lm_generate, line)
        cfg = GenerateConfig(**given(args, GenerateConfig))
        name, model = self._model(args.name)
        text = model.generate_with(prefix, cfg)
        result = Generation(prefix, text, name, given(args, GenerateConfig), model.join_text(prefix, text),
                            model.copied(prefix, text))
        self._store(args.output, result)
        return result

    def _parse_with_text(self, func: Callable, line: str) -> Tuple[Any, str]:
        opts, text = _split_options(func.parser, line)
        args = self._parse(func, opts)
        return args, text

    # ----------------------------------------------------------------------------------------- models

    @line_magic
    @_user_errors
    def lm_models(self, line: str = "") -> ModelTable:
        """A table of the models in this session (* marks the default model)."""
        if line.strip():
            raise UsageError("%lm_models takes no arguments; use %lm_info NAME for one model.")
        return ModelTable(self.registry)

    @magic_arguments()
    @argument("name", nargs="?", default=None, help="the model [default: the default model]")
    @line_magic
    @_user_errors
    def lm_info(self, line: str) -> api.LanguageModel:
        """What a model is: vocabulary, network, parameters, training data, validation perplexity."""
        args = self._parse(self.lm_info, line)
        return self._model(args.name)[1]

    @magic_arguments()
    @argument("name", help="the model that magics use when no --name is given")
    @line_magic
    @_user_errors
    def lm_use(self, line: str) -> None:
        """Make NAME the default model."""
        args = self._parse(self.lm_use, line)
        self.registry.use(args.name)
        print(f"Default model: '{args.name}'")

    @magic_arguments()
    @argument("--name", default=None, help="the model to save [default: the default model]")
    @argument("path", help="the file to write (a regular file is replaced atomically if it exists; a "
                           "directory, device or pipe is refused)")
    @line_magic
    @_user_errors
    def lm_save(self, line: str) -> None:
        """Save a model to one file (weights, vocabulary, settings, training record)."""
        args = self._parse(self.lm_save, line)
        name, model = self._model(args.name)
        model.save(args.path)
        print(f"Saved '{name}' to {args.path}")

    @magic_arguments()
    @argument("path", help="a file written by %%lm_save, model.save() or `lm-magics train`")
    @argument("--name", default=None, help="register it under this name [default: the file name without "
                                           "its extension]")
    @line_magic
    @_user_errors
    def lm_load(self, line: str) -> api.LanguageModel:
        """Load a model file and make it the default model."""
        args = self._parse(self.lm_load, line)
        name = args.name if args.name is not None else (os.path.splitext(os.path.basename(args.path))[0] or "model")
        check_name(name, example="--name reviews")
        model = api.load(args.path, device=self.device if self.device not in ("", "cpu") else "cpu")
        self.registry.set(name, model)
        print(f"Loaded '{name}' from {args.path}")
        return model

    # ----------------------------------------------------------------------------------------- data

    @magic_arguments()
    @argument("--name", default=None, help="the model to score with [default: the default model]")
    @argument("--df", required=True, metavar="VAR", help="the pandas or Spark DataFrame variable")
    @argument("--column", required=True, metavar="COL", help="the text column to score")
    @argument("--into", default=None, metavar="NEWCOL",
              help="the perplexity column to write [default: COL_ppl]; bits per token go to NEWCOL_bits")
    @argument("--into-frame", default=None, metavar="NAME",
              help="Spark: bind the scored DataFrame to NAME [default: --df's variable] (a Spark DataFrame "
                   "cannot change in place)")
    @argument("--overwrite", action="store_true", help="replace the score columns if they exist")
    @argument("--baseline", action="store_true",
              help="also write the model's n-gram baseline (NEWCOL stem + _ngram_ppl) and the LSTM + n-gram "
                   "mixture (_mix_ppl) beside its scores")
    @argument("--label", metavar="COL", default=None,
              help="a boolean column (or any, with --positive): report the ROC AUC of each score side by side "
                   "(rows without a label are left out)")
    @argument("--positive", metavar="VALUE", default=None, help="the positive class of --label")
    @argument("--signal", default="unusual", choices=analysis.SIGNAL_CHOICES,
              help="rank the rows by one signal of the unusualness and write its column NEWCOL stem + _SIGNAL: "
                   "ppl (mean surprisal), max (most surprising word), topk (top-3 words), unseen (words never "
                   "seen), ngram (the n-gram baseline), knn (distance to the nearest usual rows), all (every "
                   "signal's column) [default: unusual, the combined score]")
    @argument("--top", type=int, default=5, metavar="N", help="show the N most and least unusual rows "
                                                              "[default: 5]")
    @argument("-o", "--output", metavar="VAR", default=None, help="also store the report in VAR")
    @line_magic
    @_user_errors
    def lm_score(self, line: str) -> Any:
        """Score each row of a DataFrame text column with a language model.

        Writes perplexity, bits per token and the unusualness (COL_unusual: the model's signals, each
        calibrated on its validation rows, combined; higher = more unusual) as new columns (missing rows:
        NaN) and returns a report of the most and least unusual rows with why each stands out, e.g.
        ``%lm_score --df reviews --column text --top 3``.
        """
        args = self._parse(self.lm_score, line)
        self._store(args.output, None)
        df = lookup(self._ns(), args.df)
        if args.into_frame is not None:     # a name a user gives: the rule for names, whatever the frame
            check_name(args.into_frame, "--into-frame variable", variable=True, example="--into-frame scored")
        if is_spark_dataframe(df):
            return self._score_spark(args, df)
        if args.into_frame is not None:
            raise ConfigError("--into-frame is for a Spark DataFrame; a pandas DataFrame gets its columns in place.")
        if not (hasattr(df, "columns") and type(df).__module__.startswith("pandas")):
            raise DataError(f"'{args.df}' is a {type(df).__name__}, not a pandas DataFrame; pass --df with a "
                            f"pandas DataFrame variable (polars: df.to_pandas()).")
        name, model = self._model(args.name)
        if args.positive is not None and args.label is None:
            raise ConfigError("--positive needs --label COL (the column it is a value of).")
        # An LSTM model's --baseline columns come from its own pass; a mix model's LSTM alone is another.
        passes = 1 + int(args.baseline and model.kind == "mix")
        with _long_command(model, df, args.column, passes, "scoring") as bar:
            report = analysis.score_frame(model, df, args.column, into=args.into, overwrite=args.overwrite,
                                          top=args.top, model_name=name, baseline=args.baseline, label=args.label,
                                          positive=args.positive, signal=args.signal, on_chunk=bar and bar.on_chunk)
        self._store(args.output, report)
        return report

    def _score_spark(self, args: Any, sdf: Any) -> Any:
        """%lm_score on a Spark DataFrame: the scored frame is bound to --into-frame (default: --df's name)
        only once every action has succeeded; the report holds only the rows it shows."""
        from .spark import score_report

        target = args.into_frame if args.into_frame is not None else args.df
        check_name(target, "--into-frame variable", variable=True, example="--into-frame scored")
        if args.baseline or args.label is not None or args.positive is not None:
            raise ConfigError("--baseline, --label and --positive are for pandas frames; score a Spark DataFrame "
                              "without them (or score sdf.limit(N).toPandas() with them).")
        name, model = self._model(args.name)
        scored, report = score_report(sdf, args.column, model, into=args.into, overwrite=args.overwrite,
                                      top=args.top, model_name=name, bound_to=target)
        self._ns()[target] = scored
        self._store(args.output, report)
        return report

    # ----------------------------------------------------------------------------------------- widgets

    @magic_arguments()
    @argument("--name", default=None, help="the model to use [default: the default model]")
    @argument("-k", type=int, default=5, help="how many next words to show [default: 5]")
    @line_magic
    @_user_errors
    def lm_panel(self, line: str) -> Any:
        """Show a completion panel: type, see the next words, click one to accept it.

        Returns the panel: ``panel = %lm_panel --name poems``; ``panel.value``, ``panel.words``.
        """
        args = self._parse(self.lm_panel, line)
        CompletionPanel = _widgets("panel", "CompletionPanel")
        return CompletionPanel(args.name or self.default_model or None, registry=self.registry, k=args.k)

    @magic_arguments()
    @argument("--name", default=None, help="the model to answer with [default: the default model]")
    @line_magic
    @_user_errors
    def lm_chat(self, line: str) -> Any:
        """Show a chat with a model; type /help in it for commands.

        Returns the chat: ``chat = %lm_chat``; ``chat.send("hello")``, ``chat.messages``.
        """
        args = self._parse(self.lm_chat, line)
        ChatAssistant = _widgets("chat", "ChatAssistant")
        return ChatAssistant(args.name or self.default_model or None, registry=self.registry, user_ns=self._ns())

    # ----------------------------------------------------------------------------------------- models

    @magic_arguments()
    @argument("name", help="the model to remove from the session")
    @line_magic
    @_user_errors
    def lm_drop(self, line: str) -> None:
        """Remove a model from the session (its files are not touched)."""
        args = self._parse(self.lm_drop, line)
        self.registry.drop(args.name)
        left, more = clip_rows(self.registry.names(), 10)
        print(f"Dropped '{args.name}'. Models left: {', '.join(left) if left else 'none'}"
              f"{' ' + more_note(more) if more else ''}.")

    # ----------------------------------------------------------------------------------------- exploring

    @magic_arguments()
    @argument("--name", default=None, help="the model [default: the default model]")
    @argument("--top", type=int, default=3, metavar="N", help="show alternatives at the N most surprising "
                                                              "words [default: 3]")
    @argument("-k", type=int, default=3, help="how many alternatives at each [default: 3]")
    @argument("-o", "--output", metavar="VAR", default=None, help="also store the result in VAR")
    @argument("text", nargs="*", help="the text to explain")
    @line_magic
    @_user_errors
    def lm_explain(self, line: str) -> Any:
        """The surprisal of each word of TEXT (shaded) and the words the model expected at the most
        surprising ones, e.g. ``%lm_explain the cat sat on the river``."""
        args, text = self._parse_with_text(self.lm_explain, line)
        self._store(args.output, None)
        name, model = self._model(args.name)
        result = analysis.explain(model, text, top=args.top, k=args.k, model_name=name)
        self._store(args.output, result)
        return result

    @magic_arguments()
    @argument("--df", required=True, metavar="VAR", help="the DataFrame variable (pandas, polars or Spark)")
    @argument("--column", required=True, metavar="COL", help="the text column")
    @argument("--by", required=True, metavar="GROUPCOL", help="the column whose values form the groups")
    @argument("--name", default=None, help="score the rows with this model [default: word counts of the "
                                           "column, quick for any number of groups]")
    @argument("--min-rows", type=int, default=5, metavar="N",
              help="groups with fewer rows are reported as too small [default: 5]")
    @argument("--top-words", type=int, default=5, metavar="N", help="characteristic words per group [default: 5]")
    @argument("-o", "--output", metavar="VAR", default=None, help="also store the result in VAR")
    @line_magic
    @_user_errors
    def lm_compare(self, line: str) -> Any:
        """Which groups of rows have the most unusual text, and the words that characterise each group.

        ``%lm_compare --df reviews --column text --by product``: every row is scored once (with --name's
        model, or the column's word counts); each group's mean bits per word is compared with the rest's.
        Returns a result whose ``.table`` is a DataFrame.
        """
        args = self._parse(self.lm_compare, line)
        self._store(args.output, None)
        df = lookup(self._ns(), args.df)
        if is_spark_dataframe(df):             # aggregated on the executors; only the table comes back
            from .spark import compare_groups_spark

            model = self._model(args.name) if args.name else (None, None)
            result = compare_groups_spark(df, args.column, args.by, model[1], min_rows=args.min_rows,
                                          top_words=args.top_words, model_name=model[0] or "")
            self._store(args.output, result)
            return result
        if not is_dataframe(df) or type(df).__name__ != "DataFrame":
            raise DataError(f"'{args.df}' is a {type(df).__name__}, not a DataFrame; pass --df with a pandas or "
                            f"polars DataFrame variable.")
        model = self._model(args.name) if args.name else (None, None)
        # Word counts are quick whatever the size; a model scores every row once (its n-gram pass is quick).
        with _long_command(model[1], df, args.column, 1, "scoring") as bar:
            result = analysis.compare_groups(df, args.column, args.by, model[1], min_rows=args.min_rows,
                                             top_words=args.top_words, model_name=model[0] or "",
                                             on_chunk=bar and bar.on_chunk)
        self._store(args.output, result)
        return result


# ------------------------------------------------------------------------------------------ extension

_SETTINGS = ("device", "default_model", "short_errors", "quiet", "sample_words")


def load_ipython_extension(ip: Any) -> None:
    """Register the magics (``%load_ext lm_magics``). Settings and models of an earlier load are kept."""
    previous = [c for c in getattr(ip, "configurables", []) if type(c).__name__ == "LMMagics"]
    magics = LMMagics(shell=ip)
    for old in previous:
        for key in _SETTINGS:
            if hasattr(old, key):
                setattr(magics, key, getattr(old, key))
        ip.configurables.remove(old)
    ip.register_magics(magics)
    get_registry(ip)   # create it now, so every front-end sees the same one


def unload_ipython_extension(ip: Any) -> None:
    """Remove every lm_magics magic (``%unload_ext``); models stay in the session's registry."""
    table = ip.magics_manager.magics
    for kind, names in LMMagics.magics.items():
        for name in names:
            table.get(kind, {}).pop(name, None)

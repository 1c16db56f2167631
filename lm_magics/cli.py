"""``lm-magics`` / ``python -m lm_magics``: train, complete, generate, score and describe models from a shell.

    lm-magics train notes/*.txt -o notes.lm --epochs 5
    lm-magics train corpus/*.txt -o big.lm --nproc 2 --stream   # 2 processes, memory-mapped token cache
    lm-magics complete notes.lm "the cat"
    lm-magics generate notes.lm "the cat" -n 20 --seed 0
    lm-magics score notes.lm test.txt          # perplexity<TAB>line, one per line
    lm-magics score notes.lm test.txt --baseline   # perplexity<TAB>n-gram baseline perplexity<TAB>line
    lm-magics score notes.lm test.txt --unusual    # perplexity<TAB>unusualness<TAB>line
    lm-magics info notes.lm
    lm-magics demo                              # train on the stdlib's docstrings, show completions

Training flags are generated from TrainConfig and generation flags from GenerateConfig, like the magics'.
Errors are one line on stderr. Exit codes: 2 for a usage mistake (a command line that cannot be parsed:
an unknown command or option, a missing argument, options that do not go together); 1 for an LMError (a
problem with the data, an option value, or a model file; a value of the wrong kind, such as
``--epochs many``, is an option value too); 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import signal
import sys
from typing import Iterator, List, Optional, Sequence

from .config import GenerateConfig, TrainConfig, add_arguments, arg_type, check_parsed, given
from .errors import ConfigError, DataError, Interrupted, LMError, clip_message
from .rules import clip_text

__all__ = ["main", "build_parser"]

PROG = "lm-magics"


class _Usage(Exception):
    """A usage mistake found by argparse: exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:     # one line, not argparse's usage block
        raise _Usage(clip_message(f"{self.prog}: {message} (see `{self.prog} --help`)"))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Train and use small word-level LSTM language models.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("train", help="train a model on text files and save it",
                       description="Train a model on text files (one row per line) and save it to one file.")
    p.add_argument("files", nargs="+", metavar="FILE", help="text files or glob patterns ('-' reads stdin)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="the model file to write")
    p.add_argument("--init", metavar="MODEL", default=None, help="continue training this model file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--encoding", metavar="ENC", default="utf-8",
                   help="text encoding of the files and stdin, e.g. latin-1, cp1252, utf-16 [default: utf-8]")
    add_arguments(p.add_argument_group("training options ('from data': chosen from the data size)"), TrainConfig)
    # Another front-end (torchrun DDP: `train --nproc N`) can add its flags to this parser and branch in
    # _run_train; everything else stays as is.
    p.add_argument("--nproc", type=arg_type(int), default=None, metavar="N",
                   help="train with N processes (DistributedDataParallel, launched with torchrun); the options "
                        "are checked before they start, and a failed run ends in one line saying why")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="tokenize into a memory-mapped token cache and train from it, so memory stays flat "
                        "[default: on for files of 256 MB or more, and with --nproc or under torchrun]")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="token cache folder [default: $LM_MAGICS_CACHE/tokens or ~/.cache/lm_magics/tokens]; "
                        "on several machines, a folder they all share means one build")
    p.add_argument("--cache-check", choices=("stat", "hash"), default="stat",
                   help="find a streamed file's cache entry by size and modification time (stat, reads "
                        "nothing) or by re-reading it and hashing its content (hash) [default: stat]")
    p.set_defaults(run=_run_train)

    p = sub.add_parser("complete", help="the most likely next words after a prefix",
                       description="Print the most likely next words after PREFIX: word<TAB>probability.")
    p.add_argument("model", metavar="MODEL", help="a model file")
    p.add_argument("prefix", nargs="*", metavar="PREFIX", help="the text so far (empty: start of a text)")
    p.add_argument("-k", type=arg_type(int), default=5, help="how many words [default: 5]")
    p.set_defaults(run=_run_complete)

    p = sub.add_parser("generate", help="continue a prefix with generated text",
                       description="Continue PREFIX with generated text.")
    p.add_argument("model", metavar="MODEL", help="a model file")
    p.add_argument("prefix", nargs="*", metavar="PREFIX", help="the text to continue")
    add_arguments(p.add_argument_group("generation options"), GenerateConfig, short={"n_words": "-n"})
    p.set_defaults(run=_run_generate)

    p = sub.add_parser("score", help="perplexity of each line of a file",
                       description="Print the perplexity of each line of FILE: perplexity<TAB>line "
                                   "(nan for a blank line); with --baseline, perplexity<TAB>baseline "
                                   "perplexity<TAB>line; with --unusual, the unusualness after the "
                                   "perplexities.")
    p.add_argument("model", metavar="MODEL", help="a model file")
    p.add_argument("file", metavar="FILE", help="a text file ('-' reads stdin)")
    p.add_argument("--baseline", action="store_true",
                   help="also print the perplexity under the model's n-gram baseline (same rows and vocabulary), "
                        "in a column between the model's and the line")
    p.add_argument("--unusual", action="store_true",
                   help="also print each line's unusualness (higher = more unusual: the model's calibrated "
                        "signals combined, as %%lm_score's COL_unusual), in a column before the line")
    p.add_argument("--encoding", metavar="ENC", default="utf-8",
                   help="text encoding of FILE, e.g. latin-1, cp1252, utf-16 [default: utf-8]")
    p.set_defaults(run=_run_score)

    p = sub.add_parser("demo", help="train on the standard library's docstrings and show what the model does",
                       description="Train a model on the docstrings of standard-library modules (text every Python "
                                   "has), then print completions and generated text. Takes well under a minute.")
    p.add_argument("-o", "--output", metavar="MODEL", default=None, help="also save the model here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_arguments(p.add_argument_group("training options ('from data': chosen from the data size)"), TrainConfig)
    p.set_defaults(run=_run_demo)

    p = sub.add_parser("info", help="what a model file holds", description="Describe a model file.")
    p.add_argument("model", metavar="MODEL", help="a model file")
    p.set_defaults(run=_run_info)
    return parser


def _load(path: str):
    from .api import load

    return load(path)


def _read_lines(path: str, encoding: str = "utf-8") -> List[str]:
    """The lines of a text file, or of stdin for '-' (refusing what is not text, as training does)."""
    return list(_iter_lines(path, encoding))


def _iter_lines(path: str, encoding: str = "utf-8") -> Iterator[str]:
    """_read_lines one line at a time (``lm-magics score`` streams its input)."""
    from .engine.data import check_encoding, file_lines, text_lines

    check_encoding(encoding)
    if path != "-":
        yield from (line.rstrip("\n") for line in file_lines(path, encoding))
        return
    stream = sys.stdin
    how = "pipe text in (`cat notes.txt | lm-magics ... -`) or give a file name instead of '-'"
    if stream is None or getattr(stream, "closed", False):
        raise DataError(f"'-' reads stdin, but stdin is closed; {how}.")
    try:
        tty = stream.isatty()
    except (OSError, ValueError):
        tty = False
    if tty:   # reading would wait for the keyboard: a forgotten pipe, not a way to type a corpus
        raise DataError(f"'-' reads stdin, but stdin is a terminal, not a pipe or file; {how}.")
    try:
        binary = getattr(stream, "buffer", None)
        if binary is None:       # a text stream without bytes underneath (io.StringIO)
            yield from stream.read().splitlines()
            return
        yield from (line.rstrip("\n") for line in text_lines(binary, "<stdin>", encoding))
    except OSError as exc:       # descriptor 0 closed under Python's feet (EBADF)
        raise DataError(f"Cannot read stdin: {exc.strerror or exc}; {how}.") from None


def _check_output(output: str, inputs: Sequence[str]) -> None:
    """Refuse, before any training, an output path that cannot be saved to or is one of the input files."""
    from .engine.data import files
    from .engine.persistence import check_writable, shown_path
    from .errors import DataError, ModelFileError

    target = check_writable(output)
    if not target.exists():
        return
    try:
        paths = files(*inputs).paths() if inputs and list(inputs) != ["-"] else []
    except DataError:
        return                  # reading the inputs reports that one
    for p in paths:
        try:
            same = os.path.samefile(p, target)
        except OSError:
            continue
        if same:
            raise ModelFileError(f"The output {shown_path(output)} is also an input file; writing the model "
                                 f"there would replace the text. Give another -o.")


def _run_train(args: argparse.Namespace) -> int:
    from . import api
    from .engine.data import files
    from .progress import TrainProgress, accepts

    from .engine.distributed import in_torchrun

    if "-" in args.files and len(args.files) > 1:
        raise _Usage(f"{PROG} train: '-' (stdin) cannot be combined with files")
    if not in_torchrun() or int(os.environ.get("RANK", "0")) == 0:
        _check_output(args.output, args.files)       # a bad -o fails now, not after the whole run
    if args.nproc is not None and not in_torchrun():   # `--nproc N`: relaunch under torchrun
        if args.init or args.files == ["-"]:
            raise _Usage(f"{PROG} train: --nproc works with files, not --init or stdin")
        _check_before_launch(args)       # a bad option is one line from here, not one from each rank
        return _launch_train(args)
    if args.files == ["-"]:
        data: object = "\n".join(_read_lines("-", args.encoding))
    else:
        data = files(*args.files, encoding=args.encoding)
    if in_torchrun():                                      # torchrun ... -m lm_magics train
        return _train_as_rank(args, data)
    model = None
    progress = None if args.quiet else TrainProgress(file=sys.stderr, epoch_lines=True)
    try:
        init = _load(args.init) if args.init else None
        plan = {"on_plan": progress.on_plan} if progress is not None and accepts(api.train, "on_plan") else {}
        model = api.train(data, init=init, on_step=progress and progress.on_step,
                          on_epoch=progress and progress.on_epoch, **_data_options(args),
                          **_train_options(args), **plan)
        if progress is not None:
            progress.close(model.report.stop_reason if model.report else "")
    except KeyboardInterrupt:   # lm.train raises it only before the first step
        when = "before the first step" if model is None else "before the model was saved"
        raise Interrupted(f"Training interrupted {when}: nothing was written{_kept(args.output)}") from None
    finally:
        if progress is not None:
            progress.close()
    return _save(model, args.output)


def _save(model, output: str) -> int:
    """Write a trained model to output and say so; 130 for an interrupted run, which never replaces a file
    that exists: existing.lm stays, and the run goes to existing.interrupted.lm (then .interrupted2.lm)."""
    from .display import TrainSummary, interrupted_text
    from .registry import derived_name

    out = output
    if model.interrupted and os.path.lexists(output):
        out = derived_name(os.path.lexists, "{0}.interrupted{n}{1}", *os.path.splitext(output))
    try:
        model.save(out)
    except KeyboardInterrupt:   # the write is all or nothing
        raise Interrupted(f"Interrupted while saving {out}: nothing was written{_kept(output)}") from None
    print(repr(TrainSummary(out, model)))
    print(f"saved {out}" + (" (interrupted: the best model so far)" if model.interrupted else ""))
    if not model.interrupted:
        return 0
    line = interrupted_text("interrupted", model.report.steps, out, model.meta.get("val_ppl"),
                            output if out != output else None)
    print(f"{PROG}: {line}", file=sys.stderr)
    return 130


def _kept(path: str) -> str:
    return f"; {path} is unchanged" if os.path.lexists(path) else ""


# ------------------------------------------------------------------------------ several processes (DDP)

# torchrun itself (torch.distributed.run's main), run so that a failed rank is reported by the rank's own
# one-line error and by the launcher's line, not also by torchrun's traceback and failure table.
_TORCHRUN = "import sys; from lm_magics.cli import torchrun_quietly; sys.exit(torchrun_quietly(sys.argv[1:]))"


def torchrun_command(nproc: int, args: Sequence[str]) -> List[str]:
    """torchrun ``--standalone --nproc_per_node N -m lm_magics <args>`` (one machine), through
    :func:`torchrun_quietly`."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        from .errors import ConfigError

        raise ConfigError(f"--nproc must be a whole number of at least 1, got {nproc!r}.")
    return [sys.executable, "-c", _TORCHRUN, "--standalone", f"--nproc_per_node={nproc}", "-m", "lm_magics", *args]


def _line(text: str) -> None:
    """One line to stderr in one write: ranks under torchrun share the stream, and print's two writes (the
    text, then the newline) can interleave with another rank's line."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def torchrun_quietly(argv: Sequence[str]) -> int:
    """Run torchrun (``torch.distributed.run.main``) with ``argv``; return its exit code.

    The same launcher, without its noise: every rank already prints what went wrong in one line, so a
    failed rank ends this with its exit code instead of torchrun's traceback, failure table and error
    log lines (a rank killed by a signal is named in one line, as it cannot say so itself), and a Ctrl-C
    or SIGTERM, which reaches the ranks too, ends it with 130 or 143 instead of a traceback. Unless
    OMP_NUM_THREADS is set, it is set to 1 as torchrun would, without torchrun's banner about it; each
    rank then takes its share of the cores (training.fit).
    """
    import logging

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)   # its "failed (exitcode ...)" lines
    try:
        main(list(argv))
    except ChildFailedError as exc:
        codes = []
        for rank, failure in sorted(exc.failures.items()):
            code = failure.exitcode
            codes.append(code)
            if code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = f"signal {-code}"
                _report("signal", rank, f"training process {rank} was killed by {name}"
                        + (" (out of memory?)" if name == "SIGKILL" else ""))
        return next((c for c in codes if c > 0), 1)
    except SignalException as exc:   # Ctrl-C (or SIGTERM) reached torchrun with the ranks: they stop together
        return 128 + int(exc.sigval)  # and rank 0 says what became of the model
    except Exception as exc:         # the launcher itself failed (its rendezvous, a port, a bad setting)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _report("launcher", 0, f"torchrun could not start the training processes ({clip_text(first, 200)})")
        return 1
    return 0


# Where the ranks and torchrun_quietly leave their one-line errors for the launcher (``train --nproc``),
# which reads them after every process ended and prints the one that says why the run failed.
_REPORT_ENV = "LM_MAGICS_RANK_REPORT"


def _report(kind: str, rank: object, text: str) -> None:
    """A rank's (or the launcher's) one-line error: to the launcher's report folder when there is one,
    else to stderr."""
    folder = os.environ.get(_REPORT_ENV)
    if folder and os.path.isdir(folder):
        try:
            with open(os.path.join(folder, f"{kind}.{rank}"), "w", encoding="utf-8") as fh:
                fh.write(text.strip().replace("\n", " "))
            return
        except OSError:
            pass
    _line(f"{PROG}: error: {text}")


def failure_cause(folder: str, code: int) -> str:
    """Why a ``train --nproc`` run failed, in one sentence, from what its processes left in ``folder``: a
    rank's own error first (the cause; the others only lost it), then a rank killed by a signal other
    than torchrun's SIGTERM to the survivors, then a launcher error, then a lost rank, else the exit code."""
    found: dict = {}
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        names = []
    for name in names:
        kind, _, rank = name.partition(".")
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text:
            found.setdefault(kind, []).append((int(rank) if rank.isdigit() else 0, text))
    signals = sorted(found.get("signal", []), key=lambda rt: ("SIGTERM" in rt[1], rt[0]))
    for kind, items in (("error", sorted(found.get("error", []))), ("signal", signals),
                        ("launcher", found.get("launcher", [])), ("lost", sorted(found.get("lost", [])))):
        if items:
            return items[0][1]
    return f"a training process failed (torchrun exit code {code})"


def launch(nproc: int, args: Sequence[str], report: Optional[str] = None) -> int:
    """Run ``lm_magics <args>`` under torchrun with nproc processes; returns torchrun's exit code.

    ``report``: a folder where the processes leave their one-line errors instead of printing them
    (see ``failure_cause``).

    A Ctrl-C reaches every process of the terminal's group: the ranks agree to stop after the same step
    and rank 0 writes what the rule for interrupted runs says, so the launcher waits for them instead of
    killing torchrun (a second Ctrl-C does).
    """
    import subprocess

    env = dict(os.environ, **({_REPORT_ENV: report} if report else {}))
    proc = subprocess.Popen(torchrun_command(nproc, args), env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.kill()
            raise


def _data_options(args: argparse.Namespace) -> dict:
    """The ``train`` flags that are api.train keywords but not TrainConfig fields."""
    return dict(stream=args.stream, cache_dir=args.cache_dir, cache_check=args.cache_check)


def _train_options(args: argparse.Namespace) -> dict:
    """The TrainConfig options given on the command line. A shell run has no default time budget (a
    script or a job trains as long as its options say): budget=None unless --budget is given."""
    return {"budget": None, **given(args, TrainConfig)}


def _check_before_launch(args: argparse.Namespace) -> None:
    """What one process would refuse at once (a bad option value, a kind that counts in one process) is
    refused here, before torchrun starts N processes that would each say it."""
    options = {k: v for k, v in _train_options(args).items() if k != "budget"}
    cfg = TrainConfig(**options)
    if getattr(cfg, "kind", None) == "ngram":
        raise ConfigError("An n-gram model counts in one process (a million tokens take seconds); drop --nproc.")


def _launch_train(args: argparse.Namespace) -> int:
    """``train --nproc N``: run the ranks under torchrun and end a failed run with ONE line: why it failed
    (the first rank's own error, or the rank that was killed) and what became of the model file (only
    rank 0 writes it, atomically, after every rank finished)."""
    import shutil
    import tempfile

    before = os.stat(args.output) if os.path.exists(args.output) else None
    folder = tempfile.mkdtemp(prefix="lm_magics_ranks_")
    try:
        code = launch(args.nproc, torchrun_args(args), report=folder)
        cause = failure_cause(folder, code)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if code in (0, 128 + signal.SIGINT, 128 + signal.SIGTERM):
        return code        # finished, or stopped by Ctrl-C / SIGTERM: rank 0 has said what it kept
    after = os.stat(args.output) if os.path.exists(args.output) else None
    if before is not None and after is not None and (after.st_mtime_ns, after.st_ino) == \
            (before.st_mtime_ns, before.st_ino):
        kept = f"'{args.output}' was left as it was"
    else:
        kept = f"no model was written to '{args.output}'" if after is None else f"'{args.output}' was written"
    cause = cause.rstrip().rstrip(".")
    _line(f"{PROG}: error: {cause}; the run stopped and {kept}.")
    return 1


def torchrun_args(args: argparse.Namespace) -> List[str]:
    """The ``train`` arguments for the torchrun children: everything but --nproc."""
    out = ["train", *args.files, "-o", args.output]
    if args.quiet:
        out.append("--quiet")
    if args.encoding != "utf-8":
        out += ["--encoding", args.encoding]
    if args.stream is not None:
        out.append("--stream" if args.stream else "--no-stream")
    if args.cache_dir is not None:
        out += ["--cache-dir", args.cache_dir]
    if args.cache_check != "stat":
        out += ["--cache-check", args.cache_check]
    for name, value in given(args, TrainConfig).items():
        out += ["--" + name.replace("_", "-"), str(value)]
    return out


def _train_as_rank(args: argparse.Namespace, data) -> int:
    """``lm-magics train`` as one rank under torchrun: every rank trains, rank 0 reports and saves."""
    from . import api
    from .progress import TrainProgress

    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    progress = TrainProgress(file=sys.stderr, epoch_lines=True) if rank == 0 and not args.quiet else None
    try:
        model = api.train(data, distributed=True, on_step=progress and progress.on_step,
                          on_epoch=progress and progress.on_epoch, **_data_options(args),
                          **_train_options(args))
        if progress is not None:
            progress.close(model.report.stop_reason if model.report else "")
    except dist.DistError as exc:         # another rank died mid-collective: say so in one line
        _report("lost", rank, f"training process {rank} lost another training process "
                              f"({clip_text((str(exc).splitlines() or [''])[0], 200)}); nothing was saved")
        return 1
    finally:
        if progress is not None:
            progress.close()
    ddp = model.meta["ddp"]
    for s in ddp["shards"]:
        if s["rank"] == rank and s["first_loss"] is not None:
            rss = f", peak RSS {s['peak_rss_mb']:.0f} MB" if s.get("peak_rss_mb") else ""
            _line(f"[rank {rank}/{ddp['world_size']}] shard tokens [{s['start']}, {s['stop']}) fingerprint "
                  f"{s['fingerprint']} loss {s['first_loss']:.3f} -> {s['last_loss']:.3f}"
                  f"{' (streamed)' if s.get('streamed') else ''}{rss}")
    if rank == 0:
        _save(model, args.output)    # the same rule; the exit code stays 0 so torchrun reports no failure
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from . import api
    from .demo import stdlib_docstrings
    from .display import Completions, TrainSummary
    from .progress import TrainProgress

    if args.output:
        _check_output(args.output, [])
    rows = stdlib_docstrings()
    print(f"Training on {len(rows):,} docstrings of the standard library "
          f"({sum(len(r.split()) for r in rows):,} words)...", file=sys.stderr)
    progress = None if args.quiet else TrainProgress(file=sys.stderr, epoch_lines=True)
    options = {"seed": 0, "epochs": 8, **given(args, TrainConfig)}   # about 20 s on 2 cores
    try:
        model = api.train(rows, on_step=progress and progress.on_step, on_epoch=progress and progress.on_epoch,
                          **options)
    finally:
        if progress is not None:
            progress.close()
    print(repr(TrainSummary("demo", model)))
    for prefix in ("Return the", "If the", "This function", "Raises"):
        print()
        print(repr(Completions(prefix, model.next_words(prefix, k=5), "demo")))
    for prefix in ("Return a", "The"):
        text = model.generate(prefix, n_words=20, temperature=0.7, seed=0, stop_at_eos=True, include_prefix=True)
        print(f"\nGenerated: {text}")
    if args.output:
        model.save(args.output)
        print(f"saved {args.output}")
    return 0


def _run_complete(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise ConfigError(f"-k must be at least 1, got {args.k}.")
    model = _load(args.model)
    for word, prob in model.next_words(" ".join(args.prefix), k=args.k):
        print(f"{word}\t{prob:.4f}")
    return 0


def _run_generate(args: argparse.Namespace) -> int:
    cfg = GenerateConfig(**given(args, GenerateConfig))
    model = _load(args.model)
    prefix = " ".join(args.prefix)
    print(model.generate_with(prefix, cfg, include_prefix=True).rstrip("\n"))
    return 0


_SCORE_LINES = 20_000   # lines read, scored and written at a time: memory stays flat on any file


def _run_score(args: argparse.Namespace) -> int:
    import numpy as np

    from .analysis import combined, side_parts

    model = _load(args.model)
    # The baseline is checked before scoring: a model without one fails at once, not after the file.
    baseline = side_parts(model)["ngram"] if args.baseline else None
    lines_in = _iter_lines(args.file, args.encoding)
    while True:   # read, score and write a chunk at a time: memory stays flat on any file
        lines = list(itertools.islice(lines_in, _SCORE_LINES))
        if not lines:
            break
        rows = [ln if ln.strip() else None for ln in lines]
        if args.unusual:      # one pass gives the perplexity and every signal of the unusualness
            sig = model.signals(rows, progress=False)
            columns = [list(np.exp2(sig["bits"]))]
        else:
            columns = [model.score(rows)]
        columns += [baseline.score(rows)] if baseline is not None else []
        columns += [list(combined(model, sig)[0])] if args.unusual else []
        sys.stdout.write("".join("\t".join(["nan" if math.isnan(p) else f"{p:.3f}" for p in ppls] + [line]) + "\n"
                                 for line, *ppls in zip(lines, *columns)))
        sys.stdout.flush()
    return 0


def _run_info(args: argparse.Namespace) -> int:
    model = _load(args.model)
    for key, value in model.info.items():
        print(f"{key}\t{value}")
    return 0


def _in_rank() -> bool:
    return bool(os.environ.get(_REPORT_ENV)) and "RANK" in os.environ and "LOCAL_RANK" in os.environ


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 LMError, 2 usage, 130 interrupted)."""
    try:
        parser = build_parser()
    except KeyboardInterrupt:            # a Ctrl-C while the options are being set up: nothing was done yet
        _line(f"{PROG}: interrupted while starting; nothing was done")
        return 130
    if sys.stdout is None:               # started with descriptor 1 closed (`lm-magics ... >&-`)
        print(f"{PROG}: error: stdout is closed; send the output to a terminal, a file or a pipe.",
              file=sys.stderr)
        return 1
    stdout = sys.stdout
    sys.stdout = _Output(stdout)
    try:
        args = check_parsed(parser.parse_args(argv))
        code = args.run(args)
        sys.stdout.flush()               # a full disk shows here, not as an "Exception ignored" at exit
        return code
    except _Usage as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except SystemExit as exc:            # --help / --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except (LMError, FloatingPointError) as exc:   # FloatingPointError: training diverged (lr too high)
        if _in_rank():
            _report("error", os.environ.get("RANK", "0"), str(exc))   # the launcher prints one line
        else:
            _line(f"{PROG}: error: {exc}")
        return 1
    except KeyboardInterrupt as exc:     # Interrupted says what was kept; a bare Ctrl-C says nothing
        _line(f"{PROG}: {exc or 'interrupted'}")
        return 130
    except BrokenPipeError:              # `lm-magics score ... | head`
        _drop_output(stdout)
        return 0
    except _OutputError as exc:          # `> /dev/full`
        _drop_output(stdout)
        print(f"{PROG}: error: cannot write the output: {exc}.", file=sys.stderr)
        return 1
    finally:
        sys.stdout = stdout


class _OutputError(Exception):
    """Writing to stdout failed (a full disk, a closed descriptor), as opposed to any other OSError."""


class _Output:
    """sys.stdout while main() runs: a failed write or flush becomes _OutputError (BrokenPipeError stays)."""

    def __init__(self, stream):
        self._stream = stream

    def _guard(self, method: str, *args):
        try:
            return getattr(self._stream, method)(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _OutputError(exc.strerror or str(exc)) from None

    def write(self, text: str) -> int:
        return self._guard("write", text)

    def flush(self) -> None:
        self._guard("flush")

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _drop_output(stream) -> None:
    """Point stdout's descriptor at /dev/null, so Python's own flush at exit cannot fail (and print) again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())

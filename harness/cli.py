"""The ``harness`` command: wiring the parsed options (``arguments``) to the rooms that do the work."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from .arguments import Parser, UsageError, build_parser
from .config import ConfigError, Sweep, apply_config, parse_decoder_spec, read_config, read_suite
from .conformance import run_conformance
from .dask_backend import BackendError, choose_scheduler, connect
from .decoder import ParameterError
from .dictionary import Dictionary
from .jobs import Job, choose_decoders, execute, fixed_problems, plan, run_settings
from .leaderboard import error_lines, gap_table, leaderboard_tables
from .memory import keep_freed_memory
from .plots import FORMATS, PlotError, draw_figures, figure_names
from .plugins import UnknownDecoder, load_registry
from .problem import Problem, ProblemError
from .progress import JobProgress
from .publish import choose, load_sources, publish
from .reports import (
    conformance_table,
    decoder_document,
    decoder_report,
    decoders_table,
    failed_plugins_table,
    unchecked_note,
    verification_table,
)
from .results import (
    DEFAULT_STORE,
    ResultStore,
    StoreError,
    best_records,
    read_records,
    record_files,
    well_formed,
)
from .runner import RunSettings
from .search import SearchError
from .tensors import WeightsError
from .training import TrainingSpec, train_encoder, write_trained
from .units import BudgetError
from .verify import (
    default_journals,
    exit_status,
    fresh_seed,
    planned_trials,
    sample_statement,
    summary,
    verify_record,
)
from .verify import label as verify_label
from .weights import detect_format, load_sae_decoder

USER_ERRORS = (BudgetError, ConfigError, ParameterError, ProblemError, SearchError, UnknownDecoder,
               StoreError, WeightsError, PlotError, BackendError)


# ------------------------------------------------------------------------ commands


def _sweep(args: argparse.Namespace, dictionary: list[str] | None = None) -> Sweep:
    sweep = Sweep()
    option = vars(args).get
    if option("suite"):
        apply_config(sweep, read_suite(args.suite), f"suite {args.suite!r}")
    elif option("config"):
        apply_config(sweep, read_config(args.config), args.config)
    overrides = {"n": option("n"), "k": option("k"),
                 "dictionary": dictionary or ([args.dictionary] if option("dictionary") else None),
                 "dictionary_format": option("format"), "dictionary_key": option("key"),
                 "noise": [args.noise] if option("noise") is not None else None,
                 "seed": option("seed"), "subsets_per_draw": option("subsets_per_draw"),
                 "target": option("target"), "trials": option("trials"), "d_max": option("d_max"),
                 "k_max": option("k_max"), "batch_size": option("batch_size"),
                 "resolution": option("resolution")}
    for key, value in overrides.items():
        if value is not None:
            setattr(sweep, key, value)
    # The command line's noise replaces the config's, whichever kind either names.
    if option("snr") is not None:
        sweep.snr = [args.snr]
        if option("noise") is None:
            sweep.noise = [0.0]
    elif option("noise") is not None:
        sweep.snr = []
    if args.plugin:
        sweep.decoders = [parse_decoder_spec(text) for text in args.plugin]
        sweep.decoder_sets = []
    elif not sweep.decoders and not sweep.decoder_sets:
        sweep.decoder_sets = ["builtin"]
    return sweep


def _warner(err: Console) -> Callable[[str], None]:
    """A reader's ``warn``: each sentence printed as a warning, as data, never as markup."""
    def warn(sentence: str) -> None:
        err.print(Text.assemble(("warning", "yellow"), " ", sentence), highlight=False, soft_wrap=True)
    return warn


def _say(err: Console, sentence: str) -> None:
    """One plain line of news on ``err``, as data, never as markup."""
    err.print(Text(sentence), highlight=False, soft_wrap=True)


def _settings(sweep: Sweep, err: Console, memory: int | None = None) -> RunSettings:
    return run_settings(sweep, memory, warn=_warner(err))


def _execute(jobs: list[Job], settings: RunSettings, args: argparse.Namespace, err: Console,
             sweep: Sweep) -> list[dict[str, Any]]:
    """Run ``jobs`` (see ``jobs.execute``) with a live progress display on ``err``, here or
    on the Dask scheduler that ``--scheduler``, the config or the environment names."""
    store = None if args.no_store else ResultStore(args.results)  # an absolute path, whatever decoders do
    scheduler = choose_scheduler(args.scheduler, sweep.scheduler)
    with contextlib.ExitStack() as stack:
        backend = stack.enter_context(connect(scheduler)) if scheduler is not None else None
        display = stack.enter_context(JobProgress(jobs, err))
        outcome = execute(jobs, settings, store=store, reuse=not args.force,
                          timeout=getattr(args, "timeout", None), threads=getattr(args, "threads", None),
                          events=display, warn=_warner(err), backend=backend,
                          note=partial(_say, err))
    if store is not None and len(outcome.reused) < len(jobs):
        err.print(f"records appended to {store.path}", markup=False, highlight=False)
    if outcome.reused and store is not None:
        err.print(f"{len(outcome.reused)} of {len(jobs)} runs were already in {store.path} and were reused "
                  "(--force measures them again)", markup=False, highlight=False)
    return outcome.records


#: The console width with ``--wide``: a bound no table reaches, so that none is cut.
WIDE = 10_000


def _table_width(args: argparse.Namespace, out: Console) -> int | None:
    """The width tables are fitted to: the terminal's (or COLUMNS), None with ``--wide``."""
    if getattr(args, "wide", False):
        out.width = WIDE
        return None
    return out.width


def _print_records(records: list[dict[str, Any]], args: argparse.Namespace, out: Console,
                   err: Console, title: str) -> None:
    if args.json:
        for record in records:
            out.file.write(json.dumps(record, sort_keys=True) + "\n")
        out.file.flush()
        return
    for table in leaderboard_tables(records, title=title, width=_table_width(args, out)):
        out.print(table)
    for line in error_lines(records):  # a decoder's message is text, whatever brackets it holds
        err.print(Text.assemble(("error", "red"), " ", line), highlight=False)


def command_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    sweep = _sweep(args)
    settings = _settings(sweep, err, args.memory)
    problems: list[tuple[Problem, Dictionary | None]] = [(p, None) for p in sweep.problems()]
    problems += fixed_problems(sweep, settings.memory)
    registry = load_registry()
    decoders = choose_decoders(sweep, registry)
    jobs = plan(problems, decoders)
    records = _execute(jobs, settings, args, err, sweep)
    _print_records(records, args, out, err, title="This run")
    return 1 if any(r["status"] != "ok" for r in records) else 0


GAP_DECODERS = ("topk", "mp", "omp", "amp-binary")
#: ``harness gap`` notes an SAE whose decoder rows' norms differ from 1 by more than this.
NORM_TOLERANCE = 1e-3


def _encoder_spec(path: str, format: str | None) -> str:
    """The decoder that runs the encoder of ``path``: ``learned`` for an MLP or LISTA, else ``sae``."""
    if (format or detect_format(path)) == "learned":
        return f"learned[weights={path}]"
    return f"sae[weights={path}" + (f",format={format}]" if format else "]")


def _same_decoder(paths: list[str], format: str | None) -> None:
    """Refuse encoders whose decoders differ: the gap compares encoders of one dictionary."""
    first, first_offset, _ = load_sae_decoder(paths[0], format)  # type: ignore[arg-type]
    for path in paths[1:]:
        rows, offset, _ = load_sae_decoder(path, format)  # type: ignore[arg-type]
        same = (rows.shape == first.shape and np.array_equal(rows, first)
                and np.array_equal(offset, first_offset))
        if not same:
            raise UsageError(f"the decoder of {path} ({rows.shape[0]} × {rows.shape[1]}) is not that of "
                             f"{paths[0]}; gap compares encoders of one dictionary, so give encoders "
                             "trained on the same one.")


def command_gap(args: argparse.Namespace, out: Console, err: Console) -> int:
    paths = list(args.sae)
    sweep = _sweep(args, dictionary=paths[:1])
    if args.plugin and len(paths) > 1:
        raise UsageError("--plugin names the decoders for one dictionary; give one path with it, or "
                         "leave --plugin out to compare the encoders of several paths.")
    if not args.plugin:
        _same_decoder(paths, args.format)
        registry = load_registry()
        sweep.decoders = [parse_decoder_spec(_encoder_spec(path, args.format)) for path in paths] + [
            parse_decoder_spec(name) for name in GAP_DECODERS if name in registry.decoders]
        sweep.decoder_sets = []
    settings = _settings(sweep, err, args.memory)
    registry = load_registry()
    decoders = choose_decoders(sweep, registry)
    problems = fixed_problems(sweep, settings.memory)
    for _, dictionary in problems[:1]:
        norms = getattr(dictionary, "given_norms", None)
        if norms is not None and np.max(np.abs(norms - 1.0)) > NORM_TOLERANCE:
            err.print(f"note: the SAE's decoder rows have norms from {norms.min():.3g} to {norms.max():.3g}; "
                      "the codewords are those rows normalised, so an active feature's latent is "
                      "1/‖W_dec[i]‖ in the SAE's units (docs/weights.md, \"The SAE's own frame\")",
                      markup=False, highlight=False)
    jobs = plan(problems, decoders)
    records = _execute(jobs, settings, args, err, sweep)
    _print_records(records, args, out, err, title="Amortisation gap")
    if not args.json:
        out.print(gap_table(records, width=_table_width(args, out), base=paths[0]))
    return 1 if any(r["status"] != "ok" for r in records) else 0


def command_plugins(args: argparse.Namespace, out: Console, err: Console) -> int:
    registry = load_registry()
    chosen = [registry.get(name) for name in args.names]  # an unknown name: one sentence, exit 2
    if args.json:
        entries = chosen or [entry for _, entry in sorted(registry.decoders.items())]
        document: dict[str, Any] = {"decoders": [decoder_document(entry) for entry in entries]}
        if not chosen:
            document["plugins"] = [p.as_dict() for p in registry.plugins]
        out.file.write(json.dumps(document, indent=2) + "\n")
        return 0
    if chosen:
        for entry in chosen:
            out.print(decoder_report(entry))
        return 0
    out.print(decoders_table(registry, width=_table_width(args, out)))
    if registry.errors:
        out.print(failed_plugins_table(registry))
    return 0


def command_check(args: argparse.Namespace, out: Console, err: Console) -> int:
    registry = load_registry()
    sweep = Sweep(decoders=[parse_decoder_spec(text) for text in args.decoders],
                  decoder_sets=[] if args.decoders else ["all"])
    report = []
    for decoder, entry in choose_decoders(sweep, registry):
        results = run_conformance(decoder)
        report.append((decoder, entry, results))
    note = None if args.decoders else unchecked_note(registry)
    if note:
        err.print(note, markup=False, highlight=False, soft_wrap=True)
    failed = sum(not r.passed for _, _, results in report for r in results)
    if args.json:
        document = [{"decoder": entry.name, "package": entry.package, "version": entry.version,
                     "params": decoder.params,
                     "checks": [{"name": r.name, "passed": r.passed, "skipped": r.skipped,
                                 "detail": r.detail}
                                for r in results]}
                    for decoder, entry, results in report]
        out.file.write(json.dumps(document, indent=2) + "\n")
        return 1 if failed else 0
    table = conformance_table(report, label=lambda decoder, entry: Job.name_with_params(decoder, entry))
    out.print(table)
    total = sum(len(results) for _, _, results in report)
    skipped = sum(r.skipped for _, _, results in report for r in results)
    note = f" ({skipped} skipped)" if skipped else ""
    err.print(f"{total - failed - skipped} of {total - skipped} checks passed{note}", highlight=False)
    return 1 if failed else 0


def command_train_sae(args: argparse.Namespace, out: Console, err: Console) -> int:
    spec = TrainingSpec(n=args.n, d=args.d, k=args.k, dictionary=args.dictionary, seed=args.seed,
                        activation=args.activation, steps=args.steps, batch_size=args.batch_size,
                        learning_rate=args.learning_rate, l1=args.l1, warmup=args.warmup, clip=args.clip,
                        aux=args.aux, eval_every=args.eval_every, encoder=args.encoder,
                        hidden=args.hidden or (), layers=args.layers, l0=args.l0, bandwidth=args.bandwidth,
                        objective=args.objective, dtype=args.dtype)
    try:
        spec.validate()
    except ValueError as exc:
        raise UsageError(str(exc).rstrip(".") + ".") from None
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), console=err) as progress:
        what = f"{args.activation} SAE" if args.encoder == "sae" else f"{args.activation} {args.encoder}"
        task = progress.add_task(f"train {what} N={args.n} d={args.d} k={args.k}",
                                 total=args.steps, loss="-")

        def advance(step: int, loss: float) -> None:
            progress.update(task, completed=step, loss=f"{loss:.4f}")

        trained = train_encoder(spec, on_step=advance)
    try:
        directory = write_trained(trained, args.out)
    except OSError as exc:
        raise StoreError(f"cannot write the SAE to {args.out}: {exc.strerror}.") from None
    except ValueError as exc:  # a weight beyond float16's range
        raise StoreError(f"cannot write the weights as {args.dtype}: {exc}; write them with "
                         "--dtype float32.") from None
    curve = Table(title="Loss curve (training: mean over each tenth; held-out: at its end)",
                  title_justify="left", header_style="bold")
    curve.add_column("steps", justify="right")
    curve.add_column("training loss", justify="right")
    curve.add_column("held-out loss", justify="right")
    held = dict(trained.heldout)
    curve.add_row("0", "", f"{held[0]:.5f}")
    tenth = max(1, len(trained.losses) // 10)
    for start in range(0, len(trained.losses), tenth):
        chunk = trained.losses[start:start + tenth]
        last = start + len(chunk)
        at_end = max((step for step in held if step <= last), default=0)
        curve.add_row(f"{start + 1}–{last}", f"{sum(chunk) / len(chunk):.5f}",
                      f"{held[at_end]:.5f} (step {at_end})")
    out.print(curve)
    kept = (f"the encoder of step {trained.best_step}" if trained.best_step
            else "the starting encoder" + (", the matched filter" if args.encoder != "lista" else ""))
    written, layout = (("SAE", "SAELens format") if args.encoder == "sae"
                       else (str(args.encoder).upper(), "the harness's encoder format"))
    err.print(f"{written} written to {directory} ({kept}: the lowest held-out loss; {layout}; "
              f"losses.csv holds every step; {trained.training_flops:.3g} FLOPs of training); "
              f"compare it with `harness gap {directory}`", markup=False, highlight=False)
    return 0


def command_leaderboard(args: argparse.Namespace, out: Console, err: Console) -> int:
    store = ResultStore(args.results)
    if not store.path.exists():
        raise StoreError(f"no results in {args.results}; run `harness run` first or pass --results DIR.")
    loaded = store.load(warn=_warner(err))
    records = best_records(well_formed(loaded))
    if len(records) < len(best_records(loaded)):
        err.print(Text.assemble(("warning", "yellow"), f" {store.path} holds malformed records; they are not "
                                "shown (`harness verify` names them)"), highlight=False)
    if args.json:
        for record in records:
            out.file.write(json.dumps(record, sort_keys=True) + "\n")
        return 0
    for table in leaderboard_tables(records, title=Text(f"Leaderboard ({store.path})"),
                                    width=_table_width(args, out)):
        out.print(table)
    return 0


def command_publish(args: argparse.Namespace, out: Console, err: Console) -> int:
    result = publish(args.sources or [args.out], args.out, figures=not args.no_figures, warn=_warner(err))
    for path in result.written:
        out.print(Text(f"wrote {path}"))
    if result.figures_skipped:
        err.print(Text.assemble(("warning", "yellow"), f" {result.figures_skipped}"))
    notes = [f"{result.unverifiable} unverifiable"] if result.unverifiable else []
    notes += [f"{result.withheld} records not shown"] if result.withheld else []
    out.print(Text(f"{result.rows} rows from {result.records} records"
                   + (f" ({', '.join(notes)}: see the page's Evidence section)" if notes else "")))
    return 0


def command_plot(args: argparse.Namespace, out: Console, err: Console) -> int:
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise PlotError(f"--out {args.out} is a file, not a directory; name a directory for the figures.")
    chosen, _, _ = choose(load_sources(args.sources or [DEFAULT_STORE], Path(args.out), warn=_warner(err)))
    records = [item.record for item in chosen]
    if not figure_names(records):
        raise StoreError("none of the records can be drawn: figures need successful runs on generated "
                         "dictionaries.")
    for path in draw_figures(records, args.out, tuple(args.format or FORMATS)):
        out.print(Text(f"wrote {path}"))
    return 0


def command_verify(args: argparse.Namespace, out: Console, err: Console) -> int:
    sources = [(f"{path}:{line}", record) for path in record_files(args.records)
               for line, record in read_records(path, warn=_warner(err))]
    if not sources:
        raise StoreError(f"no records in {', '.join(args.records)}.")
    registry = load_registry()
    sample = None if args.all else args.sample
    seed = fresh_seed() if args.seed is None else args.seed
    journals = None if args.no_journal else Path(args.journal) if args.journal else default_journals()
    if journals is None and not args.no_journal:
        _warner(err)("this check keeps no journal (there is no home directory for its cache; give "
                     "--journal DIR); if it is stopped, it starts over.")
    if not args.json:
        err.print(f"sample seed {seed} (repeat this check with --seed {seed}"
                  f"{'' if journals is None else ', which also resumes it if it is stopped'}); "
                  f"{sample_statement(sample)}", markup=False, highlight=False, soft_wrap=True)
    verdicts = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True,
                  disable=args.json) as progress:
        task = progress.add_task("verifying", total=sum(planned_trials(r, sample) for _, r in sources))
        for source, record in sources:
            progress.update(task, description=f"verifying {verify_label(record)}")
            verdicts.append(verify_record(record, source, registry, sample=sample, seed=seed,
                                          on_trials=lambda n: progress.advance(task, n),
                                          journals=journals, warn=_warner(err),
                                          note=partial(_say, err),
                                          memory=args.memory))
    if args.json:
        for verdict in verdicts:
            out.file.write(json.dumps(verdict.as_dict(), sort_keys=True) + "\n")
        out.file.flush()
        return exit_status(verdicts)
    table = verification_table(verdicts)
    out.print(table)
    out.print(summary(verdicts), markup=False, highlight=False)
    return exit_status(verdicts)


COMMANDS = {"run": command_run, "gap": command_gap, "train-sae": command_train_sae,
            "plugins": command_plugins,
            "check": command_check, "leaderboard": command_leaderboard, "verify": command_verify,
            "publish": command_publish, "plot": command_plot}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harness`` console script; returns the exit status."""
    # Tables fit the terminal, or COLUMNS when it is set; piped to a file or another program
    # without COLUMNS, they get room for every column.
    fits = sys.stdout.isatty() or os.environ.get("COLUMNS", "").strip().isdigit()
    out = Console(soft_wrap=False, width=None if fits else 200)
    err = Console(stderr=True)
    parser = build_parser()
    try:
        Parser.argv = list(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError(f"no command given; choose one of {', '.join(COMMANDS)} (see `harness --help`).")
        return COMMANDS[args.command](args, out, err)
    except (UsageError, *USER_ERRORS) as exc:
        # One line, whatever the user's text held: a path or an argument may contain newlines.
        message = str(exc).replace("\r", "\\r").replace("\n", "\\n")
        err.print(f"harness: error: {message}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("harness: interrupted; finished records are in the store.", highlight=False)
        return 130


def console() -> None:
    """The ``harness`` console script: :func:`main` in a process that keeps its freed
    memory for reuse (``memory.keep_freed_memory``), then exits with its status."""
    keep_freed_memory()
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    console()

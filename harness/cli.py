"""The ``harness`` command: argument parsing and wiring, nothing else."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

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

from . import __version__
from .config import SUITES, ConfigError, Sweep, apply_config, parse_decoder_spec, read_config, read_suite
from .conformance import run_conformance
from .decoder import ParameterError
from .dictionary import Dictionary
from .jobs import Job, choose_decoders, execute, fixed_problems, plan, run_settings
from .leaderboard import error_lines, gap_table, leaderboard_tables
from .memory import BudgetError, parse_size
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
from .runner import (
    RunSettings,
)
from .search import SearchError
from .training import TrainingSpec, train_encoder, write_saelens
from .verify import (
    DEFAULT_SAMPLE,
    DETECT_FRACTION,
    DETECT_PROBABILITY,
    exit_status,
    fresh_seed,
    planned_trials,
    sample_statement,
    summary,
    verify_record,
)
from .verify import label as verify_label
from .weights import WeightsError

USER_ERRORS = (BudgetError, ConfigError, ParameterError, ProblemError, SearchError, UnknownDecoder,
               StoreError, WeightsError, PlotError)


class UsageError(Exception):
    """A command line the harness cannot act on; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    #: The command line being parsed, to name the value an error is about.
    argv: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        missing = re.fullmatch(r"argument (\S+?)(?:/\S+)?: expected one argument", message)
        if missing:
            options = missing.group(1).split("/")
            given = [self.argv[i + 1] for i, arg in enumerate(self.argv[:-1]) if arg in options]
            if given and given[-1].startswith("-"):
                message = (f"argument {options[0]}: expected a value, not {given[-1]!r} (values that begin "
                           "with '-' are read as options, and none of the harness's options takes a "
                           "negative value)")
        raise UsageError(f"{message} (see `{self.prog} --help`).")


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")

#: The most worker threads (or processes) a run may ask for.
MAX_WORKERS = 1024
#: The longest time limit a run may set: thirty days.
MAX_TIMEOUT = 30 * 24 * 3600.0


def _workers(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected a number of workers from 1 to {MAX_WORKERS}, "
                                         f"not {text!r}")
    return value


_non_negative_int = _int_at_least(0, "a non-negative integer")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"expected a positive number of seconds, at most {MAX_TIMEOUT:g}, not {text!r}")
    return value


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except BudgetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_measurement_options(parser: argparse.ArgumentParser, probed: str) -> None:
    parser.add_argument("--noise", type=_number, metavar="SIGMA", help="noise level σ ≥ 0 (default 0)")
    parser.add_argument("--target", type=_number, metavar="Q",
                        help="headline success rate q (default 0.95)")
    parser.add_argument("--trials", type=_positive_int, metavar="T",
                        help=f"trials per probed {probed}, at most (default 256)")
    parser.add_argument("--seed", type=_non_negative_int, help="seed of every instance (default 0)")
    parser.add_argument("--resolution", type=_number, metavar="R",
                        help="stop narrowing d* at this relative width (default 0.01; 0: to one dimension)")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", "--threads", dest="threads", type=_workers, metavar="W",
                        help="worker threads for products and compiled kernels (default: all cores; "
                             "changes speed only)")
    parser.add_argument("--memory", type=_size, metavar="SIZE",
                        help="memory budget, like 4GiB or 512MiB (default 4GiB); a run that cannot "
                             "fit is refused before it starts")
    parser.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                        help="stop a decoder's run after this long and record it as an error; each run "
                             "then goes to a worker process of its own (default: no limit, in-process)")
    parser.add_argument("--results", metavar="DIR", default=DEFAULT_STORE,
                        help=f"results store directory (default ./{DEFAULT_STORE})")
    parser.add_argument("--no-store", action="store_true", help="do not append the records to the store")
    parser.add_argument("--force", action="store_true",
                        help="measure again what the store already holds (by default such runs are reused)")
    parser.add_argument("--json", action="store_true",
                        help="print the records as JSON lines instead of the tables")
    parser.add_argument("--wide", action="store_true",
                        help="print every column of the tables in full, however wide (default: fit the "
                             "terminal, or COLUMNS)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description=(
        "Benchmark sparse decoders on superposition codes: the minimal dimension d* at which "
        "a decoder reads a k-sparse set back exactly, and its bitrate."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="measure d* and bits/dim of decoders",
                              description="Measure d*(q), d*(0.5) and bits/dim of decoders on the "
                                          "standard problem, store the records and print the leaderboard.")
    run.add_argument("--plugin", "-p", action="append", metavar="NAME[key=value,...]", default=[],
                     help="a decoder to run, with parameters (repeatable; default: the built-ins)")
    run.add_argument("--n", type=_positive_int, action="append", metavar="N",
                     help="number of features N (repeatable; default 4096)")
    run.add_argument("--k", type=_positive_int, action="append", metavar="K",
                     help="number of active features k (repeatable; default 16)")
    run.add_argument("--dictionary", metavar="KIND|PATH",
                     help="rademacher (default) or gaussian, or a dictionary file: a d × N matrix "
                          "(.npy, .npz, .safetensors) or an SAE's weights (its decoder), which "
                          "fixes d and makes k*(q) the score")
    _add_measurement_options(run, "dimension")
    run.add_argument("--subsets-per-draw", type=_positive_int, metavar="S",
                     help="subsets decoded per dictionary draw (default 32; part of the problem)")
    run.add_argument("--d-max", type=_positive_int, metavar="D",
                     help="give up above this dimension (default 16 dims/bit + 64)")
    run.add_argument("--k-max", type=_positive_int, metavar="K",
                     help="fixed dictionaries: the largest k tried (default min(d, N − 1))")
    run.add_argument("--batch-size", type=_positive_int, metavar="B",
                     help="signals per decoder call (default 32; changes speed only)")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE.toml", help="a TOML sweep (see the README)")
    source.add_argument("--suite", choices=SUITES, help="a named suite of SPEC §5")
    _add_output_options(run)

    gap = commands.add_parser("gap", help="an SAE's encoder against iterative decoders on its own "
                                          "dictionary", description=(
        "Run a sparse autoencoder's own encoder and the iterative decoders (topk, mp, omp, "
        "amp-binary, as installed) on the SAE's decoder matrix, and show each one's k*(q), "
        "bits/dim and ratio to the encoder: the amortisation gap."))
    gap.add_argument("sae", metavar="SAE_PATH", help="the SAE's weight file or directory")
    gap.add_argument("--format", choices=("saelens", "sparsify", "gemmascope", "plain"),
                     help="the weight format (default: detected)")
    gap.add_argument("--plugin", "-p", action="append", metavar="NAME[key=value,...]", default=[],
                     help="decoders to compare instead of the default set (repeatable)")
    _add_measurement_options(gap, "k")
    gap.add_argument("--k-max", type=_positive_int, metavar="K",
                     help="the largest k tried (default min(d, N − 1))")
    _add_output_options(gap)

    train = commands.add_parser("train-sae", help="train an SAE encoder on the standard problem",
                                description=(
        "Train a sparse-autoencoder encoder (TopK or ReLU, NumPy) on instances of the standard "
        "problem whose dictionary is known and fixed as the SAE's decoder, and write it in "
        "SAELens format with its loss curve. The result is a fixed-dictionary problem for "
        "`harness run --dictionary OUT` and an encoder for `harness gap OUT`."))
    train.add_argument("--out", required=True, metavar="DIR", help="directory to write the SAE to")
    train.add_argument("--d", type=_positive_int, required=True, metavar="D", help="dimension d")
    train.add_argument("--n", type=_positive_int, default=4096, metavar="N",
                       help="number of features N (default 4096)")
    train.add_argument("--k", type=_positive_int, default=16, metavar="K",
                       help="active features per instance, and the TopK k (default 16)")
    train.add_argument("--dictionary", choices=("rademacher", "gaussian"), default="rademacher",
                       help="the generated dictionary (draw 0 of the seed) that is the decoder")
    train.add_argument("--seed", type=_non_negative_int, default=0, help="seed (default 0)")
    train.add_argument("--activation", choices=("topk", "relu"), default="topk",
                       help="encoder activation (default topk)")
    train.add_argument("--steps", type=_positive_int, default=2000, help="Adam steps (default 2000)")
    train.add_argument("--batch-size", type=_positive_int, default=256, metavar="B",
                       help="instances per step (default 256)")
    train.add_argument("--learning-rate", type=_number, default=1e-3, metavar="LR",
                       help="Adam step size (default 1e-3)")
    train.add_argument("--l1", type=_number, default=0.05,
                       help="ReLU only: weight of the L1 penalty on the latents (default 0.05)")

    plugins = commands.add_parser("plugins", help="list installed decoder plugins",
                                  description="List decoders, the plugins that provide them, "
                                              "and plugins that failed to load.")
    plugins.add_argument("names", nargs="*", metavar="NAME",
                         help="show these decoders in full: description, parameters with their types, "
                              "defaults, bounds and meaning, capabilities, package and version")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of tables")

    check = commands.add_parser("check", help="run the decoder conformance suite",
                                description="Check that decoders keep the contract every decoder must "
                                            "keep (valid sets, determinism, batch independence, edge "
                                            "cases). Exit status 1 if any check fails.")
    check.add_argument("decoders", nargs="*", metavar="NAME[key=value,...]",
                       help="decoders to check (default: every installed decoder)")
    check.add_argument("--json", action="store_true", help="print the results as JSON")

    board = commands.add_parser("leaderboard", help="the best stored result per decoder and problem",
                                description="Show the best record per (decoder, params, problem) "
                                            "in the store.")
    board.add_argument("--results", metavar="DIR", default=DEFAULT_STORE,
                       help=f"results store directory (default ./{DEFAULT_STORE})")
    board.add_argument("--json", action="store_true", help="print the records as JSON lines")
    board.add_argument("--wide", action="store_true",
                        help="print every column of the tables in full, however wide (default: fit the "
                             "terminal, or COLUMNS)")

    publish = commands.add_parser("publish", help="write the leaderboard's tables and figures from records",
                                  description=(
        "Merge the records under SOURCES (files or directories of *.jsonl; default: the output "
        "directory) and write the leaderboard into the output directory: README.md, "
        "leaderboard.html, leaderboard.csv, leaderboard.json and, with matplotlib installed, "
        "figures/. The same records always give the same files, byte for byte."))
    publish.add_argument("sources", nargs="*", metavar="SOURCES",
                         help="records files or directories holding them (default: the output directory)")
    publish.add_argument("--out", default="leaderboard", metavar="DIR",
                         help="directory to write into (default ./leaderboard)")
    publish.add_argument("--no-figures", action="store_true", help="write the tables only")

    plot = commands.add_parser("plot", help="draw figures from records (needs matplotlib)", description=(
        "Draw, as PNG and SVG, the minimal dimension d* against k per decoder with the entropy "
        "line and a dims/bit axis, the success probability against d per decoder, and, for the "
        "noisy track, d*/d_Sh. Needs matplotlib: pip install 'superposition-harness[plot]'."))
    plot.add_argument("sources", nargs="*", metavar="SOURCES",
                      help=f"records files or directories holding them (default ./{DEFAULT_STORE})")
    plot.add_argument("--out", default="figures", metavar="DIR",
                      help="directory to write into (default ./figures)")
    plot.add_argument("--format", action="append", choices=FORMATS, metavar="FMT",
                      help="png or svg (repeatable; default both)")

    verify = commands.add_parser("verify", help="derive every number of records again from their evidence",
                                 description=(
        "Check result records: their counts follow from their per-trial outcomes, their estimates "
        "from their counts (the search replayed), their score from their estimates, and a random "
        "sample of their trials, re-run from the stored seeds with the installed decoder, comes out "
        f"as stored. The sample ({DEFAULT_SAMPLE} trials a record by default) is drawn from a fresh "
        "seed that is printed, so that nobody can know it in advance and anyone can repeat it "
        "(--seed). Exit status 0 if every record verified, 1 if any failed, 3 if none failed but "
        "some could not be verified (no per-trial outcomes, another decoder or harness version, a "
        "decoder that is not installed, a dictionary file that is not here)."))
    verify.add_argument("records", nargs="+", metavar="RECORDS",
                        help="records files (.jsonl) or directories holding them")
    verify.add_argument("--sample", type=_non_negative_int, default=DEFAULT_SAMPLE, metavar="T",
                        help=f"trials re-run per record, drawn at random (default {DEFAULT_SAMPLE}, which "
                             f"catches a record with {DETECT_FRACTION:.0%} of its trials flipped with "
                             f"probability ≥ {DETECT_PROBABILITY}; 0 re-runs none)")
    verify.add_argument("--all", action="store_true", help="re-run every trial of every record")
    verify.add_argument("--seed", type=_non_negative_int, default=None,
                        help="seed of the sample, to repeat a check (default: drawn from fresh entropy)")
    verify.add_argument("--json", action="store_true", help="print one JSON verdict per record")
    return parser


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
                 "noise": [args.noise] if option("noise") is not None else None,
                 "seed": option("seed"), "subsets_per_draw": option("subsets_per_draw"),
                 "target": option("target"), "trials": option("trials"), "d_max": option("d_max"),
                 "k_max": option("k_max"), "batch_size": option("batch_size"),
                 "resolution": option("resolution")}
    for key, value in overrides.items():
        if value is not None:
            setattr(sweep, key, value)
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


def _settings(sweep: Sweep, err: Console, memory: int | None = None) -> RunSettings:
    return run_settings(sweep, memory, warn=_warner(err))


def _execute(jobs: list[Job], settings: RunSettings, args: argparse.Namespace,
             err: Console) -> list[dict[str, Any]]:
    """Run ``jobs`` (see ``jobs.execute``) with a live progress display on ``err``."""
    store = None if args.no_store else ResultStore(args.results)  # an absolute path, whatever decoders do
    with JobProgress(jobs, err) as display:
        outcome = execute(jobs, settings, store=store, reuse=not args.force,
                          timeout=getattr(args, "timeout", None), threads=getattr(args, "threads", None),
                          events=display, warn=_warner(err))
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
    records = _execute(jobs, settings, args, err)
    _print_records(records, args, out, err, title="This run")
    return 1 if any(r["status"] != "ok" for r in records) else 0


GAP_DECODERS = ("topk", "mp", "omp", "amp-binary")
#: ``harness gap`` notes an SAE whose decoder rows' norms differ from 1 by more than this.
NORM_TOLERANCE = 1e-3


def command_gap(args: argparse.Namespace, out: Console, err: Console) -> int:
    sweep = _sweep(args, dictionary=[args.sae])
    if not args.plugin:
        registry = load_registry()
        weights = f"weights={args.sae}" + (f",format={args.format}" if args.format else "")
        sweep.decoders = [parse_decoder_spec(f"sae[{weights}]")] + [
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
    records = _execute(jobs, settings, args, err)
    _print_records(records, args, out, err, title="Amortisation gap")
    if not args.json:
        out.print(gap_table(records, width=_table_width(args, out)))
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
    out.print(decoders_table(registry))
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
                        learning_rate=args.learning_rate, l1=args.l1)
    try:
        spec.validate()
    except ValueError as exc:
        raise UsageError(str(exc).rstrip(".") + ".") from None
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), console=err) as progress:
        task = progress.add_task(f"train {args.activation} SAE N={args.n} d={args.d} k={args.k}",
                                 total=args.steps, loss="-")

        def advance(step: int, loss: float) -> None:
            progress.update(task, completed=step, loss=f"{loss:.4f}")

        trained = train_encoder(spec, on_step=advance)
    try:
        directory = write_saelens(trained, args.out)
    except OSError as exc:
        raise StoreError(f"cannot write the SAE to {args.out}: {exc.strerror}.") from None
    curve = Table(title="Loss curve (mean over each tenth of training)", title_justify="left",
                  header_style="bold")
    curve.add_column("steps", justify="right")
    curve.add_column("loss", justify="right")
    tenth = max(1, len(trained.losses) // 10)
    for start in range(0, len(trained.losses), tenth):
        chunk = trained.losses[start:start + tenth]
        curve.add_row(f"{start + 1}–{start + len(chunk)}", f"{sum(chunk) / len(chunk):.5f}")
    out.print(curve)
    kept = f"the encoder of step {trained.best_step}" if trained.best_step else "the initial encoder"
    err.print(f"SAE written to {directory} ({kept}, the lowest mean loss over 50 steps; SAELens "
              "format; losses.csv holds every step); "
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
    if not args.json:
        err.print(f"sample seed {seed} (repeat this check with --seed {seed}); {sample_statement(sample)}",
                  markup=False, highlight=False, soft_wrap=True)
    verdicts = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True,
                  disable=args.json) as progress:
        task = progress.add_task("verifying", total=sum(planned_trials(r, sample) for _, r in sources))
        for source, record in sources:
            progress.update(task, description=f"verifying {verify_label(record)}")
            verdicts.append(verify_record(record, source, registry, sample=sample, seed=seed,
                                          on_trials=lambda n: progress.advance(task, n)))
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
        _Parser.argv = list(sys.argv[1:] if argv is None else argv)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

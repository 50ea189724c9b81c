"""The ``harness`` command line: its options, their help, and the checks on their values.

Every value a user can get wrong is checked here and refused with one sentence that
names the option (``UsageError``); what the options mean is decided by the commands in
``cli``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import __version__
from .config import SUITES
from .memory import DEFAULT_MEMORY
from .plots import FORMATS
from .results import DEFAULT_STORE
from .units import BudgetError, parse_size
from .verify import DEFAULT_SAMPLE, DETECT_FRACTION, DETECT_PROBABILITY


class UsageError(Exception):
    """A command line the harness cannot act on; printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
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


def _widths(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    if not 1 <= len(parts) <= 2:
        raise argparse.ArgumentTypeError(f"expected one or two widths W or W,W, not {text!r}")
    return tuple(_positive_int(part.strip()) for part in parts)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except BudgetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_reading_options(parser: argparse.ArgumentParser, format_help: str) -> None:
    parser.add_argument("--format", choices=("saelens", "sparsify", "gemmascope", "plain", "learned"),
                        help=format_help)
    parser.add_argument("--key", metavar="NAME",
                        help="the array to read from a .npz or .safetensors dictionary file that "
                             "holds several (it is then read as a d × N matrix)")


def _add_measurement_options(parser: argparse.ArgumentParser, probed: str) -> None:
    parser.add_argument("--noise", type=_number, metavar="SIGMA", help="noise level σ ≥ 0 (default 0)")
    parser.add_argument("--snr", type=_number, metavar="S",
                        help="a fixed signal-to-noise ratio per dimension instead (noise variance k/(d·S))")
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
    parser.add_argument("--scheduler", metavar="WHERE",
                        help="run the jobs on Dask: local[:W] (W single-threaded worker processes "
                             "started here) or a scheduler's address, like tcp://host:8786 (default: "
                             "the config's [run] scheduler, else $HARNESS_SCHEDULER, else this machine); "
                             "changes speed only; needs pip install 'superposition-harness[dask]'")
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
    parser = Parser(prog="harness", description=(
        "Benchmark sparse decoders on superposition codes: the minimal dimension d* at which "
        "a decoder reads a k-sparse set back exactly, and its bitrate."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

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
    _add_reading_options(run, "the dictionary file's SAE layout (default: detected)")
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
    source.add_argument("--suite", choices=SUITES, help="a named suite of docs/contract.md §6")
    _add_output_options(run)

    gap = commands.add_parser("gap", help="an SAE's encoder against iterative decoders on its own "
                                          "dictionary", description=(
        "Run a sparse autoencoder's own encoder and the iterative decoders (topk, mp, omp, "
        "amp-binary, as installed) on the SAE's decoder matrix, and show each one's k*(q), "
        "bits/dim and ratio to the encoder: the amortisation gap. More paths add more encoders "
        "of the same dictionary (SAEs, or MLP and LISTA encoders from `harness train-sae "
        "--encoder`), each run by its decoder (sae or learned)."))
    gap.add_argument("sae", metavar="SAE_PATH", nargs="+",
                     help="the SAE's weight file or directory; more paths: encoders with the same decoder")
    _add_reading_options(gap, "the weight format of every path, for its encoder and its dictionary "
                              "(default: detected)")
    gap.add_argument("--plugin", "-p", action="append", metavar="NAME[key=value,...]", default=[],
                     help="decoders to compare instead of the default set, on the first path's "
                          "dictionary (repeatable)")
    _add_measurement_options(gap, "k")
    gap.add_argument("--k-max", type=_positive_int, metavar="K",
                     help="the largest k tried (default min(d, N − 1))")
    _add_output_options(gap)

    train = commands.add_parser("train-sae", help="train an SAE, MLP or LISTA encoder on the standard "
                                                  "problem",
                                description=(
        "Train an encoder (an SAE's, an MLP or unrolled ISTA; TopK, ReLU or JumpReLU latents; NumPy) on "
        "instances of the standard problem whose dictionary is known and fixed as the decoder, "
        "and write it with its loss curve: an SAE in SAELens format, an MLP or LISTA in the "
        "harness's encoder format (docs/training.md). The result is a fixed-dictionary problem "
        "for `harness run --dictionary OUT` and an encoder for `harness gap OUT`."))
    train.add_argument("--out", required=True, metavar="DIR", help="directory to write the encoder to")
    train.add_argument("--encoder", choices=("sae", "mlp", "lista"), default="sae",
                       help="what to train: an SAE's one-step encoder, an MLP with one or two hidden "
                            "layers, or LISTA (default sae)")
    train.add_argument("--objective", choices=("reconstruction", "supervised", "ranking"),
                       default="reconstruction",
                       help="what training minimises: the reconstruction ½‖x − F z‖² through the fixed "
                            "decoder (as SAEs are trained); or, from the true codes, which this problem "
                            "knows, one minus the cosine of the scores and the codes (supervised) or the "
                            "softmax cross-entropy of the true latents among all scores (ranking) "
                            "(default reconstruction)")
    train.add_argument("--hidden", type=_widths, metavar="W[,W]",
                       help="MLP: the hidden layers' widths, each at least 2d (default 4d)")
    train.add_argument("--layers", type=_positive_int, default=4, metavar="T",
                       help="LISTA: unrolled layers (default 4)")
    train.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                       help="what the weights are stored as: float16 takes half the bytes, each value "
                            "rounded once when written; what is measured is what the file holds "
                            "(default float32)")
    train.add_argument("--d", type=_positive_int, required=True, metavar="D", help="dimension d")
    train.add_argument("--n", type=_positive_int, default=4096, metavar="N",
                       help="number of features N (default 4096)")
    train.add_argument("--k", type=_positive_int, default=16, metavar="K",
                       help="active features per instance, and the TopK k (default 16)")
    train.add_argument("--dictionary", choices=("rademacher", "gaussian"), default="rademacher",
                       help="the generated dictionary (draw 0 of the seed) that is the decoder")
    train.add_argument("--seed", type=_non_negative_int, default=0, help="seed (default 0)")
    train.add_argument("--activation", choices=("topk", "relu", "jumprelu"), default="topk",
                       help="the latents: the top k scores, the positive ones, or (SAE only) those "
                            "above a learned threshold per latent (default topk)")
    train.add_argument("--steps", type=_positive_int, default=2000, help="Adam steps (default 2000)")
    train.add_argument("--batch-size", type=_positive_int, default=256, metavar="B",
                       help="instances per step (default 256)")
    train.add_argument("--learning-rate", type=_number, default=5e-5, metavar="LR",
                       help="Adam's peak step size, after a linear warm-up and before a linear "
                            "decay to 0 (default 5e-5)")
    train.add_argument("--warmup", type=_non_negative_int, default=100, metavar="STEPS",
                       help="steps of linear learning-rate warm-up (default 100)")
    train.add_argument("--clip", type=_number, default=1.0,
                       help="clip the gradient to this global norm (default 1)")
    train.add_argument("--aux", type=_number, default=1 / 32,
                       help="weight of the AuxK loss on latents dead for 200 steps (default 1/32; 0: off)")
    train.add_argument("--eval-every", type=_positive_int, default=50, metavar="STEPS",
                       help="score the encoder on held-out signals this often; the best is kept "
                            "(default 50)")
    train.add_argument("--l1", type=_number, default=0.05,
                       help="ReLU only: weight of the L1 penalty on the latents (default 0.05)")
    train.add_argument("--l0", type=_number, default=0.01,
                       help="JumpReLU only: weight of the L0 penalty, the number of active latents "
                            "(default 0.01)")
    train.add_argument("--bandwidth", type=_number, default=0.05, metavar="EPS",
                       help="JumpReLU only: width of the kernel of the threshold's pseudo-derivative "
                            "(default 0.05)")

    plugins = commands.add_parser("plugins", help="list installed decoder plugins",
                                  description="List decoders, the plugins that provide them, "
                                              "and plugins that failed to load.")
    plugins.add_argument("names", nargs="*", metavar="NAME",
                         help="show these decoders in full: description, parameters with their types, "
                              "defaults, bounds and meaning, capabilities, package and version")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of tables")
    plugins.add_argument("--wide", action="store_true",
                         help="print every column of the table in full, however wide (default: fit the "
                              "terminal, or COLUMNS)")

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
                             f"catches a record with {DETECT_FRACTION:.0%}% of its trials flipped with "
                             f"probability ≥ {DETECT_PROBABILITY}; 0 re-runs none)")
    verify.add_argument("--all", action="store_true", help="re-run every trial of every record")
    verify.add_argument("--seed", type=_non_negative_int, default=None,
                        help="seed of the sample, to repeat a check (default: drawn from fresh entropy)")
    verify.add_argument("--json", action="store_true", help="print one JSON verdict per record")
    verify.add_argument("--memory", type=_size, metavar="SIZE", default=DEFAULT_MEMORY,
                        help="memory budget of the re-run trials, like 4GiB (default 4GiB; as for a run, it "
                             "changes speed only: give a record made with --memory the same)")
    journaling = verify.add_mutually_exclusive_group()
    journaling.add_argument("--journal", metavar="DIR", default=None,
                            help="where the re-run trials are journaled as they come, so that a check "
                                 "stopped midway resumes when run again with the same --seed (default: "
                                 "$XDG_CACHE_HOME/superposition-harness/verify, else under ~/.cache)")
    journaling.add_argument("--no-journal", action="store_true",
                            help="keep no journal: a check stopped midway starts over")
    return parser

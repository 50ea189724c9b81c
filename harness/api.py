"""The Python API: measure a decoder from a notebook or a script, and read records back.

:func:`score` runs one decoder on one problem and returns a :class:`Score` whose
``record`` is the record ``harness run --json`` prints for the same settings, provenance
included; :func:`sweep` runs every decoder on every problem of a grid; and
:func:`records_frame` turns records (or records files) into a pandas DataFrame when
pandas is installed. The defaults are the command line's.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .config import DecoderSpec, Sweep, parse_decoder_spec
from .decoder import Decoder, parse_params
from .jobs import Job, execute, fixed_problems, plan, run_settings
from .plugins import DecoderEntry, Registry, load_registry
from .problem import FIXED, track_of
from .results import ResultStore, read_records, record_files

if TYPE_CHECKING:
    import pandas

#: A decoder as the API takes it: a name (``"mp"``, ``"omp[positive=false]"``), a
#: decoder class, or a decoder already made with its parameters.
DecoderLike = Union[str, type[Decoder], Decoder]  # noqa: UP007 (a runtime alias on Python 3.10)

#: Version recorded for a decoder class that no installed plugin registered.
UNREGISTERED_VERSION = "0+unregistered"


@dataclass(frozen=True)
class Score:
    """One decoder's result on one problem; ``record`` is the full result record."""

    record: dict[str, Any] = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"

    @property
    def error(self) -> str | None:
        return self.record.get("error")

    @property
    def decoder(self) -> str:
        return str(self.record["decoder"])

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.record["params"])

    @property
    def problem(self) -> dict[str, Any]:
        return dict(self.record["problem"])

    @property
    def d_star(self) -> int | None:
        """``d*(target)`` (generated dictionaries), None on the fixed track or if not reached."""
        return self.record.get("d_star")

    @property
    def d_star_ci(self) -> tuple[int | None, int | None]:
        lo, hi = self.record.get("d_star_ci") or (None, None)
        return lo, hi

    @property
    def k_star(self) -> int | None:
        """``k*(target)`` on a fixed dictionary, None otherwise."""
        return self.record.get("k_star")

    @property
    def k_star_ci(self) -> tuple[int | None, int | None]:
        lo, hi = self.record.get("k_star_ci") or (None, None)
        return lo, hi

    @property
    def bits_per_dim(self) -> float | None:
        return self.record.get("bits_per_dim")

    @property
    def bits_per_dim_ci(self) -> tuple[float | None, float | None]:
        lo, hi = self.record.get("bits_per_dim_ci") or (None, None)
        return lo, hi

    @property
    def dims_per_bit(self) -> float | None:
        return self.record.get("dims_per_bit")

    @property
    def trials(self) -> int:
        return int(self.record["trials"])

    @property
    def curve(self) -> list[tuple[int, int, int]]:
        """The success curve: ``(d or k, trials, successes)`` of every probe, in probe order."""
        variable = track_of(self.record["problem"]).variable
        return [(point[variable], point["trials"], point["successes"]) for point in self.record["curve"]]

    def __repr__(self) -> str:
        problem = self.record["problem"]
        track = track_of(problem)
        where = track.where(problem)
        name = self.decoder + (f"[{','.join(f'{k}={v}' for k, v in sorted(self.params.items()))}]"
                               if self.params else "")
        if not self.ok:
            return f"<Score {name} {where}: error: {self.error}>"
        if track is FIXED:
            lo, hi = self.k_star_ci
            return f"<Score {name} {where}: k*={self.k_star} [{lo}, {hi}], {self.bits_per_dim:.3f} bits/dim>"
        lo, hi = self.d_star_ci
        bits = f"{self.bits_per_dim:.3f} bits/dim" if self.bits_per_dim is not None else "no bitrate"
        return f"<Score {name} {where}: d*={self.d_star} [{lo}, {hi}], {bits}>"


def _decoder(spec: DecoderLike, params: Mapping[str, Any] | None,
             registry: Registry) -> tuple[Decoder, DecoderEntry]:
    """The decoder made with its parameters, and the entry its record names."""
    given = dict(params or {})
    if isinstance(spec, str):
        parsed: DecoderSpec = parse_decoder_spec(spec)
        entry = registry.get(parsed.name)
        return entry.cls(**{**parse_params(entry.cls, dict(parsed.texts)), **given}), entry
    cls = spec if isinstance(spec, type) else type(spec)
    if not issubclass(cls, Decoder):
        raise TypeError(f"a decoder is a name, a Decoder subclass or a Decoder, not {spec!r}")
    registered = registry.decoders.get(cls.name)
    entry = (registered if registered is not None and registered.cls is cls
             else DecoderEntry(cls=cls, plugin=cls.__module__, package=cls.__module__.split(".")[0],
                               version=cls.version or UNREGISTERED_VERSION))
    if isinstance(spec, Decoder):
        if given:
            raise TypeError("params cannot be given with a decoder that is already made; "
                            "pass its class or its name instead")
        return spec, entry
    return cls(**given), entry


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def sweep(decoders: Sequence[DecoderLike] | DecoderLike, *, n: int | Sequence[int] = 4096,
          k: int | Sequence[int] = 16, dictionary: str | os.PathLike[str] | Sequence[str] = "rademacher",
          noise: float | Sequence[float] = 0.0, snr: float | Sequence[float] | None = None,
          target: float = 0.95, seed: int = 0, trials: int = 256, subsets_per_draw: int = 32,
          d_max: int | None = None, k_max: int | None = None,
          resolution: float = 0.01, batch_size: int = 32, memory: int | None = None,
          results: str | os.PathLike[str] | None = None, timeout: float | None = None,
          processes: bool = False, registry: Registry | None = None) -> list[Score]:
    """Every decoder on every problem of the grid ``dictionary × noise × n × k``, as
    ``harness run`` runs them; one :class:`Score` per run, problem by problem. ``snr``
    (a signal-to-noise ratio per dimension, or a list) takes the place of ``noise``.

    A ``dictionary`` that names a file is the fixed-dictionary track (``n`` and ``k``
    then come from the file and the search). ``results`` names a store to append the
    records to (and to reuse what it already holds), as ``--results`` does; by default
    nothing is stored. With a store, a run in this process keeps a journal there, so one
    stopped midway resumes where it stopped when called again (``harness run``'s
    ``unfinished/``); what the store or a journal could not use is a warning. A decoder
    that fails is a Score with ``ok`` false and its error.

    Jobs run in this process, one after another, unless ``processes`` lets the small ones
    run side by side in worker processes (as ``harness run`` does) or ``timeout`` puts
    each in a worker process of its own; worker processes start this program's main
    module again, so a script that uses them must call the API under
    ``if __name__ == "__main__":``. The records are the same either way.
    """
    registry = registry if registry is not None else load_registry()
    plan_of = Sweep(n=_as_list(n), k=_as_list(k), dictionary=[os.fspath(d) for d in _as_list(dictionary)],
                    noise=[float(x) for x in _as_list(noise)], seed=seed, subsets_per_draw=subsets_per_draw,
                    snr=[] if snr is None else [float(x) for x in _as_list(snr)],
                    target=target, trials=trials, d_max=d_max, k_max=k_max, resolution=resolution,
                    batch_size=batch_size)
    settings = run_settings(plan_of, memory, warn=lambda sentence: warnings.warn(sentence, stacklevel=3))
    problems = [(problem, None) for problem in plan_of.problems()] + fixed_problems(plan_of, settings.memory)
    chosen = [_decoder(spec, None, registry) for spec in _as_list(decoders)]
    jobs: list[Job] = plan(problems, chosen)
    store = ResultStore(results) if results is not None else None
    outcome = execute(jobs, settings, store=store, timeout=timeout, argv=_command(plan_of, chosen),
                      side_by_side=processes, warn=lambda sentence: warnings.warn(sentence, stacklevel=3))
    return [Score(record) for record in outcome.records]


def score(decoder: DecoderLike, *, n: int = 4096, k: int = 16,
          dictionary: str | os.PathLike[str] = "rademacher", noise: float = 0.0, snr: float | None = None,
          target: float = 0.95, seed: int = 0, trials: int = 256, params: Mapping[str, Any] | None = None,
          **options: Any) -> Score:
    """Measure one decoder on one problem: ``d*(target)`` and its bitrate (or ``k*`` on a
    fixed dictionary named by ``dictionary``).

    ``decoder`` is a name (``"mp"``, ``"omp[positive=false]"``), a Decoder class or a
    Decoder; ``params`` sets its parameters. The other keywords are :func:`sweep`'s.
    """
    registry = options.pop("registry", None) or load_registry()
    made = _decoder(decoder, params, registry)[0] if params else decoder
    [result] = sweep([made], n=n, k=k, dictionary=dictionary, noise=noise, snr=snr, target=target, seed=seed,
                     trials=trials, registry=registry, **options)
    return result


def _command(plan_of: Sweep, chosen: Sequence[tuple[Decoder, DecoderEntry]]) -> list[str]:
    """What the records' provenance states as their command."""
    names = [Job.name_with_params(decoder, entry) for decoder, entry in chosen]
    return ["python-api", *names, f"n={plan_of.n}", f"k={plan_of.k}", f"dictionary={plan_of.dictionary}",
            f"noise={plan_of.noise}", *([f"snr={plan_of.snr}"] if plan_of.snr else []),
            f"seed={plan_of.seed}", f"trials={plan_of.trials}", f"target={plan_of.target}"]


#: The columns of :func:`records_frame`, in order.
FRAME_COLUMNS = ("decoder", "params", "plugin_version", "dictionary", "n", "k", "d", "noise", "snr", "seed",
                 "target", "d_star", "d_star_lo", "d_star_hi", "d_half", "k_star", "k_star_lo", "k_star_hi",
                 "entropy_bits", "bits_per_dim", "bits_per_dim_lo", "bits_per_dim_hi", "dims_per_bit",
                 "trials", "status", "error", "harness_version", "date")


def _row(record: Mapping[str, Any]) -> dict[str, Any]:
    problem = record.get("problem") or {}
    provenance = record.get("provenance") or {}

    def bounds(key: str) -> tuple[Any, Any]:
        pair = record.get(key) or (None, None)
        return pair[0], pair[1]

    d_lo, d_hi = bounds("d_star_ci")
    k_lo, k_hi = bounds("k_star_ci")
    b_lo, b_hi = bounds("bits_per_dim_ci")
    return {"decoder": record.get("decoder"),
            "params": ",".join(f"{k}={v}" for k, v in sorted((record.get("params") or {}).items())),
            "plugin_version": record.get("plugin_version"), "dictionary": problem.get("dictionary"),
            "n": problem.get("n"), "k": problem.get("k"), "d": problem.get("d"),
            "noise": problem.get("noise"), "snr": problem.get("snr"), "seed": problem.get("seed"),
            "target": record.get("target"),
            "d_star": record.get("d_star"),
            "d_star_lo": d_lo, "d_star_hi": d_hi, "d_half": record.get("d_half"),
            "k_star": record.get("k_star"), "k_star_lo": k_lo, "k_star_hi": k_hi,
            "entropy_bits": record.get("entropy_bits"), "bits_per_dim": record.get("bits_per_dim"),
            "bits_per_dim_lo": b_lo, "bits_per_dim_hi": b_hi, "dims_per_bit": record.get("dims_per_bit"),
            "trials": record.get("trials"), "status": record.get("status"), "error": record.get("error"),
            "harness_version": provenance.get("harness_version"), "date": provenance.get("date")}


def records_frame(source: Iterable[Score | Mapping[str, Any]] | str | os.PathLike[str]) -> pandas.DataFrame:
    """Records as a pandas DataFrame, one row each (columns :data:`FRAME_COLUMNS`).

    ``source`` is Scores, records, or a records file or folder (read as ``harness
    leaderboard`` reads it: torn lines skipped with a warning). ImportError, in one
    sentence, when pandas is not installed.
    """
    try:
        import pandas
    except ModuleNotFoundError:
        raise ImportError("records_frame needs pandas: pip install pandas") from None
    if isinstance(source, (str, os.PathLike)):
        records: list[Mapping[str, Any]] = [
            record for path in record_files([Path(source)])
            for _, record in read_records(path, warn=lambda sentence: warnings.warn(sentence, stacklevel=2))]
    else:
        records = [item.record if isinstance(item, Score) else item for item in source]
    return pandas.DataFrame([_row(record) for record in records], columns=list(FRAME_COLUMNS))

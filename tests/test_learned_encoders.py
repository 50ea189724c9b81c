"""Learned encoders beyond one step (MLP, LISTA): their gradients, their start, their file
format, the ``learned`` decoder, and ``harness gap`` with several encoders of one dictionary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from superposition_harness.cli import main
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.encoders import load_encoder, write_encoder
from superposition_harness.kernels import top_k_rows
from superposition_harness.plugins import load_registry
from superposition_harness.problem import Problem
from superposition_harness.tensors import WeightsError, read_safetensors, write_safetensors
from superposition_harness.training import (
    TrainingSpec,
    _training_batch,
    loss_and_gradients,
    make_model,
    train_encoder,
    write_trained,
)
from superposition_harness.weights import detect_format, fingerprint, load_matrix, load_sae, source_files

SMALL = dict(n=256, d=48, k=3, steps=6, batch_size=64, learning_rate=3e-3, warmup=2, eval_every=3,
             heldout=128)
ENCODERS = [("sae", {}), ("mlp", {"hidden": (100,)}), ("mlp", {"hidden": (96, 110)}),
            ("lista", {"layers": 3})]


def _dictionary(n: int, d: int, k: int) -> np.ndarray:
    return generated_dictionary(Problem(n=n, k=k), d, 0).dense().astype(np.float64)


GRADIENT_CASES = ([(e, x, a, "reconstruction") for e, x in ENCODERS for a in ("topk", "relu")]
                  + [("sae", {}, "jumprelu", "reconstruction")]
                  + [(e, x, "topk", objective) for e, x in ENCODERS
                     for objective in ("supervised", "ranking")])


@pytest.mark.parametrize("encoder, extra, activation, objective", GRADIENT_CASES)
def test_hand_written_gradients_match_finite_differences(encoder, extra, activation, objective):
    # float64, away from the start (where many units sit exactly at their kinks); the AuxK
    # residual is a constant target (as Gao et al. detach it), so aux = 0 here. A JumpReLU
    # threshold's gradient is a pseudo-derivative (checked on its own below): only W and b here.
    spec = TrainingSpec(n=64, d=12, k=2, encoder=encoder, activation=activation, aux=0.0, l1=0.05,
                        objective=objective, **extra)
    matrix = _dictionary(64, 12, 2)
    model = make_model(spec, matrix, np.float64)
    rng = np.random.default_rng(1)
    for parameter in model.parameters:
        parameter += rng.normal(0.0, 0.05, parameter.shape)
    subsets = _training_batch(spec, 1, 16)
    x = matrix[:, subsets].sum(axis=2).T

    _, gradients, _ = loss_and_gradients(spec, model, matrix, x, None, subsets)
    assert len(gradients) == len(model.parameters)
    checked = 2 if activation == "jumprelu" else len(gradients)
    for parameter, gradient in zip(model.parameters[:checked], gradients[:checked], strict=True):
        assert gradient.shape == parameter.shape
        for _ in range(12):
            where = tuple(int(rng.integers(0, size)) for size in parameter.shape)
            kept = parameter[where]
            parameter[where] = kept + 1e-6
            above = loss_and_gradients(spec, model, matrix, x, None, subsets)[0]
            parameter[where] = kept - 1e-6
            below = loss_and_gradients(spec, model, matrix, x, None, subsets)[0]
            parameter[where] = kept
            numeric = (above - below) / 2e-6
            assert abs(numeric - gradient[where]) <= 1e-5 * max(1.0, abs(numeric)), (where, numeric)


def test_an_mlp_starts_as_the_matched_filter():
    matrix = _dictionary(256, 48, 3)
    for widths in [(96,), (120, 100)]:
        model = make_model(TrainingSpec(**SMALL, encoder="mlp", hidden=widths), matrix, np.float64)
        x = matrix[:, _training_batch(TrainingSpec(**SMALL), 2, 32)].sum(axis=2).T
        np.testing.assert_allclose(model.scores(x), x @ matrix, atol=1e-12)


def test_lista_with_one_layer_ranks_as_topk():
    matrix = _dictionary(256, 48, 3)
    model = make_model(TrainingSpec(**SMALL, encoder="lista", layers=1), matrix, np.float64)
    x = matrix[:, _training_batch(TrainingSpec(**SMALL), 2, 32)].sum(axis=2).T
    scores = model.scores(x)
    np.testing.assert_allclose(scores, np.maximum(0.5 * x @ matrix - 0.2, 0.0), atol=1e-12)


@pytest.mark.parametrize("encoder, extra", [("mlp", {"hidden": (96, 100)}), ("lista", {"layers": 2})])
def test_a_trained_encoder_is_written_read_back_and_decoded_as_trained(tmp_path, encoder, extra):
    trained = train_encoder(TrainingSpec(**SMALL, encoder=encoder, **extra))
    assert trained.training_flops > 0 and len(trained.losses) == 6
    directory = write_trained(trained, tmp_path / encoder)
    config = json.loads((directory / "encoder.json").read_text())
    assert config["format"] == "superposition-harness-encoder" and config["encoder"] == encoder
    assert config["harness_training"]["training_flops"] == trained.training_flops
    loaded = load_encoder(directory)
    assert (loaded.kind, loaded.d_in, loaded.d_sae, loaded.k) == (encoder, 48, 256, 3)
    for name, array in trained.tensors.items():
        np.testing.assert_array_equal(loaded.tensors[name], array.astype(np.float32))
    assert detect_format(directory) == "learned" and detect_format(directory / "encoder.json") == "learned"
    assert [p.name for p in source_files(directory)] == ["encoder.json", "encoder.safetensors"]
    assert len(fingerprint(directory)) == 64
    np.testing.assert_array_equal(load_matrix(directory), trained.W_dec.T.astype(np.float32))
    with pytest.raises(WeightsError, match="learned encoder.*learned decoder"):
        load_sae(directory)
    # The decoder keeps the top k positive scores; a score does not depend on its batch.
    decoder = load_registry().get("learned").cls(weights=str(directory))
    dictionary = decoder.own_dictionary()
    x = _dictionary(256, 48, 3)[:, _training_batch(TrainingSpec(**SMALL), 7, 24)].sum(axis=2).T
    together = decoder.decode(dictionary, x, k=3, noise=0.0)
    alone = [decoder.decode(dictionary, row[None, :], k=3, noise=0.0)[0] for row in x]
    assert all(np.array_equal(a, b) for a, b in zip(together, alone, strict=True))
    scores = loaded.scores(x)
    expected = [row[scores[b, row] > 0] for b, row in enumerate(top_k_rows(scores, 3))]
    assert all(np.array_equal(a, b) for a, b in zip(together, expected, strict=True))
    assert loaded.flops_per_signal() > 2 * 48 * 256


def _valid_encoder(directory, kind="lista"):
    matrix = _dictionary(64, 16, 2).astype(np.float32)
    tensors = {"W_dec": matrix.T, "b_dec": np.zeros(16, np.float32)}
    if kind == "lista":
        tensors.update(W=matrix, step=np.full(2, 0.5, np.float32), threshold=np.full(2, 0.2, np.float32))
    else:
        tensors.update({"hidden.0.weight": np.ones((16, 32), np.float32),
                        "hidden.0.bias": np.zeros(32, np.float32),
                        "out.weight": np.ones((32, 64), np.float32), "out.bias": np.zeros(64, np.float32)})
    return write_encoder(directory, kind, 2, tensors)


def _edit_config(directory, **changes):
    path = directory / "encoder.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def _edit_tensor(directory, name, value):
    path = directory / "encoder.safetensors"
    tensors = read_safetensors(path)
    if value is None:
        tensors.pop(name)
    else:
        tensors[name] = value
    write_safetensors(path, tensors)


BROKEN = [
    ("format", lambda d: _edit_config(d, format="sae"), "format must be"),
    ("version", lambda d: _edit_config(d, version=2), "version 2 is not supported"),
    ("kind", lambda d: _edit_config(d, encoder="cnn"), "encoder must be one of mlp, lista"),
    ("layers", lambda d: _edit_config(d, layers=0), "layers must be a positive integer"),
    ("k", lambda d: _edit_config(d, k=65), "k = 65 is more than d_sae = 64"),
    ("d_in", lambda d: _edit_config(d, d_in=True), "d_in must be a positive integer"),
    ("missing tensor", lambda d: _edit_tensor(d, "step", None), "has no tensor 'step'"),
    ("shape", lambda d: _edit_tensor(d, "step", np.ones(3, np.float32)),
     r"step has shape \(3,\), expected \(2,\)"),
    ("nan", lambda d: _edit_tensor(d, "W", np.full((16, 64), np.nan, np.float32)), "NaN or infinite"),
    ("zero codeword", lambda d: _edit_tensor(d, "W_dec", np.zeros((64, 16), np.float32)),
     "W_dec row 0 is zero"),
    ("not json", lambda d: (d / "encoder.json").write_text("{"), "not valid JSON"),
    ("not an object", lambda d: (d / "encoder.json").write_text("[1]"), "JSON object, not list"),
    ("no weights", lambda d: (d / "encoder.safetensors").unlink(), "encoder.safetensors is missing"),
]


@pytest.mark.parametrize("name, damage, message", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_encoder_file_is_one_sentence_naming_it(tmp_path, capsys, name, damage, message):
    directory = _valid_encoder(tmp_path / "enc")
    load_encoder(directory)
    damage(directory)
    with pytest.raises(WeightsError, match=message):
        load_encoder(directory)
    if name != "no weights":  # without its weights the directory is no longer an encoder's
        assert main(["gap", str(directory), "--format", "learned", "--no-store"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("harness: error:") and "enc" in err[0]


def test_an_mlp_file_with_wrong_hidden_widths_is_refused(tmp_path):
    directory = _valid_encoder(tmp_path / "mlp", kind="mlp")
    load_encoder(directory)
    _edit_config(directory, hidden=[32, 32, 32])
    with pytest.raises(WeightsError, match="one or two positive widths"):
        load_encoder(directory)
    _edit_config(directory, hidden=[31])
    with pytest.raises(WeightsError, match=r"hidden.0.weight has shape \(16, 32\), expected \(16, 31\)"):
        load_encoder(directory)


def _train(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(["train-sae", "--n", "256", "--d", "48", "--k", "3", "--steps", "8", "--batch-size", "64",
                 "--learning-rate", "3e-3", "--warmup", "2", "--eval-every", "4", "--out", str(out),
                 *extra]) == 0
    return out


def test_gap_compares_the_encoders_of_several_paths_on_one_dictionary(tmp_path, capsys):
    sae = _train(tmp_path, "sae")
    mlp = _train(tmp_path, "mlp", "--encoder", "mlp", "--hidden", "96")
    lista = _train(tmp_path, "lista", "--encoder", "lista", "--layers", "2")
    capsys.readouterr()
    store = tmp_path / "store"
    assert main(["gap", str(sae), str(mlp), str(lista), "--trials", "64", "--k-max", "12",
                 "--results", str(store), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = [(r["decoder"], r["params"].get("weights")) for r in records]
    assert names[:3] == [("sae", str(sae)), ("learned", str(mlp)), ("learned", str(lista))]
    assert {r["problem"]["dictionary_file"] for r in records} == {str(sae)}
    assert all(r["status"] == "ok" and r["k_star"] for r in records)
    assert main(["verify", str(store), "--sample", "16"]) == 0
    # The same encoder's file as the dictionary: the learned format gives its W_dec.
    assert main(["run", "--dictionary", str(mlp), "--plugin", f"learned[weights={mlp}]", "--trials", "64",
                 "--k-max", "8", "--no-store", "--json"]) == 0


def test_gap_refuses_encoders_of_different_dictionaries_and_plugins_with_several_paths(tmp_path, capsys):
    first = _train(tmp_path, "a", "--encoder", "lista", "--layers", "1")
    other = tmp_path / "b"
    assert main(["train-sae", "--n", "256", "--d", "48", "--k", "3", "--steps", "2", "--seed", "1",
                 "--encoder", "lista", "--layers", "1", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["gap", str(first), str(other), "--no-store"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not that of" in err[0] and "one dictionary" in err[0]
    assert main(["gap", str(first), str(first), "--plugin", "mp", "--no-store"]) == 2
    assert "give one path" in capsys.readouterr().err
    assert main(["gap", str(first), "--plugin", f"sae[weights={first}]", "--no-store"]) == 2
    assert "learned decoder" in capsys.readouterr().err


@pytest.mark.parametrize("argv, fragment", [
    (["--encoder", "mlp", "--hidden", "50"], "at least 2d = 96"),
    (["--encoder", "mlp", "--hidden", "96,96,96"], "one or two widths"),
    (["--encoder", "mlp", "--hidden", "0"], "positive integer"),
    (["--encoder", "lista", "--layers", "0"], "positive integer"),
    (["--encoder", "cnn"], "invalid choice"),
])
def test_train_sae_refuses_bad_encoder_options_in_one_sentence(tmp_path, capsys, argv, fragment):
    argv = ["train-sae", "--n", "256", "--d", "48", "--k", "3", "--out", str(tmp_path / "x"), *argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
    assert not (tmp_path / "x").exists()


def test_a_jumprelu_threshold_moves_by_its_pseudo_derivative_and_is_written_as_saelens(tmp_path):
    # Only latents whose score lies within ε/2 of their threshold get a gradient, of sign set
    # by the L0 penalty (raise θ: fewer active) against the reconstruction (lower θ for a latent
    # that should be on).
    spec = TrainingSpec(n=64, d=12, k=2, activation="jumprelu", aux=0.0, l0=0.5, bandwidth=0.2)
    matrix = _dictionary(64, 12, 2)
    model = make_model(spec, matrix, np.float64)
    x = matrix[:, _training_batch(spec, 1, 16)].sum(axis=2).T
    pre = model.scores(x)
    _, gradients, _ = loss_and_gradients(spec, model, matrix, x)
    near = (np.abs(pre - 0.5) < 0.1).any(axis=0)
    assert near.any() and np.all(gradients[2][~near] == 0) and np.any(gradients[2][near] != 0)
    lone = TrainingSpec(n=64, d=12, k=2, activation="jumprelu", aux=0.0, l0=1e6, bandwidth=0.2)
    assert np.all(loss_and_gradients(lone, model, matrix, x)[1][2][near] < 0)  # the L0 penalty alone
    trained = train_encoder(TrainingSpec(**{**SMALL, "activation": "jumprelu"}))
    sae = load_sae(write_trained(trained, tmp_path / "jump"))
    assert sae.activation == "jumprelu" and sae.threshold is not None
    np.testing.assert_array_equal(sae.threshold, trained.tensors["threshold"].astype(np.float32))
    assert np.all(sae.threshold >= 0)


def test_an_encoder_config_that_is_not_a_small_regular_file_is_refused_unread(tmp_path):
    import os

    directory = _valid_encoder(tmp_path / "pipe")
    (directory / "encoder.json").unlink()
    os.mkfifo(directory / "encoder.json")  # opened without a writer, it would block a plain read
    with pytest.raises(WeightsError, match="encoder.json"):
        load_encoder(directory)
    big = _valid_encoder(tmp_path / "big")
    (big / "encoder.json").write_text(" " * (2 << 20) + "{}")
    with pytest.raises(WeightsError, match="encoder.json"):
        load_encoder(big)


@pytest.mark.parametrize("encoder, extra",
                         [("sae", {}), ("mlp", {"hidden": (96,)}), ("lista", {"layers": 2})])
def test_supervised_training_lowers_the_held_out_distance_to_the_true_codes(encoder, extra):
    spec = TrainingSpec(**{**SMALL, "steps": 30, "eval_every": 10, "objective": "supervised",
                           "encoder": encoder, **extra})
    trained = train_encoder(spec)
    losses = dict(trained.heldout)
    assert trained.best_step > 0 and losses[trained.best_step] < losses[0]
    assert all(0 <= loss <= 2 for loss in losses.values())  # one minus a cosine


def test_an_encoder_record_names_the_files_it_read_and_verify_refuses_changed_ones(tmp_path, capsys):
    """The records of `sae` and `learned` store ``decoder_identity``: the SHA-256 of the
    weights and the training that made them. A stored measurement is reused only for the
    same files, and `harness verify` will not vouch for a record whose files have changed."""
    sae = _train(tmp_path, "sae")
    lista = _train(tmp_path, "lista", "--encoder", "lista", "--layers", "2")
    capsys.readouterr()
    store = tmp_path / "store"
    gap = ["gap", str(sae), str(lista), "--trials", "64", "--k-max", "12", "--results", str(store), "--json"]
    assert main(gap) == 0
    records = {(r["decoder"], r["params"].get("weights")): r
               for r in map(json.loads, capsys.readouterr().out.splitlines())}
    mine = records[("learned", str(lista))]["decoder_identity"]
    assert mine["sha256"] == load_encoder(lista).sha256() == fingerprint(lista, "learned")
    assert mine["training"]["training_flops"] == load_encoder(lista).training["training_flops"] > 0
    assert mine["training"]["layers"] == 2
    theirs = records[("sae", str(sae))]["decoder_identity"]
    assert theirs["sha256"] == load_sae(sae).sha256() == records[("sae", str(sae))]["problem"][
        "dictionary_sha256"]
    assert "decoder_identity" not in records[("topk", None)]  # a decoder that reads no file
    assert main(["verify", str(store), "--sample", "8", "--seed", "1"]) == 0
    capsys.readouterr()

    # The encoder changes in place (its step sizes, same shapes): the record stays as it was.
    before = (store / "records.jsonl").read_bytes()
    tensors = read_safetensors(lista / "encoder.safetensors")
    tensors["step"] = tensors["step"] * 0.5
    write_safetensors(lista / "encoder.safetensors", tensors)
    assert main(["verify", str(store), "--sample", "8", "--seed", "1", "--json"]) == 3
    verdicts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    refused = [v for v in verdicts if v["status"] != "verified"]
    assert len(refused) == 1 and "not the one it was measured with" in refused[0]["reasons"][0]
    # Running again measures the new files instead of reusing the old record, and keeps it.
    assert main(gap) == 0
    capsys.readouterr()
    after = [json.loads(line) for line in (store / "records.jsonl").read_text().splitlines()]
    assert (store / "records.jsonl").read_bytes().startswith(before)
    measured = [r for r in after if r["params"].get("weights") == str(lista)]
    assert len(measured) == 2 and measured[0]["decoder_identity"] != measured[1]["decoder_identity"]
    assert sum(r["decoder"] == "topk" for r in after) == 1  # reused: nothing it reads changed


def test_float16_weights_are_written_read_exactly_and_decoded(tmp_path, capsys):
    for encoder in (["--encoder", "lista", "--layers", "2"], []):
        name = "lista16" if encoder else "sae16"
        out = _train(tmp_path, name, "--dtype", "float16", *encoder)
        weights = out / ("encoder.safetensors" if encoder else "sae_weights.safetensors")
        header = json.loads(weights.read_bytes()[8:8 + int.from_bytes(weights.read_bytes()[:8], "little")])
        assert {spec["dtype"] for spec in header.values()} == {"F16"}
        config = json.loads((out / ("encoder.json" if encoder else "cfg.json")).read_text())
        assert config["dtype"] == "float16" and config["harness_training"]["dtype"] == "float16"
        stored = read_safetensors(weights)
        loaded = load_encoder(out).tensors if encoder else {"W_enc": load_sae(out).W_enc}
        for key, array in loaded.items():
            assert array.dtype == np.float32
            np.testing.assert_array_equal(array, stored[key])  # F16 values, widened exactly
            np.testing.assert_array_equal(array, array.astype(np.float16).astype(np.float32))
    capsys.readouterr()
    assert main(["gap", str(tmp_path / "sae16"), str(tmp_path / "lista16"), "--trials", "64", "--k-max", "12",
                 "--no-store", "--json"]) == 0
    assert all(json.loads(line)["status"] == "ok" for line in capsys.readouterr().out.splitlines())


def test_writing_a_value_beyond_float16_is_refused():
    with pytest.raises(ValueError, match="beyond the range of float16"):
        write_safetensors("unused.safetensors", {"W": np.array([1.0, 7e4], np.float32)}, "float16")


def test_a_record_whose_decoder_identity_is_not_an_object_is_malformed():
    from superposition_harness.results import record_fault

    record = {"decoder": "learned", "plugin_package": "p", "plugin_version": "1", "status": "ok",
              "params": {}, "problem": {"n": 16, "k": 2, "dictionary": "rademacher", "noise": 0.0, "seed": 0,
                                        "subsets_per_draw": 32},
              "target": 0.95, "trials": 0, "provenance": {}, "curve": [{"d": 4, "trials": 0, "successes": 0}]}
    assert record_fault(record) is None
    assert record_fault({**record, "decoder_identity": "abc"}) == "its decoder_identity is malformed"


def test_a_published_gap_table_shows_training_compute_time_and_its_figure(tmp_path, capsys):
    from superposition_harness import plots
    from superposition_harness.publish import publish

    sae = _train(tmp_path, "sae")
    lista = _train(tmp_path, "lista-2", "--encoder", "lista", "--layers", "2")
    capsys.readouterr()
    store = tmp_path / "store"
    assert main(["gap", str(sae), str(lista), "--trials", "64", "--k-max", "12", "--results", str(store),
                 "--json"]) == 0
    records = {r["decoder"] + str(r["params"].get("weights", "")): r
               for r in map(json.loads, capsys.readouterr().out.splitlines())}
    flops = load_encoder(lista).training["training_flops"]
    drawn = plots.available()
    publish([store], store, figures=drawn)
    readme = (store / "README.md").read_text()
    header = next(line for line in readme.splitlines() if line.startswith("| # | decoder | params"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[columns.index("k*(0.95) [95% CI]"):columns.index("trials")] == [
        "k*(0.95) [95% CI]", "H(N, k*)", "bits/dim", "dims/bit", "k*(0.5) [95% CI]", "training FLOPs",
        "ms/signal"]
    row = next(line for line in readme.splitlines() if line.startswith("| ") and "| learned |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    mine = records["learned" + str(lista)]
    assert cells[columns.index("training FLOPs")] == f"{flops:.2g}"
    assert cells[columns.index("ms/signal")] == f"{mine['wall_seconds'] / mine['trials'] * 1e3:.3g}"
    topk = next(line for line in readme.splitlines() if line.startswith("| ") and "| topk |" in line)
    assert [c.strip() for c in topk.strip("|").split("|")][columns.index("training FLOPs")] == "-"
    table = json.loads((store / "leaderboard.json").read_text())["rows"]
    by = {r["decoder"] + ("" if r["decoder"] not in ("sae", "learned") else r["params"]): r for r in table}
    assert {r["training_flops"] for r in table if r["decoder"] == "learned"} == {flops}
    assert {r["weights_sha256"] for r in table if r["decoder"] == "learned"} == {load_encoder(lista).sha256()}
    assert by["topk"]["weights_sha256"] is None and by["topk"]["training_flops"] is None
    stem = "kstar-vs-time-sae-n256-d48"
    assert plots.figure_names(records.values()) == [stem]
    assert f"(figures/{stem}.svg)" in readme
    if drawn:
        assert (store / "figures" / f"{stem}.png").stat().st_size > 0


def test_the_gap_figure_labels_encoders_by_their_directory_and_plots_time_per_signal():
    pytest.importorskip("matplotlib")
    from superposition_harness import plots

    def record(decoder, k_star, wall, trials, weights=None):
        params = {"weights": weights} if weights else {}
        return {"decoder": decoder, "params": params, "status": "ok", "target": 0.95, "k_star": k_star,
                "k_star_ci": [k_star - 1, k_star + 2], "wall_seconds": wall, "trials": trials,
                "problem": {"dictionary": "file", "dictionary_file": "runs/enc/sae-k8", "n": 4096, "d": 256,
                            "k": None, "noise": 0.0, "seed": 0}}

    records = [record("mp", 22, 10.0, 2000), record("learned", 9, 1.0, 1000, "runs/enc/lista-2/"),
               record("sae", 7, 0.5, 1000, "runs/enc/sae-k8"),
               {**record("omp", 30, 1.0, 10), "status": "error"}]
    assert plots.figure_names(records) == ["kstar-vs-time-sae-k8-n4096-d256"]
    assert plots.encoder_label(records[1]) == "learned (lista-2)"
    with plots._settings():
        figure = plots._kstar_time_figure(plots._fixed_usable(records))
    ax = figure.axes[0]
    points = {}
    for container in ax.containers:
        line = container.lines[0]
        points[container.get_label()] = (float(line.get_xdata()[0]), float(line.get_ydata()[0]))
    assert points == {"learned (lista-2)": (1.0, 9.0), "mp": (5.0, 22.0), "sae (sae-k8)": (0.5, 7.0)}
    assert ax.get_xscale() == "log"


def test_the_ranking_loss_is_the_softmax_cross_entropy_of_the_true_latents():
    from superposition_harness.training import RANKING_TEMPERATURE, _codes, _ranking_loss

    rng = np.random.default_rng(4)
    scores = rng.normal(0, 0.3, (5, 40))
    subsets = np.array([rng.choice(40, 3, replace=False) for _ in range(5)])
    codes = _codes(subsets, 40, np.float64)
    loss, gradient = _ranking_loss(scores, codes)
    expected = []
    for row, subset in zip(scores, subsets, strict=True):
        p = np.exp(row / RANKING_TEMPERATURE) / np.sum(np.exp(row / RANKING_TEMPERATURE))
        expected.append(-np.mean(np.log(p[subset])))
    assert loss == pytest.approx(np.mean(expected), rel=1e-12)
    assert gradient.shape == scores.shape and np.allclose(gradient.sum(axis=1), 0.0)
    # Separated (every true score far above the rest): each true latent holds 1/k of the mass.
    separated = np.where(codes > 0, 100.0, 0.0)
    assert _ranking_loss(separated, codes)[0] == pytest.approx(np.log(3), abs=1e-9)
    beaten = separated.copy()
    beaten[0, np.flatnonzero(codes[0] == 0)[0]] = 101.0  # one other latent above the true ones
    assert _ranking_loss(beaten, codes)[0] > _ranking_loss(separated, codes)[0] + 1.0


def test_ranking_training_lowers_the_held_out_ranking_loss():
    spec = TrainingSpec(**{**SMALL, "steps": 30, "eval_every": 10, "objective": "ranking",
                           "encoder": "mlp", "hidden": (96,)})
    trained = train_encoder(spec)
    losses = dict(trained.heldout)
    assert trained.best_step > 0 and losses[trained.best_step] < losses[0]
    assert all(loss >= np.log(SMALL["k"]) - 1e-9 for loss in losses.values())

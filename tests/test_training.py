"""`harness train-sae`: an encoder trained on the standard problem, written as SAELens."""

from __future__ import annotations

import numpy as np
import pytest
from superposition_harness.cli import main
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.problem import Problem
from superposition_harness.tensors import read_safetensors, write_safetensors
from superposition_harness.training import TrainingSpec, _training_batch, train_encoder, write_saelens
from superposition_harness.weights import load_matrix, load_sae

SMALL = dict(n=256, d=48, k=3, steps=60, batch_size=64, learning_rate=3e-3)


def test_training_starts_at_the_matched_filter_and_lowers_the_loss():
    trained = train_encoder(TrainingSpec(**SMALL))
    assert len(trained.losses) == 60
    assert np.mean(trained.losses[-10:]) < np.mean(trained.losses[:10])
    problem = Problem(n=256, k=3)
    dictionary = generated_dictionary(problem, 48, 0).dense()
    np.testing.assert_allclose(trained.W_dec, dictionary.T, atol=1e-6)


def test_relu_training_runs_with_an_l1_penalty():
    trained = train_encoder(TrainingSpec(**{**SMALL, "activation": "relu", "l1": 0.1}))
    assert all(np.isfinite(trained.losses))


def test_training_batches_are_uniform_subsets_of_distinct_indices():
    spec = TrainingSpec(**SMALL)
    batch = _training_batch(spec, 1)
    assert batch.shape == (64, 3)
    assert all(len(set(row)) == 3 for row in batch.tolist())
    assert np.array_equal(batch, _training_batch(spec, 1))
    assert not np.array_equal(batch, _training_batch(spec, 2))


def test_the_written_sae_loads_as_saelens_and_as_a_dictionary(tmp_path):
    trained = train_encoder(TrainingSpec(**{**SMALL, "steps": 5}))
    directory = write_saelens(trained, tmp_path / "sae")
    sae = load_sae(directory)
    assert (sae.format, sae.activation, sae.k, sae.d_in, sae.d_sae) == ("saelens", "topk", 3, 48, 256)
    np.testing.assert_allclose(sae.W_enc, trained.W_enc, rtol=1e-6)
    np.testing.assert_allclose(load_matrix(directory), trained.W_dec.T, rtol=1e-6)
    assert (directory / "losses.csv").read_text().splitlines()[0] == "step,loss"


def test_write_safetensors_round_trips(tmp_path):
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(5, np.float32)}
    write_safetensors(tmp_path / "t.safetensors", tensors)
    back = read_safetensors(tmp_path / "t.safetensors")
    assert set(back) == {"a", "b"} and all(np.array_equal(back[k], tensors[k]) for k in tensors)


@pytest.mark.parametrize("spec, fragment", [(dict(SMALL, k=300), "k must be smaller than N"),
                                             (dict(SMALL, activation="gelu"), "activation"),
                                             (dict(SMALL, learning_rate=-1.0), "learning rate")])
def test_invalid_training_specs_are_refused(spec, fragment):
    with pytest.raises(ValueError, match=fragment):
        TrainingSpec(**spec).validate()


def test_train_sae_command_writes_a_file_that_gap_reads(tmp_path, capsys):
    out = tmp_path / "trained"
    assert main(["train-sae", "--n", "256", "--d", "48", "--k", "3", "--steps", "20",
                 "--out", str(out)]) == 0
    assert "Loss curve" in capsys.readouterr().out
    assert main(["gap", str(out), "--trials", "96", "--no-store", "--plugin",
                 f"sae[weights={out}]", "--plugin", "topk"]) == 0
    assert main(["train-sae", "--d", "8", "--k", "9", "--n", "8", "--out", str(out)]) == 2

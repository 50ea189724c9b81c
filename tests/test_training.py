"""`harness train-sae`: an encoder trained on the standard problem, written as SAELens."""

from __future__ import annotations

import numpy as np
import pytest
from superposition_harness.cli import main
from superposition_harness.dictionary import generated_dictionary
from superposition_harness.problem import Problem
from superposition_harness.tensors import read_safetensors, write_safetensors
from superposition_harness.training import (
    TrainingSpec,
    _training_batch,
    clipped,
    train_encoder,
    write_saelens,
)
from superposition_harness.weights import load_matrix, load_sae

SMALL = dict(n=256, d=48, k=3, steps=60, batch_size=64, learning_rate=3e-3, warmup=5, eval_every=10,
             heldout=256)


def test_training_starts_at_the_matched_filter_and_lowers_the_held_out_loss():
    trained = train_encoder(TrainingSpec(**SMALL))
    assert len(trained.losses) == 60
    assert [step for step, _ in trained.heldout] == [0, 10, 20, 30, 40, 50, 60]
    initial = trained.heldout[0][1]
    assert trained.best_step > 0 and dict(trained.heldout)[trained.best_step] < initial
    assert min(loss for _, loss in trained.heldout) == dict(trained.heldout)[trained.best_step]
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
    lines = (directory / "losses.csv").read_text().splitlines()
    assert lines[0] == "step,loss,heldout_loss" and lines[1].startswith("0,,")
    assert len(lines) == 2 + 5 and lines[-1].count(",") == 2 and not lines[-1].endswith(",")


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


def test_the_learning_rate_warms_up_then_decays_to_zero():
    spec = TrainingSpec(**{**SMALL, "steps": 100, "warmup": 10, "learning_rate": 1.0})
    assert spec.rate(1) == pytest.approx(0.1) and spec.rate(10) == pytest.approx(1.0)
    assert spec.rate(11) == pytest.approx(1.0) and spec.rate(100) == pytest.approx(1 / 90)
    assert all(spec.rate(s) >= spec.rate(s + 1) for s in range(10, 100))


def test_dead_latents_get_a_gradient_from_the_aux_loss():
    # With dead_steps = 1 every latent that did not fire last step is dead, so AuxK touches
    # encoder columns that the main loss never reaches; without it they stay as they were.
    base = {**SMALL, "steps": 3, "dead_steps": 1, "eval_every": 1}
    with_aux = train_encoder(TrainingSpec(**{**base, "aux": 1.0}))
    without = train_encoder(TrainingSpec(**{**base, "aux": 0.0}))
    start = generated_dictionary(Problem(n=256, k=3), 48, 0).dense()
    moved_with = np.any(np.abs(with_aux.W_enc - start) > 0, axis=0).sum()
    moved_without = np.any(np.abs(without.W_enc - start) > 0, axis=0).sum()
    assert moved_with > moved_without


def test_gradients_are_clipped_together_to_the_global_norm():
    a, b = np.full((2, 2), 3.0), np.array([4.0, 0.0, 0.0, 0.0])  # global norm √(36 + 16) = √52
    small = clipped([a, b], 1.0)
    assert np.sqrt(sum(np.sum(g * g) for g in small)) == pytest.approx(1.0)
    np.testing.assert_allclose(small[0] / a, small[1][0] / b[0])  # one factor for all
    kept = clipped([a, b], 10.0)
    assert kept[0] is a and kept[1] is b

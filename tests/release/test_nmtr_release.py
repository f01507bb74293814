"""``nmtr`` against the authors' release (tsinghua-fib-lab/NMTR 2feb863, Models.py ``Multi_GMF``,
b_num 3, logloss; Main_MTL.py ``training``: TF Adagrad lr 0.01, initial accumulator 1e-8) under
TensorFlow 2's compat.v1: one 2048-row batch of our sampler on an 80-user Taobao slice (nested
Beibei-style, see results/notes/nmtr-release.md), the same initial weights, E = 16, float32.

Our side: the trainer's ``MemberBatch`` for the loss parts and gradients, and the registered
optimizer, ``adagrad-tf1`` (``acc += g^2; p -= lr * g / sqrt(acc)``, no epsilon), as the trainer
builds it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from baselines.multi.nmtr import chain_labels
from bench.data.dataset import MultiBehaviorDataset
from bench.models.base import Batch
from bench.models.registry import build_model, get_model, load_builtin
from bench.train import streams
from bench.train.samplers import make_sampler, run_batches
from bench.train.seeds import generator
from tests.release.tf_step import OurStep, load_weights, max_differences

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "nmtr" / "nmtr.npz"
BEHAVIORS = ("pv", "cart", "buy")
RELEASE_TASKS = ("ipv", "cart", "buy")        # the release's names of the same chain
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def fx() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def slice_dataset(fx) -> MultiBehaviorDataset:
    n_users, n_items = (int(v) for v in fx["slice/shape"])
    train = {b: sp.csr_matrix((np.ones(len(fx[f"slice/{b}/rows"]), dtype=np.float32),
                               (fx[f"slice/{b}/rows"], fx[f"slice/{b}/cols"])),
                              shape=(n_users, n_items)) for b in BEHAVIORS}
    test = sp.csr_matrix((np.ones(len(fx["slice/test_rows"]), dtype=np.float32),
                          (fx["slice/test_rows"], fx["slice/test_items"])), shape=(n_users, n_items))
    return MultiBehaviorDataset("taobao-nmtr-slice", BEHAVIORS, train, test)


def build(fx):
    load_builtin()
    dataset = slice_dataset(fx)
    spec = get_model("nmtr")
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, {"dim": int(fx["cfg/dim"])})
    model = build_model(spec, dataset, cfg, "cpu", generator(0))
    load_weights(model, fx, "init/")
    batch = Batch(users=torch.from_numpy(fx["batch/users"].astype(np.int64)), pairs={},
                  extra={"items": torch.from_numpy(fx["batch/items"].astype(np.int64)),
                         "labels": torch.from_numpy(fx["batch/labels"].astype(np.float32))},
                  user_weight=torch.ones(len(fx["batch/users"])))
    return dataset, model, cfg, batch


def test_nmtr_release_batch_is_our_samplers(fx):
    dataset, model, cfg, _ = build(fx)
    sampler = make_sampler(model, dataset, cfg, torch.device("cpu"),
                           streams.run_keys([int(fx["batch/seed"])]))
    batch = next(run_batches(sampler))
    assert np.array_equal(batch.users.numpy(), fx["batch/users"])
    assert np.array_equal(batch.extra["items"].numpy(), fx["batch/items"])
    assert np.array_equal(batch.extra["labels"].numpy(), fx["batch/labels"])


def test_nmtr_release_labels_equal_our_chain_labels_on_nested_data(fx):
    """The release's sampling_3 count map, on the nested slice, labels every union pair as our
    chain closure does (both in (user, item) order, tasks in chain order)."""
    dataset = slice_dataset(fx)
    ours = chain_labels(dataset.matrices(), dataset.union(), "chain")
    assert np.array_equal(ours, fx["release/union_labels"].astype(np.float32))


def test_nmtr_release_loss_parts_match(fx):
    _, model, cfg, batch = build(fx)
    total, parts = OurStep(model, cfg, batch).losses()
    weight = 1 / 3
    for ours, theirs in zip(BEHAVIORS, RELEASE_TASKS):
        assert float(parts[f"bce_{ours}"]) == pytest.approx(
            weight * float(fx[f"release/loss_{theirs}"]), rel=1e-6, abs=0)
    assert float(parts["reg"]) == float(fx["release/loss_reg_3"]) == 0.0
    assert float(total) == pytest.approx(float(fx["release/loss"]), rel=1e-6, abs=0)


def test_nmtr_release_score_matrix_matches(fx):
    _, model, _, _ = build(fx)
    ours = model.scorer()(torch.arange(int(fx["slice/shape"][0]))).numpy()
    absolute, relative = max_differences(ours, fx["release/logits_buy"])
    assert relative < 2e-6, (absolute, relative)


def test_nmtr_release_gradients_match(fx):
    _, model, cfg, batch = build(fx)
    for name, grad in OurStep(model, cfg, batch).gradients().items():
        absolute, relative = max_differences(grad, fx[f"grad/{name}"])
        assert relative < 1e-5, (name, absolute, relative)


def test_nmtr_release_three_adagrad_steps_match(fx):
    _, model, cfg, batch = build(fx)
    assert cfg["optimizer"] == "adagrad-tf1" and cfg["lr_decay"] == 1.0
    assert cfg["lr"] == float(fx["cfg/lr"])
    assert cfg["initial_accumulator"] == float(fx["cfg/initial_accumulator"])
    step = OurStep(model, cfg, batch)
    for t in (1, 2, 3):
        before, _ = step.losses()
        assert float(before) == pytest.approx(float(fx[f"release/step{t}_loss"]), rel=1e-6)
        for name, value in step.step().items():
            absolute, relative = max_differences(value, fx[f"step{t}/{name}"])
            assert relative < 1e-5, (t, name, absolute, relative)

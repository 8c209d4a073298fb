"""The authors' protocols, each cause of a past mismatch with the published numbers pinned by a test:
the LfF/DFA input scale reaching every method's models, LfF's 60k split, the iteration budget with
drop_last, the oracle figure never touching selection, JTT's online error set, BFFHQ's normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import launcher
from bench.cli import main
from bench.data import DeviceSplit
from bench.trainer import DeviceData, train_and_evaluate
from datasets import DATASETS, Split
from datasets.cache import load_or_build
from methods import METHODS, RunContext
from reporting.records import read_records

LFF = DATASETS["cmnist-lff"]
TINY = ["--ratios", "0.05", "--no-progress", "--set", "cmnist-lff.train_size=300",
        "--set", "cmnist-lff.eval_size=100"]


def run(tmp_path, data_root, cache_dir, name, *extra):
    out = tmp_path / name
    code = main(["--datasets", "cmnist-lff", "--out", str(out), "--data-root", str(data_root),
                 "--cache-dir", str(cache_dir), *TINY, *extra])
    records = read_records(out / "results.jsonl")
    assert code == 0, [r.get("error") for r in records]
    return records


@pytest.fixture
def image_inputs(monkeypatch):
    """The largest input any flattened-image layer of any model sees, per forward call and per method of
    the sweep, all paths included (training steps, evaluation, PGD's scoring copy, JTT's error set, DFA's
    encoders)."""
    seen: dict[str, list[float]] = {}
    running = [""]
    execute = launcher.execute

    def execute_noting_the_method(spec, *args, **kwargs):
        running[0] = spec.method
        return execute(spec, *args, **kwargs)

    def hook(module, args):
        # Blank inputs are the model check before any run (``models.check_model``), not data.
        if isinstance(module, torch.nn.Linear) and module.in_features == 3 * 28 * 28 and args[0].any():
            seen.setdefault(running[0], []).append(float(args[0].max()))

    monkeypatch.setattr(launcher, "execute", execute_noting_the_method)
    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    yield seen
    handle.remove()


@pytest.mark.parametrize("scale", ["authors", "unit"])
def test_the_authors_input_scale_reaches_every_models_input(tmp_path, data_root, cache_dir, image_inputs, scale):
    unit = ["--set", "cmnist-lff.input_scale=unit"] if scale == "unit" else []  # "authors": the default
    run(tmp_path, data_root, cache_dir, scale, "--methods", ",".join(METHODS), "--epochs", "2",
        "--set", "dfa.curriculum_step=1", "--set", "jtt.T=1", *unit)
    assert sorted(image_inputs) == sorted(METHODS)
    for method, inputs in image_inputs.items():
        assert len(inputs) >= 4, method
        if scale == "authors":
            # The brightest coloured pixel is just below 1 in [0, 1]; the authors' MLP sees it divided by 255 again.
            assert 0.5 / 255 < max(inputs) <= 1 / 255 + 1e-9, method
        else:
            assert min(inputs) > 0.5, method


def test_lff_split_trains_on_all_60k_with_exact_counts_and_no_validation(data_root, cache_dir):
    lff = load_or_build(LFF(dict(LFF.OPTIONS)), data_root, 0.01, cache_dir)
    holdout = load_or_build(LFF({**LFF.OPTIONS, "split": "holdout"}), data_root, 0.01, cache_dir)
    assert (len(lff.train), len(lff.valid), len(lff.test)) == (60_000, 0, 10_000)
    assert (len(holdout.train), len(holdout.valid), len(holdout.test)) == (54_000, 6_000, 10_000)
    for split in (lff.train, holdout.train, holdout.valid):
        counts = np.bincount(split.targets, minlength=10)
        conflicting = np.bincount(split.targets[split.targets != split.biases], minlength=10)
        assert np.all(np.abs(conflicting - counts * 0.01) <= 1)  # exact counts, up to rounding
    np.testing.assert_array_equal(lff.test.images, holdout.test.images)
    assert lff.fingerprint != holdout.fingerprint


@pytest.mark.parametrize("extra, message", [
    (["--hparams-seed", "1"], "--hparams-seed chooses among draws by validation loss, but cmnist-lff"),
    (["--set", "erm.selection=best_valid_loss"], "erm selects by best_valid_loss, but cmnist-lff"),
    (["--set", "cmnist-lff.split=all"], "--set cmnist-lff.split=all: must be one of lff, holdout"),
    (["--set", "cmnist-lff.input_scale=255"], "--set cmnist-lff.input_scale=255: must be one of authors, unit"),
])
def test_what_needs_a_validation_split_or_a_known_option_is_refused(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code = main(["--datasets", "cmnist-lff", "--methods", "erm", "--out", str(out), *TINY, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and message in err
    assert not out.exists()


def test_an_iteration_budget_stops_at_exactly_that_step_with_drop_last(tmp_path, data_root, cache_dir):
    # 300 images, batch 64, drop_last: 4 steps per epoch; 7 steps = one epoch and 3 steps of a second.
    # In-process: torch loaded unpinned, so the paper preset's portable numerics cannot apply here.
    (record,) = run(tmp_path, data_root, cache_dir, "budget", "--methods", "erm", "--preset", "paper",
                    "--numerics", "native", "--set", "erm.iterations=7", "--set", "erm.drop_last=true",
                    "--set", "erm.batch_size=64", "--set", "erm.oracle_every_steps=2")
    assert record["stage_steps"] == {"train": 7}
    assert [e["steps"] for e in record["epochs"]] == [4, 7]
    assert record["timing"]["train_samples_per_s"] > 0
    # Evaluations after steps 0, 2, 4, 6 (0-based, as DFA's code) and of the final model.
    assert [point[0] for point in record["oracle"]["curve"]] == [1, 3, 5, 7]


def test_the_oracle_never_changes_the_selected_checkpoint(tmp_path, data_root, cache_dir):
    common = ["--methods", "erm", "--epochs", "4", "--set", "cmnist-lff.split=holdout",
              "--set", "erm.selection=best_valid_loss"]
    (sparse,) = run(tmp_path, data_root, cache_dir, "sparse", *common, "--set", "erm.oracle_every_steps=0")
    (dense,) = run(tmp_path, data_root, cache_dir, "dense", *common, "--set", "erm.oracle_every_steps=1")
    assert dense["oracle"]["evaluations"] > sparse["oracle"]["evaluations"] == 4
    for key in ("selected", "test_acc", "test_conflicting_acc", "test_loss", "last_epoch_test"):
        assert dense[key] == sparse[key]
    assert [e["train_loss"] for e in dense["epochs"]] == [e["train_loss"] for e in sparse["epochs"]]
    for record in (sparse, dense):
        best = max(acc for _, acc in record["oracle"]["curve"])
        assert record["oracle_test_acc"] == record["oracle"]["test_acc"] == best
        assert record["oracle"]["label"] == "oracle (selected on test)"


def indexed_split(n: int, classes: int, seed: int) -> Split:
    """Images whose first pixel is their index (so a forward pass tells which samples it sees)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 4, 4), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n)
    targets = rng.integers(0, classes, n)
    return Split(images, targets, targets.copy())


def test_jtt_online_error_set_is_what_the_training_pass_of_epoch_t_got_wrong():
    n, classes, T = 96, 3, 3
    device = torch.device("cpu")
    split = indexed_split(n, classes, seed=0)
    data = DeviceData(*(DeviceSplit(split, device) for _ in range(3)), num_classes=classes, augment=None)
    hp = {"model": "mlp", "optimizer": "adam", "lr": 2e-2, "weight_decay": 0.0, "momentum": 0.0, "epochs": 2,
          "batch_size": 16, "lr_decay_step": 0, "lr_decay_gamma": 1.0, "selection": "last_epoch",
          **METHODS["jtt"].HPARAMS, "T": T, "lambda_up": 5}
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    ctx = RunContext(classes, (3, 4, 4), data.train.targets, device, generator)
    jtt = METHODS["jtt"](hp, ctx)
    passes: list[dict[int, bool]] = []

    def record_training_predictions(model, args, output):
        if model.training:
            index = (args[0][:, 0, 0, 0] * 255).round().long()
            if not passes or len(passes[-1]) == n:
                passes.append({})
            wrong = output.argmax(1) != data.train.targets[index]
            passes[-1].update(zip(index.tolist(), wrong.tolist(), strict=True))

    jtt.models["identify"].register_forward_hook(record_training_predictions)
    outcome = train_and_evaluate(jtt, data, generator, progress=False)
    assert len(passes) == T and all(len(p) == n for p in passes)
    expected = sorted(i for i, wrong in passes[T - 1].items() if wrong)
    found = sorted(set(jtt.upsampled[n:].tolist()))
    assert 0 < len(expected) < n and found == expected
    assert outcome["method_info"]["error_set_size"] == len(expected)
    assert len(jtt.upsampled) == n + 5 * len(expected)
    # An eval pass after epoch T (the paper's description, ``error_set=eval``) finds another set here, so
    # the check above tells the two apart.
    with torch.no_grad():
        after = jtt.models["identify"].eval()(data.train.inputs(torch.arange(n))).argmax(1)
    assert sorted(torch.nonzero(after != data.train.targets).squeeze(1).tolist()) != expected


def test_bffhq_is_normalised_with_the_cifar10_statistics_as_dfa_does():
    bffhq = DATASETS["bffhq"](dict(DATASETS["bffhq"].OPTIONS))
    assert bffhq.normalization() == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    split = DeviceSplit(Split(np.full((1, 3, 2, 2), 255, np.uint8), np.zeros(1, np.int64), np.zeros(1, np.int64)),
                        torch.device("cpu"), bffhq.normalization())
    expected = (1 - torch.tensor([0.4914, 0.4822, 0.4465])) / torch.tensor([0.2023, 0.1994, 0.2010])
    torch.testing.assert_close(split.inputs(torch.tensor([0]))[0, :, 0, 0], expected)

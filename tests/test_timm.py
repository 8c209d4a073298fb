"""timm backbones as ``timm/<name>``: shapes, PGD's closed form, a DFA step, and the one-line errors."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F

from bench.cli import main
from methods import METHODS, Batch, RunContext
from methods.pgd_scores import last_layer_gradient_scores
from models import Classifier, ModelError, build_model, check_model

TINY = "timm/test_resnet"  # timm's own tiny test network, built without weights
SHAPE = (3, 28, 28)


def test_a_timm_model_is_a_classifier_with_timm_features():
    model = build_model(TINY, 10, SHAPE).eval()
    assert isinstance(model, Classifier)
    x = torch.rand(4, *SHAPE)
    features = model.features(x)
    assert features.shape == (4, model.feature_dim) and model(x).shape == (4, 10)
    network = model.encoder.network
    torch.testing.assert_close(features, network.forward_head(network.forward_features(x), pre_logits=True))
    torch.testing.assert_close(model(x), model.fc(features))


def test_pgd_closed_form_equals_the_per_sample_loop_on_a_timm_model():
    torch.manual_seed(0)
    model = build_model(TINY, 10, SHAPE).double().eval()
    x, y = torch.rand(5, *SHAPE, dtype=torch.float64), torch.tensor([0, 3, 5, 7, 9])
    expected = []
    for i in range(len(y)):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        expected.append(torch.linalg.vector_norm(model.fc.weight.grad.flatten(), ord=0.7))
    got = last_layer_gradient_scores(model, x, y, 0.7)
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-9, atol=0)


def test_dfa_trains_a_step_on_timm_encoders():
    hp = {"model": TINY, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.0, "epochs": 1,
          "batch_size": 4, "lr_decay_step": 0, "lr_decay_gamma": 1.0, **METHODS["dfa"].HPARAMS, "curriculum_step": 0}
    ctx = RunContext(10, SHAPE, torch.arange(8) % 10, torch.device("cpu"), torch.Generator().manual_seed(0))
    dfa = METHODS["dfa"](hp, ctx)
    before = [p.detach().clone() for p in dfa.models["bias"].parameters()]
    batch = Batch(torch.arange(4), torch.rand(4, *SHAPE), torch.tensor([0, 1, 2, 3]))
    dfa.update(batch)
    out = dfa.update(batch)  # the second step swaps features (step 1 > curriculum step 0)
    assert torch.isfinite(out["loss"]) and out["swap_loss"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, dfa.models["bias"].parameters(), strict=True))
    assert dfa.models["intrinsic"].head.in_features == 2 * build_model(TINY, 10, SHAPE).feature_dim


def test_unknown_names_and_impossible_inputs_are_one_line_errors():
    with pytest.raises(ModelError, match=r"unknown timm model 'nope'; list names with: python -c") as error:
        build_model("timm/nope", 10, SHAPE)
    assert "\n" not in str(error.value)
    with pytest.raises(ModelError, match=r"cannot take 3x28x28 inputs: .*divisible by patch size"):
        check_model("timm/test_vit", 10, SHAPE)
    with pytest.raises(ModelError, match="pretrained weights exist for timm/<name> models only"):
        build_model("mlp", 10, SHAPE, pretrained=True)


def test_pretrained_weights_offline_name_the_model_and_the_cache(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", "/nonexistent/hf-cache")
    with pytest.raises(ModelError) as error:
        build_model("timm/resnet18", 10, SHAPE, pretrained=True)
    message = str(error.value)
    assert "\n" not in message and "'resnet18'" in message and "/nonexistent/hf-cache" in message


def test_the_cli_takes_a_timm_model_for_a_whole_dataset_and_refuses_a_bad_one(tmp_path, data_root, cache_dir, capsys):
    out = tmp_path / "out"
    code = main(["--methods", "erm,pgd", "--datasets", "cmnist", "--ratios", "0.05", "--epochs", "1", "--out", str(out),
                 "--data-root", str(data_root), "--cache-dir", str(cache_dir), "--no-progress",
                 "--set", "cmnist.train_size=256", "--set", "cmnist.eval_size=128", "--set", f"cmnist.model={TINY}"])
    assert code == 0
    assert "erm" in (out / "table.md").read_text()
    bad = tmp_path / "bad"
    code = main(["--methods", "erm", "--datasets", "cmnist", "--out", str(bad), "--set", "cmnist.model=timm/nope"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "unknown timm model 'nope'" in err and not bad.exists()

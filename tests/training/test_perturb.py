"""FGSM input perturbation: the step is eps * sign(grad_x loss) where it should be and
nowhere else, the loss is the clean and adversarial losses averaged, eps=0 is training
without it, and train() records it and validates on clean inputs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mmtk.errors import UsageError
from mmtk.store import FeatureStore
from mmtk.train import train
from mmtk.training import Batch, SupervisedObjective, TaskLoss
from mmtk.training.perturb import ADVERSARIAL, CLEAN, FGSMObjective, check_perturbation, fgsm_step, perturbed_objective
from synthetic_features import FEATURES, xor_split


class Recording(nn.Module):
    """``t = sum_i w_i . x_i`` (sequences summed over every step, padding included, so
    their gradient is non-zero at padded steps too); remembers each batch it sees."""

    def __init__(self, dims: dict[str, int]):
        super().__init__()
        self.names = list(dims)
        self.weights = nn.ParameterList(nn.Parameter(torch.linspace(-1.0, 1.5, d)) for d in dims.values())
        self.seen: list[dict[str, torch.Tensor]] = []

    def forward(self, batch):
        self.seen.append({name: x.detach().clone() for name, x in batch.features.items()})
        out = 0
        for name, w in zip(self.names, self.weights):
            x = batch.features[name]
            out = out + (x.sum(dim=1) if x.dim() == 3 else x) @ w
        return {"t": out[:, None]}


def regression_objective():
    return SupervisedObjective({"t": TaskLoss("regression")})


def test_the_step_is_eps_times_the_sign_of_the_hand_computed_gradient():
    torch.manual_seed(0)
    x, y = torch.randn(5, 4), torch.randn(5)
    model = Recording({"a": 4})
    objective = FGSMObjective(regression_objective(), eps=0.1)
    terms = objective(model, Batch(features={"a": x}, targets={"t": y}))
    clean_seen, adversarial_seen = model.seen
    torch.testing.assert_close(clean_seen["a"], x)
    w = model.weights[0].detach()
    # MSE = mean((x w - y)^2): its gradient in x_b is 2 / B (x_b w - y_b) w.
    grad = 2 / 5 * (x @ w - y)[:, None] * w[None, :]
    torch.testing.assert_close(adversarial_seen["a"], x + 0.1 * torch.sign(grad))
    clean_loss = torch.mean((x @ w - y) ** 2)
    adversarial_loss = torch.mean(((x + 0.1 * torch.sign(grad)) @ w - y) ** 2)
    torch.testing.assert_close(terms[CLEAN], clean_loss)
    torch.testing.assert_close(terms[ADVERSARIAL], adversarial_loss)
    torch.testing.assert_close(terms["total"], 0.5 * (clean_loss + adversarial_loss))
    torch.testing.assert_close(terms["task.t"], terms["total"])
    # The step is a constant: the weights' gradient is that of the average of the two losses.
    terms["total"].backward()
    x_adv = x + 0.1 * torch.sign(grad)
    expected = 0.5 * (2 / 5 * ((x @ w - y)[:, None] * x).sum(0) + 2 / 5 * ((x_adv @ w - y)[:, None] * x_adv).sum(0))
    torch.testing.assert_close(model.weights[0].grad, expected)


def test_padded_steps_and_absent_modalities_are_not_moved():
    torch.manual_seed(0)
    seq, vec = torch.randn(3, 4, 2), torch.randn(3, 2)
    masks = torch.tensor([[True, True, False, False], [True, True, True, True], [True, False, False, False]])
    present = torch.tensor([True, False, True])
    model = Recording({"s": 2, "v": 2})
    batch = Batch(features={"s": seq, "v": vec}, masks={"s": masks}, present={"v": present}, targets={"t": torch.randn(3)})
    FGSMObjective(regression_objective(), eps=0.5)(model, batch)
    moved = {name: model.seen[1][name] - batch.features[name] for name in ("s", "v")}
    assert torch.all(moved["s"][~masks] == 0)  # the model's gradient there is not zero
    torch.testing.assert_close(moved["s"][masks].abs(), torch.full((7, 2), 0.5))
    assert torch.all(moved["v"][1] == 0)
    torch.testing.assert_close(moved["v"][[0, 2]].abs(), torch.full((2, 2), 0.5))


def test_fgsm_step_where_the_loss_ignores_an_input():
    x = torch.randn(2, 3)
    assert torch.equal(fgsm_step(x, None, 0.3), x)
    assert torch.equal(fgsm_step(x, torch.zeros(2, 3), 0.3), x)  # sign(0) = 0


def test_eps_zero_gives_the_loss_and_gradients_of_no_perturbation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, batch):
            return {"t": self.body(batch.features["a"])}

    net, batch = Net(), Batch(features={"a": torch.randn(6, 4)}, targets={"t": torch.randn(6)})
    plain = regression_objective()(net, batch)
    plain["total"].backward()
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    zero = FGSMObjective(regression_objective(), eps=0.0)(net, batch)
    zero["total"].backward()
    torch.testing.assert_close(zero["total"], plain["total"])
    for got, want in zip((p.grad for p in net.parameters()), expected):
        torch.testing.assert_close(got, want)


def test_validation_terms_are_the_clean_ones():
    model = Recording({"a": 3})
    batch = Batch(features={"a": torch.randn(4, 3)}, targets={"t": torch.randn(4)})
    outputs = model(batch)
    objective = perturbed_objective(regression_objective(), "fgsm", 0.2)
    assert objective.terms(outputs, batch) == regression_objective().terms(outputs, batch)


@pytest.mark.parametrize("method, eps, message", [
    ("pgd", 0.1, "unknown --perturb 'pgd'"),
    ("fgsm", -0.1, "--perturb-eps -0.1 is not a step size"),
    ("fgsm", float("nan"), "--perturb-eps nan is not a step size"),
    ("none", 0.1, "given without a perturbation"),
])
def test_bad_perturbation_settings_are_usage_errors(method, eps, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("+", r"\+")):
        check_perturbation(method, eps)
    assert check_perturbation(None, 0.0) is None
    assert perturbed_objective("objective", "none", 0.0) == "objective"


SETTINGS = {"epochs": 4, "hidden": 16, "dropout": 0.0, "lr": 1e-2, "patience": 4, "batch_size": 32, "device": "cpu"}


def test_train_records_the_perturbation_and_eps_zero_trains_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    store = FeatureStore(tmp_path / "store")
    train_ds, _ = xor_split(tmp_path, store, n_train=160, n_test=10)
    plain = train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "plain", store=store, **SETTINGS)
    zero = train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "zero", store=store,
                 perturb="fgsm", perturb_eps=0.0, **SETTINGS)
    a, b = load_file(str(plain.run / "model.safetensors")), load_file(str(zero.run / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    fgsm = train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "fgsm", store=store,
                 perturb="fgsm", perturb_eps=0.5, **SETTINGS)
    config = json.loads((fgsm.run / "config.json").read_text())
    assert config["training"]["perturb"] == {"method": "fgsm", "eps": 0.5, "loss": "0.5 clean + 0.5 adversarial"}
    assert json.loads((plain.run / "config.json").read_text())["training"]["perturb"] is None
    entry = fgsm.log[0]
    assert entry["train_terms"][ADVERSARIAL] > entry["train_terms"][CLEAN]  # the step raises the loss
    assert CLEAN not in entry["val_terms"]  # validation is clean
    c = load_file(str(fgsm.run / "model.safetensors"))
    assert not all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)
    with pytest.raises(UsageError, match="--perturb-eps"):
        train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=tmp_path / "bad", store=store,
              perturb="fgsm", perturb_eps=-1.0, **SETTINGS)


def test_a_model_fitted_whole_refuses_perturbation(tmp_path):
    store = FeatureStore(tmp_path / "store")
    train_ds, _ = xor_split(tmp_path, store, n_train=40, n_test=4)
    with pytest.raises(UsageError, match="'logreg' is fitted whole, not by gradient steps: --perturb does not apply"):
        train(train_ds, features=FEATURES, model="logreg", tasks=["label"], out=tmp_path / "lr", store=store,
              perturb="fgsm", perturb_eps=0.1, device="cpu")

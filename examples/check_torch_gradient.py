"""Check a PyTorch loss's gradient with metricloss.testing.check_grad, through a thin NumPy wrapper.

check_grad takes any function returning (value, gradient) on NumPy arrays and compares the gradient with central
finite differences in float64. Here it checks two PyTorch implementations of the contrastive loss: one built from
autograd-differentiable operations (it passes), and one with a hand-written backward that forgot the 1/2 of
Hadsell's ½d² (it fails, and the report shows where).

    python examples/check_torch_gradient.py
"""

import numpy as np
import torch

import metricloss as ml
from metricloss.testing import check_grad


def torch_contrastive(x, labels, margin=1.0):
    """Hadsell et al.'s contrastive loss in PyTorch, mean over the unordered pairs."""
    d = torch.cdist(x, x)
    upper = torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)
    same = (labels[:, None] == labels[None, :])[upper]
    d = d[upper]
    terms = torch.where(same, 0.5 * d**2, 0.5 * torch.clamp(margin - d, min=0) ** 2)
    return terms.mean()


class SquaredDistanceWithBuggyBackward(torch.autograd.Function):
    """‖a − b‖² with a backward that returns (a − b) instead of 2(a − b)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ((a - b) ** 2).sum(dim=1)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return grad[:, None] * (a - b), -grad[:, None] * (a - b)


def buggy_torch_contrastive(x, labels, margin=1.0):
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    d2 = SquaredDistanceWithBuggyBackward.apply(x[i], x[j])
    same = labels[i] == labels[j]
    terms = torch.where(same, 0.5 * d2, 0.5 * torch.clamp(margin - torch.sqrt(d2), min=0) ** 2)
    return terms.mean()


def numpy_wrapper(torch_loss, labels):
    """(value, gradient) of a PyTorch loss, as NumPy, for check_grad."""

    def value_and_grad(x):
        tensor = torch.tensor(x, requires_grad=True)
        value = torch_loss(tensor, torch.as_tensor(labels))
        value.backward()
        return value.item(), tensor.grad.numpy()

    return value_and_grad


def main():
    rng = np.random.default_rng(0)
    x = 0.5 * rng.standard_normal((10, 3))
    labels = rng.integers(0, 3, size=10)

    error = check_grad(numpy_wrapper(torch_contrastive, labels), x)
    print(f"PyTorch contrastive loss (autograd): worst relative error {error:.2e}: passes")
    value, grad = ml.contrastive_loss(x, labels)
    torch_value, torch_grad = numpy_wrapper(torch_contrastive, labels)(x)
    print(
        f"  and it agrees with metricloss: value {value:.12f} vs {torch_value:.12f}, "
        f"largest gradient difference {np.abs(grad - torch_grad).max():.1e}"
    )

    try:
        check_grad(numpy_wrapper(buggy_torch_contrastive, labels), x)
    except AssertionError as report:
        print("PyTorch contrastive loss with a hand-written backward: check_grad finds the bug:")
        print(report)
    else:
        raise SystemExit("check_grad missed the wrong backward")


if __name__ == "__main__":
    main()

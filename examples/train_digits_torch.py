"""Train a small PyTorch embedding network on scikit-learn's digits with metricloss's batch-hard triplet loss.

The loss and its analytic gradient come from metricloss, through ``metricloss.adapters.torch.wrap``, which makes
it a differentiable PyTorch operation; the rest is ordinary PyTorch. Held-out Recall@1 is printed before and after.

    python examples/train_digits_torch.py
"""

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import metricloss as ml
from metricloss.adapters.torch import wrap


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        (digits.data / 16.0).astype(np.float32),
        digits.target,
        test_size=0.3,
        stratify=digits.target,
        random_state=args.seed,
    )
    network = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 16))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    loss_fn = wrap(ml.triplet_loss, mining="hard", margin=args.margin)

    def recall():
        with torch.no_grad():
            return ml.recall_at_k(network(torch.from_numpy(x_test)).numpy(), y_test)

    before = recall()
    print(f"held-out Recall@1 before training: {before:.4f}")
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        losses = []
        for batch in ml.pk_batches(y_train, p=8, k=16, n_batches=len(y_train) // 128, rng=rng):
            loss = loss_fn(network(torch.from_numpy(x_train[batch])), torch.from_numpy(y_train[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(f"epoch {epoch + 1:3d}  batch-hard triplet loss {np.mean(losses):.4f}")
    after = recall()
    print(f"held-out Recall@1 after training:  {after:.4f}")
    return before, after


if __name__ == "__main__":
    main()

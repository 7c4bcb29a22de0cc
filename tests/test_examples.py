"""The examples and notebooks run, and do what they say."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_demo_raises_held_out_recall_at_1():
    before, after = _load("train_digits").main(["--epochs", "15"])
    assert after > before + 0.05
    assert after > 0.93


@pytest.mark.parametrize(
    "loss",
    [
        "triplet",
        "triplet-center",
        "npair",
        "quadruplet",
        "lifted",
        "generalized-lifted",
        "warp",
        "multi-similarity",
        "circle",
        "ntxent",
        "supcon",
    ],
)
def test_training_demo_with_every_other_loss_raises_recall(loss):
    """Each --loss choice trains: held-out Recall@1 well above the untrained network's (the contrastive default
    is the test above)."""
    before, after = _load("train_digits").main(["--loss", loss, "--epochs", "15"])
    assert after > before + 0.05
    assert after > 0.93


def test_pytorch_training_example_raises_held_out_recall():
    before, after = _load("train_digits_torch").main(["--epochs", "10"])
    assert after > before + 0.05


def test_jax_training_example_raises_held_out_recall():
    before, after = _load("train_digits_jax").main(["--epochs", "10"])
    assert after > before + 0.05


def test_training_demo_runs_as_a_script():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_digits.py"), "--epochs", "2"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    assert "held-out Recall@1 before training" in out and "held-out Recall@1 after training" in out


def test_check_torch_gradient_example_passes_autograd_and_catches_the_bug(capsys):
    _load("check_torch_gradient").main()
    out = capsys.readouterr().out
    assert "passes" in out and "check_grad finds the bug" in out and "gradient check failed" in out


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_executes(path):
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()


def test_readme_example_runs():
    """The README's ten-line example, executed as written."""
    readme = (ROOT / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})

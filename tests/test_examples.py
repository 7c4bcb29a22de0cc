"""The examples and notebooks run, and do what they say."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

import metricloss as ml
from metricloss.testing import check_grad

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recall(rows, kind, dim, metric="Recall@1"):
    """Held-out Recall@1 (or another of its columns) of the demo's table row of that kind and dimension."""
    (row,) = [row for row in rows if row.kind == kind and row.dim == dim]
    return row.scores[metric]


def test_training_demo_defaults_learn_a_2d_map_better_than_pca_and_write_the_png(tmp_path, capsys):
    """The README's first command, as it runs by default (2-D and 16-D, 40 epochs): the 2-D map beats PCA to 2-D
    by far; in 16-D, where the raw pixels' nearest neighbour is already almost always right, the embedding ranks
    the whole class far better (MAP@R) than PCA to 16-D and the raw pixels, and the demo says that this is where the
    gain is (MAP@R and R-precision, not Recall@1); the table is printed and the PNG written."""
    output = tmp_path / "demo.png"
    demo = _load("train_digits")
    rows = demo.main(["--output", str(output)])
    assert _recall(rows, "trained", 2) > _recall(rows, "pca", 2) + 0.2
    assert _recall(rows, "trained", 16) > _recall(rows, "untrained", 16) + 0.1
    assert _recall(rows, "trained", 16) >= _recall(rows, "pca", 16) - 0.005
    assert _recall(rows, "trained", 16, "MAP@R") > _recall(rows, "pca", 16, "MAP@R") + 0.2
    assert _recall(rows, "trained", 16, "MAP@R") > _recall(rows, "raw", 64, "MAP@R") + 0.2
    out = capsys.readouterr().out
    assert "Recall@1" in out and "MAP@R" in out and "raw pixels" in out and "network, contrastive" in out
    assert f"{_recall(rows, 'trained', 2):.4f}" in out
    gain = demo.gain_over_raw(rows)
    assert gain.shown == ("MAP@R", "R-precision") and gain.rest == ("Recall@1",)
    assert gain.sentence in out and "Recall@1 already 0.974 on the raw pixels" in gain.sentence
    readme = (ROOT / "README.md").read_text()  # the numbers the README quotes from this run
    assert f"Recall@1 {_recall(rows, 'raw', 64):.3f}" in readme
    for name in gain.shown:
        assert f"{name} {_recall(rows, 'raw', 64, name):.3f} → {_recall(rows, 'trained', 16, name):.3f}" in readme
    image = matplotlib.image.imread(output)  # a PNG that reads back: the 2-D pictures, loss curves, table
    assert image.shape[0] > 500 and image.shape[1] > 500


LOSS_AND_MINING = [
    ("triplet", "hard"),
    ("triplet", "all"),
    ("triplet", "semihard"),
    ("triplet", "all_semihard"),
    ("triplet-center", None),
    ("npair", None),
    ("mnrl", None),
    ("quadruplet", "all"),
    # Adaptive margins with the default margin 1 on squared distances collapse the embedding from the start (held-out
    # Recall@1 0.71 after 15 or 40 epochs, every triplet inside the margin); a smaller margin trains.
    ("quadruplet", "adaptive-margins --margin 0.2"),
    ("lifted", None),
    ("generalized-lifted", None),
    ("warp", None),
    ("margin", "distance-weighted"),
    ("margin", "all"),
    ("multi-similarity", "pairs"),
    ("multi-similarity", "none"),
    ("circle", None),
    ("ntxent", None),
    ("supcon", None),
]


@pytest.mark.parametrize(("loss", "mining"), LOSS_AND_MINING, ids=lambda v: str(v))
def test_training_demo_with_every_other_loss_and_mining_raises_recall(loss, mining, tmp_path):
    """Each --loss (and each of its --mining choices) trains a 16-D embedding: held-out Recall@1 well above the
    untrained network's after 15 epochs (the contrastive default is the test above)."""
    demo = _load("train_digits")
    assert {loss for loss, _ in LOSS_AND_MINING} | {"contrastive"} == set(demo.LOSSES)
    mining_args = [] if mining is None else ["--mining", *mining.split()]
    rows = demo.main(
        ["--loss", loss, *mining_args, "--epochs", "15", "--embedding-dim", "16", "--output", str(tmp_path / "d.png")]
    )
    assert _recall(rows, "trained", 16) > _recall(rows, "untrained", 16) + 0.05
    assert _recall(rows, "trained", 16) > 0.93


def test_training_demo_beats_the_raw_features_of_mnist1d_with_its_1d_convolution(tmp_path):
    """--dataset mnist1d (generated locally, no download): the raw 40 samples retrieve poorly (Recall@1 ≈ 0.45);
    the two-layer 1-D convolution, trained 20 epochs with the contrastive loss, does far better."""
    rows = _load("train_digits").main(
        ["--dataset", "mnist1d", "--epochs", "20", "--embedding-dim", "16", "--output", str(tmp_path / "m.png")]
    )
    assert _recall(rows, "raw", 40) < 0.5
    assert _recall(rows, "trained", 16) > _recall(rows, "raw", 40) + 0.15


@pytest.mark.parametrize("network", ["mlp", "conv1d"])
def test_training_demo_backward_pass_matches_finite_differences(network):
    """The hand-written backward pass of each network (and of the projection onto the sphere that the margin loss
    trains through) against central differences, parameter by parameter. A random linear term is added to the
    loss so that the last bias, to which the translation-invariant loss is blind, has a gradient too."""
    demo = _load("train_digits")
    init, forward, backward = demo.NETWORKS[network]
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((12, 40)), np.repeat(np.arange(4), 3)
    params = init(rng, 40, 3, n_hidden=8)
    tilt = rng.standard_normal((12, 3))
    for sphere in (False, True):
        for name in params:

            def loss(value, name=name, sphere=sphere):
                p = {**params, name: value}
                embeddings, cache = forward(p, x)
                u, norms = demo._to_sphere(embeddings)
                value, grad = ml.contrastive_loss(u if sphere else embeddings, labels, margin=2.0)
                if sphere:
                    grad = demo._to_sphere_vjp(u, norms, grad)
                return value + np.sum(tilt * embeddings), backward(p, cache, grad + tilt)[name]

            check_grad(loss, params[name])


def test_training_demo_finds_the_metrics_that_carry_the_gain_from_the_table():
    """The gain over the raw features is read from the table: the metrics that gain at least half the most, largest
    gain first, the others said to be already high; with no gain anywhere, it says so."""
    demo = _load("train_digits")

    def rows(raw, trained):
        return [
            demo.Row("raw", "raw signal", 40, dict(zip(demo.METRICS, raw, strict=True))),
            demo.Row("trained", "network", 2, dict(zip(demo.METRICS, (0.0, 0.0, 0.0), strict=True))),
            demo.Row("trained", "network", 16, dict(zip(demo.METRICS, trained, strict=True))),
        ]

    # Recall@1, R-precision, MAP@R; MNIST-1D-like: the raw nearest neighbour is often wrong, every metric gains.
    gain = demo.gain_over_raw(rows((0.45, 0.25, 0.15), (0.80, 0.60, 0.52)))
    assert gain.shown == ("MAP@R", "Recall@1", "R-precision") and gain.rest == ()
    assert gain.sentence.startswith("16-D network against the raw signal: the gain is in MAP@R 0.150 → 0.520")
    gain = demo.gain_over_raw(rows((0.97, 0.60, 0.53), (0.98, 0.93, 0.91)))
    assert gain.shown == ("MAP@R", "R-precision")
    assert gain.sentence.endswith("Recall@1 already 0.970 on the raw signal (0.980 trained)")
    assert demo.gain_over_raw(rows((0.9, 0.6, 0.5), (0.8, 0.5, 0.4))).shown == ()


def test_training_demo_title_names_which_tuples_enter_for_every_loss_and_mining():
    """The figure's title names the mining (or, for a loss without a --mining, the tuples it takes)."""
    demo = _load("train_digits")
    assert set(demo.MINING_TITLES) == set(demo.MINING_HELP)
    for loss, spec in demo.LOSSES.items():
        assert bool(spec.tuples) != bool(spec.minings), loss  # one or the other, never both or neither
        for mining in spec.minings or (None,):
            assert demo.tuples_words(loss, mining)
    assert demo.tuples_words("triplet", "hard") == "batch-hard mining"
    assert demo.tuples_words("contrastive", None) == "no mining: every pair of the batch"


def test_training_demo_lists_every_mining_strategy_once():
    """Every mining listed for a loss in the demo is one it documents in --help."""
    demo = _load("train_digits")
    assert {m for spec in demo.LOSSES.values() for m in spec.minings} == set(demo.MINING_HELP)
    assert set(demo.ml.MININGS) <= set(demo.LOSSES["triplet"].minings)


def test_training_demo_is_deterministic_for_a_seed(tmp_path):
    """Two runs with one seed give the same table to the last bit; another seed gives another."""
    demo = _load("train_digits")
    args = ["--loss", "margin", "--epochs", "2", "--embedding-dim", "2", "--output", str(tmp_path / "d.png")]
    first, second = demo.main(args), demo.main(args)
    assert first == second
    assert demo.main([*args, "--seed", "1"]) != first


def test_training_demo_refuses_a_mining_or_margin_its_loss_does_not_have(capsys):
    demo = _load("train_digits")
    with pytest.raises(SystemExit):
        demo.main(["--loss", "contrastive", "--mining", "hard"])
    assert "--mining hard does not apply to --loss contrastive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(["--loss", "ntxent", "--margin", "0.5"])
    assert "--loss ntxent has no margin to set" in capsys.readouterr().err


def test_pytorch_training_example_raises_held_out_recall():
    before, after = _load("train_digits_torch").main(["--epochs", "10"])
    assert after > before + 0.05


def test_jax_training_example_raises_held_out_recall():
    before, after = _load("train_digits_jax").main(["--epochs", "10"])
    assert after > before + 0.05


def test_training_demo_runs_as_a_script_with_a_progress_bar_and_documents_every_choice(tmp_path):
    """As a script: the table on stdout, tqdm's bar (running loss, active fraction) on stderr, the PNG written;
    --help names every loss, every mining strategy and each option."""
    output = tmp_path / "demo.png"
    script = [sys.executable, str(ROOT / "examples" / "train_digits.py")]
    run = subprocess.run(
        [*script, "--loss", "triplet", "--epochs", "2", "--output", str(output)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "Recall@1" in run.stdout and f"wrote {output}" in run.stdout and output.stat().st_size > 10_000
    assert "2-D triplet" in run.stderr and "loss=" in run.stderr and "active=" in run.stderr
    demo = _load("train_digits")
    usage = subprocess.run([*script, "--help"], capture_output=True, text=True, check=True, timeout=300).stdout
    for word in [*demo.LOSSES, *demo.MINING_HELP, "--margin", "--p", "--k", "--embedding-dim", "--epochs", "--seed"]:
        assert word in usage, word
    assert "--output" in usage and "--dataset" in usage


def test_check_torch_gradient_example_passes_autograd_and_catches_the_bug(capsys):
    _load("check_torch_gradient").main()
    out = capsys.readouterr().out
    assert "passes" in out and "check_grad finds the bug" in out and "gradient check failed" in out


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


NOTEBOOK_NAMES = [
    "01_triplet_loss_by_hand",
    "02_mining",
    "03_checking_another_implementation",
    "04_speed",
    "05_pair_losses",
    "06_softmax_family",
    "07_lifted_structure",
    "08_warp",
]


def test_every_notebook_is_there():
    """The notebooks the documentation lists (docs/conf.py copies whatever notebooks/ holds), in order: none lost,
    none added without its name here."""
    assert [path.stem for path in NOTEBOOKS] == NOTEBOOK_NAMES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_saved_with_its_outputs(path):
    """The documentation shows the saved outputs without re-running the notebooks: every code cell was executed,
    in order, none raised, and there is at least one picture."""
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path):
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()


def _readme_block(containing, language="python"):
    """The README's one ``language`` code block that contains ``containing``, as written."""
    readme = (ROOT / "README.md").read_text()
    blocks = [block.split("```", 1)[0] for block in readme.split(f"```{language}\n")[1:]]
    (block,) = [block for block in blocks if containing in block]
    return block


def test_readme_example_runs():
    """The README's ten-line gradient check, executed as written."""
    exec(compile(_readme_block("check_grad("), "README.md", "exec"), {})


def test_readme_training_loop_runs_as_written_lowers_the_loss_and_prints_what_the_readme_shows(capsys):
    """The README's fifteen-line training loop (a linear model on the digits, batch-hard triplet loss, the gradient
    step written out), executed as written: the loss goes down, the learned embedding ranks the held-out digits
    better than the pixels (MAP@R), and what it prints is the output the README shows under it."""
    namespace = {}
    exec(compile(_readme_block("load_digits"), "README.md", "exec"), namespace)
    losses = namespace["losses"]
    assert len(losses) == 300 and np.mean(losses[-20:]) < np.mean(losses[:20]) - 0.2
    printed = capsys.readouterr().out.strip()
    assert printed == _readme_block("held-out MAP@R", language="text").strip()
    pixels, learned = (float(line.rsplit(" ", 1)[1]) for line in printed.splitlines()[1:])
    assert learned > pixels + 0.1

"""The whole test suite, one session per environment: ``nox`` runs them all (but ``docs``, which the tests session
covers), in this order, and stops at the first that fails; ``nox -s tests`` runs one; ``nox -l`` lists them. The
README's test command and ``.ci/run`` are

    python3 -m venv .venv-nox && .venv-nox/bin/pip install -q nox && .venv-nox/bin/nox

Each session has its own virtual environment under ``.nox/``, kept between runs (as ``python3 -m venv .venv`` keeps
``.venv``), with the interpreter nox runs on. Arguments after ``--`` go to pytest (``nox -s tests -- -k warp``).
"""

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "venv"  # python3 -m venv, as the README's other command
nox.options.reuse_venv = "yes"
nox.options.stop_on_first_error = True
nox.options.sessions = ["lint", "tests", "tfa", "lightfm"]  # docs: the tests session builds the site too


@nox.session
def lint(session):
    """ruff over the repository, with the ruff of the [lint] extra (metricloss itself is not installed)."""
    session.install("-q", *nox.project.load_toml("pyproject.toml")["project"]["optional-dependencies"]["lint"])
    session.run("ruff", "check", ".")


@nox.session
def tests(session):
    """The main suite on two processes, then the CUDA kernels in Numba's simulator.

    The main suite (pytest-xdist, -n 2: CI's two cores): unit and contract tests, parity with torch and
    pytorch-metric-learning, doctests, the docstring check, examples and notebooks. Then the CUDA kernels under
    Numba's CUDA simulator and compiled to PTX (no GPU needed), on one process: a test there checks that the session
    launched every kernel, and the simulator is chosen when numba is first imported, hence its own pytest run."""
    session.install("-q", "-e", ".[test]")
    session.run("python", "-m", "pytest", "-n", "2", *session.posargs)
    session.run("python", "-m", "pytest", "tests/cuda", *session.posargs, env={"NUMBA_ENABLE_CUDASIM": "1"})


@nox.session
def docs(session):
    """The documentation site, warnings as errors, into docs/_build/html (``nox -s docs``; not in the default run:
    the tests session builds the same site with -W, tests/test_docs.py, and checks it).

    The API pages import every public module, the adapters too: their frameworks are installed with the docs'."""
    session.install("-q", "-e", ".[docs,torch,jax,tf]")
    session.run("python", "-m", "sphinx", "-W", "-q", "-b", "html", "docs", "docs/_build/html")


@nox.session
def tfa(session):
    """Parity with TensorFlow Addons 0.23, in its own environment (TensorFlow <= 2.15, numpy < 2)."""
    session.install("-q", "-e", ".[tfa-test]")
    session.run("python", "-m", "pytest", "tests/tfa", *session.posargs)


@nox.session
def lightfm(session):
    """WARP's parity with LightFM 1.17, in its own environment.

    LightFM 1.17's source package builds only without build isolation (its setup.py imports numpy and setuptools
    from the environment), hence the two steps."""
    session.install("-q", "setuptools", "wheel", "numpy", "scipy", "pytest")
    session.install("-q", "--no-use-pep517", "--no-build-isolation", "lightfm==1.17")
    session.install("-q", "-e", ".")
    session.run("python", "-m", "pytest", "tests/test_warp.py", "-k", "lightfm", *session.posargs)

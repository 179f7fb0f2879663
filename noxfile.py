"""Developer tasks. ``nox`` runs the light sessions, ``tests`` and ``lint``; ``nox -s docs``
builds the documentation site and runs its examples; ``nox -s tfds`` installs TensorFlow
(its environment took 2.5 GB here) to check the TensorFlow Datasets source. CI runs all
three.

``nox -s bench`` runs the speed benchmark (BENCHMARKS.md).
"""

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Install flaxmnist as a user would (non-editable) and run the test suite."""
    session.install(".[dev]")
    # A reused venv keeps an older flaxmnist of the same version: replace it.
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site: Sphinx, warnings as errors, into ``docs/_build/html``; then
    the examples of the documentation (its pages, the README and the docstrings) run."""
    session.install(".[docs]", "pytest")
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("pytest", "tests/test_docs.py", "tests/test_api.py", *session.posargs)


@nox.session
def tfds(session: nox.Session) -> None:
    """The TensorFlow Datasets source, offline: TFDS's mnist builder fed the shipped files.

    The only place TensorFlow is installed; the other sessions never import it.
    """
    session.install(".[dev,tfds]")
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("pytest", "tests/test_tfds.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The speed benchmark beside Keras 3 and PyTorch (not run by CI; minutes of CPU).

    ``nox -s bench -- --repeats 3`` passes options on to ``benchmarks/bench.py``.
    """
    session.install(".[bench]")
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("python", "benchmarks/bench.py", *session.posargs)

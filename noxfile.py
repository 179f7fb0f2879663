"""Developer tasks. ``nox`` runs ``tests-3.11`` and ``lint``.

- ``nox -s tests-3.11``, ``tests-3.12``, ``tests-3.13``: the suite on each interpreter a
  user may install flaxmnist on, with the newest dependencies the index has for it.
- ``nox -s lowest``: the suite on the declared lower bounds of ``pyproject.toml``, each
  installed exactly, on the oldest interpreter.
- After ``--``, options go to pytest: ``nox -s tests-3.13 -- -m "not heavy"`` runs the
  light suite, without the tests marked ``heavy`` (minutes each). Tests run in parallel
  processes (pytest-xdist, ``PARALLEL``); ``-- -n 0`` runs them in one.
- ``nox -s docs`` builds the documentation site and runs its examples; ``nox -s tfds``
  installs TensorFlow (its environment took 2.5 GB here) to check the TensorFlow Datasets
  source. CI (``.ci/run``) runs ``nox``, the light suite on the newest interpreter and on
  the lower bounds, ``docs`` and ``tfds``.
- ``nox -s bench`` runs the speed benchmark (BENCHMARKS.md).
"""

import os
import subprocess
import tomllib
from pathlib import Path

import nox

nox.options.sessions = ["tests-3.11", "lint"]
nox.options.reuse_existing_virtualenvs = True
# An interpreter of the matrix that is missing fails its session, never skips it in silence.
nox.options.error_on_missing_interpreters = True

#: The interpreters a user may install flaxmnist on (pyproject.toml: requires-python).
PYTHONS = ["3.11", "3.12", "3.13"]
#: A program that prints the versions of jax, flax, optax and numpy it imports.
PRINT_VERSIONS = (
    "import jax, flax, optax, numpy; "
    "print(*(f'{m.__name__} {m.__version__}' for m in (jax, flax, optax, numpy)))"
)


#: pytest-xdist: one test process per core, up to 4 (each test's XLA uses every core too);
#: a worker that runs out of tests takes some of another's (the heavy tests are uneven).
#: On this project's 2-core machines the light suite took 837 s instead of 1,228 s in one
#: process (the same machine, one after the other). ``-- -n 0`` runs them in one process.
PARALLEL = ("-n", "auto", "--maxprocesses", "4", "--dist", "worksteal")


def _pyenv_interpreters_on_path() -> None:
    """Put pyenv's installed interpreters on PATH, so that nox finds ``python3.12`` where
    pyenv has it but has not selected it (as on this project's machines)."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return
    versions = sorted(Path(root.stdout.strip(), "versions").glob("3.*/bin"), reverse=True)
    wanted = [str(b) for b in versions if any(b.parent.name.startswith(f"{v}.") for v in PYTHONS)]
    os.environ["PATH"] = os.pathsep.join([*wanted, os.environ.get("PATH", "")])


_pyenv_interpreters_on_path()


def _install_and_test(session: nox.Session, *pip_options: str) -> None:
    """Install flaxmnist as a user would (non-editable, with ``pip_options``), say which
    jax, flax, optax and numpy it got, and run the test suite."""
    session.install(*pip_options, ".[dev]")
    # A reused venv keeps an older flaxmnist of the same version: replace it.
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("python", "-c", PRINT_VERSIONS)
    session.run("pytest", *PARALLEL, *session.posargs)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite with the newest dependencies the index has for this interpreter:
    ``nox -s tests-3.13``. A reused environment is upgraded to them too."""
    _install_and_test(session, "--upgrade", "--upgrade-strategy", "eager")


def lower_bounds() -> list[str]:
    """Every dependency of ``pyproject.toml`` pinned to its declared lower bound."""
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    return [
        "==".join(part.strip() for part in requirement.split(";")[0].split(">="))
        for requirement in project["dependencies"]
    ]


@nox.session(python=PYTHONS[0])
def lowest(session: nox.Session) -> None:
    """The test suite on the declared lower bounds, each installed exactly, on the oldest
    interpreter: ``nox -s lowest``. A bound that fails here is raised in pyproject.toml."""
    constraints = Path(session.create_tmp()) / "lowest.txt"
    constraints.write_text("\n".join(lower_bounds()) + "\n")
    _install_and_test(session, "-c", str(constraints))


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
    session.install(".[docs]", "pytest", "pytest-xdist")
    session.install("--no-deps", "--force-reinstall", ".")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("pytest", *PARALLEL, "tests/test_docs.py", "tests/test_api.py", *session.posargs)


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

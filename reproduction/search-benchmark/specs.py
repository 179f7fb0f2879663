"""Write the search benchmark's specs (``specs/<strategy>-<repeat>.toml``): one space of ten
dimensions, each strategy's settings, repeat ``r`` seeded with ``r``. Run by ``run.sh``;
the files are committed, so what ran is on record."""

from pathlib import Path

SPACE = """[base]
epochs = 9
[search]
hidden = { depth = [1, 3], log_uniform = [32, 2048] }
learning_rate = { log_uniform = [1e-4, 1e-2] }
dropout = { uniform = [0.0, 0.5] }
input_dropout = { uniform = [0.0, 0.3] }
weight_decay = { log_uniform = [1e-5, 1e-1] }
label_smoothing = { uniform = [0.0, 0.2] }
augment_shift = { choice = [0, 1, 2] }
"""
RUNGS = "[halving]\neta = 3\nmin_epochs = 1\n"  # rungs at 1, 3 and 9 epochs
#: strategy -> (samples, its own tables, what it is). The budget, not samples, ends every
#: search but halving's, whose first rung must hold its samples.
STRATEGIES = {
    "quasi-random": (1000, "", "a scrambled Halton sequence, trained in order to the budget"),
    "halving": (40, RUNGS, "successive halving of 40 quasi-random configurations"),
    "hyperband": (1000, RUNGS, "Hyperband's brackets, packed, lanes refilled"),
    "tpe": (1000, "", "Optuna's TPE in rounds of 4 (run.sh: --max-lanes 4)"),
    "bohb": (1000, RUNGS, "BOHB: Hyperband whose brackets a TPE model fills"),
}


def main() -> None:
    folder = Path(__file__).parent / "specs"
    folder.mkdir(exist_ok=True)
    for strategy, (samples, tables, what) in STRATEGIES.items():
        for repeat in range(5):
            text = (
                f"# The search benchmark (REPRODUCTION.md): written by specs.py.\n"
                f'description = "{strategy}: {what}; repeat {repeat}"\n'
                f'strategy = "{strategy}"\nsamples = {samples}\nseed = {repeat}\n'
                f"{SPACE}{tables}"
            )
            (folder / f"{strategy}-{repeat}.toml").write_text(text)


if __name__ == "__main__":
    main()

"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {})
    assert capsys.readouterr().out  # every example prints something


TOML = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readmes_learned_search_spec_is_a_spec_flaxmnist_runs():
    import tomllib

    from flaxmnist import sampler
    from flaxmnist.space import parse_search_spec

    (block,) = [b for b in TOML if 'strategy = "tpe"' in b]
    study = parse_search_spec(tomllib.loads(block), "readme", "README.md")
    sampler.check(study.search, study.source)  # as run_sweep does before anything runs
    assert (study.strategy, study.search.samples, study.search.halving) == ("tpe", 96, True)


def test_the_readmes_augmentation_keys_are_spec_keys_it_accepts():
    import tomllib

    from flaxmnist.specs import parse_spec

    (block,) = [b for b in TOML if "augment_shift" in b]
    document = {**tomllib.loads(block), "grid": {"learning_rate": [1e-3]}}
    (config,) = parse_spec(document, "readme", "README.md").configs
    assert (config.augment_shift, config.ema_decay, config.label_smoothing) == (2, 0.999, 0.05)

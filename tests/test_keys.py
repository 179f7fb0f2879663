"""The table of keys (flaxmnist/specs/keys.toml): every reader agrees with it, and what it
says about each key holds where training uses the key."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from flaxmnist import Config, TrainSpec, make_hyperparams
from flaxmnist.core.train import Hyperparams
from flaxmnist.errors import SpecError
from flaxmnist.run.plan import hyperparams_of, train_spec_of
from flaxmnist.specs import keys
from flaxmnist.specs.config import DEFAULTS, check_value, parse_spec
from flaxmnist.specs.space import INTEGER_KEYS
from flaxmnist.studies import parse_study

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_config_has_a_field_per_key_in_the_tables_order_with_its_default():
    fields = dataclasses.fields(Config)
    assert [f.name for f in fields] == list(keys.CONFIG)
    assert Config().to_dict() == {
        **DEFAULTS,
        "hidden": [300],
        "dropout": [0.0],
        "l2": [0.0, 0.0],
    }


def test_hyperparams_has_a_field_per_lane_and_trainspec_a_flag_per_feature():
    lane_keys = {k.name for k in keys.CONFIG.values() if k.role == "lane"}
    assert set(Hyperparams._fields) == lane_keys | {"widths", "schedule_epochs"}
    flags = {f.name for f in dataclasses.fields(TrainSpec) if f.name.startswith("use_")}
    assert flags == set(keys.features())
    static = {k.spec_field.split(".")[0] for k in keys.CONFIG.values() if k.role == "static"}
    assert static <= {f.name for f in dataclasses.fields(TrainSpec)}


def test_every_lane_key_reaches_its_lane_array():
    """A configuration with every lane key away from its default: each array holds the value."""
    config = Config(
        hidden=(20, 10),
        dropout=(0.1, 0.2),
        learning_rate=0.02,
        l2=(1e-3, 2e-3, 3e-3),
        weight_decay=0.5,
        input_dropout=0.3,
        max_norm=2.0,
        lr_schedule="exponential",
        lr_decay=0.9,
        warmup_epochs=1.5,
        ema_decay=0.99,
        label_smoothing=0.1,
        epochs=7,
    )
    spec = train_spec_of(config)
    hparams = hyperparams_of(spec, config)
    for name, key in keys.lanes().items():
        value = getattr(config, key.name)
        expected = keys.LR_SCHEDULES.index(value) if key.kind == "choice" else value
        np.testing.assert_allclose(np.asarray(getattr(hparams, name)), expected, rtol=1e-6)
    assert all(getattr(spec, flag) for flag in keys.features())
    assert (spec.hidden, spec.epochs) == ((20, 10), 7)


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"dropout": (0.5,)}, "use_dropout"),
        ({"l2": (0.0, 1e-4)}, "use_l2"),
        ({"weight_decay": 0.1}, "use_weight_decay"),
        ({"input_dropout": 0.2}, "use_input_dropout"),
        ({"max_norm": 3.0}, "use_max_norm"),
        ({"lr_schedule": "cosine"}, "use_schedule"),
        ({"warmup_epochs": 1.0}, "use_schedule"),
        ({"ema_decay": 0.9}, "use_ema"),
        ({"label_smoothing": 0.1}, "use_label_smoothing"),
    ],
)
def test_a_feature_is_compiled_in_exactly_when_a_key_of_it_is_in_use(change, flag):
    plain = train_spec_of(Config())
    assert not any(getattr(plain, f) for f in keys.features())
    spec = train_spec_of(Config(**change))
    assert [f for f in keys.features() if getattr(spec, f)] == [flag]


def test_what_no_key_turns_on_stays_off():
    """lr_decay alone (the constant schedule ignores it), keras1's dropout 1.0 (none)."""
    assert not train_spec_of(Config(lr_decay=0.5)).use_schedule
    assert not train_spec_of(Config(dropout=(1.0,), dropout_semantics="keras1")).use_dropout
    assert train_spec_of(Config(dropout=(1.0,))).use_dropout


def test_static_keys_make_another_program():
    for name, value in [
        ("batch_size", 100),
        ("loss", "keras1"),
        ("augment_shift", 2),
        ("augment_rotate", 5.0),
        ("augment_elastic_sigma", 3.0),
    ]:
        assert train_spec_of(Config(**{name: value})) != train_spec_of(Config()), name


def test_make_hyperparams_refuses_a_name_that_is_no_field():
    with pytest.raises(TypeError, match="no field 'learning_rat'"):
        make_hyperparams(TrainSpec(), 1e-3, learning_rat=0.1)


@pytest.mark.parametrize("key", list(keys.CONFIG.values()), ids=lambda k: k.name)
def test_every_key_accepts_its_default_and_refuses_the_wrong_type(key):
    check_value("t.toml", "base", key.name, key.default)
    with pytest.raises(
        SpecError, match=rf"t\.toml: base\.{key.name} = .*: {re.escape(key.check({}))}"
    ):
        check_value("t.toml", "base", key.name, {})


@pytest.mark.parametrize(
    ("bounds", "inside", "outside"),
    [
        ("> 0", [1e-9, 5], [0, -1, float("inf"), float("nan")]),
        (">= 0", [0, 3], [-1e-9]),
        ("[0, 1)", [0, 0.5], [1, -0.1]),
        ("(0, 1]", [1, 0.5], [0]),
        ("[0, 28)", [0, 27], [28]),
    ],
)
def test_bounds_read_as_written(bounds, inside, outside):
    assert all(keys.within(bounds, x) for x in inside)
    assert not any(keys.within(bounds, x) for x in outside)


def test_a_spec_is_checked_against_the_table():
    """A spec's values go through the table's check, section by section."""
    with pytest.raises(SpecError, match=r"grid\.max_norm = -1: expected a number >= 0$"):
        parse_spec({"grid": {"max_norm": [-1]}}, "t", "t.toml")
    with pytest.raises(SpecError, match=r"halving\.eta = 1: expected an integer >= 2$"):
        parse_study(
            {"strategy": "halving", "halving": {"eta": 1}, "grid": {"learning_rate": [1e-3]}},
            "t",
            "t.toml",
        )
    with pytest.raises(SpecError, match=r"unknown key pbt\.rate \(known: interval, fraction"):
        parse_study(
            {"strategy": "pbt", "pbt": {"rate": 1}, "grid": {"learning_rate": [1e-3]}},
            "t",
            "t.toml",
        )
    assert INTEGER_KEYS == ("epochs", "batch_size", "augment_shift", "mup_base_width")


def test_the_docs_list_every_key_of_the_table_and_nothing_else():
    text = keys.markdown()
    listed = re.findall(r"^`([a-z_0-9]+)`$", text, flags=re.MULTILINE)
    assert listed == [key.name for key in keys.KEYS]
    page = (DOCS / "specs.md").read_text()
    assert "```{include} _generated/keys.md" in page
    conf = (DOCS / "conf.py").read_text()
    assert "keys.markdown()" in conf

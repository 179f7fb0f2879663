import pytest

from flaxmnist.specs.config import SpecError, parse_spec
from flaxmnist.studies import builtin_studies, load_studies, load_study


def test_lr_study_is_the_notebooks_24_rates_in_order():
    study = load_study("lr")
    rates = [c.learning_rate for c in study.configs]
    assert len(rates) == 24
    assert rates[:6] == [1.0, 0.1, 0.01, 0.001, 0.0001, 0.00001]
    assert rates[6:15] == pytest.approx([0.001 * k for k in range(1, 10)])
    assert rates[15:] == pytest.approx([0.0001 * k for k in range(1, 10)])
    assert {c.hidden for c in study.configs} == {(300,)}
    assert {(c.epochs, c.batch_size) for c in study.configs} == {(10, 200)}
    assert study.varied == ("learning_rate",)
    assert "lr" in builtin_studies()


def test_grid_is_a_product_with_the_last_key_fastest():
    study = parse_spec(
        {"base": {"epochs": 2}, "grid": {"hidden": [[300], [500]], "dropout": [0.0, 0.5]}},
        name="t",
        source="t.toml",
    )
    assert [(c.hidden, c.dropout) for c in study.configs] == [
        ((300,), (0.0,)),
        ((300,), (0.5,)),
        ((500,), (0.0,)),
        ((500,), (0.5,)),
    ]
    assert study.configs[0].l2 == (0.0, 0.0)


def test_per_layer_values_and_broadcasting():
    study = parse_spec(
        {
            "base": {"hidden": [300, 150], "l2": [0.002, 0, 0], "dropout": 0.2},
            "grid": {"learning_rate": [0.001]},
        },
        name="t",
        source="t.toml",
    )
    assert study.configs[0].l2 == (0.002, 0.0, 0.0)
    assert study.configs[0].dropout == (0.2, 0.2)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"grid": {"learning_rate": [0.0]}}, r"grid\.learning_rate = 0\.0: expected a number > 0$"),
        ({"grid": {"learning_rate": [-1]}}, r"grid\.learning_rate = -1"),
        ({"grid": {"learning_rate": ["fast"]}}, r"expected a number"),
        (
            {"grid": {"dropout": [1.5]}},
            r"grid\.dropout = 1\.5: expected a rate in \[0, 1\], or a list",
        ),
        (
            {"grid": {"hidden": [[0]]}},
            r"grid\.hidden = \[0\]: expected a list of integer widths >= 1",
        ),
        ({"grid": {"hidden": [300]}}, r"grid\.hidden = 300: expected a list"),
        ({"base": {"epochs": 0}, "grid": {"learning_rate": [1e-3]}}, r"base\.epochs = 0"),
        ({"base": {"epochs": 1.5}, "grid": {"learning_rate": [1e-3]}}, r"expected an integer"),
        ({"base": {"lr": 0.1}, "grid": {"learning_rate": [1e-3]}}, r"unknown key base\.lr"),
        ({"grid": {"momentum": [0.9]}}, r"unknown key grid\.momentum"),
        ({"grid": {}}, r"nothing to sweep"),
        ({"base": {"epochs": 3}}, r"nothing to sweep"),
        ({"configs": []}, r"nothing to sweep"),
        (
            {"configs": [{"learning_rate": 0}]},
            r"configs\[1\]\.learning_rate = 0: expected a number > 0",
        ),
        ({"configs": [{"lr": 0.1}]}, r"unknown key configs\[1\]\.lr"),
        ({"configs": {"learning_rate": 0.1}}, r"configs must be a list of tables"),
        ({"grid": {"dropout_semantics": ["keras"]}}, r"grid\.dropout_semantics = 'keras'"),
        ({"base": {"loss": "mse"}, "grid": {"learning_rate": [1e-3]}}, r"base\.loss = 'mse'"),
        ({"base": {"batch_size": 0}, "grid": {"learning_rate": [1e-3]}}, r"base\.batch_size = 0"),
        ({"grid": {"learning_rate": []}}, r"expected a non-empty list"),
        ({"grid": {"augment_shift": [-1]}}, r"augment_shift = -1: expected a whole number"),
        ({"grid": {"augment_shift": [28]}}, r"augment_shift = 28: .* in \[0, 28\)"),
        ({"grid": {"augment_shift": [1.5]}}, r"augment_shift = 1\.5: expected a whole"),
        ({"grid": {"ema_decay": [1.0]}}, r"grid\.ema_decay = 1\.0: expected a number in \[0, 1\)"),
        ({"grid": {"ema_decay": [-0.1]}}, r"grid\.ema_decay = -0\.1"),
        ({"grid": {"label_smoothing": [1]}}, r"label_smoothing = 1: expected a number in \[0, 1\)"),
        ({"grid": {"label_smoothing": [-0.5]}}, r"grid\.label_smoothing = -0\.5"),
        ({"grid": {"augment_elastic_sigma": [0]}}, r"augment_elastic_sigma = 0: expected a number"),
        ({"grid": {"augment_scale": [1.0]}}, r"augment_scale = 1\.0"),
        (
            {"grid": {"augment_rotate": [-5]}},
            r"augment_rotate = -5: expected a number of degrees >= 0",
        ),
        ({"grid": {"learning_rate": [1e-3]}, "extra": 1}, r"unknown top-level key 'extra'"),
        ({"grid": {"learning_rate": [float("inf")]}}, r"learning_rate = inf: expected a number"),
        ({"grid": {"weight_decay": [float("nan")]}}, r"weight_decay = nan: expected a number"),
        ({"grid": {"dropout": [[0.1, True]]}}, r"grid\.dropout = \[0\.1, True\]: expected a rate"),
        (
            {"base": {"hidden": [300], "l2": [0.1]}, "grid": {"learning_rate": [1e-3]}},
            r"l2 = \[0\.1\]: expected 2 values",
        ),
    ],
)
def test_invalid_specs_name_file_key_and_value(document, message):
    with pytest.raises(SpecError, match=message) as info:
        parse_spec(document, name="bad", source="bad.toml")
    assert str(info.value).startswith("bad.toml: ")


def test_load_from_path_and_errors(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[grid]\nlearning_rate = [0.01, 0.001]\n")
    study = load_study(path)
    assert study.name == "mine" and len(study.configs) == 2
    path.write_text("[grid\n")
    with pytest.raises(SpecError, match="invalid TOML"):
        load_study(path)
    with pytest.raises(SpecError, match="cannot read"):
        load_study(tmp_path / "absent.toml")
    with pytest.raises(SpecError, match="unknown study 'nope'"):
        load_study("nope")


@pytest.mark.parametrize(
    ("name", "count", "config_epochs"),
    [
        ("lr", 24, 240),
        ("hidden", 6, 60),
        ("l2", 3, 50),
        ("dropout", 10, 300),
        ("three-layer", 36, 1080),
    ],
)
def test_named_studies_expand_to_the_notebooks_grids(name, count, config_epochs):
    study = load_study(name)
    assert len(study.configs) == count
    assert sum(c.epochs for c in study.configs) == config_epochs
    assert {c.batch_size for c in study.configs} == {200}


def test_the_notebooks_settings():
    hidden = load_study("hidden")
    assert [c.hidden for c in hidden.configs] == [(10,), (50,), (100,), (300,), (1000,), (2000,)]
    assert {c.learning_rate for c in hidden.configs} == {0.01}
    l2 = load_study("l2")
    assert [(c.learning_rate, c.l2, c.epochs) for c in l2.configs] == [
        (0.01, (0.0, 0.0), 10),
        (0.001, (0.0, 0.0), 10),
        (0.001, (0.002, 0.0), 30),
    ]
    dropout = load_study("dropout")
    assert [c.dropout[0] for c in dropout.configs] == pytest.approx([i / 10 for i in range(1, 11)])
    assert dropout.configs[-1].applied_dropout() == (0.0,)  # Keras 1: p = 1.0 is no dropout
    assert dropout.configs[4].applied_dropout() == (0.5,)
    grid = load_study("three-layer")
    assert [(c.hidden, c.dropout) for c in grid.configs[:4]] == [
        ((300, 150), (0.0, 0.0)),
        ((300, 150), (0.0, 0.1)),
        ((300, 150), (0.0, 0.2)),
        ((300, 150), (0.1, 0.0)),
    ]
    assert grid.configs[-1].hidden == (500, 300) and grid.configs[-1].dropout == (0.2, 0.2)
    assert {c.learning_rate for c in grid.configs} == {0.001}


def test_all_is_the_five_studies_in_order():
    studies = load_studies("all")
    assert [s.name for s in studies] == ["lr", "hidden", "l2", "dropout", "three-layer"]
    assert sum(c.epochs for s in studies for c in s.configs) == 1730
    with pytest.raises(SpecError, match="composite"):
        load_study("all")


def test_bad_composites(tmp_path):
    path = tmp_path / "combo.toml"
    path.write_text('studies = ["lr", "nope"]\n')
    with pytest.raises(SpecError, match="unknown study 'nope'"):
        load_studies(path)
    path.write_text('studies = ["lr", "lr"]\n')
    with pytest.raises(SpecError, match="two studies are named 'lr'"):
        load_studies(path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "lr.toml").write_text("[grid]\nlearning_rate = [0.5]\n")
    path.write_text('studies = ["lr", "sub/lr.toml"]\n')  # another file, the same name
    with pytest.raises(SpecError, match="two studies are named 'lr'"):
        load_studies(path)
    path.write_text('studies = ["lr"]\n[base]\nepochs = 1\n')
    with pytest.raises(SpecError, match="only studies and description"):
        load_studies(path)


def test_explicit_configs_follow_the_grid_and_count_as_varied():
    study = parse_spec(
        {
            "base": {"hidden": [300]},
            "grid": {"learning_rate": [0.1, 0.01]},
            "configs": [{"learning_rate": 0.001, "epochs": 30}],
        },
        name="t",
        source="t.toml",
    )
    assert [(c.learning_rate, c.epochs) for c in study.configs] == [
        (0.1, 10),
        (0.01, 10),
        (0.001, 30),
    ]
    assert study.varied == ("learning_rate", "epochs")


def test_composites_that_include_each_other_name_the_cycle(tmp_path):
    (tmp_path / "a.toml").write_text('studies = ["lr", "./b.toml"]\n')
    (tmp_path / "b.toml").write_text('studies = ["./c.toml"]\n')
    (tmp_path / "c.toml").write_text('studies = ["a.toml"]\n')  # relative to c's folder
    with pytest.raises(SpecError, match="include each other") as error:
        load_studies(tmp_path / "a.toml")
    assert str(error.value).endswith(" -> ".join(str(tmp_path / f"{n}.toml") for n in "abca"))
    (tmp_path / "self.toml").write_text('studies = ["self.toml"]\n')
    with pytest.raises(SpecError, match="include each other"):
        load_studies(tmp_path / "self.toml")


def test_composites_of_composites_and_paths_relative_to_the_spec(tmp_path):
    (tmp_path / "mine.toml").write_text("[grid]\nlearning_rate = [0.5]\n")
    (tmp_path / "inner.toml").write_text('studies = ["l2", "mine.toml"]\n')
    (tmp_path / "outer.toml").write_text('studies = ["lr", "inner.toml"]\n')
    assert [s.name for s in load_studies(tmp_path / "outer.toml")] == ["lr", "l2", "mine"]


def test_a_local_file_named_like_a_study_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lr").write_text("[grid]\nlearning_rate = [0.5]\n")
    assert len(load_study("lr").configs) == 24  # the packaged study
    (tmp_path / "lr.toml").write_text("[grid]\nlearning_rate = [0.5]\n")
    assert len(load_study("lr").configs) == 24
    assert len(load_study("lr.toml").configs) == 1  # a path: the local file
    assert len(load_study("./lr").configs) == 1


def test_defaults_are_configs_defaults():
    from flaxmnist.specs.config import CONFIG_KEYS, DEFAULTS, Config

    assert tuple(DEFAULTS) == CONFIG_KEYS
    study = parse_spec({"grid": {"epochs": [1]}}, name="t", source="t.toml")
    assert study.configs == (Config(epochs=1),)

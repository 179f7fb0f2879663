import pytest

from flaxmnist.specs import SpecError, builtin_studies, load_study, parse_spec


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
        ({"grid": {"learning_rate": [0.0]}}, r"grid\.learning_rate = 0\.0: must be > 0"),
        ({"grid": {"learning_rate": [-1]}}, r"grid\.learning_rate = -1"),
        ({"grid": {"learning_rate": ["fast"]}}, r"expected a number"),
        ({"grid": {"dropout": [1.5]}}, r"grid\.dropout = 1\.5: dropout rates must lie in \[0, 1\]"),
        ({"grid": {"hidden": [[0]]}}, r"grid\.hidden = \[0\]: every width must be >= 1"),
        ({"grid": {"hidden": [300]}}, r"grid\.hidden = 300: expected a list"),
        ({"base": {"epochs": 0}, "grid": {"learning_rate": [1e-3]}}, r"base\.epochs = 0"),
        ({"base": {"epochs": 1.5}, "grid": {"learning_rate": [1e-3]}}, r"expected an integer"),
        ({"base": {"lr": 0.1}, "grid": {"learning_rate": [1e-3]}}, r"unknown key base\.lr"),
        ({"grid": {"momentum": [0.9]}}, r"unknown key grid\.momentum"),
        ({"grid": {}}, r"\[grid\] is empty"),
        ({"base": {"epochs": 3}}, r"\[grid\] is empty"),
        ({"grid": {"learning_rate": []}}, r"expected a non-empty list"),
        ({"grid": {"learning_rate": [1e-3]}, "extra": 1}, r"unknown top-level key 'extra'"),
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

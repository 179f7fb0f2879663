import pytest

from flaxmnist.core.train import TrainSpec
from flaxmnist.run.plan import (
    DEFAULT_MAX_LANES,
    Call,
    group_configs,
    lane_bytes,
    plan_calls,
    split_call,
    train_spec_of,
)
from flaxmnist.specs.config import Config
from flaxmnist.studies import load_study


def test_groups_follow_shapes_in_first_seen_order():
    configs = [
        Config(hidden=(300,)),
        Config(hidden=(500,)),
        Config(hidden=(300,), epochs=3),
        Config(hidden=(300,), learning_rate=0.1),
    ]
    groups = group_configs(configs)
    assert [g.config_indices for g in groups] == [(0, 3), (1,), (2,)]
    assert groups[1].spec.hidden == (500,)


def test_a_calls_spec_is_complete_protocol_and_dtype_included():
    config = Config(hidden=(8, 4), dropout=(0.0, 0.2), weight_decay=0.1)
    spec = train_spec_of(config, val_is_test=True, dtype="bfloat16")
    assert spec == TrainSpec(
        hidden=(8, 4),
        epochs=10,
        batch_size=200,
        use_dropout=True,
        use_l2=False,
        use_weight_decay=True,
        use_input_dropout=False,
        use_max_norm=False,
        use_schedule=False,
        val_is_test=True,
        compute_dtype="bfloat16",
        use_ema=False,
        use_label_smoothing=False,
    )
    calls = plan_calls([[config]], seeds=2, val_is_test=True, dtype="bfloat16")
    assert [c.spec for c in calls] == [spec]


def test_calls_respect_max_lanes_and_the_memory_budget():
    configs = load_study("lr").configs
    calls = plan_calls([configs], seeds=3, max_lanes=10, memory_budget=0)
    assert [len(c.lanes) for c in calls] == [9] * 8  # whole configurations x 3 seeds
    assert all(c.seeds == (0, 1, 2) for c in calls)
    assert [lane for c in calls for lane in c.lanes] == [
        (i, s) for i in range(24) for s in range(3)
    ]
    # Fewer lanes than seeds: a configuration's seeds are split over calls.
    calls = plan_calls([configs[:2]], seeds=3, max_lanes=2, memory_budget=0)
    assert [(c.config_indices, c.seeds) for c in calls] == [
        ((0,), (0, 1)),
        ((0,), (2,)),
        ((1,), (0, 1)),
        ((1,), (2,)),
    ]
    per_lane = lane_bytes(TrainSpec(hidden=(300,)))
    assert 5e6 < per_lane < 50e6  # 238,510 parameters: megabytes, not bytes or gigabytes
    calls = plan_calls([configs], seeds=3, memory_budget=int(20.5 * per_lane))
    assert {len(c.lanes) for c in calls} == {18}  # 20 lanes fit: 6 configurations x 3 seeds
    calls = plan_calls([configs], seeds=3, memory_budget=2**40)
    assert {len(c.lanes) for c in calls} == {DEFAULT_MAX_LANES}
    calls = plan_calls([configs], seeds=3, memory_budget=2**40, lane_cap=None)
    assert [len(c.lanes) for c in calls] == [72]  # an accelerator: every lane at once
    assert lane_bytes(TrainSpec(hidden=(2000,))) > 4 * per_lane  # grows with the width


def test_named_studies_group_by_shape():
    assert len(group_configs(load_study("hidden").configs)) == 6  # one compile per width
    l2 = group_configs(load_study("l2").configs)
    assert [g.config_indices for g in l2] == [(0, 1), (2,)]  # 10 and 30 epochs
    # 4 shapes; the configurations without any dropout compile without dropout masks.
    three_layer = group_configs(load_study("three-layer").configs)
    assert len(three_layer) == 8
    assert sum(not g.spec.use_dropout for g in three_layer) == 4
    assert all(len(g.config_indices) == 1 for g in three_layer if not g.spec.use_dropout)
    # Accelerators: one program per shape, with dropout for all (rate 0 is exact).
    merged = group_configs(load_study("three-layer").configs, split_regularisers=False)
    assert len(merged) == 4 and all(g.spec.use_dropout for g in merged)
    assert sorted(i for g in merged for i in g.config_indices) == list(range(36))
    l2_merged = group_configs(load_study("l2").configs, split_regularisers=False)
    assert [g.spec.use_l2 for g in l2_merged] == [False, True]  # 10 and 30 epochs still apart


def test_studies_are_planned_in_order_with_their_index():
    lr, l2 = load_study("lr").configs[:2], load_study("l2").configs
    calls = plan_calls([lr, l2], seeds=1)
    assert [c.study_index for c in calls] == [0, 1, 1]


@pytest.mark.parametrize("lanes", [1, 2, 3, 4, 5, 6, 7, 100])
def test_split_call_keeps_every_lane_once_in_order_within_the_size(lanes):
    call = Call(1, TrainSpec(hidden=(8,)), (3, 5, 7), (0, 1))
    parts = split_call(call, lanes)
    assert [lane for part in parts for lane in part.lanes] == list(call.lanes)
    assert all(len(part.lanes) <= lanes and part.study_index == 1 for part in parts)
    if lanes >= len(call.seeds):  # whole configurations, each with all its seeds
        assert all(part.seeds == call.seeds for part in parts)
    else:
        assert all(len(part.config_indices) == 1 for part in parts)


def test_a_feature_a_configuration_uses_is_compiled_in_and_only_then():
    """A program without input dropout would train a rate of 0.2 as 0, silently."""
    plain = train_spec_of(Config())
    assert not (plain.use_input_dropout or plain.use_max_norm or plain.use_schedule)
    assert train_spec_of(Config(input_dropout=0.2)).use_input_dropout
    assert train_spec_of(Config(max_norm=3.0)).use_max_norm
    assert train_spec_of(Config(lr_schedule="cosine")).use_schedule
    assert train_spec_of(Config(warmup_epochs=1.0)).use_schedule
    (group,) = group_configs(
        [Config(), Config(input_dropout=0.1), Config(max_norm=2.0)], split_regularisers=False
    )
    assert group.spec.use_input_dropout and group.spec.use_max_norm
    assert not group.spec.use_schedule


def test_padding_widths_puts_each_depth_in_one_program():
    hidden = group_configs(load_study("hidden").configs, pad_widths=True)
    assert len(hidden) == 1 and hidden[0].spec.hidden == (2000,) and hidden[0].spec.padded
    three = group_configs(
        load_study("three-layer").configs, split_regularisers=False, pad_widths=True
    )
    assert [g.spec.hidden for g in three] == [(500, 300)] and three[0].spec.padded
    assert len(three[0].config_indices) == 36
    lr = group_configs(load_study("lr").configs, pad_widths=True)  # one width: nothing to pad
    assert len(lr) == 1 and lr[0].spec.hidden == (300,) and not lr[0].spec.padded
    mixed = [Config(hidden=(8,)), Config(hidden=(4, 4)), Config(hidden=(16,))]
    groups = group_configs(mixed, pad_widths=True)
    assert [(g.spec.hidden, g.config_indices) for g in groups] == [((16,), (0, 2)), ((4, 4), (1,))]


def test_each_configuration_s_trainspec_is_derived_once_per_run(monkeypatch, tmp_path):
    """A grid, a halving search and a learned search in one run, with a budget: the plan
    derives each configuration's TrainSpec, and nothing derives one again."""
    from collections import Counter

    from flaxmnist import run_sweep
    from flaxmnist.run import plan as plan_module
    from flaxmnist.specs.config import config_from_dict
    from flaxmnist.studies import parse_study

    derived = Counter()
    original = plan_module.train_spec_of

    def counting(config, *args, **kwargs):
        derived[config] += 1
        return original(config, *args, **kwargs)

    monkeypatch.setattr(plan_module, "train_spec_of", counting)
    base = {"hidden": [16], "epochs": 2}
    space = {"learning_rate": {"log_uniform": [1e-2, 1e-1]}}
    studies = [
        parse_study({"base": base, "grid": {"learning_rate": [3e-3, 5e-3]}}, "g", "g.toml"),
        parse_study(
            {"strategy": "halving", "samples": 4, "base": base, "search": space}, "h", "h.toml"
        ),
        parse_study(
            {"strategy": "tpe", "samples": 4, "base": base, "search": space}, "t", "t.toml"
        ),
    ]
    records = run_sweep(
        studies, seeds=2, limit_train=400, max_lanes=4, budget=1e15, out=tmp_path, quiet=True
    )
    trained = {config_from_dict(r["config"]) for r in records}
    assert len(trained) == 2 + 4 + 4
    assert {config: derived[config] for config in trained} == dict.fromkeys(trained, 1)
    stand_in = parse_study({"base": base, "configs": [{}]}, "s", "s").configs[0]
    assert set(derived) == trained | {stand_in}  # the learned space's one shape, planned

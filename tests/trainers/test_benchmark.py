"""The benchmark runs end to end at toy size (speed is never asserted)."""

import keras
import pytest

import zoo
from trainers import benchmark, loop

TOY = {
    "mlp": benchmark.BenchModel(
        "plain_mlp", dict(depth=2, width=8), (6,), 3, False, 16, "toy MLP"
    ),
    "lstm": benchmark.BenchModel("lstm", dict(units=4), (5, 2), 1, True, 8, "toy LSTM"),
}
# The ResNet runs through the MLP's code path (a non-recurrent model): its
# real size is checked in test_models_table_builds_every_model_at_its_real_size.
HAS_TORCH = benchmark.torch_installed()


@pytest.mark.parametrize("name", sorted(TOY))
def test_every_case_runs_at_toy_size(name):
    m = benchmark.measure(name, TOY[name], repeats=2, block_seconds=0.01, steps=3)
    cases = set(m["cases"])
    expected = {
        "a_gradzoo_norms_every_100",
        "b_gradzoo_norms_every_step",
        "c_keras_fit",
        "d_bare_tape",
        "g_keras_fit_monitor_every_10",
        "h_gradzoo_norms_every_100_no_update_norms",
    }
    assert cases == expected | ({"e_pytorch_eager"} if HAS_TORCH else set())
    for c in m["cases"].values():
        assert len(c["steps_per_second"]) == 2 and min(c["steps_per_second"]) > 0
        assert c["flops_per_second"] > 0 and c["peak_rss_mb"] > 0
    assert m["cases"]["c_keras_fit"]["ratio_to_c"] == 1.0
    # The recurrent models say how many slices their batch ran in.
    assert m.get("batch_slices") == (1 if name == "lstm" else None)
    header = benchmark.format_results({"models": {name: m}, "checks": []})
    note = ", batch in 1 slice)" if name == "lstm" else ")"
    assert header.splitlines()[1].endswith(f"(3 steps per block{note}")


def test_the_warm_up_runs_both_step_variants_after_every_build(monkeypatch):
    # Every model build seeds, which clears TensorFlow's instantiated
    # functions: a variant first run before the last build would be
    # optimized again inside a timed block.
    calls = []
    call = loop.TrainStep.__call__

    def recording(self, iterator, with_norms):
        calls.append(with_norms)
        return call(self, iterator, with_norms)

    monkeypatch.setattr(loop.TrainStep, "__call__", recording)
    block = benchmark._gradzoo_case(TOY["mlp"], benchmark._task(TOY["mlp"]), 100)
    assert calls == []  # nothing runs while the cases are built
    block(2)  # measure()'s warm-up
    assert calls == [True, False]
    block(98)
    assert calls.count(True) == 1 and calls[-1] is False
    block(1)
    assert calls[-1] is True  # every 100 steps, as in the trainer


def test_flop_count_matches_the_formula():
    mlp = zoo.get_model("plain_mlp", input_shape=(6,), num_outputs=3, depth=2, width=8)
    # 3 x 2 x (6*8 + 8*8 + 8*3) matmul FLOPs per example.
    assert benchmark.train_flops_per_example(mlp) == 3 * 2 * (48 + 64 + 24)
    lstm = zoo.get_model("lstm", input_shape=(5, 2), num_outputs=1, units=4)
    # Per time step the kernel [2, 16] and recurrent kernel [4, 16]; head [4, 1].
    assert benchmark.train_flops_per_example(lstm) == 3 * 2 * (5 * (32 + 64) + 4)
    resnet = zoo.get_model(
        "resnet", input_shape=(8, 8, 3), num_outputs=3, depth=8, width=2
    )
    # 3x3 convs: stem 3->2 and block00 2->2 twice on 8x8 maps, block01 2->4
    # and 4->4 on 4x4, block02 4->8 and 8->8 on 2x2; a head 8x3.
    convs = 9 * (64 * (6 + 4 + 4) + 16 * (8 + 16) + 4 * (32 + 64))
    assert benchmark.train_flops_per_example(resnet) == 3 * 2 * (convs + 24)


def test_checks_and_table_from_results():
    fake = {
        "steps_per_second": [1.0],
        "flops_per_second": 5e9,
        "peak_rss_mb": 1.0,
        "cpu_ratio_to_c": 1.0,
    }
    cases = {
        k: {**fake, "median": v, "ratio_to_c": v / 100}
        for k, v in {
            "a_gradzoo_norms_every_100": 105.0,
            "b_gradzoo_norms_every_step": 95.0,
            "c_keras_fit": 100.0,
            "d_bare_tape": 100.0,
        }.items()
    }
    results = {
        "peak_flops_per_second": 1e10,
        "models": {
            "mlp_50x128": {
                "description": "x",
                "steps_per_block": 3,
                "train_flops_per_step": 1e8,
                "cases": cases,
            }
        },
    }
    results["checks"] = benchmark.checks(results)
    values = {c["check"]: c["value"] for c in results["checks"]}
    assert values["(a)/(c) on mlp_50x128"] == pytest.approx(1.05)
    assert values["(b)/(d) overhead on mlp_50x128"] == pytest.approx(0.05)
    assert values["(a)/(e) on mlp_50x128"] is None  # no torch case
    table = benchmark.format_results(results)
    assert "1.05" in table and "not measured" in table and "50%" in table


# The real sizes, by hand. A plain MLP: a first dense layer from the 64
# inputs, (depth - 1) width x width dense layers, and a 10-way head, each
# with a bias. An LSTM: 4 gates, each with a kernel [2, 128], a recurrent
# kernel [128, 128] and a bias [128]; then a dense head [128, 1] + bias. A
# GRU: 3 gates, each with a kernel, a recurrent kernel and two biases (Keras'
# reset_after=True keeps an input and a recurrent bias).
REAL_SIZES = {
    "mlp_50x128": (64 * 128 + 128) + 49 * (128 * 128 + 128) + (128 * 10 + 10),
    "mlp_50x1024": (64 * 1024 + 1024) + 49 * (1024 * 1024 + 1024) + (1024 * 10 + 10),
    "lstm_128_t100": 4 * (2 * 128 + 128 * 128 + 128) + (128 * 1 + 1),
    "gru_128_t100": 3 * (2 * 128 + 128 * 128 + 2 * 128) + (128 * 1 + 1),
    "resnet20_cifar": 271_098,  # tests/zoo/test_cnn.py PARAMETER_COUNTS
}


def test_models_table_builds_every_model_at_its_real_size():
    assert set(benchmark.MODELS) == set(REAL_SIZES)
    for name, bm in benchmark.MODELS.items():
        keras.backend.clear_session()
        model = benchmark._keras_model(bm)
        assert model.count_params() == REAL_SIZES[name], name


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_the_gru_twin_has_the_keras_gru_s_parameters():
    # Both keep an input and a recurrent bias per gate (Keras' reset_after).
    bm = benchmark.BenchModel("gru", dict(units=4), (5, 2), 1, True, 8, "toy GRU")
    twin = benchmark._torch_model(bm)
    assert sum(p.numel() for p in twin.parameters()) == (
        benchmark._keras_model(bm).count_params()
    )
    x = benchmark._task(bm).x_train[:8]
    import torch

    assert tuple(twin(torch.from_numpy(x)).shape) == (8, 1)


def test_profile_dir_gets_one_trace_per_case_and_no_torch_skips_e(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(benchmark, "torch_installed", lambda: False)
    m = benchmark.measure(
        "mlp",
        TOY["mlp"],
        repeats=1,
        block_seconds=0.01,
        steps=2,
        profile_dir=str(tmp_path),
    )
    traced = sorted(p.name for p in (tmp_path / "mlp").iterdir())
    assert traced == [
        "a_gradzoo_norms_every_100",
        "b_gradzoo_norms_every_step",
        "c_keras_fit",
        "d_bare_tape",
        "g_keras_fit_monitor_every_10",
        "h_gradzoo_norms_every_100_no_update_norms",
    ]
    assert list((tmp_path / "mlp" / "d_bare_tape").rglob("*.xplane.pb"))
    assert "e_pytorch_eager" not in m["cases"] and "d_bare_tape" in m["cases"]

"""RunConfig resolution, optimizers, schedules, and the run-directory rules."""

import json
import os

import keras
import pytest

import zoo
from trainers import rundir, runner


def test_resolved_config_states_every_default():
    c = runner.RunConfig(
        model="residual_mlp", model_kwargs={"depth": 7}, optimizer="adadelta"
    )
    r = c.resolved()
    assert r.model_kwargs == {
        "depth": 7,
        "width": 64,
        "activation": "sigmoid",
        "initializer": "glorot_uniform",
        "init_std": 0.01,
        "norm": "none",
        "l1": 0.0,
        "l2": 0.0,
    }
    # Keras' Adadelta default is 0.001, not the paper's 1.0: recorded as such.
    assert r.learning_rate == 0.001
    assert r.optimizer_kwargs == {"rho": 0.95, "epsilon": 1e-07, "weight_decay": 0.0}
    assert c.model_kwargs == {"depth": 7}  # the original is left alone


@pytest.mark.parametrize(
    "name,kwargs,cls,attrs",
    [
        ("momentum", {}, keras.optimizers.SGD, {"momentum": 0.9, "nesterov": False}),
        (
            "nesterov",
            {"momentum": 0.5},
            keras.optimizers.SGD,
            {"momentum": 0.5, "nesterov": True},
        ),
        ("adamw", {"weight_decay": 0.1}, keras.optimizers.AdamW, {"weight_decay": 0.1}),
        ("rmsprop", {"rho": 0.8}, keras.optimizers.RMSprop, {"rho": 0.8}),
        ("sgd", {"weight_decay": 0.01}, keras.optimizers.SGD, {"weight_decay": 0.01}),
        ("adam", {}, keras.optimizers.Adam, {"weight_decay": None}),
    ],
)
def test_optimizer_presets_and_hyperparameters(name, kwargs, cls, attrs):
    opt = runner.make_optimizer(
        runner.RunConfig(optimizer=name, optimizer_kwargs=kwargs).resolved()
    )
    assert type(opt) is cls
    for k, v in attrs.items():
        assert getattr(opt, k) == pytest.approx(v)


def test_learning_rate_schedules():
    c = runner.RunConfig(
        learning_rate=0.1, lr_schedule="cosine", num_steps=100
    ).resolved()
    sched = runner.make_schedule(c)
    assert float(sched(0)) == pytest.approx(0.1)
    assert float(sched(50)) == pytest.approx(0.05, rel=1e-5)
    assert float(sched(100)) == pytest.approx(0.0, abs=1e-7)
    c = runner.RunConfig(
        learning_rate=0.1, lr_schedule="step", lr_decay_steps=10, lr_decay_rate=0.5
    ).resolved()
    sched = runner.make_schedule(c)
    assert [round(float(sched(s)), 6) for s in (0, 9, 10, 25)] == [
        0.1,
        0.1,
        0.05,
        0.025,
    ]
    assert runner.make_schedule(runner.RunConfig(learning_rate=0.3).resolved()) == 0.3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"optimizer": "lion"}, "Unknown optimizer 'lion'"),
        ({"optimizer": "sgd", "optimizer_kwargs": {"beta_1": 0.9}}, "takes no beta_1"),
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
        ({"learning_rate": -1.0}, "learning_rate must be positive"),
        ({"batch_size": 0}, "batch_size must be positive"),
        ({"num_steps": -5}, "num_steps must be positive"),
        (
            {"clipping": "global_norm", "clip_threshold": 0.0},
            "clip_threshold must be positive",
        ),
        ({"clipping": "sometimes"}, "Unknown clipping"),
        ({"lr_schedule": "step"}, "lr_decay_steps must be positive"),
        (
            {"optimizer": "momentum", "optimizer_kwargs": {"momentum": 1.5}},
            "momentum must be in",
        ),
        ({"model": "nope"}, "Unknown model 'nope'"),
        ({"task": "nope"}, "Unknown task 'nope'"),
        (
            {"optimizer": "adam", "optimizer_kwargs": {"beta_1": 1.0}},
            "beta_1 must be in",
        ),
        (
            {"optimizer": "rmsprop", "optimizer_kwargs": {"rho": float("nan")}},
            "rho must be",
        ),
        (
            {"optimizer": "adam", "optimizer_kwargs": {"epsilon": 0.0}},
            "epsilon must be",
        ),
        ({"learning_rate": 1e39}, "learning_rate must be positive and finite"),
        ({"early_stopping_min_delta": float("nan")}, "early_stopping_min_delta"),
        ({"lr_decay_steps": 100}, "lr_decay_steps applies to lr_schedule 'step'"),
        ({"model_kwargs": {"depth": 0}}, None),  # the builder refuses it when built
        ({"jit_compile": True, "strategy": "mirrored"}, "jit_compile works with"),
    ],
)
def test_bad_settings_are_refused_with_the_culprit_named(kwargs, match):
    config = runner.RunConfig(**kwargs)
    if match is None:
        with pytest.raises(ValueError, match="Received: depth=0"):
            runner.prepare(config, "/nonexistent/never-written")
        return
    with pytest.raises(ValueError, match=match):
        config.resolved()


def test_model_and_task_input_kinds_must_match(monkeypatch):
    spec = zoo.registry.ModelSpec(
        "seq_only", lambda **kw: None, ("sequence",), {}, zoo.kernel_depth_axis
    )
    monkeypatch.setitem(zoo.registry._MODELS, "seq_only", spec)
    with pytest.raises(
        ValueError, match="takes sequence inputs, but task 'digits' gives image"
    ):
        runner.RunConfig(model="seq_only").resolved()


def test_prepare_refuses_unusable_output_dirs(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(rundir.RunDirError, match="exists and is not a directory"):
        rundir.prepare(str(a_file), {}, overwrite=False)
    with pytest.raises(rundir.RunDirError, match="not writable"):
        rundir.prepare(str(a_file / "sub"), {}, overwrite=False)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_text("meow")
    with pytest.raises(rundir.RunDirError, match="holds no gradzoo run"):
        rundir.prepare(str(foreign), {}, overwrite=True)
    assert (foreign / "cat.jpg").read_text() == "meow"


def _cfg(**kw):
    return {rundir.FORMAT_KEY: rundir.FORMAT, **kw}


def test_prepare_resumes_same_config_refuses_other_unless_overwrite(tmp_path):
    run = str(tmp_path / "run")
    assert rundir.prepare(run, _cfg(a=1), overwrite=False) == "new"
    rundir.write_json(os.path.join(run, "config.json"), _cfg(a=1, versions={"tf": "1"}))
    assert (
        rundir.prepare(run, _cfg(a=1, versions={"tf": "2"}), overwrite=False)
        == "resume"
    )
    with pytest.raises(rundir.RunDirError, match=r"different config \(a: 1 -> 2\)"):
        rundir.prepare(run, _cfg(a=2), overwrite=False)
    assert json.load(open(os.path.join(run, "config.json")))["a"] == 1
    (tmp_path / "run" / "notes.txt").write_text("mine")
    os.makedirs(os.path.join(run, "ckpt"))
    assert rundir.prepare(run, _cfg(a=2), overwrite=True) == "new"
    assert os.listdir(run) == ["notes.txt"]  # only the run's own files went


def test_overwrite_never_touches_a_directory_that_is_not_a_gradzoo_run(tmp_path):
    for content in ('{"name": "my-app"}', "[1, 2]", "not json"):
        project = tmp_path / "project"
        (project / "src").mkdir(parents=True, exist_ok=True)
        (project / "config.json").write_text(content)
        (project / "src" / "important.txt").write_text("keep")
        with pytest.raises(rundir.RunDirError, match="holds no gradzoo run"):
            rundir.prepare(str(project), _cfg(a=1), overwrite=True)
        assert (project / "src" / "important.txt").read_text() == "keep"
    with pytest.raises(rundir.RunDirError, match="output_dir is empty"):
        rundir.prepare("", _cfg(), overwrite=True)


def test_an_identical_config_with_non_finite_numbers_is_the_same_run(tmp_path):
    run = str(tmp_path / "run")
    config = _cfg(task_info={"baselines": {"loss": float("inf")}}, shape=(8, 8))
    rundir.prepare(run, config, overwrite=False)
    rundir.write_json(os.path.join(run, "config.json"), config)
    assert rundir.prepare(run, config, overwrite=False) == "resume"


def test_jsonl_rows_are_whole_and_non_finite_numbers_are_null(tmp_path):
    path = str(tmp_path / "m.jsonl")
    rundir.append_jsonl(
        path, {"step": 1, "loss": float("nan"), "g": {"a": float("inf")}}
    )
    rundir.append_jsonl(path, {"step": 2, "loss": 1.5})
    with open(path, "a") as f:
        f.write('{"step": 3, "lo')  # a writer killed mid-line
    assert rundir.read_jsonl(path) == [
        {"step": 1, "loss": None, "g": {"a": None}},
        {"step": 2, "loss": 1.5},
    ]
    rundir.truncate_jsonl(path, 1)
    assert rundir.read_jsonl(path) == [{"step": 1, "loss": None, "g": {"a": None}}]
    with open(path, "a") as f:
        f.write('garbage\n{"step": 9}\n')
    with pytest.raises(rundir.RunDirError, match="m.jsonl line 2 is not valid JSON"):
        rundir.read_jsonl(path)


def test_a_batch_larger_than_the_data_is_refused_before_anything_is_written(
    tmp_path, data_dir
):
    config = runner.RunConfig(batch_size=800, grad_accum_steps=2, data_dir=data_dir)
    with pytest.raises(ValueError, match="= 1600 is more than task 'digits' has"):
        runner.prepare(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_run_from_before_the_recurrent_settings_still_resumes(tmp_path):
    # A config.json as gradzoo wrote it before task arguments were resolved
    # and before log_gradient_through_time, task_info.output_per_step and
    # depth_axis.
    def cfg(**kw):
        return runner.RunConfig(
            model_kwargs={"depth": 2, "width": 4}, task="teacher", **kw
        )

    runner.prepare(cfg(), str(tmp_path))
    path = tmp_path / rundir.CONFIG_FILE
    old = json.loads(path.read_text())
    assert old["depth_axis"] == [
        [0, "block00_dense/kernel"],
        [1, "block01_dense/kernel"],
    ]
    del old["log_gradient_through_time"], old["task_info"]["output_per_step"]
    del old["depth_axis"]
    old["task_kwargs"] = {}
    path.write_text(json.dumps(old))
    runner.prepare(cfg(), str(tmp_path))  # resumes: no "different config"
    with pytest.raises(rundir.RunDirError, match="num_steps: 1000 -> 7"):
        runner.prepare(cfg(num_steps=7), str(tmp_path))

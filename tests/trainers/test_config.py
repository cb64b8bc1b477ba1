"""RunConfig: resolution, the task recipe, --config files, optimizers, schedules."""

import inspect
import json

import keras
import pytest

import zoo
from analysis import schema
from trainers import config as gz_config
from trainers.config import RunConfig


def test_resolved_config_states_every_default():
    c = RunConfig(model="residual_mlp", model_kwargs={"depth": 7}, optimizer="adadelta")
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
        "branch_scale": "none",
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
    opt = gz_config.make_optimizer(
        RunConfig(optimizer=name, optimizer_kwargs=kwargs).resolved()
    )
    assert type(opt) is cls
    for k, v in attrs.items():
        assert getattr(opt, k) == pytest.approx(v)


def test_keras_defaults_are_the_installed_keras_defaults():
    # Written out so that resolving needs no Keras; they must stay Keras' own.
    for name, written in gz_config.KERAS_DEFAULTS.items():
        params = inspect.signature(getattr(keras.optimizers, name).__init__).parameters
        assert written == {k: params[k].default for k in written}, name
    for name, (class_name, _, settable) in gz_config.OPTIMIZERS.items():
        wanted = {"learning_rate", "weight_decay", *settable}
        assert wanted <= set(gz_config.KERAS_DEFAULTS[class_name]), name


def test_learning_rate_schedules():
    c = RunConfig(learning_rate=0.1, lr_schedule="cosine", num_steps=100).resolved()
    sched = gz_config.make_schedule(c)
    assert float(sched(0)) == pytest.approx(0.1)
    assert float(sched(50)) == pytest.approx(0.05, rel=1e-5)
    assert float(sched(100)) == pytest.approx(0.0, abs=1e-7)
    c = RunConfig(
        learning_rate=0.1, lr_schedule="step", lr_decay_steps=10, lr_decay_rate=0.5
    ).resolved()
    sched = gz_config.make_schedule(c)
    assert [round(float(sched(s)), 6) for s in (0, 9, 10, 25)] == [
        0.1,
        0.1,
        0.05,
        0.025,
    ]
    assert gz_config.make_schedule(RunConfig(learning_rate=0.3).resolved()) == 0.3


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
        ({"model_kwargs": {"depth": 0}}, "depth must be >= 1. Received: depth=0"),
        ({"jit_compile": True, "strategy": "mirrored"}, "jit_compile works with"),
    ],
)
def test_bad_settings_are_refused_with_the_culprit_named(kwargs, match):
    config = RunConfig(**kwargs)
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
        RunConfig(model="seq_only").resolved()


def test_the_task_recipe_is_applied_by_resolved_not_by_flags():
    c = RunConfig(model="lstm", task="adding").resolved()
    assert (c.optimizer, c.learning_rate, c.batch_size) == ("adam", 1e-3, 64)
    assert (c.clipping, c.clip_threshold) == ("global_norm", 1.0)
    # "Set to the default" is not "not set": an explicit sgd keeps Keras' rate.
    c = RunConfig(model="lstm", task="adding", optimizer="sgd").resolved()
    assert (c.optimizer, c.learning_rate, c.batch_size) == ("sgd", 0.01, 64)
    c = RunConfig(
        model="lstm", task="adding", batch_size=128, clipping="none"
    ).resolved()
    assert (c.batch_size, c.clipping, c.clip_threshold) == (128, "none", 0.0)
    c = RunConfig(model="lstm", task="adding", recipe=False).resolved()
    assert (c.optimizer, c.batch_size, c.clipping) == ("sgd", 128, "none")
    # Tasks without a recipe get the plain defaults.
    c = RunConfig().resolved()
    assert (c.optimizer, c.learning_rate, c.batch_size, c.clipping) == (
        "sgd",
        0.01,
        128,
        "none",
    )


def test_resolving_twice_changes_nothing():
    for c in (RunConfig(model="gru", task="adding"), RunConfig(optimizer="adadelta")):
        once = c.resolved()
        assert once.resolved() == once
        assert RunConfig.from_dict(once.to_dict()).resolved() == once


def test_recipe_settings_say_what_the_recipe_supplied():
    c = RunConfig(model="gru", task="adding", batch_size=16)
    assert c.recipe_settings() == {
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "clipping": "global_norm",
        "clip_threshold": 1.0,
    }
    assert RunConfig(model="gru", task="adding", recipe=False).recipe_settings() == {}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_steps": 10.5}, "num_steps must be positive"),
        ({"num_steps": True}, "num_steps must be positive"),
        ({"clip_threshold": 1.0}, "clip_threshold=1.0 is set but clipping is not"),
        ({"model_kwargs": {"width": "wide"}}, "width must be an integer"),
        ({"model_kwargs": {"activation": "swish"}}, "Unknown activation 'swish'"),
        ({"model_kwargs": {"units": 8}}, "Model 'plain_mlp' takes no argument units"),
        ({"task_kwargs": {"num_train": 10}}, "Task 'digits' takes no argument"),
        ({"jit_compile": "yes"}, "jit_compile must be true or false"),
    ],
)
def test_types_and_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**kwargs).resolved()


def test_config_files(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": "residual_mlp", "num_steps": 7}))
    c = gz_config.load_config_file(str(path))
    assert (c.model, c.num_steps, c.task) == ("residual_mlp", 7, "digits")
    # A run directory's config.json (any readable format) works the same way.
    record = schema.RunRecord(
        config=c.resolved().to_dict(),
        num_replicas=1,
        task_info={},
        num_parameters=0,
        versions={},
    )
    path.write_text(json.dumps(record.to_json()))
    assert gz_config.load_config_file(str(path)) == c.resolved()
    for run1 in (dict(record.to_json(), format="gradzoo-run-1"),):
        path.write_text(json.dumps(run1))
        assert gz_config.load_config_file(str(path)).num_steps == 7


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "does not exist"),
        ("{not json", "is not JSON"),
        (b"\xff\xfe\x00", "cannot be read"),
        ("[1, 2]", "holds a JSON list, not an object"),
        ('{"format": "gradzoo-run-9", "model": "lstm"}', "unknown run format"),
        ('{"model": "lstm", "num_stepz": 3}', "unknown RunConfig field num_stepz"),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path, content, match):
    path = tmp_path / "c.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        gz_config.load_config_file(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)

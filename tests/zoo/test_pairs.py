"""Every pair is a controlled comparison: its arms differ in exactly one setting."""

import pytest

import zoo

# A tiny input of each kind; a pair's arms take the kind of the pair's task.
INPUTS = {"vector": (6,), "image": (4, 4, 1), "sequence": (5, 2)}

# The layer type that only this model has among the models a pair switches.
MODEL_MARKERS = {
    "residual_mlp": "Add",
    "resnet": "Add",
    "vanilla_rnn": "SimpleRNN",
    "lstm": "LSTM",
    "gru": "GRU",
}
# (Keras class name, stddev) of the kernel initializer each name builds.
INITIALIZERS = {
    "glorot_normal": ("GlorotNormal", None),
    "glorot_uniform": ("GlorotUniform", None),
    "he_normal": ("HeNormal", None),
}


def _changes_size(switch) -> bool:
    """Whether a switch adds parameters by design, so counts may differ.

    A normalization layer has its own scale and shift; a gated cell has 4
    (LSTM) or 3 (GRU) recurrent weight blocks where a vanilla RNN has one.
    """
    return (
        "norm" in switch
        or "branch_scale" in switch  # scalar multipliers and biases
        or bool({"lstm", "gru"} & set(switch.get("model", ())))
    )


def _kernel_initializer(layer):
    config = layer.get_config()["kernel_initializer"]
    return config["class_name"], config["config"].get("stddev")


# Switches of how an arm is trained, not of what is built: the built arms
# must be identical in everything OBSERVED.
TRAINING_SWITCHES = ("pretrained",)

# What each switchable setting looks like in a built model, read from its
# layers (not from the kwargs that asked for it).
OBSERVED = {
    "model": lambda m: sorted({type(layer).__name__ for layer in m.layers}),
    "norm": lambda m: [
        type(ly).__name__ for ly in m.layers if ly.name.endswith("_norm")
    ],
    "activation": lambda m: [
        ly.get_config()["activation"] for ly in m.layers if ly.name.endswith("_act")
    ],
    "initializer": lambda m: [
        _kernel_initializer(ly) for ly in m.layers if ly.name.endswith("_dense")
    ],
    # The scalar layers of a branch scale, by role (the name after blockNN_).
    "branch_scale": lambda m: sorted(
        {ly.name.split("_", 1)[1] for ly in m.layers if type(ly).__name__ == "Scalar"}
    ),
}
# What a switch changes by design besides itself: a norm adds its layer
# type; a branch scale adds the Scalar layer type, and Fixup zero-initializes
# the branches' last layers and the head.
ALSO_CHANGES = {"norm": ("model",), "branch_scale": ("model", "initializer")}
BRANCH_SCALARS = {
    "none": [],
    "rezero": ["rezero"],
    "fixup": ["bias", "bias_in", "bias_out", "scale"],  # "bias": head_bias
}


def _num_layers(model_name, depth):
    """Layers with a norm and an activation: a 6n+2 CNN has 6n+1 (no head)."""
    return depth - 1 if model_name in ("plain_cnn", "resnet") else depth


def _expected(key, model_name, kwargs):
    """What OBSERVED[key] must read on an arm built from (model_name, kwargs)."""
    depth = _num_layers(model_name, kwargs.get("depth"))
    if key == "branch_scale":
        return BRANCH_SCALARS[kwargs["branch_scale"]]
    if key == "norm":
        names = {
            "none": [],
            "batch": ["BatchNormalization"],
            "layer": ["LayerNormalization"],
        }
        return names[kwargs["norm"]] * depth
    if key == "activation":
        return [kwargs["activation"]] * depth
    if key == "initializer":
        # Every hidden layer and the head use the chosen kernel initializer.
        small = ("RandomNormal", kwargs.get("init_std"))
        return [INITIALIZERS.get(kwargs["initializer"], small)] * (depth + 1)
    raise AssertionError(f"teach _expected about switch {key!r}")


@pytest.mark.parametrize("name", zoo.list_pairs())
def test_pair_arms_differ_in_exactly_one_setting_and_build(name):
    pair = zoo.get_pair(name)
    assert len(pair.switch) == 1, pair.switch
    assert pair.task in zoo.list_tasks()
    (key,) = pair.switch
    assert key in OBSERVED or key in TRAINING_SWITCHES, (
        f"test_pairs cannot yet see a {key!r} switch"
    )
    kind = zoo.task_spec(pair.task).input_kind
    counts, observed = [], []
    for which, switched in zip(("baseline", "treatment"), pair.switch[key]):
        model_name, kwargs = pair.arm(which)
        spec = zoo.model_spec(model_name)
        assert kind in spec.input_kinds, (model_name, pair.task)
        # Tiny sizes, but never over the switch: the arms must still differ.
        kwargs = {
            **kwargs,
            **{k: v for k, v in spec.tiny.items() if k not in pair.switch},
        }
        if key in TRAINING_SWITCHES:
            assert getattr(pair, which).pretrained == switched
        elif key != "model":
            assert kwargs[key] == switched
        model = zoo.get_model(
            model_name, input_shape=INPUTS[kind], num_outputs=3, **kwargs
        )
        assert model.input_shape == (None, *INPUTS[kind])
        counts.append(model.count_params())
        observed.append({k: read(model) for k, read in OBSERVED.items()})
        if key == "model":
            if model_name in MODEL_MARKERS:
                assert MODEL_MARKERS[model_name] in observed[-1]["model"]
        elif key not in TRAINING_SWITCHES:
            assert observed[-1][key] == _expected(key, model_name, kwargs), which
    # The built arms differ in the switch, and in nothing else that is visible.
    for k in OBSERVED:
        if k == key:
            assert observed[0][k] != observed[1][k], k
        elif k not in ALSO_CHANGES.get(key, ()):
            assert observed[0][k] == observed[1][k], k
    if key == "model":
        for model_name, other in zip(pair.switch["model"], observed[::-1]):
            if model_name in MODEL_MARKERS:
                assert MODEL_MARKERS[model_name] not in other["model"]
    if not _changes_size(pair.switch):
        assert counts[0] == counts[1]


def test_mlp_residual_describes_itself():
    pair = zoo.get_pair("mlp_residual")
    assert pair.switch == {"model": ("plain_mlp", "residual_mlp")}
    assert pair.arm("treatment") == (
        "residual_mlp",
        {
            "depth": 20,
            "width": 64,
            "activation": "sigmoid",
            "initializer": "glorot_uniform",
        },
    )
    text = pair.describe()
    assert "skip connections" in text and "baseline:  plain_mlp" in text


def test_mlp_pretraining_switches_the_training_only():
    pair = zoo.get_pair("mlp_pretraining")
    assert pair.switch == {"pretrained": (False, True)}
    assert pair.arm("baseline") == pair.arm("treatment")
    assert "plain_mlp" in pair.describe() and " pretrained" in pair.describe()


def test_unknown_pair_and_arm():
    with pytest.raises(
        ValueError, match="Unknown pair 'resnet'. Known pairs: cnn_batchnorm"
    ):
        zoo.get_pair("resnet")
    with pytest.raises(ValueError, match="'baseline' and 'treatment'"):
        zoo.get_pair("mlp_residual").arm("control")

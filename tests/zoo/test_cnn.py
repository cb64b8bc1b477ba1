"""The convolutional pair, the residual-branch scales and the saved-file round trip.

The parameter counts are exact; He et al. 2016 (Table 6) quote 0.27M, 0.46M,
0.66M, 0.85M and 1.7M for depth 20, 32, 44, 56 and 110, which are the
trainable counts rounded (with BatchNorm's moving statistics, 32 and 56 would
round to 0.47M and 0.86M).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import zoo
from analysis import gradients
from zoo import blocks
from zoo.layers import Scalar

# depth: (trainable option A, all option A, trainable option B, all option B)
# on 32x32x3 inputs, 10 classes, BatchNorm.
PARAMETER_COUNTS = {
    20: (269_722, 271_098, 272_474, 274_042),
    32: (464_154, 466_426, 466_906, 469_370),
    44: (658_586, 661_754, 661_338, 664_698),
    56: (853_018, 857_082, 855_770, 860_026),
    110: (1_727_962, 1_736_058, 1_730_714, 1_739_002),
}
PAPER_MILLIONS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}


def _trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.mark.parametrize("depth", sorted(PARAMETER_COUNTS))
def test_parameter_counts_are_exact_and_match_the_paper(depth):
    counts = []
    for shortcut in "AB":
        model = zoo.get_model(
            "resnet",
            input_shape=(32, 32, 3),
            num_outputs=10,
            depth=depth,
            shortcut=shortcut,
        )
        counts += [_trainable(model), model.count_params()]
    assert tuple(counts) == PARAMETER_COUNTS[depth]
    digits = 1 if depth == 110 else 2
    assert round(counts[0] / 1e6, digits) == PAPER_MILLIONS[depth]


def test_hand_count_of_resnet20_option_a():
    # 3x3 convs without bias: stem 3->16, then 16->16 x6, 16->32, 32->32 x5,
    # 32->64, 64->64 x5; BatchNorm (gamma, beta) after each of the 19 convs;
    # a 64x10 + 10 head.
    convs = 9 * (3 * 16 + 6 * 16 * 16 + 16 * 32 + 5 * 32 * 32 + 32 * 64 + 5 * 64**2)
    norms = 2 * (16 * 7 + 32 * 6 + 64 * 6)
    assert PARAMETER_COUNTS[20][0] == convs + norms + 650


def test_plain_and_resnet_have_the_same_variables_and_differ_by_shortcuts():
    kwargs = dict(input_shape=(8, 8, 1), num_outputs=3, depth=14, width=4)
    keras.utils.set_random_seed(0)
    plain = zoo.get_model("plain_cnn", **kwargs)
    keras.utils.set_random_seed(0)
    res = zoo.get_model("resnet", **kwargs)
    assert [v.path for v in plain.weights] == [v.path for v in res.weights]
    for a, b in zip(plain.weights, res.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    adds = [ly.name for ly in res.layers if ly.name.endswith("_add")]
    assert adds == [f"block{i:02d}_add" for i in range(6)]
    assert not any(ly.name.endswith("_add") for ly in plain.layers)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
    assert not np.allclose(plain(x), res(x))


def test_layer_names_shapes_and_the_depth_axis():
    model = zoo.get_model(
        "resnet", input_shape=(32, 32, 3), num_outputs=10, depth=8, shortcut="B"
    )
    shapes = {
        name: model.get_layer(name).output.shape[1:]
        for name in ("stem_act", "block00_act", "block01_act", "block02_act")
    }
    assert shapes == {
        "stem_act": (32, 32, 16),
        "block00_act": (32, 32, 16),
        "block01_act": (16, 16, 32),
        "block02_act": (8, 8, 64),
    }
    assert zoo.depth_axis(model) == (
        (0, "stem_conv/kernel"),
        (1, "block00_conv1/kernel"),
        (1, "block00_conv2/kernel"),
        (2, "block01_conv1/kernel"),
        (2, "block01_conv2/kernel"),
        (2, "block01_proj/kernel"),
        (3, "block02_conv1/kernel"),
        (3, "block02_conv2/kernel"),
        (3, "block02_proj/kernel"),
    )
    deep = zoo.get_model(
        "plain_cnn", input_shape=(8, 8, 1), num_outputs=2, depth=62, width=2
    )
    axis = zoo.depth_axis(deep)
    assert axis[-1] == (30, "block29_conv2/kernel") and len(axis) == 61
    norms = {path: 1.0 for _, path in axis}
    profile = gradients.gradient_profile(norms, axis)
    # One position per block: the joint norm of its two kernels.
    assert profile.layers[1] == "block00_conv1/kernel+block00_conv2/kernel"
    assert len(profile.layers) == 31


def test_option_a_pads_channels_with_zeros_and_subsamples():
    model = zoo.get_model(
        "resnet", input_shape=(8, 8, 1), num_outputs=2, depth=8, width=2
    )
    probe = keras.Model(
        model.input,
        [
            model.get_layer("block00_act").output,
            model.get_layer("block01_pad_out").output,
        ],
    )
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 1)).astype(np.float32)
    before, after = (np.asarray(t) for t in probe(x))
    assert after.shape == (2, 4, 4, 4)
    # 2 -> 4 channels: one zero channel on each side of the subsampled input.
    np.testing.assert_array_equal(after[..., 1:3], before[:, ::2, ::2, :])
    assert not after[..., 0].any() and not after[..., 3].any()


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("resnet", {"depth": 21}, "the nearest valid depths are 20 and 26"),
        ("resnet", {"depth": 2}, "the nearest valid depth is 8"),
        ("plain_cnn", {"depth": 58}, "depths are 56 and 62. Received: depth=58"),
        ("resnet", {"input_shape": (3, 8, 1)}, "at least 4x4"),
        ("resnet", {"input_shape": (64,)}, "takes images"),
        ("plain_cnn", {"branch_scale": "rezero"}, "plain_cnn has none"),
        ("plain_mlp", {"branch_scale": "fixup"}, "plain_mlp has none"),
        ("resnet", {"branch_scale": "fixup", "norm": "batch"}, "use norm='none'"),
        ("residual_mlp", {"branch_scale": "fixup", "norm": "layer"}, "norm='none'"),
        ("resnet", {"shortcut": "C"}, "Unknown shortcut 'C'"),
        ("plain_cnn", {"shortcut": "B"}, "takes no argument shortcut"),
    ],
)
def test_bad_arguments_are_one_clear_value_error(name, kwargs, message):
    kind = zoo.model_spec(name).input_kinds[0]
    kwargs = {
        "input_shape": (8, 8, 1) if kind == "image" else (6,),
        "num_outputs": 2,
        **zoo.model_spec(name).tiny,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        zoo.get_model(name, **kwargs)


def _block_std_ratio(branch_scale, *, depth=101, width=16, seed=0):
    """std(output of the last residual block) / std(output of block 0)."""
    keras.utils.set_random_seed(seed)
    model = zoo.get_model(
        "residual_mlp",
        input_shape=(32,),
        num_outputs=10,
        depth=depth,
        width=width,
        activation="relu",
        initializer="he_normal",
        branch_scale=branch_scale,
    )
    prefix = blocks.block_prefix
    probe = keras.Model(
        model.input,
        [
            model.get_layer(f"{prefix(0, depth)}_act").output,
            model.get_layer(f"{prefix(depth - 1, depth)}_add").output,
        ],
    )
    x = np.random.RandomState(seed).standard_normal((64, 32)).astype(np.float32)
    first, last = (np.asarray(t, np.float64) for t in probe(x))
    return last.std() / first.std()


def test_100_residual_blocks_without_norm_rezero_and_fixup_keep_std_vanilla_blows_up():
    # Measured at width 64, 3 seeds: the vanilla ratio is 0.9e23 - 2.7e23
    # (x1.7 per block); ReZero and Fixup 1.0 exactly.
    assert abs(_block_std_ratio("rezero") - 1) < 1e-6
    assert abs(_block_std_ratio("fixup") - 1) < 1e-6
    assert _block_std_ratio("none") > 1e15


def test_fixup_initialization():
    depth = 14  # n = 2, L = 6 branches
    keras.utils.set_random_seed(0)
    model = zoo.get_model(
        "resnet",
        input_shape=(16, 16, 3),
        num_outputs=3,
        depth=depth,
        width=32,
        norm="none",
        branch_scale="fixup",
    )
    for i in range(6):
        assert not model.get_layer(f"block{i:02d}_conv2").kernel.numpy().any()
        assert model.get_layer(f"block{i:02d}_scale").value.numpy() == 1.0
        assert model.get_layer(f"block{i:02d}_conv1").bias is None
    assert not model.get_layer("head_dense").kernel.numpy().any()
    # Keras' He normal (std sqrt(2 / fan_in) after truncation) times
    # 6^(-1/2): fan_in 9 * 32 for the blocks of stage 1 (9216 weights).
    std = model.get_layer("block01_conv1").kernel.numpy().std()
    expected = np.sqrt(2 / (9 * 32)) / np.sqrt(6)
    assert abs(std / expected - 1) < 0.05
    scalars = [ly for ly in model.layers if isinstance(ly, Scalar)]
    # Per block 3 biases + multiplier + output bias; stem and head biases.
    assert len(scalars) == 6 * 5 + 2


def test_rezero_blocks_are_the_identity_at_init():
    keras.utils.set_random_seed(0)
    model = zoo.get_model(
        "resnet",
        input_shape=(8, 8, 2),
        num_outputs=3,
        depth=8,
        width=4,
        norm="none",
        branch_scale="rezero",
    )
    probe = keras.Model(
        model.input,
        [model.get_layer("stem_act").output, model.get_layer("block00_act").output],
    )
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 2)).astype(np.float32)
    stem, block = probe(x)
    # relu(relu(h) + 0 * F) = relu(h).
    np.testing.assert_array_equal(stem, block)


# Every new model and branch scale, tiny; weights randomized before saving so
# that zero-initialized parts count.
ROUND_TRIP = {
    "resnet_a": ("resnet", {"shortcut": "A"}),
    "resnet_b": ("resnet", {"shortcut": "B", "norm": "none"}),
    "plain_cnn": ("plain_cnn", {}),
    "resnet_rezero": ("resnet", {"branch_scale": "rezero"}),
    "resnet_fixup": ("resnet", {"branch_scale": "fixup", "norm": "none"}),
    "mlp_rezero": ("residual_mlp", {"branch_scale": "rezero"}),
    "mlp_fixup": ("residual_mlp", {"branch_scale": "fixup"}),
}
# Loaded in a fresh interpreter: first the models made of Keras layers only,
# with nothing of gradzoo imported; then the ones holding a gradzoo Scalar,
# which must fail after a bare `import zoo` (it imports no Keras, so it
# registers nothing) and load after `import zoo.layers` registers it.
_LOADER = """
import json, sys
import keras, numpy as np
names, plain = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def check(name):
    model = keras.saving.load_model(f"{name}.keras", safe_mode=True)
    x = np.load(f"{name}.x.npy")
    np.testing.assert_array_equal(np.asarray(model(x)), np.load(f"{name}.y.npy"))
for name in plain:
    check(name)
assert "zoo" not in sys.modules
import zoo
scalar = [n for n in names if n not in plain]
try:
    check(scalar[0])
    raise SystemExit("loaded a Scalar model without import zoo.layers")
except TypeError as e:
    assert "Scalar" in str(e), e
import zoo.layers  # noqa: registers gradzoo>Scalar
for name in scalar:
    check(name)
print("ok", len(names))
"""


def test_every_new_model_round_trips_through_model_keras_in_a_fresh_process(
    tmp_path,
):
    rng = np.random.default_rng(0)
    plain = []
    for name, (model_name, kwargs) in ROUND_TRIP.items():
        image = model_name != "residual_mlp"
        shape = (8, 8, 2) if image else (6,)
        model = zoo.get_model(
            model_name,
            input_shape=shape,
            num_outputs=3,
            **zoo.model_spec(model_name).tiny,
            **kwargs,
        )
        for v in model.weights:
            value = rng.normal(0, 0.3, v.shape) + 0.1
            if "variance" in v.path:  # BatchNorm divides by its root.
                value = np.abs(value)
            v.assign(value.astype(np.float32))
        x = rng.normal(size=(3, *shape)).astype(np.float32)
        model.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.x.npy", x)
        np.save(tmp_path / f"{name}.y.npy", np.asarray(model(x)))
        if not any(isinstance(ly, Scalar) for ly in model.layers):
            plain.append(name)
    assert plain == ["resnet_a", "resnet_b", "plain_cnn"]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _LOADER,
            json.dumps(list(ROUND_TRIP)),
            json.dumps(plain),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": repo, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith(f"ok {len(ROUND_TRIP)}")

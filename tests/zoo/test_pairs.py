"""Every pair is a controlled comparison: its arms differ in exactly one setting."""

import pytest

import zoo

# A tiny input of each kind; a pair's arms take the first kind they accept.
INPUTS = {"vector": (6,), "image": (4, 4, 1), "sequence": (5, 2)}


def _changes_size(switch) -> bool:
    """Whether a switch adds parameters by design, so counts may differ.

    A normalization layer has its own scale and shift; a gated cell has 4
    (LSTM) or 3 (GRU) recurrent weight blocks where a vanilla RNN has one.
    """
    return "norm" in switch or bool({"lstm", "gru"} & set(switch.get("model", ())))


@pytest.mark.parametrize("name", zoo.list_pairs())
def test_pair_arms_differ_in_exactly_one_setting_and_build(name):
    pair = zoo.get_pair(name)
    assert len(pair.switch) == 1, pair.switch
    assert pair.task in zoo.list_tasks()
    counts = []
    for which in ("baseline", "treatment"):
        model_name, kwargs = pair.arm(which)
        spec = zoo.model_spec(model_name)
        kwargs = {**kwargs, **spec.tiny}  # tiny sizes, same switch
        input_shape = INPUTS[spec.input_kinds[0]]
        model = zoo.get_model(
            model_name, input_shape=input_shape, num_outputs=3, **kwargs
        )
        counts.append(model.count_params())
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


def test_unknown_pair_and_arm():
    with pytest.raises(
        ValueError, match="Unknown pair 'resnet'. Known pairs: mlp_batchnorm"
    ):
        zoo.get_pair("resnet")
    with pytest.raises(ValueError, match="'baseline' and 'treatment'"):
        zoo.get_pair("mlp_residual").arm("control")

"""Every Pair in one readable table.

A Pair is a controlled comparison: a baseline arm and a treatment arm that
share every setting but one (the switch), the task they are trained on, and
the question the comparison answers. The suite runs pairs; users read them.

    >>> import zoo
    >>> print(zoo.get_pair("mlp_residual").describe())

Tested by tests/zoo/test_pairs.py (every pair differs in exactly one setting).
"""

import dataclasses
from collections.abc import Mapping

from zoo.registry import lookup


@dataclasses.dataclass(frozen=True)
class Arm:
    """One side of a pair: a registered model, its own settings, and how it
    is trained when that is the switch.

    `pretrained`: greedy layer-wise pretraining of the hidden layers before
    the supervised steps (zoo/pretraining.py; trainers.pretrain runs it and
    fine-tunes for the pair's supervised budget). The network built is the
    same either way.
    """

    model: str
    settings: Mapping[str, object] = dataclasses.field(default_factory=dict)
    pretrained: bool = False


@dataclasses.dataclass(frozen=True)
class Pair:
    """Two arms that differ in one switch, and the question they answer."""

    name: str
    question: str
    baseline: Arm
    treatment: Arm
    shared: Mapping[str, object]
    task: str
    expectation: str
    reference: str

    def arm(self, which: str) -> tuple[str, dict[str, object]]:
        """(model name, model kwargs) of "baseline" or "treatment"."""
        if which not in ("baseline", "treatment"):
            raise ValueError(
                f"A pair has arms 'baseline' and 'treatment'. Received: {which!r}"
            )
        arm = getattr(self, which)
        return arm.model, {**self.shared, **arm.settings}

    @property
    def switch(self) -> dict[str, tuple[object, object]]:
        """What differs between the arms: {setting: (baseline, treatment)}."""
        (m0, k0), (m1, k1) = self.arm("baseline"), self.arm("treatment")
        diff = {"model": (m0, m1)} if m0 != m1 else {}
        p0, p1 = self.baseline.pretrained, self.treatment.pretrained
        if p0 != p1:
            diff["pretrained"] = (p0, p1)
        for key in sorted(set(k0) | set(k1)):
            if k0.get(key) != k1.get(key):
                diff[key] = (k0.get(key), k1.get(key))
        return diff

    def describe(self) -> str:
        """A few lines for a terminal or a notebook."""
        shared = ", ".join(f"{k}={v}" for k, v in sorted(self.shared.items()))
        switch = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in self.switch.items())
        return "\n".join(
            [
                f"{self.name}: {self.question}",
                f"  baseline:  {_describe_arm(self.baseline)}",
                f"  treatment: {_describe_arm(self.treatment)}",
                f"  switch:    {switch}",
                f"  shared:    {shared}",
                f"  task:      {self.task}",
                f"  expect:    {self.expectation}",
                f"  reference: {self.reference}",
            ]
        )


def _describe_arm(arm: Arm) -> str:
    text = f"{arm.model} {dict(arm.settings)}"
    return text + " pretrained" if arm.pretrained else text


_DEEP_SIGMOID = {"depth": 20, "width": 64, "activation": "sigmoid"}
# Only settings all three recurrent models take, so the switch is the cell
# alone; each keeps its defaults: tanh, glorot_uniform input kernels, an
# orthogonal recurrent block per gate (radius 1) and, for the LSTM, a unit
# forget bias.
_RECURRENT = {"units": 128}
# The CIFAR ResNet at the depth where He et al. 2016 saw plain nets degrade.
_CNN = {"depth": 56, "activation": "relu", "initializer": "he_normal"}
# 100 residual blocks (block 0 maps the input to the width) without
# normalization, ReLU and He init: each vanilla block roughly doubles the
# activations' second moment.
DEEP_NO_NORM = {
    "depth": 101,
    "width": 64,
    "activation": "relu",
    "initializer": "he_normal",
    "norm": "none",
}

PAIRS = {
    p.name: p
    for p in [
        Pair(
            name="mlp_residual",
            question="Do identity skip connections keep early-layer gradients alive?",
            baseline=Arm("plain_mlp"),
            treatment=Arm("residual_mlp"),
            shared={**_DEEP_SIGMOID, "initializer": "glorot_uniform"},
            task="digits",
            expectation="first/last layer gradient ratio far larger with skips; "
            "the plain net trains slower or not at all",
            reference="He et al. 2016, Deep Residual Learning for Image Recognition",
        ),
        Pair(
            name="mlp_batchnorm",
            question="Does BatchNorm rescue a deep sigmoid net?",
            baseline=Arm("plain_mlp", {"norm": "none"}),
            treatment=Arm("plain_mlp", {"norm": "batch"}),
            shared={**_DEEP_SIGMOID, "initializer": "glorot_uniform"},
            task="digits",
            expectation="the BatchNorm arm trains; the plain one stays near chance",
            reference="Ioffe & Szegedy 2015, Batch Normalization",
        ),
        Pair(
            name="mlp_layernorm",
            question="Does LayerNorm, which needs no batch statistics, do the same?",
            baseline=Arm("plain_mlp", {"norm": "none"}),
            treatment=Arm("plain_mlp", {"norm": "layer"}),
            shared={**_DEEP_SIGMOID, "initializer": "glorot_uniform"},
            task="digits",
            expectation="healthier early-layer gradients with LayerNorm",
            reference="Ba, Kiros & Hinton 2016, Layer Normalization",
        ),
        Pair(
            name="mlp_sigmoid_vs_relu",
            question="Is the bounded sigmoid derivative what starves early layers?",
            baseline=Arm("plain_mlp", {"activation": "sigmoid"}),
            treatment=Arm("plain_mlp", {"activation": "relu"}),
            shared={"depth": 20, "width": 64, "initializer": "he_normal"},
            task="digits",
            expectation="sigmoid' <= 0.25 shrinks the gradient per layer; ReLU' = 1 "
            "does not",
            reference="Glorot, Bordes & Bengio 2011, Deep Sparse Rectifier Networks",
        ),
        Pair(
            name="mlp_glorot_vs_he",
            question="Does He init keep a deep ReLU net's signal "
            "where Glorot loses it?",
            baseline=Arm("plain_mlp", {"initializer": "glorot_normal"}),
            treatment=Arm("plain_mlp", {"initializer": "he_normal"}),
            shared={"depth": 50, "width": 256, "activation": "relu"},
            task="teacher",
            expectation="activation and gradient scale halve per layer with Glorot, "
            "stay level with He",
            reference="He et al. 2015, Delving Deep into Rectifiers",
        ),
        Pair(
            name="mlp_small_vs_glorot",
            question="Does the normalized (Glorot) init beat small random weights?",
            baseline=Arm("plain_mlp", {"initializer": "small_normal"}),
            treatment=Arm("plain_mlp", {"initializer": "glorot_uniform"}),
            shared={"depth": 10, "width": 128, "activation": "tanh", "init_std": 0.01},
            task="digits",
            expectation="small weights shrink the back-propagated gradient toward the "
            "input; the normalized init keeps it flatter",
            reference="Glorot & Bengio 2010, Understanding the difficulty of training "
            "deep feedforward neural networks",
        ),
        Pair(
            name="mlp_pretraining",
            question="Does greedy layer-wise autoencoder pretraining help a deep "
            "sigmoid net, given the same supervised budget?",
            baseline=Arm("plain_mlp"),
            treatment=Arm("plain_mlp", pretrained=True),
            shared={
                "depth": 5,
                "width": 256,
                "activation": "sigmoid",
                "initializer": "glorot_uniform",
            },
            task="digits",
            expectation="lower test error and lower spread over seeds after "
            "pretraining; with ReLU, He init and Adam the gap shrinks",
            reference="Bengio et al. 2007, Greedy Layer-Wise Training of Deep "
            "Networks; Erhan et al. 2010, Why Does Unsupervised Pre-training "
            "Help Deep Learning?",
        ),
        Pair(
            name="rnn_lstm",
            question="Does the LSTM's gated cell carry a gradient across 100 steps "
            "where a vanilla RNN's does not?",
            baseline=Arm("vanilla_rnn"),
            treatment=Arm("lstm"),
            shared=_RECURRENT,
            task="adding",
            expectation="on the adding problem at T=100 the LSTM's MSE falls far "
            "below the 1/6 baseline while the vanilla RNN stays near it",
            reference="Hochreiter & Schmidhuber 1997, Long Short-Term Memory",
        ),
        Pair(
            name="rnn_gru",
            question="Does the GRU's update gate do the same with fewer gates?",
            baseline=Arm("vanilla_rnn"),
            treatment=Arm("gru"),
            shared=_RECURRENT,
            task="adding",
            expectation="on the adding problem at T=100 the GRU's MSE falls far "
            "below the 1/6 baseline while the vanilla RNN stays near it",
            reference="Cho et al. 2014, Learning Phrase Representations using RNN "
            "Encoder-Decoder for Statistical Machine Translation",
        ),
        Pair(
            name="cnn_residual",
            question="Do shortcuts keep a 56-layer CNN's early gradients and "
            "training loss where the plain net degrades?",
            baseline=Arm("plain_cnn"),
            treatment=Arm("resnet"),
            shared={**_CNN, "norm": "batch"},
            task="digits",
            expectation="the ResNet trains to a lower loss; with BatchNorm both "
            "keep early-layer gradients (degradation is not vanishing)",
            reference="He et al. 2016, Deep Residual Learning for Image Recognition",
        ),
        Pair(
            name="cnn_batchnorm",
            question="Does BatchNorm change how a 56-layer ResNet's gradient and "
            "loss behave?",
            baseline=Arm("resnet", {"norm": "none"}),
            treatment=Arm("resnet", {"norm": "batch"}),
            shared=_CNN,
            task="digits",
            expectation="without BatchNorm the activations grow block by block and "
            "the gradient profile is steeper; with it both stay level",
            reference="Ioffe & Szegedy 2015, Batch Normalization; He et al. 2016",
        ),
        Pair(
            name="mlp_rezero",
            question="Does a zero-initialized branch scale (ReZero) let 100 residual "
            "blocks train without normalization?",
            baseline=Arm("residual_mlp", {"branch_scale": "none"}),
            treatment=Arm("residual_mlp", {"branch_scale": "rezero"}),
            shared=DEEP_NO_NORM,
            task="teacher",
            expectation="ReZero starts as the identity (output/input std 1) and "
            "trains; the vanilla net's activations blow up by orders of magnitude",
            reference="Bachlechner et al. 2020, ReZero is All You Need",
        ),
        Pair(
            name="mlp_fixup",
            question="Does Fixup initialization let 100 residual blocks train "
            "without normalization?",
            baseline=Arm("residual_mlp", {"branch_scale": "none"}),
            treatment=Arm("residual_mlp", {"branch_scale": "fixup"}),
            shared=DEEP_NO_NORM,
            task="teacher",
            expectation="Fixup starts as the identity (output/input std 1) and "
            "trains; the vanilla net's activations blow up by orders of magnitude",
            reference="Zhang, Dauphin & Ma 2019, Fixup Initialization",
        ),
    ]
}


def list_pairs() -> list[str]:
    """Names of all pairs, sorted."""
    return sorted(PAIRS)


def get_pair(name: str) -> Pair:
    """The pair `name`; an unknown name lists the known ones."""
    return lookup(PAIRS, "pair", name)

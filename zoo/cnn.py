"""The convolutional pair: `plain_cnn` and `resnet`, one body, one switch.

The CIFAR ResNet of He et al. 2016 ("Deep Residual Learning for Image
Recognition", section 4.2): 6n+2 weight layers, a 3x3 stem, three stages of
n basic blocks on 16/32/64 filters, global average pooling and a dense
classifier. `plain_cnn` is the same stack without the shortcuts: with
option A shortcuts (identity, zero-padded channels) both arms have exactly
the same parameters, so "does the shortcut fix the gradient?" compares two
models that differ in nothing else.

    >>> import zoo
    >>> model = zoo.get_model("resnet", input_shape=(32, 32, 3), num_outputs=10,
    ...                       depth=56)
    >>> zoo.depth_axis(model)  # stem, then each block's convs and projection

Keras is imported where a model is built, so registering the builders (and
reading their signatures for flags) needs no TensorFlow.

Tested by tests/zoo/test_cnn.py.
"""

from typing import TYPE_CHECKING, Literal

from zoo import blocks
from zoo.registry import register_model

if TYPE_CHECKING:
    import keras

_TINY = {"depth": 8, "width": 4}
_INPUT_KINDS = ("image",)
# The two stride-2 stages halve the map twice; below 4x4 a stage would not.
MIN_SIZE = 4

Shortcut = Literal["A", "B"]
CnnNorm = Literal["none", "batch"]


def _check_depth(depth: int) -> int:
    """n, the blocks per stage, of a 6n+2 depth; else a ValueError."""
    if depth >= 8 and (depth - 2) % 6 == 0:
        return (depth - 2) // 6
    below = max(8, (depth - 2) // 6 * 6 + 2)
    above = below + 6 if depth > below else below
    nearest = (
        f"depths are {below} and {above}" if below != above else f"depth is {below}"
    )
    raise ValueError(
        f"depth must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, ...); the nearest "
        f"valid {nearest}. Received: depth={depth}"
    )


def _check_input(input_shape) -> None:
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(
            "A convolutional model takes images (height, width, channels). "
            f"Received: input_shape={shape}"
        )
    if min(shape[:2]) < MIN_SIZE:
        raise ValueError(
            f"Images must be at least {MIN_SIZE}x{MIN_SIZE}: the network halves "
            f"the map twice. Received: input_shape={shape}"
        )


class _Body:
    """Layer factories of one network, sharing its settings."""

    def __init__(self, *, activation, initializer, norm, branch_scale):
        self.activation = activation
        self.initializer = initializer
        self.norm = norm
        self.branch_scale = branch_scale
        # Without normalization a conv keeps its bias; BatchNorm's shift (or
        # Fixup's scalar biases) replace it, as in the paper.
        self.use_bias = norm == "none" and branch_scale != "fixup"

    def conv(self, x, filters, name, *, kernel=3, strides=1, zero=False):
        import keras

        # A fresh initializer per layer: one reused unseeded Keras initializer
        # would give every layer the same weights.
        return keras.layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding="same",
            use_bias=self.use_bias,
            kernel_initializer="zeros"
            if zero
            else blocks.initializer(self.initializer),
            name=name,
        )(x)

    def conv_norm(self, x, filters, name, **kwargs):
        x = self.conv(x, filters, name, **kwargs)
        layer = blocks.norm(self.norm, layer_name=f"{name}_norm")
        return layer(x) if layer is not None else x

    def act(self, x, name):
        return blocks.activation(self.activation, layer_name=name)(x)


def _shortcut(body, x, filters, strides, shortcut, prefix):
    """The block's identity path; option A or B when the shape changes."""
    import keras

    if strides == 1 and x.shape[-1] == filters:
        return x
    if shortcut == "B":
        return body.conv_norm(x, filters, f"{prefix}_proj", kernel=1, strides=strides)
    # Option A: subsample (every other pixel, as a 1x1 stride-2 pool) and pad
    # the new channels with zeros, half on each side: no parameters.
    if strides != 1:
        x = keras.layers.MaxPooling2D(1, strides, name=f"{prefix}_subsample")(x)
    extra = filters - x.shape[-1]
    h, w, c = x.shape[1:]
    x = keras.layers.Reshape((h, w, c, 1), name=f"{prefix}_pad_in")(x)
    x = keras.layers.ZeroPadding3D(
        ((0, 0), (0, 0), (extra // 2, extra - extra // 2)), name=f"{prefix}_pad"
    )(x)
    return keras.layers.Reshape((h, w, filters), name=f"{prefix}_pad_out")(x)


def _block(body, x, filters, strides, *, residual, shortcut, prefix):
    """conv-norm-act-conv-norm, then (+ shortcut) and act."""
    import keras

    from zoo.layers import Scalar

    fixup = body.branch_scale == "fixup"
    h = x
    if fixup:
        h = Scalar("add", 0.0, name=f"{prefix}_conv1_bias")(h)
    h = body.conv_norm(h, filters, f"{prefix}_conv1", strides=strides)
    if fixup:
        h = Scalar("add", 0.0, name=f"{prefix}_conv1_act_bias")(h)
    h = body.act(h, f"{prefix}_conv1_act")
    if fixup:
        h = Scalar("add", 0.0, name=f"{prefix}_conv2_bias")(h)
    h = body.conv_norm(h, filters, f"{prefix}_conv2", zero=fixup)
    if body.branch_scale == "rezero":
        h = Scalar("multiply", 0.0, name=f"{prefix}_rezero")(h)
    if fixup:
        h = Scalar("multiply", 1.0, name=f"{prefix}_scale")(h)
        h = Scalar("add", 0.0, name=f"{prefix}_bias_out")(h)
    if residual:
        s = _shortcut(body, x, filters, strides, shortcut, prefix)
        h = keras.layers.Add(name=f"{prefix}_add")([h, s])
    return body.act(h, f"{prefix}_act")


def _cnn(
    *,
    input_shape,
    num_outputs,
    depth,
    width,
    shortcut,
    norm,
    activation,
    initializer,
    branch_scale,
    residual,
    name,
) -> "keras.Model":
    import keras

    from zoo.layers import Scalar

    n = _check_depth(depth)
    _check_input(input_shape)
    if num_outputs < 1:
        raise ValueError(
            f"num_outputs must be >= 1. Received: num_outputs={num_outputs}"
        )
    blocks.check_branch_scale(branch_scale, residual=residual, norm=norm, model=name)
    body = _Body(
        activation=activation,
        initializer=initializer,
        norm=norm,
        branch_scale=branch_scale,
    )
    fixup = branch_scale == "fixup"
    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = body.conv_norm(inputs, width, "stem_conv")
    if fixup:
        x = Scalar("add", 0.0, name="stem_bias")(x)
    x = body.act(x, "stem_act")
    for stage in range(3):
        for j in range(n):
            index = stage * n + j
            x = _block(
                body,
                x,
                width * 2**stage,
                2 if stage > 0 and j == 0 else 1,
                residual=residual,
                shortcut=shortcut,
                prefix=blocks.block_prefix(index, 3 * n),
            )
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if fixup:
        x = Scalar("add", 0.0, name="head_bias")(x)
    outputs = keras.layers.Dense(
        num_outputs,
        kernel_initializer="zeros" if fixup else blocks.initializer(initializer),
        name="head_dense",
    )(x)
    model = keras.Model(inputs, outputs, name=name)
    if fixup:
        # Fixup scales the branch layers other than the last by
        # L^(-1/(2m-2)); with L = 3n branches of m = 2 layers that is the
        # first convolution's initial kernel times L^(-1/2).
        for index in range(3 * n):
            kernel = model.get_layer(
                f"{blocks.block_prefix(index, 3 * n)}_conv1"
            ).kernel
            kernel.assign(kernel * (3 * n) ** -0.5)
    return model


def cnn_depth_axis(model: "keras.Model") -> list[tuple[int, str]]:
    """Position 0 the stem's kernel; position k+1 block k's kernels.

    A block's two convolution kernels and its projection shortcut's kernel
    (option B, where the shape changes) share the block's position:
    `gradient_profile` takes their joint norm. The head is not on the axis.
    """
    import keras

    convs = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.name.startswith("block")
    ]
    axis = [(0, model.get_layer("stem_conv").kernel.path)]
    prefixes = list(dict.fromkeys(layer.name.split("_")[0] for layer in convs))
    for k, prefix in enumerate(prefixes):
        for suffix in ("conv1", "conv2", "proj"):
            try:
                layer = model.get_layer(f"{prefix}_{suffix}")
            except ValueError:
                continue
            axis.append((k + 1, layer.kernel.path))
    return axis


@register_model(
    "plain_cnn", input_kinds=_INPUT_KINDS, tiny=_TINY, depth_axis=cnn_depth_axis
)
def plain_cnn(
    *,
    input_shape,
    num_outputs,
    depth: blocks.Count = 20,
    width: blocks.Count = 16,
    norm: CnnNorm = "batch",
    activation: blocks.Activation = "relu",
    initializer: blocks.Initializer = "he_normal",
    branch_scale: blocks.BranchScale = "none",
) -> "keras.Model":
    """The CIFAR plain net of He et al. 2016: `resnet` without shortcuts.

    - `stem_conv`: 3x3, `width` filters -> `stem_conv_norm` -> `stem_act`.
    - 3 stages of n = (depth-2)/6 blocks `blockNN` (numbered 0..3n-1 across
      stages) with width, 2*width, 4*width filters; the first block of
      stages 2 and 3 has stride 2 (32/16/8 maps on CIFAR's 32x32).
    - A block: `blockNN_conv1` (3x3) -> `_conv1_norm` -> `_conv1_act` ->
      `blockNN_conv2` (3x3) -> `_conv2_norm` -> `blockNN_act`.
    - `pool` (global average) -> `head_dense` (num_outputs logits).
    - He normal kernels by default, as the paper; BatchNorm after every
      convolution unless norm="none" (then convolutions have biases).

    He et al. found deep plain nets train worse than shallow ones even with
    BatchNorm, whose gradient norms stay healthy ("degradation"); without
    BatchNorm the back-propagated signal also drifts in scale with depth.

    Args:
      input_shape: the task's image shape (height, width, channels), at
        least 4x4.
      num_outputs: logits (classes).
      depth: weight layers, 6n+2 (20, 32, 44, 56, 110 in the paper).
      width: filters of the first stage (16 in the paper); stages use
        width, 2*width and 4*width.
      norm: normalization after each convolution (batch or none).
      activation: activation after each block's first convolution and after
        each block.
      initializer: kernel initializer of every convolution and the head.
      branch_scale: how each residual branch is scaled (residual models
        only): none (x + F(x)), rezero (x + a*F(x), a=0 at init) or fixup
        (zero-initialized last branch layer and head, scalar biases and
        multiplier; needs norm=none).
    """
    return _cnn(**locals(), shortcut="A", residual=False, name="plain_cnn")


@register_model(
    "resnet", input_kinds=_INPUT_KINDS, tiny=_TINY, depth_axis=cnn_depth_axis
)
def resnet(
    *,
    input_shape,
    num_outputs,
    depth: blocks.Count = 20,
    width: blocks.Count = 16,
    shortcut: Shortcut = "A",
    norm: CnnNorm = "batch",
    activation: blocks.Activation = "relu",
    initializer: blocks.Initializer = "he_normal",
    branch_scale: blocks.BranchScale = "none",
) -> "keras.Model":
    """The CIFAR ResNet of He et al. 2016: `plain_cnn` with shortcuts.

    - Layers as `plain_cnn`; each block adds its input back before its last
      activation: `blockNN_add` then `blockNN_act` = act(F(x) + shortcut(x)).
    - Where a block changes the shape (first block of stages 2 and 3):
      option A subsamples x (`blockNN_subsample`) and zero-pads its channels
      (`blockNN_pad`), no parameters; option B projects it with a 1x1
      stride-2 convolution `blockNN_proj` (+ `blockNN_proj_norm`).
    - branch_scale="rezero": F(x) times a scalar `blockNN_rezero`, zero at
      init (Bachlechner et al. 2020).
    - branch_scale="fixup" (Zhang et al. 2019): scalar biases before each
      convolution and activation (`_conv1_bias`, `_conv1_act_bias`,
      `_conv2_bias`, `stem_bias`, `head_bias`), a scalar multiplier
      `blockNN_scale` (1) and bias `blockNN_bias_out`; `blockNN_conv2` and
      the head start at zero and `blockNN_conv1` is scaled by L^(-1/2)
      (L = 3n branches of m = 2 layers); no normalization.

    The shortcut carries the gradient past every block, so early layers
    keep a gradient comparable to late ones (He et al. 2016, "Deep Residual
    Learning for Image Recognition"; CIFAR-10 test error 8.75% at depth 20,
    6.43% at 110).

    Args:
      input_shape: the task's image shape (height, width, channels), at
        least 4x4.
      num_outputs: logits (classes).
      depth: weight layers, 6n+2 (20, 32, 44, 56, 110 in the paper).
      width: filters of the first stage (16 in the paper); stages use
        width, 2*width and 4*width.
      shortcut: where the shape changes, A (subsample and zero-pad channels,
        no parameters) or B (1x1 projection).
      norm: normalization after each convolution (batch or none).
      activation: activation after each block's first convolution and after
        each block.
      initializer: kernel initializer of every convolution and the head.
      branch_scale: how each residual branch is scaled (residual models
        only): none (x + F(x)), rezero (x + a*F(x), a=0 at init) or fixup
        (zero-initialized last branch layer and head, scalar biases and
        multiplier; needs norm=none).
    """
    return _cnn(**locals(), residual=True, name="resnet")

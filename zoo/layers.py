"""gradzoo's own Keras objects: the layers and the initializer it defines.

- `Scalar`: ReZero's and Fixup's trainable scalars (zoo/mlp.py, zoo/cnn.py);
- `RecurrentInitializer`: a recurrent kernel of set spectral radius
  (zoo/rnn.py);
- `MaskingNoise`, `TiedDense`, `StackPair`: the pretraining autoencoder's
  pieces (zoo/pretraining.py);
- `LSTM`, `GRU`: Keras' layers with a faster CPU path, defined in
  zoo/fused_rnn.py and imported here so that they are registered too.

Each is registered with Keras as "gradzoo>Name" when this module is
imported, which a model.keras holding one needs before it loads. This is
the only zoo module that imports Keras at module level: the builders import
it when they build, and `zoo.load_model(path)` before it loads, so `import
zoo` (the registry, the signatures, the flags made from them) stays free of
TensorFlow and Keras.

    >>> import zoo
    >>> model = zoo.load_model("runs/x/model.keras")  # any gradzoo model

Tested by tests/zoo/test_cnn.py, tests/zoo/test_rnn.py,
tests/zoo/test_pretraining.py and tests/trainers/test_hardening.py
(every registered model loads in a fresh process).
"""

import math
import random

import keras
import numpy as np
import tensorflow as tf

from zoo.fused_rnn import GRU, LSTM  # noqa: F401  (registered on import)
from zoo.rnn import RECURRENT_INITIALIZERS, check_choice, check_radius


@keras.saving.register_keras_serializable(package="gradzoo")
class Scalar(keras.layers.Layer):
    """One trainable scalar that multiplies (op="multiply") or is added to
    (op="add") its input, starting at `initial`.

    ReZero's a (multiply, 0), Fixup's multiplier (multiply, 1) and Fixup's
    biases (add, 0).
    """

    def __init__(self, op: str = "multiply", initial: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if op not in ("multiply", "add"):
            raise ValueError(f"op must be 'multiply' or 'add'. Received: op={op!r}")
        self.op = op
        self.initial = float(initial)

    def build(self, input_shape):
        self.value = self.add_weight(
            name="value",
            shape=(),
            initializer=keras.initializers.Constant(self.initial),
        )

    def call(self, x):
        value = keras.ops.cast(self.value, x.dtype)
        return x * value if self.op == "multiply" else x + value

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "op": self.op, "initial": self.initial}


@keras.saving.register_keras_serializable(package="gradzoo")
class RecurrentInitializer(keras.initializers.Initializer):
    """A recurrent kernel whose every [n, n] gate block has a set spectral radius.

    A recurrent kernel has shape (n, k * n): k = 1 for SimpleRNN, 4 for LSTM
    (gates i, f, c, o) and 3 for GRU (z, r, h). Each of the k blocks is
    `spectral_radius` times

    - "orthogonal": a random orthogonal matrix (all singular values, hence all
      |eigenvalues|, equal 1);
    - "identity": the identity (with ReLU, the IRNN of Le, Jaitly & Hinton
      2015, "A Simple Way to Initialize Recurrent Networks of Rectified
      Linear Units");
    - "normal": an N(0, 1/n) sample (radius about 1 by the circular law),
      divided by its own spectral radius max |eigenvalue|, so the radius is
      exact rather than approximate.

    Per block, not per kernel: Keras' own "orthogonal" on an LSTM's (n, 4n)
    kernel makes the rows of the whole kernel orthonormal, so no gate block is
    orthogonal; here each gate's recurrent matrix is, and `spectral_radius`
    means the same thing for all three cells.

    Draws come from `keras.random` with an integer seed; an unseeded
    initializer takes its seed from Python's `random` when constructed, as
    Keras' own initializers do, so `keras.utils.set_random_seed` makes models
    reproducible and two initializers built in a row draw different matrices.
    The eigenvalues are computed with NumPy in float64; Keras creates
    variables eagerly (under `tf.init_scope`), so this works even when a model
    is built inside a `tf.function` or a distribution strategy scope.
    """

    def __init__(self, kind="orthogonal", spectral_radius=1.0, seed=None):
        check_choice("recurrent_initializer", kind, RECURRENT_INITIALIZERS)
        check_radius(spectral_radius)
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"seed must be an integer or None. Received: seed={seed}")
        self.kind = kind
        self.spectral_radius = float(spectral_radius)
        self._init_seed = seed
        self.seed = random.randint(1, int(1e9)) if seed is None else seed

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if len(shape) != 2 or shape[0] < 1 or shape[1] % shape[0]:
            raise ValueError(
                "A recurrent kernel has shape (units, k * units). "
                f"Received: shape={shape}"
            )
        n, num_blocks = shape[0], shape[1] // shape[0]
        if self.kind == "identity":
            mats = np.broadcast_to(np.eye(n), (num_blocks, n, n))
        else:
            draw = keras.random.normal((num_blocks, n, n), seed=self.seed)
            mats = keras.ops.convert_to_numpy(draw).astype(np.float64) / math.sqrt(n)
            if self.kind == "orthogonal":
                q, r = np.linalg.qr(mats)
                # Sign-correct the columns so Q is Haar-distributed, as Keras does.
                signs = np.where(np.diagonal(r, axis1=1, axis2=2) < 0, -1.0, 1.0)
                mats = q * signs[:, None, :]
            else:
                radius = np.abs(np.linalg.eigvals(mats)).max(axis=-1)
                mats = mats / radius[:, None, None]
        kernel = np.concatenate(list(self.spectral_radius * mats), axis=1)
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or keras.config.floatx())

    def get_config(self):
        return {
            "kind": self.kind,
            "spectral_radius": self.spectral_radius,
            "seed": self._init_seed,
        }


@keras.saving.register_keras_serializable(package="gradzoo")
class MaskingNoise(keras.layers.Layer):
    """Zeroes each input entry with probability `rate` while training.

    Masking noise of the denoising autoencoder (Vincent et al. 2008,
    "Extracting and Composing Robust Features with Denoising
    Autoencoders"). Unlike Dropout it does not rescale the kept entries: the
    decoder is asked for the clean input. The mask is drawn by a stateless
    op from (seed, the count of training calls so far), and that count is a
    weight of the layer, so a checkpoint holds the noise's position too and
    a resumed run draws the same masks.
    """

    def __init__(self, rate: float, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"rate must be in [0, 1). Received: rate={rate}")
        self.rate = float(rate)
        self.seed = int(seed)
        self.calls = self.add_weight(
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="calls",
        )

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        seed = tf.stack([tf.constant(self.seed, tf.int64), self.calls.value])
        self.calls.assign_add(1)
        keep = tf.random.stateless_uniform(tf.shape(inputs), seed=seed) >= self.rate
        return inputs * tf.cast(keep, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="gradzoo")
class TiedDense(keras.layers.Layer):
    """A decoder sharing an encoder's kernel: y = x @ kernel^T + own bias.

    The kernel is the encoder Dense layer's variable itself, so it gets one
    gradient summed over both uses. Saved with the autoencoder for the
    record; it cannot be rebuilt on its own (it needs the encoder).
    """

    def __init__(self, encoder: keras.layers.Dense | None = None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder

    def build(self, input_shape):
        units = self.encoder.kernel.shape[0]
        self.bias = self.add_weight(shape=(units,), initializer="zeros", name="bias")

    def call(self, inputs):
        return tf.matmul(inputs, self.encoder.kernel, transpose_b=True) + self.bias

    def get_config(self):
        return {**super().get_config(), "encoder": None}


@keras.saving.register_keras_serializable(package="gradzoo")
class StackPair(keras.layers.Layer):
    """[reconstruction, target] -> one tensor [batch, 2, units]."""

    def call(self, inputs):
        reconstruction, target = inputs
        return tf.stack([reconstruction, tf.stop_gradient(target)], axis=1)

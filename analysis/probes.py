"""Measurements that need no training, written to disk as evidence.json.

The claims that hold at initialization (bounded derivatives, propagation
through depth, the gradient through time of a recurrent model, the edge of
chaos) are measured here on zoo models or on plain NumPy, once per seed, and
written to `<output_dir>/evidence.json` plus a status.json, so the ledger and
a report read them like any run directory.

    python -m analysis.probes --probe=propagation --seed=0 \
        --args='{"initializer": "he_normal"}' --output_dir=runs/p

Tested by tests/analysis/test_probes.py.
"""

import json
import math
import os
import sys
import time

import numpy as np

from analysis import cli, schema
from analysis.verdicts import EVIDENCE_FILE


def activation_derivatives(seed: int) -> dict:
    """Max of sigmoid' and tanh' on a grid over [-8, 8], by autodiff in
    float32; ReLU' on the positive side."""
    del seed  # a grid: nothing is random
    import tensorflow as tf

    x = tf.constant(np.linspace(-8, 8, 160001), tf.float32)  # includes 0
    out = {}
    for name, fn in (("sigmoid", tf.math.sigmoid), ("tanh", tf.math.tanh)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        d = tape.gradient(y, x).numpy()
        out[f"{name}_max"] = float(d.max())
        out[f"{name}_argmax"] = float(x.numpy()[d.argmax()])
    pos = tf.constant(np.linspace(1e-3, 8, 1000), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(pos)
        y = tf.nn.relu(pos)
    d = tape.gradient(y, pos).numpy()
    out["relu_positive_max_error"] = float(np.abs(d - 1).max())
    return out


def propagation(
    seed: int, *, initializer: str, depth: int = 50, width: int = 256
) -> dict:
    """std(h_depth) / std(h_1) of the zoo's plain ReLU MLP on N(0, I) inputs."""
    import keras

    import zoo

    keras.utils.set_random_seed(seed)
    model = zoo.get_model(
        "plain_mlp",
        input_shape=(width,),
        num_outputs=10,
        depth=depth,
        width=width,
        activation="relu",
        initializer=initializer,
    )
    names = [f"block{i:02d}_act" for i in (0, depth - 1)]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    x = np.random.RandomState(seed).standard_normal((512, width)).astype(np.float32)
    first, last = (np.asarray(h, np.float64) for h in probe(x))
    return {
        "std_first": float(first.std()),
        "std_last": float(last.std()),
        "std_ratio": float(last.std() / first.std()),
        "depth": depth,
        "width": width,
    }


def branch_scale_init(
    seed: int,
    *,
    depth: int,
    width: int,
    activation: str = "relu",
    initializer: str = "he_normal",
    num_features: int = 32,
) -> dict:
    """std(output of the last block) / std(output of block 0) of the zoo's
    residual_mlp without normalization, per branch scale (none = vanilla,
    rezero, fixup), on N(0, I) inputs: the same weights draw (seed) for each."""
    import keras

    import zoo
    from zoo.blocks import block_prefix

    x = np.random.RandomState(seed).standard_normal((256, num_features))
    out = {"depth": depth, "width": width}
    for scale, name in (("none", "vanilla"), ("rezero", "rezero"), ("fixup", "fixup")):
        keras.utils.set_random_seed(seed)
        model = zoo.get_model(
            "residual_mlp",
            input_shape=(num_features,),
            num_outputs=10,
            depth=depth,
            width=width,
            activation=activation,
            initializer=initializer,
            norm="none",
            branch_scale=scale,
        )
        names = [
            f"{block_prefix(0, depth)}_act",
            f"{block_prefix(depth - 1, depth)}_add",
        ]
        probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
        first, last = (np.asarray(h, np.float64) for h in probe(x.astype(np.float32)))
        out[f"{name}_std_ratio"] = float(last.std() / first.std())
    return out


def gradient_through_time(
    seed: int,
    *,
    activation: str,
    recurrent_initializer: str,
    spectral_radius: float,
    units: int = 64,
    timesteps: int = 100,
) -> dict:
    """||dL/dx_1|| / ||dL/dx_T|| and the decay rate at init, zoo vanilla_rnn,
    adding-problem inputs (values U[0, 1), two markers), MSE on the last step."""
    import keras

    import zoo
    from analysis import temporal

    keras.utils.set_random_seed(seed)
    model = zoo.get_model(
        "vanilla_rnn",
        input_shape=(timesteps, 2),
        num_outputs=1,
        units=units,
        activation=activation,
        recurrent_initializer=recurrent_initializer,
        spectral_radius=spectral_radius,
    )
    rng = np.random.RandomState(seed)
    x = np.zeros((64, timesteps, 2), np.float32)
    x[..., 0] = rng.uniform(size=(64, timesteps))
    x[:, 0, 1] = x[:, timesteps // 2, 1] = 1.0
    y = x[:, [0, timesteps // 2], 0].sum(axis=1, keepdims=True)

    def mse(target, out):
        return keras.ops.mean(keras.ops.square(out - target), axis=-1)

    g = temporal.gradient_through_time(model, x, y, mse, trace=False)
    return {
        "input_ratio": float(g.input_ratio),
        "state_ratio": float(g.state_ratio),
        "decay_rate": float(g.decay_rate()),
        "spectral_radius": spectral_radius,
        "timesteps": timesteps,
        "state_grad_norms": [float(v) for v in g.state_grad_norms],
    }


def edge_of_chaos(
    seed: int,
    *,
    depth: int = 50,
    width: int = 512,
    sigma_b2: float = 0.05,
    sigma_w2s=(0.5, 1.0, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0),
    batch: int = 32,
) -> dict:
    """log10(||dL/dh_1|| / ||dL/dh_depth||) of a random tanh MLP per sigma_w^2
    (weights N(0, sigma_w^2 / width), biases N(0, sigma_b^2)), and the
    mean-field per-layer factor chi = sigma_w^2 E[tanh'(a)^2] (Schoenholz et
    al. 2017), computed in float64 NumPy with a random unit seed at h_depth.
    """
    rng = np.random.RandomState(seed)
    x = rng.standard_normal((batch, width))
    seed_grad = rng.standard_normal((batch, width))
    logs, chis = [], []
    for s2 in sigma_w2s:
        ws = [
            rng.standard_normal((width, width)) * math.sqrt(s2 / width)
            for _ in range(depth)
        ]
        bs = [rng.standard_normal(width) * math.sqrt(sigma_b2) for _ in range(depth)]
        h, pre = x, []
        for w, b in zip(ws, bs):
            a = h @ w + b
            pre.append(a)
            h = np.tanh(a)
        # Backward from dL/dh_depth = seed_grad to dL/dh_1.
        g = seed_grad
        for layer in range(depth - 1, 0, -1):
            g = (g * (1 - np.tanh(pre[layer]) ** 2)) @ ws[layer].T
        logs.append(float(np.log10(np.linalg.norm(g) / np.linalg.norm(seed_grad))))
        # chi over the deeper half, where the fixed point is reached.
        chis.append(
            float(
                np.mean(
                    [
                        s2 * np.mean((1 - np.tanh(a) ** 2) ** 2)
                        for a in pre[depth // 2 :]
                    ]
                )
            )
        )
    return {
        "sigma_w2": list(sigma_w2s),
        "sigma_b2": sigma_b2,
        "log10_ratio": logs,
        "chi": chis,
        "crossing_sigma_w2": _crossing(sigma_w2s, logs, 0.0),
        "chi_one_sigma_w2": _crossing(sigma_w2s, chis, 1.0),
    }


def _crossing(xs, ys, level) -> float:
    """The first x where the piecewise-linear ys crosses `level` (nan if none)."""
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if (y0 - level) * (y1 - level) <= 0 and y1 != y0:
            return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0))
    return math.nan


PROBES = {
    "activation_derivatives": activation_derivatives,
    "propagation": propagation,
    "branch_scale_init": branch_scale_init,
    "gradient_through_time": gradient_through_time,
    "edge_of_chaos": edge_of_chaos,
}


def run_probe(name: str, seed: int, args: dict, output_dir: str) -> dict:
    """Runs probe `name` and writes evidence.json (and status.json) atomically."""
    if name not in PROBES:
        raise ValueError(f"Unknown probe '{name}'. Known: {', '.join(PROBES)}.")
    values = PROBES[name](seed, **args)
    os.makedirs(output_dir, exist_ok=True)
    schema.write_json(
        os.path.join(output_dir, schema.PROBE_FILE),
        {"probe": name, "seed": seed, **args},
    )
    schema.write_json(os.path.join(output_dir, EVIDENCE_FILE), values)
    status = schema.Status("completed", 0, f"probe {name}", updated=time.time())
    schema.write_json(os.path.join(output_dir, schema.STATUS_FILE), status.to_json())
    return values


def main(argv) -> None:
    """python -m analysis.probes --probe=NAME --seed=S --args=JSON --output_dir=D"""
    opts = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--"))
    cli.import_keras()
    try:
        run_probe(
            opts["probe"],
            int(opts.get("seed", 0)),
            json.loads(opts.get("args", "{}")),
            opts["output_dir"],
        )
    except (KeyError, ValueError, TypeError) as e:
        cli.fail(f"probe: {e}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cli.call_then_exit(main, sys.argv)

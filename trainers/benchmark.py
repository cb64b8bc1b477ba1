"""Steps per second of gradzoo's instrumented step next to model.fit.

    python -m trainers.benchmark            # 50x128 ReLU MLP, batch 128

In one process, on the same model architecture, data and batch:
  (a) gradzoo's TrainStep, per-layer gradient norms every 100 steps (default),
  (b) the same with norms on every step,
  (c) Keras model.fit, no instrumentation,
  (d) a bare tf.GradientTape step in a tf.function, no instrumentation.
Each is warmed up (traced) first, then timed over --repeats blocks of
--steps steps; the table gives the median and [min, max] steps/s and the
ratio of each median to (c). Speed is measured here, never asserted in tests.

Tested (at toy size) by tests/trainers/test_benchmark.py.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import zoo  # noqa: E402
from trainers import loop  # noqa: E402
from zoo.tasks.base import classification_task  # noqa: E402

_DEPTH = flags.DEFINE_integer("depth", 50, "Hidden layers.", lower_bound=1)
_WIDTH = flags.DEFINE_integer("width", 128, "Units per layer.", lower_bound=1)
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", 300, "Steps per timed block.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed blocks per case.", lower_bound=1)
_LOG_EVERY = flags.DEFINE_integer(
    "log_every_steps", 100, "Norm cadence of (a).", lower_bound=1
)
_OUTPUT_JSON = flags.DEFINE_string("output_json", None, "Also write the results here.")


def _task(batch_size, num_features=64, num_classes=10):
    rng = np.random.default_rng(0)
    n = 16 * batch_size
    x = rng.normal(size=(n, num_features)).astype(np.float32)
    y = rng.integers(0, num_classes, size=n)
    return classification_task(
        "benchmark",
        input_kind="vector",
        x_train=x,
        y_train=y,
        x_eval=x[:batch_size],
        y_eval=y[:batch_size],
        num_classes=num_classes,
        description="random data",
    )


def _model(task, depth, width):
    keras.utils.set_random_seed(0)
    return zoo.get_model(
        "plain_mlp",
        input_shape=task.input_shape,
        num_outputs=task.num_outputs,
        depth=depth,
        width=width,
        activation="relu",
        initializer="he_normal",
    )


def _time(run_block, steps, repeats):
    run_block(steps)  # warm-up: tracing, pipeline start
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_block(steps)
        rates.append(steps / (time.perf_counter() - start))
    return rates


def measure(depth, width, batch_size, steps, repeats, log_every_steps) -> dict:
    """{case: [steps/s per timed block]} for the four cases."""
    task = _task(batch_size)
    results = {}

    def gradzoo(every):
        model = _model(task, depth, width)
        step = loop.TrainStep(
            model,
            task,
            keras.optimizers.SGD(0.01),
            strategy=tf.distribute.get_strategy(),
            batch_size=batch_size,
        )
        it = iter(task.train_dataset(batch_size, seed=0))
        count = [0]

        def block(n):
            for _ in range(n):
                count[0] += 1
                out = step(it, with_norms=count[0] % every == 0)
            float(out["loss"])  # wait for the last step

        return block

    results[f"a_gradzoo_norms_every_{log_every_steps}"] = _time(
        gradzoo(log_every_steps), steps, repeats
    )
    results["b_gradzoo_norms_every_step"] = _time(gradzoo(1), steps, repeats)

    model = _model(task, depth, width)
    model.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    data = task.train_dataset(batch_size, seed=0)
    results["c_keras_fit"] = _time(
        lambda n: model.fit(data, steps_per_epoch=n, epochs=1, verbose=0),
        steps,
        repeats,
    )

    model = _model(task, depth, width)
    optimizer = keras.optimizers.SGD(0.01)
    it = iter(task.train_dataset(batch_size, seed=0))

    @tf.function
    def bare_step():
        x, y = next(it)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(task.loss(y, model(x, training=True)))
        optimizer.apply_gradients(
            zip(
                tape.gradient(loss, model.trainable_variables),
                model.trainable_variables,
            )
        )
        return loss

    def bare(n):
        for _ in range(n):
            loss = bare_step()
        float(loss)

    results["d_bare_tape"] = _time(bare, steps, repeats)
    return results


def format_results(results: dict) -> str:
    base = statistics.median(results["c_keras_fit"])
    lines = [f"{'case':<28} {'steps/s median [min, max]':>28} {'vs (c)':>7}"]
    for name, rates in results.items():
        med = statistics.median(rates)
        lines.append(
            f"{name:<28} {med:>10.0f} [{min(rates):.0f}, {max(rates):.0f}]"
            f"{'':>6} {med / base:>6.2f}"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    print(
        f"{_DEPTH.value}x{_WIDTH.value} ReLU MLP, batch {_BATCH.value}, "
        f"{_REPEATS.value} blocks of {_STEPS.value} steps, TF {tf.__version__}, "
        f"Keras {keras.__version__}, {os.cpu_count()} CPUs"
    )
    results = measure(
        _DEPTH.value,
        _WIDTH.value,
        _BATCH.value,
        _STEPS.value,
        _REPEATS.value,
        _LOG_EVERY.value,
    )
    print(format_results(results))
    if _OUTPUT_JSON.value:
        with open(_OUTPUT_JSON.value, "w") as f:
            json.dump(results, f, indent=2)


def run_main():
    app.run(main)


if __name__ == "__main__":
    run_main()

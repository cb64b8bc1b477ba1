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
from trainers import flags as gz_flags  # noqa: E402
from trainers import loop  # noqa: E402
from trainers.cli import parse_flags  # noqa: E402
from zoo.tasks.base import classification_task  # noqa: E402

# --depth, --width, --batch_size and --log_every_steps are the trainer's own
# flags (trainers/flags.py), with this benchmark's defaults when unset.
_STEPS = flags.DEFINE_integer("steps", 300, "Steps per timed block.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed blocks per case.", lower_bound=1)
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


def measure(depth, width, batch_size, steps, repeats, log_every_steps) -> dict:
    """{case: [steps/s per timed block]} for the four cases.

    The cases are timed round-robin (a, b, c, d, a, b, ...), so drift in the
    machine's speed, large on shared CPUs, hits every case alike.
    """
    task = _task(batch_size)

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

    def keras_fit():
        model = _model(task, depth, width)
        model.compile(
            keras.optimizers.SGD(0.01),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        data = task.train_dataset(batch_size, seed=0)
        return lambda n: model.fit(
            data, steps_per_epoch=n, epochs=1, verbose=0, shuffle=False
        )

    def bare_tape():
        model = _model(task, depth, width)
        optimizer = keras.optimizers.SGD(0.01)
        it = iter(task.train_dataset(batch_size, seed=0))

        @tf.function
        def step():
            x, y = next(it)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(task.loss(y, model(x, training=True)))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        def block(n):
            for _ in range(n):
                loss = step()
            float(loss)

        return block

    cases = {
        f"a_gradzoo_norms_every_{log_every_steps}": gradzoo(log_every_steps),
        "b_gradzoo_norms_every_step": gradzoo(1),
        "c_keras_fit": keras_fit(),
        "d_bare_tape": bare_tape(),
    }
    for block in cases.values():
        block(steps)  # warm-up: tracing, pipeline start
    results = {name: [] for name in cases}
    for _ in range(repeats):
        for name, block in cases.items():
            start = time.perf_counter()
            block(steps)
            results[name].append(steps / (time.perf_counter() - start))
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
    depth = gz_flags.DEPTH.value or 50
    width = gz_flags.WIDTH.value or 128
    batch_size = gz_flags.BATCH_SIZE.value
    print(
        f"{depth}x{width} ReLU MLP, batch {batch_size}, {_REPEATS.value} rounds of "
        f"{_STEPS.value} steps per case, TF {tf.__version__}, Keras "
        f"{keras.__version__}, {os.cpu_count()} CPUs"
    )
    results = measure(
        depth,
        width,
        batch_size,
        _STEPS.value,
        _REPEATS.value,
        gz_flags.LOG_EVERY_STEPS.value,
    )
    print(format_results(results))
    if _OUTPUT_JSON.value:
        with open(_OUTPUT_JSON.value, "w") as f:
            json.dump(results, f, indent=2)


def run_main():
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run_main()

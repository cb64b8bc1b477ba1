"""Steps per second of gradzoo's instrumented step next to model.fit and PyTorch.

    python -m trainers.benchmark                    # every model, ~7 min on 2 cores
    python -m trainers.benchmark --model=mlp_50x128 --output_json=bench.json
    python -m trainers.benchmark --model=lstm_128_t100,gru_128_t100 --threads=1

For each model, in one process, on the same architecture, data and batch:
  (a) gradzoo's TrainStep, per-layer gradient norms every 100 steps (the
      trainer's default logging cadence),
  (b) the same with norms on every step,
  (c) Keras model.fit, no instrumentation,
  (d) a bare tf.GradientTape step in a tf.function, no instrumentation,
  (e) PyTorch eager, the same architecture and initializer family (only when
      torch is installed: `pip install -e ".[bench]"`),
  (g) (c) with gradzoo's model.fit monitor (trainers/monitor.py) logging
      every 10 steps to a temporary run directory,
  (h) (a) without the update norms of its logging steps (what (a) pays for
      ||w_new - w_old|| and ||w|| per variable),
and once per run
  (f) a chain of float32 n x n matmuls: the machine's practical peak FLOP/s.
Every case uses plain SGD, so the optimizer adds as little as possible to
what is compared. Cases are warmed up (traced) first, then timed round-robin
over --repeats blocks, so drift in the machine's speed hits every case alike.
The table gives steps/s as median [min, max] over the blocks, the ratio of
each median to (c), achieved FLOP/s (training matmul FLOPs: 3x the forward
pass) as a fraction of (f), the peak resident memory while the case ran, and
"CPU vs (c)": the median over the rounds of the case's steps per CPU-second
of this process (time.process_time) over (c)'s in the same round. On a
machine shared with other jobs, wall-clock blocks vary by 2x or more; the
CPU time a case spends per step moves far less with the neighbours' load.

Speed is measured here, never asserted in tests; the smoke test
(tests/trainers/test_benchmark.py) runs this at toy size.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import zoo  # noqa: E402
from analysis import cli, schema  # noqa: E402
from analysis.cli import fail, parse_flags  # noqa: E402
from trainers import loop, runner  # noqa: E402
from zoo import fused_rnn  # noqa: E402
from zoo.tasks.base import classification_task, regression_task  # noqa: E402

LEARNING_RATE = 0.01
LOG_EVERY_STEPS = 100  # the trainer's default --log_every_steps
MONITOR_EVERY_STEPS = 10  # case (g)


@dataclasses.dataclass(frozen=True)
class BenchModel:
    """One benchmarked model: a zoo model, its data shape and its batch."""

    model: str
    model_kwargs: dict
    input_shape: tuple
    num_outputs: int  # classes, or 1 for a regression target
    regression: bool
    batch_size: int
    description: str


# Adding a model is one entry (and, for case (e), its PyTorch twin below).
MODELS = {
    "mlp_50x128": BenchModel(
        "plain_mlp",
        dict(depth=50, width=128, activation="relu", initializer="he_normal"),
        (64,),
        10,
        False,
        128,
        "50x128 ReLU MLP, He init, 64 inputs, 10 classes, batch 128",
    ),
    "mlp_50x1024": BenchModel(
        "plain_mlp",
        dict(depth=50, width=1024, activation="relu", initializer="he_normal"),
        (64,),
        10,
        False,
        128,
        "50x1024 ReLU MLP, He init, 64 inputs, 10 classes, batch 128",
    ),
    "lstm_128_t100": BenchModel(
        "lstm",
        dict(units=128),
        (100, 2),
        1,
        True,
        64,
        "LSTM(128) on T=100 steps of 2 features (the adding problem's shape), "
        "regression, batch 64",
    ),
    "gru_128_t100": BenchModel(
        "gru",
        dict(units=128),
        (100, 2),
        1,
        True,
        64,
        "GRU(128) on T=100 steps of 2 features (the adding problem's shape), "
        "regression, batch 64",
    ),
    "resnet20_cifar": BenchModel(
        "resnet",
        dict(depth=20),
        (32, 32, 3),
        10,
        False,
        128,
        "ResNet-20 (option A, BatchNorm, He init) on 32x32x3 (CIFAR's shape), "
        "10 classes, batch 128",
    ),
}


def _task(bm: BenchModel, num_batches: int = 16) -> zoo.Task:
    """Random in-memory data of the model's shape: the data is not measured."""
    rng = np.random.default_rng(0)
    n = num_batches * bm.batch_size
    x = rng.normal(size=(n, *bm.input_shape)).astype(np.float32)
    if not bm.regression:
        y = rng.integers(0, bm.num_outputs, size=n)
        return classification_task(
            "benchmark",
            input_kind="image" if len(bm.input_shape) == 3 else "vector",
            x_train=x,
            y_train=y,
            x_eval=x[: bm.batch_size],
            y_eval=y[: bm.batch_size],
            num_classes=bm.num_outputs,
            description="random data",
        )
    y = rng.normal(size=(n, bm.num_outputs)).astype(np.float32)
    return regression_task(
        "benchmark",
        input_kind="sequence",
        x_train=x,
        y_train=y,
        x_eval=x[: bm.batch_size],
        y_eval=y[: bm.batch_size],
        description="random data",
    )


def _keras_model(bm: BenchModel) -> keras.Model:
    keras.utils.set_random_seed(0)
    return zoo.get_model(
        bm.model,
        input_shape=bm.input_shape,
        num_outputs=bm.num_outputs,
        **bm.model_kwargs,
    )


def train_flops_per_example(model: keras.Model) -> int:
    """Matmul and convolution FLOPs of one training example: 3x the forward.

    Forward, every 2-D kernel costs 2 FLOPs per entry per use (once per time
    step inside a recurrent layer or on a sequence), and a 2-D convolution's
    kernel [kh, kw, c_in, c_out] 2 FLOPs per entry per output pixel;
    backward computes the gradients of the inputs and of the kernel, twice
    the forward. Biases, activations, normalization and the optimizer are
    left out (they are a few percent). Every layer's kernels count, by
    shape, not `zoo.depth_axis`: the head, a recurrent layer's W_hh and a
    projection shortcut cost FLOPs too.
    """
    forward = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, _ = layer.output.shape
            forward += 2 * height * width * int(np.prod(layer.kernel.shape))
            continue
        kernels = [w for w in layer.trainable_weights if len(w.shape) == 2]
        if not kernels:
            continue
        uses = 1
        if isinstance(layer, keras.layers.RNN) or len(layer.input.shape) == 3:
            uses = layer.input.shape[1]
        forward += 2 * uses * sum(int(np.prod(w.shape)) for w in kernels)
    return 3 * forward


def _peak_rss_reset() -> bool:
    """Resets the process's peak RSS (Linux /proc/self/clear_refs, value 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident memory in MB since the last reset (or process start)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # not on Windows

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Each case builder returns block(n): run n training steps and wait for them.


def _gradzoo_case(bm, task, norms_every, measure_updates=True):
    model = _keras_model(bm)
    step = loop.TrainStep(
        model,
        task,
        keras.optimizers.SGD(LEARNING_RATE),
        strategy=tf.distribute.get_strategy(),
        batch_size=bm.batch_size,
    )
    step.measure_updates = measure_updates  # read when the step is traced
    iterator = iter(task.train_dataset(bm.batch_size, seed=0))
    # The warm-up's two steps (measure) are a logging step and another, so
    # both variants are traced and instantiated before timing, after every
    # case is built: each build seeds (keras.utils.set_random_seed), which
    # clears TensorFlow's cache of instantiated functions, and a logging
    # variant instantiated before that ran grappler again inside a timed
    # block (0.6-1.5 s on the 50x128 MLP, halving that block's rate).
    count = [norms_every - 1]

    def block(n):
        for _ in range(n):
            count[0] += 1
            out = step(iterator, with_norms=count[0] % norms_every == 0)
        float(out["loss"])  # wait for the last step

    return block


def _keras_fit_case(bm, task):
    model = _keras_model(bm)
    loss = (
        keras.losses.MeanSquaredError()
        if bm.regression
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.compile(keras.optimizers.SGD(LEARNING_RATE), loss)
    data = task.train_dataset(bm.batch_size, seed=0)
    return lambda n: model.fit(
        data, steps_per_epoch=n, epochs=1, verbose=0, shuffle=False
    )


def _keras_fit_monitor_case(bm, task, output_dir):
    from trainers import monitor

    model = _keras_model(bm)
    loss = (
        keras.losses.MeanSquaredError()
        if bm.regression
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.compile(monitor.watch(keras.optimizers.SGD(LEARNING_RATE)), loss)
    data = task.train_dataset(bm.batch_size, seed=0)
    logger = monitor.GradientLogger(output_dir, MONITOR_EVERY_STEPS, overwrite=True)
    return lambda n: model.fit(
        data, steps_per_epoch=n, epochs=1, verbose=0, shuffle=False, callbacks=[logger]
    )


def _bare_tape_case(bm, task):
    model = _keras_model(bm)
    optimizer = keras.optimizers.SGD(LEARNING_RATE)
    iterator = iter(task.train_dataset(bm.batch_size, seed=0))

    @tf.function
    def step():
        x, y = next(iterator)
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


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def _torch_model(bm: BenchModel):
    """The PyTorch twin of a benchmark model, or None if it has none."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    if bm.model == "plain_mlp":
        layers, width = [], bm.input_shape[0]
        for _ in range(bm.model_kwargs["depth"]):
            dense = nn.Linear(width, bm.model_kwargs["width"])
            nn.init.kaiming_normal_(dense.weight, nonlinearity="relu")
            nn.init.zeros_(dense.bias)
            layers += [dense, nn.ReLU()]
            width = bm.model_kwargs["width"]
        layers.append(nn.Linear(width, bm.num_outputs))
        return nn.Sequential(*layers)
    if bm.model in ("lstm", "gru"):
        # nn.GRU is Keras' reset_after=True form: the reset gate multiplies
        # h_{t-1} U_h + b'_h, after the recurrent matmul.
        layer = {"lstm": nn.LSTM, "gru": nn.GRU}[bm.model]

        class LastState(nn.Module):
            def __init__(self):
                super().__init__()
                units = bm.model_kwargs["units"]
                self.rnn = layer(bm.input_shape[1], units, batch_first=True)
                self.head = nn.Linear(units, bm.num_outputs)

            def forward(self, x):
                return self.head(self.rnn(x)[0][:, -1])

        return LastState()
    if bm.model == "resnet":
        return _torch_resnet(bm)
    return None


def _torch_resnet(bm: BenchModel):
    """zoo's resnet with option A shortcuts and BatchNorm, in PyTorch."""
    import torch
    from torch import nn

    n = (bm.model_kwargs["depth"] - 2) // 6
    base = bm.model_kwargs.get("width", 16)

    def conv_bn(c_in, c_out, stride):
        conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        return nn.Sequential(conv, nn.BatchNorm2d(c_out))

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.branch = nn.Sequential(
                conv_bn(c_in, c_out, stride), nn.ReLU(), conv_bn(c_out, c_out, 1)
            )
            self.stride, self.extra = stride, c_out - c_in

        def forward(self, x):
            s = x[:, :, :: self.stride, :: self.stride]  # option A
            if self.extra:
                half = self.extra // 2
                s = nn.functional.pad(s, (0, 0, 0, 0, half, self.extra - half))
            return torch.relu(self.branch(x) + s)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [conv_bn(bm.input_shape[2], base, 1), nn.ReLU()]
            c = base
            for stage in range(3):
                for j in range(n):
                    out = base * 2**stage
                    layers.append(Block(c, out, 2 if stage and not j else 1))
                    c = out
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(c, bm.num_outputs)

        def forward(self, x):  # x: [batch, height, width, channels] as in Keras
            h = self.body(x.permute(0, 3, 1, 2).contiguous())
            return self.head(h.mean(dim=(2, 3)))

    return ResNet()


def _torch_case(bm, task, threads=None):
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    model = _torch_model(bm)
    if model is None:
        return None
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = (
        torch.nn.functional.mse_loss
        if bm.regression
        else torch.nn.functional.cross_entropy
    )
    b = bm.batch_size
    xs = torch.from_numpy(task.x_train)
    ys = torch.from_numpy(task.y_train if bm.regression else task.y_train.astype(int))
    batches = [(xs[i : i + b], ys[i : i + b]) for i in range(0, len(xs) - b + 1, b)]
    count = [0]

    def block(n):
        for _ in range(n):
            x, y = batches[count[0] % len(batches)]
            count[0] += 1
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
        float(loss.detach())

    return block


def matmul_peak_flops(n: int = 1024, chain: int = 16, repeats: int = 5) -> dict:
    """(f): float32 FLOP/s of a chain of n x n matmuls, the best of `repeats`."""
    rng = np.random.default_rng(0)
    a = tf.constant(rng.normal(size=(n, n)).astype(np.float32))
    # Orthogonal, so the chained product neither vanishes nor overflows.
    w = tf.constant(np.linalg.qr(rng.normal(size=(n, n)))[0].astype(np.float32))

    @tf.function
    def run(x):
        for _ in range(chain):
            x = tf.matmul(x, w)
        return x

    run(a).numpy()  # trace
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(a).numpy()
        rates.append(2 * n**3 * chain / (time.perf_counter() - start))
    return {"n": n, "chain": chain, "flops_per_second": rates}


def measure(
    name: str,
    bm: BenchModel,
    *,
    repeats: int,
    block_seconds: float,
    steps: int | None = None,
    with_torch: bool = True,
    threads: int | None = None,
    profile_dir: str | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> dict:
    """Times every case on one model; returns the JSON-ready results.

    The steps per block are `steps`, or else as many as case (d) runs in
    `block_seconds` (at least 2), the same for every case. `threads` is
    PyTorch's thread count (default: every core; TensorFlow's is set by
    `--threads` before it starts). With `profile_dir`, one more block of
    every case runs under tf.profiler.
    """
    task = _task(bm)
    run_dir = tempfile.TemporaryDirectory()  # case (g)'s run directory
    cases = {
        f"a_gradzoo_norms_every_{LOG_EVERY_STEPS}": _gradzoo_case(
            bm, task, LOG_EVERY_STEPS
        ),
        "b_gradzoo_norms_every_step": _gradzoo_case(bm, task, 1),
        f"h_gradzoo_norms_every_{LOG_EVERY_STEPS}_no_update_norms": _gradzoo_case(
            bm, task, LOG_EVERY_STEPS, measure_updates=False
        ),
        "c_keras_fit": _keras_fit_case(bm, task),
        "d_bare_tape": _bare_tape_case(bm, task),
        f"g_keras_fit_monitor_every_{MONITOR_EVERY_STEPS}": _keras_fit_monitor_case(
            bm, task, run_dir.name
        ),
    }
    if with_torch and torch_installed():
        torch_block = _torch_case(bm, task, threads)
        if torch_block is not None:
            cases["e_pytorch_eager"] = torch_block
    for case, block in cases.items():
        progress(f"{name}: warming up {case}")
        block(2)  # tracing, pipeline start
    if steps is None:
        start = time.perf_counter()
        cases["d_bare_tape"](2)
        per_step = (time.perf_counter() - start) / 2
        steps = max(2, round(block_seconds / per_step))
    rates = {case: [] for case in cases}
    cpu_rates = {case: [] for case in cases}  # steps per CPU-second
    peaks = {case: 0.0 for case in cases}
    for r in range(repeats):
        progress(f"{name}: round {r + 1}/{repeats}, {steps} steps per case")
        for case, block in cases.items():
            _peak_rss_reset()
            start, cpu_start = time.perf_counter(), time.process_time()
            block(steps)
            rates[case].append(steps / (time.perf_counter() - start))
            cpu_rates[case].append(steps / (time.process_time() - cpu_start))
            peaks[case] = max(peaks[case], _peak_rss_mb())
    if profile_dir:  # one more block per case, traced, outside the timing
        for case, block in cases.items():
            progress(f"{name}: tf.profiler trace of {case}")
            tf.profiler.experimental.start(os.path.join(profile_dir, name, case))
            try:
                block(steps)
            finally:
                tf.profiler.experimental.stop()
    run_dir.cleanup()
    model = _keras_model(bm)
    flops = train_flops_per_example(model) * bm.batch_size
    base = statistics.median(rates["c_keras_fit"])
    cpu_base = cpu_rates["c_keras_fit"]
    slices = {}
    if any(isinstance(x, fused_rnn.LSTM | fused_rnn.GRU) for x in model.layers):
        slices = {"batch_slices": fused_rnn.parts_for(bm.batch_size)}
    return {
        "description": bm.description,
        "batch_size": bm.batch_size,
        **slices,
        "train_flops_per_step": flops,
        "steps_per_block": steps,
        "cases": {
            case: {
                "steps_per_second": r,
                "median": statistics.median(r),
                "ratio_to_c": statistics.median(r) / base,
                "cpu_steps_per_second": cpu_rates[case],
                "cpu_ratio_to_c": statistics.median(
                    x / y for x, y in zip(cpu_rates[case], cpu_base)
                ),
                "flops_per_second": flops * statistics.median(r),
                "peak_rss_mb": peaks[case],
            }
            for case, r in rates.items()
        },
    }


def checks(results: dict) -> list[dict]:
    """The issue's targets, each with its measured value (None: not measured)."""
    models, peak = results["models"], results.get("peak_flops_per_second")

    def median(model, prefix):
        cases = models.get(model, {}).get("cases", {})
        return next((c["median"] for k, c in cases.items() if k[0] == prefix), None)

    def ratio(x, y):
        return None if x is None or y is None else x / y

    a, b, c, d, e, g, h = (median("mlp_50x128", p) for p in "abcdegh")
    wide = models.get("mlp_50x1024")
    wide_a = median("mlp_50x1024", "a")
    fraction = (
        wide_a * wide["train_flops_per_step"] / peak
        if wide and wide_a and peak
        else None
    )
    overhead = None if b is None or d is None else 1 - b / d
    recurrent = [
        dict(
            check=f"(a)/(e) on {name}",
            value=ratio(median(name, "a"), median(name, "e")),
            target=">= 1.0",
        )
        for name in ("lstm_128_t100", "gru_128_t100")
    ]
    return [
        dict(check="(a)/(c) on mlp_50x128", value=ratio(a, c), target=">= 1.0"),
        dict(check="(b)/(d) overhead on mlp_50x128", value=overhead, target="<= 0.10"),
        dict(check="(a)/(e) on mlp_50x128", value=ratio(a, e), target=">= 3"),
        dict(
            check="1 - (g)/(c) monitor overhead on mlp_50x128",
            value=None if g is None or c is None else 1 - g / c,
            target="<= 0.10",
        ),
        dict(
            check="1 - (a)/(h) update-norm overhead on mlp_50x128",
            value=None if a is None or h is None else 1 - a / h,
            target="<= 0.05",
        ),
        dict(check="(a) FLOP/s / (f) on mlp_50x1024", value=fraction, target="report"),
        dict(
            check="(a)/(c) on resnet20_cifar",
            value=ratio(median("resnet20_cifar", "a"), median("resnet20_cifar", "c")),
            target="report",
        ),
        *recurrent,
    ]


def _slices_note(slices: int | None) -> str:
    if slices is None:
        return ""
    return f", batch in {slices} slice{'s' if slices > 1 else ''}"


def format_results(results: dict) -> str:
    peak = results.get("peak_flops_per_second")
    lines = []
    if peak:
        lines.append(f"(f) float32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    for name, m in results["models"].items():
        lines += [
            "",
            f"{name}: {m['description']} ({m['steps_per_block']} steps per block"
            + _slices_note(m.get("batch_slices"))
            + ")",
            f"  {'case':<30}{'steps/s median [min, max]':>27}{'vs (c)':>8}"
            f"{'GFLOP/s':>9}{'of (f)':>8}{'peak MB':>9}{'CPU vs (c)':>11}",
        ]
        for case, c in m["cases"].items():
            r = c["steps_per_second"]
            share = f"{c['flops_per_second'] / peak:>7.0%}" if peak else f"{'-':>7}"
            lines.append(
                f"  {case:<30}{c['median']:>11.1f} [{min(r):.1f}, {max(r):.1f}]".ljust(
                    59
                )
                + f"{c['ratio_to_c']:>7.2f}{c['flops_per_second'] / 1e9:>9.1f}"
                f" {share}{c['peak_rss_mb']:>9.0f}{c['cpu_ratio_to_c']:>11.2f}"
            )
    lines += ["", "checks:"]
    for c in results["checks"]:
        value = "not measured" if c["value"] is None else f"{c['value']:.3g}"
        lines.append(f"  {c['check']:<36} {value:>14}   target {c['target']}")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _define_flags():
    """The benchmark's flags, defined only when it runs as a main.

    Its --model names benchmark models, not zoo models, so it must not meet
    the trainer's --model in one process (the tests import both).
    """
    flags.DEFINE_list(
        "model", None, f"Models to time (default: all): {', '.join(MODELS)}."
    )
    flags.DEFINE_integer("repeats", 5, "Timed blocks per case.", lower_bound=1)
    flags.DEFINE_float(
        "block_seconds", 2.0, "Target length of one timed block.", lower_bound=0.01
    )
    flags.DEFINE_integer(
        "steps",
        None,
        "Steps per block (default: from --block_seconds).",
        lower_bound=1,
    )
    flags.DEFINE_bool("torch", True, "Time PyTorch eager if torch is installed.")
    flags.DEFINE_integer(
        "threads",
        None,
        "Threads for TensorFlow (intra- and inter-op pools) and PyTorch "
        "(default: the libraries' own, every core). On a machine other jobs "
        "load, PyTorch on every core slows down many times over; "
        "--threads=1 compares the two without that.",
        lower_bound=1,
    )
    flags.DEFINE_enum(
        "cpu_allocator",
        None,
        list(zoo.CPU_ALLOCATORS),
        "TensorFlow's CPU allocator (default: the one the trainer uses for "
        "every --model, as zoo/registry.py declares, else 'default'; "
        "TF_CPU_ALLOCATOR_USE_BFC in the environment also sets it).",
    )
    flags.DEFINE_string("output_json", None, "Also write the results here.")
    flags.DEFINE_string(
        "profile_dir",
        None,
        "Also trace one block of every case with tf.profiler into "
        "DIR/<model>/<case> (TensorBoard's Profile tab or xprof reads it).",
    )


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    names = f.model or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        fail(f"unknown --model {', '.join(unknown)}; known: {', '.join(MODELS)}")
    # Both before TensorFlow runs its first op.
    declared = {zoo.model_spec(MODELS[n].model).cpu_allocator for n in names}
    cli.use_cpu_allocator(
        f.cpu_allocator or (declared.pop() if len(declared) == 1 else "default"),
        force=f.cpu_allocator is not None,
    )
    if f.threads:
        tf.config.threading.set_intra_op_parallelism_threads(f.threads)
        tf.config.threading.set_inter_op_parallelism_threads(f.threads)
    with_torch = f.torch and torch_installed()
    if f.torch and not with_torch:
        print('(e) skipped: torch is not installed (pip install -e ".[bench]")')

    def progress(text):
        print(f"  {text}", file=sys.stderr, flush=True)

    results = {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "command": " ".join(["python -m trainers.benchmark", *sys.argv[1:]]),
        "threads": f.threads or "default",
        "cpu_allocator": runner.cpu_allocator(),
    }
    if with_torch:
        import torch

        results["versions"]["torch"] = torch.__version__
    progress("(f) float32 matmul peak")
    peak = matmul_peak_flops()
    results["peak_flops_per_second"] = max(peak["flops_per_second"])
    results["matmul"] = peak
    results["models"] = {}
    for name in names:
        results["models"][name] = measure(
            name,
            MODELS[name],
            repeats=f.repeats,
            block_seconds=f.block_seconds,
            steps=f.steps,
            profile_dir=f.profile_dir,
            with_torch=with_torch,
            threads=f.threads,
            progress=progress,
        )
    results["checks"] = checks(results)
    print(
        f"{results['date']}, {results['cpu']} x{results['cpu_count']}, "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        + f"; TensorFlow CPU allocator {results['cpu_allocator']}"
    )
    print(format_results(results))
    if f.output_json:
        os.makedirs(os.path.dirname(os.path.abspath(f.output_json)), exist_ok=True)
        schema.write_json(f.output_json, results)
        print(f"results: {f.output_json}")


def run_main():
    _define_flags()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run_main()

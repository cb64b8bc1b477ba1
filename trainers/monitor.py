"""Gradient norms of any Keras model trained with model.fit, in a run directory.

    >>> from trainers import monitor
    >>> model.compile(optimizer=monitor.watch(keras.optimizers.Adam(1e-3)), ...)
    >>> logger = monitor.GradientLogger("runs/fit", every_n_steps=10)
    >>> model.fit(x, y, epochs=3, callbacks=[logger])

Why here: the monitor writes run directories (trainers/writer.py claims and
owns them), which is a trainer's job; analysis/ only reads them and must not
import trainers/. It imports zoo (the depth axis) and analysis (the schema,
the underflow-safe norms), as every trainer does.

How: Keras callbacks never see gradients, so two parts work together.

- `watch(optimizer)` hooks the optimizer's `apply` (for a
  LossScaleOptimizer, its inner optimizer's, which receives the gradients
  already unscaled). `apply` runs inside the compiled train step, in replica
  context, with each replica's partial gradient, before Keras clips it. On
  every step the hook sums the gradients over the replicas (measurement only:
  Keras scales each replica's loss by 1/replicas, so the sum is the gradient
  of the mean loss over the global batch), and on logged steps (step 1 and
  every `every_n_steps`) it takes every variable's norm, the global norm and
  a histogram per layer with `analysis.gradients`, and writes them into a
  small ring buffer of variables on the device. What the optimizer then does
  (clipping, the update) is untouched.
- `GradientLogger` (a callback) creates the buffer when training begins,
  sized so that one execution of `steps_per_execution` steps cannot overrun
  it, re-traces the train function so the hook sees it, and drains the
  buffer after every execution: no logged step is lost, whatever
  steps_per_execution is. It writes config.json (a RunRecord, with
  `zoo.depth_axis(model)`), status.json, metrics.jsonl (MetricsRow),
  eval.jsonl (the validation logs, if any) and tb/ (scalars per variable,
  a histogram per layer), so analysis.compare and
  analysis.gradients.gradient_profile read the run like a trainer's.

`GradientMonitorMixin` is the same measurement for a model class that owns
its train step: `class Net(monitor.GradientMonitorMixin, keras.Model)`.

Saving: `watch` patches the optimizer instance and keeps its state outside
Keras' tracking, so a saved model holds the plain optimizer (same class,
config and variables): it loads with `keras.saving.load_model` in safe mode
in any process, without gradzoo. A registered wrapper class would make every
saved model depend on gradzoo being importable, for a measurement that is
not part of what was trained.

The hook exists only on the TensorFlow backend (JAX calls stateless_apply,
which it cannot see): `watch` and `GradientLogger` refuse other backends.

Tested by tests/trainers/test_monitor.py.
"""

import contextlib
import math
import platform
import time
import types

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import zoo
from analysis import schema
from analysis.gradients import global_norm, half_squares, l2_norms
from trainers import writer

# Bins of each layer's gradient histogram, over [-max |g|, max |g|].
HISTOGRAM_BINS = 30
# The attribute holding a _Monitor on a watched optimizer or a mixin model.
_ATTRIBUTE = "_gradzoo_monitor"


def _require_tensorflow(what: str) -> None:
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            f"{what} needs the TensorFlow backend: on {backend!r} Keras updates "
            "through stateless_apply, which the monitor cannot see (gradzoo "
            f"targets TensorFlow; set KERAS_BACKEND=tensorflow). Received: "
            f"backend={backend!r}"
        )


class _Buffer:
    """The device-side ring buffer of logged steps, and how to fill it.

    With several replicas, slot `capacity` is a scratch row: steps that are
    not logged write there, so every step assigns (a conditional assignment
    of a mirrored variable, or an all-reduce inside a cond, would need a
    merge_call inside a cond, which tf.distribute forbids).
    """

    def __init__(self, variables, strategy, capacity: int, every_n_steps: int):
        self.paths = [v.path for v in variables]
        if len(set(self.paths)) != len(self.paths):
            raise ValueError("The model's trainable variables' paths are not unique.")
        self.shapes = [tuple(v.shape) for v in variables]
        self.layers = list(dict.fromkeys(_layer(p) for p in self.paths))
        self.capacity = capacity
        self.every_n_steps = every_n_steps
        rows, n, layers = capacity + 1, len(self.paths), len(self.layers)

        def variable(value):
            return tf.Variable(
                value,
                trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )

        with tf.init_scope(), strategy.scope():
            # A GradientLogger is training with this buffer (else: measure
            # nothing, so a later fit without one costs little).
            self.enabled = variable(tf.constant(False))
            self.count = variable(tf.constant(0, tf.int64))  # logged steps so far
            self.steps = variable(tf.fill([rows], tf.constant(-1, tf.int64)))
            self.norms = variable(tf.zeros([rows, n]))
            # Per row: the global norm, the learning rate of the step.
            self.scalars = variable(tf.zeros([rows, 2]))
            self.histograms = variable(tf.zeros([rows, layers, HISTOGRAM_BINS]))
            self.ranges = variable(tf.zeros([rows, layers]))

    def record(self, grads, variables, step, learning_rate, scale=None):
        """Measures one step's gradients (replica context) into the buffer.

        Args:
          grads, variables: what the optimizer's apply received (per replica).
          step: the step number (1 for the first update), an int64 tensor.
          learning_rate: the rate of this step.
          scale: a loss scale still in the gradients, or None.
        """
        by_path = {v.path: g for g, v in zip(grads, variables)}
        full = []
        for path, shape in zip(self.paths, self.shapes):
            g = by_path.get(path)
            g = (
                tf.zeros(shape)
                if g is None
                else tf.cast(tf.convert_to_tensor(g), tf.float32)
            )
            full.append(g if scale is None else g / tf.cast(scale, tf.float32))
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        if replicas > 1:
            # Every step: a collective cannot sit in a cond (see the class).
            full = ctx.all_reduce(tf.distribute.ReduceOp.SUM, full)
        step = tf.cast(step, tf.int64)
        log_now = self.enabled & (
            tf.equal(step, 1) | tf.equal(step % self.every_n_steps, 0)
        )
        lr = tf.cast(learning_rate, tf.float32)

        def measure():
            halves = half_squares(full)
            hist, ranges = self._histograms(full)
            return l2_norms(full, halves), global_norm(full, halves), hist, ranges

        def write(slot, norms, gnorm, hist, ranges):
            for var, value in (
                (self.steps, step),
                (self.norms, norms),
                (self.scalars, tf.stack([gnorm, lr])),
                (self.histograms, hist),
                (self.ranges, ranges),
            ):
                var.assign(tf.tensor_scatter_nd_update(var, [[slot]], [value]))
            self.count.assign_add(tf.cast(log_now, tf.int64))
            return tf.constant(True)

        if replicas == 1:  # unlogged steps do nothing at all
            tf.cond(
                log_now,
                _out_of_line(lambda: write(self.count % self.capacity, *measure())),
                lambda: tf.constant(False),
            )
            return

        def skip():
            return (
                tf.zeros([len(full)]),
                tf.constant(0.0),
                tf.zeros([len(self.layers), HISTOGRAM_BINS]),
                tf.zeros([len(self.layers)]),
            )

        # Mirrored variables are assigned on every step, unlogged ones into
        # the scratch row.
        slot = tf.where(log_now, self.count % self.capacity, self.capacity)
        write(slot, *tf.cond(log_now, _out_of_line(measure), skip))

    def _histograms(self, grads):
        """Per layer: counts of its gradient entries in HISTOGRAM_BINS equal
        bins over [-m, m], m the largest |entry| (so a vanishing layer's
        distribution is as visible as a healthy one's), and m."""
        by_layer = {name: [] for name in self.layers}
        for path, g in zip(self.paths, grads):
            by_layer[_layer(path)].append(tf.reshape(g, [-1]))
        counts, ranges = [], []
        for name in self.layers:
            values = tf.concat(by_layer[name], 0)
            values = tf.where(tf.math.is_finite(values), values, tf.zeros_like(values))
            m = tf.reduce_max(tf.abs(values))
            safe = tf.where(m > 0, m, tf.ones_like(m))
            # unsorted_segment_sum compiles under XLA (jit_compile=True).
            bins = tf.cast(
                tf.floor((values / safe + 1.0) * 0.5 * HISTOGRAM_BINS), tf.int32
            )
            bins = tf.clip_by_value(bins, 0, HISTOGRAM_BINS - 1)
            counts.append(
                tf.math.unsorted_segment_sum(tf.ones_like(values), bins, HISTOGRAM_BINS)
            )
            ranges.append(m)
        return tf.stack(counts), tf.stack(ranges)


def _out_of_line(fn):
    """`fn` as a function call that TensorFlow keeps whole in the graph.

    A tf.cond in a compiled function is lowered to switches, and then every
    op of the branch not taken still passes through the executor as a dead
    op on every step. The measurement is a few ops per variable and about
    twenty per layer for its histogram, taken on one step in
    `every_n_steps`: kept as one call (TensorFlow's `_noinline` attribute),
    an unlogged step skips it as one op (BUILD.md's benchmark section has
    the cost before and after).
    """
    return tf.function(fn, experimental_attributes={"_noinline": True})


def _layer(path: str) -> str:
    """The layer part of a variable path: "block03_dense/kernel" -> "block03_dense"."""
    return path.rsplit("/", 1)[0] if "/" in path else path


class _Monitor:
    """What a watched optimizer or a mixin model carries: the buffer a
    GradientLogger gave it (None before any logger trained it; disabled
    between the logger's fit calls).

    A plain object, not a Trackable: Keras' saving and tf.train.Checkpoint
    never see it or its variables.
    """

    def __init__(self, kind: str):
        self.kind = kind  # "optimizer" or "train_step"
        self.buffer: _Buffer | None = None
        self.logger: GradientLogger | None = None  # the one in fit, if any


def _inner(optimizer):
    """The optimizer whose apply receives unscaled gradients."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.inner_optimizer
    return optimizer


def watch(optimizer):
    """Returns `optimizer`, hooked so a GradientLogger can log its gradients.

    The same instance (and class) comes back, so it saves and loads as the
    plain optimizer. Watching twice is harmless. Without a GradientLogger
    in fit's callbacks the hook measures nothing.

    Raises:
      ValueError: the Keras backend is not TensorFlow, or `optimizer` is not
        a Keras optimizer.
    """
    _require_tensorflow("monitor.watch")
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(
            f"monitor.watch takes a Keras optimizer. Received: {optimizer!r}"
        )
    target = _inner(optimizer)
    if isinstance(getattr(target, _ATTRIBUTE, None), _Monitor):
        return optimizer
    monitor = _Monitor("optimizer")
    original = target.apply

    def apply(self, grads, trainable_variables=None):
        buffer = monitor.buffer
        if buffer is not None and len(grads):
            variables = (
                self._trainable_variables
                if trainable_variables is None
                else trainable_variables
            )
            buffer.record(
                list(grads),
                list(variables),
                step=tf.cast(self.iterations, tf.int64) + 1,
                learning_rate=self.learning_rate,
                # The optimizer's own static scale, removed in apply after us
                # (a LossScaleOptimizer's dynamic one is gone already).
                scale=self.loss_scale_factor,
            )
        return original(grads, trainable_variables)

    target.apply = types.MethodType(apply, target)
    setattr(target, _ATTRIBUTE, monitor)
    return optimizer


def _loss_scale(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.dynamic_scale
    return optimizer.loss_scale_factor


class GradientMonitorMixin:
    """A train_step that logs what `watch` logs, for models that own theirs.

        class Net(monitor.GradientMonitorMixin, keras.Model): ...
        net.compile(optimizer=keras.optimizers.Adam(), loss=...)  # not watched
        net.fit(..., callbacks=[monitor.GradientLogger("runs/net")])

    `train_step` is Keras' own (TensorFlow backend) with one call added,
    `self.record_gradients(gradients, variables)`, which a custom train_step
    can make too: pass the gradients of the (possibly loss-scaled) loss as
    computed on this replica, before apply_gradients.
    """

    def record_gradients(self, gradients, variables):
        monitor = getattr(self, _ATTRIBUTE, None)
        if monitor is None or monitor.buffer is None:
            return
        monitor.buffer.record(
            list(gradients),
            list(variables),
            step=tf.cast(self.optimizer.iterations, tf.int64) + 1,
            learning_rate=self.optimizer.learning_rate,
            scale=_loss_scale(self.optimizer),
        )

    def train_step(self, data):
        # Keras' own helpers, as its TensorFlow train_step uses them.
        from keras.src.losses.loss import unscale_loss_for_distribution
        from keras.src.trainers.data_adapters.data_adapter_utils import (
            unpack_x_y_sample_weight,
        )

        x, y, sample_weight = unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            batch = tf.shape(next(t for t in tf.nest.flatten(x) if t is not None))[0]
            self._loss_tracker.update_state(
                unscale_loss_for_distribution(loss), sample_weight=batch
            )
            loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_weights
        gradients = tape.gradient(loss, variables)
        self.record_gradients(gradients, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _find_monitor(model) -> _Monitor:
    if isinstance(model, GradientMonitorMixin) and not isinstance(
        getattr(model, _ATTRIBUTE, None), _Monitor
    ):
        setattr(model, _ATTRIBUTE, _Monitor("train_step"))
    for owner in (model, _inner(model.optimizer) if model.optimizer else None):
        monitor = getattr(owner, _ATTRIBUTE, None)
        if isinstance(monitor, _Monitor):
            return monitor
    raise ValueError(
        "GradientLogger sees no gradients of this model: compile it with "
        "optimizer=monitor.watch(optimizer), or subclass "
        "monitor.GradientMonitorMixin."
    )


def _learning_rate(optimizer):
    """The initial learning rate (a float), or a schedule's class name."""
    rate = getattr(optimizer, "_learning_rate", None)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return type(rate).__name__
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _versions() -> dict:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def fit_record(model, every_n_steps: int, kind: str) -> schema.RunRecord:
    """config.json of a model.fit run: what decides what the run computes.

    The epochs and steps of one fit call are left out, so a second fit call
    on the same model continues the same run directory.
    """
    optimizer = model.optimizer
    inner = _inner(optimizer)
    try:
        axis = [list(e) for e in zoo.depth_axis(model, min_positions=1)]
    except ValueError as e:  # no kernel at all: norms are logged, no profile
        logging.warning("%s; no depth axis recorded", e)
        axis = None
    config = {
        "trainer": "model.fit",
        "monitor": kind,
        "model": model.name,
        "model_class": type(model).__name__,
        "optimizer": type(inner).__name__,
        "learning_rate": _learning_rate(inner),
        "loss_scale": (
            "dynamic"
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            else inner.loss_scale_factor
        ),
        "clipnorm": inner.clipnorm,
        "global_clipnorm": inner.global_clipnorm,
        "clipvalue": inner.clipvalue,
        "dtype_policy": model.dtype_policy.name,
        "jit_compile": bool(model.jit_compile),
        "steps_per_execution": int(model.steps_per_execution),
        "log_every_steps": every_n_steps,
    }
    return schema.RunRecord(
        config=config,
        num_replicas=model.distribute_strategy.num_replicas_in_sync,
        task_info={"main_metric": "loss", "higher_is_better": False, "baselines": {}},
        num_parameters=int(model.count_params()),
        versions=_versions(),
        depth_axis=axis,
    )


class GradientLogger(keras.callbacks.Callback):
    """Writes a watched model's gradient norms to a gradzoo run directory.

    Every `every_n_steps` optimizer steps (and step 1): metrics.jsonl rows
    with `grad_norms` per trainable variable and `grad_global_norm` (after
    loss-scale removal and the all-reduce, before clipping), `loss` from the
    fit logs, the learning rate; TensorBoard scalars per variable and a
    histogram per layer. A step is the optimizer's update count, so a second
    fit call continues the numbering (and the run directory).

    `loss` is the mean over the steps between the callback's views: with
    steps_per_execution > 1, Keras reports once per execution, and the rows
    drained at one view share that window's loss (their norms are each their
    own step's).

    Args:
      output_dir: the run directory (refused if another live run owns it, or
        if it holds a run with a different config, unless `overwrite`).
      every_n_steps: the logging cadence.
      overwrite: replace a different run's files in output_dir.
    """

    def __init__(self, output_dir: str, every_n_steps: int = 100, *, overwrite=False):
        super().__init__()
        _require_tensorflow("monitor.GradientLogger")
        if int(every_n_steps) < 1:
            raise ValueError(
                f"every_n_steps must be at least 1. Received: {every_n_steps}"
            )
        self.output_dir = output_dir
        self.every_n_steps = int(every_n_steps)
        self.overwrite = overwrite
        self.run_dir = self._model_id = None
        self.tb = None
        self._tb_buffer = self._write_tb = None

    # -- begin / end ---------------------------------------------------------

    def on_train_begin(self, logs=None):
        _require_tensorflow("monitor.GradientLogger")
        model = self.model
        self.monitor = _find_monitor(model)
        record = fit_record(model, self.every_n_steps, self.monitor.kind)
        run_dir = writer.claim(self.output_dir)
        # `overwrite` replaces another run, never this logger's own from an
        # earlier fit call, which a later one continues.
        run_dir.open(record, overwrite=self.overwrite and self.run_dir is None)
        # This logger's own run, continued by a later fit of the same model.
        continued = self.run_dir is not None and self._model_id == id(model)
        self.run_dir, self._model_id = run_dir, id(model)
        self.last_step = int(self._optimizer_step())
        if not continued:  # a new model starts over: drop the later rows
            run_dir.truncate_after(self.last_step)
        run_dir.write_status("running", self.last_step, "model.fit started")
        if self.tb is None:  # one writer (and one traced _write_tb) per logger
            self.tb = tf.summary.create_file_writer(run_dir.file(schema.TB_DIR))
        # One execution logs at most ceil(spe / n) + 1 steps (step 1 too);
        # the buffer holds one more, so it never wraps between two drains.
        spe = int(model.steps_per_execution)
        capacity = math.ceil(spe / self.every_n_steps) + 2
        buffer = self.monitor.buffer
        if not (
            buffer is not None
            and buffer.paths == [v.path for v in model.trainable_variables]
            and buffer.every_n_steps == self.every_n_steps
            and buffer.capacity >= capacity
        ):
            buffer = self.monitor.buffer = _Buffer(
                model.trainable_variables,
                model.distribute_strategy,
                capacity,
                self.every_n_steps,
            )
            # The train function was traced (or will be) with the hook's
            # old buffer or none: trace it again, with this one. A later fit
            # with a like logger reuses both, so it does not re-trace.
            model.make_train_function(force=True)
        _guard_train_function(model, self.monitor)
        self.monitor.logger = self
        buffer.enabled.assign(True)
        self.seen_count = int(buffer.count.numpy())
        self.row_time = time.time()
        self.row_step = self.last_step
        # The host's count of steps run, to drain only when a logged step
        # may have happened (a drain waits for the device). A step that a
        # LossScaleOptimizer skips is no step, so the device's count trails
        # this one and its rows are drained at a later view at the latest.
        self.host_step = self.drained_step = self.last_step

    def on_epoch_begin(self, epoch, logs=None):
        # Keras' logged loss is the mean since the epoch began.
        self.view_batches, self.view_total, self.epoch_batches = 0, 0.0, 0

    def on_train_batch_end(self, batch, logs=None):
        with self._failing_the_run():
            self._batch_end(batch, logs)

    def _batch_end(self, batch, logs):
        self.host_step += batch + 1 - self.epoch_batches
        self.epoch_batches = batch + 1
        n = self.every_n_steps
        if self.drained_step < 1 <= self.host_step or (
            self.host_step // n > self.drained_step // n
        ):
            self._drain(batch + 1, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        with self._failing_the_run():
            self._epoch_end(logs or {})

    def _epoch_end(self, logs):
        self._drain(self.epoch_batches, logs)
        val = {k[4:]: float(v) for k, v in logs.items() if k.startswith("val_")}
        step = int(self._optimizer_step())
        if val:
            self.run_dir.append(
                schema.EVAL_FILE, schema.EvalRow(step, time.time(), val)
            )
            with self.tb.as_default(step=step):
                for k, v in val.items():
                    tf.summary.scalar(f"eval/{k}", v)
        self.run_dir.write_status("running", step, f"at step {step}")

    def on_train_end(self, logs=None):
        with self._failing_the_run():
            step = int(self._optimizer_step())
            self._drain(self.epoch_batches, {})  # stop_training mid-epoch
            self.run_dir.write_status("completed", step, f"model.fit to step {step}")
            self.tb.flush()
        self._end()

    def _end(self) -> None:
        self.run_dir.release()
        self.monitor.buffer.enabled.assign(False)
        self.monitor.logger = None

    def failed(self, error: BaseException) -> None:
        """Records in status.json that model.fit stopped on `error`.

        Called when the train function raises (see _guard_train_function)
        or one of this logger's own hooks does; fit then skips
        on_train_end, which would have ended the run. Never raises: the
        caller's error matters more.
        """
        if self.monitor.logger is not self:
            return
        try:
            step = self.host_step  # the steps fit finished
            what = (
                "interrupted"
                if isinstance(error, KeyboardInterrupt)
                else type(error).__name__
            )
            lines = [line.strip() for line in str(error).splitlines()]
            lines = [line for line in lines if line and not line.startswith("[[")]
            if isinstance(error, tf.errors.OpError):  # the cause comes last
                lines = lines[-1:]
            self.run_dir.write_status(
                "failed",
                step,
                f"model.fit stopped after step {step}: {what}"
                + (f": {lines[0]}" if lines else ""),
            )
        except Exception as e:  # noqa: BLE001 - e.g. a full disk
            logging.error("%s: could not record the failure (%s)", self.output_dir, e)
        finally:
            self._end()

    @contextlib.contextmanager
    def _failing_the_run(self):
        try:
            yield
        except BaseException as e:
            self.failed(e)
            raise

    # -- draining ------------------------------------------------------------

    def _optimizer_step(self):
        return _inner(self.model.optimizer).iterations.numpy()

    def _drain(self, batches: int, logs: dict) -> None:
        self.drained_step = self.host_step
        buffer = self.monitor.buffer
        count = int(buffer.count.numpy())
        if count == self.seen_count:
            return
        if count - self.seen_count > buffer.capacity:
            raise RuntimeError(  # a bug: the capacity is meant to prevent it
                f"gradient buffer overrun: {count - self.seen_count} logged "
                f"steps since the last drain, capacity {buffer.capacity}"
            )
        self.seen_count = count
        steps = buffer.steps.numpy()[: buffer.capacity]
        slots = sorted((int(s), i) for i, s in enumerate(steps) if s > self.last_step)
        if not slots:
            return
        norms, scalars = buffer.norms.numpy(), buffer.scalars.numpy()
        histograms, ranges = buffer.histograms.numpy(), buffer.ranges.numpy()
        loss = None
        if "loss" in logs and batches > self.view_batches:
            total = float(logs["loss"]) * batches
            loss = (total - self.view_total) / (batches - self.view_batches)
            self.view_batches, self.view_total = batches, total
        now = time.time()
        last = slots[-1][0]
        speed = (last - self.row_step) / max(now - self.row_time, 1e-9)
        for step, i in slots:
            row = schema.MetricsRow(
                step=step,
                wall_time=now,
                window_steps=step - self.last_step,
                steps_per_second=speed,
                learning_rate=float(scalars[i, 1]),
                loss=loss,
                penalty=None,
                grad_global_norm=float(scalars[i, 0]),
                grad_norms={p: float(v) for p, v in zip(buffer.paths, norms[i])},
            )
            self.run_dir.append(schema.METRICS_FILE, row)
            self._tensorboard(row, histograms[i], ranges[i])
            self.last_step = step
        self.row_time, self.row_step = now, last

    def _tensorboard(self, row, histograms, ranges) -> None:
        buffer = self.monitor.buffer
        if self._tb_buffer is not buffer:
            self._write_tb = _tensorboard_writer(self.tb, buffer)
            self._tb_buffer = buffer
        self._write_tb(
            tf.constant(row.step, tf.int64),
            tf.constant(row.grad_global_norm, tf.float32),
            tf.constant(math.nan if row.loss is None else row.loss, tf.float32),
            tf.constant([row.grad_norms[p] for p in buffer.paths], tf.float32),
            tf.constant(histograms, tf.float32),
            tf.constant(ranges, tf.float32),
        )


def _guard_train_function(model, monitor: _Monitor) -> None:
    """Wraps model.train_function so that an error in a step (a bad batch,
    out of memory, Ctrl-C) marks the logger's run "failed": Keras' fit has no
    callback for an exception, and status.json would say "running" forever.
    The end of the data (StopIteration, OutOfRangeError) is fit's normal end
    of an epoch. The wrapper stays for later fit calls (no re-trace) and
    does nothing without a logger."""
    inner = model.train_function
    if getattr(inner, _ATTRIBUTE, None) is monitor:
        return

    def train_function(iterator):
        try:
            return inner(iterator)
        except (StopIteration, tf.errors.OutOfRangeError):
            raise
        except BaseException as e:
            if monitor.logger is not None:
                monitor.logger.failed(e)
            raise

    setattr(train_function, _ATTRIBUTE, monitor)
    model.train_function = train_function


def _tensorboard_writer(tb, buffer):
    """One compiled function writing a row's summaries: a scalar per
    variable, the global norm, a histogram per layer (already binned on the
    device over [-m, m]). Eager, the ~150 summaries of a 50-layer MLP's row
    cost more host time than the steps between two rows."""
    from tensorboard.plugins.histogram import metadata

    layers = [
        (name, metadata.create_summary_metadata(name, "")) for name in buffer.layers
    ]

    @tf.function
    def write(step, global_norm, loss, norms, histograms, ranges):
        with tb.as_default(step=step):
            tf.summary.scalar("gradients/global_norm", global_norm)
            if not tf.math.is_nan(loss):  # NaN: no loss for this row
                tf.summary.scalar("loss", loss)
            for i, path in enumerate(buffer.paths):
                tf.summary.scalar(f"gradient_norm/{path}", norms[i])
            for j, (name, meta) in enumerate(layers):
                m = tf.where(ranges[j] > 0, ranges[j], 1.0)
                edges = tf.linspace(-m, m, HISTOGRAM_BINS + 1)
                buckets = tf.stack([edges[:-1], edges[1:], histograms[j]], axis=1)
                tf.summary.write(
                    f"gradients/{name}", tf.cast(buckets, tf.float64), metadata=meta
                )

    return write

"""The training loop: one compiled GradientTape step, and the Python around it.

Flag-free and importable. The compiled step computes, from one tape, the loss,
the gradient, its global norm and (on logging steps) every variable's
gradient norm, all before clipping; it then clips and applies the update, or
skips it if anything is non-finite. The Python loop around it logs, evaluates,
checkpoints and stops; it touches the host only on those steps.

`train` takes what to minimize (an Objective) apart from the data and from
the loop's settings (a LoopConfig), so a second training phase (a layer
trained as an autoencoder, then the whole net fine-tuned) reuses the same
compiled step, checkpointing and run-directory writer:

    >>> result = loop.train(model, optimizer, loop.Objective.of_task(task), task,
    ...                     loop.LoopConfig(num_steps=500, batch_size=128),
    ...                     "runs/x")

Tested by tests/trainers/test_loop.py.
"""

import contextlib
import dataclasses
import functools
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
import tensorflow as tf
from absl import logging

from analysis import schema
from analysis.gradients import global_norm, half_squares, l2_norms
from trainers import writer


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a phase minimizes and how it is scored.

    `loss(y, outputs)` and `metrics(y, outputs)` return per-example values
    (shape [batch]); the loop averages them over the batch and the replicas.
    `main_metric` (a key of metrics(), or "loss") drives early stopping.
    A Task has all of these: `Objective.of_task(task)`.
    """

    loss: Callable
    metrics: Callable
    main_metric: str
    higher_is_better: bool
    baselines: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def of_task(cls, task) -> "Objective":
        return cls(
            task.loss,
            task.metrics,
            task.main_metric,
            task.higher_is_better,
            dict(task.baselines),
        )


class Data(Protocol):
    """What the loop reads: a Task, or any object with these two pipelines."""

    def train_dataset(self, batch_size: int, *, seed: int, start_step: int): ...

    def eval_dataset(self, batch_size: int): ...


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """The loop's sizes, cadences and clipping (a RunConfig's loop part)."""

    num_steps: int
    batch_size: int
    grad_accum_steps: int = 1
    clipping: str = "none"
    clip_threshold: float = 0.0
    seed: int = 0
    log_every_steps: int = 100
    eval_every_steps: int = 500
    checkpoint_every_steps: int = 1000
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.0
    jit_compile: bool = False


@dataclasses.dataclass(frozen=True)
class TrainResult:
    state: str  # "completed" or "diverged"
    step: int
    message: str


def clip_gradients(grads, clipping: str, threshold: float, norm=None):
    """Clips like Keras' clipvalue / clipnorm / global_clipnorm, with TF ops.

    "norm" clips each variable's gradient to `threshold` separately (so it can
    change the direction of the whole gradient); "global_norm" rescales all
    of them together (Pascanu et al. 2013), keeping the direction; `norm`
    is their global norm when already known.
    """
    if clipping == "none":
        return list(grads)
    if clipping == "value":
        return [tf.clip_by_value(g, -threshold, threshold) for g in grads]
    if clipping == "norm":
        return [tf.clip_by_norm(g, threshold) for g in grads]
    if clipping == "global_norm":
        return tf.clip_by_global_norm(grads, threshold, use_norm=norm)[0]
    raise ValueError(f"Unknown clipping '{clipping}'.")


class TrainStep:
    """The compiled update step for one model, task, optimizer and strategy.

    Keras' own clipnorm / global_clipnorm would clip each replica's partial
    gradient before its all-reduce (in the optimizer's `apply`), which is
    wrong under a multi-replica strategy. So the replica
    function all-reduces the gradient itself, measures it and clips it; the
    finiteness check picks, in cross-replica context, between applying it
    and recording a divergence (the pattern of Keras' LossScaleOptimizer).

    Call `step(iterator, with_norms)`; the two variants are traced once each
    (with one replica they share the traced forward, backward and update;
    a short run uses only the logging one, see `SHORT_RUN_STEPS`).
    Logging steps (`with_norms`) also measure the update the optimizer
    applied, per variable, from the weights before and after it.
    """

    # Off only to price the update norms (trainers/benchmark.py); the loop's
    # metrics rows need them.
    measure_updates = True

    def __init__(
        self,
        model,
        objective,
        optimizer,
        *,
        strategy,
        batch_size,
        grad_accum_steps=1,
        clipping="none",
        clip_threshold=0.0,
        jit_compile=False,
    ):
        self.model = model
        self.objective = objective  # an Objective, or a Task
        self.optimizer = optimizer
        self.strategy = strategy
        self.accum = grad_accum_steps
        self.global_batch = batch_size * grad_accum_steps
        self.clipping = clipping
        self.clip_threshold = clip_threshold
        self.variables = model.trainable_variables
        self.paths = [v.path for v in self.variables]
        # Squared sums in float64 (analysis.gradients.half_squares), except
        # on a TPU, which has no float64.
        self.wide = not isinstance(strategy, tf.distribute.TPUStrategy)
        with strategy.scope():
            optimizer.build(self.variables)
        # Divergence is recorded on the device, so the loop only has to look
        # at it on logging steps: the step where it happened and which
        # variables' gradients were non-finite then.
        self.diverged_at = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.loss_was_finite = tf.Variable(True, trainable=False)
        self.nonfinite = tf.Variable(
            tf.zeros([len(self.variables)], tf.bool), trainable=False
        )

        # The step's control flow is written with tf.cond / tf.while_loop, so
        # nothing is converted by AutoGraph (Keras' own code needs none):
        # that conversion was a few seconds of every run's start-up.
        def compile(fn, **kwargs):
            return tf.function(fn, autograph=False, **kwargs)

        # XLA cannot compile the iterator's GetNext, so jit_compile applies to
        # the replica computation (forward, backward, norms, clipping) only.
        # From wide sums the per-variable norms are taken outside it, so both
        # variants share one replica function; with one replica they also
        # share one traced update: a deep model (C14's 101 blocks: ~60 s a
        # trace) pays for tracing forward, backward and optimizer once, not
        # twice. Nested functions are inlined when the step runs; several
        # replicas cannot merge_call from one, so they trace each variant.
        one = strategy.num_replicas_in_sync == 1
        variants = (False,) if self.wide else (False, True)
        replica = {
            with_norms: functools.partial(self._replica_step, with_norms=with_norms)
            for with_norms in variants
        }
        if jit_compile:
            replica = {k: compile(f, jit_compile=True) for k, f in replica.items()}
        elif one:
            replica = {k: compile(f) for k, f in replica.items()}
        self._replica = {True: replica[variants[-1]], False: replica[False]}
        self._apply_update = compile(self._apply) if one else self._apply
        self._compiled = {
            with_norms: compile(functools.partial(self._step, with_norms=with_norms))
            for with_norms in (False, True)
        }

    def __call__(self, iterator, with_norms: bool) -> dict:
        return self._compiled[with_norms](iterator)

    def _micro_step(self, x, y):
        replicas = self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            # Sum over this micro-batch, divided by the examples of the whole
            # step on all replicas: summing over micro-batches and replicas
            # then gives the mean over the step.
            data_loss = (
                tf.reduce_sum(self.objective.loss(y, logits)) / self.global_batch
            )
            penalty = tf.constant(0.0)
            if self.model.losses:
                penalty = tf.add_n(self.model.losses) / (replicas * self.accum)
            objective = data_loss + penalty
        grads = tape.gradient(objective, self.variables)
        sums = {
            k: tf.reduce_sum(v) / self.global_batch
            for k, v in self.objective.metrics(y, logits).items()
        }
        return grads, {"loss": data_loss, "penalty": penalty, **sums}

    def _replica_step(self, x, y, with_norms):
        if self.accum == 1:
            grads, stats = self._micro_step(x, y)
        else:
            xs = tf.reshape(x, [self.accum, -1, *x.shape[1:]])
            ys = tf.reshape(y, [self.accum, -1, *y.shape[1:]])
            grads, stats = self._micro_step(xs[0], ys[0])

            def more(i, grads, stats):
                more_grads, more_stats = self._micro_step(xs[i], ys[i])
                grads = [g + h for g, h in zip(grads, more_grads)]
                return i + 1, grads, {k: stats[k] + more_stats[k] for k in stats}

            _, grads, stats = tf.while_loop(
                lambda i, *_: i < self.accum, more, (tf.constant(1), grads, stats)
            )
        if self.strategy.num_replicas_in_sync > 1:  # one replica: nothing to sum
            ctx = tf.distribute.get_replica_context()
            grads, stats = ctx.all_reduce(tf.distribute.ReduceOp.SUM, (grads, stats))
        # Every step needs the global norm (clipping, the finiteness check);
        # logging steps also take every variable's norm from the same squared
        # sums, so the global norm, and with it the update, is bitwise the same
        # whatever the logging cadence. Both are safe from float32 under- and
        # overflow (a vanishing or exploding gradient's norm is the point):
        # the sums are float64, so no rescue pass sits in the step.
        halves = half_squares(grads, wide=self.wide)
        stats["grad_global_norm"] = global_norm(grads, halves)
        if self.wide:
            stats["halves"] = halves  # the norms, when asked for, come from these
        elif with_norms:
            stats["grad_norms"] = l2_norms(grads, halves)
        # Which variables went non-finite, looked at before clipping (which
        # can turn an inf into the threshold). A float64 sum of squares of
        # float32 entries is non-finite exactly when an entry is.
        if self.wide:
            stats["nonfinite"] = ~tf.math.is_finite(halves)
        else:
            stats["nonfinite"] = tf.cond(
                tf.math.is_finite(stats["grad_global_norm"]),
                lambda: tf.zeros([len(grads)], tf.bool),
                lambda: tf.stack([~tf.reduce_all(tf.math.is_finite(g)) for g in grads]),
            )
        grads = clip_gradients(
            grads, self.clipping, self.clip_threshold, stats["grad_global_norm"]
        )
        return grads, stats

    def _apply(self, grads):
        # Keras sums what every replica passes to apply_gradients. The
        # gradient is already summed and clipped, so the first replica passes
        # it and the others pass zeros: exact, since x + 0 == x.
        if self.strategy.num_replicas_in_sync > 1:
            ctx = tf.distribute.get_replica_context()
            first = tf.equal(ctx.replica_id_in_sync_group, 0)
            grads = [tf.where(first, g, tf.zeros_like(g)) for g in grads]
        self.optimizer.apply_gradients(zip(grads, self.variables))

    def _step(self, iterator, with_norms):
        with self.strategy.scope():
            x, y = next(iterator)
            grads, stats = self.strategy.run(self._replica[with_norms], args=(x, y))
            # After the all-reduce every replica holds the same values.
            first = self.strategy.experimental_local_results
            stats = tf.nest.map_structure(lambda t: first(t)[0], stats)
            nonfinite = stats.pop("nonfinite")
            halves = stats.pop("halves", None)
            if with_norms and halves is not None:
                stats["grad_norms"] = l2_norms(None, halves)
            # The rate this update uses (the schedule moves on after it).
            stats["learning_rate"] = tf.cast(self.optimizer.learning_rate, tf.float32)
            loss_finite = tf.math.is_finite(stats["loss"] + stats["penalty"])
            finite = loss_finite & tf.math.is_finite(stats["grad_global_norm"])
            # Logging steps only: the weights before the update, to measure it.
            measure = with_norms and self.measure_updates
            before = [tf.identity(v) for v in self.variables] if measure else None

            def update():
                self.strategy.run(self._apply_update, args=(grads,))

            def record():
                # Skip the update; train() then rolls the model back to the
                # newest checkpoint known good.
                step = tf.cast(self.optimizer.iterations, tf.int64) + 1
                self.diverged_at.assign(step)
                self.loss_was_finite.assign(loss_finite)
                self.nonfinite.assign(nonfinite)

            # Only the first non-finite step is recorded; none updates.
            healthy = self.diverged_at < 0

            def skip():
                tf.cond(healthy, record, lambda: None)

            tf.cond(finite & healthy, update, skip)
            if measure:
                stats.update(self._update_norms(before))
            return stats

    def _update_norms(self, before) -> dict:
        """Every variable's applied update ||w_new - w_old|| (0 where the
        update was skipped) and weight norm ||w_old||, float32 as stored."""
        deltas = [tf.identity(v) - w for v, w in zip(self.variables, before)]
        return {"update_norms": l2_norms(deltas), "weight_norms": l2_norms(before)}

    def divergence(self) -> dict | None:
        """None, or where and how the run first went non-finite."""
        step = int(self.diverged_at.numpy())
        if step < 0:
            return None
        bad = [p for p, b in zip(self.paths, self.nonfinite.numpy()) if b]
        return {
            "step": step,
            "loss_finite": bool(self.loss_was_finite.numpy()),
            "variables": bad,
            "weights": [],
        }


def make_evaluator(model, objective, data, batch_size: int = 1024):
    """A function returning mean loss and metrics over the eval split.

    Runs on the host strategy's default device, not distributed: eval sets
    here are small, and sums over a fixed order are exactly reproducible.
    """

    @tf.function(reduce_retracing=True)
    def sums(x, y):
        logits = model(x, training=False)
        out = {"loss": tf.reduce_sum(objective.loss(y, logits))}
        for k, v in objective.metrics(y, logits).items():
            out[k] = tf.reduce_sum(v)
        return out

    def run() -> dict:
        total, count = {}, 0
        for x, y in data.eval_dataset(batch_size):
            for k, v in sums(x, y).items():
                total[k] = total.get(k, 0.0) + float(v)
            count += int(x.shape[0])
        return {k: v / count for k, v in total.items()}

    return run


def evaluate(model, task, batch_size: int = 1024) -> dict:
    """Mean loss and metrics of `model` over the whole eval split of `task`."""
    return make_evaluator(model, task, task, batch_size)()


@dataclasses.dataclass
class EarlyStopping:
    """Stops after `patience` evaluations without an improvement > min_delta."""

    metric: str
    higher_is_better: bool
    patience: int
    min_delta: float = 0.0
    best: float | None = None
    best_step: int = 0
    stale: int = 0

    def update(self, step: int, value: float) -> bool:
        """Records one evaluation; True when training should stop."""
        if self.best is None:
            gain = math.inf
        else:
            gain = value - self.best if self.higher_is_better else self.best - value
        if gain > self.min_delta:
            self.best, self.best_step, self.stale = value, step, 0
        else:
            self.stale += 1
        return self.patience > 0 and self.stale >= self.patience


def _describe_divergence(d: dict, kept_step: int) -> str:
    if d["weights"]:
        what = f"weights after step {d['step']} ({d['weights'][0]}"
        what += f" and {len(d['weights']) - 1} more)" if len(d["weights"]) > 1 else ")"
    elif not d["loss_finite"]:
        what = f"loss at step {d['step']}"
    elif d["variables"]:
        what = f"gradient of {d['variables'][0]}"
        if len(d["variables"]) > 1:
            what += f" (and {len(d['variables']) - 1} more variables)"
        what += f" at step {d['step']}"
    else:
        what = f"gradient norm at step {d['step']}"
    return (
        f"non-finite {what}; weights restored from the checkpoint at step {kept_step}"
    )


def _format_eval(ev: dict, baselines) -> str:
    parts = []
    for k, v in ev.items():
        base = baselines.get(k)
        parts.append(
            f"{k} {v:.4g}" + (f" (baseline {base:.4g})" if base is not None else "")
        )
    return ", ".join(parts)


# A hook called at step 0 and at every logging step with (step, run_dir, tb):
# statistics computed outside the compiled step, e.g. the gradient through
# time of a fixed probe batch (trainers/runner.py).
LogHook = Callable[[int, "writer.RunDir", object], None]


@dataclasses.dataclass
class _Parts:
    """What the three stages of `train` share: built once, used by each."""

    model: object
    optimizer: object
    objective: Objective
    data: Data
    config: LoopConfig
    run_dir: writer.RunDir
    strategy: object
    step_fn: TrainStep
    ckpt: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    tb: object
    hooks: Sequence[LogHook]
    stopper: EarlyStopping
    evaluate: Callable[[], dict]
    step: int = 0  # the step reached (for messages)
    first_step: int = 1  # the first step this process runs
    # {with_norms: (step, seconds)} of each step variant's first call, which
    # traces it: kept out of the speed.
    traced: dict = dataclasses.field(default_factory=dict)

    def log_eval(self, step: int) -> dict:
        ev = self.evaluate()
        self.run_dir.append(schema.EVAL_FILE, schema.EvalRow(step, time.time(), ev))
        with self.tb.as_default(step=step):
            for k, v in ev.items():
                tf.summary.scalar(f"eval/{k}", v)
        logging.info(
            "eval step %d: %s", step, _format_eval(ev, self.objective.baselines)
        )
        return ev

    def checkpoint(self, step: int, message: str) -> None:
        self.ckpt.step.assign(step)
        self.manager.save(checkpoint_number=step)
        self.run_dir.write_status("running", step, message)

    def saved_step(self) -> int:
        """The step of the newest weights on disk."""
        return int(self.ckpt.step.numpy())


@dataclasses.dataclass
class _Outcome:
    """Where the step loop stopped, and why."""

    step: int
    state: str = "completed"  # or "diverged"
    message: str = ""
    nonfinite: dict | None = None
    early: bool = False
    last_eval: dict | None = None


def train(
    model,
    optimizer,
    objective: Objective,
    data: Data,
    config: LoopConfig,
    run_dir: "writer.RunDir | str",
    *,
    strategy=None,
    hooks: Sequence[LogHook] = (),
) -> TrainResult:
    """Trains `model` on `data` for `objective`, writing the run directory.

    Resumes from the latest checkpoint in `run_dir/ckpt` when there is one:
    the data order is a pure function of (seed, step), so the checkpoint
    (model, optimizer, step) is all a bitwise-identical resume needs.

    Args:
      model, optimizer: the Keras model and optimizer (built under
        `strategy`'s scope by the caller).
      objective: what to minimize and how to score it.
      data: the training and eval pipelines (a Task, or any `Data`).
      config: sizes, cadences and clipping.
      run_dir: a writer.RunDir the caller owns (trainers/runner.py), or a
        plain directory path, which the loop then owns while it trains.
      strategy: a tf.distribute strategy (default: the current one).
      hooks: functions(step, run_dir, tb) called at step 0 and every logging
        step, outside the compiled step (their time is not in steps/s).

    Returns:
      A TrainResult: "completed" (including early stops) or "diverged" (a
      non-finite loss, gradient or weight; the model is restored from the
      newest checkpoint known good, see `_roll_back`, and saved).

    Raises:
      RunDirError: the checkpoint cannot be restored, or a plain path is
        owned by a live run.
    """
    owned = isinstance(run_dir, str)
    if owned:
        os.makedirs(run_dir, exist_ok=True)
        run_dir = writer.own(run_dir)
    parts = None
    try:
        parts = _build(model, optimizer, objective, data, config, run_dir, strategy)
        finished = _finished(run_dir, config.num_steps)
        if finished is not None:
            _check_workers_agree(parts.strategy, -1 - finished.step)
            return _report_finished(parts, finished)
        parts.hooks = hooks
        start, last_eval = _resume(parts)
        outcome = _step_loop(parts, start, last_eval)
        return _finish(parts, outcome)
    except schema.RunDirError:
        raise  # refused before anything was touched: status.json stays
    except (KeyboardInterrupt, Exception) as e:
        # Ctrl-C, SIGTERM, a full disk, a bug: the run is "failed" and
        # resumable from the weights on disk, whatever stage it was in.
        what = "interrupted" if isinstance(e, KeyboardInterrupt) else _describe(e)
        run_dir.mark_failed(what, parts.step if parts else None)
        if parts is not None and parts.tb is not None:
            with contextlib.suppress(Exception):  # a full disk: keep `e`
                parts.tb.flush()
        raise
    finally:
        if owned:
            run_dir.release()


def _describe(e: BaseException) -> str:
    """One line: the exception's type and the first line of its message."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _report_finished(p: "_Parts", finished: TrainResult) -> TrainResult:
    """A run that already ended: say so, and restore a deleted model.keras."""
    path = p.run_dir.file(schema.MODEL_FILE)
    if not os.path.exists(path) and p.manager.latest_checkpoint:
        # The weights the status describes are those of its newest
        # checkpoint (a diverged run's was rolled back to before saving).
        wanted = [c for c in p.manager.checkpoints if c.endswith(f"-{finished.step}")]
        p.ckpt.restore(wanted[-1] if wanted else p.manager.latest_checkpoint)
        _save_model(p.model, path)
        logging.warning(
            "%s: model.keras was missing; restored it from the checkpoint at step %d",
            p.run_dir.path,
            int(p.ckpt.step.numpy()),
        )
    logging.info("%s: already %s", p.run_dir.path, finished.message)
    return finished


def _build(model, optimizer, objective, data, config, run_dir, strategy) -> _Parts:
    strategy = strategy or tf.distribute.get_strategy()
    step_fn = TrainStep(
        model,
        objective,
        optimizer,
        strategy=strategy,
        batch_size=config.batch_size,
        grad_accum_steps=config.grad_accum_steps,
        clipping=config.clipping,
        clip_threshold=config.clip_threshold,
        jit_compile=config.jit_compile,
    )
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var)
    _repair_checkpoint_state(run_dir.file(schema.CKPT_DIR))
    manager = tf.train.CheckpointManager(
        ckpt, run_dir.file(schema.CKPT_DIR), max_to_keep=2
    )
    stopper = EarlyStopping(
        objective.main_metric,
        objective.higher_is_better,
        config.early_stopping_patience,
        config.early_stopping_min_delta,
    )
    return _Parts(
        model=model,
        optimizer=optimizer,
        objective=objective,
        data=data,
        config=config,
        run_dir=run_dir,
        strategy=strategy,
        step_fn=step_fn,
        ckpt=ckpt,
        manager=manager,
        tb=None,
        hooks=(),
        stopper=stopper,
        evaluate=make_evaluator(model, objective, data),
    )


def _resume(p: _Parts) -> tuple[int, dict | None]:
    """Restores the newest checkpoint and the history up to it.

    Returns (the step to continue from, the last evaluation or None). A new
    run evaluates at step 0, runs the hooks and saves the initial state.
    """
    start = _restore(p.ckpt, p.manager)
    p.step = start
    _check_workers_agree(p.strategy, start)
    # Rows written after the checkpoint are replayed, so drop them.
    p.run_dir.truncate_after(start if start > 0 else -1)
    last_eval = None
    for d in schema.read_jsonl(p.run_dir.file(schema.EVAL_FILE)):
        row = schema.EvalRow.from_json(d)
        value = row.metrics.get(p.objective.main_metric)
        if value is not None:  # null: a non-finite evaluation
            p.stopper.update(row.step, value)
        last_eval = row.metrics
    if start > 0:
        stamp = os.path.getmtime(p.manager.latest_checkpoint + ".index")
        logging.info(
            "%s: resuming from step %d (checkpoint of %s)",
            p.run_dir.path,
            start,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)),
        )
        _truncate_tensorboard(p.run_dir.file(schema.TB_DIR), start)
    p.tb = tf.summary.create_file_writer(p.run_dir.file(schema.TB_DIR))
    p.run_dir.write_status("running", start, f"started at step {start}")
    if start == 0:
        last_eval = p.log_eval(0)  # evaluate before the first step
        p.stopper.update(0, last_eval[p.objective.main_metric])
        for hook in p.hooks:
            hook(0, p.run_dir, p.tb)  # the profile at init
        p.checkpoint(0, "initial state")  # a divergence at step 2 rolls back to it
    return start, last_eval


# Runs (or what is left of one) of at most this many steps trace only the
# logging variant of the step. Tracing the other cost 0.7 s (a 20x64 MLP) to
# ~30 s (C14's 101-block Fixup net) of a run's start, while stepping with the
# logging variant cost 0-2% per step on the benchmark's models
# (trainers/benchmark.py, (b) against (a); BUILD.md, "Benchmarks") and ~6%
# on C14's 505 variables: at 2000 steps, the one trace is the cheaper.
SHORT_RUN_STEPS = 2000


def _step_loop(p: _Parts, start: int, last_eval: dict | None) -> _Outcome:
    """Steps from `start` to the end, an early stop or a divergence."""
    c = p.config
    dataset = p.data.train_dataset(
        c.batch_size * c.grad_accum_steps, seed=c.seed, start_step=start
    )
    iterator = iter(_distribute(p.strategy, dataset))
    window, window_start, host_seconds = [], time.time(), 0.0
    out = _Outcome(step=start, last_eval=last_eval)
    p.first_step = start + 1
    # A short run steps with the logging variant throughout (what only a
    # logging step reports is then computed and not logged): one traced step
    # function, not two, and the same updates, bitwise.
    short = c.num_steps - start <= SHORT_RUN_STEPS
    for step in range(start + 1, c.num_steps + 1):
        out.step = p.step = step
        log_now = step == 1 or step % c.log_every_steps == 0 or step == c.num_steps
        eval_now = step % c.eval_every_steps == 0 or step == c.num_steps
        ckpt_now = step % c.checkpoint_every_steps == 0 or step == c.num_steps
        variant = log_now or short
        if variant not in p.traced:  # the variant is traced here: timed apart
            traced = time.time()
            window.append(p.step_fn(iterator, with_norms=variant))
            p.traced[variant] = (step, time.time() - traced)
        else:
            window.append(p.step_fn(iterator, with_norms=variant))
        if not (log_now or eval_now or ckpt_now):
            continue
        out.nonfinite = p.step_fn.divergence()
        if out.nonfinite is None and ckpt_now:  # never checkpoint bad weights
            out.nonfinite = _nonfinite_weights(p.model, step)
        if out.nonfinite is not None:
            out.state = "diverged"
            return out
        host_start = time.time()
        if log_now:
            seconds = host_start - window_start - host_seconds
            _log_metrics(p, step, window, seconds)
            for hook in p.hooks:
                hook(step, p.run_dir, p.tb)
            # The heartbeat: status.json says the run is alive.
            p.run_dir.write_status("running", p.saved_step(), f"at step {step}")
            window, window_start, host_seconds = [], time.time(), 0.0
            host_start = window_start
        if eval_now:
            out.last_eval = p.log_eval(step)
            main = p.objective.main_metric
            if p.stopper.update(step, out.last_eval[main]):
                out.early = True
                out.message = (
                    f"early stop at step {step}: best {main} "
                    f"{p.stopper.best:.4g} at step {p.stopper.best_step}"
                )
                p.checkpoint(step, out.message)
                return out
        if ckpt_now:
            p.checkpoint(step, f"checkpoint at step {step}")
        host_seconds += time.time() - host_start
    return out


def _finish(p: _Parts, out: _Outcome) -> TrainResult:
    """Rolls a diverged run back, saves model.keras, writes the final status."""
    if out.state == "diverged":
        out.step = _roll_back(p.ckpt, p.manager, out.nonfinite)
        out.message = _describe_divergence(out.nonfinite, out.step)
        logging.warning("%s: %s", p.run_dir.path, out.message)
    elif not out.message:
        out.message = f"trained {out.step} steps; eval " + _format_eval(
            out.last_eval or {}, p.objective.baselines
        )
    # The model before the final status: "completed" promises model.keras.
    _save_model(p.model, p.run_dir.file(schema.MODEL_FILE))
    p.run_dir.write_status(
        out.state, out.step, out.message, out.nonfinite, early_stopped=out.early
    )
    p.tb.flush()
    return TrainResult(out.state, out.step, out.message)


def _distribute(strategy, dataset):
    """The global batches split over the replicas of every worker.

    Under multi_worker each worker builds the same dataset (from in-memory
    tensors: there are no files to shard), so sharding is by DATA: a worker
    keeps its replicas' slices of every global batch. With one worker the
    policy has no effect.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _check_workers_agree(strategy, point: int) -> None:
    """Multi-worker: refuses to go on unless every worker resumes at one point.

    Each worker keeps its own run directory (see trainers/runner.py
    `WorkerRole`), so after a crash they could hold different newest
    checkpoints; training on would mix weights of different steps. `point`
    is the step training starts from, or -1 - step for a finished run.

    Raises:
      schema.RunDirError: the workers disagree (all of them raise it).
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    points = strategy.run(
        lambda: tf.distribute.get_replica_context().all_gather(
            tf.constant([point], tf.int64), axis=0
        )
    )
    points = strategy.experimental_local_results(points)[0].numpy().tolist()
    if len(set(points)) > 1:
        where = ", ".join(
            f"replica {i}: " + (f"step {p}" if p >= 0 else f"finished at {-1 - p}")
            for i, p in enumerate(points)
        )
        raise schema.RunDirError(
            f"the workers' output_dirs hold different points of the run ({where}); "
            "restart every worker with the output_dir it had, or --overwrite all"
        )


def _finished(run_dir, num_steps: int) -> TrainResult | None:
    """The result of a run that already ended, or None if it should go on
    (`writer.has_ended`)."""
    status = writer.read_status(run_dir.path)
    if status is None or not writer.has_ended(status, num_steps):
        return None
    return TrainResult(status.state, status.step, status.message)


def _nonfinite_weights(model, step: int) -> dict | None:
    """A divergence record if an update left non-finite weights, else None.

    Runs on the host at checkpoint steps only: a finite gradient times a huge
    learning rate can overflow the weights without any non-finite gradient.
    """
    bad = [v.path for v in model.weights if not np.isfinite(v.numpy()).all()]
    if not bad:
        return None
    return {"step": step, "loss_finite": True, "variables": [], "weights": bad}


def _roll_back(ckpt, manager, nonfinite: dict) -> int:
    """Restores the newest checkpoint known good; returns its step.

    A checkpoint at step k is known good when its weights were finite when
    saved (checked) and the loss and gradient of step k + 1, computed from
    them, were finite. A divergence found at step d therefore trusts steps
    up to d - 2 (d - 1 for weights that went bad after update d). With two
    checkpoints kept, one of them always qualifies, except for a divergence
    at step 1, where the initial state (step 0) is all there is.
    """
    trusted = nonfinite["step"] - (1 if nonfinite["weights"] else 2)
    paths = manager.checkpoints
    good = [p for p in paths if int(p.rsplit("-", 1)[1]) <= trusted] or paths[:1]
    ckpt.restore(good[-1]).assert_existing_objects_matched()
    return int(ckpt.step.numpy())


def _repair_checkpoint_state(directory: str) -> None:
    """Rebuilds ckpt/checkpoint from the checkpoint files present when it is
    missing or unreadable (a user deleted or garbled it), and removes the
    `ckpt-N_temp` folders a kill during a save leaves behind.

    Without this, CheckpointManager would see no checkpoint and the run
    would silently start over from step 0.
    """
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if re.fullmatch(r"ckpt-\d+_temp", name):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    steps = sorted(
        int(m.group(1))
        for m in (re.fullmatch(r"ckpt-(\d+)\.index", n) for n in os.listdir(directory))
        if m
    )
    try:
        state = tf.train.get_checkpoint_state(directory)
    except Exception:  # noqa: BLE001 - a garbled text proto
        state = None
    if not steps or (state is not None and state.model_checkpoint_path):
        return
    logging.warning(
        "%s/checkpoint is missing or unreadable; recovered the index from the "
        "checkpoint files present (steps %s)",
        directory,
        ", ".join(map(str, steps)),
    )
    # The text format CheckpointManager itself writes (relative paths). It
    # counts a checkpoint as its own only with a timestamp.
    lines = [f'model_checkpoint_path: "ckpt-{steps[-1]}"']
    lines += [f'all_model_checkpoint_paths: "ckpt-{n}"' for n in steps]
    lines += [
        "all_model_checkpoint_timestamps: "
        f"{os.path.getmtime(os.path.join(directory, f'ckpt-{n}.index'))}"
        for n in steps
    ]
    schema.write_text(os.path.join(directory, "checkpoint"), "\n".join(lines) + "\n")


def _truncate_tensorboard(directory: str, step: int) -> None:
    """Drops the points after `step` from tb/'s event files, as a resume
    drops the JSONL rows after its checkpoint: the steps it replays then
    show once in TensorBoard, not twice. Each file is rewritten atomically;
    a torn last record (a kill mid-write) is dropped with it.
    """
    from tensorboard.compat.proto import event_pb2

    if not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory)):
        if not name.startswith("events.out.tfevents."):
            continue
        path = os.path.join(directory, name)
        records, torn = [], False
        iterator = iter(tf.data.TFRecordDataset(path))
        while True:
            try:
                records.append(next(iterator).numpy())
            except StopIteration:
                break
            except tf.errors.DataLossError:
                torn = True
                break
        keep = [
            r
            for r in records
            if (e := event_pb2.Event.FromString(r)).step <= step
            or not e.HasField("summary")
        ]
        if len(keep) == len(records) and not torn:
            continue
        tmp = os.path.join(directory, schema.TMP_PREFIX + name)
        with tf.io.TFRecordWriter(tmp) as f:
            for record in keep:
                f.write(record)
        os.replace(tmp, path)


def _restore(ckpt, manager) -> int:
    """Restores the newest checkpoint that can be read; returns its step.

    A damaged newest checkpoint (a kill mid-write, a full disk) is skipped
    with a warning for the one before it; 0 when there is none at all.

    Raises:
      RunDirError: checkpoints exist but none can be restored.
    """
    # A state file without timestamps (written by hand) leaves the manager's
    # list empty but still names the newest checkpoint.
    paths = manager.checkpoints or (
        [manager.latest_checkpoint] if manager.latest_checkpoint else []
    )
    if not paths:
        return 0
    errors = []
    for path in reversed(paths):
        try:
            ckpt.restore(path).assert_existing_objects_matched()
            return int(ckpt.step.numpy())
        except Exception as e:  # noqa: BLE001
            # A damaged file surfaces as OpError, ValueError, AssertionError
            # or even IndexError ("Read less bytes than requested"): a data
            # problem, not a bug.
            reason = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
            logging.warning("skipping checkpoint %s: %s", path, reason)
            errors.append(f"{os.path.basename(path)}: {reason}")
    raise schema.RunDirError(
        f"no checkpoint in {os.path.dirname(paths[0])} can be "
        f"restored ({'; '.join(errors)}); pass --overwrite to start the run over"
    )


_THIS_STEP_ONLY = (
    "grad_norms",
    "grad_global_norm",
    "learning_rate",
    "update_norms",
    "weight_norms",
)


def _log_metrics(p: _Parts, step: int, window: list, seconds: float) -> None:
    """One metrics row and TensorBoard scalars for the steps since the last."""
    last = window[-1]
    # Loss and metrics are averaged over the window_steps steps since the
    # last row; the learning rate and gradient norms are those of this step
    # (norms before clipping). All of it comes to the host in one transfer.
    averaged = [k for k in last if k not in _THIS_STEP_ONLY]
    packed = (
        tf.concat(
            [
                tf.reduce_mean(
                    tf.stack([tf.stack([w[k] for k in averaged]) for w in window]), 0
                ),
                tf.stack([last["learning_rate"], last["grad_global_norm"]]),
                last["grad_norms"],
                last["update_norms"],
                last["weight_norms"],
            ],
            0,
        )
        .numpy()
        .tolist()
    )
    values = dict(zip(averaged, packed))
    n, paths = len(averaged) + 2, p.step_fn.paths
    grads, updates, weights = (
        packed[n + i * len(paths) : n + (i + 1) * len(paths)] for i in range(3)
    )
    # The first call of each step variant includes tracing: a window
    # holding one counts the other steps only, so the speed is steady.
    timed_steps, timed_seconds = len(window), seconds
    for traced_step, traced_seconds in p.traced.values():
        if step - len(window) < traced_step <= step and timed_steps > 1:
            timed_steps, timed_seconds = timed_steps - 1, timed_seconds - traced_seconds
    row = schema.MetricsRow(
        step=step,
        wall_time=time.time(),
        window_steps=len(window),
        steps_per_second=timed_steps / max(timed_seconds, 1e-9),
        learning_rate=packed[len(averaged)],
        loss=values.pop("loss"),
        penalty=values.pop("penalty"),
        grad_global_norm=packed[len(averaged) + 1],
        grad_norms=dict(zip(paths, grads)),
        metrics=values,
        update_norms=dict(zip(paths, updates)),
        # ||dw|| / ||w||: undefined (None) for weights that were all zero.
        update_ratios={
            path: u / w if w > 0 else None
            for path, u, w in zip(paths, updates, weights)
        },
    )
    p.run_dir.append(schema.METRICS_FILE, row)
    with p.tb.as_default(step=step):
        for k in ("loss", "learning_rate", "grad_global_norm", "steps_per_second"):
            tf.summary.scalar(f"train/{k}", getattr(row, k))
        for path, norm in row.grad_norms.items():
            tf.summary.scalar(f"grad_norm/{path}", norm)
        for path, ratio in row.update_ratios.items():
            if ratio is not None:
                tf.summary.scalar(f"update_ratio/{path}", ratio)
    num_steps = p.config.num_steps
    if len(window) == 1 and step == p.first_step:
        # This window is the first step alone, tracing included: no basis
        # for a speed or an ETA yet.
        speed = f"first step {seconds:.1f} s (tracing)"
    else:
        eta = (num_steps - step) / max(row.steps_per_second, 1e-9)
        speed = (
            f"{row.steps_per_second:.0f} steps/s  "
            f"ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}"
        )
    measured = "  ".join(
        f"{k} {v:.4g}" for k, v in {"loss": row.loss, **row.metrics}.items()
    )
    logging.info(
        "step %d/%d  %s  |g| %.3g  %s",
        step,
        num_steps,
        measured,
        row.grad_global_norm,
        speed,
    )


def _save_model(model, path):
    """Saves the Keras model atomically (Keras insists on a .keras name)."""
    tmp = os.path.join(os.path.dirname(path), schema.TMP_PREFIX + "model.keras")
    model.save(tmp)
    os.replace(tmp, path)

"""The training loop: one compiled GradientTape step, and the Python around it.

Flag-free and importable. The compiled step computes, from one tape, the loss,
the gradient, its global norm and (on logging steps) every variable's
gradient norm, all before clipping; it then clips and applies the update, or
skips it if anything is non-finite. The Python loop around it logs, evaluates,
checkpoints and stops; it touches the host only on those steps.

    >>> result = loop.train(model, task, optimizer, output_dir="runs/x",
    ...                     num_steps=500, batch_size=128)

Tested by tests/trainers/test_loop.py.
"""

import dataclasses
import functools
import math
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from analysis.gradients import global_norm, half_squares, l2_norms
from trainers import rundir

EXIT_DIVERGED = 3  # process exit code of a run that ended as "diverged"
# Examples (the first ones of the eval split) whose gradient through time is
# recorded at logging steps when asked for: the same batch every time, so the
# rows show the model changing, not the data.
PROBE_BATCH = 64


@dataclasses.dataclass(frozen=True)
class TrainResult:
    state: str  # "completed" or "diverged"
    step: int
    message: str
    final_eval: dict | None


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
    gradient before its all-reduce (keras/src/optimizers/base_optimizer.py
    `apply`), which is wrong under a multi-replica strategy. So the replica
    function all-reduces the gradient itself, measures it and clips it; the
    finiteness check picks, in cross-replica context, between applying it
    and recording a divergence (the pattern of Keras' LossScaleOptimizer).

    Call `step(iterator, with_norms)`; the two variants are traced once each.
    """

    def __init__(
        self,
        model,
        task,
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
        self.task = task
        self.optimizer = optimizer
        self.strategy = strategy
        self.accum = grad_accum_steps
        self.global_batch = batch_size * grad_accum_steps
        self.clipping = clipping
        self.clip_threshold = clip_threshold
        self.variables = model.trainable_variables
        self.paths = [v.path for v in self.variables]
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
        # XLA cannot compile the iterator's GetNext, so jit_compile applies to
        # the replica computation (forward, backward, norms, clipping) only.
        self._replica = {
            with_norms: tf.function(
                functools.partial(self._replica_step, with_norms=with_norms),
                jit_compile=True,
            )
            if jit_compile
            else functools.partial(self._replica_step, with_norms=with_norms)
            for with_norms in (False, True)
        }
        self._compiled = {
            with_norms: tf.function(
                functools.partial(self._step, with_norms=with_norms)
            )
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
            data_loss = tf.reduce_sum(self.task.loss(y, logits)) / self.global_batch
            penalty = tf.constant(0.0)
            if self.model.losses:
                penalty = tf.add_n(self.model.losses) / (replicas * self.accum)
            objective = data_loss + penalty
        grads = tape.gradient(objective, self.variables)
        sums = {
            k: tf.reduce_sum(v) / self.global_batch
            for k, v in self.task.metrics(y, logits).items()
        }
        return grads, {"loss": data_loss, "penalty": penalty, **sums}

    def _replica_step(self, x, y, with_norms):
        if self.accum == 1:
            grads, stats = self._micro_step(x, y)
        else:
            xs = tf.reshape(x, [self.accum, -1, *x.shape[1:]])
            ys = tf.reshape(y, [self.accum, -1, *y.shape[1:]])
            grads, stats = self._micro_step(xs[0], ys[0])
            for i in tf.range(1, self.accum):
                more_grads, more_stats = self._micro_step(xs[i], ys[i])
                grads = [g + h for g, h in zip(grads, more_grads)]
                stats = {k: stats[k] + more_stats[k] for k in stats}
        if self.strategy.num_replicas_in_sync > 1:  # one replica: nothing to sum
            ctx = tf.distribute.get_replica_context()
            grads, stats = ctx.all_reduce(tf.distribute.ReduceOp.SUM, (grads, stats))
        # Every step needs the global norm (clipping, the finiteness check);
        # logging steps also take every variable's norm from the same squared
        # sums, so the global norm, and with it the update, is bitwise the same
        # whatever the logging cadence. Both are safe from float32 under- and
        # overflow: a vanishing or exploding gradient's norm is the point.
        halves = half_squares(grads)
        stats["grad_global_norm"] = global_norm(grads, halves)
        if with_norms:
            stats["grad_norms"] = l2_norms(grads, halves)
        # Which variables went non-finite, looked at before clipping (which
        # can turn an inf into the threshold) and only when something did.
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
            # The rate this update uses (the schedule moves on after it).
            stats["learning_rate"] = tf.cast(self.optimizer.learning_rate, tf.float32)
            loss_finite = tf.math.is_finite(stats["loss"] + stats["penalty"])
            finite = loss_finite & tf.math.is_finite(stats["grad_global_norm"])
            if finite and self.diverged_at < 0:
                self.strategy.run(self._apply, args=(grads,))
            elif self.diverged_at < 0:
                # Skip the update; train() then rolls the model back to the
                # newest checkpoint known good.
                step = tf.cast(self.optimizer.iterations, tf.int64) + 1
                self.diverged_at.assign(step)
                self.loss_was_finite.assign(loss_finite)
                self.nonfinite.assign(nonfinite)
            return stats

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


def make_evaluator(model, task, batch_size: int = 1024):
    """A function returning mean loss and metrics over the eval split.

    Runs on the host strategy's default device, not distributed: eval sets
    here are small, and sums over a fixed order are exactly reproducible.
    """

    @tf.function(reduce_retracing=True)
    def sums(x, y):
        logits = model(x, training=False)
        out = {"loss": tf.reduce_sum(task.loss(y, logits))}
        for k, v in task.metrics(y, logits).items():
            out[k] = tf.reduce_sum(v)
        return out

    def run() -> dict:
        total, count = {}, 0
        for x, y in task.eval_dataset(batch_size):
            for k, v in sums(x, y).items():
                total[k] = total.get(k, 0.0) + float(v)
            count += int(x.shape[0])
        return {k: v / count for k, v in total.items()}

    return run


def evaluate(model, task, batch_size: int = 1024) -> dict:
    """Mean loss and metrics of `model` over the whole eval split of `task`."""
    return make_evaluator(model, task, batch_size)()


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


def train(
    model,
    task,
    optimizer,
    *,
    output_dir: str,
    num_steps: int,
    batch_size: int,
    grad_accum_steps: int = 1,
    clipping: str = "none",
    clip_threshold: float = 0.0,
    seed: int = 0,
    log_every_steps: int = 100,
    eval_every_steps: int = 500,
    checkpoint_every_steps: int = 1000,
    early_stopping_patience: int = 0,
    early_stopping_min_delta: float = 0.0,
    strategy=None,
    jit_compile: bool = False,
    log_gradient_through_time: bool = False,
) -> TrainResult:
    """Trains `model` on `task`, writing metrics, evals, checkpoints into output_dir.

    Resumes from the latest checkpoint in `output_dir/ckpt` when there is one:
    the data order is a pure function of (seed, step), so the checkpoint
    (model, optimizer, step) is all a bitwise-identical resume needs.

    Returns:
      A TrainResult: "completed" (including early stops) or "diverged" (a
      non-finite loss, gradient or weight; the model is restored from the
      newest checkpoint known good, see `_roll_back`, and saved).

    With `log_gradient_through_time`, step 0 and every logging step append
    ||dL/dh_t|| and ||dL/dx_t|| for all time steps t of a fixed probe batch
    (analysis.temporal.gradient_through_time, outside the compiled step) to
    gradient_through_time.jsonl.

    Raises:
      rundir.RunDirError: the checkpoint cannot be restored.
    """
    strategy = strategy or tf.distribute.get_strategy()
    os.makedirs(output_dir, exist_ok=True)
    path = functools.partial(os.path.join, output_dir)
    step_fn = TrainStep(
        model,
        task,
        optimizer,
        strategy=strategy,
        batch_size=batch_size,
        grad_accum_steps=grad_accum_steps,
        clipping=clipping,
        clip_threshold=clip_threshold,
        jit_compile=jit_compile,
    )
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var)
    manager = tf.train.CheckpointManager(ckpt, path(rundir.CKPT_DIR), max_to_keep=2)
    finished = _finished(path(rundir.STATUS_FILE), num_steps)
    if finished is not None:
        _check_workers_agree(strategy, -1 - finished.step)
        logging.info("%s: already %s", output_dir, finished.message)
        return finished
    start = _restore(ckpt, manager)
    _check_workers_agree(strategy, start)
    # Rows written after the checkpoint are replayed, so drop them.
    for name in (rundir.METRICS_FILE, rundir.EVAL_FILE, rundir.TEMPORAL_FILE):
        rundir.truncate_jsonl(path(name), start if start > 0 else -1)

    stopper = EarlyStopping(
        task.main_metric,
        task.higher_is_better,
        early_stopping_patience,
        early_stopping_min_delta,
    )
    last_eval = None
    for row in rundir.read_jsonl(path(rundir.EVAL_FILE)):
        stopper.update(row["step"], row[task.main_metric])
        last_eval = {k: v for k, v in row.items() if k not in ("step", "wall_time")}
    tb = tf.summary.create_file_writer(path(rundir.TB_DIR))
    baselines = dict(task.baselines)
    evaluator = make_evaluator(model, task)

    def log_eval(step):
        ev = evaluator()
        rundir.append_jsonl(
            path(rundir.EVAL_FILE), {"step": step, "wall_time": time.time(), **ev}
        )
        with tb.as_default(step=step):
            for k, v in ev.items():
                tf.summary.scalar(f"eval/{k}", v)
        logging.info("eval step %d: %s", step, _format_eval(ev, baselines))
        return ev

    def checkpoint(step, message):
        step_var.assign(step)
        manager.save(checkpoint_number=step)
        rundir.write_status(output_dir, "running", step, message)

    log_temporal = None
    if log_gradient_through_time:
        log_temporal = _temporal_logger(model, task, path(rundir.TEMPORAL_FILE), tb)

    rundir.write_status(output_dir, "running", start, f"started at step {start}")
    if start == 0:
        last_eval = log_eval(0)  # evaluate before the first step
        stopper.update(0, last_eval[task.main_metric])
        if log_temporal is not None:
            log_temporal(0)  # the profile at init
        checkpoint(0, "initial state")  # a divergence at step 2 rolls back to it

    dataset = task.train_dataset(
        batch_size * grad_accum_steps, seed=seed, start_step=start
    )
    iterator = iter(_distribute(strategy, dataset))
    window, window_start, host_seconds = [], time.time(), 0.0
    step, state, message, nonfinite, early = start, "completed", "", None, False
    try:
        for step in range(start + 1, num_steps + 1):
            log_now = step == 1 or step % log_every_steps == 0 or step == num_steps
            eval_now = step % eval_every_steps == 0 or step == num_steps
            ckpt_now = step % checkpoint_every_steps == 0 or step == num_steps
            window.append(step_fn(iterator, with_norms=log_now))
            if not (log_now or eval_now or ckpt_now):
                continue
            nonfinite = step_fn.divergence()
            if nonfinite is None and ckpt_now:  # never checkpoint bad weights
                nonfinite = _nonfinite_weights(model, step)
            if nonfinite is not None:
                state = "diverged"
                break
            host_start = time.time()
            if log_now:
                seconds = host_start - window_start - host_seconds
                _log_metrics(
                    path(rundir.METRICS_FILE),
                    tb,
                    step,
                    window,
                    step_fn.paths,
                    seconds,
                    num_steps,
                )
                if log_temporal is not None:
                    log_temporal(step)
                window, window_start, host_seconds = [], time.time(), 0.0
                host_start = window_start
            if eval_now:
                last_eval = log_eval(step)
                if stopper.update(step, last_eval[task.main_metric]):
                    early, message = (
                        True,
                        (
                            f"early stop at step {step}: best {task.main_metric} "
                            f"{stopper.best:.4g} at step {stopper.best_step}"
                        ),
                    )
                    checkpoint(step, message)
                    break
            if ckpt_now:
                checkpoint(step, f"checkpoint at step {step}")
            host_seconds += time.time() - host_start
    except (KeyboardInterrupt, Exception) as e:
        what = "interrupted" if isinstance(e, KeyboardInterrupt) else type(e).__name__
        rundir.write_status(
            output_dir,
            "failed",
            step,
            f"{what} at step {step}; run the same command to resume "
            f"from step {int(step_var.numpy())}",
        )
        raise

    if state == "diverged":
        step = _roll_back(ckpt, manager, nonfinite)
        message = _describe_divergence(nonfinite, step)
        logging.warning("%s: %s", output_dir, message)
    else:
        message = message or (
            f"trained {step} steps; eval {_format_eval(last_eval or {}, baselines)}"
        )
    # The model before the final status: "completed" promises model.keras.
    _save_model(model, path(rundir.MODEL_FILE))
    rundir.write_status(
        output_dir, state, step, message, nonfinite, early_stopped=early
    )
    tb.flush()
    return TrainResult(state, step, message, last_eval)


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
      rundir.RunDirError: the workers disagree (all of them raise it).
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
        raise rundir.RunDirError(
            f"the workers' output_dirs hold different points of the run ({where}); "
            "restart every worker with the output_dir it had, or --overwrite all"
        )


def _finished(status_path: str, num_steps: int) -> TrainResult | None:
    """The result of a run that already ended, or None if it should go on.

    A diverged or early-stopped run stays as it ended; a completed one is
    extended only if asked for more steps (the CLI refuses that as a
    changed config).
    """
    if not os.path.exists(status_path):
        return None
    status = rundir.read_json(status_path)
    state = status["state"]
    done = state == "diverged" or (
        state == "completed"
        and (status["step"] >= num_steps or status.get("early_stopped"))
    )
    if not done:
        return None
    return TrainResult(state, status["step"], status["message"], None)


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


def _restore(ckpt, manager) -> int:
    """Restores the newest checkpoint that can be read; returns its step.

    A damaged newest checkpoint (a kill mid-write, a full disk) is skipped
    with a warning for the one before it; 0 when there is none at all.

    Raises:
      rundir.RunDirError: checkpoints exist but none can be restored.
    """
    if not manager.checkpoints:
        return 0
    errors = []
    for path in reversed(manager.checkpoints):
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
    raise rundir.RunDirError(
        f"no checkpoint in {os.path.dirname(manager.checkpoints[0])} can be "
        f"restored ({'; '.join(errors)}); pass --overwrite to start the run over"
    )


_THIS_STEP_ONLY = ("grad_norms", "grad_global_norm", "learning_rate")


def _log_metrics(path, tb, step, window, paths, seconds, num_steps):
    """One metrics.jsonl row and TensorBoard scalars for the steps since the last."""
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
            ],
            0,
        )
        .numpy()
        .tolist()
    )
    row = {
        "step": step,
        "wall_time": time.time(),
        "window_steps": len(window),
        "steps_per_second": len(window) / max(seconds, 1e-9),
        "learning_rate": packed[len(averaged)],
        **dict(zip(averaged, packed)),
        "grad_global_norm": packed[len(averaged) + 1],
        "grad_norms": dict(zip(paths, packed[len(averaged) + 2 :])),
    }
    rundir.append_jsonl(path, row)
    with tb.as_default(step=step):
        for k in ("loss", "learning_rate", "grad_global_norm", "steps_per_second"):
            tf.summary.scalar(f"train/{k}", row[k])
        for p, norm in row["grad_norms"].items():
            tf.summary.scalar(f"grad_norm/{p}", norm)
    eta = (num_steps - step) / max(row["steps_per_second"], 1e-9)
    # Step 1 includes tracing the step function: no basis for an ETA yet.
    eta_text = (
        "after warm-up" if step == 1 else time.strftime("%H:%M:%S", time.gmtime(eta))
    )
    measured = "  ".join(
        f"{k} {row[k]:.4g}"
        for k in last
        if k not in ("grad_norms", "penalty", "grad_global_norm", "learning_rate")
    )
    logging.info(
        "step %d/%d  %s  |g| %.3g  %.0f steps/s  ETA %s",
        step,
        num_steps,
        measured,
        row["grad_global_norm"],
        row["steps_per_second"],
        eta_text,
    )


def _temporal_logger(model, task, path, tb):
    """A function(step) that appends the probe batch's gradient through time."""
    from analysis import temporal  # imported only by runs that ask for it

    x, y = next(iter(task.eval_dataset(PROBE_BATCH)))

    def log(step):
        g = temporal.gradient_through_time(model, x, y, task.loss)
        row = {
            "step": step,
            "wall_time": time.time(),
            "layer": g.layer,
            "input_ratio": float(g.input_ratio),
            "state_ratio": float(g.state_ratio),
            "decay_rate": float(g.decay_rate()),
            "input_grad_norms": g.input_grad_norms.tolist(),
            "state_grad_norms": g.state_grad_norms.tolist(),
        }
        rundir.append_jsonl(path, row)
        with tb.as_default(step=step):
            for k in ("input_ratio", "state_ratio", "decay_rate"):
                tf.summary.scalar(f"gradient_through_time/{k}", row[k])
        logging.info(
            "step %d  gradient through time (%s): |dL/dx_1|/|dL/dx_T| %.3g, "
            "%.3g per step",
            step,
            g.layer,
            row["input_ratio"],
            row["decay_rate"],
        )

    return log


def _save_model(model, path):
    """Saves the Keras model atomically (Keras insists on a .keras name)."""
    tmp = os.path.join(os.path.dirname(path), ".tmp-model.keras")
    model.save(tmp)
    os.replace(tmp, path)

"""Hand-made run and probe directories, written with the schema's writers.

For the report's tests: a run directory of any state in milliseconds,
without training. Not a test module itself.
"""

import math
import os

from analysis import schema


def make_run(
    path,
    *,
    seed=0,
    model="plain_mlp",
    depth=4,
    steps=(1, 10, 20),
    decay=0.25,
    state="completed",
    diverged_at=None,
    temporal=None,
    config=None,
):
    """A run directory: `depth` dense layers whose gradient norm shrinks by
    `decay` per layer toward the input; eval at step 0 and the last step.

    state "diverged" stops the rows at `diverged_at` (non-finite norms
    there); "failed" keeps the rows and records the failure; `temporal`
    is a list of (step, [||dL/dh_t||]) rows for gradient_through_time.jsonl.
    """
    os.makedirs(path, exist_ok=True)
    axis = [[i, f"block{i:02d}_dense/kernel"] for i in range(depth)]
    cfg = {
        "model": model,
        "model_kwargs": {"depth": depth, "width": 8, "activation": "sigmoid"},
        "task": "teacher",
        "task_kwargs": {},
        "optimizer": "sgd",
        "learning_rate": 0.1,
        "batch_size": 32,
        "clipping": "none",
        "num_steps": steps[-1],
        "seed": seed,
        **(config or {}),
    }
    record = schema.RunRecord(
        config=cfg,
        num_replicas=1,
        task_info={
            "main_metric": "accuracy",
            "baselines": {"accuracy": 0.25, "loss": math.log(4)},
        },
        num_parameters=100,
        versions={},
        depth_axis=axis,
    )
    schema.write_json(os.path.join(path, schema.CONFIG_FILE), record.to_json())
    metrics = os.path.join(path, schema.METRICS_FILE)
    evals = os.path.join(path, schema.EVAL_FILE)
    schema.append_jsonl(
        evals,
        schema.EvalRow(
            0, 0.0, {"loss": 1.40 + 0.01 * seed, "accuracy": 0.25}
        ).to_json(),
    )
    last = steps[-1]
    for i, step in enumerate(steps):
        bad = diverged_at is not None and step >= diverged_at
        norms = {
            p: (
                math.nan
                if bad and pos == 0
                else (1 + 0.1 * seed) * decay ** (depth - 1 - pos) * (1 + i)
            )
            for pos, p in axis
        }
        row = schema.MetricsRow(
            step=step,
            wall_time=float(step),
            window_steps=1,
            steps_per_second=10.0,
            learning_rate=0.1,
            loss=None if bad else 1.4 - 0.02 * i,
            penalty=0.0,
            grad_global_norm=None if bad else 1.0 + i,
            grad_norms=norms,
            metrics={"accuracy": 0.3 + 0.05 * i},
        )
        schema.append_jsonl(metrics, row.to_json())
        if bad:
            last = step
            break
    nonfinite = None
    if state == "diverged":
        nonfinite = {
            "step": diverged_at,
            "loss_finite": False,
            "variables": [axis[0][1]],
            "weights": [],
        }
    else:
        schema.append_jsonl(
            evals,
            schema.EvalRow(
                last, 1.0, {"loss": 1.2, "accuracy": 0.5 + 0.01 * seed}
            ).to_json(),
        )
    message = {
        "completed": f"trained {last} steps",
        "diverged": "non-finite loss",
        "failed": "interrupted (SIGTERM)",
    }[state]
    status = schema.Status(state, last, message, nonfinite=nonfinite, updated=1.0)
    schema.write_json(os.path.join(path, schema.STATUS_FILE), status.to_json())
    for step, norms in temporal or []:
        row = schema.TemporalRow(
            step, 0.0, "block00_rnn", None, None, None, norms, norms
        )
        schema.append_jsonl(os.path.join(path, schema.TEMPORAL_FILE), row.to_json())
    return path


def make_probe(path, name, values, *, seed=0, args=None):
    """A probe's directory, as analysis.probes.run_probe writes it."""
    os.makedirs(path, exist_ok=True)
    schema.write_json(
        os.path.join(path, schema.PROBE_FILE),
        {"probe": name, "seed": seed, **(args or {})},
    )
    schema.write_json(os.path.join(path, schema.EVIDENCE_FILE), values)
    status = schema.Status("completed", 0, f"probe {name}", updated=1.0)
    schema.write_json(os.path.join(path, schema.STATUS_FILE), status.to_json())
    return path


ACTIVATION_VALUES = {
    "sigmoid_max": 0.25,
    "sigmoid_argmax": 0.0,
    "tanh_max": 1.0,
    "tanh_argmax": 0.0,
    "relu_positive_max_error": 0.0,
}

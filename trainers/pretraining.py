"""Greedy layer-wise pretraining, then fine-tuning: phases of the one loop.

Flag-free; trainers/pretrain.py is its command line. Every phase is a call
of `loop.train` (the same compiled step, checkpoints, gradient statistics
and run-directory writer as any run) on its own run directory:

    output_dir/                 config.json: the fine-tuning RunConfig and
                                the `pretraining` settings; status.json:
                                which phase, and how the whole run ended
    output_dir/pretrain_block00/  hidden layer 0 as an autoencoder
    output_dir/pretrain_block01/  ... one per pretrained layer, in order
    output_dir/finetune/          the whole net (decoders dropped) on the task

Each phase directory is an ordinary run directory (analysis.rundir.load_run
reads it; its config.json records the phase). A phase starts from the
network the phase before left: finished phases are restored from their
final checkpoint, the phase in progress resumes from its newest one, so a
kill anywhere resumes bit for bit.

    >>> from trainers import pretraining
    >>> from trainers.config import PretrainConfig, RunConfig
    >>> run = RunConfig(model="plain_mlp", model_kwargs={"depth": 5},
    ...                 task="digits", num_steps=300)
    >>> pretraining.run(PretrainConfig(run, steps_per_layer=200), "runs/p")

Tested by tests/trainers/test_pretraining.py.
"""

import dataclasses
import os

import keras
import tensorflow as tf
from absl import logging

import zoo
from analysis import schema
from trainers import loop, runner, writer
from trainers.config import PretrainConfig, make_optimizer

# What a pretraining phase minimizes: the autoencoder's reconstruction error.
RECONSTRUCTION = loop.Objective(
    loss=zoo.pretraining.reconstruction_error,
    metrics=lambda y, outputs: {
        "reconstruction_mse": zoo.pretraining.reconstruction_error(y, outputs)
    },
    main_metric="reconstruction_mse",
    higher_is_better=False,
)


@dataclasses.dataclass
class BuiltPretraining:
    """A validated pretraining run: its config, network, task and directory.

    It owns the top directory until `train()` returns or `release()`.
    """

    config: PretrainConfig
    run_dir: writer.RunDir
    network: keras.Model
    task: zoo.Task
    stages: list

    def train(self) -> loop.TrainResult:
        try:
            return _train(self)
        finally:
            self.release()

    def release(self) -> None:
        self.run_dir.release()


def build(
    config: PretrainConfig, output_dir: str, *, overwrite: bool = False, flags_text=None
) -> BuiltPretraining:
    """Validates `config`, builds the network, and readies `output_dir`.

    Everything that can be refused is refused before a file is written (a
    live owner, the config, the data, the layer indices against the built
    network, a different run in the directory).

    Raises:
      ValueError: one line naming the culprit (RunDirError for directories).
    """
    c = config.resolved()
    run_dir = writer.claim(output_dir)
    try:
        run = c.run
        task = zoo.load_task(run.task, data_dir=run.data_dir, **run.task_kwargs)
        if run.batch_size > len(task.x_train):
            raise ValueError(
                f"batch_size {run.batch_size} is more than task '{run.task}' has "
                f"training examples ({len(task.x_train)})"
            )
        network = _network(c, task)
        stages = zoo.pretraining.schedule(network, c.layers)
        record = runner.run_record(
            run, task, network, 1, pretraining=c.pretraining_dict()
        )
        state = run_dir.open(record, overwrite=overwrite)
        if state == "new" and flags_text is not None:
            schema.write_text(run_dir.file(schema.FLAGS_FILE), flags_text)
    except BaseException:
        run_dir.release()
        raise
    return BuiltPretraining(c, run_dir, network, task, stages)


def run(config: PretrainConfig, output_dir: str, **kwargs) -> loop.TrainResult:
    """`build(config, output_dir, **kwargs).train()`."""
    return build(config, output_dir, **kwargs).train()


def _network(c: PretrainConfig, task) -> keras.Model:
    """The network at its initialization: the same as a scratch run's."""
    keras.utils.set_random_seed(c.run.seed)
    tf.config.experimental.enable_op_determinism()
    return zoo.get_model(
        c.run.model,
        input_shape=task.input_shape,
        num_outputs=task.num_outputs,
        output_per_step=task.output_per_step,
        **c.run.model_kwargs,
    )


def _train(b: BuiltPretraining) -> loop.TrainResult:
    total = len(b.stages)
    phase = "?"
    try:
        for number, stage in enumerate(b.stages, start=1):
            phase = schema.pretrain_dir(stage.layer.prefix)
            b.run_dir.write_status(
                "running", 0, f"phase {phase}: layer {number} of {total}"
            )
            result = _pretrain_layer(b, stage)
            if result.state != "completed":
                return _end(b, result, phase)
        phase = schema.FINETUNE_DIR
        b.run_dir.write_status("running", 0, f"phase {phase}")
        return _end(b, _finetune(b), phase)
    except BaseException as e:
        what = "interrupted" if isinstance(e, KeyboardInterrupt) else type(e).__name__
        b.run_dir.write_status(
            "failed",
            0,
            f"{what} in phase {phase}; run the same command to resume",
        )
        raise


def _end(b: BuiltPretraining, result: loop.TrainResult, phase: str):
    message = f"{phase}: {result.message}"
    b.run_dir.write_status(result.state, result.step, message)
    return loop.TrainResult(result.state, result.step, message)


def _pretrain_layer(b: BuiltPretraining, stage) -> loop.TrainResult:
    """Phase 1 for one layer: its autoencoder through the loop, then its
    final checkpoint restored (a no-op after training here; the hand-off
    when the phase finished in an earlier process)."""
    c = b.config
    phase_config = c.phase_config()
    seed = c.run.seed * 1000 + stage.index  # the decoder's init and the noise
    autoencoder = zoo.pretraining.layer_autoencoder(
        b.network,
        stage.index,
        tied_weights=c.tied_weights,
        denoising=c.denoising,
        seed=seed,
    )
    optimizer = make_optimizer(phase_config)
    name = schema.pretrain_dir(stage.layer.prefix)
    encoder_kernel = b.network.get_layer(stage.layer.dense).kernel.path
    axis = [[0, encoder_kernel]]
    if not c.tied_weights:
        axis.append([1, autoencoder.get_layer("decoder_dense").kernel.path])
    record = runner.run_record(
        phase_config,
        b.task,
        autoencoder,
        1,
        depth_axis=axis,
        phase={
            "name": name,
            "objective": "reconstruction",
            "layer": stage.index,
            "trained": list(stage.trained),
            "frozen": list(stage.frozen),
            "tied_weights": c.tied_weights,
            "denoising": c.denoising,
        },
    )
    result = _phase(
        b, name, record, autoencoder, optimizer, RECONSTRUCTION, phase_config
    )
    if result.state == "completed":
        path = tf.train.latest_checkpoint(
            os.path.join(b.run_dir.path, name, schema.CKPT_DIR)
        )
        ckpt = tf.train.Checkpoint(model=autoencoder)
        ckpt.restore(path).assert_existing_objects_matched().expect_partial()
    return result


def _finetune(b: BuiltPretraining) -> loop.TrainResult:
    """Phase 2: the decoders dropped, the whole network on the task."""
    zoo.pretraining.unfreeze(b.network)
    run = b.config.run
    record = runner.run_record(
        run,
        b.task,
        b.network,
        1,
        phase={
            "name": schema.FINETUNE_DIR,
            "init": "pretrained",
            "pretrained_layers": [s.index for s in b.stages],
            "from": [schema.pretrain_dir(s.layer.prefix) for s in b.stages],
        },
    )
    return _phase(
        b,
        schema.FINETUNE_DIR,
        record,
        b.network,
        make_optimizer(run),
        loop.Objective.of_task(b.task),
        run,
    )


def _phase(b, name, record, model, optimizer, objective, config):
    """One phase: its run directory opened (new or resume), then the loop."""
    run_dir = writer.claim(os.path.join(b.run_dir.path, name))
    try:
        run_dir.open(record, overwrite=False)
        logging.info("phase %s", name)
        return loop.train(
            model,
            optimizer,
            objective,
            b.task,
            runner.loop_config(config),
            run_dir,
        )
    finally:
        run_dir.release()

"""--config on the command line: replays a run bitwise, flags override it,
bad files are one line; a live run directory keeps a second process out."""

import json
import os

import numpy as np
import pytest

from analysis import schema
from tests.helpers import assert_one_line_error, live_owner, run_cli
from trainers import flags as gz_flags

TINY = [
    "--depth=3",
    "--width=8",
    "--num_steps=6",
    "--log_every_steps=2",
    "--eval_every_steps=3",
    "--checkpoint_every_steps=3",
    "--batch_size=32",
]


def _weights(run):
    import keras

    return [
        w.numpy() for w in keras.saving.load_model(str(run / "model.keras")).weights
    ]


def test_config_replays_a_run_bitwise_and_flags_next_to_it_win(
    capsys, tmp_path, data_dir
):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    base = [f"--data_dir={data_dir}", *TINY, "--model=residual_mlp", "--seed=4"]
    assert run_cli(capsys, f"--output_dir={a}", *base)[0] == 0
    code, out, _ = run_cli(capsys, f"--config={a / 'config.json'}", f"--output_dir={b}")
    assert code == 0 and "completed at step 6" in out
    for x, y in zip(_weights(a), _weights(b)):
        np.testing.assert_array_equal(x, y)
    recorded = json.load(open(a / "config.json"))
    replayed = json.load(open(b / "config.json"))
    for d in (recorded, replayed):
        d.pop("versions")
    assert replayed == recorded
    # A flag next to --config overrides the file; the result is recorded.
    code, _, err = run_cli(
        capsys,
        f"--config={a / 'config.json'}",
        f"--output_dir={c}",
        "--seed=9",
        "--width=4",
    )
    assert code == 0
    got = json.load(open(c / "config.json"))
    assert (got["seed"], got["model_kwargs"]["width"]) == (9, 4)
    assert got["model_kwargs"]["depth"] == 3 and got["model"] == "residual_mlp"
    # flags.txt of the --config run replays it as well.
    assert "--seed=9" in (c / "flags.txt").read_text()


def test_a_hand_written_config_file_runs_with_the_task_recipe(
    capsys, tmp_path, data_dir
):
    path = tmp_path / "run.json"
    path.write_text(
        json.dumps(
            {
                "model": "gru",
                "model_kwargs": {"units": 4},
                "task": "adding",
                "task_kwargs": {"sequence_length": 6, "num_train": 64, "num_eval": 16},
                "batch_size": 16,
                "num_steps": 2,
                "data_dir": data_dir,
            }
        )
    )
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, f"--config={path}", f"--output_dir={run}")
    assert code == 0, err
    c = json.load(open(run / "config.json"))
    assert (c["optimizer"], c["learning_rate"], c["batch_size"]) == ("adam", 1e-3, 16)
    assert (c["clipping"], c["clip_threshold"]) == ("global_norm", 1.0)


@pytest.mark.parametrize(
    "content,needles",
    [
        (None, ["does not exist"]),
        ("{oops", ["is not JSON"]),
        ('{"format": "gradzoo-run-7", "model": "lstm"}', ["unknown run format"]),
        ('{"model": "plain_mlp", "depht": 3}', ["unknown RunConfig field depht"]),
        ('{"model_kwargs": {"depht": 3}}', ["takes no argument depht"]),
    ],
)
def test_bad_config_files_are_refused_before_anything_is_written(
    capsys, tmp_path, content, needles
):
    path = tmp_path / "c.json"
    if content is not None:
        path.write_text(content)
    code, _, err = run_cli(capsys, f"--config={path}", f"--output_dir={tmp_path / 'r'}")
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "r").exists()


def test_a_second_process_on_a_live_run_is_refused_and_touches_nothing(
    capsys, tmp_path, data_dir
):
    run = tmp_path / "run"
    args = [f"--output_dir={run}", f"--data_dir={data_dir}", *TINY]
    assert run_cli(capsys, *args)[0] == 0
    owner = live_owner(str(run))
    try:
        files = {
            name: (run / name).read_bytes()
            for name in os.listdir(run)
            if (run / name).is_file()
        }
        for extra in ([], ["--overwrite"], ["--num_steps=9", "--overwrite"]):
            code, _, err = run_cli(capsys, *args, *extra)
            assert_one_line_error(code, err, str(run), f"pid {owner.pid}", "live run")
        assert {n: (run / n).read_bytes() for n in files} == files
        assert sorted(os.listdir(run)) == sorted(
            [*files, schema.CKPT_DIR, schema.TB_DIR]
        )
    finally:
        owner.kill()
        owner.wait()
    # Its owner is dead now (status.json still names it): the run is picked up.
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "completed at step 6" in out


def test_every_model_argument_is_a_flag_with_help_and_replays():
    from absl import flags

    import zoo
    from trainers.config import RunConfig

    for name in zoo.list_models():
        spec = zoo.model_spec(name)
        c = RunConfig(
            model=name, task="adding" if "sequence" in spec.input_kinds else "digits"
        )
        text = gz_flags.flags_text(c.resolved())
        for arg in spec.arguments():
            assert arg in flags.FLAGS, (name, arg)
            assert flags.FLAGS[arg].help and "[model" in flags.FLAGS[arg].help
            assert f"--{arg}" in text or f"--no{arg}" in text, (name, arg)
    for name in zoo.list_tasks():
        for arg in zoo.task_spec(name).arguments():
            assert arg in flags.FLAGS and "[task" in flags.FLAGS[arg].help

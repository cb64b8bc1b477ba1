"""Building a run from a RunConfig: checks before writing, old runs resume."""

import json

import pytest

from analysis import schema
from trainers import runner, writer


def test_a_batch_larger_than_the_data_is_refused_before_anything_is_written(
    tmp_path, data_dir
):
    config = runner.RunConfig(batch_size=800, grad_accum_steps=2, data_dir=data_dir)
    with pytest.raises(ValueError, match="= 1600 is more than task 'digits' has"):
        runner.build_run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_run_from_before_the_recurrent_settings_still_resumes(tmp_path):
    # A config.json as gradzoo wrote it before task arguments were resolved
    # and before log_gradient_through_time, task_info.output_per_step and
    # depth_axis.
    def cfg(**kw):
        return runner.RunConfig(
            model_kwargs={"depth": 2, "width": 4}, task="teacher", **kw
        )

    runner.build_run(cfg(), str(tmp_path)).release()
    path = tmp_path / schema.CONFIG_FILE
    old = json.loads(path.read_text())
    assert old["depth_axis"] == [
        [0, "block00_dense/kernel"],
        [1, "block01_dense/kernel"],
    ]
    del old["log_gradient_through_time"], old["task_info"]["output_per_step"]
    del old["depth_axis"]
    old["task_kwargs"] = {}
    path.write_text(json.dumps(old))
    built = runner.build_run(cfg(), str(tmp_path))  # no "different config"
    assert built.resumed
    built.release()
    with pytest.raises(writer.RunDirError, match="num_steps: 1000 -> 7"):
        runner.build_run(cfg(num_steps=7), str(tmp_path))

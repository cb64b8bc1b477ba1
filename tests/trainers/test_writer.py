"""The run-directory writer: new, resume, refuse, overwrite; one live owner."""

import json
import os
import socket
import time

import pytest

from analysis import schema
from tests.helpers import live_owner
from trainers import writer


def _open(path, record, overwrite=False):
    run_dir = writer.claim(path)
    try:
        return run_dir.open(record, overwrite=overwrite)
    finally:
        run_dir.release()


def _cfg(versions=None, task_info=None, **kw):
    return schema.RunRecord(
        config=kw,
        num_replicas=1,
        task_info=task_info or {},
        num_parameters=0,
        versions=versions or {},
    )


def test_unusable_output_dirs_are_refused(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(writer.RunDirError, match="exists and is not a directory"):
        _open(str(a_file), _cfg())
    with pytest.raises(writer.RunDirError, match="not writable"):
        _open(str(a_file / "sub"), _cfg())
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_text("meow")
    with pytest.raises(writer.RunDirError, match="holds no gradzoo run"):
        _open(str(foreign), _cfg(), overwrite=True)
    assert (foreign / "cat.jpg").read_text() == "meow"


def test_same_config_resumes_another_is_refused_unless_overwrite(tmp_path):
    run = str(tmp_path / "run")
    assert _open(run, _cfg(a=1, versions={"tf": "1"})) == "new"
    assert _open(run, _cfg(a=1, versions={"tf": "2"})) == "resume"
    with pytest.raises(writer.RunDirError, match=r"different config \(a: 1 -> 2\)"):
        _open(run, _cfg(a=2))
    assert json.load(open(os.path.join(run, "config.json")))["a"] == 1
    (tmp_path / "run" / "notes.txt").write_text("mine")
    os.makedirs(os.path.join(run, "ckpt"))
    assert _open(run, _cfg(a=2), overwrite=True) == "new"
    # Only the run's own files went; the new run wrote its config and status.
    assert sorted(os.listdir(run)) == ["config.json", "notes.txt", "status.json"]
    assert json.load(open(os.path.join(run, "config.json")))["a"] == 2


def test_overwrite_never_touches_a_directory_that_is_not_a_gradzoo_run(tmp_path):
    for content in ('{"name": "my-app"}', "[1, 2]", "not json"):
        project = tmp_path / "project"
        (project / "src").mkdir(parents=True, exist_ok=True)
        (project / "config.json").write_text(content)
        (project / "src" / "important.txt").write_text("keep")
        with pytest.raises(writer.RunDirError, match="holds no gradzoo run"):
            _open(str(project), _cfg(a=1), overwrite=True)
        assert (project / "src" / "important.txt").read_text() == "keep"
    with pytest.raises(writer.RunDirError, match="output_dir is empty"):
        _open("", _cfg(), overwrite=True)


def test_an_identical_config_with_non_finite_numbers_is_the_same_run(tmp_path):
    run = str(tmp_path / "run")
    config = _cfg(task_info={"baselines": {"loss": float("inf")}}, shape=(8, 8))
    assert _open(run, config) == "new"
    assert _open(run, config) == "resume"


def test_jsonl_rows_are_whole_and_non_finite_numbers_are_null(tmp_path):
    path = str(tmp_path / "m.jsonl")
    schema.append_jsonl(
        path, {"step": 1, "loss": float("nan"), "g": {"a": float("inf")}}
    )
    schema.append_jsonl(path, {"step": 2, "loss": 1.5})
    with open(path, "a") as f:
        f.write('{"step": 3, "lo')  # a writer killed mid-line
    assert schema.read_jsonl(path) == [
        {"step": 1, "loss": None, "g": {"a": None}},
        {"step": 2, "loss": 1.5},
    ]
    schema.truncate_jsonl(path, 1)
    assert schema.read_jsonl(path) == [{"step": 1, "loss": None, "g": {"a": None}}]
    with open(path, "a") as f:
        f.write('garbage\n{"step": 9}\n')
    with pytest.raises(writer.RunDirError, match="m.jsonl line 2 is not valid JSON"):
        schema.read_jsonl(path)


def _snapshot(path):
    return {
        name: (
            os.path.getmtime(os.path.join(path, name)),
            os.path.getsize(os.path.join(path, name)),
        )
        for name in sorted(os.listdir(path))
    }


def test_a_live_owner_keeps_a_second_writer_out_even_with_overwrite(tmp_path):
    run = str(tmp_path / "run")
    assert _open(run, _cfg(a=1)) == "new"
    owner = live_owner(run)
    try:
        before = _snapshot(run)
        for overwrite in (False, True):
            with pytest.raises(writer.RunDirError) as e:
                _open(run, _cfg(a=1), overwrite=overwrite)
            message = str(e.value)
            assert f"pid {owner.pid}" in message and run in message
            assert "\n" not in message
        assert _snapshot(run) == before  # nothing touched
    finally:
        owner.kill()
        owner.wait()
    # The owner died (SIGKILL): its lock went with it, and the run resumes
    # although status.json still names it.
    assert (
        json.load(open(os.path.join(run, "status.json")))["owner"]["pid"] == owner.pid
    )
    assert _open(run, _cfg(a=1)) == "resume"


def test_an_owner_on_another_host_counts_while_its_heartbeat_is_fresh(tmp_path):
    run = str(tmp_path / "run")
    assert _open(run, _cfg(a=1)) == "new"

    def status(heartbeat):
        owner = schema.Owner(4242, socket.gethostname() + "-elsewhere", heartbeat)
        schema.write_json(
            os.path.join(run, "status.json"),
            schema.Status("running", 3, "at step 3", owner=owner).to_json(),
        )

    status(time.time())
    with pytest.raises(writer.RunDirError, match="pid 4242 on .*-elsewhere"):
        _open(run, _cfg(a=1))
    status(time.time() - writer.HEARTBEAT_STALE_SECONDS - 1)  # long dead
    assert _open(run, _cfg(a=1)) == "resume"


def test_the_writer_records_its_owner_while_running_only(tmp_path):
    run = str(tmp_path / "run")
    run_dir = writer.claim(run)
    run_dir.open(_cfg(a=1), overwrite=False)
    run_dir.write_status("running", 0, "started")
    status = schema.Status.from_json(schema.read_json(os.path.join(run, "status.json")))
    assert status.owner.pid == os.getpid()
    assert status.owner.host == socket.gethostname()
    assert abs(status.owner.heartbeat - time.time()) < 60
    with pytest.raises(writer.RunDirError, match="in use by a live run"):
        writer.claim(run)  # this very process holds it
    run_dir.write_status("completed", 5, "done")
    run_dir.release()
    status = schema.Status.from_json(schema.read_json(os.path.join(run, "status.json")))
    assert status.owner is None
    writer.claim(run).release()  # free again

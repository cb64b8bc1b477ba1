"""The experiment suite: every claim's runs over seeds, then a verdict each.

    python -m trainers.suite --suite=quick --output_dir=runs/quick \
        [--only=C6,C8] [--seeds=3] [--scale=quick|paper] [--workers=2] \
        [--executor=local|ray] [--ray_address=HOST:PORT]
    python -m trainers.suite --suite=optimizers --output_dir=runs/opt \
        [--problems=deep_sigmoid_mlp,lstm_adding] [--budget=small|large]

The claims are declared in analysis/claims.py. The suite expands them into
jobs: training runs, each an ordinary run directory named from its resolved
config (model-task-seed plus a short hash of the config JSON) and started
as its own process `python -m trainers.train --config=<json> --output_dir=
<dir>`, and probes (`python -m analysis.probes`, for claims that need no
training). Jobs run in parallel, N at a time with TensorFlow's thread pools
pinned to cores / N, each under a hard timeout, on a local pool or as Ray
tasks. Then `ledger.json` is rebuilt from the run directories alone
(analysis/verdicts.py) and printed as a table.

A claim with a study (C12, analysis/optimizers.py) is expanded in stages:
each optimizer's default and learning-rate grid runs up front, and its
tuned runs (the best grid rate over new seeds) as soon as its grid has
ended, decided from the grid's run directories; being named from their
resolved configs, they are found again on a re-run like any other run.

Running it again reuses completed and diverged runs, resumes dead ones from
their checkpoints (the trainer does that itself) and leaves runs with a live
owner (another suite on the same folder) alone, waiting for them to end.

Tested by tests/trainers/test_suite.py.
"""

import collections
import concurrent.futures
import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from analysis import cli, optimizers, schema, verdicts  # noqa: E402
from analysis.claims import SCALES, SUITES  # noqa: E402

# The suite's own flags, apart from absl's global FLAGS: trainers.train's
# flags (output_dir, data_dir) live there, and both mains may be imported in
# one process (the tests).
FLAGS = flags.FlagValues()
_SUITE = flags.DEFINE_string(
    "suite", "quick", f"One of: {', '.join(SUITES)}.", flag_values=FLAGS
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "The suite's folder.", flag_values=FLAGS
)
_ONLY = flags.DEFINE_list(
    "only", [], "Only these claims, e.g. C6,C8.", flag_values=FLAGS
)
_SEEDS = flags.DEFINE_integer(
    "seeds", None, "Seeds per claim (default: as declared).", flag_values=FLAGS
)
_SCALE = flags.DEFINE_string(
    "scale", "quick", f"One of: {', '.join(SCALES)}.", flag_values=FLAGS
)
_WORKERS = flags.DEFINE_integer("workers", 1, "Runs at a time.", flag_values=FLAGS)
_OVERSUBSCRIBE = flags.DEFINE_bool(
    "oversubscribe", False, "Allow more workers than cores.", flag_values=FLAGS
)
_EXECUTOR = flags.DEFINE_string("executor", "local", "local or ray.", flag_values=FLAGS)
_RAY_ADDRESS = flags.DEFINE_string(
    "ray_address",
    None,
    "HOST:PORT of a Ray cluster to join (--executor=ray).",
    flag_values=FLAGS,
)
# An hour: on a shared 2-core machine, tracing the step of C14's 100-block
# nets alone took 4-8 minutes per step variant, and a run killed before its
# first checkpoint after step 0 restarts its tracing on every retry.
RUN_TIMEOUT_SECONDS = 3600.0
_RUN_TIMEOUT = flags.DEFINE_float(
    "run_timeout_seconds",
    RUN_TIMEOUT_SECONDS,
    "Hard timeout of one run (then SIGTERM).",
    flag_values=FLAGS,
)
_PROBLEMS = flags.DEFINE_list(
    "problems",
    [],
    "--suite=optimizers: only these problems (default: all, "
    f"{', '.join(optimizers.PROBLEMS)}).",
    flag_values=FLAGS,
)
_BUDGET = flags.DEFINE_string(
    "budget",
    None,
    f"--suite=optimizers: one of {', '.join(optimizers.BUDGETS)} (default "
    "small): learning rates in the grid and seeds of the tuned rate.",
    flag_values=FLAGS,
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data directory for the runs.", flag_values=FLAGS
)

MANIFEST_FILE = "suite.json"
LEDGER_FILE = "ledger.json"
CONFIGS_DIR = "configs"
LOGS_DIR = "logs"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXIT_TIMEOUT = -999  # our code for "killed at the hard timeout"
LIVE_RETRY_SECONDS = 2.0


class SuiteError(ValueError):
    """A user mistake; the message is one line."""


# ---------------------------------------------------------------------------
# Planning: declarations -> jobs.


@dataclasses.dataclass(frozen=True)
class Job:
    """One run or probe: a directory name and the command that fills it."""

    name: str
    kind: str  # "train", "pretrain" or "probe"
    spec: dict  # resolved RunConfig / PretrainConfig fields, or {"probe": ...}
    seed: int
    seconds: float = dataclasses.field(default=0.0, compare=False)  # Scale's

    def path(self, root: str) -> str:
        return os.path.join(root, self.name)

    def config_path(self, root: str) -> str:
        """The --config file of a training job (written by check_manifest)."""
        return os.path.join(root, CONFIGS_DIR, self.name + ".json")

    def argv(self, root: str, data_dir: str | None) -> list[str]:
        if self.kind == "probe":
            args = {k: v for k, v in self.spec.items() if k != "probe"}
            return [
                sys.executable,
                "-m",
                "analysis.probes",
                f"--probe={self.spec['probe']}",
                f"--seed={self.seed}",
                f"--args={json.dumps(args, sort_keys=True)}",
                f"--output_dir={self.path(root)}",
            ]
        argv = [
            sys.executable,
            "-m",
            MAINS[self.kind],
            f"--config={self.config_path(root)}",
            f"--output_dir={self.path(root)}",
        ]
        return argv + ([f"--data_dir={data_dir}"] if data_dir else [])


def _short_hash(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# The command that runs each kind of training job from its --config file.
MAINS = {"train": "trainers.train", "pretrain": "trainers.pretrain"}


def make_job(arm: dict, seed: int) -> Job:
    """The job of one arm and seed, named from its resolved config.

    An arm is RunConfig fields (a trainers.train run), RunConfig fields plus
    `pretraining`: {PretrainConfig fields but `run`} (a trainers.pretrain
    run: phase 1, then `num_steps` of fine-tuning), or a probe.
    """
    if "probe" in arm:
        spec = dict(arm)
        return Job(
            f"probe-{spec['probe']}-s{seed}-{_short_hash(spec)}", "probe", spec, seed
        )
    from trainers.config import NOT_COMPARED, PretrainConfig, RunConfig

    fields = {k: v for k, v in arm.items() if k != "pretraining"}
    run = RunConfig.from_dict({**fields, "seed": seed})
    if "pretraining" in arm:
        pretrain = PretrainConfig.from_dict({**arm["pretraining"], "run": run})
        config = pretrain.resolved().to_dict()
        run_spec = {k: v for k, v in config["run"].items() if k not in NOT_COMPARED}
        spec, kind, prefix = {**config, "run": run_spec}, "pretrain", "pretrain-"
        names = config["run"]
    else:
        config = run.resolved().to_dict()
        spec = {k: v for k, v in config.items() if k not in NOT_COMPARED}
        kind, prefix, names = "train", "", config
    return Job(
        f"{prefix}{names['model']}-{names['task']}-s{seed}-{_short_hash(spec)}",
        kind,
        spec,
        seed,
    )


@dataclasses.dataclass
class StudyPlan:
    """A study's runs (analysis/optimizers.py): the defaults and grids known
    up front, each optimizer's tuned runs once its grid has ended.

    `layout` is {problem: {optimizer: {"default": name, "grid": {rate:
    name}, "seeds": {seed: name}}}}, "seeds" filled by `more`.
    """

    study: object  # optimizers.Study
    problems: tuple
    budget: str
    seeds: int
    layout: dict

    def declaration(self) -> dict:
        return {"study": self.study.declaration(self.problems, self.budget)}

    def first_jobs(self) -> list:
        jobs = []
        for name in self.problems:
            problem = self.study.problems[name]
            self.layout[name] = {}
            for opt in self.study.optimizers:
                seed = optimizers.TUNING_SEED
                default = make_job(optimizers.default_arm(problem, opt), seed)
                grid = {
                    rate: make_job(optimizers.rate_arm(problem, opt, rate), seed)
                    for rate in self.study.grid(self.budget)
                }
                jobs += [default, *grid.values()]
                self.layout[name][opt] = {
                    "default": default.name,
                    "grid": {rate: job.name for rate, job in grid.items()},
                    "seeds": {},
                }
        return jobs

    def more(self, root: str) -> list:
        """The tuned runs of every optimizer whose grid has just ended."""
        jobs = []
        for name, by_opt in self.layout.items():
            problem = self.study.problems[name]
            for opt, runs in by_opt.items():
                if runs["seeds"]:
                    continue
                grid = {r: os.path.join(root, n) for r, n in runs["grid"].items()}
                try:
                    rate = optimizers.best_rate(problem, grid)
                except verdicts.RunProblem:
                    continue  # a failed grid run: the ledger says so
                if rate is None:
                    continue
                for seed in range(1 + optimizers.TUNING_SEED, 1 + self.seeds):
                    job = make_job(optimizers.rate_arm(problem, opt, rate), seed)
                    runs["seeds"][seed] = job.name
                    jobs.append(job)
        return jobs

    def paths(self, root: str) -> dict:
        def join(names):
            if isinstance(names, dict):
                return {k: join(v) for k, v in names.items()}
            return os.path.join(root, names)

        return join(self.layout)


@dataclasses.dataclass
class Plan:
    claims: dict  # id -> Claim
    scale: str
    jobs: dict  # name -> Job
    seed_paths: dict  # claim id -> {seed: {arm: job name}}
    studies: dict = dataclasses.field(default_factory=dict)  # id -> StudyPlan

    def queue(self) -> list:
        """Job names in the order they start: the longest declared first,
        then in plan order."""
        return sorted(self.jobs, key=lambda name: -self.jobs[name].seconds)

    def more(self, root: str) -> list:
        """Jobs that the runs ended so far make known (a study's later stage)."""
        return [job for sp in self.studies.values() for job in sp.more(root)]


def plan(
    claims: dict,
    scale: str,
    seeds: int | None,
    problems: tuple = (),
    budget: str = "small",
) -> Plan:
    """Expands the claims' declarations at `scale` into jobs (shared runs once).

    A study's first stage is planned here; its later jobs come from
    `Plan.more` as its runs end.

    Raises:
      SuiteError: a declared run that does not resolve (a bug in the table).
    """
    jobs, seed_paths, studies = {}, {}, {}
    for cid, claim in claims.items():
        seed_paths[cid] = {}
        if claim.pending:
            continue
        if claim.study is not None:
            sp = StudyPlan(
                claim.study,
                tuple(problems or claim.study.problems),
                budget,
                seeds or claim.study.budgets[budget].seeds,
                {},
            )
            try:
                jobs.update((j.name, j) for j in sp.first_jobs())
            except ValueError as e:
                raise SuiteError(f"claim {cid}: {e}") from None
            studies[cid] = sp
            continue
        declared = claim.scales[scale]
        for seed in range(seeds or declared.seeds):
            arms = {}
            for arm, fields in declared.arms.items():
                try:
                    job = make_job(dict(fields), seed)
                except ValueError as e:
                    raise SuiteError(f"claim {cid} arm {arm}: {e}") from None
                seconds = max(declared.seconds, jobs.get(job.name, job).seconds)
                jobs[job.name] = dataclasses.replace(job, seconds=seconds)
                arms[arm] = job.name
            seed_paths[cid][seed] = arms
    return Plan(claims, scale, jobs, seed_paths, studies)


def check_manifest(root: str, suite: str, p: Plan) -> None:
    """Refuses a folder holding runs declared differently; records ours.

    suite.json keeps each claim's declaration (arms and criterion, not the
    number of seeds: more seeds only add runs). Suites started together on
    one folder take turns here, under a lock (flock) on the folder itself:
    without it, one could find the folder the other had just begun to fill,
    with no suite.json yet, and refuse it.
    """
    if os.path.exists(root) and not os.path.isdir(root):
        raise SuiteError(f"output_dir {root} is a file; choose a directory")
    os.makedirs(root, exist_ok=True)
    fd = os.open(root, os.O_RDONLY)  # the lock is the folder: no file is added
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for milliseconds
        _check_and_write_manifest(root, suite, p)
    finally:
        os.close(fd)


def _check_and_write_manifest(root: str, suite: str, p: Plan) -> None:
    path = os.path.join(root, MANIFEST_FILE)
    ours = {
        cid: p.studies[cid].declaration()
        if cid in p.studies
        else c.declaration(p.scale)
        for cid, c in p.claims.items()
    }
    if not os.path.exists(path) and any(
        not n.startswith(".") for n in os.listdir(root)
    ):
        raise SuiteError(
            f"output_dir {root} is not empty and holds no suite ({MANIFEST_FILE}); "
            "choose another directory"
        )
    old = None
    if os.path.exists(path):
        try:
            old = schema.read_json(path)
        except (OSError, ValueError) as e:
            raise SuiteError(f"{path} is unreadable ({e})") from None
    if old is not None:
        if old.get("suite") != suite or old.get("scale") != p.scale:
            raise SuiteError(
                f"output_dir {root} holds suite '{old.get('suite')}' at scale "
                f"'{old.get('scale')}', not '{suite}' at '{p.scale}'; use another "
                "--output_dir"
            )
        for cid, decl in ours.items():
            if cid in old["claims"] and old["claims"][cid] != json.loads(
                json.dumps(decl)
            ):
                raise SuiteError(
                    f"output_dir {root} holds runs of claim {cid} declared "
                    "differently (its arms or criterion changed); use another "
                    "--output_dir"
                )
        ours = {**old["claims"], **ours}
    os.makedirs(os.path.join(root, CONFIGS_DIR), exist_ok=True)
    os.makedirs(os.path.join(root, LOGS_DIR), exist_ok=True)
    schema.write_json(path, {"suite": suite, "scale": p.scale, "claims": ours})
    for job in p.jobs.values():
        write_job_config(root, job)


def write_job_config(root: str, job: Job) -> None:
    """The --config file a training or pretraining job starts from."""
    if job.kind in MAINS:
        cfg = job.config_path(root)
        if not os.path.exists(cfg):
            schema.write_json(cfg, job.spec)


# ---------------------------------------------------------------------------
# The state of a job on disk.


def job_state(root: str, job: Job) -> str:
    """done (completed or diverged), live (another process writes it), or todo."""
    path = job.path(root)
    if job.kind == "probe":
        done = os.path.exists(os.path.join(path, verdicts.EVIDENCE_FILE))
        return "done" if done else "todo"
    status = read_status(path)
    if status is None:
        return "todo"
    if status.state in ("completed", "diverged"):
        return "done"
    if status.state == "running" and _owner_alive(status.owner):
        return "live"
    return "todo"  # failed, or running with a dead owner: resume


def job_lock(root: str, name: str) -> int | None:
    """This suite's claim on starting job `name`, or None if another suite on
    this host holds it.

    The run directory's own owner (trainers/writer.py) keeps two trainers
    out, but a suite that checked a run before another suite's trainer
    started could otherwise start it again after that trainer finished;
    holding this lock from the check until the process ends closes that
    gap (and covers probes, which have no owner).
    """
    fd = os.open(
        os.path.join(root, LOGS_DIR, f".{name}.lock"), os.O_RDWR | os.O_CREAT, 0o644
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def read_status(path: str):
    try:
        return schema.Status.from_json(
            schema.read_json(os.path.join(path, schema.STATUS_FILE))
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _owner_alive(owner) -> bool:
    if owner is None:
        return False
    if owner.host != socket.gethostname():  # as trainers/writer.py judges it
        from trainers.writer import HEARTBEAT_STALE_SECONDS

        return time.time() - owner.heartbeat < HEARTBEAT_STALE_SECONDS
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------
# Executing one job: a process with pinned threads and a hard timeout.


def job_env(threads: int) -> dict:
    """The environment of a run: our code first, TensorFlow's pools pinned."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": ROOT + (os.pathsep + path if path else ""),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


_CHILDREN: set = set()
_CHILDREN_LOCK = threading.Lock()


def run_process(argv, env, log_path, timeout) -> tuple[int, str]:
    """Runs one job; returns (exit code or EXIT_TIMEOUT, last line of its log)."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, cwd=ROOT)
        with _CHILDREN_LOCK:
            _CHILDREN.add(proc)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the trainer records "failed"
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc = EXIT_TIMEOUT
        finally:
            with _CHILDREN_LOCK:
                _CHILDREN.discard(proc)
    return rc, _last_line(log_path)


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4000))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""
    except OSError:
        return ""


def _ray_job(argv, env, log_path, timeout):
    """A Ray task: the job as a process, threads from the task's CPU allotment."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return run_process(
        argv, {**env, **_threads_env(max(1, int(cpus)))}, log_path, timeout
    )


def _threads_env(threads: int) -> dict:
    return {
        k: str(threads)
        for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
    }


class LocalExecutor:
    """A pool of `workers` threads, each waiting on one job's process."""

    def __init__(self, workers: int, threads: int):
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)
        self.env = job_env(threads)

    def submit(self, argv, log_path, timeout):
        return self.pool.submit(run_process, argv, self.env, log_path, timeout)

    def shutdown(self):
        with _CHILDREN_LOCK:
            children = list(_CHILDREN)
        for proc in children:  # Ctrl-C: the runs record "failed", resumable
            proc.send_signal(signal.SIGTERM)
        for proc in children:
            proc.wait()
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Each job a Ray task: one CPU, a fresh worker process (max_calls=1)."""

    def __init__(self, workers: int, address: str | None):
        # Quiet the core worker's C++ retry warnings; errors still surface.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        import ray

        self.ray = ray
        runtime_env = {"env_vars": {"PYTHONPATH": ROOT}}
        if address:
            _join_within(ray, address, runtime_env, RAY_CONNECT_SECONDS)
        else:
            ray.init(
                num_cpus=workers,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env=runtime_env,
            )
        # By reference, not by value: run as `python -m trainers.suite` this
        # module is __main__, whose functions Ray would pickle with their
        # globals (a lock among them). Workers import it via PYTHONPATH.
        from trainers.suite import _ray_job as job

        self.remote = ray.remote(num_cpus=1, max_calls=1)(job)
        self.env = job_env(1)

    def submit(self, argv, log_path, timeout):
        return self.remote.remote(argv, self.env, log_path, timeout).future()

    def shutdown(self):
        self.ray.shutdown()


RAY_CONNECT_SECONDS = 8.0


class RayUnreachable(SuiteError):
    """ray.init is still waiting on the address (it retries for a minute)."""


def _join_within(ray, address, runtime_env, seconds) -> None:
    """ray.init(address=...) or RayUnreachable after `seconds`: a port that
    accepts TCP but is no Ray head would otherwise keep ray.init retrying."""
    box = {}

    def join():
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - reported as one line
            box["error"] = e

    # Ray prints its connection retries on stderr: keep them in a file, so
    # a failure is our one line.
    saved = os.dup(2)
    with tempfile.TemporaryFile() as noise:
        os.dup2(noise.fileno(), 2)
        try:
            thread = threading.Thread(target=join, daemon=True)
            thread.start()
            thread.join(seconds)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    if thread.is_alive():
        raise RayUnreachable(
            f"Ray cluster at {address} did not answer within {seconds:g} s "
            "(is it a Ray head's GCS port? with token auth, set RAY_AUTH_MODE="
            "token and the token; see BUILD.md)"
        )
    if "error" in box:
        raise box["error"]


def check_ray(address: str | None) -> None:
    """Fails at once, in one line, without Ray or with an unreachable address."""
    if importlib.util.find_spec("ray") is None:
        raise SuiteError(
            "--executor=ray needs Ray: pip install gradzoo[ray]  "
            '(or pip install "ray[default]==2.60.*")'
        )
    if address:
        host, _, port = address.rpartition(":")
        if not (host and port.isdigit()):
            raise SuiteError(f"--ray_address must be HOST:PORT. Received: {address}")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as e:
            raise SuiteError(
                f"Ray cluster at {address} is unreachable ({e.strerror or e})"
            ) from None


# ---------------------------------------------------------------------------
# The scheduler: jobs -> executor, with a progress line.


@dataclasses.dataclass
class Outcome:
    state: str  # done, failed, live (left to its owner)
    seconds: float
    message: str = ""


def execute(root, p: Plan, executor, workers, timeout, data_dir, out=sys.stdout):
    """Runs every job not yet done; returns {name: Outcome} of this session.

    Jobs start in `p.queue()` order (the longest declared first). Whenever
    jobs end, `p.more` may add jobs they decide (a study's tuned runs);
    those go to the front of the queue.
    """
    todo = collections.deque(p.queue())
    outcomes, running, waiting = {}, {}, {}
    started_at = time.time()
    durations = []

    shown = [None, 0.0]  # the last counts printed, and when

    def progress(final=False):
        done = sum(o.state == "done" for o in outcomes.values())
        failed = sum(o.state == "failed" for o in outcomes.values())
        counts = (done, len(running), failed, len(waiting))
        # A line when something changed, else every 30 s (logs stay short).
        stale = time.time() - shown[1] >= 30
        if counts == shown[0] and (final or not stale):
            return
        shown[:] = [counts, time.time()]
        left = len(todo) + len(running) + len(waiting)
        eta = ""
        if durations and left:
            mean = sum(durations) / len(durations)
            eta = f", ETA {_clock(mean * left / max(1, workers))}"
        out.write(
            f"runs: {done}/{len(p.jobs)} done, {len(running)} running, "
            f"{failed} failed, {len(waiting)} waiting on another owner; "
            f"{_clock(time.time() - started_at)} elapsed{eta}\n"
        )
        out.flush()

    ended = len(outcomes) + 1  # ask p.more once before anything ends
    while todo or running or waiting:
        now = time.time()
        for name, due in list(waiting.items()):
            if now >= due:
                del waiting[name]
                todo.append(name)
        while todo and len(running) < workers:
            name = todo.popleft()
            job = p.jobs[name]
            lock = job_lock(root, name)
            state = job_state(root, job) if lock is not None else "live"
            if state != "todo" and lock is not None:
                os.close(lock)
            if state == "done":
                outcomes[name] = Outcome("done", 0.0, "reused")
                continue
            if state == "live":
                waiting[name] = now + LIVE_RETRY_SECONDS
                continue
            log = os.path.join(root, LOGS_DIR, name + ".log")
            future = executor.submit(job.argv(root, data_dir), log, timeout)
            running[name] = (future, time.time(), lock)
        for name, (future, t0, lock) in list(running.items()):
            if not future.done():
                continue
            del running[name]
            os.close(lock)
            rc, last = future.result()
            seconds = time.time() - t0
            if rc == cli.EXIT_USAGE and "live run" in last:
                waiting[name] = time.time() + LIVE_RETRY_SECONDS
                continue
            durations.append(seconds)
            if rc in (cli.EXIT_OK, cli.EXIT_DIVERGED):
                outcomes[name] = Outcome("done", seconds, last)
            elif rc == EXIT_TIMEOUT:
                outcomes[name] = Outcome(
                    "failed", seconds, f"timed out after {timeout:g} s"
                )
            else:
                outcomes[name] = Outcome("failed", seconds, f"exit {rc}: {last}")
        if len(outcomes) != ended:
            ended = len(outcomes)
            for job in p.more(root):
                if job.name not in p.jobs:
                    p.jobs[job.name] = job
                    write_job_config(root, job)
                    # First: they complete a result (an optimizer's tuned runs).
                    todo.appendleft(job.name)
        progress()
        time.sleep(0.2)
    progress(final=True)
    return outcomes


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


# ---------------------------------------------------------------------------
# The ledger: rebuilt from the run directories alone.


def build_ledger(root: str, suite: str, p: Plan) -> dict:
    claims = []
    for cid, claim in p.claims.items():
        if cid in p.studies:
            claims.append(_study_entry(root, cid, claim, p.studies[cid]))
            continue
        seed_paths = {
            seed: {arm: os.path.join(root, name) for arm, name in arms.items()}
            for seed, arms in p.seed_paths[cid].items()
        }
        v = verdicts.judge(claim, seed_paths)
        scale = claim.scales.get(p.scale)
        claims.append(
            {
                "id": cid,
                "statement": claim.statement,
                "source": claim.source,
                "criterion": claim.criterion.text if claim.criterion else None,
                "calibration": claim.criterion.calibration if claim.criterion else None,
                "expected": claim.expected,
                "note": scale.note if scale else "",
                "runs": {str(s): arms for s, arms in p.seed_paths[cid].items()},
                **v.to_json(),
            }
        )
    runs = {}
    for name, job in sorted(p.jobs.items()):
        status = read_status(job.path(root))
        runs[name] = (
            {"state": status.state, "step": status.step, "message": status.message}
            if status
            else {"state": "missing", "step": 0, "message": "not run"}
        )
    return {"suite": suite, "scale": p.scale, "claims": claims, "runs": runs}


def _study_entry(root: str, cid: str, claim, sp: StudyPlan) -> dict:
    study = optimizers.study_results(sp.study, sp.paths(root), sp.budget)
    return {
        "id": cid,
        "statement": claim.statement,
        "source": claim.source,
        "criterion": "a winner only where tuned spreads [min, max] over seeds "
        "do not overlap; holds if Adam wins so on every problem, does not hold "
        "if another optimizer beats Adam so on one",
        "calibration": None,
        "expected": claim.expected,
        "note": "",
        "runs": sp.layout,
        "verdict": study.pop("verdict"),
        "reason": study.pop("reason"),
        "seeds": [],
        "summary": {},
        "study": study,
    }


def _num(v) -> str:
    if isinstance(v, (int, float)):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def format_ledger(ledger: dict) -> str:
    lines = [f"suite {ledger['suite']} at scale {ledger['scale']}", ""]
    for c in ledger["claims"]:
        lines.append(f"{c['id']}  {c['statement']}")
        lines.append(f"    source: {c['source']}")
        if c["criterion"]:
            lines.append(f"    criterion: {c['criterion']}")
            lines.append(f"    calibration: {c['calibration']}")
        for s in c["seeds"]:
            if s["values"] is None:
                lines.append(f"    seed {s['seed']}: {s['problem']}")
            else:
                vals = ", ".join(f"{k}={_num(v)}" for k, v in s["values"].items())
                mark = "holds" if s["holds"] else "does not hold"
                lines.append(f"    seed {s['seed']}: {mark}: {vals}")
        if c.get("study"):
            lines.append(optimizers.format_study(c["study"]))
        m = c["summary"]
        if m:
            lines.append(
                f"    {m['value']}: median {_num(m['median'])} "
                f"[{_num(m['min'])}, {_num(m['max'])}]"
            )
        lines.append(
            f"    verdict: {c['verdict'].upper()} ({c['reason']}); "
            f"expected: {c['expected']}"
        )
        if c["note"]:
            lines.append(f"    note: {c['note']}")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The main.


def select_claims(suite: str, only, scale: str) -> dict:
    if suite not in SUITES:
        raise SuiteError(f"Unknown suite '{suite}'. Known: {', '.join(SUITES)}.")
    if scale not in SCALES:
        raise SuiteError(f"Unknown scale '{scale}'. Known: {', '.join(SCALES)}.")
    table = SUITES[suite]
    unknown = [c for c in only if c not in table]
    if unknown:
        raise SuiteError(
            f"Unknown claim {', '.join(unknown)} in suite '{suite}'. "
            f"Known: {', '.join(table)}."
        )
    return {cid: table[cid] for cid in (only or table)}


def check_study(claims: dict, problems, budget) -> None:
    studies = [c.study for c in claims.values() if c.study is not None]
    if not studies:
        if problems or budget:
            raise SuiteError("--problems and --budget apply to --suite=optimizers")
        return
    for study in studies:
        unknown = [x for x in problems if x not in study.problems]
        if unknown:
            raise SuiteError(
                f"Unknown problem {', '.join(unknown)}. "
                f"Known: {', '.join(study.problems)}."
            )
        if budget is not None and budget not in study.budgets:
            raise SuiteError(
                f"Unknown budget '{budget}'. Known: {', '.join(study.budgets)}."
            )


def cores() -> int:
    return len(os.sched_getaffinity(0))


def check_workers(workers: int, oversubscribe: bool) -> None:
    if workers < 1:
        raise SuiteError(f"--workers must be >= 1. Received: {workers}")
    if workers > cores() and not oversubscribe:
        raise SuiteError(
            f"--workers={workers} is more than the {cores()} cores; add "
            "--oversubscribe to allow it"
        )


@dataclasses.dataclass
class Options:
    """Everything the command line sets; `run_suite` takes it flag-free."""

    output_dir: str
    suite: str = "quick"
    only: tuple = ()
    seeds: int | None = None
    scale: str = "quick"
    workers: int = 1
    oversubscribe: bool = False
    executor: str = "local"
    ray_address: str | None = None
    run_timeout_seconds: float = RUN_TIMEOUT_SECONDS
    data_dir: str | None = None
    problems: tuple = ()  # a study's problems (default: all)
    budget: str | None = None  # a study's budget (default: small)


def prepare(o: Options) -> tuple[str, Plan]:
    """Checks every option and the folder; returns (root, plan). No run starts.

    Raises:
      SuiteError: a user mistake, in one line.
    """
    claims = check_options(o)
    root = os.path.abspath(os.path.expanduser(o.output_dir))
    p = plan(claims, o.scale, o.seeds, tuple(o.problems), o.budget or "small")
    check_manifest(root, o.suite, p)
    return root, p


def check_options(o: Options) -> dict:
    """The cheap checks (no TensorFlow, no folder); returns the claims."""
    claims = select_claims(o.suite, list(o.only), o.scale)
    if o.seeds is not None and o.seeds < 1:
        raise SuiteError(f"--seeds must be >= 1. Received: {o.seeds}")
    if o.executor not in ("local", "ray"):
        raise SuiteError(f"Unknown executor '{o.executor}'. Known: local, ray.")
    if o.ray_address and o.executor != "ray":
        raise SuiteError("--ray_address needs --executor=ray")
    check_study(claims, o.problems, o.budget)
    check_workers(o.workers, o.oversubscribe or bool(o.ray_address))
    if o.executor == "ray":
        check_ray(o.ray_address)
    return claims


def run_suite(o: Options, out=sys.stdout) -> dict:
    """Runs what is not done yet, then writes and prints the ledger.

    Raises:
      SuiteError: a user mistake (before any run starts), or Ray failing to
        start or join.
    """
    check_options(o)
    if o.executor == "ray":  # join first: an unusable address fails fast
        try:
            executor = RayExecutor(o.workers, o.ray_address)
        except RayUnreachable:
            raise
        except Exception as e:  # noqa: BLE001 - Ray's own errors, as one line
            raise SuiteError(
                f"cannot start or join Ray: {str(e).strip().splitlines()[0]}"
            ) from None
    try:
        root, p = prepare(o)
    except BaseException:
        if o.executor == "ray":
            executor.shutdown()
        raise
    if o.executor != "ray":
        executor = LocalExecutor(o.workers, max(1, cores() // o.workers))
    out.write(
        f"suite {o.suite}: {len(p.claims)} claims, {len(p.jobs)} runs, "
        f"{o.workers} workers ({o.executor}), output {root}\n"
    )
    try:
        outcomes = execute(
            root, p, executor, o.workers, o.run_timeout_seconds, o.data_dir, out
        )
    finally:
        executor.shutdown()
    ledger = build_ledger(root, o.suite, p)
    ledger["session"] = {
        name: dataclasses.asdict(x) for name, x in sorted(outcomes.items())
    }
    verdicts.write_ledger(os.path.join(root, LEDGER_FILE), ledger)
    out.write("\n" + format_ledger(ledger) + "\n")
    out.write(f"ledger: {os.path.join(root, LEDGER_FILE)}\n")
    return ledger


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's kill: as Ctrl-C
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _OUTPUT_DIR.value:
        cli.fail("--output_dir is required")
    o = Options(
        output_dir=_OUTPUT_DIR.value,
        suite=_SUITE.value,
        only=tuple(_ONLY.value),
        seeds=_SEEDS.value,
        scale=_SCALE.value,
        workers=_WORKERS.value,
        oversubscribe=_OVERSUBSCRIBE.value,
        executor=_EXECUTOR.value,
        ray_address=_RAY_ADDRESS.value,
        run_timeout_seconds=_RUN_TIMEOUT.value,
        data_dir=_DATA_DIR.value,
        problems=tuple(_PROBLEMS.value),
        budget=_BUDGET.value,
    )
    try:
        run_suite(o)
    except RayUnreachable as e:
        # ray.init's thread cannot be stopped, and Ray's exit handlers would
        # wait for it: leave at once.
        sys.stderr.write(f"error: {e}\n")
        sys.stderr.flush()
        os._exit(cli.EXIT_USAGE)
    except SuiteError as e:
        cli.fail(e)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: run the same command again to resume\n")
        sys.exit(cli.EXIT_INTERRUPTED)


def _parse(argv):
    """The suite's flags, then absl's own (logging) at their defaults.

    --help / --helpfull print the suite's flags and exit 0.
    """
    if any(a in cli.HELP_FLAGS for a in argv[1:]):
        sys.stdout.write(f"{FLAGS.get_help()}\n")
        sys.exit(cli.EXIT_OK)
    try:
        rest = FLAGS(argv)
        flags.FLAGS(argv[:1])
    except flags.Error as e:
        cli.fail(e)
    return rest


def run_main():
    """Console-script entry point (gradzoo-suite)."""
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    run_main()

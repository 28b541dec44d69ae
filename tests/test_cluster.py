"""sweep.py and extract.py on a Ray cluster of several nodes: Ray's own multi-node test
cluster (ray.cluster_utils.Cluster), a head without CPUs and two worker nodes of 1 CPU each,
every one bound to 127.0.0.1, one cluster for the module. The trials and videos run on both
worker nodes, each records its node, a node removed mid-task has its task redone on the
other, a killed driver's sweep resumes; a wrong address is one line within 30 s."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pandas as pd
import pytest

import extract
import sweep
from core.cli import cli
from core.errors import InputError
from core.safe_load import read_json
from sweeps import cluster as ray_cluster
from sweeps import trials
from run import trial_work
from test_extract_frames import constant_rate, write_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOP = "127.0.0.1"
HEALTH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 200,
          "health_check_timeout_ms": 200, "health_check_failure_threshold": 5}
SMALL = 80 * 2 ** 20                                  # each node's object store
RUN = ["--synthetic-videos", "16", "--synthetic-max-seconds", "60", "--no-tensorboard",
       "--no-report", "--dry-run", "--threads", "1", "--val-fraction", "0.25"]
GRID = ["--grid", "gamma=0.1,0.2", "--seeds", "1", "2", *RUN]
NAMES = [f"gamma={g}_seed={s}" for g in ("0.1", "0.2") for s in (1, 2)]


@pytest.fixture(scope="module")
def env():
    """Ray on the loopback only, in a temp folder of its own (no other Ray here is found
    or disturbed); the variables every command of this module runs with."""
    import ray._private.ray_constants as constants
    tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")      # short: Ray's socket paths
    os.makedirs(os.path.join(tmp, "ray"))
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    os.environ.update(RAY_TMPDIR=tmp, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    was, constants.ENABLE_RAY_CLUSTER = constants.ENABLE_RAY_CLUSTER, False
    yield {**os.environ}, tmp
    constants.ENABLE_RAY_CLUSTER = was
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    shutil.rmtree(tmp, ignore_errors=True)                  # Ray's session logs


@pytest.fixture(scope="module")
def cluster(env):
    from ray.cluster_utils import Cluster
    _, tmp = env
    c = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=0, node_ip_address=LOOP, include_dashboard=False, object_store_memory=SMALL,
        temp_dir=os.path.join(tmp, "ray"), _system_config=HEALTH))
    for _ in range(2):
        add_worker(c)
    yield c
    c.shutdown()


def add_worker(c, **resources):
    return c.add_node(num_cpus=1, node_ip_address=LOOP, object_store_memory=SMALL, **resources)


def workers_of(c):
    """{node id: node} of the worker nodes alive."""
    return {n.node_id: n for n in c.worker_nodes}


def command(env, script, *args, **popen):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                            env=env[0], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def metrics(folder, name):
    with open(os.path.join(folder, "trials", name, "metrics.json")) as f:
        return json.load(f)


def rerun_resumes_one_finished(env, args, out, ref):
    """One of the first two trials finished when the sweep was stopped; the same command
    again skips it, finishes the rest, and every metric equals the undisturbed run's."""
    finished = [n for n in NAMES[:2] if (out / "trials" / n / "metrics.json").exists()]
    assert len(finished) == 1
    code, stdout, stderr = finish(command(env, "sweep.py", *args))
    assert code == 0, stderr
    assert "1 finished before" in stdout
    for n in NAMES[:2]:
        assert metrics(str(out), n) == metrics(ref, n), n


def call_cli(main, argv, capsys):
    code = cli(main, argv)
    return code, capsys.readouterr().err


def parent_pid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def node_of(c, pid):
    """The worker node whose raylet started the process `pid` (a Ray worker), or None."""
    try:
        parent = parent_pid(pid)
    except OSError:
        return None
    for node in c.worker_nodes:
        if node.all_processes["raylet"][0].process.pid == parent:
            return node
    return None


@pytest.fixture(scope="module")
def on_cluster(env, cluster, tmp_path_factory):
    """A 2 x 2-seed sweep on the cluster; (its folder, the seconds it took)."""
    out = str(tmp_path_factory.mktemp("cluster") / "sweep")
    t0 = time.time()
    code, stdout, stderr = finish(command(env, "sweep.py", *GRID, "--address", cluster.address,
                                          "--output-dir", out))
    assert code == 0, stderr
    return out, time.time() - t0


# ----------------------------------------------------------------------------- addresses

@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:1", "nothing answers at 127.0.0.1:1 (Connection refused)"),
    ("ray://127.0.0.1:10001", "Ray Client addresses are not supported"),
    ("127.0.0.1", "not auto nor HOST:PORT"),
    ("127.0.0.1:99999", "not auto nor HOST:PORT"),
])
def test_a_wrong_address_is_one_line_before_anything_is_written(address, says, tmp_path,
                                                                capsys):
    for argv in ([*GRID, "--output-dir", str(tmp_path / "sweep")],
                 [str(tmp_path), "--out", str(tmp_path / "features"), "--random-init"]):
        main = sweep.main if argv[0] == "--grid" else extract.main
        t0 = time.time()
        assert cli(main, [*argv, "--address", address]) == 2
        err = capsys.readouterr().err
        assert time.time() - t0 < 30 and err.count("\n") == 1, err
        assert err.startswith(f"error: --address {address}: ") and says in err
    assert os.listdir(tmp_path) == []


def test_the_command_fails_on_a_closed_port_within_30_s(tmp_path):
    t0 = time.time()
    proc = subprocess.run([sys.executable, "sweep.py", *GRID, "--address", "127.0.0.1:6399",
                           "--output-dir", str(tmp_path / "sweep")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "nothing answers at 127.0.0.1:6399" in proc.stderr and os.listdir(tmp_path) == []
    print(f"a closed port: exit 2 after {time.time() - t0:.1f} s")


def test_a_port_that_is_no_ray_head_fails_in_time(env, monkeypatch):
    """A listening socket that is not a GCS: the check gives up within PROBE_SECONDS (here
    with 1 s a try instead of 5)."""
    import socket
    monkeypatch.setattr(ray_cluster, "GCS_CONNECT_SECONDS", 1)
    with socket.socket() as s:
        s.bind((LOOP, 0))
        s.listen()
        t0 = time.time()
        with pytest.raises(InputError, match="no Ray head"):
            ray_cluster.check_address(f"{LOOP}:{s.getsockname()[1]}")
        assert time.time() - t0 < 30


def test_the_token_is_asked_for_only_when_one_is_here(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(k, raising=False)
    assert ray_cluster.use_token() is None and "RAY_AUTH_MODE" not in os.environ
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("x" * 32)
    assert ray_cluster.use_token() == os.path.join("~", ".ray", "auth_token")
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_resources_and_cores_are_checked():
    nodes = [{"cpus": 1.0, "gpus": 0.0}, {"cpus": 2.0, "gpus": 1.0}]
    ray_cluster.check_resources(nodes, 2, 1)
    with pytest.raises(InputError, match="asks for 3 CPUs and no node of the cluster has more "
                                         "than 2"):
        ray_cluster.check_resources(nodes, 3, 0)
    with pytest.raises(InputError, match="--threads 3: this machine has 2 cores"):
        ray_cluster.local_cores(1, 3, cores=2)
    assert ray_cluster.local_cores(4, 1, cores=2) == 2          # capped, with a line
    assert ray_cluster.local_cores(None, 1, cores=2) is None
    assert ray_cluster.local_cores(2, 0, cores=2) == 2


def test_gpu_tasks_get_a_fresh_process_and_the_others_no_gpu():
    gpu, cpu = trials.task_options(1, 0.5, 3), trials.task_options(1, 0, 3)
    assert gpu["max_calls"] == 1 and "CUDA_VISIBLE_DEVICES" not in gpu["runtime_env"]["env_vars"]
    assert "max_calls" not in cpu and cpu["runtime_env"]["env_vars"]["CUDA_VISIBLE_DEVICES"] == ""
    assert [trials.gpu_share(trials.SHARE, w, 8) for w in (2, 8, 16, None)] == [1, 1, 0.5, 1]
    assert trials.gpu_share(trials.SHARE, 2, 0) == 0 and trials.gpu_share(0.25, 2, 8) == 0.25


def test_a_node_that_cannot_see_a_path_fails_the_trial_in_one_line(tmp_path):
    files = trials.TrialFiles(done="done.json", inputs=("data_root", "weights"))
    for opts, missing in [
            ({"output_dir": str(tmp_path / "gone" / "t")}, tmp_path / "gone"),
            ({"output_dir": str(tmp_path / "t"), "data_root": str(tmp_path / "data")},
             tmp_path / "data"),
            ({"output_dir": str(tmp_path / "t"), "weights": {"rgb": str(tmp_path / "w.pt")}},
             tmp_path / "w.pt")]:
        r = trials.run_trial(None, trials.Trial("t", opts, {}, files))
        assert r["status"] == "failed" and "\n" not in r["error"]
        assert r["error"].endswith(f"cannot see {missing}: the output folder, the data and the "
                                   f"weights must be at the same paths on every node")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- several nodes

def test_the_address_check_sees_the_nodes(cluster, tmp_path, capsys):
    nodes = ray_cluster.check_address(cluster.address)
    assert sorted(n["cpus"] for n in nodes) == [0, 1, 1]
    assert set(workers_of(cluster)) < {n["node_id"] for n in nodes}
    for argv, says in [(["--threads", "2"], "a task asks for 2 CPUs and no node of the cluster "
                                            "has more than 1"),
                       (["--device", "cuda"], "--device cuda: no node of the cluster at")]:
        code, err = call_cli(extract.main, [ROOT, "--out", str(tmp_path / "f"), "--random-init",
                                            "--address", cluster.address, *argv], capsys)
        assert code == 2 and err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "f").exists()


def test_trials_run_on_both_worker_nodes_and_equal_one_machine(cluster, on_cluster, tmp_path):
    out, seconds = on_cluster
    results = pd.read_csv(os.path.join(out, "results.csv")).set_index("trial")
    assert sorted(results.index) == NAMES and set(results["status"]) == {"ok"}
    assert set(results["node"]) == set(workers_of(cluster))         # both, and only them
    for name in NAMES:
        with open(os.path.join(out, "trials", name, "ray_node.json")) as f:
            assert json.load(f)["node"] == results.loc[name, "node"]
    with open(os.path.join(out, "sweep.json")) as f:
        assert "node" not in f.read()
    token = os.path.expanduser(ray_cluster.TOKEN_FILE)         # sent (RAY_AUTH_MODE), never kept
    if os.path.isfile(token):
        with open(token, "rb") as f:
            secret = f.read().strip()
        for folder, _, names in os.walk(out):
            for name in names:
                with open(os.path.join(folder, name), "rb") as f:
                    assert secret not in f.read(), name
    # one machine, no Ray: the trials' own task body, one after another, 1 thread each
    args, rest = sweep.parse_args([*GRID, "--output-dir", str(tmp_path / "one")])
    axes, planned, _, _, _ = sweep.plan_sweep(args, rest)
    for _, _, trial in planned:
        os.makedirs(os.path.dirname(trial.opts["output_dir"]), exist_ok=True)
        r = trials.run_trial(trial_work, trial)
        assert r["status"] == "ok" and r["node"] is None
        assert r["metrics"] == metrics(out, trial.name), trial.name
    print(f"4 trials on the 3-node cluster: {seconds:.1f} s")


def test_a_removed_node_has_its_trial_redone_on_the_other(env, cluster, on_cluster, tmp_path):
    ref, _ = on_cluster
    out = tmp_path / "removed"
    proc = command(env, "sweep.py", *GRID, "--address", cluster.address, "--output-dir",
                   str(out))
    victim, deadline = None, time.time() + 240
    while victim is None and time.time() < deadline and proc.poll() is None:
        for name in NAMES:
            pid = read_json(str(out / "trials" / name) + ".pid", or_none=True)
            node = node_of(cluster, pid["pid"]) if pid else None
            if node is not None:
                cluster.remove_node(node, allow_graceful=False)
                victim = (name, node.node_id)
                break
        time.sleep(0.05)
    code, stdout, stderr = finish(proc)
    add_worker(cluster)                                   # two worker nodes again
    assert victim is not None, "no trial was caught running"
    assert code == 0, stderr
    results = pd.read_csv(out / "results.csv").set_index("trial")
    assert sorted(results.index) == NAMES and set(results["status"]) == {"ok"}
    name, lost = victim
    assert results.loc[name, "attempts"] == 2 and results.loc[name, "node"] != lost
    for n in NAMES:
        assert metrics(str(out), n) == metrics(ref, n), n
    print(f"{name}: its node {lost[:8]} removed; attempt 2 on "
          f"{results.loc[name, 'node'][:8]}, metrics equal")


def test_a_killed_driver_resumes_and_skips_the_finished(env, cluster, on_cluster, tmp_path):
    ref, _ = on_cluster
    out = tmp_path / "driver"
    args = ["--grid", "gamma=0.1", "--seeds", "1", "2", *RUN, "--address", cluster.address,
            "--output-dir", str(out), "--workers", "1"]
    proc = command(env, "sweep.py", *args)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not any(
            (out / "trials" / n / "metrics.json").exists() for n in NAMES[:2]):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    rerun_resumes_one_finished(env, args, out, ref)


# ----------------------------------------------------------------------------- extraction

@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    for i in range(3):
        write_video(folder / f"clip{i}.mp4", constant_rate(20, 25))        # one chunk each
    return folder


def test_videos_run_on_both_nodes_and_a_removed_node_has_its_video_redone(env, cluster, clips,
                                                                         tmp_path):
    out = tmp_path / "features"
    proc = command(env, "extract.py", str(clips), "--out", str(out), "--random-init",
                   "--streams", "rgb", "--threads", "1", "--address", cluster.address)
    victim, deadline = None, time.time() + 240
    while victim is None and time.time() < deadline and proc.poll() is None:
        for pid_file in (out / ".work").glob("[!.]*.pid") if (out / ".work").is_dir() else []:
            pid = read_json(str(pid_file), or_none=True)
            node = node_of(cluster, pid["pid"]) if pid else None
            if node is not None:
                cluster.remove_node(node, allow_graceful=False)
                victim = (pid_file.name[:-4], node.node_id)
                break
        time.sleep(0.05)
    code, stdout, stderr = finish(proc)
    add_worker(cluster)
    assert victim is not None, "no video was caught running"
    assert code == 0, stderr
    record = json.loads((out / "extraction.json").read_text())
    assert sorted(record["videos"]) == [f"clip{i}" for i in range(3)]
    assert record["videos"][victim[0]]["node"] != victim[1]
    assert {v["node"] for v in record["videos"].values()} <= set(workers_of(cluster)) | {victim[1]}
    assert sorted(os.listdir(out)) == ["extraction.json", "features", "split_test.txt"]
    names = sorted(os.listdir(out / "features" / "test" / "rgb"))
    assert names == [f"clip{i}.npy" for i in range(3)]              # no partial file


# ----------------------------------------------------------------------------- the head (last)

def test_a_lost_head_is_one_line_exit_2_and_the_same_command_resumes(env, cluster, on_cluster,
                                                                    tmp_path):
    """The module's cluster ends here. The driver watches the head: one line and exit 2
    within seconds (Ray would end it after 60 s); the finished trial is kept, and the same
    sweep then resumes on another Ray (here the local one)."""
    ref, _ = on_cluster
    out = tmp_path / "head"
    args = ["--grid", "gamma=0.1", "--seeds", "1", "2", *RUN, "--output-dir", str(out),
            "--workers", "1"]
    address = cluster.address
    proc = command(env, "sweep.py", *args, "--address", address)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not any(
            (out / "trials" / n / "metrics.json").exists() for n in NAMES[:2]):
        time.sleep(0.05)
    cluster.remove_node(cluster.head_node, allow_graceful=False)
    t0 = time.time()
    code, stdout, stderr = finish(proc, timeout=120)
    last = stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert code == 2 and last.startswith(f"error: --address {address}: the cluster's head "),\
        stderr
    assert time.time() - t0 < 30
    rerun_resumes_one_finished(env, args, out, ref)

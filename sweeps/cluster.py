"""Joining Ray: the address of a running cluster checked before anything is written, the
token Ray 2.60 asks for, and the resources a task may ask (docs/sweeps.md, "On a cluster").

    check_address(address)      one line (InputError) within 30 s, or the cluster's nodes
    start_ray(address)          ray.init: join that cluster, or start a local Ray

An address is `auto` (the cluster that `ray start` started on this machine), `HOST:PORT`
(the head's GCS, `ray start --head --port PORT`), or none (a local Ray for this command).
Ray Client addresses (`ray://HOST:10001`) are refused: a trial's work function and its
files must be where the driver is, so the command runs on a node of the cluster.

Token authentication (Ray 2.60): `ray start --head` turns it on when a token exists (it
writes ~/.ray/auth_token with `ray get-auth-token --generate`) and every client must then
send that token. Ray itself enables it for `auto` only; for `HOST:PORT` it must be asked
with RAY_AUTH_MODE=token. So when RAY_AUTH_MODE is unset and a token is found where Ray
looks for one (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, ~/.ray/auth_token), this
module sets RAY_AUTH_MODE=token in this process: the token itself is never read, copied or
written by this project. A token sent to a cluster without authentication is ignored.

The check runs in a child process (Ray's C++ client logs retries on stderr and waits up to
40 s for a GCS that does not answer): a refused connection fails at once, a port that is
not a Ray head within PROBE_SECONDS, a missing or wrong token at once.
"""
import json
import os
import socket
import subprocess
import sys
import threading

from core.errors import InputError, one_line
from core.files import PROJECT_DIR

PROBE_SECONDS = 25            # the whole check, Python's start and Ray's import included
GCS_CONNECT_SECONDS = 5       # each of the Ray client's tries in the check (it makes 3)
TOKEN_FILE = os.path.join("~", ".ray", "auth_token")
_watching = threading.Event()      # set: no head to watch (see watch_head)


def split_address(address):
    """(host, port) of HOST:PORT; None for auto. A ray:// or malformed one: InputError."""
    if address == "auto":
        return None
    if address.startswith("ray://"):
        raise InputError(f"--address {address}: Ray Client addresses are not supported; run "
                         f"the command on a node of the cluster with --address HOST:PORT (the "
                         f"head's, default port 6379) or --address auto")
    host, sep, port = address.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise InputError(f"--address {address}: not auto nor HOST:PORT (the head's address, "
                         f"e.g. 10.0.0.1:6379)")
    return host.strip("[]"), int(port)


def token_found():
    """Where Ray would find a token here (a description), or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"RAY_AUTH_TOKEN_PATH ({path})" if os.path.isfile(path) else None
    return TOKEN_FILE if os.path.isfile(os.path.expanduser(TOKEN_FILE)) else None


def use_token():
    """RAY_AUTH_MODE=token in this process when it is unset and a token is found (Ray then
    sends it); the token's source, or None."""
    source = token_found()
    if source and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray" in sys.modules:                    # Ray read its settings at import
            from ray._raylet import Config
            Config.initialize("")
    return source


def _reachable(address, host, port):
    try:
        socket.create_connection((host, port), timeout=GCS_CONNECT_SECONDS).close()
    except OSError as e:
        raise InputError(f"--address {address}: nothing answers at {host}:{port} "
                         f"({e.strerror or type(e).__name__}); is `ray start --head --port "
                         f"{port}` running there?") from None


def check_address(address):
    """One line (InputError, exit 2) unless a Ray cluster answers at `address` and accepts
    this client (its token included), within PROBE_SECONDS; else the cluster's alive nodes
    [{"node_id", "cpus", "gpus"}]. Sets RAY_AUTH_MODE=token when a token is found."""
    where = split_address(address)
    if where is not None:
        _reachable(address, *where)
    source = use_token() if where is not None else token_found()
    env = {**os.environ, "RAY_py_gcs_connect_timeout_s": str(GCS_CONNECT_SECONDS)}
    try:
        done = subprocess.run([sys.executable, "-m", "sweeps.cluster", address], env=env,
                              cwd=PROJECT_DIR, capture_output=True, text=True,
                              timeout=PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        raise InputError(f"--address {address}: no Ray cluster answered within "
                         f"{PROBE_SECONDS} s") from None
    lines = done.stdout.strip().splitlines()
    answer = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {
        "error": "other", "text": done.stderr.strip().splitlines()[-1:] or ["no answer"]}
    if "nodes" in answer:
        return answer["nodes"]
    raise InputError(f"--address {address}: {failure_text(answer, source)}")


def failure_text(answer, source):
    """What the probe's failure means to the user."""
    kind, text = answer["error"], one_line(answer.get("text", ""), 160)
    if kind == "auth" and source is None:
        return ("the cluster asks for a token (Ray token authentication) and none is here: "
                "copy the head's ~/.ray/auth_token to this machine, or set RAY_AUTH_TOKEN or "
                "RAY_AUTH_TOKEN_PATH (docs/sweeps.md)")
    if kind == "auth":
        return f"the cluster refused the token of {source} (it is not the head's)"
    if kind == "none":
        return ("no Ray cluster runs on this machine (start one with `ray start --head`, or "
                "give the head's HOST:PORT)")
    if kind == "timeout" and answer.get("gcs"):
        return (f"no Ray head (GCS) answered at {answer['gcs']} (a cluster that has "
                f"stopped?)")
    return text


def check_resources(nodes, cpus, gpus):
    """A task asking for more CPUs or GPUs than any node has would wait forever: one line."""
    for what, need in (("cpus", cpus), ("gpus", gpus)):
        most = max((n[what] for n in nodes), default=0)
        if need > most:
            raise InputError(f"a task asks for {need:g} {what[:-1].upper()}s and no node of the "
                             f"cluster has more than {most:g}")


def local_cores(workers, threads, cores=None):
    """--workers x --threads on this machine never asks for more cores than it has: more
    threads than cores is one line; more workers than fit is capped (a line says so). The
    workers to use (None: as many as fit)."""
    cores = cores or os.cpu_count() or 1
    if threads > cores:
        raise InputError(f"--threads {threads}: this machine has {cores} cores")
    fit = max(1, cores // max(1, threads))
    if workers is not None and workers > fit:
        print(f"note: --workers {workers} x --threads {max(1, threads)} is more than the "
              f"{cores} cores here: {fit} at once", file=sys.stderr)
        return fit
    return workers


def start_ray(address, num_cpus=None):
    """Join the cluster at `address` (checked by check_address) or, without one, start a
    local Ray sized to the machine (num_cpus: fewer), never joining one that runs here. False
    when Ray was already started by the caller (it is then left running)."""
    import ray
    if ray.is_initialized():
        return False
    if address:
        use_token() if address != "auto" else None
        try:
            ray.init(address=address, logging_level="ERROR")
        except ConnectionError as e:
            raise InputError(f"--address {address}: {one_line(e, 160)}; the same command "
                             f"again resumes once the cluster is back") from None
        watch_head(address)
    else:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(),
                 include_dashboard=False, logging_level="ERROR")
    return True


def watch_head(address, every=1.0, misses=2):
    """While the command runs on the cluster at `address`: when its head (GCS) stops
    answering, one line and exit 2 at once, before Ray ends the process itself (after 60
    s, with a C++ message). What finished is on disk (each trial's folder, the tables
    written after each one); the same command resumes once a cluster is back."""
    import ray
    host, port = split_address(ray.get_runtime_context().gcs_address)
    _watching.clear()

    def watch():
        missed = 0
        while missed < misses:
            if _watching.wait(every):
                return                                  # stop_ray: the command is done
            try:
                socket.create_connection((host, port), timeout=every).close()
                missed = 0
            except OSError:
                missed += 1
        print(f"\nerror: --address {address}: the cluster's head ({host}:{port}) stopped "
              f"answering; what finished is kept: run the same command again once the "
              f"cluster is back", file=sys.stderr, flush=True)
        os._exit(2)

    threading.Thread(target=watch, daemon=True, name="watch-head").start()


def stop_ray():
    """ray.shutdown, the head's watch stopped first."""
    import ray
    _watching.set()
    ray.shutdown()


def node_id():
    """The Ray node this process runs on (None outside a Ray worker or driver)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def _probe(address):
    """In the child: one JSON line, {"nodes": [...]} or {"error": kind, "text": ...}."""
    import ray
    from ray._private.services import canonicalize_bootstrap_address
    from ray._raylet import GcsClient
    try:
        gcs = None
        gcs = canonicalize_bootstrap_address(address)
        if gcs is None:
            raise ConnectionError("no cluster")
        nodes = GcsClient(address=gcs).get_all_node_info(timeout=GCS_CONNECT_SECONDS)
        alive = [{"node_id": bytes(n.node_id).hex(), "cpus": n.resources_total.get("CPU", 0.0),
                  "gpus": n.resources_total.get("GPU", 0.0)}
                 for n in nodes.values() if n.state == 0]
        print(json.dumps({"nodes": alive}))
    except Exception as e:                          # noqa: BLE001 - classified for the parent
        kind = ("auth" if isinstance(e, ray.exceptions.AuthenticationError) else
                "none" if isinstance(e, ConnectionError) else
                "timeout" if "Timed out" in str(e) else "other")
        print(json.dumps({"error": kind, "gcs": gcs, "text": f"{type(e).__name__}: {e}"}))


if __name__ == "__main__":
    _probe(sys.argv[1])

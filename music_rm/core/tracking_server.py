"""One MLflow tracking server that the clones on several machines log to (`make tracking-server`).

Its store is a PostgreSQL cluster from Debian's packages, made (initdb) in `<folder>/postgres` on first start and
run by an unprivileged user (PostgreSQL refuses root: as root, the `postgres` user the package creates) on
127.0.0.1 only, at a free port: only the MLflow server, on the same machine, talks to it. In front of it
`mlflow server` listens on `host:port`, keeps artifacts in `<folder>/artifacts` and serves them over HTTP, so the
clients need the server's address only (MLFLOW_TRACKING_URI), no shared filesystem. `<folder>/server.json` says
what runs; `stop` ends both. docs/cluster.md, "Experiments on several machines".
"""
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .errors import StageFailure
from .processes import group_members, kill_group

PG_USER, DATABASE = "music", "mlflow"   # the cluster's superuser (no password: 127.0.0.1 only) and the store
STATE = "server.json"
INSTALL = "apt-get install postgresql"


def postgres_program(name: str) -> str:
    """A PostgreSQL server program (initdb, pg_ctl): Debian keeps them in /usr/lib/postgresql/<version>/bin, off
    PATH; the newest version there, else PATH's."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]) if
                   p.parts[-3].isdigit() else 0)
    program = str(found[-1]) if found else shutil.which(name)
    if not program:
        raise StageFailure(f"PostgreSQL is not installed (no {name}): {INSTALL} (as root; .ci/run does)")
    return program


def _server_user() -> str | None:
    """Who runs PostgreSQL: this user, or `postgres` when this is root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StageFailure(f"PostgreSQL refuses to run as root and there is no user postgres: {INSTALL}") from None
    return "postgres"


def _run_as(user: str | None, command: list[str], what: str) -> str:
    result = subprocess.run(["runuser", "-u", user, "--", *command] if user else command,
                            capture_output=True, text=True)
    if result.returncode:
        lines = (result.stderr.strip() or result.stdout.strip() or "no message").splitlines()
        raise StageFailure(f"{what} failed: {lines[-1]}")
    return result.stdout


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _state(folder: Path) -> dict | None:
    path = folder / STATE
    return json.loads(path.read_text()) if path.is_file() else None


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _start_postgres(folder: Path) -> int:
    """Start the folder's PostgreSQL cluster (made on first start) on 127.0.0.1 at a free port; returns the port."""
    user, pgdata = _server_user(), folder / "postgres"
    fresh = not (pgdata / "PG_VERSION").is_file()
    if fresh:
        pgdata.mkdir(exist_ok=True)
        if user:
            shutil.chown(pgdata, user, user)
            if subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(pgdata)]).returncode:
                raise StageFailure(f"{folder}: PostgreSQL runs as user {user} (it refuses root), who cannot reach "
                                   "this folder: choose one every user can traverse (TRACKING_DIR=/srv/music-rm-tracking)")
        _run_as(user, [postgres_program("initdb"), "-D", str(pgdata), "-U", PG_USER, "--auth=trust",
                       "--no-locale", "-E", "UTF8", "--no-instructions"], "initdb")
        with (pgdata / "postgresql.conf").open("a") as conf:  # TCP on 127.0.0.1 only, no Unix socket
            conf.write("\n# music-rm tracking server\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
    port = free_port()
    _run_as(user, [postgres_program("pg_ctl"), "-D", str(pgdata), "-l", str(pgdata / "server.log"), "-w", "-t", "60",
                   "-o", f"-p {port}", "start"], f"PostgreSQL (log: {pgdata / 'server.log'})")
    if fresh:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user=PG_USER, dbname="postgres", autocommit=True) as db:
            db.execute(f"CREATE DATABASE {DATABASE}")
    return port


def _stop_postgres(folder: Path) -> None:
    pgdata = folder / "postgres"
    if (pgdata / "postmaster.pid").is_file():
        _run_as(_server_user(), [postgres_program("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
                "stopping PostgreSQL")


def _allowed_hosts(host: str, port: int) -> str:
    """MLflow's default Host headers (localhost, private addresses) and this machine's names, which the other
    machines use to reach it."""
    from mlflow.server.security_utils import get_default_allowed_hosts

    names = {socket.gethostname(), socket.getfqdn(), host} - {"0.0.0.0", ""}
    return ",".join([*get_default_allowed_hosts(), *sorted(names), *(f"{n}:{port}" for n in sorted(names))])


def start(folder: Path, host: str = "127.0.0.1", port: int = 5000, wait_s: float = 120) -> str:
    """Start PostgreSQL and `mlflow server` for `folder` (nothing new if they already run); returns the tracking URI
    the clients set as MLFLOW_TRACKING_URI."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    state = _state(folder)
    if state and _healthy(state["local_uri"]):
        return state["uri"]
    if state:
        stop(folder)  # what a crash left
    try:
        import psycopg  # noqa: F401  (the PostgreSQL driver SQLAlchemy uses for postgresql://)
    except ImportError:
        raise StageFailure("the MLflow server needs psycopg for PostgreSQL: pip install -e '.[tracking-server]' "
                           "(make tracking-server does)") from None
    pg_port = _start_postgres(folder)
    name = socket.gethostname() if host in ("0.0.0.0", "::") else host
    state = {"uri": f"http://{name}:{port}", "local_uri": f"http://127.0.0.1:{port}", "postgres_port": pg_port}
    (folder / STATE).write_text(json.dumps(state))
    log = folder / "mlflow-server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no GenAI job runners (docs/mlflow.md)
           "MLFLOW_SERVER_ALLOWED_HOSTS": _allowed_hosts(name, port)}
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"postgresql://{PG_USER}@127.0.0.1:{pg_port}/{DATABASE}",
             "--artifacts-destination", str(folder / "artifacts")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    state["mlflow_pid"] = server.pid
    (folder / STATE).write_text(json.dumps(state))
    deadline = time.monotonic() + wait_s
    while not _healthy(state["local_uri"]):
        if server.poll() is not None or time.monotonic() > deadline:
            lines = log.read_text(errors="replace").strip().splitlines() or ["no output"]
            stop(folder)
            raise StageFailure(f"mlflow server on port {port} did not start ({log}): {lines[-1]}")
        time.sleep(0.5)
    return state["uri"]


def stop(folder: Path, wait_s: float = 30) -> bool:
    """End the folder's `mlflow server` (its whole process group) and PostgreSQL; False if nothing ran."""
    folder = Path(folder).resolve()
    state = _state(folder)
    if state is None:
        return False
    group = state.get("mlflow_pid")
    if group:
        kill_group(group, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while group_members(group) and time.monotonic() < deadline:
            time.sleep(0.2)
        kill_group(group, signal.SIGKILL)
    _stop_postgres(folder)
    (folder / STATE).unlink()
    return True

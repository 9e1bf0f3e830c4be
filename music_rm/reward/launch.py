"""The train stage's launcher: dvc.yaml's one command, `python stages/train.py ...`, on one node or N.

Outside accelerate, stages/train.py starts `accelerate launch` on itself once per node (a "launcher": accelerate's
own launch, run in this process), with accelerate's machine settings; in the processes accelerate starts, it
trains. Where the nodes come from:

- a SLURM allocation (SLURM_JOB_ID set, outside a job step): one launcher per allocated node, through one
  `srun` step (one task per node, --kill-on-bad-exit); the node count is SLURM_JOB_NUM_NODES, a node's rank its
  SLURM_NODEID, the head the first node of SLURM_JOB_NODELIST (its NodeAddr, from `scontrol`);
- elsewhere MUSIC_TRAIN_NODES launchers (default 1) on this host, the head 127.0.0.1, each in its own process
  group as if on its own node: N nodes rehearsed on one machine (the tests).

The accelerate config describes one node (`num_processes` per node, `num_machines: 1`); the launcher passes
num_processes × nodes, the node count, the node's rank, the head's address and `train.main_process_port`. None
of it is in dvc.yaml's command or the stage's params: a run on one node and on two are the same stage, and
neither retrains the other (metrics.json records the world size; `global_batch_size` keeps the optimization).

Faults end the run with one line instead of a hang: port 0 with more than one node (refused before anything
starts); a node that does not see the cache and model folders node 0 writes to (every process checks at start,
`check_shared_folders`); a node that dies (the others are stopped, the line names it; under SLURM srun's line
names it); Ctrl-C or SIGTERM (every training process stopped and gone before the stage returns, one line). Every
process started here dies with the process that started it (PR_SET_PDEATHSIG).
"""
import contextlib
import functools
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ..core.errors import ParamsError, StageFailure
from ..core.processes import die_with_parent, exit_reason, kill_group, signal_name

log = logging.getLogger(__name__)
NODES_ENV = "MUSIC_TRAIN_NODES"          # launchers on this host, outside SLURM (default 1)
HEAD_ENV = "MUSIC_TRAIN_HEAD"            # "<address>:<port>" of node 0: set for the launcher of each node
NODE_ENV = "MUSIC_TRAIN_NODE"            # "<rank>/<nodes>" of a launcher on this host (under srun: SLURM_NODEID)
LAUNCHER_ENV = "MUSIC_TRAIN_LAUNCHER"    # pid of the node's launcher, in the training processes it starts
STOP_GRACE_S = 60                        # after SIGTERM, how long a node or process has before SIGKILL
# torch's elastic agent: its warnings while it stops the processes of an interrupted run (one per process) are
# not shown; its errors are
ELASTIC_LOGGER = "torch.distributed.elastic"


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


def in_accelerate() -> bool:
    """Whether this process was started by `accelerate launch` (every launcher of accelerate sets this)."""
    return "ACCELERATE_MIXED_PRECISION" in os.environ


def node_config(config_file: str) -> dict:
    """The accelerate config, refused when it describes more than one node."""
    path = Path(config_file)
    if not path.is_file():
        raise ParamsError(f"train.accelerate_config: {config_file}: no such file")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if int(config.get("num_machines", 1)) != 1:
        raise ParamsError(f"train.accelerate_config: {config_file}: num_machines {config['num_machines']}: a config "
                          f"describes one node (num_processes per node, num_machines 1); the node count comes from "
                          f"the SLURM allocation, or {NODES_ENV} on one host (docs/cluster.md)")
    return config


def check_nodes(config: dict, config_file: str, nodes: int, port: int) -> None:
    """What more than one node needs: one fixed port, a multi-process config, DeepSpeed's standard launcher."""
    if nodes == 1:
        return
    if port == 0:
        raise ParamsError(f"train.main_process_port: 0 lets each of the {nodes} nodes pick its own free port, so they "
                          f"never meet: set a fixed port, the same on every node (-S train.main_process_port=29500)")
    kind = str(config.get("distributed_type", "NO"))
    if kind == "NO":
        raise ParamsError(f"train.accelerate_config: {config_file} runs one process (distributed_type NO): "
                          f"{nodes} nodes would train {nodes} separate models; use a multi-process config "
                          f"(configs/accelerate/multi_gpu.yaml, deepspeed_zero3.yaml or fsdp.yaml)")
    launcher = (config.get("deepspeed_config") or {}).get("deepspeed_multinode_launcher")
    if kind == "DEEPSPEED" and launcher != "standard":
        raise ParamsError(f"train.accelerate_config: {config_file}: deepspeed_config.deepspeed_multinode_launcher is "
                          f"{launcher or 'unset (pdsh)'}: {nodes} nodes need `standard` (one launch per node; pdsh "
                          f"would start every node over SSH from this one)")


def local_nodes() -> int:
    value = os.environ.get(NODES_ENV, "1")
    if not value.isdigit() or int(value) < 1:
        raise ParamsError(f"{NODES_ENV}: {value!r} is not a positive whole number of nodes")
    return int(value)


def slurm_nodes() -> int:
    if NODES_ENV in os.environ:
        raise ParamsError(f"{NODES_ENV}: launchers on one host are for outside SLURM; in this allocation every node "
                          f"runs one (SLURM_JOB_NUM_NODES = {os.environ.get('SLURM_JOB_NUM_NODES')}): unset it")
    return int(os.environ.get("SLURM_JOB_NUM_NODES") or os.environ["SLURM_NNODES"])


def scontrol(*args: str) -> str:
    if not shutil.which("scontrol"):
        raise StageFailure("SLURM_JOB_ID is set but scontrol is not on PATH: cannot find the allocation's head node")
    result = subprocess.run(["scontrol", *args], capture_output=True, text=True)
    if result.returncode:
        raise StageFailure(f"scontrol {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def slurm_head() -> str:
    """The address of the allocation's first node (its NodeAddr: its name unless slurm.conf says otherwise)."""
    first = scontrol("show", "hostnames", os.environ["SLURM_JOB_NODELIST"]).split()[0]
    match = re.search(r"\bNodeAddr=(\S+)", scontrol("show", "node", "--oneliner", first))
    return match.group(1) if match else first


def resume_hint(params) -> str:
    return ("a rerun resumes from the last complete checkpoint" if params.train.config.save_steps
            else "a rerun starts over (train.config.save_steps is null: no checkpoints)")


def launch(params, name: str, command: list[str]) -> int:
    """Run `command` (the stage script and its arguments) under accelerate on every node; its exit status."""
    p = params.train
    port = params.whole.train.main_process_port  # not the stage's param: the node count and port change no output
    config = node_config(p.accelerate_config)
    per_node = int(config.get("num_processes", 1))
    if HEAD_ENV in os.environ:  # the launcher of one node, started by srun or by run_local_nodes
        head, _, port = os.environ[HEAD_ENV].rpartition(":")
        if NODE_ENV in os.environ:
            rank, nodes = map(int, os.environ[NODE_ENV].split("/"))
        else:
            rank, nodes = int(os.environ["SLURM_NODEID"]), int(os.environ["SLURM_STEP_NUM_NODES"])
        where = f"SLURM node {os.environ['SLURMD_NODENAME']}" if "SLURMD_NODENAME" in os.environ else socket.gethostname()
        log.info("%s: node %d of %d (%s), head %s:%s", name, rank, nodes, where, head, port)
        return run_node(p.accelerate_config, per_node, nodes, rank, head, int(port), command)
    slurm = "SLURM_JOB_ID" in os.environ and "SLURM_STEP_ID" not in os.environ
    nodes = slurm_nodes() if slurm else local_nodes()
    check_nodes(config, p.accelerate_config, nodes, port)
    if slurm:
        return run_slurm(name, params, nodes, per_node, port, command)
    if nodes > 1:
        return run_local_nodes(name, params, nodes, per_node, port, command)
    status = run_node(p.accelerate_config, per_node, 1, 0, "", port, command)
    if status > 128:
        _say(f"{name}: interrupted ({signal_name(status - 128)}): its {per_node} training process(es) stopped and "
             f"gone; {resume_hint(params)}")
    return status


def _say(line: str) -> None:
    print("\n" + line, file=sys.stderr, flush=True)  # on a line of its own, after a progress bar too


@contextlib.contextmanager
def interrupts_raised(on_repeat=None):
    """SIGINT and SIGTERM raise Interrupted once; a repeat calls `on_repeat` (or is ignored) instead of breaking
    the clean-up the first one started."""
    seen = []

    def handler(signum, frame):
        if seen:
            if on_repeat:
                on_repeat()
            return
        seen.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_node(config_file: str, per_node: int, nodes: int, rank: int, head: str, port: int,
             command: list[str]) -> int:
    """accelerate's launch of `command` for node `rank` of `nodes`, in this process; its exit status, 128 + the
    signal when interrupted (its training processes stopped and reaped first)."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    argv = ["--config_file", config_file, "--num_processes", str(per_node * nodes), "--main_process_port", str(port)]
    if nodes > 1:
        argv += ["--num_machines", str(nodes), "--machine_rank", str(rank), "--main_process_ip", head]
    args = launch_command_parser().parse_args([*argv, *command])
    os.environ[LAUNCHER_ENV] = str(os.getpid())
    import torch.distributed.run  # noqa: F401 (imports the elastic agent, whose loggers each set their own level)
    for logger_name, logger in logging.root.manager.loggerDict.items():
        if logger_name.startswith(ELASTIC_LOGGER) and isinstance(logger, logging.Logger):
            logger.setLevel(logging.ERROR)
    status = 0
    with interrupts_raised(on_repeat=lambda: _stop_children(signal.SIGKILL, 0)):
        try:
            launch_command(args)
        except Interrupted as e:
            status = 128 + e.signum
        except KeyboardInterrupt:
            status = 128 + signal.SIGINT
        except SignalException as e:  # torch's elastic agent, once it has stopped its processes
            status = 128 + int(e.sigval)
        except ChildFailedError as e:
            status = _status(e.get_first_failure()[1].exitcode)
        except subprocess.CalledProcessError as e:  # accelerate's one-process launcher
            status = _status(e.returncode)
        finally:
            _stop_children(signal.SIGTERM, STOP_GRACE_S)
    return status


def _died(returncode: int) -> bool:
    return returncode < 0 or returncode > 128


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode or 1


def _stop_children(sig: int, grace_s: float) -> None:
    """Send `sig` to the children still running and reap them, SIGKILL after `grace_s`: accelerate's one-process
    launcher waits for its child only a moment after Ctrl-C (Python's Popen.wait), and returns before it is gone."""
    import psutil

    children = psutil.Process().children()
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(sig)
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive)


def run_local_nodes(name: str, params, nodes: int, per_node: int, port: int, command: list[str]) -> int:
    """`nodes` launchers on this host, each in its own process group (a node: killing its group kills the node)."""
    env = {**os.environ, HEAD_ENV: f"127.0.0.1:{port}"}
    processes = [subprocess.Popen([sys.executable, *command], env={**env, NODE_ENV: f"{rank}/{nodes}"},
                                  start_new_session=True, preexec_fn=functools.partial(die_with_parent, signal.SIGKILL))
                 for rank in range(nodes)]
    where = [f"node {rank} of {nodes} (127.0.0.1, pid {p.pid})" for rank, p in enumerate(processes)]
    return supervise(name, params, processes, where, per_node * nodes, nodes,
                     stop=lambda p, sig: kill_group(p.pid, sig))


def run_slurm(name: str, params, nodes: int, per_node: int, port: int, command: list[str]) -> int:
    """One launcher per allocated node through one srun step; srun names a node that fails or dies."""
    cpus = [f"--cpus-per-task={os.environ['SLURM_CPUS_ON_NODE']}"] if os.environ.get("SLURM_CPUS_ON_NODE") else []
    srun = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", *cpus,
            sys.executable, *command]
    env = {**os.environ, HEAD_ENV: f"{slurm_head()}:{port}"}
    log.info("%s: %d node(s), head %s: %s", name, nodes, env[HEAD_ENV], " ".join(srun))
    # its own session: Ctrl-C reaches this process only, which stops the step through srun (srun alone would take
    # one Ctrl-C as a request for its status); srun forwards SIGTERM to every task
    process = subprocess.Popen(srun, env=env, start_new_session=True,
                               preexec_fn=functools.partial(die_with_parent, signal.SIGTERM))
    where = [f"the srun step of {nodes} node(s) (job {os.environ['SLURM_JOB_ID']})"]
    return supervise(name, params, [process], where, per_node * nodes, nodes, stop=lambda p, sig: p.send_signal(sig),
                     failed_line=f"{name}: the srun step on {nodes} node(s) ended with {{reason}} (srun's lines above "
                                 f"name the node); {{resume}}")


def supervise(name: str, params, processes, where: list[str], world: int, nodes: int, stop,
              failed_line: str | None = None) -> int:
    """Wait for every node; the first that dies (a signal) stops the others at once, the first that fails after a
    moment for them to end by themselves (an error every node meets ends them all, and each says why), and is
    named in one line; Ctrl-C or SIGTERM stops them all. The exit status: 0, the failed node's, or 128 + the
    signal."""
    def stop_all(sig=signal.SIGTERM, grace_s=STOP_GRACE_S):
        for p in processes:
            if p.poll() is None:
                stop(p, sig)
        deadline = time.monotonic() + grace_s
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in processes:
            stop(p, signal.SIGKILL)  # whatever of the node is left, its launcher gone or not
            p.wait()

    with interrupts_raised(on_repeat=lambda: [stop(p, signal.SIGKILL) for p in processes]):
        try:
            while True:
                failed = [i for i, p in enumerate(processes) if p.poll() not in (None, 0)]
                if failed or all(p.poll() == 0 for p in processes):
                    break
                time.sleep(0.1)
        except Interrupted as e:
            stop_all()
            _say(f"{name}: interrupted ({signal_name(e.signum)}): its {world} training process(es) on {nodes} node(s) "
                 f"stopped and gone; {resume_hint(params)}")
            return 128 + e.signum
        if not failed:
            return 0
        # a node that died comes first: the others' failures may be its effect (their connections to it broke)
        first = min(failed, key=lambda i: not _died(processes[i].returncode))
        code = processes[first].returncode
        died = _died(code)
        deadline = time.monotonic() + (0 if died else 10)
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        by_themselves = all(p.poll() is not None for p in processes)
        stop_all()
    if failed_line:
        _say(failed_line.format(reason=exit_reason(code), resume=resume_hint(params)))
    elif died or not by_themselves:
        # after a death the others end by themselves or are stopped, whichever comes first: either way, with it
        others = "the other node(s) " + ("stopped with it" if died else "ended too" if by_themselves else "were stopped")
        _say(f"{name}: {where[first]} {'died' if died else 'failed'} ({exit_reason(code)}); {others}; "
             f"{resume_hint(params)}")
    return _status(code)


@contextlib.contextmanager
def training_process():
    """What a process that accelerate started does around its training: it dies with the launcher that started it
    (a node whose launcher is gone is gone; a hand-run `accelerate launch` too), takes SIGTERM as Ctrl-C, and ignores repeats while it cleans up; under this
    launcher an interrupt ends it quietly (the launcher says it once), under a hand-run `accelerate launch` as
    click's `Aborted!`."""
    launcher = os.environ.get(LAUNCHER_ENV)
    die_with_parent(signal.SIGKILL)
    if launcher and os.getppid() != int(launcher):  # the launcher died before the line above
        os._exit(128 + signal.SIGKILL)
    try:
        with interrupts_raised():
            yield
    except Interrupted as e:
        if launcher:
            _leave(128 + e.signum)
        raise KeyboardInterrupt from None
    except KeyboardInterrupt:
        if launcher:
            _leave(128 + signal.SIGINT)
        raise
    except RuntimeError as e:
        if not (launcher and lost_peer(e)):
            raise
        _say(f"train: process {os.environ.get('RANK', '?')} of {os.environ.get('WORLD_SIZE', '?')} lost its connection "
             f"to the others ({first_line(e)}); the launcher's line names the node or process that ended")
        _leave(1)


def _leave(code: int) -> None:
    """End a training process under the launcher (which says why, once). With other processes in the run, not
    through the interpreter's exit: the teardown of a process group whose peers are gone can abort (SIGABRT) or
    print an ignored exception's traceback; what the stage writes has been closed by the time this runs."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        raise SystemExit(code) from None
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def lost_peer(e: RuntimeError) -> bool:
    """Whether `e` is a collective that failed because another process of the run is gone (a node that died takes
    the connections of every other process with it: theirs is an effect, not a second fault to trace)."""
    import torch.distributed as dist

    return isinstance(e, dist.DistError) or bool(re.search(r"gloo|NCCL|Connection (reset|closed) by peer", str(e)))


def first_line(e: BaseException) -> str:
    """The message's first sentence without the C++ source location torch puts before it."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return re.split(r"(?<=\w)\. ", re.sub(r"^\[[^\]]*\.(?:cc|cpp|h)(?::\d+)?\]\s*", "", line))[0]


def check_shared_folders(state, folders: dict[str, Path]) -> None:
    """Every process sees the folders the main process writes to ({what: folder}): the main process writes a
    token file into each, every process looks for it in its own view, and a node that does not see one is named in
    one line. (A cache local to each node would have each node resume from checkpoints of its own, or wait at a
    barrier the main process never reaches.)"""
    if state.num_processes == 1:
        return
    from accelerate.utils import broadcast_object_list, gather_object

    token = broadcast_object_list([secrets.token_hex(8) if state.is_main_process else None])[0]
    marker = f".music-rm-shared-{token}"
    if state.is_main_process:
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / marker).write_text(socket.gethostname() + "\n", encoding="utf-8")
    state.wait_for_everyone()
    node = int(os.environ.get("GROUP_RANK", 0))
    views = gather_object([(node, socket.gethostname(), {what: (str(folder.absolute()), (folder / marker).is_file())
                                                          for what, folder in folders.items()})])
    state.wait_for_everyone()
    if state.is_main_process:
        for folder in folders.values():
            (folder / marker).unlink(missing_ok=True)
    blind = [(n, host, what, path) for n, host, view in views for what, (path, seen) in view.items() if not seen]
    if not blind:
        return
    state.destroy_process_group()  # a process group left to interpreter exit aborts the process (SIGABRT)
    if not state.is_main_process:
        raise SystemExit(1)  # the main process says why
    n, host, what, path = blind[0]
    mine = folders[what].absolute()
    there = "" if path == str(mine) else f" (it looks in {path})"
    nodes = sorted({f"node {b[0]} ({b[1]})" for b in blind})
    raise StageFailure(f"{', '.join(nodes)} cannot see the {what} {mine} that node 0 ({socket.gethostname()}) writes "
                       f"to{there}: checkpoints and models need one folder every node shares, at the same path "
                       f"(a shared filesystem; MUSIC_CACHE_DIR for the cache; docs/cluster.md)")

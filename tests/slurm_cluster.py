"""A real SLURM cluster of two nodes on this host, from Debian's slurm-wlm: munged (its own key and socket),
slurmctld, and one slurmd per node (`slurmd -N n1`, `-N n2`, both at 127.0.0.1 on ports of their own), all
started for the tests and stopped after them. Clients find it through SLURM_CONF. Needs root (slurmd starts jobs
as their user) and the slurm-wlm package; .ci/run installs it."""
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

NODES = ("n1", "n2")
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "srun", "sbatch", "scontrol")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def slurm_conf(root: Path, ports: list[int]) -> str:
    host = socket.gethostname()
    nodes = "\n".join(f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs=2 RealMemory=2000"
                      for name, port in zip(NODES, ports[1:]))
    return f"""ClusterName=music-rm-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports[0]}
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
ReturnToService=2
KillWait=10
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
{nodes}
PartitionName=test Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
"""


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """The environment that reaches the cluster (SLURM_CONF); skipped without root or slurm-wlm."""
    if os.geteuid() != 0:
        pytest.skip("SLURM's slurmd needs root (CI runs as root)")
    missing = [d for d in DAEMONS if not shutil.which(d)]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm (.ci/run does)")
    root = tmp_path_factory.mktemp("slurm")
    for folder in ("state", *(f"spool/{n}" for n in NODES)):
        (root / folder).mkdir(parents=True)
    subprocess.run(["mungekey", "--create", "--keyfile", str(root / "munge.key")], check=True, capture_output=True)
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, _free_ports(1 + len(NODES))))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for name in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del env[name]  # tests that run inside an allocation of another cluster
    daemons = [subprocess.Popen(["munged", "--foreground", "--force", f"--socket={root}/munge.socket",
                                 f"--key-file={root}/munge.key", f"--pid-file={root}/munged.pid",
                                 f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    deadline = time.monotonic() + 30
    while not (root / "munge.socket").exists():
        assert daemons[0].poll() is None and time.monotonic() < deadline, "munged did not start"
        time.sleep(0.1)
    daemons.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1)
    daemons += [subprocess.Popen(["slurmd", "-D", "-f", str(conf), "-N", name], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name in NODES]
    try:
        deadline = time.monotonic() + 60
        while True:
            states = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=env, capture_output=True, text=True)
            if states.stdout.split().count("idle") == len(NODES):
                break
            assert all(d.poll() is None for d in daemons), f"a SLURM daemon exited; logs in {root}"
            assert time.monotonic() < deadline, f"the nodes did not come up: {states.stdout}{states.stderr}"
            time.sleep(0.5)
        yield env
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
        for daemon in reversed(daemons):
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()

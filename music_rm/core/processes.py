"""Child processes that end with the stage: the kernel signals a child whose parent died (PR_SET_PDEATHSIG), and
a process group is stopped only once no member is left."""
import ctypes
import os
import signal
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send `sig` to this process when its parent dies, however it dies (Linux; a no-op
    elsewhere). In a child before exec (`preexec_fn`), or first thing in a process that was started."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        pass


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(stat.parent.name))
    return members


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def exit_reason(returncode: int) -> str:
    """How a process ended, from its return code (negative: the signal that killed it; 128 + n: a shell's or a
    launcher's report of signal n)."""
    if returncode < 0:
        return f"killed by {signal_name(-returncode)}"
    if returncode > 128 and returncode - 128 in signal.Signals._value2member_map_:
        return f"exit status {returncode} ({signal_name(returncode - 128)})"
    return f"exit status {returncode}"


def kill_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass

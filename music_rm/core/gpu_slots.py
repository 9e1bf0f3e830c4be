"""GPU slots: several experiments at once on one GPU node (`dvc queue start -j N`), each stage on GPUs no other
stage holds.

DVC's queue workers all inherit the environment of `dvc queue start`: the same GPUs, the same ports. With
MUSIC_GPU_SLOTS set (GPU sets separated by `;`, e.g. `0,1,2,3;4,5,6,7`), each stage that uses a GPU first takes a
free slot: an exclusive lock on the slot's file in one folder of this machine (MUSIC_GPU_SLOTS_DIR, default
<tmp>/music-rm-gpu-slots), held until the stage ends however it ends (the kernel drops a dead process's lock).
It sets CUDA_VISIBLE_DEVICES to the slot's GPUs for the stage and what it starts, and MUSIC_GPU_SLOT to the
slot's index: a vLLM server the stage starts listens at `openai.base_url`'s port plus the index. While every slot
is taken the stage waits, saying so once. Neither the slot nor the port is a param or in a cache key: which
slot an experiment got changes none of its outputs. Unset, nothing is claimed (one run at a time, or a
scheduler such as SLURM that gives each job its GPUs).
"""
import contextlib
import fcntl
import functools
import logging
import os
import tempfile
import time
from pathlib import Path

from .errors import ParamsError

SLOTS_ENV = "MUSIC_GPU_SLOTS"
SLOTS_DIR_ENV = "MUSIC_GPU_SLOTS_DIR"
SLOT_ENV = "MUSIC_GPU_SLOT"  # the index of the slot held, for the stage and the processes it starts
POLL_S = 1.0

log = logging.getLogger(__name__)


def parse_slots(value: str) -> list[str]:
    """The GPU sets of MUSIC_GPU_SLOTS ("0,1;2,3" → ["0,1", "2,3"]); a ParamsError naming the variable if bad."""
    slots = [",".join(gpu.strip() for gpu in slot.split(",")) for slot in value.split(";") if slot.strip()]
    gpus = [gpu for slot in slots for gpu in slot.split(",")]
    if not slots or not all(gpu.isdigit() for gpu in gpus) or len(set(gpus)) != len(gpus):
        raise ParamsError(f"{SLOTS_ENV}={value!r}: give GPU indices, each in one slot, slots separated by ';' "
                          "(e.g. 0,1,2,3;4,5,6,7)")
    return slots


def port_offset() -> int:
    """What a server this stage starts adds to its configured port: the slot's index, 0 without a slot."""
    return int(os.environ.get(SLOT_ENV) or 0)


@contextlib.contextmanager
def slot_held(slots: list[str], folder: Path):
    """Hold the first free slot of `slots` for the block (waiting while none is free), with CUDA_VISIBLE_DEVICES
    and MUSIC_GPU_SLOT set to it; yields its index."""
    folder.mkdir(parents=True, exist_ok=True)
    files, waited = [open(folder / f"slot-{i}.lock", "a+") for i in range(len(slots))], False
    try:
        while True:
            for index, file in enumerate(files):
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                break
            else:
                if not waited:
                    log.info("waiting for a free GPU slot: all %d of %s=%s are taken (locks in %s)", len(slots),
                             SLOTS_ENV, ";".join(slots), folder)
                    waited = True
                time.sleep(POLL_S)
                continue
            break
        saved = {name: os.environ.get(name) for name in ("CUDA_VISIBLE_DEVICES", SLOT_ENV)}
        os.environ.update(CUDA_VISIBLE_DEVICES=slots[index], **{SLOT_ENV: str(index)})
        log.info("GPU slot %d (of %d, counted from 0): CUDA_VISIBLE_DEVICES=%s", index, len(slots), slots[index])
        try:
            yield index
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    finally:
        for file in files:
            file.close()  # closing drops the lock


def on_gpu_slot(fn):
    """A stage that uses a GPU holds a slot while it runs, when MUSIC_GPU_SLOTS is set and no process above it
    holds one for it already (the train stage's launcher does, for the training processes it starts)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        value = os.environ.get(SLOTS_ENV)
        if not value or os.environ.get(SLOT_ENV) is not None:
            return fn(*args, **kwargs)
        folder = Path(os.environ.get(SLOTS_DIR_ENV) or Path(tempfile.gettempdir()) / "music-rm-gpu-slots")
        with slot_held(parse_slots(value), folder):
            return fn(*args, **kwargs)

    return wrapper

"""The machine and software a stage ran on: written next to its outputs and to its MLflow run.

Float kernels differ across CPU types (a CPU with AVX-512 bf16 simulated other trees and trained to another
loss than this repo's own CPU from the same inputs), so a result is byte-for-byte reproducible on the same
machine type only; this record says which machine type made it. Nothing here varies between runs on one
machine (no host name, no time), so rerunning a stage on the same machine writes the same bytes.
"""
import os
import platform
import sys
from importlib import metadata

PACKAGES = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "vllm", "deepspeed")
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "asimd", "sve")


def _cpu() -> tuple[str, list[str]]:
    """The CPU's model name and the flags among CPU_FLAGS it has (from /proc/cpuinfo where there is one)."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return platform.processor() or "unknown", []
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return fields.get("model name") or fields.get("CPU part") or "unknown", [f for f in CPU_FLAGS if f in flags]


def environment() -> dict:
    import torch

    cpu, flags = _cpu()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"machine": platform.machine(), "cpu": cpu, "cpu_flags": flags, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "gpus": gpus, "cuda": torch.version.cuda,
            "python": sys.version.split()[0], "packages": versions}

"""vLLM's OpenAI-compatible server, started and stopped by the stage that uses it (`openai.start_vllm: true`).

The stage starts `python -m vllm.entrypoints.openai.api_server` from the `vllm.python` interpreter (vLLM may
live in its own virtualenv, as its CPU build must: docs/gpu.md), at `openai.base_url`'s host and port, with the
vllm section's data-parallel and tensor-parallel sizes, memory share and context length, waits until /health
answers, and talks to it through the openai backend. When the stage ends, also on an error or Ctrl-C, the
server's whole process group (API server, engine cores, workers) is stopped, so no later stage finds the GPUs
taken; if the stage itself is killed, the kernel sends the server SIGTERM (PR_SET_PDEATHSIG) and it shuts
down its engines.
"""
import functools
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from ..core.errors import ParamsError, StageFailure
from ..core.gpu_slots import port_offset
from ..core.paths import cache_root
from ..core.processes import die_with_parent, group_members

log = logging.getLogger(__name__)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def served_url(base_url) -> str:
    """Where the server the stage starts listens: `openai.base_url`, its port moved by the stage's GPU slot
    (core/gpu_slots.py: experiments run at once on one node each have their own port)."""
    address = urlsplit(base_url if isinstance(base_url, str) else "")
    if address.scheme != "http" or address.hostname not in ("127.0.0.1", "localhost") or not address.port:
        raise ParamsError(f"openai.base_url: {base_url!r}: with openai.start_vllm the stage starts one server, "
                          "here: give http://127.0.0.1:<port>/v1 (a list is for servers you start: docs/cluster.md)")
    return address._replace(netloc=f"{address.hostname}:{address.port + port_offset()}").geturl()


def server_command(p, model: str, trust_remote_code: bool) -> list[str]:
    """The command line of the server for a generation params section `p` (simulate's or the judge's)."""
    v, o = p.vllm, p.openai
    address = urlsplit(served_url(o.base_url))
    command = [v.python or sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", v.model or model,
               "--served-model-name", o.model, "--host", address.hostname, "--port", str(address.port),
               "--dtype", p.dtype, "--tensor-parallel-size", str(v.tensor_parallel_size),
               "--data-parallel-size", str(v.data_parallel_size),
               "--gpu-memory-utilization", str(v.gpu_memory_utilization)]
    if v.max_model_len:
        command += ["--max-model-len", str(v.max_model_len)]
    if v.revision and v.model:
        command += ["--revision", v.revision]
    if trust_remote_code:
        command += ["--trust-remote-code"]
    return command + list(v.server_args)


class VLLMServer:
    """A running server; `stop()` ends its process group. Use as a context manager or call stop()."""

    def __init__(self, p, model: str, trust_remote_code: bool):
        self.command = server_command(p, model, trust_remote_code)
        self.url = served_url(p.openai.base_url)
        self.health = self.url.rstrip("/").removesuffix("/v1") + "/health"
        if _healthy(self.health):
            raise StageFailure(f"a server already answers at {self.url}: stop it, or set openai.start_vllm "
                               "false to use it as it is")
        self.log_path = cache_root() / f"vllm-server-{urlsplit(self.url).port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting vLLM's server (log: %s): %s", self.log_path, " ".join(self.command))
        start = time.monotonic()
        with open(self.log_path, "w") as out:
            try:
                self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True, preexec_fn=functools.partial(die_with_parent, signal.SIGTERM))
            except OSError as e:
                raise ParamsError(f"vllm.python: cannot start {self.command[0]!r}: {e}") from None
        try:
            while not _healthy(self.health):
                if self.process.poll() is not None:
                    raise StageFailure(f"vLLM's server exited with code {self.process.returncode} before it was ready; "
                                       f"the last lines of {self.log_path}:\n{self._tail()}")
                if time.monotonic() - start > p.vllm.startup_timeout_s:
                    raise StageFailure(f"vLLM's server was not ready after vllm.startup_timeout_s = "
                                       f"{p.vllm.startup_timeout_s} s; the last lines of {self.log_path}:\n{self._tail()}")
                time.sleep(1)
        except BaseException:
            self.stop()
            raise
        log.info("vLLM's server ready in %.0f s", time.monotonic() - start)

    def _tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace_s: float = 60) -> None:
        """SIGTERM to the process group (vLLM shuts its engines down), SIGKILL to whatever is left after grace_s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # engine processes the API server left behind, if any
        except ProcessLookupError:
            pass
        self.process.wait()
        # SIGKILL is delivered, not yet done: return once the engines are gone, so that their memory is free
        deadline = time.monotonic() + grace_s
        while group_members(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

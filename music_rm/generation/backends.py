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
    from .openai_backend import OpenAIBackend

    o = p.openai
    if not o.start_vllm:
        return OpenAIBackend(o.base_url, o.model, api_key_env=o.api_key_env, concurrency=o.concurrency,
                             timeout_s=o.timeout_s, max_attempts=o.max_attempts, system_role=o.system_role)
    from .vllm_server import VLLMServer

    server = VLLMServer(p, model_dir, trust_remote_code)
    try:
        backend = OpenAIBackend(o.base_url, o.model, api_key_env=o.api_key_env, concurrency=o.concurrency,
                                timeout_s=o.timeout_s, max_attempts=o.max_attempts, system_role=o.system_role,
                                server=server)
    except BaseException:
        server.stop()
        raise
    if p.vllm.model is None:
        backend.identity["model"] = model_fingerprint(model_dir)  # not the served name: the weights it serves
    return backend

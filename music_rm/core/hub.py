"""Every Hugging Face Hub loader's failure as one line: the base model, fetch, RewardBench, and any benchmark that
loads from the Hub (RewardBench 2, RM-Bench and RMB, when they come, wrap their loading the same way).

`hub_access(what, local)` first asks the Hub endpoint (HF_ENDPOINT, huggingface.co by default) for one response,
with a short timeout: an endpoint out of reach fails at once, instead of after the retries huggingface_hub makes on
each request (5 with backoff: 25 s measured to a closed port, docs/pipeline.md). With HF_HUB_OFFLINE set nothing
is asked: the libraries read their local cache. Inside the block, a Hub error (a missing repo, revision or file,
a gated repo, the cache without the files in offline mode, a connection lost) becomes one StageFailure naming
`what` and the ways out: `local` (the param that takes a local copy) and HF_HUB_OFFLINE.
"""
import contextlib
from typing import Iterator

from .errors import StageFailure

PROBE_TIMEOUT_S = 10.0


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _ways_out(local: str) -> str:
    from huggingface_hub import constants

    if offline():
        return f"use a local copy ({local}), or unset HF_HUB_OFFLINE where the Hub is in reach"
    return f"use a local copy ({local}), or HF_HUB_OFFLINE=1 with it in the Hugging Face cache ({constants.HF_HUB_CACHE})"


def unreachable_reason() -> str | None:
    """Why the Hub endpoint gave no response (no connection, no name, a timeout), or None when it answered (with any
    status: an answer is enough to say it is in reach)."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint(), timeout=PROBE_TIMEOUT_S)
    except Exception as e:  # the HTTP client's transport errors (its types differ across huggingface_hub versions)
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no response'}"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
    return line if len(line) <= 200 else line[:199] + "…"


def _why(error: BaseException) -> str:
    """What a Hub loader's error means, in a few words."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if offline():
        return f"HF_HUB_OFFLINE is set and the Hugging Face cache ({constants.HF_HUB_CACHE}) does not hold it"
    if isinstance(error, GatedRepoError):
        return "a gated repo: accept its terms on the Hub, and set HF_TOKEN"
    if isinstance(error, RevisionNotFoundError):
        return "the Hub has no such revision"
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, (RepositoryNotFoundError, FileNotFoundError)) or type(error).__name__ == "DatasetNotFoundError" \
            or (isinstance(error, HfHubHTTPError) and status in (401, 404)):
        return f"the Hub at {endpoint()} has no such repo, or none this token may read (a private one needs HF_TOKEN)"
    return "it failed"


@contextlib.contextmanager
def hub_access(what: str, local: str) -> Iterator[None]:
    """Hub loading of `what` (e.g. "fetch.hf_dataset 'org/name' (revision main)"); see the module docstring.
    `local`: how to use a local copy instead, as the error says it."""
    if not offline():
        reason = unreachable_reason()
        if reason:
            raise StageFailure(f"{what}: the Hugging Face Hub at {endpoint()} is out of reach ({reason}); "
                               f"{_ways_out(local)}")
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    # FileNotFoundError: datasets' "Couldn't find '<name>' on the Hugging Face Hub either"
    hub_errors: tuple[type[BaseException], ...] = (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                                   ConnectionError, TimeoutError, FileNotFoundError)
    try:
        import datasets.exceptions

        hub_errors += (datasets.exceptions.DatasetNotFoundError,)
    except ImportError:
        pass
    try:
        yield
    except hub_errors as e:
        raise StageFailure(f"{what}: {_why(e)} ({_first_line(e)}); {_ways_out(local)}") from None


def resolved_revision(repo_id: str, revision: str, repo_type: str) -> str:
    """The commit `revision` of a Hub repo (repo_type "model" or "dataset") stands for: the Hub's answer, or with
    HF_HUB_OFFLINE the commit the local cache holds for it (what was resolved when it was downloaded)."""
    from pathlib import Path

    from huggingface_hub import HfApi, snapshot_download

    if offline():
        return Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision)).name
    return HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision).sha

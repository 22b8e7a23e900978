"""HTTP client for the aiserver v2 API: batching, bounded retries on 429/503, per-image results."""

import base64
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
RETRY_STATUSES = {429, 503}
FATAL_STATUSES = {401, 403}


class ApiError(Exception):
    """An error answer of the server (``{"detail", "code"}``), or no answer at all (status 0)."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"{status} {code}: {detail}" if status else f"{code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class FileResult:
    path: str
    predictions: list[dict] | None = None  # [{"label", "confidence"}], highest first
    error: dict | None = None  # {"detail", "code", "message"}: the API's error shape (message: the old name of detail)
    model: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def collect_files(paths: Iterable[str]) -> list[Path]:
    """The files named, plus the image files (by suffix) under the folders named, sorted, hidden ones skipped.

    Raises FileNotFoundError for a path that does not exist.
    """
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file()
                    and p.suffix.lower() in IMAGE_SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {name}")
    return files


class Client:
    """The v2 API of one server, with one key.

    429 and 503 answers are retried up to ``max_retries`` times, each after the server's
    ``Retry-After`` (capped at ``max_wait_seconds``; without the header: 1, 2, 4... seconds).
    """

    def __init__(
        self,
        url: str,
        key: str | None = None,
        *,
        timeout_seconds: float = 120.0,
        max_retries: int = 5,
        max_wait_seconds: float = 120.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.url = url.rstrip("/")
        self.key = key
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries
        self.max_wait_seconds = max_wait_seconds
        self.session = session or requests.Session()
        self.sleep = sleep
        self.retries = 0  # retried answers so far (429/503), for reporting

    # --- endpoints ---------------------------------------------------------------------------
    def models(self) -> dict:
        """``GET /api/v2/models``: the loaded models and the batch limits."""
        return self._call("GET", "/api/v2/models").json()

    def usage(self, *, days: int | None = None, since: str | None = None, until: str | None = None) -> dict:
        """``GET /api/v2/usage`` for this key."""
        params = {k: v for k, v in {"days": days, "since": since, "until": until}.items() if v is not None}
        return self._call("GET", "/api/v2/usage", params=params).json()

    def classify(self, images: list[tuple[str, bytes]], *, top_k: int = 5, model: str | None = None) -> dict:
        """``POST /api/v2/classify`` with (filename, bytes) images; returns the response body."""
        body = {
            "images": [{"image": base64.b64encode(data).decode("ascii"), "filename": name} for name, data in images],
            "top_k": top_k,
        }
        if model:
            body["model"] = model
        return self._call("POST", "/api/v2/classify", json=body).json()

    # --- many files --------------------------------------------------------------------------
    def classify_files(
        self, files: list[Path], *, top_k: int = 5, model: str | None = None, batch_size: int | None = None
    ) -> Iterator[FileResult]:
        """Classify ``files`` in batches, yielding one result per file in order.

        A batch that is larger than the key's whole limit or the body limit is split and sent
        again; a batch the server refuses for another reason gives each of its files that
        error. Raises ApiError only for a bad key (401/403) or a server that stays unreachable.
        """
        size = batch_size or self.models()["max_batch_images"]
        start = 0
        while start < len(files):
            batch = files[start : start + size]
            try:
                yield from self._classify_batch(batch, top_k=top_k, model=model)
            except ApiError as exc:
                if exc.status in FATAL_STATUSES or exc.status == 0:
                    raise
                if exc.code in ("batch_exceeds_limit", "payload_too_large") and len(batch) > 1:
                    size = max(1, len(batch) // 2)
                    continue
                yield from (
                    FileResult(str(p), error={"detail": exc.detail, "code": exc.code, "message": exc.detail})
                    for p in batch
                )
            start += len(batch)

    def _classify_batch(self, batch: list[Path], *, top_k: int, model: str | None) -> Iterator[FileResult]:
        readable, unreadable = [], {}
        for path in batch:
            try:
                readable.append((path, path.read_bytes()))
            except OSError as exc:
                unreadable[path] = {"detail": str(exc), "code": "unreadable_file", "message": str(exc)}
        answers = {}
        if readable:
            body = self.classify([(p.name, data) for p, data in readable], top_k=top_k, model=model)
            answers = {path: (result, body["model"]) for (path, _), result in zip(readable, body["results"])}
        for path in batch:
            if path in unreadable:
                yield FileResult(str(path), error=unreadable[path])
                continue
            result, model_name = answers[path]
            yield FileResult(
                str(path), predictions=result.get("predictions"), error=result.get("error"), model=model_name
            )

    # --- transport ---------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        for attempt in range(self.max_retries + 1):
            try:
                response = self.session.request(
                    method, self.url + path, headers=headers, timeout=self.timeout_seconds, **kwargs
                )
            except requests.RequestException as exc:
                raise ApiError(0, "connection_error", f"{self.url}: {exc}") from exc
            if response.status_code not in RETRY_STATUSES or attempt == self.max_retries:
                break
            self.retries += 1
            self.sleep(self._wait_seconds(response, attempt))
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _wait_seconds(self, response: requests.Response, attempt: int) -> float:
        try:
            wait = float(response.headers["Retry-After"])
        except (KeyError, ValueError):
            wait = 2.0**attempt
        return min(max(wait, 0.0), self.max_wait_seconds)


def _error(response: requests.Response) -> ApiError:
    try:
        body = response.json()
        return ApiError(response.status_code, str(body.get("code", "error")), str(body.get("detail", "")))
    except (ValueError, AttributeError):
        return ApiError(response.status_code, "error", response.text[:200] or response.reason)

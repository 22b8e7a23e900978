"""A small client for the aiserver v2 API, and a CLI on top of it (``python -m aiserver_client``).

Needs only ``requests`` (and ``tqdm`` for the CLI's progress bar); never imports Django.
"""

from .client import ApiError, Client, FileResult, collect_files

__all__ = ["ApiError", "Client", "FileResult", "collect_files"]

"""What every peer server runs per request, the same work as aiserver's v1 classify: parse the JSON body, decode its
base64 image (strictly), decode and preprocess it (aiserver's own functions), run ResNet-18 on ONNX Runtime fp32
(the graph aiserver exports, in $PEER_ONNX: uint8 pixels in, probabilities out) and answer the top 5.

No torch here: ``bench.peers.run`` exports the graph once and every peer loads only that file."""

import binascii
import json
import os

import numpy as np
import pybase64

from classifier.runtime import preprocessing as pipeline
from classifier.runtime.errors import ImageError
from classifier.runtime.preprocessing import IMAGENET

MAX_PIXELS = 40_000_000
TOP_K = 5


class BadRequest(Exception):
    """The body is not a JSON object with a base64 image of a supported format."""


class Classifier:
    """One ONNX Runtime session, ``threads`` intra-op threads per call (calls may overlap)."""

    def __init__(self, graph_path: str, *, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(graph_path, options, providers=["CPUExecutionProvider"])
        self.labels = [f"class {index}" for index in range(1000)]

    def pixels(self, body: bytes) -> np.ndarray:
        """The request body's image as preprocessed HxWx3 uint8 pixels; BadRequest when it is none."""
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return self.payload_pixels(payload)

    def payload_pixels(self, payload: object) -> np.ndarray:
        """The parsed JSON body's image as preprocessed pixels; BadRequest when it has none."""
        try:
            data = pybase64.b64decode(payload["image"], validate=True)  # type: ignore[index]
            return pipeline.preprocess(
                pipeline.decode(data, max_pixels=MAX_PIXELS, draft_size=IMAGENET.draft_size), IMAGENET
            )
        except (ValueError, KeyError, TypeError, binascii.Error, ImageError) as exc:
            raise BadRequest(str(exc)) from exc

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"input": batch})[0]

    def answer(self, row: np.ndarray) -> dict:
        return {
            "predictions": [
                {"label": prediction.label, "confidence": prediction.confidence}
                for prediction in pipeline.postprocess(row, self.labels, TOP_K)
            ]
        }


def cores() -> int:
    return os.cpu_count() or 1


def graph_path() -> str:
    return os.environ["PEER_ONNX"]

"""The LitServe peer: ``python -m bench.peers.litserve_app --port P``. LitServe's own batching (up to 16 images
per pass) in front of bench.peers.pipeline, one inference worker using every core."""

import argparse

import litserve
import numpy as np

from .pipeline import BadRequest, Classifier, cores, graph_path

MAX_BATCH = 16
BATCH_TIMEOUT_S = 0.002  # as aiserver's default CLASSIFIER_MAX_BATCH_DELAY_MS


class ClassifierAPI(litserve.LitAPI):
    def setup(self, device) -> None:
        self.classifier = Classifier(graph_path(), threads=cores())

    def decode_request(self, request: dict) -> np.ndarray:
        try:
            return self.classifier.payload_pixels(request)
        except BadRequest as exc:
            raise litserve.HTTPException(status_code=400, detail=str(exc)) from exc

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        return self.classifier.run(pixels)

    def unbatch(self, rows: np.ndarray) -> list[np.ndarray]:
        return list(rows)

    def encode_response(self, row: np.ndarray) -> dict:
        return self.classifier.answer(row)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = litserve.LitServer(
        ClassifierAPI(max_batch_size=MAX_BATCH, batch_timeout=BATCH_TIMEOUT_S, api_path="/classify"),
        accelerator="cpu",
        workers_per_device=1,
        timeout=30,
    )
    server.run(port=args.port, generate_client_file=False)


if __name__ == "__main__":
    main()

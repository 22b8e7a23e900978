"""/metrics of a real multi-worker server adds up every worker's numbers."""

import base64
import re

import pytest
import requests

from tests.live.load import fire
from tests.live.server import LiveServer
from tests.model_weights import picture

pytestmark = pytest.mark.live
TOKEN = "live-metrics-token"


def total(text: str, name: str, **labels) -> float:
    values = [
        float(value)
        for found_labels, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, flags=re.M)
        if all(f'{key}="{wanted}"' in found_labels for key, wanted in labels.items())
    ]
    return sum(values)


def test_metrics_sum_all_workers_and_need_the_token(tmp_path, weights_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    server = LiveServer(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        weights=str(weights_path),
        workers=2,
        extra_env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_TOKEN": TOKEN},
    ).start()
    try:
        key = server.create_key("metrics", rate_limit=100)
        body = {"image": base64.b64encode(picture("jellyfish")).decode()}
        assert fire(f"{server.url}/api/v1/classify", key, 12, body) == {200: 12}
        assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 404
        for _ in range(4):  # successive scrapes land on either worker; each must see all 12
            text = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
            assert total(text, "aiserver_requests_total", endpoint="/api/v1/classify", status="200") == 12
            assert 1 <= total(text, "aiserver_batch_size_count", model="resnet18") <= 12
    finally:
        server.stop()

"""The client and its CLI end to end against a real uvicorn server."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aiserver_client import Client
from aiserver_client.cli import main
from tests.live.server import ROOT, LiveServer
from tests.model_weights import PICTURES, picture

pytestmark = pytest.mark.live
LABELS = list(PICTURES)


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights_path):
    database = tmp_path_factory.mktemp("client-live") / "db.sqlite3"
    live = LiveServer(database_url=f"sqlite:///{database}", weights=str(weights_path), workers=1).start()
    yield live
    live.stop()


def image_folder(root: Path, count: int) -> dict[str, str]:
    """``count`` pictures under ``root`` (some in a subfolder, in several formats); return {path: label}."""
    expected = {}
    for i in range(count):
        label = LABELS[i % len(LABELS)]
        fmt, suffix = [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")][i % 3]
        path = root / ("more" if i % 4 == 0 else "") / f"img{i:03d}.{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(picture(label, fmt=fmt))
        expected[str(path)] = label
    return expected


def test_a_folder_is_classified_in_batches_with_per_image_errors_in_a_table(server, tmp_path, capsys):
    key = server.create_key("folder", rate_limit=1000)
    expected = image_folder(tmp_path, 40)
    (tmp_path / "broken.jpg").write_bytes(b"this is not a picture")
    (tmp_path / "notes.md").write_text("not an image suffix: skipped")

    status = main(["classify", "--url", server.url, "--key", key, str(tmp_path), "--top-k", "3"])

    out, err = capsys.readouterr()
    assert status == 1  # one image failed, the run went on
    header, *lines = out.splitlines()
    assert header.split() == ["FILE", "LABEL", "CONFIDENCE", "NEXT"]
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in lines)}
    assert set(rows) == {*expected, str(tmp_path / "broken.jpg")}
    assert all(rows[path][0] == label for path, label in expected.items())
    assert rows[str(tmp_path / "broken.jpg")][0] == "ERROR invalid_image"
    assert "41 images: 40 classified, 1 failed" in err

    usage = Client(server.url, key).usage()
    assert usage["images"] == 41 and usage["requests"] == 3  # 16 + 16 + 9
    assert usage["by_status"] == {"200": 3} and usage["throttled"] == 0


def test_the_cli_waits_out_a_429_and_finishes_the_run(server, tmp_path, capsys):
    key = server.create_key("small", rate_limit=3, window=2)
    expected = image_folder(tmp_path, 5)
    client = Client(server.url, key, max_retries=0)
    client.classify([("warm.jpg", picture("goldfish"))] * 3)  # the whole quota, just spent

    status = main(["classify", "--url", server.url, "--key", key, "--json", str(tmp_path)])

    out, err = capsys.readouterr()
    results = json.loads(out)
    assert status == 0, err
    assert {r["path"]: r["predictions"][0]["label"] for r in results} == expected
    usage = client.usage()
    assert usage["throttled"] >= 1 and "retries after 429/503" in err
    assert usage["images"] == 3 + 5 + 1  # refused batches (429) cost nothing, the too-large batch (400) one unit
    assert usage["by_status"]["400"] == 1  # 5 > the whole limit of 3: the client split the batch


def test_module_entry_reads_url_and_key_from_the_environment(server, tmp_path):
    key = server.create_key("env", rate_limit=100)
    image_folder(tmp_path, 2)
    env = {**os.environ, "AISERVER_URL": server.url, "AISERVER_API_KEY": key}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "aiserver_client", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    classified = run("classify", "--json", str(tmp_path))
    assert classified.returncode == 0, classified.stderr
    assert len(json.loads(classified.stdout)) == 2
    usage = run("usage", "--json", "--days", "1")
    assert usage.returncode == 0 and json.loads(usage.stdout)["images"] == 2
    models = run("models")
    assert models.returncode == 0 and "resnet18 (default)" in models.stdout


def test_a_wrong_key_stops_the_run_with_status_2(server, tmp_path, capsys):
    image_folder(tmp_path, 1)
    assert main(["classify", "--url", server.url, "--key", "ais_wrong", str(tmp_path)]) == 2
    assert "401" in capsys.readouterr().err

"""TypeScript types generated from the live /api/schema/ (openapi-typescript) typecheck a classify call made with
openapi-fetch, and the call works against the server (clients/typescript/).

Skips where Node is absent, except under CI=true, where that fails the run.
"""

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.live.server import LiveServer
from tests.model_weights import picture

pytestmark = pytest.mark.live
PROJECT = Path(__file__).resolve().parents[2] / "clients" / "typescript"


def npx(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["npx", "--no-install", *args],
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def node_project():
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are required under CI=true")
        pytest.skip("node and npm are not installed")
    if not (PROJECT / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PROJECT, check=True, timeout=300)
    return PROJECT


def test_the_generated_types_typecheck_a_classify_call_that_works(node_project, tmp_path, weights_path):
    server = LiveServer(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", weights=str(weights_path), workers=1
    ).start()
    try:
        generated = npx("openapi-typescript", f"{server.url}/api/schema/?format=json", "-o", "schema.d.ts")
        assert generated.returncode == 0, generated.stdout + generated.stderr
        checked = npx("tsc", "--noEmit")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        built = npx("tsc")
        assert built.returncode == 0, built.stdout + built.stderr
        image = base64.b64encode(picture("jellyfish")).decode()

        def run(key: str) -> tuple[int, dict]:
            env = {"AISERVER_URL": server.url, "AISERVER_API_KEY": key, "IMAGE_BASE64": image}
            result = subprocess.run(
                ["node", "build/classify.js"],
                cwd=PROJECT,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
            )
            return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])

        assert run(server.create_key("typescript", rate_limit=10)) == (0, {"status": 200, "labels": ["jellyfish"]})
        assert run("ais_not-a-key") == (1, {"status": 401, "code": "invalid_api_key"})
    finally:
        server.stop()

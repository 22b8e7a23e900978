"""The minimal FastAPI peer: ``uvicorn bench.peers.fastapi_app:app``. No auth, no limits, no log: one route that
runs bench.peers.pipeline, the model on one thread per core (as aiserver's batch workers, without batching)."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi import FastAPI, HTTPException, Request

from .pipeline import BadRequest, Classifier, cores, graph_path

app = FastAPI()
classifier = Classifier(graph_path(), threads=1)
model_threads = ThreadPoolExecutor(max_workers=cores(), thread_name_prefix="model")


def classify(body: bytes) -> dict:
    row = classifier.run(classifier.pixels(body)[np.newaxis])[0]
    return classifier.answer(row)


@app.post("/classify")
async def classify_route(request: Request) -> dict:
    body = await request.body()
    try:
        return await asyncio.get_running_loop().run_in_executor(model_threads, classify, body)
    except BadRequest as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}

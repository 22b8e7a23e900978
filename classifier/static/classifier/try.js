/* The try-it page: classify images with the public API v2, as any client would.
 * The key lives in sessionStorage only (this tab, until it closes) and is sent only to this server. */
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("try-config").textContent);
  const KEY_STORAGE = "aiserver.apiKey";
  const form = document.getElementById("try-form");
  const keyInput = document.getElementById("api-key");
  const fileInput = document.getElementById("files");
  const dropZone = document.getElementById("drop-zone");
  const button = document.getElementById("classify-button");
  const message = document.getElementById("message");
  const results = document.getElementById("results");
  let chosen = [];  // the File objects to send, from the picker or a drop

  keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
  keyInput.addEventListener("input", () => sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim()));
  document.getElementById("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    keyInput.value = "";
  });

  fileInput.addEventListener("change", () => choose(fileInput.files));
  dropZone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    choose(event.dataTransfer.files);
  });

  function choose(files) {
    chosen = Array.from(files);
    show("info", chosen.length ? `${chosen.length} image(s) ready: press Classify.` : "");
  }

  function show(kind, text) {
    message.className = kind;
    message.textContent = text;
  }

  /** Seconds to wait before retrying: Retry-After, else the t= of the RateLimit header. */
  function waitSeconds(response) {
    const retryAfter = parseInt(response.headers.get("Retry-After"), 10);
    if (!Number.isNaN(retryAfter)) return retryAfter;
    const reset = /t=(\d+)/.exec(response.headers.get("RateLimit") || "");
    return reset ? parseInt(reset[1], 10) : null;
  }

  /** The sentence shown for an error answer, by status. */
  function explain(status, body, wait) {
    const detail = body && body.detail ? body.detail : "";
    const later = wait !== null ? ` Try again in ${wait} second${wait === 1 ? "" : "s"}.` : " Try again later.";
    switch (status) {
      case 401:
        return `401 — the API key was not accepted: ${detail} Check that you pasted the whole key and that it is not revoked or expired.`;
      case 413:
        return `413 — the upload is too large: ${detail} Send fewer or smaller images.`;
      case 429:
        return `429 — rate limit reached for this key: ${detail}${later}`;
      case 503:
        return `503 — the server cannot classify right now: ${detail}${later}`;
      default:
        return `${status} — ${detail || "the request failed"}${body && body.code ? ` (${body.code})` : ""}`;
    }
  }

  function predictionRow(prediction) {
    const percent = (prediction.confidence * 100).toFixed(1);
    const row = document.createElement("div");
    row.className = "prediction";
    row.dataset.confidence = String(prediction.confidence);
    const caption = document.createElement("div");
    caption.className = "caption";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = prediction.label;
    const value = document.createElement("span");
    value.className = "confidence";
    value.textContent = `${percent}%`;
    caption.append(label, value);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-label", prediction.label);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", percent);
    const fill = document.createElement("div");
    fill.className = "bar-fill";
    fill.style.width = `${percent}%`;
    bar.append(fill);
    row.append(caption, bar);
    return row;
  }

  function resultCard(file, result) {
    const card = document.createElement("figure");
    card.className = "result";
    const preview = document.createElement("img");
    preview.alt = file.name;
    preview.src = URL.createObjectURL(file);
    preview.addEventListener("load", () => URL.revokeObjectURL(preview.src), {once: true});
    const name = document.createElement("figcaption");
    name.className = "filename";
    name.textContent = file.name;
    card.append(preview, name);
    if (result.error) {
      const error = document.createElement("p");
      error.className = "image-error";
      error.textContent = `${result.error.message} (${result.error.code})`;
      card.append(error);
    } else {
      result.predictions.forEach((prediction) => card.append(predictionRow(prediction)));
    }
    return card;
  }

  async function classify(key, files) {
    const body = new FormData();
    files.forEach((file) => body.append("files", file, file.name));
    body.append("top_k", document.getElementById("top-k").value);
    body.append("model", document.getElementById("model").value);
    return fetch(config.classify_url, {method: "POST", headers: {Authorization: `Bearer ${key}`}, body});
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    if (!key) return show("error", "Paste an API key first.");
    if (!chosen.length) return show("error", "Pick or drop at least one image.");
    if (chosen.length > config.max_batch_images) {
      return show("error", `At most ${config.max_batch_images} images per request; you chose ${chosen.length}.`);
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    const files = chosen;
    button.disabled = true;
    results.replaceChildren();
    show("info", `Classifying ${files.length} image(s)…`);
    try {
      const response = await classify(key, files);
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        show("error", explain(response.status, body, waitSeconds(response)));
        return;
      }
      show("info", `${body.model}: ${files.length} image(s) in ${Math.round(body.processing_time_ms)} ms.`);
      results.replaceChildren(...body.results.map((result) => resultCard(files[result.index], result)));
    } catch (error) {
      show("error", `The server could not be reached (${error.message}).`);
    } finally {
      button.disabled = false;
    }
  });
})();

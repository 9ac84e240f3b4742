"""A Flask model server: scikit-learn's handwritten-digits classifier, trained by train.py.

POST /predict {"pixels": [64 numbers 0..16]}
    -> {"prediction": int, "probabilities": [10 floats], "model", "container", "inference_ms"}
POST /predict {"instances": [[64 numbers], ...]}   (up to MAX_INSTANCES)
    -> {"predictions": [int], "probabilities": [[10 floats]], "model", "container", "inference_ms"}
GET  /healthz -> {"status": "ok", "model", "served"}   (no identity: many real apps report none)
GET  /        -> the routes
POST /api/v1/_crash (only when ENABLE_CRASH_API is 1 or true) -> every later request answers 500

Served by gunicorn with one sync worker (gunicorn.conf.py): one request at a time, as the
orchestrator assumes. Environment: CONTAINER_ID (<hostname>:<PORT>), WORK_MS (0, simulated extra
inference time per request), ENABLE_CRASH_API (false); HOST and PORT are read by gunicorn.conf.py.
"""

import json
import logging
import math
import os
import socket
import time

import joblib
import numpy as np
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

FEATURES = 64
MAX_PIXEL = 16
MAX_INSTANCES = 1000
MAX_BODY_BYTES = 1 << 20


def env_number(name, default):
    raw = os.environ.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        # An exception, not SystemExit: gunicorn then stops ("Worker failed to boot") instead of retrying.
        raise ValueError(f"{name} must be a number >= 0; got {raw!r}")
    return value


CONTAINER_ID = os.environ.get("CONTAINER_ID") or f"{socket.gethostname()}:{os.environ.get('PORT', '5000')}"
WORK_MS = env_number("WORK_MS", 0)
ENABLE_CRASH_API = os.environ.get("ENABLE_CRASH_API", "").strip().lower() in ("1", "true")

artifact = joblib.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.joblib"))
MODEL_NAME = artifact["name"]
model = artifact["pipeline"]

served = 0
crashed = False

app = Flask(__name__)
# Under gunicorn, the app's own messages go where gunicorn's go (stdout, see gunicorn.conf.py).
gunicorn_log = logging.getLogger("gunicorn.error")
if gunicorn_log.handlers:
    app.logger.handlers = gunicorn_log.handlers
    app.logger.setLevel(gunicorn_log.level)


class InputError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def is_pixel(value):
    # bool is an int to Python; NaN fails both comparisons.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= MAX_PIXEL


def image(value, where):
    if not isinstance(value, list) or len(value) != FEATURES or not all(is_pixel(v) for v in value):
        raise InputError("INVALID_INPUT", f"{where} must be a list of {FEATURES} numbers from 0 to {MAX_PIXEL}")
    return value


def read_images():
    """The request's images as an (n, 64) array, and whether they came as a batch."""
    if not request.is_json:
        raise InputError("INVALID_INPUT", "expected a JSON body with Content-Type: application/json")
    # Bounded here: Werkzeug 2.2 applies Flask's MAX_CONTENT_LENGTH to form parsing only, not to raw reads.
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise InputError("PAYLOAD_TOO_LARGE", f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise InputError("INVALID_JSON", f"request body is not valid JSON: {error}")
    if isinstance(body, dict) and "pixels" in body:
        return np.array([image(body["pixels"], '"pixels"')], dtype=float), False
    if isinstance(body, dict) and "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not 0 < len(instances) <= MAX_INSTANCES:
            raise InputError("INVALID_INPUT", f'"instances" must be a list of 1 to {MAX_INSTANCES} images')
        return np.array([image(v, f'"instances"[{i}]') for i, v in enumerate(instances)], dtype=float), True
    raise InputError("INVALID_INPUT", f'expected a JSON object with "pixels" (one image of {FEATURES} numbers) or "instances" (a list of them)')


@app.before_request
def refuse_when_crashed():
    if crashed:
        return jsonify(error="CRASHED", message="the model server was crashed on request and no longer serves"), 500


@app.get("/")
def routes():
    listed = ["GET /", "GET /healthz", "POST /predict"] + (["POST /api/v1/_crash"] if ENABLE_CRASH_API else [])
    return jsonify(model=MODEL_NAME, routes=listed)


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", model=MODEL_NAME, served=served)


@app.post("/predict")
def predict():
    global served
    images, batch = read_images()
    begun = time.perf_counter()
    probabilities = model.predict_proba(images)
    if WORK_MS > 0:
        # Stands in for a heavier model; blocking is fine, the server runs one request at a time anyway.
        time.sleep(WORK_MS / 1000)
    inference_ms = round((time.perf_counter() - begun) * 1000, 3)
    served += 1
    # The class of highest probability, so the prediction always agrees with the probabilities.
    predictions = [int(model.classes_[i]) for i in probabilities.argmax(axis=1)]
    rounded = np.round(probabilities, 6).tolist()
    if batch:
        return jsonify(predictions=predictions, probabilities=rounded, model=MODEL_NAME, container=CONTAINER_ID, inference_ms=inference_ms)
    return jsonify(prediction=predictions[0], probabilities=rounded[0], model=MODEL_NAME, container=CONTAINER_ID, inference_ms=inference_ms)


if ENABLE_CRASH_API:

    @app.post("/api/v1/_crash")
    def crash():
        global crashed
        crashed = True
        app.logger.warning("crashed on request (container %s); every route now answers 500", CONTAINER_ID)
        return jsonify(status="crashed", container=CONTAINER_ID)


@app.errorhandler(InputError)
def input_error(error):
    return jsonify(error=error.code, message=error.message), 413 if error.code == "PAYLOAD_TOO_LARGE" else 400


@app.errorhandler(HTTPException)
def http_error(error):
    return jsonify(error=error.name.upper().replace(" ", "_"), message=error.description), error.code


@app.errorhandler(Exception)
def internal_error(error):
    app.logger.exception("request failed")
    return jsonify(error="INTERNAL", message="internal error"), 500

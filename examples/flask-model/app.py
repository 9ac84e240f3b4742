"""A small Flask model server with the orchestrator's container contract.

POST /run_model {"text": "..."} -> {"prediction": {"label", "scores"}, "model", "container", "inference_ms"}
GET  /health                     -> {"status": "ok", "container", "model", "served", "uptimeMs"}

The model is a multinomial naive Bayes sentiment classifier (positive / neutral / negative),
trained at start-up on the labelled sentences in TRAINING_SET below. It needs only the Python
standard library and Flask. The server handles one request at a time on purpose: the
orchestrator gives each container one request at a time and queues the rest.

Environment: HOST (127.0.0.1), PORT (5000), CONTAINER_ID (<hostname>:<port>), WORK_MS (0),
MAX_BODY_BYTES (1048576).
"""

import json
import math
import os
import re
import signal
import socket
import sys
import time
from collections import Counter

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

MODEL_NAME = "naive-bayes-sentiment@1"
MAX_TEXT_CHARS = 10_000

# Small hand-written training set: (label, sentence). Replace it with your own data, or replace the
# whole model class: the HTTP contract below does not depend on it.
TRAINING_SET = [
    ("positive", "I love this product, it works great"),
    ("positive", "What a wonderful day, everything went well"),
    ("positive", "The service was excellent and the staff were friendly"),
    ("positive", "Absolutely fantastic experience, highly recommended"),
    ("positive", "This is the best purchase I have made all year"),
    ("positive", "Great quality and fast delivery, very happy"),
    ("positive", "The food was delicious and the view was beautiful"),
    ("positive", "I am so pleased with the results"),
    ("positive", "Amazing support team, they solved my problem quickly"),
    ("positive", "The movie was brilliant and the acting superb"),
    ("positive", "Nice design, easy to use and reliable"),
    ("positive", "Thank you, this made me really happy"),
    ("positive", "A delightful book, I enjoyed every page"),
    ("positive", "Good value for money, I would buy it again"),
    ("positive", "The new update is awesome and much faster"),
    ("positive", "Lovely hotel with a perfect location"),
    ("positive", "I like it a lot, it is wonderful"),
    ("positive", "Impressive performance and a great battery"),
    ("positive", "The concert was fun and the crowd was amazing"),
    ("positive", "Everything arrived in perfect condition, excellent seller"),
    ("negative", "I hate this product, it broke after one day"),
    ("negative", "What a terrible day, everything went wrong"),
    ("negative", "The service was awful and the staff were rude"),
    ("negative", "Absolutely horrible experience, do not recommend"),
    ("negative", "This is the worst purchase I have made all year"),
    ("negative", "Poor quality and slow delivery, very disappointed"),
    ("negative", "The food was disgusting and the room was dirty"),
    ("negative", "I am so angry about the results"),
    ("negative", "Useless support team, they ignored my problem"),
    ("negative", "The movie was boring and the acting bad"),
    ("negative", "Ugly design, hard to use and unreliable"),
    ("negative", "This made me really sad and frustrated"),
    ("negative", "A dreadful book, I regret every page"),
    ("negative", "A waste of money, I would never buy it again"),
    ("negative", "The new update is broken and much slower"),
    ("negative", "Noisy hotel with a miserable location"),
    ("negative", "I do not like it, it is awful"),
    ("negative", "Disappointing performance and a weak battery"),
    ("negative", "The concert was a mess and the sound was terrible"),
    ("negative", "Everything arrived damaged, the worst seller"),
    ("neutral", "The package arrived on Tuesday"),
    ("neutral", "The meeting is scheduled for three o'clock"),
    ("neutral", "This phone has a six inch screen"),
    ("neutral", "The store opens at nine in the morning"),
    ("neutral", "I bought the book last week"),
    ("neutral", "The hotel is next to the train station"),
    ("neutral", "The report contains four chapters and an appendix"),
    ("neutral", "We watched the movie on Saturday evening"),
    ("neutral", "The update was installed yesterday"),
    ("neutral", "The battery lasts about ten hours"),
    ("neutral", "The menu lists soups, salads and sandwiches"),
    ("neutral", "She works in the accounting department"),
    ("neutral", "The train leaves from platform two"),
    ("neutral", "The box contains a cable and a charger"),
    ("neutral", "The concert starts at eight"),
    ("neutral", "The product comes in blue and grey"),
    ("neutral", "He called the support line this afternoon"),
    ("neutral", "The seller ships orders from Germany"),
    ("neutral", "The room has two windows and a desk"),
    ("neutral", "Delivery usually takes three to five days"),
]

TOKEN = re.compile(r"[a-z']+")


def tokenize(text):
    return TOKEN.findall(text.lower())


class NaiveBayesSentiment:
    """Multinomial naive Bayes with add-one (Laplace) smoothing over lower-cased word counts."""

    def __init__(self, examples, alpha=1.0):
        self.labels = sorted({label for label, _ in examples})
        docs = Counter(label for label, _ in examples)
        words = {label: Counter() for label in self.labels}
        for label, sentence in examples:
            words[label].update(tokenize(sentence))
        self.vocabulary = set().union(*words.values())
        self.log_prior = {label: math.log(docs[label] / len(examples)) for label in self.labels}
        self.log_likelihood = {}
        for label in self.labels:
            total = sum(words[label].values()) + alpha * len(self.vocabulary)
            self.log_likelihood[label] = {w: math.log((words[label][w] + alpha) / total) for w in self.vocabulary}

    def predict(self, text):
        # Words never seen in training carry no evidence for any class, so they are left out.
        known = [w for w in tokenize(text) if w in self.vocabulary]
        log_posterior = {
            label: self.log_prior[label] + sum(self.log_likelihood[label][w] for w in known) for label in self.labels
        }
        top = max(log_posterior.values())
        weights = {label: math.exp(value - top) for label, value in log_posterior.items()}
        total = sum(weights.values())
        probability = {label: weights[label] / total for label in self.labels}
        label = max(self.labels, key=probability.get) if known else "neutral"
        scores = {
            "pos": round(probability["positive"], 4),
            "neu": round(probability["neutral"], 4),
            "neg": round(probability["negative"], 4),
            "compound": round(probability["positive"] - probability["negative"], 4),
        }
        return {"label": label, "scores": scores}


class BadRequest(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def env_int(name, default, minimum, maximum):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        sys.exit(f"invalid {name}: expected an integer from {minimum} to {maximum}, got {raw!r}")
    return value


HOST = os.environ.get("HOST") or "127.0.0.1"
PORT = env_int("PORT", 5000, 0, 65535)
CONTAINER_ID = os.environ.get("CONTAINER_ID") or f"{socket.gethostname()}:{PORT}"
WORK_MS = env_int("WORK_MS", 0, 0, 600_000)
MAX_BODY_BYTES = env_int("MAX_BODY_BYTES", 1024 * 1024, 1, 2**31)

model = NaiveBayesSentiment(TRAINING_SET)
started_at = time.monotonic()
served = 0

app = Flask(__name__)


@app.get("/health")
def health():
    uptime_ms = round((time.monotonic() - started_at) * 1000)
    return jsonify(status="ok", container=CONTAINER_ID, model=MODEL_NAME, served=served, uptimeMs=uptime_ms)


@app.post("/run_model")
def run_model():
    global served
    if not request.is_json:
        raise BadRequest("INVALID_INPUT", "expected a JSON body with Content-Type: application/json")
    # Bounded here: Werkzeug 2.2 applies Flask's MAX_CONTENT_LENGTH to form parsing only, not to raw reads.
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise RequestEntityTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise BadRequest("INVALID_JSON", f"request body is not valid JSON: {error}")
    if not isinstance(body, dict):
        raise BadRequest("INVALID_INPUT", 'expected a JSON object with a "text" field')
    text = body.get("text")
    if text is None:
        raise BadRequest("INVALID_INPUT", 'field "text" is required')
    if not isinstance(text, str):
        raise BadRequest("INVALID_INPUT", 'field "text" must be a string')
    if text == "":
        raise BadRequest("INVALID_INPUT", 'field "text" must not be empty')
    if len(text) > MAX_TEXT_CHARS:
        raise BadRequest("INVALID_INPUT", f'field "text" must be at most {MAX_TEXT_CHARS} characters')

    begun = time.perf_counter()
    prediction = model.predict(text)
    if WORK_MS > 0:
        # Stands in for a heavier model; blocking is fine, the server runs one request at a time anyway.
        time.sleep(WORK_MS / 1000)
    inference_ms = round((time.perf_counter() - begun) * 1000, 3)
    served += 1
    return jsonify(prediction=prediction, model=MODEL_NAME, container=CONTAINER_ID, inference_ms=inference_ms)


@app.errorhandler(BadRequest)
def bad_request(error):
    return jsonify(error=error.code, message=error.message), 400


@app.errorhandler(HTTPException)
def http_error(error):
    code = "PAYLOAD_TOO_LARGE" if error.code == 413 else error.name.upper().replace(" ", "_")
    return jsonify(error=code, message=error.description), error.code


@app.errorhandler(Exception)
def internal_error(error):
    app.logger.exception("request failed")
    return jsonify(error="INTERNAL", message="internal error"), 500


# SIGTERM (docker stop, the orchestrator's teardown) lets the request being computed finish, then
# exits. Python's default would kill it mid-request, and as PID 1 in a container it would ignore it.
in_request = False
stopping = False


def exit_if_stopping():
    global in_request
    in_request = False
    if stopping:
        raise SystemExit(0)


@app.before_request
def mark_busy():
    global in_request
    in_request = True


@app.after_request
def exit_after_answer(response):
    response.call_on_close(exit_if_stopping)
    return response


def on_sigterm(_signum, _frame):
    global stopping
    stopping = True
    if not in_request:
        raise SystemExit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    # threaded=False: one request at a time, like one model on one CPU or GPU. Werkzeug also closes
    # every connection after its answer, so an idle client can never hold the only thread.
    app.run(host=HOST, port=PORT, threaded=False)

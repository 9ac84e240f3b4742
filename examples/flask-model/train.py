"""Train the digits classifier when the image is built (`RUN python3 train.py`).

Data: scikit-learn's bundled `load_digits` (1,797 8x8 images of handwritten digits, pixel values
0..16), so nothing is downloaded. A fixed-seed stratified 75/25 split; the model is fitted on the
75 % and scored on the 25 %, which is saved next to it so that anyone (the image's test) can check
the accuracy against the served model.

Writes model.joblib (the fitted pipeline and its name) and holdout.json ({"model", "accuracy",
"features": [[64 numbers]], "labels": [int]}) into the folder given as the first argument
(default: this file's folder). Prints the held-out accuracy.
"""

import json
import os
import sys

import joblib
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MODEL_NAME = "digits-logistic-regression@1"
SEED = 0


def main(out_dir):
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, stratify=digits.target, random_state=SEED
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))

    joblib.dump({"name": MODEL_NAME, "pipeline": model}, os.path.join(out_dir, "model.joblib"))
    holdout = {
        "model": MODEL_NAME,
        "accuracy": accuracy,
        "features": x_test.astype(int).tolist(),
        "labels": y_test.astype(int).tolist(),
    }
    with open(os.path.join(out_dir, "holdout.json"), "w", encoding="utf-8") as file:
        json.dump(holdout, file)
    print(f"{MODEL_NAME}: trained on {len(y_train)} digits, held-out accuracy {accuracy:.4f} on {len(y_test)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))

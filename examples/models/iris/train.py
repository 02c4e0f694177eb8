"""Train a small iris classifier and write it as a folder a Lattice model version holds.

    python train.py [--data CSV] [--out FOLDER]

The data: ``--data``, else the first ``*.csv`` under /datasets/iris/ (a dataset added to the
notebook, read-only there), else scikit-learn's bundled iris. A CSV has the columns
sepal_length, sepal_width, petal_length, petal_width and species.

The folder (``--out``, by default ./iris-model) holds what a deployment loads:

- ``model.joblib``: the fitted scikit-learn pipeline and the species' names;
- ``predict.py``: ``setup()`` loads the model once, ``predict(**inputs)`` answers;
- ``metrics.json``: accuracy on a held-out quarter, the parameters and where the data
  came from (paste it as the version's metadata when you upload the folder).

Upload the folder as a model version from the model's page (Upload a version, format
"Python predictor"), or save it from the notebook's page ("Save a folder as a model").
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
MOUNTED = Path("/datasets/iris")
HERE = Path(__file__).resolve().parent
PARAMETERS = {"C": 1.0, "max_iter": 500, "test_size": 0.25, "random_state": 0}


def read_csv(path: Path) -> tuple[list[list[float]], list[str]]:
    """Rows of features and their species from a CSV with FEATURES and ``species``."""
    rows, labels = [], []
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            rows.append([float(record[name]) for name in FEATURES])
            labels.append(record["species"].strip())
    if not rows:
        raise SystemExit(f"{path} holds no rows.")
    return rows, labels


def load(data: Path | None) -> tuple[list[list[float]], list[str], str]:
    """The rows, their species, and where they came from."""
    if data is None and MOUNTED.is_dir():
        data = next(iter(sorted(MOUNTED.glob("*.csv"))), None)
    if data is not None:
        rows, labels = read_csv(data)
        return rows, labels, str(data)
    bundled = load_iris()
    names = [str(name) for name in bundled.target_names]
    return bundled.data.tolist(), [names[t] for t in bundled.target], "sklearn.datasets.load_iris"


def train(data: Path | None, out: Path) -> dict[str, Any]:
    """Fit, evaluate, and write the folder; what metrics.json says."""
    rows, labels, source = load(data)
    species = sorted(set(labels))
    targets = [species.index(label) for label in labels]
    train_x, test_x, train_y, test_y = train_test_split(
        rows,
        targets,
        test_size=PARAMETERS["test_size"],
        random_state=PARAMETERS["random_state"],
        stratify=targets,
    )
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=PARAMETERS["C"], max_iter=PARAMETERS["max_iter"]),
    )
    model.fit(train_x, train_y)
    accuracy = accuracy_score(test_y, model.predict(test_x))

    out.mkdir(parents=True, exist_ok=True)
    joblib.dump({"model": model, "species": species, "features": FEATURES}, out / "model.joblib")
    shutil.copyfile(HERE / "predict.py", out / "predict.py")
    metrics = {
        "metrics": {"accuracy": round(float(accuracy), 4), "test_rows": len(test_y)},
        "parameters": PARAMETERS,
        "training_data": source,
        "rows": len(rows),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a CSV of iris measurements and species")
    parser.add_argument("--out", type=Path, default=Path("iris-model"), help="the folder to write")
    args = parser.parse_args(argv)
    metrics = train(args.data, args.out)
    sys.stdout.write(f"Wrote {args.out}/: accuracy {metrics['metrics']['accuracy']}\n")


if __name__ == "__main__":
    main()

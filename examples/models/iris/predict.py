"""The iris model's predictor: what a Lattice deployment loads from this folder.

The contract (docs/models.md): ``setup()`` is called once, before any request, and loads
what ``predict`` needs; ``predict(**inputs)`` is called per request with the request's
JSON object as keyword arguments and returns something JSON can encode.

    predict(sepal_length=5.1, sepal_width=3.5, petal_length=1.4, petal_width=0.2)
    -> {"species": "setosa", "probabilities": {"setosa": 0.98, ...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib

HERE = Path(__file__).resolve().parent
_loaded: dict[str, Any] = {}


def setup() -> None:
    """Load model.joblib, next to this file, once."""
    if not _loaded:
        _loaded.update(joblib.load(HERE / "model.joblib"))


def predict(**inputs: float) -> dict[str, Any]:
    """The species of one flower from its four measurements (in cm)."""
    if not _loaded:
        setup()
    features = _loaded["features"]
    missing = [name for name in features if name not in inputs]
    unknown = sorted(set(inputs) - set(features))
    if missing or unknown:
        raise ValueError(
            f"Give exactly {', '.join(features)} (missing {missing}, unknown {unknown})."
        )
    row = [[float(inputs[name]) for name in features]]
    probabilities = _loaded["model"].predict_proba(row)[0]
    species = _loaded["species"]
    best = max(range(len(species)), key=lambda i: probabilities[i])
    return {
        "species": species[best],
        "probabilities": {
            name: round(float(p), 4) for name, p in zip(species, probabilities, strict=True)
        },
    }

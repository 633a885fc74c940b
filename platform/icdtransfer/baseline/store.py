"""First-level models of the L2R baselines saved without pickle: arrays in .npz files read
with `allow_pickle=False`, so loading a model directory never executes code.

* tf-idf vectorizer: its n-gram vocabulary (as a unicode array, in column order) and idf;
* one-vs-rest logistic regression: coefficients (float32) and intercepts;
* kNN: the training documents' tf-idf rows and code sets (CSR matrices, scipy's npz format).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.multiclass import OneVsRestClassifier


def save_vectorizer(vectorizer: TfidfVectorizer, path: Path) -> None:
    terms = np.empty(len(vectorizer.vocabulary_), dtype=object)
    for term, column in vectorizer.vocabulary_.items():
        terms[column] = term
    np.savez(path, terms=terms.astype(str), idf=vectorizer.idf_)


def load_vectorizer(path: Path, vectorizer: TfidfVectorizer) -> TfidfVectorizer:
    """`vectorizer` (unfitted, built from the member's settings: lr.make_vectorizer) fitted
    with the stored vocabulary and idf."""
    with np.load(path, allow_pickle=False) as saved:
        terms, idf = saved["terms"], saved["idf"]
    vectorizer.set_params(vocabulary={str(t): i for i, t in enumerate(terms)})
    vectorizer._validate_vocabulary()  # sets vocabulary_ from the fixed vocabulary
    vectorizer.idf_ = idf
    return vectorizer


def save_linear(classifier: OneVsRestClassifier, path: Path) -> None:
    """Coefficients and intercepts; a code with one class in training (scikit-learn's constant
    predictor) becomes zero coefficients and an intercept of +-inf (probability 1 or 0)."""
    n_features = next((e.coef_.shape[1] for e in classifier.estimators_ if hasattr(e, "coef_")), 0)
    coef = np.zeros((len(classifier.estimators_), n_features), dtype=np.float32)
    intercept = np.zeros(len(classifier.estimators_), dtype=np.float32)
    for j, estimator in enumerate(classifier.estimators_):
        if hasattr(estimator, "coef_"):
            coef[j], intercept[j] = estimator.coef_[0], np.ravel(estimator.intercept_)[0]
        else:
            intercept[j] = np.inf if np.ravel(estimator.y_)[0] == 1 else -np.inf
    np.savez(path, coef=coef, intercept=intercept)


class LinearScorer:
    """Per-code logistic regression probabilities from stored coefficients."""

    def __init__(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as saved:
            self.coef = saved["coef"]
            self.intercept = saved["intercept"]

    def predict_proba(self, x: sp.spmatrix) -> np.ndarray:
        z = np.asarray(x @ self.coef.T) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


def save_neighbours(x_train: sp.csr_matrix, y_train: sp.csr_matrix, folder: Path) -> None:
    sp.save_npz(folder / "knn_x.npz", x_train.tocsr().astype(np.float32))
    sp.save_npz(folder / "knn_y.npz", sp.csr_matrix(y_train, dtype=np.float32))


def load_neighbours(folder: Path) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    return sp.load_npz(folder / "knn_x.npz").tocsr(), sp.load_npz(folder / "knn_y.npz").tocsr()

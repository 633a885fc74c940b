"""LR + L2R and LR + L2R + NERC: the paper's stacked baselines (its ref. [9], Kavuluru et al.
2015), with LightGBM's lambdarank as the learning-to-rank model.

First level: the LR baseline's tf-idf + one logistic regression per code, and k nearest
training documents by tf-idf cosine. Second level: for each document, candidate codes (top LR
codes, the neighbours' codes, NERC codes) are ranked by a LightGBM `lambdarank` model on the
features of l2r_features.py. The ranker is fitted on OUT-OF-FOLD first-level scores of the
training split (folds grouped by patient, as the splits are), so it never learns from scores
the first level made on its own training documents.

Scores -> probabilities: the report tunes one global threshold on validation and also applies
0.5, so the member must hold probabilities. A sigmoid (Platt scaling) fitted on the validation
candidates' ranker scores against their gold labels maps ranker scores to [0, 1]; codes that
are not candidates get 0. Thresholding that probability is thresholding the ranker score, so
how many codes a document gets is chosen on validation by the report's tuned threshold (its
ranker-score equivalent is stored in member.json); 0.5 means "more likely than not" under the
calibration.

Model files (no pickle; loading never runs code): vectorizer.npz, lr.npz, knn_x.npz, knn_y.npz
(store.py), ranker.txt (LightGBM's text format), calibration.json, nerc.tsv (NERC variant).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from icdtransfer.artifacts import (
    INFO_FILE,
    LABELS_FILE,
    VECTORIZER_FILE,
    MemberInfo,
    Metrics,
    read_codes_table,
    read_json,
    write_json,
)
from icdtransfer.baseline import store
from icdtransfer.baseline.l2r_features import (
    Candidates,
    candidates,
    feature_names,
    nearest,
    neighbour_votes,
    nerc_matrix,
)
from icdtransfer.baseline.lr import baseline_compute, id_text, make_classifier, make_vectorizer
from icdtransfer.baseline.nerc import NercMatcher, evidence
from icdtransfer.baseline.nerc_dictionary import (
    build_dictionary,
    load_dictionary,
    mesh_names_of,
    save_dictionary,
)
from icdtransfer.config import BaselineConfig, TargetConfig, build
from icdtransfer.data.atomic import atomic_dir
from icdtransfer.data.corpus import Corpus
from icdtransfer.data.texts import document_texts
from icdtransfer.evaluate.metrics import describe
from icdtransfer.evaluate.predictions import write_member_files

log = logging.getLogger(__name__)
NAMES = {"lr_l2r": "LR + L2R", "lr_l2r_nerc": "LR + L2R + NERC"}


@dataclass
class Stack:
    """Everything that turns documents into code probabilities once the levels are fitted."""

    linear: Any  # predict_proba(x) -> docs x codes (fitted classifier or store.LinearScorer)
    x_train: sp.csr_matrix  # training tf-idf rows (the kNN index)
    y_train: sp.csr_matrix  # training code sets
    ranker: Any  # predict(features) -> scores (LGBMRanker or lightgbm.Booster)
    calibration: tuple[float, float]  # probability = sigmoid(a * score + b)
    matcher: NercMatcher | None
    train_frequency: np.ndarray
    codes: list[str]
    top_lr: int
    k: int

    def nerc(self, texts: list[str]) -> np.ndarray | None:
        if self.matcher is None:
            return None
        return nerc_matrix([evidence(self.matcher.mentions(t)) for t in texts], self.codes)

    def pair_scores(
        self, x: sp.csr_matrix, texts: list[str], nerc: np.ndarray | None = None
    ) -> tuple[Candidates, np.ndarray]:
        """The candidate pairs of tf-idf rows `x` (documents `texts`, whose NERC matrix may be
        given when already computed) and their ranker scores."""
        lr = np.asarray(self.linear.predict_proba(x), dtype=np.float32)
        vote, count = neighbour_votes(nearest(x, self.x_train, self.k), self.y_train)
        if nerc is None:
            nerc = self.nerc(texts)
        pairs = candidates(lr, vote, count, self.train_frequency, self.top_lr, nerc)
        return pairs, np.asarray(self.ranker.predict(pairs.features), dtype=np.float64)

    def probabilities(
        self, x: sp.csr_matrix, texts: list[str], nerc: np.ndarray | None = None
    ) -> np.ndarray:
        """docs x codes probabilities: calibrated ranker scores, 0 for non-candidates."""
        pairs, scores = self.pair_scores(x, texts, nerc)
        a, b = self.calibration
        probs = np.zeros((x.shape[0], len(self.codes)), dtype=np.float32)
        probs[pairs.doc, pairs.code] = 1.0 / (1.0 + np.exp(-(a * scores + b)))
        return probs


def out_of_fold(
    cfg: BaselineConfig, x: sp.csr_matrix, y: sp.csr_matrix, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LR probabilities and kNN (vote, count) of every training document from models that
    never saw its fold."""
    lr = np.zeros(y.shape, dtype=np.float32)
    vote = np.zeros(y.shape, dtype=np.float32)
    count = np.zeros(y.shape, dtype=np.float32)
    folds = GroupKFold(n_splits=cfg.folds, shuffle=True, random_state=cfg.seed)
    for fit_rows, held in folds.split(x, groups=groups):
        classifier = make_classifier(cfg).fit(x[fit_rows], y[fit_rows].toarray())
        lr[held] = classifier.predict_proba(x[held])
        nb = nearest(x[held], x[fit_rows], cfg.neighbours)
        vote[held], count[held] = neighbour_votes(nb, y[fit_rows])
    return lr, vote, count


def _ranker(cfg: BaselineConfig) -> lightgbm.LGBMRanker:
    return lightgbm.LGBMRanker(
        objective="lambdarank",
        n_estimators=cfg.ranker_trees,
        learning_rate=cfg.ranker_learning_rate,
        num_leaves=cfg.ranker_leaves,
        min_child_samples=20,
        random_state=cfg.seed,
        deterministic=True,  # with one thread and row-wise histograms: the same model per seed
        force_row_wise=True,
        n_jobs=1,
        verbose=-1,
    )


def _platt(scores: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """Sigmoid parameters (a, b) mapping ranker scores to probabilities of being gold."""
    fit = LogisticRegression(C=1e4).fit(scores.reshape(-1, 1), gold.astype(int))
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def _nerc_agreement(nerc: np.ndarray, gold: sp.csr_matrix) -> dict[str, float]:
    """Precision and recall of the codes NERC finds affirmed (`nerc`: nerc_matrix), against
    the gold codes: how much of the answer a dictionary alone reads off the notes."""
    found = nerc[:, :, 0] > 0
    truth = gold.toarray().astype(bool)
    hits = float((found & truth).sum())
    return {
        "precision": round(hits / max(found.sum(), 1), 4),
        "recall": round(hits / max(truth.sum(), 1), 4),
    }


def train_l2r(cfg: BaselineConfig, target: TargetConfig, source_dir: str) -> Metrics:
    """Fit and evaluate `cfg.method` (lr_l2r or lr_l2r_nerc); write its member directory."""
    if cfg.method not in NAMES:
        raise ValueError(f"baseline.method {cfg.method!r} is not an L2R method ({list(NAMES)})")
    with_nerc = cfg.method == "lr_l2r_nerc"
    corpus = Corpus.open(target.out_dir)
    codes = corpus.label_table["code"].tolist()
    frequency = corpus.label_table["train_frequency"].to_numpy().astype(np.float32)
    start, cpu_start = time.perf_counter(), time.process_time()
    split = {name: corpus.split(name) for name in ("train", "validation", "test")}
    vectorizer = make_vectorizer(cfg)
    x = {"train": vectorizer.fit_transform(id_text(corpus, split["train"]))}
    for name in ("validation", "test"):
        x[name] = vectorizer.transform(id_text(corpus, split[name]))
    y_train = corpus.labels[split["train"]].tocsr()
    texts: dict[str, list[str]] = {name: [] for name in split}
    matcher, terms = None, {}
    if with_nerc:
        terms = build_dictionary(
            codes, target.code_system, target.truncate_depth, mesh_names_of(source_dir)
        )
        matcher = NercMatcher(terms)
        ids = corpus.docs["doc_id"].tolist()
        for name, rows in split.items():
            texts[name] = document_texts(target, [ids[i] for i in rows])
    patients = corpus.docs["patient_id"].to_numpy()[split["train"]]
    doc_ids = corpus.docs["doc_id"].to_numpy()[split["train"]]
    groups = np.where(patients == "", "doc:" + doc_ids, patients)
    lr_oof, vote, count = out_of_fold(cfg, x["train"], y_train, groups)
    stack = Stack(
        linear=make_classifier(cfg).fit(x["train"], y_train.toarray()),
        x_train=x["train"],
        y_train=y_train,
        ranker=None,
        calibration=(1.0, 0.0),
        matcher=matcher,
        train_frequency=frequency,
        codes=codes,
        top_lr=cfg.lr_candidates,
        k=cfg.neighbours,
    )
    nerc = {name: stack.nerc(texts[name]) for name in split}  # each split matched once
    pairs = candidates(lr_oof, vote, count, frequency, cfg.lr_candidates, nerc["train"])
    gold = np.asarray(y_train[pairs.doc, pairs.code]).ravel()
    sizes = pairs.group_sizes[pairs.group_sizes > 0]
    stack.ranker = _ranker(cfg).fit(pairs.features, gold, group=sizes)
    # calibration on the validation candidates (the first level sees them as unseen documents)
    y_val = corpus.labels[split["validation"]].tocsr()
    val_pairs, val_scores = stack.pair_scores(
        x["validation"], texts["validation"], nerc["validation"]
    )
    val_gold = np.asarray(y_val[val_pairs.doc, val_pairs.code]).ravel()
    stack.calibration = _platt(val_scores, val_gold)
    probs = {
        name: stack.probabilities(x[name], texts[name], nerc[name])
        for name in ("validation", "test")
    }
    seconds = time.perf_counter() - start
    metrics = corpus.evaluate(probs["validation"], probs["test"])
    a, b = stack.calibration
    tuned = metrics.tuned.threshold
    details = {
        "tfidf_features": int(x["train"].shape[1]),
        "training_pairs": int(len(gold)),
        "candidates_per_document": round(float(pairs.group_sizes.mean()), 1),
        "validation_gold_in_candidates": round(float(val_gold.sum() / max(y_val.sum(), 1)), 4),
        "calibration": {"a": a, "b": b},
        "tuned_ranker_score": (np.log(tuned / (1 - tuned)) - b) / a if 0 < tuned < 1 else None,
        "feature_gain": dict(
            zip(
                feature_names(with_nerc),
                [round(float(g), 1) for g in stack.ranker.booster_.feature_importance("gain")],
                strict=True,
            )
        ),
        "nerc_terms": len(terms),
        "nerc_validation": _nerc_agreement(nerc["validation"], y_val) if with_nerc else None,
    }
    info = MemberInfo(
        stage="baseline",
        tokenizer_numbers=corpus.stats.get("tokenizer_numbers", "placeholder"),
        train_seconds=round(seconds, 1),
        settings=asdict(cfg),
        method=cfg.method,
        model=f"{NAMES[cfg.method]} (tf-idf LR, kNN{', NERC' if with_nerc else ''}; "
        "LightGBM lambdarank)",
        features=feature_names(with_nerc),
        details=details,
        compute=baseline_compute(cpu_start),
    )
    with atomic_dir(cfg.member_dir()) as tmp:
        store.save_vectorizer(vectorizer, tmp / "vectorizer.npz")
        store.save_linear(stack.linear, tmp / "lr.npz")
        store.save_neighbours(x["train"], y_train, tmp)
        stack.ranker.booster_.save_model(str(tmp / "ranker.txt"))
        write_json(tmp / "calibration.json", {"a": a, "b": b})
        if with_nerc:
            save_dictionary(terms, tmp / "nerc.tsv")
        write_member_files(tmp, corpus.path, (probs["validation"], probs["test"]), metrics, info)
    log.info("%s: %s, in %.0f s", NAMES[cfg.method], describe(metrics.tuned, "tuned"), seconds)
    return metrics


def load_stack(member: Path) -> tuple[Any, Stack]:
    """(vectorizer, stack) of an L2R member directory."""
    info = MemberInfo.read(member)
    cfg = build(BaselineConfig, info.settings, where=str(member / INFO_FILE))
    table = read_codes_table(member / LABELS_FILE)
    x_train, y_train = store.load_neighbours(member)
    calibration = read_json(member / "calibration.json")
    nerc = member / "nerc.tsv"
    stack = Stack(
        linear=store.LinearScorer(member / "lr.npz"),
        x_train=x_train,
        y_train=y_train,
        ranker=lightgbm.Booster(model_file=str(member / "ranker.txt")),
        calibration=(calibration["a"], calibration["b"]),
        matcher=NercMatcher(load_dictionary(nerc)) if nerc.exists() else None,
        train_frequency=table["train_frequency"].to_numpy().astype(np.float32),
        codes=table["code"].tolist(),
        top_lr=cfg.lr_candidates,
        k=cfg.neighbours,
    )
    return store.load_vectorizer(member / VECTORIZER_FILE, make_vectorizer(cfg)), stack

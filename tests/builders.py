"""Builders for small, hand-checkable input files (MEDLINE XML, MIMIC CSV, JSONL)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

from icdtransfer.synth import synthesize
from icdtransfer.train.loop import LoopSettings


def medline_xml(articles: list[dict], *, close: bool = True) -> bytes:
    """A MEDLINE XML file; each article: pmid, title, abstract (parts), mesh [(ui, name)]."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2019//EN"'
        ' "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_190101.dtd">',
        "<PubmedArticleSet>",
    ]
    for a in articles:
        pmid = f'<PMID Version="1">{a["pmid"]}</PMID>' if a.get("pmid") else ""
        abstract = "".join(f"<AbstractText>{p}</AbstractText>" for p in a.get("abstract", []))
        abstract = f"<Abstract>{abstract}</Abstract>" if abstract else ""
        mesh = "".join(
            f'<MeshHeading><DescriptorName UI="{ui}" MajorTopicYN="N">{name}</DescriptorName>'
            "</MeshHeading>"
            for ui, name in a.get("mesh", [])
        )
        mesh = f"<MeshHeadingList>{mesh}</MeshHeadingList>" if mesh else ""
        out.append(
            f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">{pmid}'
            f'<Article PubModel="Print"><ArticleTitle>{a.get("title", "")}</ArticleTitle>'
            f"{abstract}</Article>{mesh}</MedlineCitation>"
            '<PubmedData><ArticleIdList><ArticleId IdType="pubmed">'
            f"{a.get('pmid', '')}</ArticleId></ArticleIdList></PubmedData></PubmedArticle>"
        )
    if close:
        out.append("</PubmedArticleSet>")
    return ("\n".join(out) + "\n").encode("utf-8")


# MIMIC-III's own column layout (the synthesizer writes the same tables)
NOTE_HEADER = list(synthesize.NOTE_HEADER)
DIAG_HEADER = list(synthesize.DIAGNOSIS_HEADER)


def write_csv(path: Path, header: list[str], rows: list[list], compress: bool = False) -> Path:
    opener = gzip.open if compress else open
    with opener(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: list[dict | str]) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for r in records:
            handle.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


WORDS = [f"w{i}" for i in range(300)]
KEYWORDS = {
    "428.0": "cardiac",
    "401.9": "pressure",
    "250.0": "glucose",
    "486": "lung",
    "584.9": "kidney",
    "038.9": "sepsis",
}


def tiny_target_jsonl(path: Path, n: int = 160, seed: int = 0) -> Path:
    """Notes of random filler words; a code is present exactly when its keyword is (learnable)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(20, 80))))
        codes = [c for c in KEYWORDS if rng.random() < 0.35]
        if not codes:
            codes = ["428.0"]
        for c in codes:
            words.insert(int(rng.integers(len(words))), KEYWORDS[c])
        records.append(
            {"id": f"n{i}", "text": " ".join(words), "codes": codes, "patient_id": f"p{i // 2}"}
        )
    return write_jsonl(path, records)


def keyword_codes_jsonl(
    path: Path, n: int = 1500, codes: int = 30, rate: float = 0.2, seed: int = 0
) -> Path:
    """Short notes of filler words with many codes (verbatim `none` codes c00, c01, ...), each
    present with probability `rate` and exactly when its keyword kw00, kw01, ... is: a task
    with enough labels that a loss averaged over them starves AdaDelta."""
    import numpy as np

    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(15, 30))))
        present = [j for j in range(codes) if rng.random() < rate] or [0]
        for j in present:
            words.insert(int(rng.integers(len(words))), f"kw{j:02d}")
        records.append(
            {
                "id": f"k{i}",
                "text": " ".join(words),
                "codes": [f"c{j:02d}" for j in present],
                "patient_id": f"p{i}",
            }
        )
    return write_jsonl(path, records)


def tiny_medline(path: Path, n: int = 200, seed: int = 1) -> Path:
    """Abstracts that use the same keywords, labelled with MeSH-like descriptors."""
    import numpy as np

    rng = np.random.default_rng(seed)
    mesh = {
        "cardiac": ("D006333", "Heart Failure"),
        "lung": ("D011014", "Pneumonia"),
        "glucose": ("D003920", "Diabetes Mellitus"),
        "kidney": ("D058186", "AKI"),
    }
    articles = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(20, 50))))
        keys = [k for k in mesh if rng.random() < 0.4] or ["cardiac"]
        words += keys
        rng.shuffle(words)
        articles.append(
            {
                "pmid": str(1000 + i),
                "title": "t",
                "abstract": [" ".join(words)],
                "mesh": [mesh[k] for k in keys],
            }
        )
    path.write_bytes(medline_xml(articles))
    return path


def loop_settings(**kw) -> LoopSettings:
    """Training-loop settings for small CPU tests (fp32, Adam), overridden by `kw`."""
    base = dict(
        optimizer="adam",
        learning_rate=0.01,
        batch_size=8,
        epochs=3,
        patience=5,
        seed=3,
        precision="fp32",
        device="cpu",
        bucket=True,
        max_tokens=60,
        word_dropout=0.2,
        min_length=3,
    )
    return LoopSettings(**{**base, **kw})

"""Builders for small, hand-checkable input files (MEDLINE XML, MIMIC CSV, JSONL)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path


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


NOTE_HEADER = [
    "ROW_ID",
    "SUBJECT_ID",
    "HADM_ID",
    "CHARTDATE",
    "CHARTTIME",
    "STORETIME",
    "CATEGORY",
    "DESCRIPTION",
    "CGID",
    "ISERROR",
    "TEXT",
]
DIAG_HEADER = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"]


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

"""MEDLINE and BioASQ readers, checked against pubmed-parser on the real baseline file."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import re
import subprocess
import sys
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

import pubmed_parser
import pytest

from builders import medline_xml
from icdtransfer.data import medline
from icdtransfer.data.errors import InputError
from icdtransfer.data.medline import _parse_chunk, mesh_name_table, read_bioasq, read_medline
from icdtransfer.data.prepare import prepare_source


@pytest.fixture(scope="module")
def ours(medline_file: Path) -> list:
    return list(read_medline(medline_file, workers=2))


def test_reader_matches_pubmed_parser_on_the_real_file(medline_file: Path, ours: list) -> None:
    theirs = {}
    for article in pubmed_parser.parse_medline_xml(str(medline_file)):
        if article["abstract"] and article["mesh_terms"]:
            theirs[article["pmid"]] = re.findall(r"D\d{6,9}", article["mesh_terms"])
    mine = {c.pmid: [ui for ui, _ in c.mesh] for c in ours if c.text and c.mesh}
    assert len(mine) > 14_000  # ~14,800 with abstract and MeSH (docs/DESIGN.md section 3)
    assert mine.keys() == theirs.keys()
    assert mine == theirs  # same descriptor UIs, same order, per PMID


def test_parallel_and_in_process_parsing_agree(medline_file: Path, ours: list) -> None:
    single = list(read_medline(medline_file, workers=1))
    assert len(single) == len(ours) == 30_000
    assert single == ours


_FROM_A_RAY_DRIVER = """
import itertools, multiprocessing, sys
from ray.cluster_utils import Cluster
from icdtransfer.data.medline import read_medline

if __name__ == "__main__":
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    reader = read_medline(sys.argv[1], workers=2)
    early = sum(1 for _ in itertools.islice(reader, 500))
    reader.close()  # stops the pool with chunks still in flight
    left = len(multiprocessing.active_children())
    print(early, left, sum(1 for _ in read_medline(sys.argv[1], workers=2)))
    cluster.shutdown()
"""


@pytest.mark.slow
def test_parallel_reader_works_in_a_ray_driver(medline_file: Path, tmp_path: Path) -> None:
    """Regression: stopping a reader early used to terminate its pool. In a process holding a
    Ray node (as the multi-node tests do) the workers' inherited SIGTERM handler deadlocked and
    CI hung in the session fixture; with default handlers a worker killed while sending a
    result could hold the queue lock. Now the pool finishes its chunks in flight and exits.
    Runs in a child process, so a regression fails on the timeout instead of hanging the
    suite."""
    script = tmp_path / "driver.py"
    script.write_text(_FROM_A_RAY_DRIVER)
    done = subprocess.run(
        [sys.executable, str(script), str(medline_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["500", "0", "30000"]  # read, workers left, all read


def _parse_or_die(piece: tuple[bytes, int, bool]):
    if piece[1] > 1_000_000:  # a chunk from the second half of the file: the worker dies
        os._exit(1)
    return _parse_chunk(piece)


@pytest.mark.timeout(120)
def test_a_parse_worker_that_dies_is_an_error_not_a_hang(
    medline_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(medline, "_parse_chunk", _parse_or_die)  # forked workers inherit it
    read = 0
    with pytest.raises(BrokenProcessPool):
        for _ in read_medline(medline_file, workers=2):
            read += 1
    assert 0 < read < 30_000
    assert multiprocessing.active_children() == []


def test_text_is_title_and_every_abstract_part(tmp_path: Path) -> None:
    path = tmp_path / "a.xml"
    path.write_bytes(
        medline_xml(
            [
                {
                    "pmid": "1",
                    "title": "A <i>title</i>.",
                    "abstract": ["First part.", "Second <sup>2</sup> part."],
                    "mesh": [("D006333", "Heart Failure")],
                }
            ]
        )
    )
    (citation,) = read_medline(path)
    assert citation.text == "A title. First part. Second 2 part."
    assert citation.mesh == [("D006333", "Heart Failure")]


def _source_cfg(params, path: Path, out: Path):
    return replace(
        params.source,
        input=str(path),
        out_dir=str(out),
        holdout=0.0,
        validation_size=1,
        test_size=1,
        min_count=1,
    )


def test_malformed_xml_names_line_and_last_pmid_and_writes_nothing(params, tmp_path: Path) -> None:
    good = [
        {"pmid": str(i), "title": "t", "abstract": ["x y z"], "mesh": [("D1", "n")]}
        for i in range(1, 5)
    ]
    text = (
        medline_xml(good)
        .decode()
        .replace(
            "<ArticleTitle>t</ArticleTitle><Abstract><AbstractText>x y z</AbstractText></Abstract>"
            '</Article><MeshHeadingList><MeshHeading><DescriptorName UI="D1" MajorTopicYN="N">n'
            "</DescriptorName></MeshHeading></MeshHeadingList></MedlineCitation><PubmedData>"
            '<ArticleIdList><ArticleId IdType="pubmed">3<',
            "<ArticleTitle>t</Abstract><",
        )
    )
    path = tmp_path / "bad.xml"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        prepare_source(_source_cfg(params, path, out), params.tokenizer)
    assert str(path) in str(err.value)
    assert re.search(r"line \d+, after PMID 2: malformed XML", str(err.value))
    assert not out.exists()


def test_truncated_gzip_is_an_error_and_writes_nothing(
    params, medline_file: Path, tmp_path: Path
) -> None:
    data = medline_file.read_bytes()
    path = tmp_path / "cut.xml.gz"
    path.write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"cut\.xml\.gz: after PMID \d+: truncated gzip"):
        prepare_source(_source_cfg(params, path, out), params.tokenizer)
    assert not out.exists()


def test_file_ending_inside_the_article_set_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "open.xml.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(medline_xml([{"pmid": "9", "title": "t", "abstract": ["a"]}], close=False))
    with pytest.raises(InputError, match="truncated"):
        list(read_medline(path))


@pytest.mark.parametrize("content", [b"", b"<?xml version='1.0'?>\n<Other/>\n"])
def test_empty_or_foreign_xml_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.xml"
    path.write_bytes(content)
    with pytest.raises(InputError, match="empty input|no <PubmedArticleSet>"):
        list(read_medline(path))


def test_article_without_pmid_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nopmid.xml"
    path.write_bytes(medline_xml([{"pmid": "5", "abstract": ["a"]}, {"abstract": ["b"]}]))
    with pytest.raises(InputError, match="after PMID 5: PubmedArticle has no PMID"):
        list(read_medline(path))


def test_skipped_citations_are_counted(params, tmp_path: Path) -> None:
    articles = [
        {"pmid": "1", "title": "t", "abstract": ["kept one"], "mesh": [("D1", "a")]},
        {"pmid": "2", "title": "t", "abstract": ["kept two"], "mesh": [("D1", "a")]},
        {"pmid": "3", "title": "t", "abstract": ["kept three"], "mesh": [("D1", "a")]},
        {"pmid": "4", "title": "no abstract", "mesh": [("D1", "a")]},
        {"pmid": "5", "title": "t", "abstract": ["no mesh"]},
    ]
    path = tmp_path / "a.xml"
    path.write_bytes(medline_xml(articles))
    stats = prepare_source(_source_cfg(params, path, tmp_path / "out"), params.tokenizer)
    assert stats["instances"] == 3
    assert stats["skipped"] == {"no_abstract": 1, "no_mesh": 1}
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["instances"] == 3


def test_bioasq_reader_maps_names_through_medline(tmp_path: Path, medline_file: Path) -> None:
    doc = {
        "articles": [
            {
                "pmid": 11,
                "title": "T",
                "abstractText": "Heart failure study.",
                "meshMajor": ["Heart Failure", "Not A Descriptor"],
            },
            {"pmid": "12", "title": "T2", "abstractText": "", "meshMajor": ["Humans"]},
        ]
    }
    path = tmp_path / "bioasq.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    names = {"Heart Failure": "D006333"}
    first, second = read_bioasq(path, names)
    assert first.pmid == "11" and first.text == "T Heart failure study."
    assert first.mesh == [("D006333", "Heart Failure"), ("", "Not A Descriptor")]
    assert second.text is None
    kept_as_names = next(read_bioasq(path, None))
    assert kept_as_names.mesh[0] == ("Heart Failure", "Heart Failure")


def test_mesh_name_table_from_real_medline(medline_file: Path) -> None:
    table = mesh_name_table([medline_file])
    assert table["Humans"] == "D006801"
    assert len(table) > 9_000


def test_bioasq_errors_name_the_article(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(
        '{"articles": [{"pmid": 1, "abstractText": "x", "meshMajor": []},'
        ' {"pmid": 2, "abstractText": "y"}]}'
    )
    with pytest.raises(InputError, match=r"article 2 \(after PMID 1\): article has no 'meshMajor'"):
        list(read_bioasq(path))
    path.write_text('{"articles": [{"pmid": 1, "abstractText": "x", "meshMajor": [] ')
    with pytest.raises(InputError, match="malformed JSON"):
        list(read_bioasq(path))

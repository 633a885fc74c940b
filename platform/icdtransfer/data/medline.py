"""MEDLINE/PubMed XML and BioASQ JSON readers (stage-1 source corpus), streaming."""

from __future__ import annotations

import gc
import io
import multiprocessing
import re
import signal
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import ijson
from lxml import etree

from icdtransfer.data.errors import InputError, clip
from icdtransfer.data.files import compressed_stream_errors, open_binary


@dataclass(slots=True)
class Citation:
    """One citation. `text` is the title and every AbstractText part, or None without abstract
    (MEDLINE: then `mesh` is left empty, as nothing downstream uses it)."""

    pmid: str
    text: str | None
    mesh: list[tuple[str, str]]  # (descriptor UI, descriptor name); UI may be "" (BioASQ)
    where: str  # how errors name this record


_ROOT = b"<PubmedArticleSet"
_ARTICLE_END = b"</PubmedArticle>"
_BLOCK = 1 << 22  # decompressed bytes read at a time; articles are cut into chunks of ~this


def read_medline(path: Path, workers: int = 1) -> Iterator[Citation]:
    """Every PubmedArticle of one MEDLINE XML file (.xml or .xml.gz), in file order.

    Text is ArticleTitle followed by all AbstractText parts (structured abstracts included;
    inline markup such as <i> or <sup> keeps its text). MeSH comes from
    MeshHeadingList/MeshHeading/DescriptorName (UI attribute and name).

    The decompressed stream is cut between articles (after each `</PubmedArticle>`) into chunks
    of about 4 MB, and every chunk is parsed whole by lxml; with `workers` > 1 chunks are parsed
    in that many forked processes (a MEDLINE file is ~75% parse time), results still in file
    order.
    Malformed XML (anywhere, the closing root tag included), a truncated gzip stream or an
    article without a PMID is an InputError naming the line and the last PMID read.
    """
    last_pmid: str | None = None

    def where() -> str:
        return f"after PMID {clip(last_pmid)}" if last_pmid else "before the first article"

    with open_binary(path) as stream, compressed_stream_errors(path, where):
        results = _parsed(_chunks(stream, path), workers)
        try:
            for citations, error in results:
                for pmid, text, mesh in citations:
                    last_pmid = pmid
                    yield Citation(pmid, text, mesh, f"PMID {clip(pmid)}")
                if error is not None:
                    line, problem = error
                    raise InputError(path, f"line {line}, {where()}", problem)
        finally:
            results.close()


_Parsed = tuple[list[tuple[str, str | None, list[tuple[str, str]]]], tuple[int, str] | None]


def _parsed(chunks: Iterator[tuple[bytes, int, bool]], workers: int) -> Iterator[_Parsed]:
    """`_parse_chunk` of every chunk, in order; with `workers` > 1 in forked processes.

    At most three chunks per worker are in flight, which bounds memory when the consumer is
    slower than the parsers. Workers are not killed when the reader stops early (an error, a
    consumer that has read enough, Ctrl-C): chunks not started are cancelled, those running
    finish, and the workers exit. Killing them mid-task hung CI twice over: a worker killed
    while sending a result can leave the result queue's lock held, and a parent holding a Ray
    node in-process passes its SIGTERM handler to forked children, where it deadlocks. A worker
    that dies on its own (out of memory) raises BrokenProcessPool here instead of a hang.
    """
    if workers <= 1:
        yield from map(_parse_chunk, chunks)
        return
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_default_signals)
    pending: deque[Future[_Parsed]] = deque()
    stream_error: Exception | None = None
    try:
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except Exception as error:  # e.g. truncated gzip: what was read before comes first
                stream_error = error
                break
            pending.append(pool.submit(_parse_chunk, chunk))
            if len(pending) >= 3 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        if stream_error is not None:
            raise stream_error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _default_signals() -> None:
    """Ctrl-C goes to the parent, which stops the pool; SIGTERM kills (no inherited handler)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _chunks(stream: IO[bytes], path: Path) -> Iterator[tuple[bytes, int, bool]]:
    """(articles, first line number, is_last) pieces of the stream, cut after article ends.

    The prolog (XML declaration, DOCTYPE, root start tag) is checked and dropped; the last
    piece holds whatever follows the last article, closing root tag included.
    """
    buf = b""
    line = 1
    started = False
    while block := stream.read(_BLOCK):
        buf += block
        if not started:
            root = buf.find(_ROOT)
            close = buf.find(b">", root) if root >= 0 else -1
            if close < 0:
                if len(buf) > _BLOCK:
                    raise InputError(path, "line 1", "no <PubmedArticleSet> root element")
                continue
            _check_prolog(buf[:root], path)
            line += buf.count(b"\n", 0, close + 1)
            buf = buf[close + 1 :]
            started = True
        cut = buf.rfind(_ARTICLE_END)
        if cut < 0:
            continue
        cut += len(_ARTICLE_END)
        chunk, buf = buf[:cut], buf[cut:]
        yield chunk, line, False
        line += chunk.count(b"\n")
    if not started:
        problem = "empty input" if not buf.strip() else "no <PubmedArticleSet> root element"
        raise InputError(path, None, problem)
    yield buf, line, True


def _check_prolog(prolog: bytes, path: Path) -> None:
    match = re.search(rb"encoding=[\"']([A-Za-z0-9._-]+)", prolog)
    if match and match.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
        name = clip(match.group(1).decode())
        raise InputError(path, "line 1", f"unsupported XML encoding {name}")


def _parse_chunk(piece: tuple[bytes, int, bool]) -> _Parsed:
    """Parse one piece; returns its citations and, on bad XML, (file line, problem).

    Errors are returned, not raised, so they cross process boundaries intact.
    """
    data, first_line, is_last = piece
    gc.disable()  # parsed objects die by reference counting; cyclic GC passes only cost time
    try:
        return _parse_piece(data, first_line, is_last)
    finally:
        gc.enable()


def _parse_piece(data: bytes, first_line: int, is_last: bool) -> _Parsed:
    document = b"<PubmedArticleSet>" + data + (b"" if is_last else b"</PubmedArticleSet>")
    out: list[tuple[str, str | None, list[tuple[str, str]]]] = []
    events = etree.iterparse(
        io.BytesIO(document),
        events=("end",),
        tag="PubmedArticle",
        resolve_entities=False,
        huge_tree=True,
    )
    try:
        for _, article in events:
            citation = _citation(article)
            if isinstance(citation, str):
                line = first_line + (article.sourceline or 1) - 1
                return out, (line, citation)
            out.append(citation)
            article.clear(keep_tail=True)
            while article.getprevious() is not None:
                del article.getparent()[0]
    except etree.XMLSyntaxError as err:
        line = first_line + (err.lineno or 1) - 1
        problem = f"malformed XML: {err.msg}"
        if is_last and "end of data" in (err.msg or "").lower():
            problem += " (the file ends before </PubmedArticleSet>: truncated?)"
        return out, (line, problem)
    return out, None


def _citation(article: etree._Element) -> tuple[str, str | None, list[tuple[str, str]]] | str:
    """(pmid, text or None, mesh) of one article, or a problem description."""
    medline = article.find("MedlineCitation")
    pmid = medline.findtext("PMID") if medline is not None else None
    if not pmid or not pmid.strip():
        return "PubmedArticle has no PMID"
    art = medline.find("Article")
    parts = [] if art is None else art.findall("Abstract/AbstractText")
    abstract = " ".join(filter(None, ("".join(p.itertext()).strip() for p in parts)))
    if not abstract:
        return pmid.strip(), None, []  # skipped downstream: its MeSH is never read
    title_el = art.find("ArticleTitle")
    title = "".join(title_el.itertext()).strip() if title_el is not None else ""
    text = f"{title} {abstract}" if title else abstract
    mesh = [
        (d.get("UI", ""), (d.text or "").strip())
        for d in medline.iterfind("MeshHeadingList/MeshHeading/DescriptorName")
    ]
    return pmid.strip(), text, mesh


def mesh_name_table(paths: list[Path]) -> dict[str, str]:
    """Descriptor name -> UI, as seen in MEDLINE files (maps BioASQ's names to UIs)."""
    table: dict[str, str] = {}
    for path in paths:
        for citation in read_medline(path):
            for ui, name in citation.mesh:
                if ui and name:
                    table.setdefault(name, ui)
    return table


def read_bioasq(path: Path, names: dict[str, str] | None = None) -> Iterator[Citation]:
    """Articles of a BioASQ JSON file: {"articles": [{pmid, title, abstractText, meshMajor}]}.

    Streams with ijson (BioASQ's allMeSH file is tens of GB). meshMajor holds descriptor names;
    with `names` they are mapped to UIs (a name missing from the table keeps UI ""), without it
    they are kept as names.
    """
    last = {"pmid": None, "count": 0}

    def where() -> str:
        prev = f"after PMID {clip(last['pmid'])}" if last["pmid"] else "first article"
        return f"article {last['count'] + 1} ({prev})"

    with open_binary(path) as stream, compressed_stream_errors(path, where):
        try:
            for item in ijson.items(stream, "articles.item"):
                if not isinstance(item, dict):
                    raise InputError(path, where(), "article is not a JSON object")
                for key in ("pmid", "abstractText", "meshMajor"):
                    if key not in item:
                        raise InputError(path, where(), f"article has no {key!r} field")
                if not isinstance(item["meshMajor"], list):
                    raise InputError(path, where(), "'meshMajor' is not a list")
                pmid = str(item["pmid"]).strip()
                last["count"] += 1
                last["pmid"] = pmid
                title = str(item.get("title") or "").strip()
                abstract = str(item["abstractText"] or "").strip()
                text = (f"{title} {abstract}" if title else abstract) if abstract else None
                mesh = [
                    ((names or {}).get(n, "") if names is not None else n, n)
                    for n in map(str, item["meshMajor"])
                ]
                yield Citation(pmid, text, mesh, f"PMID {clip(pmid)}")
        except ijson.JSONError as err:
            raise InputError(path, where(), f"malformed JSON: {err}") from None
        except UnicodeDecodeError as err:
            raise InputError(path, where(), f"not valid UTF-8: {err.reason}") from None

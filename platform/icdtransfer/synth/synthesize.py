"""The synthesize stage: a MIMIC-III formatted EMR corpus built from real codes and real text.

No EMR corpus can be shipped, so the default target corpus is written here, in MIMIC-III's
own format (NOTEEVENTS.csv.gz, DIAGNOSES_ICD.csv.gz), and read back by the real MIMIC reader.

* Codes: real ICD-9-CM diagnosis codes (CMS v32). The inventory is a set of `abc.x` groups:
  commonly coded conditions first, then groups whose descriptions match MeSH disease
  descriptors of held-out abstracts, then the rest. Rank k gets weight k^-tail_exponent; each
  admission draws 1 + Poisson(codes_per_note - 1) groups without replacement by weight, and
  writes one billable child code of each (so truncation merges real sibling codes).
* Text: long discharge summaries with headers, vitals, labs, medications and ward narrative
  unrelated to the codes. The language about a code is written the way clinicians write it
  (phrases.py): one fixed family of phrases per code (abbreviations and chart synonyms,
  its ICD-10-CM wording via the GEMs, matching MeSH headings), findings and treatments that
  imply it, and sentences of real abstracts whose MeSH descriptors match the code by name,
  taken only from the PMIDs the stage-1 corpus never sees (`source.holdout`). The CMS
  description itself is quoted at `description_rate` per mention; stats.json reports the
  share of (note, code) pairs whose full description appears verbatim in the note
  (`description_verbatim_share`). Distractors mention conditions the admission is not coded
  with (family history, ruled-out diagnoses), as real notes do.
* Patients: some have several admissions; chronic codes recur across them.
* Noise rows the reader must handle: addenda, ISERROR notes, radiology/nursing notes,
  admissions with codes but no summary.

Every knob is a corpus statistic (size, note length, codes per note, tail exponent). The
output is a pure function of the params: the same seed gives byte-identical files.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from icdtransfer.config import SourceConfig, SynthesizeConfig
from icdtransfer.data.atomic import atomic_dir
from icdtransfer.data.codes import icd9_descriptions
from icdtransfer.synth import text as bank
from icdtransfer.synth.codes import Inventory, build_inventory
from icdtransfer.synth.phrases import Family, quotes

log = logging.getLogger(__name__)

PAPER_SCALE = {"notes": 71_463, "words_per_note": 5_303, "codes": 1_400, "codes_per_note": 7.6}


def effective(cfg: SynthesizeConfig) -> SynthesizeConfig:
    """The config with the `paper` scale applied (the paper's Table 1 sizes)."""
    return cfg if cfg.scale == "small" else dataclasses.replace(cfg, **PAPER_SCALE)


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
DIAGNOSIS_HEADER = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"]


class NoteWriter:
    """Discharge-summary text for one admission, from the inventory and the text banks.

    A code is written as its billable code `child` of inventory group `g`; every mention draws
    from the child's phrase family (phrases.py), and quotes the CMS description only at
    `description_rate`.
    """

    def __init__(
        self, inventory: Inventory, rng: np.random.Generator, description_rate: float
    ) -> None:
        self.inv = inventory
        self.rng = rng
        self.description_rate = description_rate

    def _family(self, g: int, child: str) -> Family:
        return self.inv.families[g][child]

    def mention(self, g: int, child: str) -> str | None:
        """One phrase naming code `child`: usually from its family, rarely its description.

        The family's k-th name is chosen with weight 1/k: as in real notes, one name per
        condition dominates (its abbreviation where it has one) and the others are rarer.
        None when the family has no name for it but abstract language does (a one-word
        description such as "Acidosis" has no other name): the note then documents the code
        through that language only. A code with neither is named by its description.
        """
        names = self._family(g, child).names
        if self.rng.random() < self.description_rate or not (names or self.inv.sentences[g]):
            return icd9_descriptions()[child].lower()
        if not names:
            return None
        weights = 1.0 / np.arange(1, len(names) + 1)
        return names[int(self.rng.choice(len(names), p=weights / weights.sum()))]

    def _about(self, g: int, child: str) -> str:
        """Evidence for code `child`: a finding that implies it and/or abstract sentences."""
        rng = self.rng
        parts = []
        findings = self._family(g, child).findings
        pool = self.inv.sentences[g]
        if findings and (not pool or rng.random() < 0.7):
            parts.append(findings[int(rng.integers(len(findings)))])
        if pool:
            start = int(rng.integers(len(pool)))
            parts.extend(pool[start : start + int(rng.integers(1, 4))])
        return " ".join(parts)

    def _course_item(self, g: int, child: str) -> str:
        """One problem of the hospital course; where the family has findings, some problems
        are documented by their evidence alone."""
        about = self._about(g, child)
        if self._family(g, child).findings and self.rng.random() < 0.3:
            return f"# {about}"
        name = self.mention(g, child)
        if name is None:
            return f"# {about}"
        return f"# {name}: {about}" if about else f"# {name}."

    def summary(
        self,
        groups: list[int],
        codes: list[str],
        words: int,
        dates: tuple[str, str],
        sex: str,
        age: int,
    ) -> str:
        """One discharge summary of about `words` words for inventory groups `groups`, written
        as their billable `codes`."""
        rng, inv = self.rng, self.inv
        admit, discharge = dates
        distract = _named(
            self.mention(int(g), inv.children[g][0])
            for g in rng.integers(len(inv.groups), size=2)
            if g not in groups
        )
        history = _named(
            self.mention(g, c)
            for g, c in zip(groups[1:], codes[1:], strict=True)
            if rng.random() < 0.5
        )
        sections = [
            f"Admission Date:  [**{admit}**]              Discharge Date:   [**{discharge}**]",
            f"Date of Birth:  [**{int(admit[:4]) - age}-{rng.integers(1, 13)}-"
            f"{rng.integers(1, 29)}**]             Sex:   {sex}",
            f"Service: {bank.SERVICES[int(rng.integers(len(bank.SERVICES)))]}",
            "Allergies:\nPatient recorded as having No Known Allergies to Drugs",
            "Chief Complaint:\n"
            + bank.CHIEF_COMPLAINTS[int(rng.integers(len(bank.CHIEF_COMPLAINTS)))],
            f"History of Present Illness:\n{age} year old {'woman' if sex == 'F' else 'man'} "
            + (f"with a history of {', '.join(history)} " if history else "")
            + "who presents with the complaint above. "
            + self._about(groups[0], codes[0]),
            "Past Medical History:\n" + ("\n".join(f"- {h}" for h in history) or "- none"),
            "Social History:\n" + bank.SOCIAL[int(rng.integers(len(bank.SOCIAL)))],
            "Family History:\n"
            + (
                "; ".join(
                    f"{'Mother' if i % 2 else 'Father'} with {d}" for i, d in enumerate(distract)
                )
                or "Noncontributory"
            ),
            "Physical Exam:\n" + bank.vitals(rng) + "\n" + "\n".join(bank.EXAM_LINES),
            "Pertinent Results:\n" + "\n".join(bank.lab_block(rng, admit) for _ in range(3)),
        ]
        course = [self._course_item(g, c) for g, c in zip(groups, codes, strict=True)]
        if distract and rng.random() < 0.5:
            course.append(f"No evidence of {distract[0]} during this admission.")
        diagnoses = _named(
            self.mention(g, c) for g, c in zip(groups, codes, strict=True) if rng.random() < 0.7
        )
        tail = [
            "Medications on Admission:\n" + bank.medication_list(rng, 6),
            "Discharge Medications:\n" + bank.medication_list(rng, 8),
            "Discharge Disposition:\n" + ("Home" if rng.random() < 0.6 else "Extended Care"),
            "Discharge Diagnosis:\n" + ("\n".join(diagnoses) or "See hospital course."),
            "Discharge Condition:\nStable. Mental status clear and coherent.",
            "Discharge Instructions:\n" + " ".join(bank.INSTRUCTIONS),
            "Followup Instructions:\nPlease follow up with your primary care physician in one "
            "to two weeks.",
        ]
        used = sum(len(part.split()) for part in sections + course + tail)
        narrative = bank.filler(rng, max(words - used, 40), admit)
        sections.append("Brief Hospital Course:\n" + "\n".join(course) + "\n" + narrative)
        sections.extend(tail)
        return "\n\n".join(sections) + "\n"

    def addendum(self, groups: list[int], codes: list[str]) -> str:
        i = int(self.rng.integers(len(groups)))
        name = self.mention(groups[i], codes[i])
        about = self._about(groups[i], codes[i])
        return (
            "Addendum:\nAdditional information reviewed after discharge. "
            + (f"{name}: {about}" if name else about)
            + "\n"
        )

    def other_note(self, date: str) -> tuple[str, str, str]:
        """A note of another category (the reader must leave it out)."""
        if self.rng.random() < 0.5:
            text = (
                "CHEST (PORTABLE AP)\nFINDINGS: Lungs are clear. Heart size is normal. "
                "IMPRESSION: No acute cardiopulmonary process.\n"
            )
            return "Radiology", "CHEST (PORTABLE AP)", text
        return "Nursing/other", "Report", bank.filler(self.rng, 80, date) + "\n"


def _named(mentions: Iterable[str | None]) -> list[str]:
    """The mentions that name their code (see NoteWriter.mention)."""
    return [m for m in mentions if m]


def _gzip_csv(path: Path) -> tuple[gzip.GzipFile, csv.writer, io.TextIOWrapper]:
    # mtime=0 and no file name in the header: the bytes depend on the content only.
    raw = open(path, "wb")  # noqa: SIM115 - closed by the caller
    zipped = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
    text = io.TextIOWrapper(zipped, encoding="utf-8", newline="")
    return zipped, csv.writer(text, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n"), text


def synthesize(cfg: SynthesizeConfig, source: SourceConfig) -> dict:
    """Write NOTEEVENTS.csv.gz, DIAGNOSES_ICD.csv.gz and stats.json into `cfg.out_dir`."""
    cfg = effective(cfg)
    inventory, n_abstracts = build_inventory(cfg, source)
    rng = np.random.default_rng([cfg.seed, 2])
    writer = NoteWriter(inventory, rng, cfg.description_rate)
    logw = -cfg.tail_exponent * np.log(np.arange(1, cfg.codes + 1))
    group_counts = np.zeros(cfg.codes, dtype=np.int64)
    combos: set[tuple[int, ...]] = set()
    n_codes_total = words_total = quoted = 0
    counts = {
        "discharge_summaries": 0,
        "addenda": 0,
        "iserror_rows": 0,
        "other_category_notes": 0,
        "admissions_without_note": 0,
    }
    hadm_ids = 100_000 + rng.permutation(max(900_000, 3 * cfg.notes))
    row_id = diag_row = 0
    with atomic_dir(cfg.out_dir) as tmp:
        notes_gz, notes, notes_text = _gzip_csv(tmp / "NOTEEVENTS.csv.gz")
        diag_gz, diags, diag_text = _gzip_csv(tmp / "DIAGNOSES_ICD.csv.gz")
        notes.writerow(NOTE_HEADER)
        diags.writerow(DIAGNOSIS_HEADER)
        admission = 0
        subject = 10_000
        bar = tqdm(total=cfg.notes, desc="synthesize", unit="note", mininterval=1.0, disable=None)
        while counts["discharge_summaries"] < cfg.notes:
            subject += 1
            visits = 1 + int(rng.poisson(cfg.admissions_per_patient - 1))
            sex = "F" if rng.random() < 0.5 else "M"
            age = int(rng.integers(25, 90))
            year = int(rng.integers(2100, 2190))
            previous: list[int] = []
            for visit in range(visits):
                if counts["discharge_summaries"] >= cfg.notes:
                    break
                hadm = int(hadm_ids[admission])
                admission += 1
                n = min(1 + int(rng.poisson(cfg.codes_per_note - 1)), cfg.codes)
                chronic = [g for g in previous if rng.random() < 0.5][:n]
                keys = logw + rng.gumbel(size=cfg.codes)
                keys[chronic] = np.inf
                groups = [int(g) for g in np.argsort(-keys, kind="stable")[:n]]
                previous = groups
                month, day = int(rng.integers(1, 13)), int(rng.integers(1, 25))
                admit = f"{year + visit}-{month}-{day}"
                discharge = f"{year + visit}-{month}-{day + int(rng.integers(1, 5))}"
                codes = [
                    inventory.children[g][int(rng.integers(len(inventory.children[g])))]
                    for g in groups
                ]
                for seq, code in enumerate(codes, start=1):
                    diag_row += 1
                    diags.writerow([diag_row, subject, hadm, seq, code.replace(".", "")])
                if rng.random() < 0.02:
                    counts["admissions_without_note"] += 1
                    continue
                group_counts[groups] += 1
                combos.add(tuple(sorted(groups)))
                n_codes_total += len(groups)
                # lognormal note lengths whose mean is words_per_note (median below it)
                words = max(200, int(rng.lognormal(np.log(cfg.words_per_note) - 0.35**2 / 2, 0.35)))
                text = writer.summary(groups, codes, words, (admit, discharge), sex, age)
                words_total += len(text.split())
                rows = [("Discharge summary", "Report", "", text)]
                if rng.random() < cfg.addendum_rate:
                    rows.append(
                        ("Discharge summary", "Addendum", "", writer.addendum(groups, codes))
                    )
                    counts["addenda"] += 1
                document = " ".join(row[3] for row in rows).lower()
                quoted += sum(quotes(document, inventory.wordings[g]) for g in groups)
                if rng.random() < 0.01:
                    rows.append(("Discharge summary", "Report", 1, bank.filler(rng, 60, admit)))
                    counts["iserror_rows"] += 1
                for _ in range(int(rng.integers(0, 3))):
                    category, description, other = writer.other_note(admit)
                    rows.append((category, description, "", other))
                    counts["other_category_notes"] += 1
                for category, description, iserror, body in rows:
                    row_id += 1
                    date = discharge if category == "Discharge summary" else admit
                    notes.writerow(
                        [
                            row_id,
                            subject,
                            hadm,
                            _iso(date),
                            "",
                            "",
                            category,
                            description,
                            "",
                            iserror,
                            body,
                        ]
                    )
                counts["discharge_summaries"] += 1
                bar.update()
        bar.close()
        for handle in (notes_text, diag_text):
            handle.close()
        notes_gz.close()
        diag_gz.close()
        n = counts["discharge_summaries"]
        stats = {
            "instances": n,
            "patients": subject - 10_000,
            "labels": int((group_counts > 0).sum()),
            "label_cardinality": round(n_codes_total / n, 3),
            "words_per_document": round(words_total / n, 1),
            "code_combinations": len(combos),
            # (note, code) pairs whose full CMS description (of the truncated code, else of
            # one of its billable children) appears verbatim in the note, case-insensitively
            "description_verbatim_share": round(quoted / max(n_codes_total, 1), 4),
            "note_code_pairs": n_codes_total,
            "top_code_frequency": round(float(group_counts.max()) / n, 4),
            "top_code": inventory.groups[int(group_counts.argmax())],
            "held_out_abstracts_used": n_abstracts,
            "groups_with_abstract_language": sum(1 for s in inventory.sentences if s),
            **counts,
        }
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats


def _iso(date: str) -> str:
    year, month, day = date.split("-")
    return f"{year}-{int(month):02d}-{int(day):02d}"

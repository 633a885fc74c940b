"""Text banks for the synthetic discharge summaries: the clinical boilerplate around the codes.

None of this is about any code: it is the "unrelated clinical text" that makes real notes long
(headers, vitals, labs, medications, nursing and social narrative). The language about codes
comes from code descriptions and from real abstracts (see synthesize.py).
"""

from __future__ import annotations

import numpy as np

CHIEF_COMPLAINTS = [
    "shortness of breath",
    "chest pain",
    "abdominal pain",
    "fever",
    "altered mental status",
    "weakness",
    "syncope",
    "nausea and vomiting",
    "cough",
    "fall",
    "dizziness",
    "back pain",
    "lower extremity swelling",
    "palpitations",
    "headache",
    "hematemesis",
    "confusion",
]

DRUGS = [
    ("aspirin", "81 mg", "daily"),
    ("metoprolol tartrate", "25 mg", "twice daily"),
    ("lisinopril", "10 mg", "daily"),
    ("atorvastatin", "40 mg", "at bedtime"),
    ("furosemide", "40 mg", "daily"),
    ("pantoprazole", "40 mg", "daily"),
    ("insulin glargine", "20 units", "at bedtime"),
    ("metformin", "500 mg", "twice daily"),
    ("warfarin", "5 mg", "daily"),
    ("heparin", "5000 units", "three times daily"),
    ("acetaminophen", "650 mg", "every 6 hours as needed"),
    ("docusate sodium", "100 mg", "twice daily"),
    ("senna", "8.6 mg", "at bedtime as needed"),
    ("levothyroxine", "75 mcg", "daily"),
    ("amlodipine", "5 mg", "daily"),
    ("albuterol inhaler", "2 puffs", "every 4 hours as needed"),
    ("vancomycin", "1 g", "every 12 hours"),
    ("piperacillin tazobactam", "4.5 g", "every 8 hours"),
    ("ceftriaxone", "1 g", "daily"),
    ("prednisone", "40 mg", "daily"),
    ("oxycodone", "5 mg", "every 4 hours as needed"),
    ("lorazepam", "0.5 mg", "at bedtime as needed"),
    ("clopidogrel", "75 mg", "daily"),
    ("simvastatin", "20 mg", "daily"),
    ("carvedilol", "6.25 mg", "twice daily"),
    ("spironolactone", "25 mg", "daily"),
    ("tamsulosin", "0.4 mg", "daily"),
    ("gabapentin", "300 mg", "three times daily"),
    ("sertraline", "50 mg", "daily"),
    ("famotidine", "20 mg", "twice daily"),
    ("potassium chloride", "20 mEq", "daily"),
    ("magnesium oxide", "400 mg", "daily"),
    ("folic acid", "1 mg", "daily"),
    ("thiamine", "100 mg", "daily"),
    ("multivitamin", "1 tablet", "daily"),
    ("enoxaparin", "40 mg", "daily"),
    ("hydralazine", "25 mg", "three times daily"),
    ("diltiazem", "30 mg", "four times daily"),
    ("ondansetron", "4 mg", "every 8 hours as needed"),
]

LAB_PANEL = [
    ("WBC", 4.0, 14.0, 1),
    ("RBC", 3.0, 5.5, 2),
    ("Hgb", 8.0, 15.5, 1),
    ("Hct", 25.0, 46.0, 1),
    ("MCV", 80.0, 100.0, 0),
    ("Plt Ct", 90.0, 420.0, 0),
    ("Glucose", 70.0, 260.0, 0),
    ("UreaN", 8.0, 60.0, 0),
    ("Creat", 0.5, 3.5, 1),
    ("Na", 128.0, 146.0, 0),
    ("K", 3.1, 5.6, 1),
    ("Cl", 94.0, 110.0, 0),
    ("HCO3", 18.0, 30.0, 0),
    ("AnGap", 8.0, 20.0, 0),
    ("ALT", 8.0, 90.0, 0),
    ("AST", 10.0, 110.0, 0),
    ("AlkPhos", 40.0, 180.0, 0),
    ("TotBili", 0.2, 2.5, 1),
    ("Albumin", 2.4, 4.6, 1),
    ("Calcium", 7.8, 10.4, 1),
    ("Phos", 2.2, 5.0, 1),
    ("Mg", 1.5, 2.6, 1),
    ("PT", 11.0, 19.0, 1),
    ("INR(PT)", 0.9, 2.8, 1),
]

EXAM_LINES = [
    "General: alert and oriented, in no acute distress.",
    "HEENT: sclera anicteric, mucous membranes moist, oropharynx clear.",
    "Neck: supple, jugular venous pressure not elevated, no lymphadenopathy.",
    "Lungs: clear to auscultation bilaterally, no wheezes, rales or rhonchi.",
    "CV: regular rate and rhythm, normal S1 and S2, no murmurs, rubs or gallops.",
    "Abdomen: soft, non-tender, non-distended, bowel sounds present.",
    "Ext: warm, well perfused, 2+ pulses, no clubbing, cyanosis or edema.",
    "Neuro: cranial nerves II-XII intact, strength 5/5 throughout, gait deferred.",
    "Skin: no rashes or lesions noted.",
]

NURSING = [
    "Patient was seen and examined at the bedside this morning with the team.",
    "Overnight the patient slept comfortably and had no acute events.",
    "Tolerating a regular diet with good appetite and no nausea.",
    "Ambulating in the hallway with physical therapy and a rolling walker.",
    "Physical therapy evaluated the patient and recommended discharge home with services.",
    "Case management was consulted for discharge planning and home services.",
    "Pain was well controlled on the current oral regimen.",
    "Foley catheter was removed and the patient voided without difficulty.",
    "Peripheral intravenous access was maintained and flushed per protocol.",
    "Daily weights were recorded and intake and output were monitored closely.",
    "Electrolytes were repleted as needed per the sliding scale.",
    "Fingerstick glucose was checked before meals and at bedtime.",
    "Deep vein thrombosis prophylaxis was continued throughout the admission.",
    "The patient and family were updated on the plan of care at the bedside.",
    "Code status was confirmed as full code with the patient.",
    "Telemetry was reviewed and showed no significant events overnight.",
    "Occupational therapy worked with the patient on activities of daily living.",
    "Nutrition was consulted and recommended oral supplements with meals.",
    "Social work met with the patient to discuss support at home.",
    "Medications were reconciled with the outpatient pharmacy records.",
    "Blood cultures were drawn and remained without growth to date.",
    "A chest radiograph was obtained and reviewed with radiology.",
    "Incentive spirometry was encouraged every hour while awake.",
    "The patient remained hemodynamically stable on room air.",
    "Skin was assessed each shift and no pressure injuries were found.",
    "Fall precautions were maintained with a bed alarm at night.",
]

SOCIAL = [
    "Lives with spouse in a single family home, retired.",
    "Lives alone in an apartment, daughter nearby, independent with activities of daily living.",
    "Former smoker, quit many years ago, drinks alcohol socially, no illicit drug use.",
    "Lives with son, uses a cane for ambulation, no tobacco or alcohol use.",
    "Works as a teacher, married, two children, denies tobacco use.",
]

INSTRUCTIONS = [
    "Please take all medications as prescribed and keep all follow up appointments.",
    "Call your doctor or return to the emergency department for fever, chest pain, "
    "shortness of breath or any other concerning symptoms.",
    "Weigh yourself every morning and call your doctor if your weight goes up by more than "
    "three pounds.",
    "Do not drive while taking pain medication.",
    "Continue to work with physical therapy at home.",
]

SERVICES = ["MEDICINE", "SURGERY", "CARDIOLOGY", "NEUROLOGY", "ORTHOPAEDICS", "CSURG"]


def vitals(rng: np.random.Generator) -> str:
    return (
        f"Vitals: T {rng.uniform(96.5, 101.5):.1f} BP {rng.integers(90, 180)}/"
        f"{rng.integers(50, 100)} HR {rng.integers(55, 125)} RR {rng.integers(12, 28)} "
        f"O2 sat {rng.integers(88, 101)}% on {'room air' if rng.random() < 0.6 else '2L NC'}"
    )


def lab_block(rng: np.random.Generator, date: str) -> str:
    picks = rng.choice(len(LAB_PANEL), size=int(rng.integers(6, len(LAB_PANEL))), replace=False)
    values = []
    for i in sorted(picks):
        name, lo, hi, digits = LAB_PANEL[i]
        values.append(f"{name}-{rng.uniform(lo, hi):.{digits}f}")
    hour = (
        f"{rng.integers(0, 12):02d}:{rng.integers(0, 60):02d}{'AM' if rng.random() < 0.5 else 'PM'}"
    )
    return f"[**{date}**] {hour} BLOOD " + " ".join(values)


def medication_list(rng: np.random.Generator, count: int) -> str:
    picks = rng.choice(len(DRUGS), size=min(count, len(DRUGS)), replace=False)
    lines = []
    for n, i in enumerate(picks, start=1):
        name, dose, when = DRUGS[i]
        lines.append(f"{n}. {name} {dose} by mouth {when}")
    return "\n".join(lines)


def filler(rng: np.random.Generator, words: int, date: str) -> str:
    """About `words` words of ward narrative, vitals and labs, unrelated to any code."""
    out: list[str] = []
    count = 0
    while count < words:
        roll = rng.random()
        if roll < 0.12:
            line = vitals(rng)
        elif roll < 0.22:
            line = lab_block(rng, date)
        else:
            line = NURSING[int(rng.integers(len(NURSING)))]
        out.append(line)
        count += line.count(" ") + 1
    return " ".join(out)

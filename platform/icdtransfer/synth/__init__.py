"""The synthetic-EMR generator (`icdtransfer synthesize`): MIMIC-III formatted notes written
from held-out MEDLINE abstracts and ICD-9 code phrases. `data/` holds the readers and the
corpus format; this package only writes inputs for them."""

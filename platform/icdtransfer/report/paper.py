"""The paper's own results on UKLarge (Rios & Kavuluru 2018), for side-by-side columns.

These are the published numbers (micro-F, macro-F in points; 71,463 real EMRs of the UKY
medical center, 1,231 codes), never results of this platform. Table 3 of the paper gives the
baselines (from Kavuluru et al. 2015, its ref. [9]) and the best transfer variant; Table 2 the
other transfer variants. The paper reports no CNN-without-transfer row.
"""

from __future__ import annotations

# (variant, ensemble size) -> (micro-F, macro-F)
PAPER_UKLARGE: dict[tuple[str, int], tuple[float, float]] = {
    ("lr", 1): (48.2, 19.8),
    ("lr_l2r", 1): (49.5, 21.2),
    ("lr_l2r_nerc", 1): (49.9, 23.0),
    ("frozen", 1): (46.5, 23.6),
    ("tune_conv", 1): (49.8, 23.8),
    ("tune_all", 1): (53.1, 24.2),
    ("tune_all_frozen_copy", 1): (53.5, 26.0),
    ("frozen", 3): (48.3, 25.5),
    ("tune_conv", 3): (51.3, 25.5),
    ("tune_all", 3): (54.1, 25.8),
    ("tune_all_frozen_copy", 3): (56.7, 28.6),
}
PAPER_NOTE = (
    "paper_uklarge_micro_f / paper_uklarge_macro_f: the paper's published results on its "
    "UKLarge EMRs (Rios & Kavuluru 2018, Tables 2-3), not results of this run"
)

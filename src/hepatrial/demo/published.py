"""Published summary statistics of the model trial (Kharaziha et al. 2009).

Sources:

* Kharaziha P, Hellström PM, Noorinayer B, et al. Improvement of liver function in liver
  cirrhosis patients after autologous mesenchymal stem cell injection: a phase I-II clinical
  trial. Eur J Gastroenterol Hepatol 2009;21(10):1199-1205 (abstract: MELD, INR, creatinine,
  albumin, bilirubin at baseline and end of follow-up, mean ± SD, P < 0.05).
* Kim JK et al. J Korean Med Sci 2015;30(10), Table 1 (systematic review): n = 8, M:F 4:4,
  age 55.63 ± 10.45 (range 38-67), aetiology HBV 4 / HCV 1 / alcohol 1 / cryptogenic 2,
  portal vein n = 6 / peripheral vein n = 2, 3-5 × 10^7 cells in 10 mL saline.

The follow-up value is taken to be week 24 (end of follow-up); the abstract does not state the
week (see ``msc_trials.csv`` in the shared reference data).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedStat:
    """A published mean ± SD with the number of decimals it was printed with."""

    analyte: str
    visit: str
    mean: float
    sd: float
    decimals: int
    unit: str
    significant: bool | None = None  # vs baseline, as published (None for the baseline row)

    @property
    def half_unit(self) -> float:
        """Half a unit in the last printed digit: the rounding tolerance."""
        return 0.5 * 10.0 ** (-self.decimals)

    def reproduces(self, mean: float, sd: float) -> bool:
        """True when ``mean`` and ``sd`` print as the published values (strictly inside the
        rounding interval, so no value that depends on the tie-breaking rule counts)."""
        h = self.half_unit - 1e-9
        return abs(mean - self.mean) < h and abs(sd - self.sd) < h


REFERENCE = (
    "Kharaziha P, et al. Eur J Gastroenterol Hepatol 2009;21(10):1199-1205 "
    "(Kim JK et al., J Korean Med Sci 2015;30(10), Table 1, for age, sex, aetiology, route)"
)
N_PATIENTS = 8
BASELINE = "D0"
FOLLOWUP = "W24"

#: Labs as published, SI units (the units the paper reports).
LABS: tuple[PublishedStat, ...] = (
    PublishedStat("inr", "D0", 1.9, 0.4, 1, "1"),
    PublishedStat("inr", "W24", 1.4, 0.5, 1, "1", significant=True),
    PublishedStat("creatinine", "D0", 114.0, 35.0, 0, "umol/L"),
    PublishedStat("creatinine", "W24", 80.0, 18.0, 0, "umol/L", significant=True),
    PublishedStat("albumin", "D0", 30.0, 5.0, 0, "g/L"),
    PublishedStat("albumin", "W24", 33.0, 5.0, 0, "g/L", significant=False),
    PublishedStat("bilirubin", "D0", 46.0, 29.0, 0, "umol/L"),
    PublishedStat("bilirubin", "W24", 41.0, 31.0, 0, "umol/L", significant=False),
)
MELD: tuple[PublishedStat, ...] = (
    PublishedStat("meld", "D0", 17.9, 5.6, 1, "points"),
    PublishedStat("meld", "W24", 10.7, 6.3, 1, "points", significant=True),
)

AGE_MEAN, AGE_SD, AGE_DECIMALS = 55.63, 10.45, 2  # Kim 2015 prints two decimals
AGE_MIN, AGE_MAX = 38, 67
SEX = {"M": 4, "F": 4}
ETIOLOGY = {"HBV": 4, "HCV": 1, "alcohol": 1, "cryptogenic": 2}
ROUTE = {"portal_vein": 6, "peripheral_vein": 2}
CELLS_MIN, CELLS_MAX = 30e6, 50e6
VOLUME_ML = 10.0

#: Entry precision of each lab (decimals), as a laboratory would report it.
ENTRY_DECIMALS = {"inr": 2, "creatinine": 0, "albumin": 0, "bilirubin": 0}
UNITS = {"inr": "1", "creatinine": "umol/L", "albumin": "g/L", "bilirubin": "umol/L"}
#: Physiological plausibility bounds enforced on every synthetic value.
PLAUSIBLE = {
    "inr": (0.8, 6.0),
    "creatinine": (40.0, 300.0),
    "albumin": (15.0, 50.0),
    "bilirubin": (5.0, 300.0),
}
LAB_ORDER = ("inr", "creatinine", "albumin", "bilirubin")


def lab_stat(analyte: str, visit: str) -> PublishedStat:
    """The published statistic for ``analyte`` at ``visit``."""
    for s in (*LABS, *MELD):
        if s.analyte == analyte and s.visit == visit:
            return s
    raise KeyError(f"no published statistic for {analyte} at {visit}")

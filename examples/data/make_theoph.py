"""Convert R's ``datasets::Theoph`` (``tests/data/theoph.csv``) into a NONMEM data set, once.

Run from the repository root: ``python examples/data/make_theoph.py``; it rewrites
``examples/data/theoph.csv``. Per subject: one dose record (EVID 1, CMT 1 = the depot, AMT the
dose in mg/kg as the source gives it, scaled to mg by the reader with WT), then the samples
(EVID 0, CMT 2 = central, DV in mg/L), in the source's order. The sample at TIME 0 follows the
dose record, as in the source (drawn at dosing; subject 1's is 0.74 mg/L).
"""

from __future__ import annotations

import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "data" / "theoph.csv"
TARGET = ROOT / "examples" / "data" / "theoph.csv"


def main() -> None:
    with SOURCE.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = ["# Theophylline, 12 subjects, single oral dose (R datasets::Theoph; see README.md)",
           "ID,TIME,AMT,DV,EVID,MDV,CMT,WT"]
    subject = None
    for r in rows:
        if r["Subject"] != subject:
            subject = r["Subject"]
            out.append(f"{subject},0,{r['Dose']},.,1,1,1,{r['Wt']}")
        out.append(f"{subject},{r['Time']},.,{r['conc']},0,0,2,{r['Wt']}")
    TARGET.write_text("\n".join(out) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""A study's final success rates as JSON: each method's mean over seeds per start setting, with the
random and expert rows on the same evaluation episodes, for docs/benchmarks/.

    python benchmarks/study_summary.py conf/studies/lunarlander_site.yaml --out docs/benchmarks/lunarlander_site.json

writes ``{"s0_demo": {METHOD: mean, ..., "random": rate, "expert": rate}, "s0_train": {...},
"seeds": N}`` (a method's mean over its finished seeds; ``seeds`` is the study's count, and a
method with fewer finished seeds is listed under ``"unfinished"``). The study's own report
(``study --report-only``) holds the tables with standard errors and the paper's figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqil_lightning.studies.report import reference_scores  # noqa: E402
from sqil_lightning.studies.spec import StudySpec  # noqa: E402
from sqil_lightning.studies.study import mean_and_standard_error  # noqa: E402


def summary(spec: StudySpec) -> dict:
    """Per start setting: each method's mean final score over its finished seeds, then random and expert."""
    runs = spec.runs()
    references = reference_scores(spec, spec.expert) if spec.expert is not None else {}
    payload: dict = {start: {} for start in spec.start_settings}
    unfinished = []
    for start in spec.start_settings:
        for method in spec.methods:
            scores = [run.score() for run in runs if run.method is method and run.start == start]
            done = [score for score in scores if score is not None]
            if done:
                payload[start][method.name] = round(mean_and_standard_error(done)[0], 3)
            if scores and len(done) < len(scores):
                unfinished.append(f"{method.name}/{start}: {len(done)} of {len(scores)} seeds")
        for row, scores in references.items():
            payload[start][row] = round(scores[start][0], 3)
    payload["seeds"] = len(spec.seeds)
    if unfinished:
        payload["unfinished"] = unfinished
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="the study config")
    parser.add_argument("--out", type=Path, help="where to write the JSON (default: print it only)")
    args = parser.parse_args()
    text = json.dumps(summary(StudySpec.load(args.config)), indent=1) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()

"""How well OCR cues match reference subtitles: character error rate, cue recall,
spurious cues and boundary error (used by the benchmarks and tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmtk.ocr.cues import Cue

# A reference cue counts as found when an overlapping OCR cue is at most this wrong.
FOUND_CER = 0.2


def _plain(text: str) -> str:
    return " ".join(text.split())


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: Levenshtein distance / reference length (whitespace runs
    count as one space, line breaks as spaces)."""
    ref, hyp = _plain(reference), _plain(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, rc in enumerate(ref, start=1):
        current = [i]
        for j, hc in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (rc != hc)))
        previous = current
    return previous[-1] / len(ref)


@dataclass
class CueScore:
    references: int
    found: int
    short_references: int  # reference cues shorter than 1.5 s
    short_found: int
    mean_cer: float  # over found cues
    spurious: int  # OCR cues that match no reference cue
    boundary_error: float  # mean |start| and |end| error of found cues, seconds
    # Every |start - reference start| and |end - reference end| of the found cues.
    edge_errors: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.references if self.references else 1.0

    def edge_error(self, percentile: float) -> float:
        """A percentile (50: median) of the start and end errors, seconds."""
        return float(np.percentile(self.edge_errors, percentile)) if self.edge_errors else 0.0

    @property
    def short_recall(self) -> float:
        return self.short_found / self.short_references if self.short_references else 1.0


def _overlap(a: Cue, b: Cue) -> bool:
    return a.start < b.end and b.start < a.end


def score_cues(reference: list[Cue], found: list[Cue], short: float = 1.5) -> CueScore:
    matched_ocr: set[int] = set()
    cers, boundaries, edges = [], [], []
    hits = short_refs = short_hits = 0
    for ref in reference:
        is_short = ref.end - ref.start < short
        short_refs += is_short
        best = None
        for k, cue in enumerate(found):
            if _overlap(ref, cue):
                error = cer(ref.text, cue.text)
                if error <= FOUND_CER:
                    matched_ocr.add(k)
                    if best is None or error < best[0]:
                        best = (error, cue)
        if best is not None:
            hits += 1
            short_hits += is_short
            cers.append(best[0])
            boundaries.append((abs(best[1].start - ref.start) + abs(best[1].end - ref.end)) / 2)
            edges += [abs(best[1].start - ref.start), abs(best[1].end - ref.end)]
    return CueScore(
        references=len(reference),
        found=hits,
        short_references=short_refs,
        short_found=short_hits,
        mean_cer=sum(cers) / len(cers) if cers else 1.0,
        spurious=len(found) - len(matched_ocr),
        boundary_error=sum(boundaries) / len(boundaries) if boundaries else 0.0,
        edge_errors=edges,
    )

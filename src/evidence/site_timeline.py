"""A treatment's timeline as the case page draws it: the steps in order, a schematic dose level
for each, what followed, the outcomes seen in it, and whether the course is a dechallenge
(stopped) or a dechallenge and rechallenge (stopped, then restarted).

Bar heights are schematic (start at a full level, a reduction one step down, a stop at zero, a
restart at full dose back to full): they show the direction of each change, never a dose the
source does not give. The page says so beside the picture.
"""

from __future__ import annotations

from typing import Any

from . import schema as S
from .site_format import dose_text, human_duration, is_nr

__all__ = ["timeline"]

_SYMBOL = {"improved": "▲", "worsened": "▼", "unchanged": "■", "new onset": "●"}
FULL, UNIT, STEP_W, X0, BASE = 3, 14, 150, 10, 80


def _level(kind: str, dose: Any, previous: int, last_on: int) -> int:
    if kind == "start":
        return FULL
    if kind == "stopped":
        return 0
    if kind == "dose reduced":
        return max(1, (last_on if previous == 0 else previous) - 1)
    if kind == "dose increased":
        return min(FULL + 2, (last_on if previous == 0 else previous) + 1)
    # restarted: at full dose when the source says so, else where it was before the stop
    q = (dose.qualifier or "").lower() if isinstance(dose, S.Dose) else ""
    return FULL if "full" in q or not last_on else last_on


def timeline(e: Any, label) -> dict[str, Any]:
    """The drawing and the reading of ``e.treatment``'s phases; ``label(kind, key)`` names things."""
    t: S.Treatment = e.treatment
    outcomes = {o.id: o for o in e.patient.outcomes}
    steps: list[dict[str, Any]] = []
    level = last_on = 0
    for i, ph in enumerate(t.phases):
        level = _level(ph.kind, ph.dose, level, last_on)
        if level:
            last_on = level
        dose = ph.dose if ph.dose is not None else (t.dose if ph.kind == "start" else None)
        dose_label = ""
        if ph.kind == "stopped":
            dose_label = "off"
        elif dose is not None and not is_nr(dose):
            dose_label = dose_text(dose) or ""
        elif dose is not None:
            dose_label = "dose not reported"
        dur = ph.duration
        steps.append({
            "phase": ph, "order": i + 1, "kind": ph.kind, "x": X0 + i * STEP_W + 2, "w": STEP_W - 4,
            "h": level * UNIT, "y": BASE - level * UNIT, "dose_label": dose_label,
            "duration_label": ("for " + (human_duration(dur) or "")) if dur and not is_nr(dur) else ("duration not reported" if is_nr(dur) else ""),
            "outcomes": [{"id": oid, "symbol": _SYMBOL.get(outcomes[oid].direction, "·"),
                          "text": f"{oid} {outcomes[oid].direction}", "direction": outcomes[oid].direction}
                         for oid in ph.outcomes if oid in outcomes],
        })
    kinds = [s["kind"] for s in steps]
    stop = restart = None
    if "stopped" in kinds:
        si = kinds.index("stopped")
        stop = _point(steps[si])
        for s in steps[si + 1:]:
            if s["kind"] == "restarted":
                restart = _point(s)
                break
    verdict = ""
    if stop:
        after_stop = [outcomes[o] for o in stop["phase"].outcomes if o in outcomes]
        worse = [o for o in after_stop if o.direction in ("worsened", "new onset") or o.response == "worsened"]
        if restart:
            after_restart = [outcomes[o] for o in restart["phase"].outcomes if o in outcomes]
            better = [o for o in after_restart if o.direction == "improved"]
            if worse and better:
                best = better[0]
                resp = f" ({best.response} response)" if not is_nr(best.response) else ""
                verdict = (f"{label('measures', worse[0].measure).capitalize()}: worse after the stop, improved after the restart{resp}. "
                           "The course followed the drug.")
        elif worse:
            verdict = f"{label('measures', worse[0].measure).capitalize()}: worse after the stop."
    max_out = max((len(s["outcomes"]) for s in steps), default=0)
    summary = f"Timeline of {label('drugs', t.drug)}: " + "; ".join(
        f"{s['order']}. {s['kind']}" + (f" ({s['dose_label']})" if s["dose_label"] else "") +
        (f", then {', '.join(o['text'] for o in s['outcomes'])}" if s["outcomes"] else "") for s in steps)
    return {
        "steps": steps, "width": X0 + len(steps) * STEP_W + 10, "height": BASE + 60 + max_out * 16, "x0": X0, "base": BASE,
        "dechallenge": stop is not None, "rechallenge": restart is not None, "stop": stop, "restart": restart,
        "verdict": verdict, "summary": summary,
    }


def _point(step: dict[str, Any]) -> dict[str, Any]:
    ph = step["phase"]
    return {"phase": ph, "order": step["order"], "followed_by": ph.followed_by,
            "dose": step["dose_label"] if step["dose_label"] not in ("", "off", "dose not reported") else ""}

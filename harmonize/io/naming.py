"""Map VOI names (RTSTRUCT ROI names, SEG segment labels, sidecar names) to VOI kinds.

A rule is a ``(regular expression, kind)`` pair; rules are tried in order with
:func:`re.search` (case-insensitive) and the first match decides. Names that match no rule
are ``"organ"`` if they name a known organ-at-risk, else a clear error is raised by the
loaders so that a structure is never silently given the wrong kind.

The default rules cover the usual clinical spellings:

>>> classify_voi("Lesion 3")
'lesion'
>>> classify_voi("Kidney_L")
'organ'
>>> classify_voi("EXTERNAL")
'body'
>>> classify_voi("GTV_liver_met", [(r"^gtv", "lesion")])
'lesion'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from harmonize.study import VOI_KINDS, StudyError

__all__ = ["DEFAULT_VOI_RULES", "VoiRules", "classify_voi", "compile_rules"]

#: A list of ``(pattern, kind)`` pairs.
VoiRules = Sequence[tuple[str, str]]

#: Default name → kind rules (first match wins, case-insensitive ``re.search``).
DEFAULT_VOI_RULES: tuple[tuple[str, str], ...] = (
    (r"^(lesion|tumou?r|met|gtv|les)", "lesion"),
    (r"^(body|external|outline|skin|patient)", "body"),
    (r"^(background|bkg|bg)\b", "background"),
    (
        r"kidney|renal|liver|hepat|spleen|splen|marrow|salivary|parotid|submandib|"
        r"lacrimal|bladder|lung|heart|pancrea|stomach|bowel|intestin|colon|thyroid|"
        r"adrenal|pituitar|muscle|bone|vertebra|aorta|blood",
        "organ",
    ),
)


def compile_rules(rules: VoiRules | None = None) -> list[tuple[re.Pattern[str], str]]:
    """Compile ``rules`` (user rules first, then :data:`DEFAULT_VOI_RULES`).

    Raises
    ------
    harmonize.StudyError
        If a pattern is not a valid regular expression or a kind is not a VOI kind.
    """
    compiled: list[tuple[re.Pattern[str], str]] = []
    for pattern, kind in [*(rules or ()), *DEFAULT_VOI_RULES]:
        if kind not in VOI_KINDS:
            raise StudyError(
                f"voi_rules: kind {kind!r} for pattern {pattern!r} is not one of {list(VOI_KINDS)}"
            )
        try:
            compiled.append((re.compile(pattern, re.IGNORECASE), kind))
        except re.error as exc:
            raise StudyError(f"voi_rules: invalid regular expression {pattern!r}: {exc}") from None
    return compiled


def classify_voi(name: str, rules: VoiRules | None = None) -> str:
    """Kind of the VOI called ``name`` under ``rules`` (then the default rules).

    Parameters
    ----------
    name : str
        VOI name as found in the file.
    rules : sequence of (pattern, kind), optional
        Extra rules tried before the defaults.

    Returns
    -------
    str
        One of :data:`harmonize.study.VOI_KINDS`.

    Raises
    ------
    harmonize.StudyError
        If no rule matches ``name``.
    """
    text = str(name).strip()
    for pattern, kind in compile_rules(rules):
        if pattern.search(text):
            return kind
    raise StudyError(
        f"VOI name {text!r} matches no naming rule; give its kind in the sidecar 'vois' table "
        "or add a rule (voi_rules=[(pattern, kind)])"
    )

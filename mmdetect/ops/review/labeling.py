"""The Label Studio labeling config (XML) for a taxonomy: what a reviewer sees and answers.

One multiple-choice control with a choice per class plus "none", a free-text note, the listing's
photos, and span labels on title and description where the model's evidence is pre-highlighted.
Generated from the taxonomy so the two cannot drift; configs/review/labeling.xml is the default
taxonomy's, committed and checked against this function by a test.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

NONE = "none"  # the reviewer's "no violation"; never a class name (check_taxonomy)
CHOICES = "labels"  # control names the importer reads back
NOTE = "note"
EVIDENCE = {"title": "evidence_title", "description": "evidence_description"}
EVIDENCE_LABEL = "model evidence"


def check_taxonomy(taxonomy: Sequence[str]) -> None:
    """A taxonomy Label Studio can show: non-empty, unique, and without the reserved "none"."""
    if not taxonomy:
        raise ValueError("the taxonomy is empty")
    if len(set(taxonomy)) != len(taxonomy):
        raise ValueError(f"the taxonomy repeats a class: {list(taxonomy)}")
    if NONE in taxonomy:
        raise ValueError(f"{NONE!r} is reserved for 'no violation' and cannot be a class")


def labeling_config(taxonomy: Sequence[str]) -> str:
    """The XML of a project whose tasks come from `mmdetect review export`."""
    check_taxonomy(taxonomy)
    evidence = "\n".join(
        f'  <Labels name="{name}" toName="{field}" showInline="true">\n'
        f'    <Label value="{EVIDENCE_LABEL}" background="#ffd54f"/>\n  </Labels>'
        for field, name in EVIDENCE.items()
    )
    choices = "\n".join(f"      <Choice value={quoteattr(c)}/>" for c in (*taxonomy, NONE))
    return f"""<View>
  <View style="font-weight: bold; font-size: 1.15em">
    <Text name="title" value="$title"/>
  </View>
  <View style="border-top: 1px solid #ddd; margin-top: 0.5em; padding-top: 0.5em">
    <Text name="description" value="$description"/>
  </View>
{evidence}
  <Text name="facts" value="$facts"/>
  <View style="margin-top: 1em">
    <Header value="Which prohibited categories does this listing fall under?"/>
    <Choices name="{CHOICES}" toName="title" choice="multiple" showInline="true" required="true">
{choices}
    </Choices>
    <TextArea name="{NOTE}" toName="title" placeholder="note (optional)" maxSubmissions="1"
              rows="2"/>
  </View>
  <Image name="photos" valueList="$photos" maxWidth="320px"/>
</View>
"""

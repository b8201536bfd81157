"""Checks a TwiML document the product returned: well-formed, only the verbs and attributes Twilio's
Voice TwiML allows where they are allowed, and every word spoken in French."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# Verb -> its allowed attributes (Twilio's TwiML for Programmable Voice), and the nouns it may hold.
VERBS: dict[str, set[str]] = {
    "Say": {"voice", "language", "loop"},
    "Gather": {"input", "language", "action", "method", "speechTimeout", "timeout", "finishOnKey", "numDigits",
               "actionOnEmptyResult", "hints", "profanityFilter", "speechModel", "enhanced", "partialResultCallback"},
    "Redirect": {"method"},
    "Enqueue": {"action", "method", "waitUrl", "waitUrlMethod", "maxQueueSize", "workflowSid"},
    "Dial": {"action", "method", "callerId", "timeout", "record", "timeLimit", "answerOnBridge", "ringTone"},
    "Pause": {"length"},
    "Hangup": set(),
}  # fmt: skip
NOUNS: dict[str, set[str]] = {"Queue": {"url", "method"}, "Number": {"url", "method", "sendDigits"}}
CHILDREN = {"Gather": {"Say", "Pause"}, "Dial": {"Queue", "Number"}}
# Words that would betray English (or a raw placeholder) in what is spoken.
NOT_FRENCH = re.compile(r"\b(the|please|your|call|hello|thank|wait|queue|error|none|null|undefined)\b|[{}<>€]|https?:",
                        re.IGNORECASE)  # fmt: skip
FRENCH_HINT = re.compile(r"[éèàçêâîôûù]|\b(vous|votre|de|le|la|les|un|une|pour|et|est|au|d|l|qu)\b", re.IGNORECASE)


def check_twiml(document: str) -> list[str]:
    """The spoken texts of ``document``, once every rule holds (AssertionError naming the rule otherwise)."""
    root = ET.fromstring(document)
    assert root.tag == "Response", root.tag
    assert not (root.text or "").strip(), "text directly in <Response>"
    spoken: list[str] = []
    for verb in root:
        _check(verb, VERBS, spoken)
        for child in verb:
            assert child.tag in CHILDREN.get(verb.tag, set()), f"<{child.tag}> inside <{verb.tag}>"
            _check(child, {**VERBS, **NOUNS}, spoken)
            assert len(child) == 0, f"<{child.tag}> has children"
        if verb.tag in ("Redirect", "Enqueue"):
            assert (verb.text or "").strip(), f"<{verb.tag}> needs its URL or queue name"
        if verb.tag == "Gather":
            assert verb.get("input") == "speech dtmf" and verb.get("language") == "fr-FR", verb.attrib
    return spoken


def _check(node: ET.Element, allowed: dict[str, set[str]], spoken: list[str]) -> None:
    assert node.tag in allowed, f"<{node.tag}> is not an allowed verb here"
    extra = set(node.attrib) - allowed[node.tag]
    assert not extra, f"<{node.tag}> has attributes Twilio does not know: {extra}"
    if node.tag == "Say":
        assert node.get("language") == "fr-FR", f"<Say> not in French: {node.attrib}"
        assert node.get("voice"), "<Say> without a voice"
        text = (node.text or "").strip()
        assert text, "empty <Say>"
        assert not NOT_FRENCH.search(text), f"not French, or not for the ear: {text!r}"
        assert FRENCH_HINT.search(text), f"does not read as French: {text!r}"
        spoken.append(text)
    for key in ("action", "waitUrl"):
        if node.get(key):
            assert node.get(key, "").startswith(("http://", "https://")), f"{key} is not absolute: {node.get(key)}"

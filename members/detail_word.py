"""« DETAIL »: the answer a message the mutuelle sent first asks for (members/proactive.py).

Recognised in the member's words (any case, with or without the accent, an article or a « svp »:
« DETAIL », « détail », « le détail svp »), never in a sentence that merely names it. The gateway gives
it to the bot as Rasa's intent message ``/give_identity`` (a rule the model already has: verify, then
answer), flagged ``metadata.detail``; the bot (``bot/actions/detail.py``) answers with the records the
last message was about. Standard library only: the bot's actions, in Rasa's virtualenv, use it too.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

BOT_MESSAGE = "/give_identity"  # Rasa skips its language model for « /intent » messages: no retraining
_DETAIL = re.compile(
    r"^(le |du |un |plus de |voir le |voir )?details?( (svp|stp|sil vous plait|s il vous plait|merci|please|pls))*$"
)


def is_detail(text: str) -> bool:
    """The message is « DETAIL »."""
    text = unicodedata.normalize("NFKD", re.sub(r"[^\w\s']", " ", text or "").lower())
    folded = "".join(c for c in text if not unicodedata.combining(c)).replace("'", " ")
    return _DETAIL.match(" ".join(folded.split())) is not None


def for_bot(text: str) -> tuple[str, dict[str, Any]] | None:
    """What the bot is given for « DETAIL » (the message and metadata to add), None for anything else."""
    return (BOT_MESSAGE, {"detail": True}) if is_detail(text) else None

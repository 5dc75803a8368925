"""Words as SQLite's FTS5 `unicode61 remove_diacritics 2` tokenizer sees them, for PostgreSQL
(each CJK character a word of its own on both: cjk_spaced).

PostgreSQL's full-text search has its own parser (it keeps `portrait_moody` or `1.5` whole
and drops nothing for accents). So that `q` means the same on both backends, the text a job
is searched by is split here the FTS5 way (letters and digits are word characters, all else
separates; case folded; accents removed) and stored as those words joined by spaces, which
`to_tsvector('simple', …)` takes as they are. A query is split the same way.
"""

from __future__ import annotations

import re
import unicodedata

_SEPARATORS = re.compile(r"[^\w]|_", re.UNICODE)  # \w is letters, digits and _; _ separates too
# Chinese, Japanese and Korean are written without spaces between words: a run of them was one
# token, and 花园 in 一只猫在花园里 was not found. Each ideograph, kana and Hangul syllable is a
# token of its own, in the index and in a query alike; a query's run is then a phrase of them
# (花园: 花 then 园), found wherever it occurs.
_CJK = re.compile(
    "[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0003134f]"
)


def cjk_spaced(text: str) -> str:
    """The text with each CJK character standing alone (the FTS5 tokenizer then makes it a token)."""
    if not text or text.isascii():  # most prompts: no regex pass (it cost ~3 µs a prompt in a reindex)
        return text
    return _CJK.sub(r" \g<0> ", text)


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """The words of a text, folded: `Château_noir, 1.5x` -> ['chateau', 'noir', '1', '5x']."""
    return [word for word in _SEPARATORS.split(_fold(cjk_spaced(text))) if word]


_PATH = re.compile(r"[/\\]+")
_FILE_NAME = re.compile(r"\.\w{1,5}$")  # `.png`: a path that ends in a file


def query_terms(q: str) -> list[str]:
    """A query's terms, each a word or a phrase that must occur (`word*` a prefix): split at
    spaces, and a path at `/` and `\\` into the names the index knows a job's images by
    (project.outputs_text): its last two folders, and its file. As one phrase, a pasted path
    found a job by its first image only, and an absolute one found nothing."""
    terms = []
    for token in q.split():
        names = [name for name in _PATH.split(token) if name]
        if len(names) > 1:
            names = names[-3:] if _FILE_NAME.search(names[-1].rstrip("*")) else names[-2:]
        terms += names
    return terms


def tsquery(q: str) -> str | None:
    """A user query (every word must occur; `word*` a prefix) as a PostgreSQL tsquery in the
    'simple' configuration; a word of several parts (`portrait_moody`) is a phrase. None when
    q has no word characters at all (it matches everything, as an empty q does)."""
    terms = []
    for raw in query_terms(q):
        parts = words(raw.rstrip("*"))
        if not parts:
            continue
        if raw.endswith("*"):
            parts[-1] += ":*"
        terms.append(" <-> ".join(f"'{part}'" if not part.endswith(":*") else f"'{part[:-2]}':*" for part in parts))
    return " & ".join(f"({term})" for term in terms) or None

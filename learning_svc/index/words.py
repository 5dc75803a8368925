"""Words as SQLite's FTS5 `unicode61 remove_diacritics 2` tokenizer sees them, for PostgreSQL.

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


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """The words of a text, folded: `Château_noir, 1.5x` -> ['chateau', 'noir', '1', '5x']."""
    return [word for word in _SEPARATORS.split(_fold(text)) if word]


def tsquery(q: str) -> str | None:
    """A user query (every word must occur; `word*` a prefix) as a PostgreSQL tsquery in the
    'simple' configuration; a word of several parts (`portrait_moody`) is a phrase. None when
    q has no word characters at all (it matches everything, as an empty q does)."""
    terms = []
    for raw in q.split():
        parts = words(raw.rstrip("*"))
        if not parts:
            continue
        if raw.endswith("*"):
            parts[-1] += ":*"
        terms.append(" <-> ".join(f"'{part}'" if not part.endswith(":*") else f"'{part[:-2]}':*" for part in parts))
    return " & ".join(f"({term})" for term in terms) or None

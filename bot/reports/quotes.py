"""A quote as reports show it, knowing whose words it is.

A report made for someone else (a coordinator's digest, a gathering's summary) may wait
in the outbox a while before it is sent. If someone it quotes asks to be forgotten
meanwhile, their words must not go out, nor stay in the database: so a report's
message lists the pseudonyms of the people it quotes (`Outbound.quoting`, never
shown), and erasure withdraws a message still owed that names them. A `Quote` is the
text a template shows (a `str`), carrying its author's pseudonym to that list.
"""

from __future__ import annotations

from collections.abc import Iterable


class Quote(str):
    """Someone's words as a report quotes them; `person` is their pseudonym."""

    person: str

    def __new__(cls, text: str, person: str) -> Quote:
        quote = super().__new__(cls, text)
        quote.person = person
        return quote

    def __reduce__(self) -> tuple[type[Quote], tuple[str, str]]:
        # Themes of a large question are found in a worker process, and come back pickled.
        return (Quote, (str(self), self.person))


def quoting(quotes: Iterable[str]) -> list[str]:
    """Whose words these are (the pseudonyms of the `Quote`s among them), each once, in
    order."""
    return sorted({quote.person for quote in quotes if isinstance(quote, Quote)})

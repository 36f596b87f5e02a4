"""Both languages say everything; the browser's language picks one."""

from __future__ import annotations

import re
from pathlib import Path

from web import i18n

STATIC = Path(i18n.__file__).parent / "static"


def test_both_languages_have_every_word_the_page_uses():
    assert set(i18n.STRINGS["en"]) == set(i18n.STRINGS["id"])
    used = set(re.findall(r'\bT\("(\w+)"', (STATIC / "app.js").read_text()))
    used |= set(re.findall(r'data-t="(\w+)"', (STATIC / "index.html").read_text()))
    assert used and used <= set(i18n.STRINGS["en"]), used - set(i18n.STRINGS["en"])


def test_accept_language_picks_the_language():
    assert i18n.pick("id-ID,id;q=0.9,en;q=0.8") == "id"
    assert i18n.pick("en-GB,en;q=0.9") == "en"
    assert i18n.pick("fr-FR,en;q=0.5,id;q=0.7") == "id"  # q-values honoured
    assert i18n.pick("ja") == "id" and i18n.pick(None) == "id"  # the people at the post
    assert i18n.pick("en;q=abc") == "id"


def test_no_external_assets():
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r'(src|href)="https?://', text), path
        assert "cdn" not in text.lower(), path

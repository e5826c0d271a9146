"""Public ids: a prefix and 24 unguessable characters, every character equally likely."""

from __future__ import annotations

import string
from collections import Counter

import pytest

from security.ids import new_public_id

ALPHABET = set(string.ascii_letters + string.digits)


def test_ids_carry_their_prefix_and_24_characters_of_the_alphabet_and_never_repeat():
    ids = [new_public_id("pay") for _ in range(5000)]

    assert all(i.startswith("pay_") and len(i) == 28 and set(i[4:]) <= ALPHABET for i in ids)
    assert len(set(ids)) == len(ids)


def test_every_character_is_about_equally_likely():
    counts = Counter("".join(new_public_id("x")[2:] for _ in range(4000)))  # 96,000 draws

    assert set(counts) == ALPHABET
    expected = 96000 / 62  # about 1,548 each; a biased draw (e.g. byte % 62) gives 'a'-'h' 1,875
    assert all(abs(n - expected) < 200 for n in counts.values()), counts.most_common(3)


@pytest.mark.parametrize("prefix", ["", "Pay", "pay1", "pay_"])
def test_a_prefix_must_be_lower_case_letters(prefix):
    with pytest.raises(ValueError, match="lower-case letters"):
        new_public_id(prefix)

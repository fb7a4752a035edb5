"""CaseOps (``lossless_caps_caseops_v1``): the R0611 record's bijective case transform and byte sidecar.

Four private-use control characters replace explicit capitals so the tokenizer can share
lowercase pieces across case variants::

    TITLE = U+E001   ALLCAPS = U+E002   CAPNEXT = U+E003   ESC = U+E004

:func:`encode` walks the text; a *word* is a maximal run of ASCII letters (A–Z, a–z):

* a literal control character becomes ``ESC`` + that character;
* non-letters (including all non-ASCII text) pass through unchanged;
* an all-lowercase word is unchanged;
* an all-uppercase word of length ≥ 2 becomes ``ALLCAPS`` + lowercase(word);
* a Title word (uppercase first letter, rest lowercase; also the one-letter ``A``) becomes
  ``TITLE`` + lowercase(word);
* any other mixed-case word: ``TITLE`` if its first letter is uppercase, then its lowercase
  letters with ``CAPNEXT`` before each later letter that was uppercase.

:func:`decode` inverts it and rejects malformed input (a marker not followed by an ASCII letter, a
TITLE/ALLCAPS marker inside a word, a duplicate CAPNEXT, a dangling ESC or marker at the end)
with :class:`CaseOpsError`. It is stricter than the record's decoder in two cases the encoder never
produces, so that only encodings decode: ESC followed by anything but a control character, and
CAPNEXT outside a word. ``decode(encode(x)) == x`` for every string ``x``.

Byte sidecar (:func:`original_byte_counts`): for each SentencePiece piece, the number of bytes it
stands for in the ORIGINAL UTF-8 text, taken over the piece's *surface* (the span of the
transformed input it covers): control pieces 0, a letter 1 whatever its case, an escaped literal
control character 3 (its UTF-8 length), anything else its UTF-8 length. Marker state carries
across piece boundaries. :func:`encode_document` gives ``[BOS] + sp.encode(encode(text))`` and the
parallel byte counts ``[0] + counts`` (BOS is 0 bytes) exactly like the record's
``prepare_caseops_data.py``. Surfaces come from SentencePiece's serialized ``SentencePieceText``
proto, parsed here (no protobuf dependency). SentencePiece's normalizer drops leading/trailing
and repeated whitespace from the token stream, and those bytes are in no surface; for a document
without leading/trailing whitespace the counts sum to ``len(text.encode("utf-8"))``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

TITLE = "\ue001"
ALLCAPS = "\ue002"
CAPNEXT = "\ue003"
ESC = "\ue004"
CONTROLS = (TITLE, ALLCAPS, CAPNEXT, ESC)
"""The four control characters in tokenizer order (the record's tokenizer has them at ids 4–7)."""
TRANSFORM_NAME = "lossless_caps_caseops_v1"
BOS_ID = 1

_CONTROL_SET = frozenset(CONTROLS)


class CaseOpsError(ValueError):
    """A string is not a valid CaseOps encoding (the message says where and why)."""


def _is_letter(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_upper(ch: str) -> bool:
    return "A" <= ch <= "Z"


def encode(text: str) -> str:
    """The CaseOps form of ``text`` (see the module docstring for the rules)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _CONTROL_SET:
            out += (ESC, ch)
            i += 1
            continue
        if not _is_letter(ch):
            out.append(ch)
            i += 1
            continue
        j = i + 1
        while j < n and _is_letter(text[j]):
            j += 1
        word = text[i:j]
        low = word.lower()
        if word == low:
            out.append(word)
        elif len(word) >= 2 and word == word.upper():
            out += (ALLCAPS, low)
        elif _is_upper(word[0]) and word[1:] == low[1:]:
            out += (TITLE, low)
        else:
            if _is_upper(word[0]):
                out.append(TITLE)
            out.append(low[0])
            for orig, lc in zip(word[1:], low[1:]):
                if _is_upper(orig):
                    out.append(CAPNEXT)
                out.append(lc)
        i = j
    return "".join(out)


class _Decoder:
    """The decoding state machine, shared by :func:`decode` and :func:`original_byte_counts`.

    ``feed(ch)`` returns the original character(s) ``ch`` stands for ("" for a marker).
    """

    def __init__(self) -> None:
        self.pending_escape = False
        self.word_mode: str | None = None  # "title" / "allcaps" waiting for a word start
        self.allcaps = False                 # inside an ALLCAPS word
        self.capnext = False
        self.in_word = False
        self.pos = 0

    def _fail(self, what: str) -> None:
        raise CaseOpsError(f"text: {what} at character {self.pos}")

    def feed(self, ch: str) -> str:
        self.pos += 1
        if self.pending_escape:
            if ch not in _CONTROL_SET:
                self._fail(f"ESC must be followed by a control character, got {ch!r}")
            if self.word_mode is not None:
                self._fail("an escaped control character cannot start a capitalized word")
            self.pending_escape = False
            self.in_word, self.allcaps = False, False
            return ch
        if ch == ESC:
            if self.capnext:
                self._fail("CAPNEXT not followed by an ASCII letter")
            self.pending_escape = True
            return ""
        if ch == TITLE or ch == ALLCAPS:
            if self.word_mode is not None or self.in_word or self.capnext:
                self._fail(f"{'TITLE' if ch == TITLE else 'ALLCAPS'} marker inside a word or after another marker")
            self.word_mode = "title" if ch == TITLE else "allcaps"
            return ""
        if ch == CAPNEXT:
            if self.capnext:
                self._fail("duplicate CAPNEXT marker")
            if not self.in_word:
                self._fail("CAPNEXT outside a word (a word's first capital is written with TITLE)")
            self.capnext = True
            return ""
        if _is_letter(ch):
            if not self.in_word:
                up = self.word_mode is not None
                self.allcaps = self.word_mode == "allcaps"
                self.word_mode, self.in_word = None, True
                return ch.upper() if up else ch
            up = self.allcaps or self.capnext
            self.capnext = False
            return ch.upper() if up else ch
        if self.word_mode is not None or self.capnext:
            self._fail("capitalization marker not followed by an ASCII letter")
        self.in_word, self.allcaps = False, False
        return ch

    def finish(self) -> None:
        if self.pending_escape:
            raise CaseOpsError("text: dangling ESC at the end")
        if self.word_mode is not None or self.capnext:
            raise CaseOpsError("text: dangling capitalization marker at the end")


def decode(text: str) -> str:
    """The original text of a CaseOps string; :class:`CaseOpsError` if it is malformed."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    dec = _Decoder()
    out = [dec.feed(ch) for ch in text]
    dec.finish()
    return "".join(out)


def original_byte_counts(surfaces: Iterable[str]) -> list[int]:
    """Original UTF-8 bytes of each piece surface of a CaseOps string (markers 0, letters 1)."""
    dec = _Decoder()
    counts = []
    for s in surfaces:
        if not isinstance(s, str):
            raise TypeError(f"surfaces: expected str items, got {type(s).__name__}")
        counts.append(sum(len(dec.feed(ch).encode("utf-8")) for ch in s))
    dec.finish()
    return counts


# ---- SentencePiece surfaces without the protobuf package

def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of a serialized protobuf message (bytes for length-delimited)."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(buf, i)
        elif wt == 2:
            ln, i = _varint(buf, i)
            val, i = buf[i:i + ln], i + ln
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        else:
            raise ValueError(f"serialized proto: unsupported wire type {wt}")
        yield num, wt, val


def piece_surfaces(sp, text: str) -> tuple[list[int], list[str]]:
    """Token ids of ``sp.encode(text)`` and each piece's surface (the span of ``text`` it covers).

    Reads SentencePiece's serialized ``SentencePieceText``: field 2 = pieces, each with id (2)
    and surface (3).
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    raw = sp.encode(text, out_type="serialized_proto")
    ids: list[int] = []
    surfaces: list[str] = []
    for num, wt, val in _fields(bytes(raw)):
        if num != 2 or wt != 2:
            continue
        pid, surf = 0, b""
        for pnum, pwt, pval in _fields(val):
            if pnum == 2 and pwt == 0:
                pid = pval
            elif pnum == 3 and pwt == 2:
                surf = pval
        ids.append(int(pid))
        surfaces.append(surf.decode("utf-8"))
    return ids, surfaces


def encode_document(sp, text: str, bos_id: int = BOS_ID) -> tuple[np.ndarray, np.ndarray]:
    """``([BOS] + sp.encode(encode(text)), [0] + original byte counts)``, both uint16 of one length."""
    if not (isinstance(bos_id, int) and 0 <= bos_id < 2**16):
        raise ValueError(f"bos_id: expected a token id in [0, 65535], got {bos_id!r}")
    ids, surfaces = piece_surfaces(sp, encode(text))
    counts = original_byte_counts(surfaces)
    tok = np.empty(len(ids) + 1, dtype=np.uint16)
    nb = np.empty(len(ids) + 1, dtype=np.uint16)
    tok[0], nb[0] = bos_id, 0
    tok[1:], nb[1:] = ids, counts
    return tok, nb


def check_tokenizer(sp) -> None:
    """Raise unless each control character is one piece of its own in ``sp`` (a CaseOps tokenizer)."""
    for name, ch in zip(("TITLE", "ALLCAPS", "CAPNEXT", "ESC"), CONTROLS):
        pid = sp.piece_to_id(ch)
        if pid == sp.unk_id() or sp.id_to_piece(pid) != ch:
            raise ValueError(f"tokenizer: no piece for the CaseOps {name} character U+{ord(ch):04X}; "
                             "train it with user_defined_symbols=CONTROLS")


def user_defined_symbols() -> Sequence[str]:
    """The SentencePiece ``user_defined_symbols`` of a CaseOps tokenizer (ids 4–7 after the specials)."""
    return list(CONTROLS)

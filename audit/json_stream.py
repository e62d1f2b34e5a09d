"""A JSON object read as a stream: its top-level arrays one element at a time.

A COCO instances file is one object whose big members are arrays of small
objects (`images`, `annotations`). `json.load` would hold the whole text and
every object in it at once, several times the file's size; here the text is
read in chunks and each array element (or other member value) is decoded on
its own by the standard library's decoder (`JSONDecoder.raw_decode`) and
handed over, so memory holds one chunk and what the caller keeps.

The document must be a JSON object (NotAnObject otherwise). Malformed text
is a Malformed error saying where; the decoder's other errors keep their
types: RecursionError for values nested deeper than the recursion limit,
ValueError for integers longer than Python's int conversion limit,
UnicodeDecodeError for bytes that are not text. All but RecursionError are
ValueErrors.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import BinaryIO, Iterator

CHUNK = 1 << 20
WHITESPACE = re.compile(r"[ \t\n\r]*")
DECODER = json.JSONDecoder()

# Events: (ARRAY, key, None) when a member's array starts; (ELEMENT, key, value)
# for each of its elements; (VALUE, key, value) for a member that is not an array.
ARRAY, ELEMENT, VALUE = "array", "element", "value"


class NotAnObject(ValueError):
    """The document is valid JSON so far, but not an object."""


class Malformed(ValueError):
    """The text is not valid JSON; the message says where (in characters from the start)."""


class _Text:
    """The decoded text of a byte stream, read a chunk at a time; `pos` is the next character to read."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        head = stream.read(4)
        # The encodings `json.loads` accepts for bytes (UTF-8, -16 or -32, told by the first bytes).
        self.decoder = codecs.getincrementaldecoder(json.detect_encoding(head))("surrogatepass")
        self.text = self.decoder.decode(head)
        self.pos = 0
        self.consumed = 0  # characters dropped from the front of `text`
        self.eof = False

    def more(self, size: int = CHUNK) -> bool:
        """Append up to `size` more bytes of text, dropping what was read; False at the end of the stream."""
        if self.eof:
            return False
        data = self.stream.read(size)
        decoded = self.decoder.decode(data, final=not data)
        self.consumed += self.pos
        self.text = self.text[self.pos :] + decoded
        self.pos = 0
        self.eof = not data
        return True

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end), without reading it."""
        while True:
            self.pos = WHITESPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def error(self, message: str) -> Malformed:
        """The error `message` at the current position, counted from the start of the document."""
        return Malformed(f"{message} (at character {self.consumed + self.pos})")

    def expect(self, allowed: str) -> str:
        """Read one of the characters `allowed`; Malformed for anything else."""
        found = self.peek()
        if not found or found not in allowed:
            raise self.error(f"Expecting {' or '.join(repr(char) for char in allowed)}")
        self.pos += 1
        return found

    def value(self):
        """Decode the next JSON value, reading more text while it is cut off by the end of the chunk."""
        if not self.peek():
            raise self.error("Expecting value")
        size = CHUNK
        while True:
            try:
                value, end = DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as error:
                # Cut off by the chunk's end, or malformed: more text tells which. A value longer
                # than a chunk is read with chunks that double, so it is decoded O(log n) times.
                if self.more(size):
                    size *= 2
                    continue
                raise Malformed(f"{error.msg} (at character {self.consumed + error.pos})") from None
            # A number at the very end of the text may go on in the next chunk ("1.", "1e", "12|34").
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if is_number and len(self.text) - end <= 2 and self.more(size):
                continue
            self.pos = end
            return value


def members(stream: BinaryIO) -> Iterator[tuple[str, str, object]]:
    """The events of the JSON object in `stream` (see ARRAY, ELEMENT, VALUE), in document order."""
    text = _Text(stream)
    if text.peek() != "{":
        text.value()  # valid JSON of another kind is told apart from malformed (or no) text
        raise NotAnObject("the document is not a JSON object")
    text.pos += 1
    if text.peek() == "}":
        text.pos += 1
    else:
        while True:
            if text.peek() != '"':
                raise text.error("Expecting property name enclosed in double quotes")
            key = text.value()
            text.expect(":")
            if text.peek() == "[":
                text.pos += 1
                yield ARRAY, key, None
                if text.peek() == "]":
                    text.pos += 1
                else:
                    while True:
                        yield ELEMENT, key, text.value()
                        if text.expect(",]") == "]":
                            break
            else:
                yield VALUE, key, text.value()
            if text.expect(",}") == "}":
                break
    if text.peek():
        raise text.error("Extra data")

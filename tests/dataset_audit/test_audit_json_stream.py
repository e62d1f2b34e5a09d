"""The streamed JSON reader of COCO files gives what `json.loads` gives, at every chunk boundary, and refuses what it refuses."""

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import json_stream

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=12
)
documents = st.dictionaries(st.text(max_size=8), values | st.lists(values, max_size=5), max_size=5)


def rebuild(data: bytes, chunk: int) -> dict:
    """The object the events of `members` describe, read `chunk` bytes at a time."""
    original = json_stream.CHUNK
    json_stream.CHUNK = chunk
    try:
        document = {}
        for event, key, value in json_stream.members(io.BytesIO(data)):
            if event == json_stream.ARRAY:
                document[key] = []
            elif event == json_stream.ELEMENT:
                document[key].append(value)
            else:
                document[key] = value
        return document
    finally:
        json_stream.CHUNK = original


@settings(max_examples=150, deadline=None)
@given(documents, st.sampled_from([1, 2, 3, 7, 64]), st.sampled_from([None, 0, 2]), st.sampled_from(["utf-8", "utf-16"]))
def test_members_rebuild_what_json_loads_reads(document, chunk, indent, encoding):
    data = json.dumps(document, indent=indent, ensure_ascii=False).encode(encoding)
    assert rebuild(data, chunk) == json.loads(data)


@pytest.mark.parametrize("chunk", [1, 2, 5, 1 << 20])
@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1.5e-3, -0.25, 12345678901234567890, 1E+2, 0]}',
        '{"a": 1.5e-3}',
        '{"a": 12}',
        ' \n{ "a" : [ ] , "b" : { } , "c" : [ [ ] ] }\n ',
        '{"\\u00e9\\"k": ["\\ud83d\\ude00", "a\\\\b"]}',
        "{}",
    ],
)
def test_numbers_and_strings_cut_by_a_chunk_boundary_are_read_whole(text, chunk):
    assert rebuild(text.encode(), chunk) == json.loads(text)


@pytest.mark.parametrize(
    "text, error",
    [
        ('{"a": [1, 2}', json_stream.Malformed),
        ('{"a": 1,}', json_stream.Malformed),
        ('{"a": 1} x', json_stream.Malformed),
        ('{"a": [1 2]}', json_stream.Malformed),
        ('{"a": 1.}', json_stream.Malformed),
        ('{"a": "unterminated}', json_stream.Malformed),
        ("{a: 1}", json_stream.Malformed),
        ('{"a" 1}', json_stream.Malformed),
        ('{"a": [1,', json_stream.Malformed),
        ("", json_stream.Malformed),
        ("[1, 2]", json_stream.NotAnObject),
        ('"text"', json_stream.NotAnObject),
    ],
)
@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_what_json_loads_refuses_is_refused(text, error, chunk):
    if error is json_stream.Malformed:
        with pytest.raises(ValueError):
            json.loads(text)
    with pytest.raises(error):
        rebuild(text.encode(), chunk)

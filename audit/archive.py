"""Opening untrusted export files: zip archives with limits, hardened XML, capped JSON.

CVAT exports come from a server that annotators write into, and may be passed
around by hand: they are untrusted input. So:
- XML is parsed with defusedxml with DTDs forbidden outright: a CVAT export
  never has one, and a DTD is how entity expansion ("billion laughs") and
  external entities get in.
- zip archives are read in place, never extracted; a member whose name is
  absolute or climbs out with `..` makes the whole archive refused (a
  legitimate export has none), and the bytes read from the archive are capped
  whatever the archive's headers claim (zip bombs).
"""

from __future__ import annotations

import io
import posixpath
import zipfile
import zlib
from contextlib import contextmanager
from typing import BinaryIO, Iterator

import defusedxml
from defusedxml.ElementTree import iterparse

from .errors import AuditError

# What the audit's memory goal allows: an export of this size is read in under
# 500 MiB, the ~140 MiB of the interpreter and its libraries included
# (benchmarks/audit_memory.py). The costliest shape per byte is one image of
# millions of shapes read per object, about 1.36 MiB per MB: 200 MiB of it
# peaked at 411 MiB (tagged images 298 MiB, COCO 291 MiB), 256 MiB of it at
# 504 MiB. Images are never read. Larger exports need --max-unpacked-mb, and
# memory to match.
DEFAULT_MAX_UNPACKED_BYTES = 200 * 1024**2
# A real export has a file per image at most; far more entries is an attack.
MAX_MEMBERS = 2_000_000


class CappedReader(io.RawIOBase):
    """A reader that fails once more than `limit` bytes came through, whatever the source claims."""

    def __init__(self, source: BinaryIO, limit: int, what: str):
        self.source = source
        self.remaining = limit
        self.limit = limit
        self.what = what

    def readable(self) -> bool:
        """Always: this is a reader."""
        return True

    def readinto(self, buffer) -> int:
        """Fill `buffer` from the source; AuditError past the limit."""
        data = self.source.read(min(len(buffer), self.remaining + 1))
        if len(data) > self.remaining:
            raise AuditError(
                f"{self.what} unpacks to more than {self.limit // 1024**2} MiB: refused as a possible zip bomb "
                "(raise --max-unpacked-mb if the export is really that large)"
            )
        self.remaining -= len(data)
        buffer[: len(data)] = data
        return len(data)


def check_member_names(archive: zipfile.ZipFile, path: str) -> list[zipfile.ZipInfo]:
    """The archive's members, after refusing absolute names, `..` and absurd member counts."""
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise AuditError(f"{path}: the zip holds {len(members)} files: refused")
    for member in members:
        name = member.filename.replace("\\", "/")
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in name.split("/"):
            raise AuditError(f"{path}: the zip has a member outside its root ({member.filename!r}): refused")
    return members


def find_member(members: list[zipfile.ZipInfo], wanted: str) -> zipfile.ZipInfo | None:
    """The member named `wanted` at the archive's root, or in a single top folder (a re-zipped export)."""
    for member in members:
        name = posixpath.normpath(member.filename.replace("\\", "/"))
        if name == wanted or (name.count("/") == wanted.count("/") + 1 and name.split("/", 1)[1] == wanted):
            return member
    return None


@contextmanager
def open_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path: str, budget: list[int]) -> Iterator[BinaryIO]:
    """A capped stream of one member; `budget` ([bytes left]) is shared by all members read from the archive."""
    if member.file_size > budget[0]:
        raise AuditError(
            f"{path}: {member.filename} unpacks to {member.file_size // 1024**2} MiB, over the limit: refused as a "
            "possible zip bomb (raise --max-unpacked-mb if the export is really that large)"
        )
    try:
        with archive.open(member) as raw:
            reader = CappedReader(raw, budget[0], f"{path}: {member.filename}")
            yield io.BufferedReader(reader)
            budget[0] = reader.remaining
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise AuditError(f"{path}: damaged zip: {error}") from None
    except (RuntimeError, NotImplementedError) as error:
        # zipfile raises these for encrypted members and unknown compression methods.
        raise AuditError(f"{path}: cannot read {member.filename}: {error}") from None


def iter_xml(stream: BinaryIO, path: str):
    """(event, element) pairs of an XML stream, with DTDs, entities and external references refused."""
    try:
        yield from iterparse(stream, events=("start", "end"), forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DTDForbidden:
        raise AuditError(
            f"{path}: the XML declares a DTD, which can hide entity-expansion or external-entity attacks "
            "and which CVAT exports never have: refused"
        ) from None
    except defusedxml.EntitiesForbidden as error:
        raise AuditError(f"{path}: the XML declares the entity {error.name!r}: refused (CVAT exports never do)") from None
    except defusedxml.ExternalReferenceForbidden:
        raise AuditError(f"{path}: the XML refers to an external resource: refused") from None
    except defusedxml.DefusedXmlException as error:
        raise AuditError(f"{path}: unsafe XML refused: {error}") from None
    except SyntaxError as error:
        # xml.etree's ParseError is a SyntaxError.
        raise AuditError(f"{path}: not well-formed XML: {error}") from None

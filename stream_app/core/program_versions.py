"""Program versions: one file, a base program and `[[versions]]` that each change it from an instant on.

An event is applied under the version in effect at its `occurred_at`, so a replay of history gives
what live processing gave, whenever it runs (docs/program.md, "Program versions"). Each version is
the base with every earlier version's keys and its own laid over it (tables merge key by key; any
other value, arrays of tables included, is replaced), so a version names only what it changes.
A file without `[[versions]]` is one version, the base, in effect since always: as before.

The content hash of each version (of its resolved keys, not of its text: comments and layout do
not count) is what a worker compares with the hashes recorded when that version first ran
(stream_app/program_guard.py), so a version already in effect cannot be edited silently.
"""
from __future__ import annotations

import bisect
import copy
import hashlib
import json
import tomllib
from dataclasses import dataclass, replace
from datetime import date, datetime, time

from stream_app.core.calendar import rfc3339
from stream_app.core.program import Program, ProgramError, parse_program, program_from_dict, read_program_text
from stream_app.core.toml_lines import line_of

SINCE_ALWAYS = -(2**63)  # the base version's effective_from


@dataclass(frozen=True, slots=True)
class Version:
    name: str
    effective_from: int  # epoch ms; SINCE_ALWAYS for the base
    hash: str  # sha256 of the resolved keys (canonical JSON)
    program: Program


@dataclass(frozen=True, slots=True)
class ProgramVersions:
    """The versions of one program file, oldest first (effective_from strictly increasing)."""

    versions: tuple[Version, ...]

    @classmethod
    def single(cls, program: Program) -> ProgramVersions:
        """One program in effect since always (tests, and callers that know only one program)."""
        return cls((Version(program.version, SINCE_ALWAYS, "", program),))

    def at(self, ms: int) -> Program:
        """The program in effect at `ms`: the newest version whose effective_from is at or before it."""
        return self.version_at(ms).program

    def version_at(self, ms: int) -> Version:
        index = bisect.bisect_right(self._starts, ms) - 1
        return self.versions[max(index, 0)]

    @property
    def _starts(self) -> list[int]:
        return [v.effective_from for v in self.versions]

    def boundaries(self, after: int, upto: int) -> list[int]:
        """The effective_from instants in (after, upto]: where a member's clock changes version."""
        return [v.effective_from for v in self.versions[1:] if after < v.effective_from <= upto]

    def in_effect(self, now: int) -> list[Version]:
        """The declared versions (`[[versions]]`, not the base) in effect at `now`: those a worker guards."""
        return [v for v in self.versions[1:] if v.effective_from <= now]

    def upcoming(self, now: int) -> list[Version]:
        return [v for v in self.versions[1:] if v.effective_from > now]


def content_hash(data: dict) -> str:
    """sha256 of parsed TOML as canonical JSON (sorted keys; dates and times as ISO text)."""
    def encode(value: object) -> str:
        if isinstance(value, datetime | date | time):
            return value.isoformat()
        raise TypeError(f"cannot hash {type(value).__name__}")
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=encode)
    return hashlib.sha256(text.encode()).hexdigest()


def merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` laid over it: tables merge key by key, everything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def versions_from_dict(data: dict) -> ProgramVersions:
    """Check and build every version of parsed TOML; a ProgramError names the key (`versions[1].shares.points`)."""
    data = dict(data)
    declared = data.pop("versions", [])
    if not isinstance(declared, list) or not all(isinstance(v, dict) for v in declared):
        raise ProgramError("versions: must be an array of tables [[versions]]")
    base = program_from_dict(data)
    versions = [Version(base.version, SINCE_ALWAYS, content_hash(data), base)]
    names, resolved = {base.version}, data
    for i, raw in enumerate(declared):
        where = f"versions[{i}]"
        overrides = dict(raw)
        name, start = overrides.pop("name", None), overrides.pop("effective_from", None)
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise ProgramError(f"{where}.name: {'missing' if name is None else 'must be 1 to 64 characters'}")
        if name in names:
            raise ProgramError(f"{where}.name: {name!r} names an earlier version too; names must be unique")
        if "version" in overrides or "versions" in overrides:
            raise ProgramError(f"{where}: a version cannot hold `version` or `versions`")
        effective_from = _instant(start, f"{where}.effective_from")
        if effective_from <= versions[-1].effective_from:
            raise ProgramError(f"{where}.effective_from: must be after the previous version's")
        resolved = merge(resolved, overrides)
        try:
            program = program_from_dict(resolved)
        except ProgramError as exc:
            raise ProgramError(f"{where}.{exc.detail}") from None
        names.add(name)
        versions.append(Version(name, effective_from, content_hash(resolved), replace(program, version=name)))
    return ProgramVersions(tuple(versions))


def _instant(value: object, key: str) -> int:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ProgramError(f"{key}: not an RFC 3339 date-time") from None
    if not isinstance(value, datetime):
        raise ProgramError(f"{key}: {'missing' if value is None else 'must be a date-time with an offset'}")
    if value.tzinfo is None:
        raise ProgramError(f"{key}: must be a date-time with an offset")
    return int(value.timestamp() * 1000)


def parse_versions(text: str, source: str | None = None) -> ProgramVersions:
    """Program TOML text with any versions; an error carries its line (and `source`), as parse_program's."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        parse_program(text, source)  # raises the syntax error with its line
        raise
    try:
        return versions_from_dict(data)
    except ProgramError as exc:
        raise ProgramError(exc.detail, line=line_of(exc.detail.split(": ", 1)[0], text), source=source) from None


def load_versions(path: str | None) -> ProgramVersions:
    """The versions of the program at `path`, or of the packaged default when `path` is empty."""
    return parse_versions(*read_program_text(path))


class VersionEdited(ProgramError):
    """A version already in effect differs from what was recorded when a worker first ran under it."""


def guard(versions: ProgramVersions, recorded: dict[str, dict], now: int) -> list[dict]:
    """Check the versions in effect at `now` against `recorded` (name -> record); the records to add.

    Raises VersionEdited naming each recorded version that is no longer in the file, no longer in effect
    (its effective_from moved later), or whose hash or effective_from is not the recorded one. A version
    in effect that is not recorded yet (it came into effect since the last start) is recorded as it is now."""
    in_effect = {v.name: v for v in versions.in_effect(now)}
    edited = []
    for name, record in sorted(recorded.items(), key=lambda item: item[1].get("effective_from_ms", 0)):
        version = in_effect.get(name)
        since = rfc3339(record.get("effective_from_ms", 0))
        if version is None:
            edited.append(f"{name} (in effect since {since}) removed or moved later")
        elif (record.get("hash"), record.get("effective_from_ms")) != (version.hash, version.effective_from):
            edited.append(f"{name} (in effect since {since}) edited")
    if edited:
        raise VersionEdited(f"versions: {'; '.join(edited)} after it took effect: events already applied under "
                            "it would be replayed under other rules. Undo the change, or add a new [[versions]] "
                            "entry with a later effective_from")
    return [record_of(v) for name, v in in_effect.items() if name not in recorded]


def record_of(version: Version) -> dict:
    """What the program-versions topic holds for a version, keyed by its name."""
    return {"name": version.name, "effective_from": rfc3339(version.effective_from),
            "effective_from_ms": version.effective_from, "hash": version.hash}

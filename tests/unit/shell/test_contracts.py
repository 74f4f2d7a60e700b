"""The docs and the code agree: settings, topics, schemas, dead-letter codes, program keys, HTTP routes.

Reads the Markdown in docs/ and the source text; no broker and no Faust app are needed.
"""
from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import pytest

from stream_app.compose import build_parts
from stream_app.core.program import (
    ProgramError,
    default_program_text,
    load_program,
    parse_duration_ms,
    program_from_dict,
)
from stream_app.core.program_keys import KEYS, TEMPLATES
from stream_app.settings import DEFAULTS, load_settings
from topics.catalog import CATALOG_KINDS, INPUT_KINDS, INTERNAL_KINDS, OUTPUT_KINDS, TopicNames
from topics.validation import load_schema

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
SCHEMA_DIR = ROOT / "topics" / "schemas"
OWN_DOCS = ("contracts.md", "configuration.md", "program.md", "http.md")
CODE_DIRS = ("stream_app", "agents", "topics", "tables")


def doc(name: str) -> str:
    return (DOCS / name).read_text("utf-8")


def source(relative: str) -> str:
    return (ROOT / relative).read_text("utf-8")


def table_blocks(text: str) -> list[list[str]]:
    """Markdown tables: runs of consecutive lines starting with `|`."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def code(cell: str) -> str:
    return cell.strip().removeprefix("`").removesuffix("`")


# -- configuration.md ------------------------------------------------------------------------------

def env_table() -> dict[str, str]:
    """Variable -> documented default, from the one table of configuration.md that lists variables."""
    blocks = [b for b in table_blocks(doc("configuration.md")) if any(r.startswith("| `LOYALTY_") for r in b)]
    assert len(blocks) == 1, "configuration.md must list the variables in exactly one table"
    rows = [cells(r) for r in blocks[0] if r.startswith("| `LOYALTY_")]
    names = [code(r[0]) for r in rows]
    assert len(names) == len(set(names)), "a variable is listed twice"
    return {code(r[0]): "" if r[1] == "(empty)" else code(r[1]) for r in rows}


def variables_read_elsewhere() -> set[str]:
    """LOYALTY_* variables the code reads from the environment directly, not through settings.DEFAULTS."""
    pattern = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()\s*["'](LOYALTY_[A-Z0-9_]+)["']""")
    return {name for folder in CODE_DIRS for path in (ROOT / folder).rglob("*.py")
            for name in pattern.findall(path.read_text("utf-8"))} - set(DEFAULTS)


def test_every_setting_is_documented_and_every_documented_variable_exists() -> None:
    assert set(env_table()) == set(DEFAULTS)


def test_variables_read_outside_settings_are_documented() -> None:
    text = doc("configuration.md")
    for name in variables_read_elsewhere():
        assert f"`{name}`" in text, name


def test_docs_mention_only_variables_that_exist() -> None:
    known = set(DEFAULTS) | variables_read_elsewhere()
    for name in OWN_DOCS:
        unknown = set(re.findall(r"\bLOYALTY_[A-Z0-9_]+\b", doc(name))) - known
        assert not unknown, f"{name} mentions unknown variables {sorted(unknown)}"


def test_documented_defaults_are_the_defaults() -> None:
    documented = env_table()
    assert documented == DEFAULTS
    assert load_settings({}) == load_settings(documented)


def test_load_settings_without_environment_gives_the_documented_values() -> None:
    documented = env_table()
    settings = load_settings({})
    expected = {
        "broker": documented["LOYALTY_BROKER"], "app_id": documented["LOYALTY_APP_ID"],
        "store": documented["LOYALTY_STORE"], "data_dir": Path(documented["LOYALTY_DATA_DIR"]),
        "web_host": documented["LOYALTY_WEB_HOST"], "web_port": int(documented["LOYALTY_WEB_PORT"]),
        "topic_prefix": documented["LOYALTY_TOPIC_PREFIX"], "partitions": int(documented["LOYALTY_PARTITIONS"]),
        "replication": int(documented["LOYALTY_REPLICATION"]), "rules_path": documented["LOYALTY_RULES"],
        "redis_url": documented["LOYALTY_REDIS_URL"],
        "due_tick_seconds": parse_duration_ms(documented["LOYALTY_DUE_TICK"]) / 1000,
        "session_timeout_seconds": parse_duration_ms(documented["LOYALTY_SESSION_TIMEOUT"]) / 1000,
        "log_level": documented["LOYALTY_LOG_LEVEL"],
    }
    for field, value in expected.items():
        assert getattr(settings, field) == value, field


def test_load_settings_ignores_unrelated_variables() -> None:
    assert load_settings({"PATH": "/bin", "LOYALTY_NOT_A_SETTING": "x"}) == load_settings({})


@pytest.mark.parametrize("value", ["0", "-1", "eight", ""])
def test_load_settings_rejects_a_partition_count_that_is_not_positive(value: str) -> None:
    with pytest.raises(ValueError, match="LOYALTY_PARTITIONS"):
        load_settings({"LOYALTY_PARTITIONS": value})


@pytest.mark.parametrize("value", ["1s", "", "P", "PT", "P1Y", "PT1.5M", "1"])
def test_load_settings_rejects_a_bad_due_tick(value: str) -> None:
    with pytest.raises(ValueError):
        load_settings({"LOYALTY_DUE_TICK": value})


# -- contracts.md ----------------------------------------------------------------------------------

def test_every_topic_is_documented_with_the_default_prefix() -> None:
    text = doc("contracts.md")
    names = TopicNames(DEFAULTS["LOYALTY_TOPIC_PREFIX"])
    for kind in INPUT_KINDS + OUTPUT_KINDS + INTERNAL_KINDS + CATALOG_KINDS:
        assert f"`{names.name(kind)}`" in text, kind


@pytest.mark.parametrize("kind", CATALOG_KINDS)
def test_every_catalogue_message_field_and_type_is_documented(kind: str) -> None:
    text = doc("contracts.md")
    schema = load_schema(kind)
    for field in schema["properties"]:
        assert f"| `{field}` |" in text, f"{kind}.{field}"
    for message_type in schema["properties"].get("type", {}).get("enum", []):
        assert f"`{message_type}`" in text, message_type


def test_every_rejection_reason_is_documented() -> None:
    from stream_app.core import redemption, reward_stock

    reasons = set()
    for module in (redemption, reward_stock):
        reasons |= set(re.findall(r'(?:reason = |return )"(\w+)"', Path(module.__file__).read_text("utf-8")))
    reasons -= {"applied", "duplicate_codes"}
    assert {"out_of_stock", "paused", "price_mismatch", "limit_reached", "tier_required", "not_available",
            "member_frozen", "insufficient_points", "unknown_reward", "duplicate"} <= reasons
    rejected = next(line for line in doc("contracts.md").splitlines() if line.startswith("| `redemption_rejected` | 0"))
    for reason in reasons:
        assert f"`{reason}`" in rejected, reason


def test_every_schema_file_is_linked() -> None:
    text = doc("contracts.md")
    schemas = sorted(SCHEMA_DIR.glob("*.json"))
    assert schemas
    for path in schemas:
        assert f"](../topics/schemas/{path.name})" in text, path.name


def test_every_dead_letter_code_is_documented() -> None:
    text = doc("contracts.md")
    for error in load_schema("dead-letters")["properties"]["error"]["enum"]:
        assert f"| `{error}` |" in text, error


def test_the_dead_letter_codes_the_code_emits_are_the_schema_s() -> None:
    emitted = set(re.findall(r'Rejection\(\s*"(\w+)"', source("topics/validation.py")))
    for path in sorted((ROOT / "agents").glob("*.py")):
        emitted |= set(re.findall(r'dead_letter\([^)]*?"(\w+)"', path.read_text("utf-8")))
    assert {"processing_error", "occurred_at_out_of_range", "output_too_large"} <= emitted
    assert emitted == set(load_schema("dead-letters")["properties"]["error"]["enum"])


def test_the_documented_grammar_limits_are_the_code_s() -> None:
    from topics.strict_json import MAX_DEPTH, MAX_SAFE_INTEGER
    from topics.validation import MAX_MESSAGE_BYTES, OCCURRED_AT_MAX_AHEAD, OCCURRED_AT_MIN

    text = doc("contracts.md")
    assert f"nested more than {MAX_DEPTH} levels" in text
    assert MAX_SAFE_INTEGER == 2**53 - 1 and f"{MAX_SAFE_INTEGER:,}" in text
    assert f"{MAX_MESSAGE_BYTES:,} bytes" in text
    assert f"before `{OCCURRED_AT_MIN.isoformat().replace('+00:00', 'Z')}`" in text
    assert f"more than {OCCURRED_AT_MAX_AHEAD.total_seconds() / 3600:.0f} hours after the worker's clock" in text


def _definition_fields(schema: dict, name: str) -> set[str]:
    definitions = schema["definitions"]
    fields, todo = set(), [definitions[name]]
    while todo:
        part = todo.pop()
        if "$ref" in part:
            todo.append(definitions[part["$ref"].removeprefix("#/definitions/")])
            continue
        todo.extend(part.get("allOf", ()))
        fields |= set(part.get("properties", {}))
    return fields


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_every_input_event_type_and_field_is_documented(kind: str) -> None:
    text = doc("contracts.md")
    schema = load_schema(kind)
    for event_type in schema["properties"]["type"]["enum"]:
        assert f"`{event_type}`" in text, event_type
        for field in _definition_fields(schema, event_type):
            assert f"`{field}`" in text, f"{event_type}.{field}"
    for field in schema["definitions"].get("item", {}).get("properties", {}):
        assert f"`{field}`" in text, f"item.{field}"


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
def test_every_output_field_is_documented(kind: str) -> None:
    text = doc("contracts.md")
    for field in load_schema(kind)["properties"]:
        assert f"| `{field}` |" in text, f"{kind}.{field}"


def test_every_reward_type_is_documented() -> None:
    text = doc("contracts.md")
    for reward_type in load_schema("rewards")["properties"]["type"]["enum"]:
        assert f"`{reward_type}`" in text, reward_type


def _emitted(pattern: str) -> set[str]:
    return {name for path in (ROOT / "stream_app").rglob("*.py")
            for name in re.findall(pattern, path.read_text("utf-8"))}


def test_every_emitted_reward_type_and_template_is_documented() -> None:
    text = doc("contracts.md")
    rewards, templates = _emitted(r'\.reward\(\s*member,\s*"(\w+)"'), _emitted(r'\.notify\(\s*member,\s*"(\w+)"')
    assert rewards and templates
    for name in rewards:
        assert f"| `{name}` |" in text, f"reward type {name}"
    for name in templates:
        assert f"| `{name}` |" in text, f"template {name}"


def test_documented_default_priorities_are_the_packaged_ones() -> None:
    text = doc("contracts.md")
    for template, priority in tomllib.loads(default_program_text())["notifications"].items():
        assert re.search(rf"^\| `{template}` \| {priority} \|", text, re.MULTILINE), template


def test_relative_links_to_code_and_own_docs_resolve() -> None:
    for name in OWN_DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc(name)):
            if "://" in target or (target.endswith(".md") and target not in OWN_DOCS):
                continue  # external, or another owner's document
            assert (DOCS / target).resolve().exists(), f"{name} links to missing {target}"


# -- program.md ------------------------------------------------------------------------------------

def flat_keys(table: dict, prefix: str = "") -> list[str]:
    """Dotted keys of a TOML document; an array of tables contributes its name and its elements' keys."""
    keys = []
    for name, value in table.items():
        key = f"{prefix}{name}"
        keys.append(key)
        if isinstance(value, dict):
            keys += flat_keys(value, f"{key}.")
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            for element in value:
                keys += flat_keys(element, f"{key}.")
    return list(dict.fromkeys(keys))


def program_rows() -> dict[str, list[str]]:
    """Key -> [type, if absent, packaged, meaning] from program.md's key table."""
    rows = {}
    for block in table_blocks(doc("program.md")):
        for row in block:
            parts = cells(row)
            if len(parts) == 5 and parts[0].startswith("`"):
                rows[code(parts[0])] = parts[1:]
    return rows


def test_the_documented_program_keys_are_the_accepted_keys() -> None:
    """program_keys.KEYS is the one list: every key the loader accepts is documented, and no other."""
    documented = list(program_rows())
    assert len(documented) == len(set(documented)), "a key is documented twice"
    assert set(documented) == set(KEYS)


def test_every_packaged_program_key_is_accepted() -> None:
    keys = flat_keys(tomllib.loads(default_program_text()))
    assert "orders.return_window" in keys and "tiers.levels" in keys and "tiers.levels.threshold" in keys
    assert set(keys) <= set(KEYS)


def test_every_key_program_py_reads_is_an_accepted_key() -> None:
    methods = "get|count|duration|section|tables|name|choice|multiplier|instant|clock|integers"
    names = set(re.findall(rf'\.(?:{methods})\(\s*"(\w+)"', source("stream_app/core/program.py")))
    assert {"timezone", "return_window", "weekdays", "max_event_ids", "levels", "start"} <= names
    for name in names:
        assert any(k == name or k.endswith(f".{name}") for k in KEYS), name


def test_every_template_the_core_sends_has_a_priority_key() -> None:
    templates = _emitted(r'\.notify\(\s*member,\s*"(\w+)"')
    assert templates and templates <= set(TEMPLATES)


def _literal(cell: str) -> object:
    """A documented value: JSON when it parses (numbers, lists), else the text without backticks."""
    text = code(cell)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _is_value(cell: str) -> bool:
    """Whether an *If absent* cell states a value (rather than `required`, `empty`, `none`, ...)."""
    return cell.startswith("`") or re.fullmatch(r"-?\d+(\.\d+)?", cell) is not None


def test_packaged_values_in_program_md_match_the_packaged_file() -> None:
    rows = program_rows()
    data = tomllib.loads(default_program_text())
    for key in flat_keys(data):
        value = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            assert _literal(rows[key][2]) == value, key


MINIMAL = {"tiers": {"levels": [{"name": "base", "threshold": 0}]}}
PER_ELEMENT = ("tiers.levels.", "campaigns.", "notifications.", "rewards.catalog.", "rewards.grants.")


def test_documented_values_for_absent_keys_are_what_the_loader_uses() -> None:
    """Writing every documented *If absent* value explicitly gives the same program as leaving it out."""
    rows = program_rows()
    explicit = copy.deepcopy(MINIMAL)
    stated = [k for k, row in rows.items() if _is_value(row[1]) and not k.startswith(PER_ELEMENT)]
    assert "orders.return_window" in stated and "timezone" in stated
    for key in stated:
        *tables, name = key.split(".")
        target = explicit
        for table in tables:
            target = target.setdefault(table, {})
        target[name] = _literal(rows[key][1])
    assert program_from_dict(explicit) == program_from_dict(MINIMAL)


def test_documented_values_for_absent_element_keys_are_what_the_loader_uses() -> None:
    rows = program_rows()
    campaign = {"name": "c", "start": "2020-01-01T00:00:00+00:00", "end": "2021-01-01T00:00:00+00:00"}
    program = program_from_dict({**MINIMAL, "campaigns": [campaign]})
    assert program.tiers[0].multiplier == _literal(rows["tiers.levels.multiplier"][1])
    assert program.campaigns[0].multiplier == _literal(rows["campaigns.multiplier"][1])
    assert list(program.campaigns[0].applies_to) == _literal(rows["campaigns.applies_to"][1])
    for key, row in rows.items():
        if key.startswith("notifications."):
            assert program.priority(key.removeprefix("notifications.")) == code(row[1]), key


def _program_with(key: str, value: object) -> dict:
    """MINIMAL plus one campaign, with `key` (an element key goes into the first element) set to `value`."""
    data = copy.deepcopy(MINIMAL)
    data["campaigns"] = [{"name": "c", "start": "2020-01-01T00:00:00+00:00", "end": "2021-01-01T00:00:00+00:00"}]
    data["rewards"] = {"catalog": [{"code": "r", "name": "r", "kind": "coupon", "points": 1}],
                       "grants": [{"reward": "r", "min_tier": "base"}]}
    *tables, name = key.split(".")
    if key.startswith(("tiers.levels.", "campaigns.", "rewards.catalog.", "rewards.grants.")):
        target = (data["tiers"]["levels"][0] if key.startswith("tiers.") else data["campaigns"][0]
                  if key.startswith("campaigns.") else data["rewards"][key.split(".")[1]][0])
    else:
        target = data
        for table in tables:
            target = target.setdefault(table, {})
    target[name] = value
    return data


def test_documented_lower_bounds_are_the_loader_s() -> None:
    """A Type of `duration > 0`, `multiplier > 0` or `count ≥ 1` refuses 0; plain `duration`, `multiplier`
    and `count` accept it."""
    zero = {"duration": "PT0S", "multiplier": 0, "count": 0}
    checked = 0
    for key, (kind, *_) in program_rows().items():
        base = kind.split(" ")[0]
        if base not in zero:
            continue
        data = _program_with(key, zero[base])
        if kind in ("duration > 0", "multiplier > 0", "count ≥ 1"):
            where = key
            for array in ("tiers.levels", "campaigns", "rewards.catalog", "rewards.grants"):
                where = where.replace(f"{array}.", f"{array}[0].")
            with pytest.raises(ProgramError, match=rf"^{re.escape(where)}: "):
                program_from_dict(data)
        else:
            program_from_dict(data)
        checked += 1
    assert checked >= 35


# -- the command line --------------------------------------------------------------------------------

def test_every_cli_command_is_documented() -> None:
    from stream_app.cli import build_parser

    text = (ROOT / "README.md").read_text("utf-8") + "".join(doc(p.name) for p in DOCS.glob("*.md"))
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert {"rewards", "import-codes", "member"} <= set(commands)
    for command in commands:
        assert f"loyalty {command}" in text, command


# -- http.md ---------------------------------------------------------------------------------------

def routes() -> set[tuple[str, str]]:
    """(METHOD, path) of each handler of each `@app.page("...")` view in stream_app/web.py."""
    text = source("stream_app/web.py")
    pages = list(re.finditer(r'@app\.page\(\s*["\']([^"\']+)["\']', text))
    assert pages, "no @app.page routes found in stream_app/web.py"
    found = set()
    for i, page in enumerate(pages):
        body = text[page.end():pages[i + 1].start() if i + 1 < len(pages) else len(text)]
        methods = re.findall(r"async def (get|post|put|patch|delete)\(", body)
        assert methods, f"no handler method under {page.group(1)}"
        found |= {(method.upper(), page.group(1)) for method in methods}
    return found


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    documented = set(re.findall(r"^## (GET|POST|PUT|PATCH|DELETE) (\S+)$", doc("http.md"), re.MULTILINE))
    assert documented == routes()


def _metric_families() -> dict[str, str]:
    """Every loyalty_* metric family the code defines (name as exposed, without sample suffixes) -> type."""
    from prometheus_client import REGISTRY

    import stream_app.metrics  # noqa: F401  (defines the families)
    import tables.redis_projection  # noqa: F401

    families = {}
    for family in REGISTRY.collect():
        if family.name.startswith("loyalty_"):
            name = family.name + ("_total" if family.type == "counter" else "")
            families[name] = family.type
    return families


def test_every_metric_is_documented_with_its_type_and_every_documented_metric_exists() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    documented = dict(re.findall(r"^\| `(loyalty_[a-z_]+)` \| (counter|gauge|histogram)", text, re.M))
    assert documented == _metric_families()


# -- referrals.md ----------------------------------------------------------------------------------

def test_every_referral_rejection_reason_is_documented_and_emitted():
    from stream_app.core.referrals import REASONS

    table = {code(cells(row)[0]) for block in table_blocks(doc("referrals.md")) for row in block[2:]}
    assert set(REASONS) <= table
    emitted = set(re.findall(r'"(\w+)"', source("stream_app/core/referrals.py"))) & set(REASONS)
    assert emitted == set(REASONS)
    for reason in REASONS:
        assert f"`{reason}`" in doc("contracts.md") and f"`{reason}`" in doc("metrics.md"), reason


def test_the_referral_messages_fields_are_documented():
    from stream_app.core.emitted import Outputs
    from stream_app.core.member import Member
    from stream_app.core.program import parse_program
    from stream_app.core.referral_book import FriendReferral
    from stream_app.core.referrals import decide_due, reply

    program = parse_program(default_program_text())
    friend = Member("f", 0, "bronze", referrer_id="r")
    friend.referrals.friend = FriendReferral("r", "o1", "rc-1", 10)
    out = Outputs(program)
    decide_due(friend, program, 10, out)
    [claim] = out.messages
    rows = {code(cells(row)[0]) for block in table_blocks(doc("referrals.md")) for row in block[2:]}
    documented = {name for row in rows for name in re.findall(r"\w+", row)}
    for message in (claim, reply(claim, "r", None)):
        assert set(message) <= documented, set(message) - documented
        assert f"`{message['type']}`" in doc("contracts.md")


def test_every_table_changelog_is_documented_with_the_internal_topics() -> None:
    parts = build_parts(load_settings({"LOYALTY_STORE": "memory://", "LOYALTY_APP_ID": "loyalty"}), load_program(""))
    changelogs = {table.changelog_topic.get_topic_name() for table in parts.app.tables.values()}
    assert changelogs == {"loyalty-members-changelog", "loyalty-devices-changelog", "loyalty-member-index-changelog",
                          "loyalty-rewards-changelog"}
    internal = doc("contracts.md").split("## Keys and values")[0]
    for name in changelogs:
        assert f"`{name}`" in internal and f"`<LOYALTY_APP_ID>{name.removeprefix('loyalty')}`" in internal

"""Bad configs: every one raises ConfigError naming the file, the key path and (where the key is in the file)
its line; through the CLI each is exit status 2 with one `error:` line on stderr and no traceback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    CORE_MANIFEST,
    DEFAULT_CONFIG,
    DEFAULT_PERTURBATIONS,
    REPO_ROOT,
    RunCli,
    assert_one_line_error,
    default_config_data,
    dump_yaml,
    load_yaml,
)
from townlet import ConfigError, load_config
from townlet.errors import UsageError

Edit = Callable[[dict[str, Any]], Any]


def setter(*path: str | int, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return edit


def deleter(*path: str | int) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return edit


def first_object_of_type(data: dict[str, Any], object_type: str) -> int:
    return next(i for i, o in enumerate(data["world"]["objects"]) if o["type"] == object_type)


@dataclass(frozen=True)
class Case:
    id: str
    #: Edit of the main config (a dict with the includes as paths, or inlined when `inline`).
    edit: Edit | None = None
    #: Edits of the included manifest / perturbation set, written next to the config and included by name.
    manifest: Edit | None = None
    #: Verbatim text for the included manifest, instead of an edited copy of the core one.
    manifest_text: str | None = None
    perturbations: Edit | None = None
    inline: bool = False
    #: Verbatim text for the main config, instead of an edited copy of the default.
    text: str | None = None
    #: Which file the error must name: config, manifest or perturbations.
    file: str = "config"
    #: The exact key path in the message ("" when the error concerns the whole file).
    key: str = ""
    #: Fragments the message must contain.
    message: tuple[str, ...] = ()
    #: Text of the line the error points at; None when no line applies.
    line_has: str | None = None
    #: Exact line number, where that is the point (YAML syntax errors).
    line: int | None = None
    #: Also check this one through `townlet validate` and `townlet sim run`.
    cli: bool = False


CASES: list[Case] = [
    # -- unknown keys
    Case(
        "unknown-top-level-key",
        edit=setter("colour", value="red"),
        key="colour",
        message=("unknown top-level key", "queue_fairness"),
        line_has="colour",
        cli=True,
    ),
    Case(
        "unknown-nested-key",
        edit=setter("queue_fairness", "bogus", value=1),
        key="queue_fairness.bogus",
        message=("unknown key", "cooldown_ticks"),
        line_has="bogus",
        cli=True,
    ),
    Case(
        "unknown-key-in-agent",
        edit=setter("agents", 2, "hat", value="red"),
        key="agents[2].hat",
        message=("unknown key",),
        line_has="hat",
    ),
    Case(
        "unknown-key-in-observations",
        edit=setter("observations", "zoom", value=2),
        key="observations.zoom",
        message=("unknown key",),
        line_has="zoom",
    ),
    # -- wrong types
    Case(
        "string-for-integer",
        edit=setter("queue_fairness", "cooldown_ticks", value="ten"),
        key="queue_fairness.cooldown_ticks",
        message=('queue_fairness.cooldown_ticks: expected integer >= 0, got "ten"',),
        line_has="cooldown_ticks",
        cli=True,
    ),
    Case(
        "float-for-integer",
        edit=setter("needs", "faint_window_ticks", value=1.5),
        key="needs.faint_window_ticks",
        message=("expected integer >= 0, got 1.5",),
        line_has="faint_window_ticks",
    ),
    Case(
        "string-for-boolean",
        edit=setter("lifecycle", "mortality", value="sometimes"),
        key="lifecycle.mortality",
        message=("expected true or false", '"sometimes"'),
        line_has="mortality",
    ),
    Case(
        "string-for-seed",
        edit=setter("seed", value="abc"),
        key="seed",
        message=('expected integer >= 0, got "abc"',),
        line_has="seed",
    ),
    Case(
        "string-for-list",
        edit=setter("world", "objects", value="beds"),
        key="world.objects",
        message=('expected list, got "beds"',),
        line_has="objects",
    ),
    Case(
        "null-for-section",
        edit=setter("needs", value=None),
        key="needs",
        message=("expected mapping, got null",),
        line_has="needs",
    ),
    # -- out of range
    Case(
        "negative-integer",
        edit=setter("queue_fairness", "cooldown_ticks", value=-3),
        key="queue_fairness.cooldown_ticks",
        message=("expected integer >= 0, got -3",),
        line_has="cooldown_ticks",
    ),
    Case(
        "negative-wage",
        edit=setter("jobs", "grocer", "wage_rate", value=-0.5),
        key="jobs.grocer.wage_rate",
        message=(">= 0", "-0.5"),
        line_has="wage_rate",
        cli=True,
    ),
    Case(
        "negative-starting-wallet",
        edit=setter("economy", "starting_wallet", value=-1.0),
        key="economy.starting_wallet",
        message=(">= 0", "-1"),
        line_has="starting_wallet",
    ),
    Case(
        "need-above-one",
        edit=setter("needs", "initial", "hunger", value=1.5),
        key="needs.initial.hunger",
        message=("[0, 1]", "1.5"),
        line_has="hunger",
    ),
    Case(
        "ticks-per-day-too-small",
        edit=setter("world", "ticks_per_day", value=10),
        key="world.ticks_per_day",
        message=(">= 24", "10"),
        line_has="ticks_per_day",
    ),
    # -- missing sections
    Case("missing-world", edit=deleter("world"), key="world", message=("required key is missing",)),
    Case("missing-agents", edit=deleter("agents"), key="agents", message=("required key is missing",), cli=True),
    Case("missing-affordances", edit=deleter("affordances"), key="affordances", message=("required key is missing",)),
    Case("missing-layout", edit=deleter("world", "layout"), key="world.layout", message=("required key is missing",)),
    Case("missing-config-id", edit=deleter("config_id"), key="config_id", message=("required key is missing",)),
    # -- references and the map
    Case(
        "unknown-object-type",
        edit=setter("world", "objects", 0, "type", value="jacuzzi"),
        key="world.objects[0].type",
        message=('unknown object type "jacuzzi"', "bed"),
        line_has="jacuzzi",
        cli=True,
    ),
    Case(
        "duplicate-object-id",
        edit=setter("world", "objects", 1, "id", value="bed_a1"),
        key="world.objects[1].id",
        message=('duplicate object id "bed_a1"',),
        line_has="bed_a1",
    ),
    Case(
        "duplicate-agent-id",
        edit=setter("agents", 1, "id", value="alice"),
        key="agents[1].id",
        message=('duplicate agent id "alice"',),
        line_has="alice",
    ),
    Case(
        "duplicate-yaml-key",
        text=DEFAULT_CONFIG.read_text(encoding="utf-8").replace("seed: 20251122\n", "seed: 1\nseed: 2\n"),
        key="seed",
        message=("duplicate key",),
        line_has="seed: 2",
    ),
    Case(
        "object-on-wall",
        edit=setter("world", "objects", 0, "pos", value=[0, 0]),
        key="world.objects[0].pos",
        message=("[0, 0]", "wall"),
        line_has="pos",
        cli=True,
    ),
    Case(
        "object-out-of-bounds",
        edit=setter("world", "objects", 3, "pos", value=[100, 7]),
        key="world.objects[3].pos",
        message=("[100, 7]", "outside"),
        line_has="pos",
    ),
    Case(
        "agent-home-on-wall",
        edit=setter("agents", 0, "home", value=[0, 5]),
        key="agents[0].home",
        message=("[0, 5]", "not a walkable tile"),
        line_has="home",
        cli=True,
    ),
    Case(
        "bad-layout-tile",
        edit=setter("world", "layout", value="####\n#.x#\n####\n"),
        key="world.layout",
        message=("unknown tile 'x'",),
        line_has="layout",
    ),
    Case(
        "unknown-job",
        edit=setter("agents", 0, "job", value="astronaut"),
        key="agents[0].job",
        message=('unknown job "astronaut"', "grocer"),
        line_has="astronaut",
    ),
    Case(
        "unknown-personality-override",
        edit=setter("personalities", "overrides", "bob", value="grumpy"),
        key="personalities.overrides.bob",
        message=('unknown profile "grumpy"', "balanced"),
        line_has="grumpy",
    ),
    Case(
        "unknown-personality-on-agent",
        edit=setter("agents", 5, "personality", value="grumpy"),
        key="agents[5].personality",
        message=('unknown profile "grumpy"',),
        line_has="grumpy",
    ),
    Case(
        "job-ends-before-it-starts",
        edit=setter("jobs", "grocer", "end", value=100),
        key="jobs.grocer.end",
        message=("start < end", "480", "100"),
        line_has="end",
        cli=True,
    ),
    Case(
        "unknown-price-key-in-group",
        edit=setter("economy", "groups", "cafe", value=["latte_cost"]),
        key="economy.groups.cafe[0]",
        message=('unknown price key "latte_cost"',),
        line_has="latte_cost",
    ),
    # -- the observation variant (validated in Python)
    Case(
        "bad-observation-variant",
        edit=setter("observations", "variant", value="fancy"),
        key="observations.variant",
        message=("hybrid", "compact", '"fancy"'),
        line_has="fancy",
        cli=True,
    ),
    # -- the included manifest and perturbation set: errors name the included file
    Case(
        "manifest-unknown-price-key",
        manifest=setter("affordances", 0, "price", value="caviar_cost"),
        file="manifest",
        key="affordances[0].price",
        message=('unknown economy key "caviar_cost"', "meal_cost"),
        line_has="caviar_cost",
        cli=True,
    ),
    Case(
        "inline-manifest-unknown-price-key",
        inline=True,
        edit=setter("affordances", "affordances", 0, "price", value="caviar_cost"),
        key="affordances.affordances[0].price",
        message=('unknown economy key "caviar_cost"',),
        line_has="caviar_cost",
    ),
    Case(
        "manifest-zero-capacity",
        manifest=setter("object_types", "bed", "capacity", value=0),
        file="manifest",
        key="object_types.bed.capacity",
        message=(">= 1", "0"),
        line_has="capacity",
    ),
    Case(
        "manifest-unknown-key",
        manifest=setter("affordances", 1, "colour", value="red"),
        file="manifest",
        key="affordances[1].colour",
        message=("unknown key",),
        line_has="colour",
    ),
    Case(
        "manifest-wrong-type",
        manifest=setter("affordances", 2, "duration", value="long"),
        file="manifest",
        key="affordances[2].duration",
        message=('expected integer >= 0, got "long"',),
        line_has="duration",
    ),
    Case(
        "manifest-unknown-object-type",
        manifest=setter("affordances", 3, "object", value="bathtub"),
        file="manifest",
        key="affordances[3].object",
        message=('unknown object type "bathtub"',),
        line_has="bathtub",
    ),
    Case(
        "manifest-not-a-mapping",
        manifest_text="- bed\n- shower\n",
        file="manifest",
        key="",
        message=("expected a mapping", "affordances"),
    ),
    Case(
        "perturbation-unknown-price-target",
        perturbations=setter("events", "grocer_price_spike", "targets", value=["grocer", "gold"]),
        file="perturbations",
        key="events.grocer_price_spike.targets[1]",
        message=('unknown price target "gold"', "grocer", "meal_cost"),
        line_has="gold",
        cli=True,
    ),
    Case(
        "perturbation-unknown-kind",
        perturbations=setter("events", "blackout", "kind", value="earthquake"),
        file="perturbations",
        key="events.blackout.kind",
        message=('unknown value "earthquake"', "blackout"),
        line_has="earthquake",
    ),
    Case(
        "perturbation-duration-reversed",
        perturbations=setter("events", "water_outage", "duration", value=[60, 20]),
        file="perturbations",
        key="events.water_outage.duration",
        message=("min <= max", "[60, 20]"),
        line_has="duration",
    ),
    # -- files
    Case(
        "missing-include-file",
        edit=setter("affordances", value="no_such_manifest.yaml"),
        key="affordances",
        message=("no_such_manifest.yaml", "not found"),
        line_has="affordances",
        cli=True,
    ),
    Case("non-mapping-yaml", text="- just\n- a list\n", key="", message=("expected a mapping",), cli=True),
    Case("empty-file", text="", key="", message=("expected a mapping",)),
    Case(
        "invalid-yaml-syntax",
        text="config_id: broken\nseed: 1\nworld:\n  layout: [\n  objects: : nope\n",
        key="",
        message=("invalid YAML",),
        line=5,
        cli=True,
    ),
    Case(
        "invalid-yaml-in-manifest",
        manifest_text="manifest_version: 1\nobject_types:\n  bed: {capacity: 1\naffordances: []\n",
        file="manifest",
        key="",
        message=("invalid YAML",),
        line=4,  # where the parser finds the unclosed flow mapping
    ),
]


@dataclass(frozen=True)
class Built:
    config: Path
    files: dict[str, Path]


def build(case: Case, tmp_path: Path) -> Built:
    files: dict[str, Path] = {}
    config = tmp_path / "town.yaml"
    files["config"] = config
    if case.text is not None:
        config.write_text(case.text, encoding="utf-8")
        return Built(config, files)
    data = default_config_data()
    if case.inline:
        data["affordances"] = load_yaml(CORE_MANIFEST)
        data["perturbations"] = load_yaml(DEFAULT_PERTURBATIONS)
    if case.manifest is not None or case.manifest_text is not None:
        path = tmp_path / "manifest.yaml"
        if case.manifest_text is not None:
            path.write_text(case.manifest_text, encoding="utf-8")
        else:
            manifest = load_yaml(CORE_MANIFEST)
            assert case.manifest is not None
            case.manifest(manifest)
            path.write_text(dump_yaml(manifest), encoding="utf-8")
        data["affordances"] = "manifest.yaml"  # relative to the including file
        files["manifest"] = path
    if case.perturbations is not None:
        path = tmp_path / "perturbations.yaml"
        pert = load_yaml(DEFAULT_PERTURBATIONS)
        case.perturbations(pert)
        path.write_text(dump_yaml(pert), encoding="utf-8")
        data["perturbations"] = "perturbations.yaml"
        files["perturbations"] = path
    if case.edit is not None:
        case.edit(data)
    config.write_text(dump_yaml(data), encoding="utf-8")
    return Built(config, files)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.cli for c in CASES) >= 8


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_load_config_error(case: Case, tmp_path: Path) -> None:
    built = build(case, tmp_path)
    named = built.files[case.file]
    with pytest.raises(ConfigError) as info:
        load_config(built.config)
    exc = info.value
    text = str(exc)
    assert isinstance(exc, UsageError)
    assert exc.exit_code == 2
    assert "\n" not in text, text

    # The file: the one at fault (an included file for errors inside it).
    assert exc.file == str(named), text
    assert text.startswith(str(named)), text

    # The key path, exactly.
    assert exc.key == case.key, text
    if case.key:
        assert f": {case.key}: " in text, text
    for fragment in case.message:
        assert fragment in text, f"{fragment!r} not in {text!r}"

    # The line: given, shown, and pointing at the offending text.
    if case.line is not None:
        assert exc.line == case.line, text
    if case.line_has is not None:
        assert exc.line is not None, text
    if exc.line is not None:
        assert text.startswith(f"{named}:{exc.line}: "), text
        lines = named.read_text(encoding="utf-8").splitlines()
        assert 1 <= exc.line <= max(len(lines), 1), text
        if case.line_has is not None:
            assert case.line_has in lines[exc.line - 1], (text, lines[exc.line - 1])


CLI_CASES = [c for c in CASES if c.cli]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_sim_run_reports_config_error_in_one_line(case: Case, tmp_path: Path, cli: RunCli) -> None:
    built = build(case, tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(built.config)
    res = cli("sim", "run", "--config", built.config, "--tick-limit", "5", "--json")
    line = assert_one_line_error(res, str(built.files[case.file]), *case.message)
    assert line == f"error: {info.value}"
    assert res.stdout.strip() == ""


def test_validate_reports_every_bad_config_in_one_line_each(tmp_path: Path, cli: RunCli) -> None:
    """`townlet validate` over every case at once (one process): one `error:` line per file, in order."""
    expected: list[str] = []
    paths: list[Path] = []
    for case in CASES:
        folder = tmp_path / case.id
        folder.mkdir()
        built = build(case, folder)
        with pytest.raises(ConfigError) as info:
            load_config(built.config)
        expected.append(f"error: {info.value}")
        paths.append(built.config)
    res = cli("validate", *paths)
    assert res.returncode == 2, str(res)
    assert "Traceback" not in res.stderr
    assert res.stdout.strip() == ""
    assert res.stderr_lines == expected


def test_validate_one_bad_config(tmp_path: Path, cli: RunCli) -> None:
    case = next(c for c in CASES if c.id == "string-for-integer")
    built = build(case, tmp_path)
    res = cli("validate", built.config)
    line = assert_one_line_error(res, f"{built.config}:", *case.message)
    assert line.startswith(f"error: {built.config}:")


def test_validate_reports_each_file(cli: RunCli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- not a mapping\n", encoding="utf-8")
    missing = tmp_path / "missing.yaml"
    res = cli("validate", "configs/examples/poc_hybrid.yaml", bad, missing)
    assert res.returncode == 2, str(res)
    assert "Traceback" not in res.stderr
    assert res.stdout.splitlines() == ["ok: configs/examples/poc_hybrid.yaml (poc_hybrid_v1, 9 agents)"]
    errors = res.stderr_lines
    assert len(errors) == 2, str(res)
    assert errors[0].startswith(f"error: {bad}: ")
    assert errors[1].startswith(f"error: {missing}: ")
    assert "not found" in errors[1]


SHIPPED = sorted((REPO_ROOT / "configs").glob("examples/*.yaml")) + sorted(
    (REPO_ROOT / "configs").glob("scenarios/*.yaml")
)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO_ROOT)) for p in SHIPPED])
def test_shipped_configs_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.config_id
    assert len(cfg.world["agents"]) >= 1
    assert cfg.action_names()[0] == "wait"
    # Includes are resolved into the world sections.
    assert isinstance(cfg.world["affordances"], dict)


def test_config_error_names_file_line_and_key() -> None:
    exc = ConfigError("town.yaml", "jobs.grocer.end", "too early", line=12)
    assert str(exc) == "town.yaml:12: jobs.grocer.end: too early"
    assert str(ConfigError("town.yaml", "", "file not found")) == "town.yaml: file not found"


def test_includes_resolve_relative_to_the_including_file(tmp_path: Path) -> None:
    sub = tmp_path / "configs" / "deep"
    sub.mkdir(parents=True)
    (tmp_path / "configs" / "shared.yaml").write_text(CORE_MANIFEST.read_text(encoding="utf-8"), encoding="utf-8")
    data = default_config_data()
    data["affordances"] = "configs/shared.yaml"  # found in a parent of the config's directory
    cfg_path = sub / "town.yaml"
    cfg_path.write_text(dump_yaml(data), encoding="utf-8")
    cfg = load_config(cfg_path)
    assert cfg.includes["affordances"].resolve() == (tmp_path / "configs" / "shared.yaml").resolve()
    assert cfg.world["affordances"] == load_yaml(CORE_MANIFEST)


def test_a_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: ")
    assert "directory" in str(info.value)


def test_seed_override_is_applied_and_validated() -> None:
    cfg = load_config(DEFAULT_CONFIG, seed=99)
    assert cfg.seed == 99
    assert cfg.world["seed"] == 99
    with pytest.raises(ConfigError) as info:
        load_config(DEFAULT_CONFIG, seed=-1)
    assert info.value.key == "seed"
    assert str(info.value).startswith(str(DEFAULT_CONFIG))

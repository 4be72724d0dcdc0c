//! Config errors: every malformed or inconsistent config is rejected with the key path of the
//! offending value and a message a person can act on.

use super::fixture::*;
use crate::config::ConfigError;
use crate::load::parse_world_config;
use serde_json::{json, Value};

fn error_of(v: &Value) -> ConfigError {
    match parse_world_config(&v.to_string()) {
        Ok(_) => panic!("config was accepted"),
        Err(e) => e,
    }
}

/// Apply `edit` to the base config and expect an error at `path` whose message contains `needle`.
#[track_caller]
fn expect_err(edit: impl FnOnce(&mut Value), path: &str, needle: &str) -> ConfigError {
    let mut v = base();
    edit(&mut v);
    let e = error_of(&v);
    assert_eq!(e.path, path, "wrong path for error: {e}");
    assert!(
        e.message.contains(needle),
        "message {:?} does not contain {needle:?}",
        e.message
    );
    assert!(
        !e.message.contains(" at line "),
        "serde's JSON position leaked into {:?}",
        e.message
    );
    e
}

#[test]
fn the_fixture_and_its_variants_are_valid() {
    parse_world_config(&base().to_string()).unwrap();
    parse_world_config(&lively().to_string()).unwrap();
}

#[test]
fn wrong_type_names_the_key_and_both_values() {
    let e = expect_err(
        |v| set(v, "/queue_fairness/cooldown_ticks", json!("ten")),
        "queue_fairness.cooldown_ticks",
        "",
    );
    assert_eq!(e.message, "expected integer >= 0, got \"ten\"");
    assert_eq!(
        e.to_string(),
        "queue_fairness.cooldown_ticks: expected integer >= 0, got \"ten\""
    );
    let e = expect_err(
        |v| set(v, "/queue_fairness/ghost_step_after", json!(-3)),
        "queue_fairness.ghost_step_after",
        "",
    );
    assert_eq!(e.message, "expected integer >= 0, got -3");
    let e = expect_err(
        |v| set(v, "/jobs/clerk/start", json!(1.5)),
        "jobs.clerk.start",
        "",
    );
    assert_eq!(e.message, "expected integer >= 0, got 1.5");
    let e = expect_err(
        |v| set(v, "/lifecycle/mortality", json!("yes")),
        "lifecycle.mortality",
        "",
    );
    assert_eq!(e.message, "expected true or false, got \"yes\"");
    let e = expect_err(
        |v| set(v, "/economy/prices/meal_cost", json!("cheap")),
        "economy.prices.meal_cost",
        "",
    );
    assert_eq!(e.message, "expected number, got \"cheap\"");
    expect_err(
        |v| set(v, "/world/objects/2/pos", json!("7,1")),
        "world.objects[2].pos",
        "got \"7,1\"",
    );
}

#[test]
fn unknown_keys_are_named_with_their_full_path_once() {
    let e = expect_err(
        |v| set(v, "/queue_fairness/cooldwn_ticks", json!(10)),
        "queue_fairness.cooldwn_ticks",
        "unknown key",
    );
    // The hint lists the keys that are allowed.
    assert!(e.message.contains("cooldown_ticks"), "{e}");
    expect_err(
        |v| set(v, "/world/objects/0/colour", json!("red")),
        "world.objects[0].colour",
        "unknown key",
    );
    expect_err(|v| set(v, "/wrld", json!({})), "wrld", "unknown key");
    expect_err(
        |v| {
            set(
                v,
                "/affordances/affordances/3/effects/sleepiness",
                json!(0.1),
            )
        },
        "affordances.affordances[3].effects.sleepiness",
        "unknown key",
    );
}

#[test]
fn missing_keys_are_named() {
    expect_err(
        |v| remove(v, "/world/layout"),
        "world.layout",
        "required key is missing",
    );
    expect_err(
        |v| remove(v, "/jobs/clerk/site"),
        "jobs.clerk.site",
        "required key is missing",
    );
    expect_err(
        |v| remove(v, "/config_id"),
        "config_id",
        "required key is missing",
    );
    expect_err(
        |v| remove(v, "/perturbations/events/blackout/duration"),
        "perturbations.events.blackout.duration",
        "required key is missing",
    );
}

#[test]
fn unknown_enum_values_are_named() {
    let e = expect_err(
        |v| set(v, "/affordances/affordances/1/requires", json!(["gas"])),
        "affordances.affordances[1].requires[0]",
        "unknown value \"gas\"",
    );
    assert!(e.message.contains("power"), "{e}");
    let mut v = base();
    set(
        &mut v,
        "/perturbations/events/spike/kind",
        json!("earthquake"),
    );
    let e = error_of(&v);
    assert!(
        e.path.starts_with("perturbations.events.spike"),
        "wrong path: {e}"
    );
    assert!(e.message.contains("earthquake"), "{e}");
}

#[test]
fn bad_references_name_the_reference() {
    let e = expect_err(
        |v| set(v, "/world/objects/1/type", json!("oven")),
        "world.objects[1].type",
        "unknown object type \"oven\"",
    );
    assert!(e.message.contains("stove"), "lists the known types: {e}");
    expect_err(
        |v| set(v, "/jobs/clerk/site", json!("stall_9")),
        "jobs.clerk.site",
        "unknown object \"stall_9\"",
    );
    let e = expect_err(
        |v| set(v, "/affordances/affordances/0/price", json!("meal_price")),
        "affordances.affordances[0].price",
        "unknown economy key \"meal_price\"",
    );
    assert!(e.message.contains("meal_cost"), "lists the known keys: {e}");
    let e = expect_err(
        |v| {
            set(
                v,
                "/perturbations/events/spike/targets",
                json!(["cafe", "bakery"]),
            )
        },
        "perturbations.events.spike.targets[1]",
        "unknown price target \"bakery\"",
    );
    assert!(e.message.contains("grocer"), "lists the groups: {e}");
    expect_err(
        |v| set(v, "/economy/groups/grocer/1", json!("bread_cost")),
        "economy.groups.grocer[1]",
        "unknown price key \"bread_cost\"",
    );
    let e = expect_err(
        |v| set(v, "/agents/0/script", json!(["wait", "use:fly", "move_n"])),
        "agents[0].script[1]",
        "unknown action \"use:fly\"",
    );
    assert!(e.message.contains("use:eat_meal"), "lists the actions: {e}");
    expect_err(
        |v| set(v, "/agents/2/job", json!("pilot")),
        "agents[2].job",
        "unknown job \"pilot\"",
    );
    expect_err(
        |v| {
            set(
                v,
                "/affordances/affordances/2/object",
                json!(["shower", "bath"]),
            )
        },
        "affordances.affordances[2].object",
        "unknown object type \"bath\"",
    );
    expect_err(
        |v| {
            set(
                v,
                "/affordances/affordances/1/produces_into",
                json!("pantry"),
            )
        },
        "affordances.affordances[1].produces_into",
        "unknown object type \"pantry\"",
    );
    expect_err(
        |v| set(v, "/perturbations/events/meet/location", json!("plaza")),
        "perturbations.events.meet.location",
        "\"plaza\"",
    );
    expect_err(
        |v| set(v, "/agents/1/personality", json!("grumpy")),
        "agents[1].personality",
        "unknown profile \"grumpy\"",
    );
    expect_err(
        |v| set(v, "/personalities/overrides", json!({"zed": "stoic"})),
        "personalities.overrides.zed",
        "no agent",
    );
    expect_err(
        |v| set(v, "/world/objects/3/stock", json!({"pies": 1})),
        "world.objects[3].stock.pies",
        "no stock \"pies\"",
    );
}

#[test]
fn layout_errors_name_the_row_or_position() {
    expect_err(
        |v| set(v, "/world/layout", json!("#####\n#...#\n#..#\n#####\n")),
        "world.layout",
        "row 3",
    );
    expect_err(
        |v| set(v, "/world/layout", json!("#####\n#.x.#\n#####\n")),
        "world.layout",
        "unknown tile",
    );
    expect_err(
        |v| set(v, "/world/layout", json!("\n\n")),
        "world.layout",
        "empty",
    );
    expect_err(
        |v| set(v, "/world/objects/0/pos", json!([0, 0])),
        "world.objects[0].pos",
        "is a wall",
    );
    expect_err(
        |v| set(v, "/world/objects/4/pos", json!([40, 2])),
        "world.objects[4].pos",
        "outside the 12x9 layout",
    );
    expect_err(
        |v| set(v, "/world/objects/1/pos", json!([2, 1])),
        "world.objects[1].pos",
        "already holds another object",
    );
    // A stove walled in by the corner and two fridges: nobody can reach it.
    expect_err(
        |v| {
            set(v, "/world/objects/1/pos", json!([1, 1]));
            set(v, "/world/objects/0/pos", json!([2, 1]));
            set(v, "/world/objects/3/pos", json!([1, 2]));
        },
        "world.objects[1].pos",
        "no walkable neighbour",
    );
    expect_err(
        |v| set(v, "/agents/1/home", json!([4, 4])),
        "agents[1].home",
        "not a walkable tile",
    );
    // An object tile is not walkable either.
    expect_err(
        |v| set(v, "/agents/0/pos", json!([2, 1])),
        "agents[0].pos",
        "not a walkable tile",
    );
}

#[test]
fn semantic_checks_name_the_key() {
    expect_err(
        |v| set(v, "/needs/initial/hunger", json!(1.5)),
        "needs.initial.hunger",
        "[0, 1]",
    );
    expect_err(
        |v| set(v, "/rewards/social/c1_min_need", json!(-0.1)),
        "rewards.social.c1_min_need",
        "[0, 1]",
    );
    expect_err(
        |v| set(v, "/jobs/clerk/end", json!(40)),
        "jobs.clerk.end",
        "start < end",
    );
    expect_err(
        |v| set(v, "/jobs/clerk/end", json!(TPD + 1)),
        "jobs.clerk.end",
        "ticks_per_day",
    );
    expect_err(
        |v| set(v, "/affordances/affordances/0/duration", json!(0)),
        "affordances.affordances[0].duration",
        "on_shift",
    );
    expect_err(
        |v| set(v, "/affordances/object_types/bed/capacity", json!(0)),
        "affordances.object_types.bed.capacity",
        ">= 1",
    );
    expect_err(
        |v| set(v, "/agents/3/id", json!("alice")),
        "agents[3].id",
        "duplicate agent id",
    );
    expect_err(
        |v| set(v, "/agents/3/id", json!("dan#2")),
        "agents[3].id",
        "invalid agent id",
    );
    expect_err(
        |v| set(v, "/perturbations/events/blackout/duration", json!([5, 2])),
        "perturbations.events.blackout.duration",
        "min <= max",
    );
    expect_err(
        |v| {
            set(
                v,
                "/perturbations/events/spike/magnitude",
                json!([0.0, 2.0]),
            )
        },
        "perturbations.events.spike.magnitude",
        "> 0",
    );
    expect_err(
        |v| set(v, "/identity/max_slots", json!(3)),
        "identity.max_slots",
        "one slot per agent",
    );
    expect_err(
        |v| set(v, "/conflict/avoid_threshold", json!(0.0)),
        "conflict.avoid_threshold",
        "(0, 1]",
    );
    expect_err(
        |v| set(v, "/world/ticks_per_day", json!(10)),
        "world.ticks_per_day",
        ">= 24",
    );
    expect_err(
        |v| set(v, "/behavior/sleep_window", json!([170, 200])),
        "behavior.sleep_window[1]",
        "< 200",
    );
    expect_err(
        |v| set(v, "/affordances/manifest_version", json!(2)),
        "affordances.manifest_version",
        "unsupported manifest version 2",
    );
    expect_err(
        |v| set(v, "/agents", json!([])),
        "agents",
        "at least one agent",
    );
}

#[test]
fn world_from_json_reports_config_errors_too() {
    let mut v = base();
    set(&mut v, "/queue_fairness/cooldown_ticks", json!("ten"));
    let e = crate::world::World::from_json(&v.to_string(), 0).unwrap_err();
    assert_eq!(e.path, "queue_fairness.cooldown_ticks");
    let e = crate::world::World::from_json("{not json", 0).unwrap_err();
    assert!(!e.message.is_empty());
}

#[test]
fn a_partial_needs_mapping_is_an_error_but_partial_effects_are_not() {
    expect_err(
        |v| set(v, "/needs", json!({"decay": {"hunger": 0.002}})),
        "needs.decay.hygiene",
        "required key is missing",
    );
    let mut v = base();
    set(
        &mut v,
        "/affordances/affordances/0/effects",
        json!({"hunger": 0.3}),
    );
    parse_world_config(&v.to_string()).expect("effects may name only the needs they change");
}

#[test]
fn time_of_day_defaults_follow_the_day_length() {
    let mut v = base();
    set(&mut v, "/world/ticks_per_day", json!(200));
    remove(&mut v, "/behavior/sleep_window");
    set(
        &mut v,
        "/economy/delivery",
        json!({"enabled": true, "object_type": "fridge", "stock": "meals", "amount": 2}),
    );
    let cfg = parse_world_config(&v.to_string()).expect("defaults scale to a 200-tick day");
    assert_eq!(cfg.sleep_window(), [183, 50]);
    assert_eq!(cfg.delivery_tick(), 50);
    set(&mut v, "/economy/delivery/stock", json!("mealz"));
    let e = error_of(&v);
    assert_eq!(e.path, "economy.delivery.stock");
}

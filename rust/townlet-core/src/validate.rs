//! Semantic validation of a parsed world config. Each check names the key path it refers to.

// Negated comparisons are deliberate here: they reject NaN as well as out-of-range values.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use crate::actions::{action_names, MAX_AFFORDANCES};
use crate::config::*;
use crate::grid::Grid;
use crate::personality::{profile_index, profile_names};
use std::collections::BTreeSet;

type R = Result<(), ConfigError>;

fn err(path: impl Into<String>, msg: impl Into<String>) -> R {
    Err(ConfigError::new(path, msg))
}

fn check_unit(path: &str, v: f32) -> R {
    if !(0.0..=1.0).contains(&v) || v.is_nan() {
        return err(path, format!("expected a number in [0, 1], got {v}"));
    }
    Ok(())
}

fn check_needs_unit(path: &str, n: &Needs) -> R {
    for (name, v) in NEED_NAMES.iter().zip(n.to_array()) {
        check_unit(&format!("{path}.{name}"), v)?;
    }
    Ok(())
}

fn check_nonneg(path: &str, v: f64) -> R {
    if !(v >= 0.0 && v.is_finite()) {
        return err(path, format!("expected a finite number >= 0, got {v}"));
    }
    Ok(())
}

fn check_range(path: &str, lo: f64, hi: f64) -> R {
    if !(lo <= hi) {
        return err(
            path,
            format!("expected [min, max] with min <= max, got [{lo}, {hi}]"),
        );
    }
    Ok(())
}

pub fn validate(cfg: &WorldConfig) -> R {
    if cfg.config_id.trim().is_empty() {
        return err("config_id", "must not be empty");
    }
    let tpd = cfg.world.ticks_per_day;
    if tpd < 24 {
        return err(
            "world.ticks_per_day",
            format!("expected an integer >= 24, got {tpd}"),
        );
    }
    validate_manifest(cfg)?;

    // Grid and objects.
    let mut grid =
        Grid::parse(&cfg.world.layout).map_err(|m| ConfigError::new("world.layout", m))?;
    let mut object_ids = BTreeSet::new();
    for (i, o) in cfg.world.objects.iter().enumerate() {
        let p = format!("world.objects[{i}]");
        if !object_ids.insert(o.id.as_str()) {
            return err(
                format!("{p}.id"),
                format!("duplicate object id \"{}\"", o.id),
            );
        }
        let Some(t) = cfg.affordances.object_types.get(&o.object_type) else {
            return err(
                format!("{p}.type"),
                format!(
                    "unknown object type \"{}\" (manifest defines: {})",
                    o.object_type,
                    join(cfg.affordances.object_types.keys())
                ),
            );
        };
        grid.place_object(i, o.pos[0], o.pos[1])
            .map_err(|m| ConfigError::new(format!("{p}.pos"), m))?;
        for key in o.stock.keys() {
            if !t.stock.contains_key(key)
                && !t.max_stock.contains_key(key)
                && !stock_used(cfg, &o.object_type, key)
            {
                return err(
                    format!("{p}.stock.{key}"),
                    format!("object type \"{}\" has no stock \"{key}\"", o.object_type),
                );
            }
        }
    }
    for (i, o) in cfg.world.objects.iter().enumerate() {
        if grid.neighbours(o.pos[0], o.pos[1]).next().is_none() {
            return err(
                format!("world.objects[{i}].pos"),
                format!(
                    "object \"{}\" has no walkable neighbour tile, so nobody can use it",
                    o.id
                ),
            );
        }
    }

    // Agents.
    if cfg.agents.is_empty() {
        return err("agents", "at least one agent is required");
    }
    if cfg.agents.len() > 256 {
        return err(
            "agents",
            format!("at most 256 agents per town, got {}", cfg.agents.len()),
        );
    }
    let names = action_names(cfg);
    let mut agent_ids = BTreeSet::new();
    for (i, a) in cfg.agents.iter().enumerate() {
        let p = format!("agents[{i}]");
        if a.id.is_empty() || a.id.contains('#') || a.id.chars().any(char::is_whitespace) {
            return err(
                format!("{p}.id"),
                format!("invalid agent id {:?} (no spaces or '#')", a.id),
            );
        }
        if !agent_ids.insert(a.id.as_str()) {
            return err(
                format!("{p}.id"),
                format!("duplicate agent id \"{}\"", a.id),
            );
        }
        if !grid.walkable(a.home[0], a.home[1]) {
            return err(
                format!("{p}.home"),
                format!("[{}, {}] is not a walkable tile", a.home[0], a.home[1]),
            );
        }
        if let Some(pos) = a.pos {
            if !grid.walkable(pos[0], pos[1]) {
                return err(
                    format!("{p}.pos"),
                    format!("[{}, {}] is not a walkable tile", pos[0], pos[1]),
                );
            }
        }
        if let Some(name) = &a.personality {
            if profile_index(name).is_none() {
                return err(
                    format!("{p}.personality"),
                    format!(
                        "unknown profile \"{name}\" (known: {})",
                        profile_names().join(", ")
                    ),
                );
            }
        }
        if let Some(job) = &a.job {
            if !cfg.jobs.contains_key(job) {
                return err(
                    format!("{p}.job"),
                    format!("unknown job \"{job}\" (jobs: {})", join(cfg.jobs.keys())),
                );
            }
        }
        if let Some(n) = &a.needs {
            check_needs_unit(&format!("{p}.needs"), n)?;
        }
        if let Some(w) = a.wallet {
            if !w.is_finite() {
                return err(format!("{p}.wallet"), "expected a finite number");
            }
        }
        for (k, s) in a.script.iter().enumerate() {
            if !names.iter().any(|n| n == s) {
                return err(
                    format!("{p}.script[{k}]"),
                    format!("unknown action \"{s}\" (actions: {})", names.join(", ")),
                );
            }
        }
    }

    // Personalities.
    let mut weight_sum = 0.0;
    for (name, w) in &cfg.personalities.distribution {
        if profile_index(name).is_none() {
            return err(
                format!("personalities.distribution.{name}"),
                format!("unknown profile (known: {})", profile_names().join(", ")),
            );
        }
        check_nonneg(&format!("personalities.distribution.{name}"), *w)?;
        weight_sum += w;
    }
    if weight_sum <= 0.0 {
        return err(
            "personalities.distribution",
            "weights must sum to more than 0",
        );
    }
    for (agent, prof) in &cfg.personalities.overrides {
        if !agent_ids.contains(agent.as_str()) {
            return err(
                format!("personalities.overrides.{agent}"),
                "no agent has this id",
            );
        }
        if profile_index(prof).is_none() {
            return err(
                format!("personalities.overrides.{agent}"),
                format!(
                    "unknown profile \"{prof}\" (known: {})",
                    profile_names().join(", ")
                ),
            );
        }
    }

    // Needs.
    for (name, v) in NEED_NAMES.iter().zip(cfg.needs.decay.to_array()) {
        if !(0.0..=0.1).contains(&v) {
            return err(
                format!("needs.decay.{name}"),
                format!("expected a number in [0, 0.1], got {v}"),
            );
        }
    }
    check_needs_unit("needs.initial", &cfg.needs.initial)?;
    check_unit("needs.faint_threshold", cfg.needs.faint_threshold)?;
    if cfg.needs.faint_window_ticks == 0 {
        return err(
            "needs.faint_window_ticks",
            "expected an integer >= 1, got 0",
        );
    }

    // Economy.
    for (k, v) in &cfg.economy.prices {
        check_nonneg(&format!("economy.prices.{k}"), *v)?;
    }
    for (g, keys) in &cfg.economy.groups {
        if cfg.economy.prices.contains_key(g) {
            return err(
                format!("economy.groups.{g}"),
                "a group may not share its name with a price key",
            );
        }
        for (i, k) in keys.iter().enumerate() {
            if !cfg.economy.prices.contains_key(k) {
                return err(
                    format!("economy.groups.{g}[{i}]"),
                    format!(
                        "unknown price key \"{k}\" (keys: {})",
                        join(cfg.economy.prices.keys())
                    ),
                );
            }
        }
    }
    check_nonneg("economy.starting_wallet", cfg.economy.starting_wallet)?;
    let d = &cfg.economy.delivery;
    if d.enabled {
        if !cfg.affordances.object_types.contains_key(&d.object_type) {
            return err(
                "economy.delivery.object_type",
                format!("unknown object type \"{}\"", d.object_type),
            );
        }
        if cfg.delivery_tick() >= tpd {
            return err(
                "economy.delivery.tick_of_day",
                format!(
                    "expected an integer < ticks_per_day ({tpd}), got {}",
                    cfg.delivery_tick()
                ),
            );
        }
        let t = &cfg.affordances.object_types[&d.object_type];
        if !t.stock.contains_key(&d.stock)
            && !t.max_stock.contains_key(&d.stock)
            && !stock_used(cfg, &d.object_type, &d.stock)
        {
            return err(
                "economy.delivery.stock",
                format!(
                    "object type \"{}\" has no stock \"{}\"",
                    d.object_type, d.stock
                ),
            );
        }
    }
    for (i, a) in cfg.affordances.affordances.iter().enumerate() {
        if let Some(key) = &a.price {
            if !cfg.economy.prices.contains_key(key) {
                return err(
                    format!("affordances.affordances[{i}].price"),
                    format!(
                        "unknown economy key \"{key}\" (keys: {})",
                        join(cfg.economy.prices.keys())
                    ),
                );
            }
        }
    }

    // Jobs.
    for (name, j) in &cfg.jobs {
        let p = format!("jobs.{name}");
        if !object_ids.contains(j.site.as_str()) {
            return err(
                format!("{p}.site"),
                format!("unknown object \"{}\"", j.site),
            );
        }
        if j.start >= j.end || j.end > tpd {
            return err(
                format!("{p}.end"),
                format!(
                    "expected start < end <= ticks_per_day ({tpd}), got start {} end {}",
                    j.start, j.end
                ),
            );
        }
        check_nonneg(&format!("{p}.wage_rate"), j.wage_rate)?;
        check_nonneg(&format!("{p}.lateness_penalty"), j.lateness_penalty)?;
    }
    let e = &cfg.employment;
    if e.attendance_window == 0 {
        return err(
            "employment.attendance_window",
            "expected an integer >= 1, got 0",
        );
    }
    if e.exit_review_window == 0 {
        return err(
            "employment.exit_review_window",
            "expected an integer >= 1, got 0",
        );
    }
    check_nonneg("employment.late_tick_penalty", e.late_tick_penalty)?;
    check_nonneg("employment.absence_penalty", e.absence_penalty)?;

    // Queues, conflict, relationships.
    if cfg.queue_fairness.ghost_step_after == 0 {
        return err(
            "queue_fairness.ghost_step_after",
            "expected an integer >= 1, got 0",
        );
    }
    if !(cfg.queue_fairness.age_priority_weight >= 0.0) {
        return err(
            "queue_fairness.age_priority_weight",
            "expected a number >= 0",
        );
    }
    let c = &cfg.conflict;
    if !(c.intensity_min > 0.0 && c.intensity_min <= c.intensity_max) {
        return err(
            "conflict.intensity_max",
            format!(
                "expected 0 < intensity_min <= intensity_max, got {} and {}",
                c.intensity_min, c.intensity_max
            ),
        );
    }
    if !(c.avoid_threshold > 0.0 && c.avoid_threshold <= 1.0) {
        return err(
            "conflict.avoid_threshold",
            format!("expected a number in (0, 1], got {}", c.avoid_threshold),
        );
    }
    for (name, v) in [
        ("increment_per_conflict", c.increment_per_conflict),
        ("ghost_step_boost", c.ghost_step_boost),
        ("wait_boost", c.wait_boost),
        ("queue_length_boost", c.queue_length_boost),
    ] {
        if !(v >= 0.0) {
            return err(
                format!("conflict.{name}"),
                format!("expected a number >= 0, got {v}"),
            );
        }
    }
    let r = &cfg.relationships;
    if r.max_edges == 0 {
        return err("relationships.max_edges", "expected an integer >= 1, got 0");
    }
    for (name, v) in [
        ("trust", r.decay.trust),
        ("familiarity", r.decay.familiarity),
        ("rivalry", r.decay.rivalry),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return err(
                format!("relationships.decay.{name}"),
                format!("expected a number in [0, 1], got {v}"),
            );
        }
    }
    check_unit("relationships.eviction_threshold", r.eviction_threshold)?;

    // Perturbations.
    let pz = &cfg.perturbations;
    if pz.window_ticks == 0 {
        return err(
            "perturbations.window_ticks",
            "expected an integer >= 1, got 0",
        );
    }
    for (name, spec) in &pz.events {
        let p = format!("perturbations.events.{name}");
        let s = spec.schedule();
        if !(s.prob_per_day >= 0.0 && s.prob_per_day <= f64::from(tpd)) {
            return err(
                format!("{p}.prob_per_day"),
                format!(
                    "expected a number in [0, ticks_per_day], got {}",
                    s.prob_per_day
                ),
            );
        }
        if s.duration[0] == 0 || s.duration[0] > s.duration[1] {
            return err(
                format!("{p}.duration"),
                format!(
                    "expected [min, max] with 1 <= min <= max, got [{}, {}]",
                    s.duration[0], s.duration[1]
                ),
            );
        }
        match spec {
            PerturbationSpec::PriceSpike {
                magnitude, targets, ..
            } => {
                check_range(&format!("{p}.magnitude"), magnitude[0], magnitude[1])?;
                if magnitude[0] <= 0.0 {
                    return err(format!("{p}.magnitude"), "magnitudes must be > 0");
                }
                for (i, t) in targets.iter().enumerate() {
                    if t != "global"
                        && !cfg.economy.prices.contains_key(t)
                        && !cfg.economy.groups.contains_key(t)
                    {
                        return err(
                            format!("{p}.targets[{i}]"),
                            format!("unknown price target \"{t}\" (price keys: {}; groups: {}; or global)", join(cfg.economy.prices.keys()), join(cfg.economy.groups.keys())),
                        );
                    }
                }
            }
            PerturbationSpec::ArrangedMeet {
                location,
                max_participants,
                ..
            } => {
                if !object_ids.contains(location.as_str())
                    && !cfg.world.objects.iter().any(|o| &o.object_type == location)
                {
                    return err(
                        format!("{p}.location"),
                        format!("no object or object type \"{location}\" in the world"),
                    );
                }
                if *max_participants < 2 {
                    return err(
                        format!("{p}.max_participants"),
                        format!("expected an integer >= 2, got {max_participants}"),
                    );
                }
            }
            PerturbationSpec::Blackout { .. } | PerturbationSpec::Outage { .. } => {}
        }
    }

    for (i, t) in cfg.scenario.timeline.iter().enumerate() {
        let p = format!("scenario.timeline[{i}]");
        if !pz.events.contains_key(&t.perturbation) {
            return err(
                format!("{p}.perturbation"),
                format!(
                    "unknown perturbation \"{}\" (perturbations.events: {})",
                    t.perturbation,
                    join(pz.events.keys())
                ),
            );
        }
        if t.duration == Some(0) {
            return err(format!("{p}.duration"), "expected an integer >= 1, got 0");
        }
        if let Some(m) = t.magnitude {
            if !(m > 0.0 && m.is_finite()) {
                return err(
                    format!("{p}.magnitude"),
                    format!("expected a finite number > 0, got {m}"),
                );
            }
        }
    }

    // Lifecycle, identity, behaviour, actions.
    check_needs_unit("lifecycle.respawn_needs", &cfg.lifecycle.respawn_needs)?;
    if !cfg.lifecycle.respawn_wallet.is_finite() {
        return err("lifecycle.respawn_wallet", "expected a finite number");
    }
    if (cfg.identity.max_slots as usize) < cfg.agents.len() {
        return err(
            "identity.max_slots",
            format!(
                "expected at least one slot per agent ({}), got {}",
                cfg.agents.len(),
                cfg.identity.max_slots
            ),
        );
    }
    check_needs_unit("behavior.thresholds", &cfg.behavior.thresholds)?;
    check_unit("behavior.critical", cfg.behavior.critical)?;
    check_unit("behavior.chat_propensity", cfg.behavior.chat_propensity)?;
    for (i, t) in cfg.sleep_window().iter().enumerate() {
        if *t >= tpd {
            return err(
                format!("behavior.sleep_window[{i}]"),
                format!("expected a tick of day < {tpd}, got {t}"),
            );
        }
    }
    if !(cfg.behavior.temperature >= 0.0 && cfg.behavior.temperature.is_finite()) {
        return err(
            "behavior.temperature",
            format!(
                "expected a finite number >= 0, got {}",
                cfg.behavior.temperature
            ),
        );
    }
    let rw = &cfg.rewards;
    check_unit("rewards.social.c1_min_need", rw.social.c1_min_need)?;
    for (name, v) in NEED_NAMES.iter().zip(rw.needs_weights.to_array()) {
        if !(0.0..=10.0).contains(&v) {
            return err(
                format!("rewards.needs_weights.{name}"),
                format!("expected a number in [0, 10], got {v}"),
            );
        }
    }
    for (name, v) in [
        ("survival_tick", rw.survival_tick),
        ("self_sufficiency_bonus", rw.self_sufficiency_bonus),
        ("wage_weight", rw.wage_weight),
        ("punctuality_bonus", rw.punctuality_bonus),
        ("social.c1_chat_base", rw.social.c1_chat_base),
        ("social.c2_avoid_conflict", rw.social.c2_avoid_conflict),
    ] {
        if !(v >= 0.0 && v.is_finite()) {
            return err(
                format!("rewards.{name}"),
                format!("expected a finite number >= 0, got {v}"),
            );
        }
    }
    for (name, v) in [
        ("faint_penalty", rw.faint_penalty),
        ("eviction_penalty", rw.eviction_penalty),
    ] {
        if !(v <= 0.0 && v.is_finite()) {
            return err(
                format!("rewards.{name}"),
                format!("expected a finite number <= 0, got {v}"),
            );
        }
    }
    if !(rw.clip_per_tick > 0.0 && rw.clip_per_tick.is_finite()) {
        return err(
            "rewards.clip_per_tick",
            format!("expected a finite number > 0, got {}", rw.clip_per_tick),
        );
    }
    if !(rw.clip_per_episode >= rw.clip_per_tick && rw.clip_per_episode.is_finite()) {
        return err(
            "rewards.clip_per_episode",
            format!(
                "expected a finite number >= clip_per_tick, got {}",
                rw.clip_per_episode
            ),
        );
    }
    if cfg.actions.chat_slots > 8 {
        return err(
            "actions.chat_slots",
            format!("expected an integer <= 8, got {}", cfg.actions.chat_slots),
        );
    }
    if cfg.actions.chat_range == 0 {
        return err("actions.chat_range", "expected an integer >= 1, got 0");
    }
    if let Some(w) = cfg.observations.window {
        if !(3..=31).contains(&w) || w % 2 == 0 {
            return err(
                "observations.window",
                format!("expected an odd integer in [3, 31], got {w}"),
            );
        }
    }
    if cfg.observations.glimpse_every == 0 {
        return err(
            "observations.glimpse_every",
            "expected an integer >= 1, got 0",
        );
    }
    Ok(())
}

fn stock_used(cfg: &WorldConfig, object_type: &str, key: &str) -> bool {
    cfg.affordances.affordances.iter().any(|a| {
        let types = a.object.to_vec();
        (types.iter().any(|t| t == object_type)
            && (a.consumes.contains_key(key) || a.produces.contains_key(key)))
            || (a.produces_into.as_deref() == Some(object_type) && a.produces.contains_key(key))
    })
}

fn validate_manifest(cfg: &WorldConfig) -> R {
    let m = &cfg.affordances;
    if m.manifest_version != 1 {
        return err(
            "affordances.manifest_version",
            format!(
                "unsupported manifest version {} (this build reads version 1)",
                m.manifest_version
            ),
        );
    }
    for (name, t) in &m.object_types {
        if t.capacity == 0 {
            return err(
                format!("affordances.object_types.{name}.capacity"),
                "expected an integer >= 1, got 0",
            );
        }
    }
    if m.affordances.is_empty() {
        return err(
            "affordances.affordances",
            "at least one affordance is required",
        );
    }
    if m.affordances.len() > MAX_AFFORDANCES {
        return err(
            "affordances.affordances",
            format!(
                "at most {} affordances, got {}",
                MAX_AFFORDANCES,
                m.affordances.len()
            ),
        );
    }
    let mut ids = BTreeSet::new();
    for (i, a) in m.affordances.iter().enumerate() {
        let p = format!("affordances.affordances[{i}]");
        if a.id.is_empty() || a.id.contains(':') || a.id.chars().any(char::is_whitespace) {
            return err(
                format!("{p}.id"),
                format!("invalid affordance id {:?}", a.id),
            );
        }
        if !ids.insert(a.id.as_str()) {
            return err(
                format!("{p}.id"),
                format!("duplicate affordance id \"{}\"", a.id),
            );
        }
        let types = a.object.to_vec();
        if types.is_empty() {
            return err(
                format!("{p}.object"),
                "at least one object type is required",
            );
        }
        for t in &types {
            if !m.object_types.contains_key(t) {
                return err(
                    format!("{p}.object"),
                    format!(
                        "unknown object type \"{t}\" (manifest defines: {})",
                        join(m.object_types.keys())
                    ),
                );
            }
        }
        if a.duration == 0 && !a.requires.contains(&Requirement::OnShift) {
            return err(format!("{p}.duration"), "duration 0 (continuous) is only allowed with `requires: [on_shift]`, which ends it");
        }
        for (name, v) in NEED_NAMES.iter().zip(a.effects.to_array()) {
            if !(-1.0..=1.0).contains(&v) {
                return err(
                    format!("{p}.effects.{name}"),
                    format!("expected a number in [-1, 1], got {v}"),
                );
            }
        }
        if let Some(t) = &a.produces_into {
            if !m.object_types.contains_key(t) {
                return err(
                    format!("{p}.produces_into"),
                    format!("unknown object type \"{t}\""),
                );
            }
        }
        if a.produces_into.is_some() && a.produces.is_empty() {
            return err(format!("{p}.produces_into"), "set without `produces`");
        }
    }
    Ok(())
}

fn join<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

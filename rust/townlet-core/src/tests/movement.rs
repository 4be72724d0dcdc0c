//! Movement and action masks: walls block moves, `use:` is masked exactly when no object can be
//! used, release only inside a queue, wait always, dead agents only wait.

use super::fixture::*;
use crate::events::EventKind;
use crate::state::Phase;
use serde_json::json;

#[test]
fn moves_step_one_tile_and_walls_block() {
    let mut w = town();
    let a = agent(&w, "alice");
    // From (2, 2): north is the fridge, the rest is floor.
    assert!(!valid(&w, a, "move_n"));
    assert!(valid(&w, a, "move_e") && valid(&w, a, "move_s") && valid(&w, a, "move_w"));
    step(&mut w, &[("alice", "move_e")]);
    assert_eq!(w.state.agents[a].pos, [3, 2]);
    assert!(w.state.agents[a].last_action_ok);

    // (4, 3) sits above the wall row; (5, 3) above the door.
    w.state.agents[a].pos = [4, 3];
    assert!(!valid(&w, a, "move_s"));
    let invalid_before = w.state.stats.invalid_actions;
    step(&mut w, &[("alice", "move_s")]);
    assert_eq!(w.state.agents[a].pos, [4, 3], "a wall does not move aside");
    assert!(!w.state.agents[a].last_action_ok);
    assert!(w.state.agents[a].flags.invalid_action);
    assert_eq!(w.state.stats.invalid_actions, invalid_before + 1);

    w.state.agents[a].pos = [5, 3];
    assert!(valid(&w, a, "move_s"));
    steps(&mut w, 2, &[("alice", "move_s")]);
    assert_eq!(
        w.state.agents[a].pos,
        [5, 5],
        "through the door, one tile per tick"
    );

    // The outer wall.
    w.state.agents[a].pos = [1, 1];
    assert!(!valid(&w, a, "move_n") && !valid(&w, a, "move_w"));
    step(&mut w, &[("alice", "move_w")]);
    assert_eq!(w.state.agents[a].pos, [1, 1]);
}

#[test]
fn wait_is_always_valid_and_release_only_in_a_queue() {
    let mut w = town();
    let a = agent(&w, "alice");
    for i in 0..w.n_agents() {
        assert!(valid(&w, i, "wait"));
        assert!(
            !valid(&w, i, "release"),
            "idle agents have nothing to release"
        );
    }
    step(&mut w, &[("alice", "release")]);
    assert!(
        !w.state.agents[a].last_action_ok,
        "release while idle is invalid"
    );

    // Running: release is valid and ends the affordance.
    step(&mut w, &[("alice", "use:eat_meal")]);
    assert_eq!(w.state.agents[a].activity.phase, Phase::Running);
    assert!(valid(&w, a, "release"));
    assert!(valid(&w, a, "wait"));
    step(&mut w, &[("alice", "release")]);
    assert!(w.state.agents[a].last_action_ok);
    assert!(w.state.agents[a].activity.is_idle());
    assert!(w.state.objects[obj(&w, "fridge_1")].holders.is_empty());

    // Walking towards an object: not (yet) in a queue, so release is masked.
    let c = agent(&w, "cara");
    step(&mut w, &[("cara", "use:use_shower")]);
    assert_eq!(w.state.agents[c].activity.phase, Phase::Walking);
    assert!(!valid(&w, c, "release"));
    // Applying it anyway stops the walk (like any other action) but counts as invalid, as masked.
    step(&mut w, &[("cara", "release")]);
    assert!(w.state.agents[c].activity.is_idle());
    assert!(!w.state.agents[c].last_action_ok);

    // Waiting in a queue: release is valid.
    let b = agent(&w, "bob");
    w.state.agents[b].pos = [3, 1];
    set_stock(&mut w, "fridge_1", "meals", 4);
    step(&mut w, &[("alice", "use:eat_meal")]);
    step(
        &mut w,
        &[("alice", "use:eat_meal"), ("bob", "use:eat_meal")],
    );
    // bob is next to fridge_1 and waits there (fridge_2 would be 7 steps away).
    assert_eq!(w.state.agents[b].activity.phase, Phase::Waiting);
    assert!(valid(&w, b, "release"));
}

#[test]
fn use_is_masked_without_a_usable_object() {
    let mut w = town();
    let a = agent(&w, "alice");
    for name in [
        "eat_meal",
        "cook_meal",
        "use_shower",
        "rest_sleep",
        "eat_cafe",
    ] {
        assert!(
            valid(&w, a, &format!("use:{name}")),
            "{name} usable at start"
        );
    }
    // Outside the shift window work is masked, and always for an agent without a job.
    assert!(!valid(&w, a, "use:work_shift"));

    // Utilities out.
    w.perturbation_trigger("blackout", 0, Some(5), None)
        .unwrap();
    w.perturbation_trigger("outage", 0, Some(5), None).unwrap();
    step(&mut w, &[]);
    assert!(w.state.power_out > 0 && w.state.water_out > 0);
    assert!(!valid(&w, a, "use:cook_meal"));
    assert!(!valid(&w, a, "use:eat_cafe"));
    assert!(!valid(&w, a, "use:use_shower"));
    assert!(valid(&w, a, "use:eat_meal"), "the fridge needs no power");
    step(&mut w, &[("alice", "use:use_shower")]);
    assert!(!w.state.agents[a].last_action_ok);
    idle(&mut w, 5);
    assert!(valid(&w, a, "use:cook_meal") && valid(&w, a, "use:use_shower"));

    // No stock anywhere.
    set_stock(&mut w, "fridge_1", "meals", 0);
    set_stock(&mut w, "fridge_2", "meals", 0);
    assert!(!valid(&w, a, "use:eat_meal"));
    step(&mut w, &[("alice", "use:eat_meal")]);
    assert!(!w.state.agents[a].last_action_ok);
    set_stock(&mut w, "fridge_2", "meals", 1);
    assert!(
        valid(&w, a, "use:eat_meal"),
        "the far fridge still has a meal"
    );

    // Both fridges full: cooking has nowhere to put its meals.
    set_stock(&mut w, "fridge_1", "meals", 4);
    set_stock(&mut w, "fridge_2", "meals", 2);
    assert!(!valid(&w, a, "use:cook_meal"));
    set_stock(&mut w, "fridge_2", "meals", 1);
    assert!(valid(&w, a, "use:cook_meal"));

    // No money.
    w.state.agents[a].wallet = 0.25;
    assert!(!valid(&w, a, "use:eat_meal"), "meal costs 0.3");
    assert!(valid(&w, a, "use:rest_sleep"), "sleep is free");
    w.state.agents[a].wallet = 0.3;
    assert!(valid(&w, a, "use:eat_meal"), "exactly enough is enough");
}

#[test]
fn use_is_masked_while_every_object_is_on_cooldown() {
    let mut w = town();
    let a = agent(&w, "alice");
    set_stock(&mut w, "fridge_1", "meals", 2);
    set_stock(&mut w, "fridge_2", "meals", 0);
    steps(&mut w, 4, &[("alice", "use:eat_meal")]);
    assert_eq!(total(&w, EventKind::AffordanceFinish), 1);
    // Finished at tick 3: fridge_1 is on cooldown for 10 ticks and fridge_2 is empty.
    let until = 3 + 10;
    while w.tick() < until {
        assert!(!valid(&w, a, "use:eat_meal"), "tick {}", w.tick());
        step(&mut w, &[]);
    }
    assert!(valid(&w, a, "use:eat_meal"));
    // Another agent is not affected by alice's cooldown.
    let b = agent(&w, "bob");
    assert!(valid(&w, b, "use:eat_meal"));
}

#[test]
fn unreachable_objects_are_masked() {
    let mut v = base();
    // Close the door: the lower room (beds, counter, stall) is cut off from the upper one.
    set(
        &mut v,
        "/world/layout",
        json!(LAYOUT.replace("#####.######", "############")),
    );
    let w = world(&v);
    let a = agent(&w, "alice");
    assert!(!valid(&w, a, "use:rest_sleep"));
    assert!(!valid(&w, a, "use:eat_cafe"));
    assert!(valid(&w, a, "use:eat_meal"));
    let c = agent(&w, "cara");
    assert!(valid(&w, c, "use:rest_sleep"));
    assert!(!valid(&w, c, "use:eat_meal"));
}

#[test]
fn chat_slots_are_filled_nearest_first() {
    let mut w = town();
    let (a, b, c, d) = (
        agent(&w, "alice"),
        agent(&w, "bob"),
        agent(&w, "cara"),
        agent(&w, "dan"),
    );
    // alice (2,2); bob (3,2) is 1 away; cara and dan are in the other room.
    assert!(valid(&w, a, "chat:0"));
    assert!(!valid(&w, a, "chat:1"));
    w.state.agents[c].pos = [4, 3]; // Chebyshev 2 from alice
    w.state.agents[d].pos = [1, 1]; // Chebyshev 1 from alice
    let mut partners = Vec::new();
    w.chat_partners(a, &mut partners);
    assert_eq!(partners, vec![b, d, c], "nearest first, then by slot");
    assert!(valid(&w, a, "chat:2"));
    // After speaking, chat is masked for chat_cooldown_ticks (5).
    step(&mut w, &[("alice", "chat:1")]);
    assert!(w.state.agents[a].last_action_ok);
    assert_eq!(
        total(&w, EventKind::ChatSuccess) + total(&w, EventKind::ChatFailure),
        1
    );
    for _ in 0..4 {
        assert!(!valid(&w, a, "chat:0"));
        step(&mut w, &[]);
    }
    assert!(valid(&w, a, "chat:0"));
    // An empty slot is invalid.
    w.state.agents[c].pos = [8, 5];
    w.state.agents[d].pos = [8, 6];
    step(&mut w, &[("alice", "chat:2")]);
    assert!(!w.state.agents[a].last_action_ok);
}

#[test]
fn dead_agents_may_only_wait() {
    let mut w = town();
    let a = agent(&w, "alice");
    assert!(w.kill(a));
    step(&mut w, &[]);
    assert!(!w.state.agents[a].alive);
    let m = mask(&w, a);
    assert!(m[0]);
    assert_eq!(m.iter().filter(|&&x| x).count(), 1, "only wait");
    // Whatever a dead agent is given is ignored; the living cannot chat with it.
    let pos = w.state.agents[a].pos;
    step(&mut w, &[("alice", "move_e")]);
    assert_eq!(w.state.agents[a].pos, pos);
    let b = agent(&w, "bob");
    assert!(!valid(&w, b, "chat:0"), "alice was bob's only neighbour");
}

#[test]
fn a_valid_action_of_a_lone_actor_always_succeeds() {
    // With only one agent acting, nothing can change between its mask and its action, so the mask
    // must agree exactly with what applying the action does.
    let mut w = world(&lively());
    let mut rng = TestRng::new(3);
    let a = agent(&w, "bob");
    for _ in 0..600 {
        let m = mask(&w, a);
        let valid_actions: Vec<usize> = (0..m.len()).filter(|&x| m[x]).collect();
        let pick = if w.state.agents[a].activity.is_idle() || rng.below(4) == 0 {
            valid_actions[rng.below(valid_actions.len())]
        } else {
            // Mostly continue the current option so that affordances complete.
            w.statics
                .use_action(w.state.agents[a].activity.affordance as usize)
        };
        assert!(m[pick]);
        let mut acts = vec![0u16; w.n_agents()];
        acts[a] = pick as u16;
        let alive = w.state.agents[a].alive;
        // Perturbations start before actions apply; skip ticks where the scheduler may act.
        w.step(crate::world::Actions::Given(&acts));
        if alive && w.state.agents[a].alive && tick_count(&w, EventKind::PerturbationStarted) == 0 {
            assert!(
                w.state.agents[a].last_action_ok,
                "valid action {} failed at tick {}",
                w.statics.action_names[pick],
                w.tick() - 1
            );
        }
    }
}

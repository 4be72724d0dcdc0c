//! The observation options: the map's window (`observations.window`) and glimpses
//! (`observations.glimpse_every`: between glimpses an agent sees zeros but `ctx_reset`).

use super::fixture::*;
use crate::obs::ObsLayout;
use crate::world::World;
use serde_json::json;

/// Agent `i`'s observation now: (map, features, mask).
fn observe(w: &World, layout: &ObsLayout, i: usize) -> (Vec<f32>, Vec<f32>, Vec<bool>) {
    let mut map = vec![0.0; layout.map_len()];
    let mut feats = vec![0.0; layout.n_features()];
    let mut mask = vec![false; w.statics.n_actions()];
    w.write_observation(layout, i, &mut map, &mut feats, &mut mask);
    (map, feats, mask)
}

#[test]
fn the_window_option_sets_the_map_side_and_is_checked() {
    let mut v = base();
    set(&mut v, "/observations", json!({"window": 5}));
    let w = world(&v);
    let layout = ObsLayout::build(&w.statics);
    assert_eq!(layout.map_shape(), [4, 5, 5]);
    let default = ObsLayout::build(&town().statics);
    assert_eq!(default.map_shape(), [4, 11, 11]);
    assert_eq!(layout.feature_names, default.feature_names);
    for bad in [4, 1, 33] {
        set(&mut v, "/observations/window", json!(bad));
        let e = crate::load::parse_world_config(&v.to_string()).unwrap_err();
        assert_eq!(e.path, "observations.window");
        assert!(
            e.message.contains("odd integer in [3, 31]"),
            "{}",
            e.message
        );
    }
}

#[test]
fn between_glimpses_an_agent_sees_zeros_but_ctx_reset_and_its_whole_mask() {
    let mut v = base();
    set(&mut v, "/observations", json!({"glimpse_every": 3}));
    let mut w = world(&v);
    let mut every = town();
    let layout = ObsLayout::build(&w.statics);
    let full = ObsLayout::build(&every.statics);
    assert_eq!(layout.glimpse_every, 3);
    assert_eq!(full.glimpse_every, 1);
    let a = agent(&w, "alice");
    let ctx = layout
        .feature_names
        .iter()
        .position(|n| n == "ctx_reset")
        .unwrap();
    let (mut glimpses, mut blind) = (0, 0);
    for _ in 0..12 {
        let tick = w.state.tick;
        let (map, feats, mask) = observe(&w, &layout, a);
        let (map_full, feats_full, mask_full) = observe(&every, &full, a);
        assert_eq!(mask, mask_full, "the mask is the whole mask at tick {tick}");
        if tick.is_multiple_of(3) {
            assert_eq!(
                (&map, &feats),
                (&map_full, &feats_full),
                "a glimpse at tick {tick}"
            );
            glimpses += 1;
        } else {
            assert!(map.iter().all(|&x| x == 0.0), "tick {tick}");
            for (k, &x) in feats.iter().enumerate() {
                assert_eq!(
                    x,
                    if k == ctx { feats_full[ctx] } else { 0.0 },
                    "feature {k} at tick {tick}"
                );
            }
            assert!(feats_full.iter().any(|&x| x != 0.0));
            blind += 1;
        }
        idle(&mut w, 1);
        idle(&mut every, 1);
    }
    assert_eq!((glimpses, blind), (4, 8));
    set(&mut v, "/observations/glimpse_every", json!(0));
    let e = crate::load::parse_world_config(&v.to_string()).unwrap_err();
    assert_eq!(e.path, "observations.glimpse_every");
}

#[test]
fn ctx_reset_is_seen_between_glimpses() {
    let mut v = base();
    set(&mut v, "/observations", json!({"glimpse_every": 4}));
    let mut w = world(&v);
    let layout = ObsLayout::build(&w.statics);
    let ctx = layout
        .feature_names
        .iter()
        .position(|n| n == "ctx_reset")
        .unwrap();
    let a = agent(&w, "alice");
    idle(&mut w, 1);
    assert_eq!(observe(&w, &layout, a).1[ctx], 0.0);
    w.teleport(a, 8, 7).unwrap();
    assert!(!w.state.tick.is_multiple_of(4));
    assert_eq!(
        observe(&w, &layout, a).1[ctx],
        1.0,
        "a teleport flags a new context"
    );
}

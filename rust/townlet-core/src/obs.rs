//! Observations: an egocentric map (variant `hybrid`, `full` or `compact`) and one normalised
//! float32 feature vector with published names. Written straight into caller buffers.

use crate::actions::MAX_AFFORDANCES;
use crate::config::ObsVariant;
use crate::grid::{DIRS, UNREACHABLE};
use crate::state::{Phase, ShiftState};
use crate::statics::Statics;
use crate::world::{chebyshev, World};

/// Bumped whenever channels or features change meaning, order or count.
pub const OBSERVATION_SCHEMA_VERSION: &str = "1";

/// Friends then rivals in the social slots.
pub const SOCIAL_FRIENDS: usize = 2;
pub const SOCIAL_RIVALS: usize = 2;
const SOCIAL_FIELDS: [&str; 7] = [
    "present",
    "trust",
    "familiarity",
    "rivalry",
    "dx",
    "dy",
    "in_range",
];

#[derive(Debug, Clone)]
pub struct ObsLayout {
    pub variant: ObsVariant,
    pub channels: Vec<&'static str>,
    pub window: usize,
    pub feature_names: Vec<String>,
    /// Observations are seen on ticks that are a multiple of this (`observations.glimpse_every`).
    pub glimpse_every: u64,
    /// The index of the `ctx_reset` feature (kept on the ticks between glimpses).
    ctx_reset_feature: usize,
    /// Per tile: 0 for no object, else (type index + 1) / number of types.
    object_code: Vec<f32>,
    /// Per object, per tile: the direction (0..4, N/E/S/W) that brings an agent closer, or 4.
    step_dir: Vec<Vec<u8>>,
}

impl ObsLayout {
    pub fn map_shape(&self) -> [usize; 3] {
        [self.channels.len(), self.window, self.window]
    }
    pub fn map_len(&self) -> usize {
        self.channels.len() * self.window * self.window
    }
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    pub fn build(s: &Statics) -> Self {
        let variant = s.config.observations.variant;
        let (channels, default_window): (Vec<&'static str>, usize) = match variant {
            ObsVariant::Hybrid => (vec!["walls", "agents", "objects", "reservations"], 11),
            ObsVariant::Full => (
                vec![
                    "walls",
                    "agents",
                    "objects",
                    "reservations",
                    "path_dx",
                    "path_dy",
                ],
                11,
            ),
            ObsVariant::Compact => (
                vec!["walls", "agents", "objects", "reservations", "rivals"],
                7,
            ),
        };
        let window = s.config.observations.window.unwrap_or(default_window);
        let mut f: Vec<String> = [
            "need_hunger",
            "need_hygiene",
            "need_energy",
            "wallet",
            "has_job",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        f.extend(ShiftState::NAMES.iter().map(|n| format!("shift_{n}")));
        f.extend(
            [
                "time_sin",
                "time_cos",
                "shift_progress",
                "time_to_shift",
                "attendance_ratio",
                "lateness",
                "wages_withheld",
                "rivalry_max",
                "rivalry_avoid_count",
            ]
            .iter()
            .map(|x| x.to_string()),
        );
        for k in 0..SOCIAL_FRIENDS + SOCIAL_RIVALS {
            let kind = if k < SOCIAL_FRIENDS {
                "friend"
            } else {
                "rival"
            };
            let idx = if k < SOCIAL_FRIENDS {
                k
            } else {
                k - SOCIAL_FRIENDS
            };
            f.extend(
                SOCIAL_FIELDS
                    .iter()
                    .map(|x| format!("social_{kind}{idx}_{x}")),
            );
        }
        f.extend(
            [
                "identity_slot",
                "ctx_reset",
                "last_action",
                "last_action_ok",
                "in_queue",
                "holding",
                "running",
                "option_progress",
            ]
            .iter()
            .map(|x| x.to_string()),
        );
        for a in &s.affordances {
            f.extend(
                ["usable", "dx", "dy", "dist", "current"]
                    .iter()
                    .map(|x| format!("aff_{}_{x}", a.id)),
            );
        }
        f.extend(
            [
                "power_on",
                "water_on",
                "price_index",
                "hunger_crisis",
                "chat_ready",
                "nearby_agents",
                "episode_progress",
            ]
            .iter()
            .map(|x| x.to_string()),
        );

        let g = &s.grid;
        let n_types = s.types.len().max(1) as f32;
        let mut object_code = vec![0.0; g.tiles()];
        for o in &s.objects {
            object_code[g.idx(o.pos[0], o.pos[1])] = (o.type_idx + 1) as f32 / n_types;
        }
        let step_dir = if variant == ObsVariant::Full {
            s.dist
                .iter()
                .map(|field| {
                    let mut dirs = vec![4u8; g.tiles()];
                    for y in 0..g.height {
                        for x in 0..g.width {
                            let here = field[g.idx(x, y)];
                            if here == UNREACHABLE || here == 0 {
                                continue;
                            }
                            for (d, (dx, dy)) in DIRS.iter().enumerate() {
                                let (nx, ny) = (x + dx, y + dy);
                                if g.walkable(nx, ny) && field[g.idx(nx, ny)] < here {
                                    dirs[g.idx(x, y)] = d as u8;
                                    break;
                                }
                            }
                        }
                    }
                    dirs
                })
                .collect()
        } else {
            Vec::new()
        };
        let ctx_reset_feature = f
            .iter()
            .position(|n| n == "ctx_reset")
            .expect("ctx_reset is a feature");
        Self {
            variant,
            channels,
            window,
            glimpse_every: u64::from(s.config.observations.glimpse_every.max(1)),
            ctx_reset_feature,
            feature_names: f,
            object_code,
            step_dir,
        }
    }
}

#[inline]
fn squash(v: f64, scale: f64) -> f32 {
    (v / scale).tanh() as f32
}

impl World {
    /// Write agent `i`'s observation and action mask: `map` has `layout.map_len()` floats
    /// (C, H, W order), `feats` has `layout.n_features()` floats, `mask` one bool per action.
    /// A dead agent's observation is all zeros and only `wait` is valid. Between glimpses
    /// (`observations.glimpse_every`) the map and features are zeros but `ctx_reset`.
    pub fn write_observation(
        &self,
        layout: &ObsLayout,
        i: usize,
        map: &mut [f32],
        feats: &mut [f32],
        mask: &mut [bool],
    ) {
        map.iter_mut().for_each(|v| *v = 0.0);
        feats.iter_mut().for_each(|v| *v = 0.0);
        let mut targets = [None; MAX_AFFORDANCES];
        if self.state.agents[i].alive {
            self.targets(i, &mut targets);
        }
        self.action_mask_from(i, &targets, mask);
        if !self.state.agents[i].alive {
            return;
        }
        if !self.state.tick.is_multiple_of(layout.glimpse_every) {
            let k = layout.ctx_reset_feature;
            feats[k] = if self.state.agents[i].ctx_reset {
                1.0
            } else {
                0.0
            };
            return;
        }
        self.write_map(layout, i, map);
        self.write_features(layout, i, &targets, feats);
    }

    fn write_map(&self, layout: &ObsLayout, i: usize, map: &mut [f32]) {
        let s = &self.statics;
        let g = &s.grid;
        let w = layout.window as i32;
        let half = w / 2;
        let plane = (w * w) as usize;
        let pos = self.state.agents[i].pos;
        let (x0, y0) = (pos[0] - half, pos[1] - half);
        for wy in 0..w {
            for wx in 0..w {
                let (x, y) = (x0 + wx, y0 + wy);
                let cell = (wy * w + wx) as usize;
                if !g.in_bounds(x, y) {
                    map[cell] = 1.0;
                    continue;
                }
                let t = g.idx(x, y);
                map[cell] = if g.is_wall(x, y) { 1.0 } else { 0.0 };
                map[2 * plane + cell] = layout.object_code[t];
            }
        }
        // Reservations: how full each visible object is (holders and waiters over capacity).
        for (o, info) in s.objects.iter().enumerate() {
            let (wx, wy) = (info.pos[0] - x0, info.pos[1] - y0);
            if wx < 0 || wy < 0 || wx >= w || wy >= w {
                continue;
            }
            let os = &self.state.objects[o];
            let cap = s.types[info.type_idx].capacity as f32;
            map[3 * plane + (wy * w + wx) as usize] =
                ((os.holders.len() + os.waiting.len()) as f32 / cap).min(1.0);
        }
        // Other agents (and, in the compact map, how much we avoid them).
        for (j, b) in self.state.agents.iter().enumerate() {
            if j == i || !b.alive {
                continue;
            }
            let (wx, wy) = (b.pos[0] - x0, b.pos[1] - y0);
            if wx < 0 || wy < 0 || wx >= w || wy >= w {
                continue;
            }
            let cell = (wy * w + wx) as usize;
            map[plane + cell] = (map[plane + cell] + 0.5).min(1.0);
            if layout.variant == ObsVariant::Compact {
                map[4 * plane + cell] = map[4 * plane + cell].max(self.tie(i, j).rivalry);
            }
        }
        // Path hints toward the current option's object.
        if layout.variant == ObsVariant::Full {
            let act = self.state.agents[i].activity;
            if act.object >= 0 {
                let dirs = &layout.step_dir[act.object as usize];
                for wy in 0..w {
                    for wx in 0..w {
                        let (x, y) = (x0 + wx, y0 + wy);
                        if !g.in_bounds(x, y) {
                            continue;
                        }
                        let d = dirs[g.idx(x, y)];
                        if d < 4 {
                            let cell = (wy * w + wx) as usize;
                            map[4 * plane + cell] = DIRS[d as usize].0 as f32;
                            map[5 * plane + cell] = DIRS[d as usize].1 as f32;
                        }
                    }
                }
            }
        }
    }

    fn write_features(
        &self,
        layout: &ObsLayout,
        i: usize,
        targets: &[Option<usize>],
        f: &mut [f32],
    ) {
        let s = &self.statics;
        let cfg = &s.config;
        let a = &self.state.agents[i];
        let n = self.n_agents();
        let tpd = cfg.world.ticks_per_day as f32;
        let tod = self.tick_of_day() as f32;
        let mut k = 0;
        let mut put = |v: f32| {
            f[k] = v;
            k += 1;
        };
        put(a.needs[0]);
        put(a.needs[1]);
        put(a.needs[2]);
        put(squash(a.wallet, 5.0));
        let job = s.agent_jobs[i];
        put(if job >= 0 { 1.0 } else { 0.0 });
        for st in 0..ShiftState::NAMES.len() {
            put(if job >= 0 && a.employment.state as usize == st {
                1.0
            } else {
                0.0
            });
        }
        let phase = std::f32::consts::TAU * tod / tpd;
        put(phase.sin());
        put(phase.cos());
        if job >= 0 {
            let j = &s.jobs[job as usize];
            let (start, end) = (j.start as f32, j.end as f32);
            put(if tod >= start && tod < end {
                (tod - start) / (end - start)
            } else {
                0.0
            });
            let until = if tod < start {
                start - tod
            } else {
                tpd - tod + start
            };
            put(until / tpd);
        } else {
            put(0.0);
            put(0.0);
        }
        put(a.employment.attendance_ratio);
        put(squash(f64::from(a.employment.lateness_counter), 3.0));
        put(squash(a.employment.wages_withheld, 5.0));
        let (riv_max, avoid) = self.rivalry_summary(i);
        put(riv_max);
        put(avoid as f32 / (n.max(2) - 1) as f32);

        // Social slots: the strongest friends (trust + familiarity), then the strongest rivals.
        let row = &self.state.ties[i * n..(i + 1) * n];
        let mut friends: Vec<(f32, usize)> = Vec::with_capacity(n);
        let mut rivals: Vec<(f32, usize)> = Vec::with_capacity(n);
        for (j, t) in row.iter().enumerate() {
            if !t.present || j == i {
                continue;
            }
            if t.rivalry > 0.0 && t.rivalry >= t.trust {
                rivals.push((t.rivalry, j));
            } else {
                friends.push((t.trust + t.familiarity, j));
            }
        }
        friends.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        rivals.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let range = cfg.actions.chat_range as i32;
        let half = (layout.window / 2) as f32;
        for slot in 0..SOCIAL_FRIENDS + SOCIAL_RIVALS {
            let pick = if slot < SOCIAL_FRIENDS {
                friends.get(slot)
            } else {
                rivals.get(slot - SOCIAL_FRIENDS)
            };
            match pick {
                Some(&(_, j)) => {
                    let t = &row[j];
                    let b = &self.state.agents[j];
                    put(1.0);
                    put(t.trust);
                    put(t.familiarity);
                    put(t.rivalry);
                    put(((b.pos[0] - a.pos[0]) as f32 / half).clamp(-1.0, 1.0));
                    put(((b.pos[1] - a.pos[1]) as f32 / half).clamp(-1.0, 1.0));
                    put(if b.alive && chebyshev(a.pos, b.pos) <= range {
                        1.0
                    } else {
                        0.0
                    });
                }
                None => (0..SOCIAL_FIELDS.len()).for_each(|_| put(0.0)),
            }
        }
        put(a.identity_slot.max(0) as f32 / cfg.identity.max_slots as f32);
        put(if a.ctx_reset { 1.0 } else { 0.0 });
        put(f32::from(a.last_action) / (s.n_actions() - 1).max(1) as f32);
        put(if a.last_action_ok { 1.0 } else { 0.0 });
        put(if a.activity.phase == Phase::Waiting {
            1.0
        } else {
            0.0
        });
        put(if a.activity.phase == Phase::Holding {
            1.0
        } else {
            0.0
        });
        put(if a.activity.phase == Phase::Running {
            1.0
        } else {
            0.0
        });
        let progress = if a.activity.phase == Phase::Running && a.activity.affordance >= 0 {
            let d = s.affordances[a.activity.affordance as usize].duration;
            if d > 0 {
                1.0 - a.activity.remaining as f32 / d as f32
            } else {
                0.0
            }
        } else {
            0.0
        };
        put(progress);
        let span = (s.grid.width.max(s.grid.height)) as f32;
        for (aff, &found) in targets.iter().enumerate().take(s.affordances.len()) {
            let current = a.activity.affordance == aff as i32;
            let target = if current {
                Some(a.activity.object as usize)
            } else {
                found
            };
            match target {
                Some(o) => {
                    let p = s.objects[o].pos;
                    let d = s.dist_at(o, a.pos);
                    put(1.0);
                    put(((p[0] - a.pos[0]) as f32 / span).clamp(-1.0, 1.0));
                    put(((p[1] - a.pos[1]) as f32 / span).clamp(-1.0, 1.0));
                    put(if d == UNREACHABLE {
                        1.0
                    } else {
                        (f32::from(d) / span).min(1.0)
                    });
                }
                None => (0..4).for_each(|_| put(0.0)),
            }
            put(if current { 1.0 } else { 0.0 });
        }
        put(if self.state.power_out == 0 { 1.0 } else { 0.0 });
        put(if self.state.water_out == 0 { 1.0 } else { 0.0 });
        let ratios: f64 = self
            .state
            .prices
            .iter()
            .zip(&self.state.base_prices)
            .map(|(p, b)| if *b > 0.0 { p / b } else { 1.0 })
            .sum::<f64>();
        let index = if self.state.prices.is_empty() {
            1.0
        } else {
            ratios / self.state.prices.len() as f64
        };
        put(squash(index - 1.0, 1.0));
        put((a.hunger_low_ticks as f32 / cfg.needs.faint_window_ticks as f32).min(1.0));
        put(if a.chat_ready_at <= self.state.tick {
            1.0
        } else {
            0.0
        });
        let nearby = self.nearby_agents(i);
        put((nearby as f32 / s.chat_slots().max(1) as f32).min(1.0));
        put(((self.state.tick - a.spawned_at) as f32 / tpd).min(1.0));
        debug_assert_eq!(k, layout.n_features());
    }
}

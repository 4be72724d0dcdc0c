//! Static data compiled once from a validated config: grid, objects, affordances with resolved
//! indices, distance fields, jobs, prices, the action space. Shared read-only by every town.

use crate::actions::{action_names, A_MOVE0, NUM_MOVES};
use crate::config::*;
use crate::grid::Grid;
use crate::ids::NONE;
use crate::personality::{profile_index, PROFILES};
use crate::rng::Rng;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub id: String,
    pub type_idx: usize,
    pub pos: [i32; 2],
    pub initial_stock: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct TypeInfo {
    pub name: String,
    pub capacity: usize,
    /// 0 = unbounded.
    pub max_stock: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct AffInfo {
    pub id: String,
    pub kind: AffordanceKind,
    pub objects: Vec<usize>,
    pub duration: u32,
    /// Need change applied each running tick.
    pub per_tick: [f32; 3],
    pub price: Option<usize>,
    pub needs_power: bool,
    pub needs_water: bool,
    pub needs_shift: bool,
    pub consumes: Vec<(usize, u32)>,
    pub produces: Vec<(usize, u32)>,
    pub produces_into: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct JobInfo {
    pub name: String,
    pub site: usize,
    pub start: u32,
    pub end: u32,
    pub wage: f64,
    pub lateness_penalty: f64,
}

#[derive(Debug, Clone)]
pub struct PerturbationInfo {
    pub name: String,
    pub spec: PerturbationSpec,
    pub price_targets: Vec<usize>,
    pub location_objects: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Statics {
    pub config: WorldConfig,
    pub config_hash: String,
    pub manifest_checksum: String,
    pub grid: Grid,
    pub objects: Vec<ObjectInfo>,
    pub types: Vec<TypeInfo>,
    pub stock_keys: Vec<String>,
    pub affordances: Vec<AffInfo>,
    pub price_keys: Vec<String>,
    pub base_prices: Vec<f64>,
    pub jobs: Vec<JobInfo>,
    /// Per object: distance (in steps) from each tile to a tile in range of the object.
    pub dist: Vec<Vec<u16>>,
    /// Per agent: distance from each tile to the agent's home tile.
    pub home_dist: Vec<Vec<u16>>,
    pub agent_profiles: Vec<usize>,
    /// Per agent: index of its job, or `ids::NONE`.
    pub agent_jobs: Vec<i32>,
    pub scripts: Vec<Vec<u16>>,
    pub script_loops: Vec<bool>,
    pub action_names: Vec<String>,
    pub chat_offset: usize,
    pub release_action: usize,
    pub perturbations: Vec<PerturbationInfo>,
    pub delivery: Option<(usize, usize, u32)>,
    pub work_aff: Option<usize>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Statics {
    /// Compile a config that `validate` accepted.
    pub fn build(cfg: WorldConfig) -> Self {
        let config_hash = sha256_hex(&serde_json::to_vec(&cfg).expect("config serialises"));
        let manifest_checksum =
            sha256_hex(&serde_json::to_vec(&cfg.affordances).expect("manifest serialises"));

        let type_names: Vec<String> = cfg.affordances.object_types.keys().cloned().collect();
        let type_idx = |name: &str| {
            type_names
                .iter()
                .position(|t| t == name)
                .expect("validated type")
        };

        // Stock keys: every key named anywhere, sorted for a stable order.
        let mut keys: Vec<String> = Vec::new();
        let mut add = |k: &String| {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        };
        for t in cfg.affordances.object_types.values() {
            t.stock.keys().for_each(&mut add);
            t.max_stock.keys().for_each(&mut add);
        }
        for a in &cfg.affordances.affordances {
            a.consumes.keys().for_each(&mut add);
            a.produces.keys().for_each(&mut add);
        }
        for o in &cfg.world.objects {
            o.stock.keys().for_each(&mut add);
        }
        add(&cfg.economy.delivery.stock);
        keys.sort();
        let stock_idx = |k: &str| keys.iter().position(|x| x == k).expect("known stock key");

        let types: Vec<TypeInfo> = cfg
            .affordances
            .object_types
            .iter()
            .map(|(name, t)| TypeInfo {
                name: name.clone(),
                capacity: t.capacity as usize,
                max_stock: keys
                    .iter()
                    .map(|k| t.max_stock.get(k).copied().unwrap_or(0))
                    .collect(),
            })
            .collect();

        let mut grid = Grid::parse(&cfg.world.layout).expect("validated layout");
        let mut objects = Vec::new();
        for (i, o) in cfg.world.objects.iter().enumerate() {
            grid.place_object(i, o.pos[0], o.pos[1])
                .expect("validated position");
            let t = &cfg.affordances.object_types[&o.object_type];
            let initial_stock = keys
                .iter()
                .map(|k| {
                    o.stock
                        .get(k)
                        .or_else(|| t.stock.get(k))
                        .copied()
                        .unwrap_or(0)
                })
                .collect();
            objects.push(ObjectInfo {
                id: o.id.clone(),
                type_idx: type_idx(&o.object_type),
                pos: o.pos,
                initial_stock,
            });
        }
        let dist = objects
            .iter()
            .map(|o| grid.distance_field(o.pos[0], o.pos[1]))
            .collect();
        let home_dist = cfg
            .agents
            .iter()
            .map(|a| grid.distance_to_tile(a.home[0], a.home[1]))
            .collect();

        let price_keys: Vec<String> = cfg.economy.prices.keys().cloned().collect();
        let base_prices: Vec<f64> = cfg.economy.prices.values().copied().collect();
        let price_idx = |k: &str| {
            price_keys
                .iter()
                .position(|x| x == k)
                .expect("validated price key")
        };

        let affs: Vec<AffInfo> = cfg
            .affordances
            .affordances
            .iter()
            .map(|a| {
                let tys: Vec<usize> = a.object.to_vec().iter().map(|t| type_idx(t)).collect();
                let div = if a.duration == 0 {
                    1.0
                } else {
                    a.duration as f32
                };
                AffInfo {
                    id: a.id.clone(),
                    kind: a.kind,
                    objects: objects
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| tys.contains(&o.type_idx))
                        .map(|(i, _)| i)
                        .collect(),
                    duration: a.duration,
                    per_tick: a.effects.to_array().map(|v| v / div),
                    price: a.price.as_deref().map(price_idx),
                    needs_power: a.requires.contains(&Requirement::Power),
                    needs_water: a.requires.contains(&Requirement::Water),
                    needs_shift: a.requires.contains(&Requirement::OnShift),
                    consumes: a.consumes.iter().map(|(k, v)| (stock_idx(k), *v)).collect(),
                    produces: a.produces.iter().map(|(k, v)| (stock_idx(k), *v)).collect(),
                    produces_into: a.produces_into.as_deref().map(type_idx),
                }
            })
            .collect();
        let work_aff = affs.iter().position(|a| a.needs_shift);

        let job_names: Vec<String> = cfg.jobs.keys().cloned().collect();
        let object_idx = |id: &str| {
            cfg.world
                .objects
                .iter()
                .position(|o| o.id == id)
                .expect("validated object id")
        };
        let jobs = cfg
            .jobs
            .iter()
            .map(|(name, j)| JobInfo {
                name: name.clone(),
                site: object_idx(&j.site),
                start: j.start,
                end: j.end,
                wage: j.wage_rate,
                lateness_penalty: j.lateness_penalty,
            })
            .collect();

        // Personalities: overrides first, else a seeded weighted draw per agent in order.
        let mut rng = Rng::stream(cfg.seed, 0, "personality");
        let dist_entries: Vec<(usize, f64)> = cfg
            .personalities
            .distribution
            .iter()
            .map(|(n, w)| (profile_index(n).expect("validated"), *w))
            .collect();
        let total: f64 = dist_entries.iter().map(|e| e.1).sum();
        let agent_profiles = cfg
            .agents
            .iter()
            .map(|a| {
                let draw = rng.next_f64() * total;
                if let Some(p) = a.personality.as_deref().or(cfg
                    .personalities
                    .overrides
                    .get(&a.id)
                    .map(String::as_str))
                {
                    return profile_index(p).expect("validated");
                }
                let mut acc = 0.0;
                for &(p, w) in &dist_entries {
                    acc += w;
                    if draw < acc {
                        return p;
                    }
                }
                dist_entries.last().map(|e| e.0).unwrap_or(0)
            })
            .collect();
        debug_assert!(PROFILES.len() < 256);

        let agent_jobs = cfg
            .agents
            .iter()
            .map(|a| {
                a.job
                    .as_ref()
                    .map(|j| job_names.iter().position(|n| n == j).expect("validated") as i32)
                    .unwrap_or(NONE)
            })
            .collect();

        let action_names = action_names(&cfg);
        let scripts = cfg
            .agents
            .iter()
            .map(|a| {
                a.script
                    .iter()
                    .map(|s| action_names.iter().position(|n| n == s).expect("validated") as u16)
                    .collect()
            })
            .collect();
        let chat_offset = A_MOVE0 + NUM_MOVES + affs.len();
        let release_action = action_names.len() - 1;

        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (g, ks) in &cfg.economy.groups {
            groups.insert(g, ks.iter().map(|k| price_idx(k)).collect());
        }
        let perturbations = cfg
            .perturbations
            .events
            .iter()
            .map(|(name, spec)| {
                let mut price_targets = Vec::new();
                let mut location_objects = Vec::new();
                match spec {
                    PerturbationSpec::PriceSpike { targets, .. } => {
                        if targets.is_empty() || targets.iter().any(|t| t == "global") {
                            price_targets = (0..price_keys.len()).collect();
                        } else {
                            for t in targets {
                                match groups.get(t.as_str()) {
                                    Some(ks) => price_targets.extend(ks),
                                    None => price_targets.push(price_idx(t)),
                                }
                            }
                            price_targets.sort_unstable();
                            price_targets.dedup();
                        }
                    }
                    PerturbationSpec::ArrangedMeet { location, .. } => {
                        location_objects = cfg
                            .world
                            .objects
                            .iter()
                            .enumerate()
                            .filter(|(_, o)| &o.id == location || &o.object_type == location)
                            .map(|(i, _)| i)
                            .collect();
                    }
                    _ => {}
                }
                PerturbationInfo {
                    name: name.clone(),
                    spec: spec.clone(),
                    price_targets,
                    location_objects,
                }
            })
            .collect();

        let d = &cfg.economy.delivery;
        let delivery = d
            .enabled
            .then(|| (type_idx(&d.object_type), stock_idx(&d.stock), d.amount));

        Self {
            config_hash,
            manifest_checksum,
            grid,
            objects,
            types,
            stock_keys: keys,
            affordances: affs,
            price_keys,
            base_prices,
            jobs,
            dist,
            home_dist,
            agent_profiles,
            agent_jobs,
            scripts,
            script_loops: cfg.agents.iter().map(|a| a.script_loop).collect(),
            action_names,
            chat_offset,
            release_action,
            perturbations,
            delivery,
            work_aff,
            config: cfg,
        }
    }

    pub fn n_agents(&self) -> usize {
        self.config.agents.len()
    }

    pub fn n_actions(&self) -> usize {
        self.action_names.len()
    }

    pub fn chat_slots(&self) -> usize {
        self.config.actions.chat_slots as usize
    }

    pub fn use_action(&self, aff: usize) -> usize {
        A_MOVE0 + NUM_MOVES + aff
    }

    /// Affordance index of a `use:` action, if it is one.
    pub fn action_aff(&self, action: usize) -> Option<usize> {
        let first = A_MOVE0 + NUM_MOVES;
        (action >= first && action < first + self.affordances.len()).then(|| action - first)
    }

    pub fn stock_index(&self, key: &str) -> Option<usize> {
        self.stock_keys.iter().position(|k| k == key)
    }

    #[inline]
    pub fn dist_at(&self, object: usize, pos: [i32; 2]) -> u16 {
        self.dist[object][self.grid.idx(pos[0], pos[1])]
    }
}

//! The affordance manifest: object types and the affordances that run on them.

use super::NeedDeltas;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The affordance manifest: object types and affordances.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default = "first_manifest_version")]
    pub manifest_version: u32,
    pub object_types: BTreeMap<String, ObjectTypeSpec>,
    pub affordances: Vec<AffordanceSpec>,
}

fn first_manifest_version() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectTypeSpec {
    pub capacity: u32,
    pub stock: BTreeMap<String, u32>,
    pub max_stock: BTreeMap<String, u32>,
}

impl Default for ObjectTypeSpec {
    fn default() -> Self {
        Self {
            capacity: 1,
            stock: BTreeMap::new(),
            max_stock: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    Power,
    Water,
    OnShift,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AffordanceKind {
    Meal,
    Cook,
    Shower,
    Sleep,
    Work,
    #[default]
    Other,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AffordanceSpec {
    pub id: String,
    /// Object type (or list of types) this affordance runs on.
    pub object: OneOrMany,
    #[serde(default)]
    pub kind: AffordanceKind,
    /// Ticks to complete; 0 = continuous (runs while its requirements hold, e.g. a work shift).
    pub duration: u32,
    /// Need deltas over the whole duration (applied evenly per tick); per tick when continuous.
    #[serde(default)]
    pub effects: NeedDeltas,
    /// Economy key whose current price is charged once, at start.
    #[serde(default)]
    pub price: Option<String>,
    #[serde(default)]
    pub requires: Vec<Requirement>,
    /// Stock taken from the object at start.
    #[serde(default)]
    pub consumes: BTreeMap<String, u32>,
    /// Stock added at completion, into `produces_into` (nearest object of that type) or the object itself.
    #[serde(default)]
    pub produces: BTreeMap<String, u32>,
    #[serde(default)]
    pub produces_into: Option<String>,
}

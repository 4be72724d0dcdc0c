//! Snapshots: a town's complete state as one versioned, checksummed JSON document (config embedded).

use crate::config::WorldConfig;
use crate::state::State;
use crate::statics::Statics;
use crate::world::World;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub const SNAPSHOT_FORMAT: &str = "townlet.snapshot";
/// 2: a `checksum` (SHA-256 of the canonical content) guards the state; version 1 had none.
pub const SNAPSHOT_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: String,
    version: u32,
    /// `snapshot_checksum` of the document.
    checksum: String,
    config_hash: String,
    town: u64,
    config: WorldConfig,
    state: State,
}

/// The checksum of a snapshot document: SHA-256 (hex) of every field but `checksum`, as compact
/// JSON with sorted keys. It is taken over the parsed values, so any edit that changes a value (a
/// digit of a number, a letter of a string, a key) changes it; JSON floats round-trip exactly
/// (serde_json's `float_roundtrip`), so writer and reader see the same values.
pub fn snapshot_checksum(doc: &serde_json::Value) -> String {
    let mut content = doc.clone();
    if let Some(fields) = content.as_object_mut() {
        fields.remove("checksum");
    }
    let bytes = serde_json::to_vec(&content).expect("a JSON value serialises");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl World {
    /// The complete state as a versioned JSON document (with the config embedded).
    pub fn snapshot_json(&self) -> String {
        let mut snap = Snapshot {
            format: SNAPSHOT_FORMAT.into(),
            version: SNAPSHOT_VERSION,
            checksum: String::new(),
            config_hash: self.statics.config_hash.clone(),
            town: self.town,
            config: self.statics.config.clone(),
            state: self.state.clone(),
        };
        // Hashed as the reader will see it: the written text parsed back.
        let text = serde_json::to_string(&snap).expect("snapshot serialises");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("snapshot parses");
        snap.checksum = snapshot_checksum(&doc);
        serde_json::to_string(&snap).expect("snapshot serialises")
    }

    /// Restore a snapshot. When `expected` statics are given, the snapshot's config must match them.
    pub fn from_snapshot(json: &str, expected: Option<Arc<Statics>>) -> Result<Self, String> {
        let head: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("not a JSON document: {e}"))?;
        let format = head.get("format").and_then(|v| v.as_str()).unwrap_or("");
        if format != SNAPSHOT_FORMAT {
            return Err(format!(
                "not a Townlet snapshot (format is {format:?}, expected {SNAPSHOT_FORMAT:?})"
            ));
        }
        let version = head.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version == 1 {
            return Err(format!(
                "snapshot version 1 (written before snapshots carried a checksum) is not supported by \
                 this build (it reads version {SNAPSHOT_VERSION}); re-create the snapshot with this Townlet"
            ));
        }
        if version != u64::from(SNAPSHOT_VERSION) {
            return Err(format!(
                "snapshot version {version} is not supported by this build (it reads version {SNAPSHOT_VERSION}); \
                 re-create the snapshot with a matching Townlet"
            ));
        }
        // Verified before anything is built from the content: a mismatch restores nothing.
        match head.get("checksum").and_then(|v| v.as_str()) {
            None => return Err("malformed snapshot: missing or non-string field `checksum`".into()),
            Some(sum) if sum != snapshot_checksum(&head) => return Err(
                "snapshot checksum mismatch: the file was changed or damaged after it was written"
                    .into(),
            ),
            Some(_) => {}
        }
        let snap: Snapshot =
            serde_json::from_value(head).map_err(|e| format!("malformed snapshot: {e}"))?;
        crate::validate::validate(&snap.config)
            .map_err(|e| format!("snapshot config is invalid: {e}"))?;
        let statics = match expected {
            Some(s) => {
                if s.config_hash != snap.config_hash {
                    return Err(format!(
                        "snapshot was taken with config hash {} but the given config hashes to {}",
                        &snap.config_hash[..12.min(snap.config_hash.len())],
                        &s.config_hash[..12]
                    ));
                }
                s
            }
            None => Arc::new(Statics::build(snap.config)),
        };
        if statics.config_hash != snap.config_hash {
            return Err("snapshot config hash does not match its embedded config".into());
        }
        World::with_state(statics, snap.town, snap.state)
            .map_err(|e| format!("snapshot state does not match its config ({e})"))
    }
}

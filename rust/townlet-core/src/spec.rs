//! What a config's towns look like from outside, without building a town: observation shapes and
//! names, the action space and the identifiers a trained policy is tied to.

use crate::actions::ACTION_SPACE_VERSION;
use crate::config::{ObsVariant, WorldConfig};
use crate::obs::{ObsLayout, OBSERVATION_SCHEMA_VERSION};
use crate::reward_parts::REWARD_COMPONENTS;
use crate::statics::Statics;

/// The observation and action layout of every town built from one config.
#[derive(Debug, Clone, PartialEq)]
pub struct ObsSpec {
    pub variant: ObsVariant,
    /// (channels, height, width) of the egocentric map.
    pub map_shape: [usize; 3],
    pub map_channels: Vec<&'static str>,
    pub feature_names: Vec<String>,
    /// Map values then features: `channels * height * width + features`.
    pub obs_dim: usize,
    pub action_names: Vec<String>,
    pub n_agents: usize,
    pub config_id: String,
    pub manifest_checksum: String,
    pub observation_schema_version: &'static str,
    pub action_space_version: &'static str,
    pub reward_components: &'static [&'static str],
}

impl ObsSpec {
    /// The spec of towns sharing `statics`, observed through `layout`.
    pub fn new(statics: &Statics, layout: &ObsLayout) -> Self {
        Self {
            variant: layout.variant,
            map_shape: layout.map_shape(),
            map_channels: layout.channels.clone(),
            feature_names: layout.feature_names.clone(),
            obs_dim: layout.map_len() + layout.n_features(),
            action_names: statics.action_names.clone(),
            n_agents: statics.n_agents(),
            config_id: statics.config.config_id.clone(),
            manifest_checksum: statics.manifest_checksum.clone(),
            observation_schema_version: OBSERVATION_SCHEMA_VERSION,
            action_space_version: ACTION_SPACE_VERSION,
            reward_components: &REWARD_COMPONENTS,
        }
    }

    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    pub fn n_actions(&self) -> usize {
        self.action_names.len()
    }
}

/// The spec of a validated config's towns (see `parse_world_config`).
pub fn obs_spec(cfg: WorldConfig) -> ObsSpec {
    let statics = Statics::build(cfg);
    let layout = ObsLayout::build(&statics);
    ObsSpec::new(&statics, &layout)
}

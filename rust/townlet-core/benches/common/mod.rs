//! The default town for benchmarks: `configs/examples/poc_hybrid.yaml` as the resolved world JSON
//! that Python hands the core (YAML and includes are Python's job). Regenerate after changing the
//! YAML:
//!
//! ```text
//! .venv/bin/python -c "from townlet.sim.config import load_config; \
//!   print(load_config('configs/examples/poc_hybrid.yaml').world_json())" \
//!   > rust/townlet-core/benches/data/poc_hybrid.json
//! ```
//!
//! `TOWNLET_BENCH_CONFIG=path/to/world.json` benchmarks another town.

use std::sync::Arc;
use townlet_core::{parse_world_config, Statics};

pub fn default_town() -> Arc<Statics> {
    let json = match std::env::var("TOWNLET_BENCH_CONFIG") {
        Ok(path) => std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        Err(_) => include_str!("../data/poc_hybrid.json").to_string(),
    };
    let cfg = parse_world_config(&json).unwrap_or_else(|e| panic!("bench config: {e}"));
    Arc::new(Statics::build(cfg))
}

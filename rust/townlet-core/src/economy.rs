//! The economy: prices (baselines and spikes), console price changes, and the grocer's daily
//! delivery.

use crate::config::PerturbationSpec;
use crate::events::EventKind;
use crate::ids::NONE;
use crate::world::World;

impl World {
    /// Current prices: baselines times every running price spike; a change emits an event.
    pub(crate) fn recompute_prices(&mut self) {
        let mut prices = self.state.base_prices.clone();
        for p in &self.state.perturb.active {
            if matches!(
                self.statics.perturbations[p.spec].spec,
                PerturbationSpec::PriceSpike { .. }
            ) {
                for &k in &self.statics.perturbations[p.spec].price_targets {
                    prices[k] *= p.magnitude;
                }
            }
        }
        for (k, (&new, old)) in prices.iter().zip(self.state.prices.iter_mut()).enumerate() {
            if new != *old {
                *old = new;
                self.state.events.emit(
                    self.state.tick,
                    EventKind::EconomyPriceUpdate,
                    NONE,
                    NONE,
                    k as i32,
                    new as f32,
                );
            }
        }
    }

    /// Console: set a price's baseline.
    pub fn set_price(&mut self, key: &str, value: f64) -> Result<(), String> {
        let k = self
            .statics
            .price_keys
            .iter()
            .position(|p| p == key)
            .ok_or_else(|| format!("unknown price key \"{key}\""))?;
        if !(value >= 0.0 && value.is_finite()) {
            return Err(format!("price must be a finite number >= 0, got {value}"));
        }
        self.state.base_prices[k] = value;
        self.recompute_prices();
        Ok(())
    }

    pub(crate) fn economy_tick(&mut self) {
        if let Some((t, k, amount)) = self.statics.delivery {
            if self.tick_of_day() == self.statics.config.delivery_tick() {
                for o in 0..self.statics.objects.len() {
                    if self.statics.objects[o].type_idx != t {
                        continue;
                    }
                    let max = self.statics.types[t].max_stock[k];
                    let stock = &mut self.state.objects[o].stock[k];
                    let before = *stock;
                    *stock = if max > 0 {
                        (*stock + amount).min(max)
                    } else {
                        *stock + amount
                    };
                    let added = *stock - before;
                    self.emit(
                        EventKind::StockReplenish,
                        NONE,
                        NONE,
                        o as i32,
                        added as f32,
                    );
                }
            }
        }
    }
}

//! Money: prices, the grocer's delivery, jobs and the employment rules.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EconomySection {
    pub prices: BTreeMap<String, f64>,
    /// Named groups of price keys that price spikes may target.
    pub groups: BTreeMap<String, Vec<String>>,
    pub starting_wallet: f64,
    pub delivery: DeliverySection,
}

impl Default for EconomySection {
    fn default() -> Self {
        Self {
            prices: BTreeMap::from([
                ("meal_cost".to_string(), 0.4),
                ("ingredients_cost".to_string(), 0.15),
                ("cafe_meal_cost".to_string(), 0.8),
                ("shower_cost".to_string(), 0.1),
            ]),
            groups: BTreeMap::new(),
            starting_wallet: 5.0,
            delivery: DeliverySection::default(),
        }
    }
}

/// The grocer's delivery: once a day it restocks every object of `object_type` with `stock`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySection {
    pub enabled: bool,
    /// Tick of the day of the delivery; by default 06:00 of however long the day is.
    pub tick_of_day: Option<u32>,
    pub object_type: String,
    pub stock: String,
    pub amount: u32,
}

impl Default for DeliverySection {
    fn default() -> Self {
        Self {
            enabled: false,
            tick_of_day: None,
            object_type: "fridge".into(),
            stock: "meals".into(),
            amount: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Object id of the work site; being within range of it counts as present.
    pub site: String,
    /// Shift window as ticks of the day, [start, end).
    pub start: u32,
    pub end: u32,
    pub wage_rate: f64,
    #[serde(default = "JobSpec::default_lateness_penalty")]
    pub lateness_penalty: f64,
}

impl JobSpec {
    fn default_lateness_penalty() -> f64 {
        0.1
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmploymentSection {
    pub grace_ticks: u32,
    pub absent_cutoff: u32,
    pub absence_slack: u32,
    pub late_tick_penalty: f64,
    pub absence_penalty: f64,
    pub max_absent_shifts: u32,
    pub attendance_window: u32,
    pub daily_exit_cap: u32,
    pub exit_queue_limit: u32,
    pub exit_review_window: u32,
    pub arrival_buffer: u32,
    pub enforce_job_loop: bool,
}

impl Default for EmploymentSection {
    fn default() -> Self {
        Self {
            grace_ticks: 5,
            absent_cutoff: 30,
            absence_slack: 20,
            late_tick_penalty: 0.005,
            absence_penalty: 0.2,
            max_absent_shifts: 3,
            attendance_window: 3,
            daily_exit_cap: 2,
            exit_queue_limit: 8,
            exit_review_window: 1440,
            arrival_buffer: 20,
            enforce_job_loop: true,
        }
    }
}

//! `Option`s in memory that the wire stores as `-1` for `None`.
//!
//! Snapshots, the world hash, the vec state and event records predate these `Option`s and wrote a
//! `-1` sentinel; the serde helpers here keep those bytes unchanged (`#[serde(with = ...)]`).

use serde::de::Error;
use serde::{Deserialize, Deserializer, Serializer};

/// An index as the wire and the event records write it: the index, or `-1` for none.
#[inline]
pub fn index_or_minus_one(index: Option<usize>) -> i32 {
    index.map_or(-1, |i| i as i32)
}

fn index_from_wire(wire: i32) -> Result<Option<usize>, String> {
    match wire {
        -1 => Ok(None),
        w if w >= 0 => Ok(Some(w as usize)),
        w => Err(format!("expected an index or -1, got {w}")),
    }
}

/// `Option<usize>` as an `i32` index or `-1`.
pub mod index {
    use super::*;

    pub fn serialize<S: Serializer>(index: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(index_or_minus_one(*index))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        index_from_wire(i32::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// `Vec<Option<usize>>` as a list of `i32` indices or `-1`.
pub mod index_vec {
    use super::*;

    pub fn serialize<S: Serializer>(indices: &[Option<usize>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(indices.iter().map(|&i| index_or_minus_one(i)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<usize>>, D::Error> {
        Vec::<i32>::deserialize(d)?
            .into_iter()
            .map(|w| index_from_wire(w).map_err(D::Error::custom))
            .collect()
    }
}

/// `Option<i64>` day index as an `i64` or `-1`.
pub mod day {
    use super::*;

    pub fn serialize<S: Serializer>(day: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(day.unwrap_or(-1))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match i64::deserialize(d)? {
            -1 => Ok(None),
            w if w >= 0 => Ok(Some(w)),
            w => Err(D::Error::custom(format!(
                "expected a day index or -1, got {w}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Probe {
        #[serde(with = "super::index")]
        index: Option<usize>,
        #[serde(with = "super::index_vec")]
        indices: Vec<Option<usize>>,
        #[serde(with = "super::day")]
        day: Option<i64>,
    }

    #[test]
    fn none_is_minus_one_on_the_wire() {
        let p = Probe {
            index: None,
            indices: vec![Some(3), None],
            day: None,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"index":-1,"indices":[3,-1],"day":-1}"#);
        assert_eq!(serde_json::from_str::<Probe>(&json).unwrap(), p);
        let some = r#"{"index":2,"indices":[],"day":4}"#;
        let back: Probe = serde_json::from_str(some).unwrap();
        assert_eq!((back.index, back.day), (Some(2), Some(4)));
        assert_eq!(serde_json::to_string(&back).unwrap(), some);
        assert!(serde_json::from_str::<Probe>(r#"{"index":-2,"indices":[],"day":0}"#).is_err());
    }
}

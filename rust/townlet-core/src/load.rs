//! Parsing a world config from JSON: serde does the structure (`config`), `validate` the
//! semantics; every error names the key path, worded for people rather than in serde's terms.

use crate::config::{ConfigError, WorldConfig};
use crate::validate::validate;

/// Parse and validate a world config from JSON text.
pub fn parse_world_config(json: &str) -> Result<WorldConfig, ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    let cfg: WorldConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let (path, message) = humanize_serde_error(&path, &e.inner().to_string());
        ConfigError::new(path, message)
    })?;
    validate(&cfg)?;
    Ok(cfg)
}

/// Turn serde's wording into the project's: `expected integer >= 0, got "ten"`.
fn humanize_serde_error(path: &str, raw: &str) -> (String, String) {
    // serde_json appends " at line L column C"; the line is that of our generated JSON, not the YAML.
    let raw = match raw.rfind(" at line ") {
        Some(i) => &raw[..i],
        None => raw,
    };
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        let expected = rest.split_once("expected ").map(|x| x.1).unwrap_or("");
        // serde_path_to_error already ends the path with the unknown key; never name it twice.
        let full = if path.is_empty() {
            key.to_string()
        } else if path == key || path.ends_with(&format!(".{key}")) {
            path.to_string()
        } else {
            format!("{path}.{key}")
        };
        let hint = if expected.is_empty() {
            String::new()
        } else {
            format!(" (expected {expected})")
        };
        return (full, format!("unknown key{hint}"));
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        let full = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        return (full, "required key is missing".to_string());
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((got, expected)) = raw
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(", expected "))
        {
            return (
                path.to_string(),
                format!(
                    "expected {}, got {}",
                    expected_word(expected),
                    got_word(got)
                ),
            );
        }
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let (got, expected) = rest.split_once("`, expected ").unwrap_or((rest, "?"));
        return (
            path.to_string(),
            format!("unknown value \"{got}\" (expected {expected})"),
        );
    }
    (path.to_string(), raw.to_string())
}

fn expected_word(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "integer >= 0".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "integer".into(),
        "f32" | "f64" => "number".into(),
        "a boolean" => "true or false".into(),
        "a string" => "string".into(),
        "a sequence" => "list".into(),
        other if other.starts_with("struct ") || other.starts_with("a map") => "mapping".into(),
        other => other.to_string(),
    }
}

fn got_word(got: &str) -> String {
    // serde says `string "ten"`, `integer `-3``, `floating point `1.5``, `boolean `true``.
    if let Some(s) = got.strip_prefix("string ") {
        return s.to_string();
    }
    for prefix in ["integer ", "floating point ", "boolean "] {
        if let Some(s) = got.strip_prefix(prefix) {
            return s.trim_matches('`').to_string();
        }
    }
    got.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanizes_type_errors() {
        let (p, m) = humanize_serde_error(
            "queue_fairness.cooldown_ticks",
            "invalid type: string \"ten\", expected u32",
        );
        assert_eq!(p, "queue_fairness.cooldown_ticks");
        assert_eq!(m, "expected integer >= 0, got \"ten\"");
        let (_, m) = humanize_serde_error(
            "x",
            "invalid value: integer `-3`, expected u32 at line 1 column 9",
        );
        assert_eq!(m, "expected integer >= 0, got -3");
    }

    #[test]
    fn humanizes_unknown_and_missing_keys() {
        let (p, m) = humanize_serde_error(
            "needs",
            "unknown field `hungr`, expected one of `decay`, `initial`",
        );
        assert_eq!(p, "needs.hungr");
        assert!(m.starts_with("unknown key"));
        let (p, m) = humanize_serde_error("", "missing field `world`");
        assert_eq!(p, "world");
        assert_eq!(m, "required key is missing");
    }
}

//! Checks on caller-provided buffers, with the messages every caller (and the Python binding)
//! reports.

/// `name has got elements, expected want` unless the lengths agree.
pub fn check_len(name: &str, got: usize, want: usize) -> Result<(), String> {
    if got != want {
        return Err(format!("{name} has {got} elements, expected {want}"));
    }
    Ok(())
}

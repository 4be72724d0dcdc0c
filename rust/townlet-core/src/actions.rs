//! The action space: `wait`, four moves, one `use:<affordance>` per affordance, one `chat:<slot>`
//! per chat slot, then `release`. Decoding caller actions and the masked-action rule live here too;
//! what an action does once applied lives in `activity`.

use crate::config::WorldConfig;

/// Bumped whenever the action space changes meaning, order or count.
pub const ACTION_SPACE_VERSION: &str = "1";
pub const NUM_MOVES: usize = 4;
pub const A_WAIT: usize = 0;
pub const A_MOVE0: usize = 1;
/// The most affordances a manifest may declare.
pub const MAX_AFFORDANCES: usize = 64;

/// Every action name the config's manifest defines, in action-space order.
pub fn action_names(cfg: &WorldConfig) -> Vec<String> {
    let mut names: Vec<String> = ["wait", "move_n", "move_e", "move_s", "move_w"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.extend(
        cfg.affordances
            .affordances
            .iter()
            .map(|a| format!("use:{}", a.id)),
    );
    names.extend((0..cfg.actions.chat_slots).map(|i| format!("chat:{i}")));
    names.push("release".to_string());
    names
}

/// An action index outside the action space, found at `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    pub slot: usize,
    pub action: i64,
    pub n_actions: usize,
}

/// Copy caller actions (`i64`, as numpy hands them over) into action indices, rejecting the first
/// one outside `[0, n_actions)`. `dst` must be as long as `src`.
pub fn decode(src: &[i64], n_actions: usize, dst: &mut [u16]) -> Result<(), OutOfRange> {
    assert_eq!(src.len(), dst.len(), "one action index per caller action");
    for (slot, (out, &action)) in dst.iter_mut().zip(src).enumerate() {
        if action < 0 || action >= n_actions as i64 {
            return Err(OutOfRange {
                slot,
                action,
                n_actions,
            });
        }
        *out = action as u16;
    }
    Ok(())
}

/// The masked-action rule: an action its agent's mask forbids (`masks` row-major, one row of
/// `n_actions` per slot, as the agent saw it) is applied as `wait`; for a live agent it is also
/// flagged in `masked` (dead slots only ever have `wait` valid and are never flagged).
pub fn apply_masks(actions: &mut [u16], masks: &[bool], alive: &[bool], masked: &mut [bool]) {
    assert!(actions.len() == alive.len() && actions.len() == masked.len());
    let n_actions = if actions.is_empty() {
        0
    } else {
        masks.len() / actions.len()
    };
    for (slot, (action, flag)) in actions.iter_mut().zip(masked.iter_mut()).enumerate() {
        let allowed = masks[slot * n_actions + usize::from(*action)];
        *flag = !allowed && alive[slot];
        if !allowed {
            *action = A_WAIT as u16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_the_first_action_out_of_range() {
        let mut dst = [0u16; 3];
        assert_eq!(decode(&[0, 2, 1], 3, &mut dst), Ok(()));
        assert_eq!(dst, [0, 2, 1]);
        let err = decode(&[1, 3, -1], 3, &mut dst).unwrap_err();
        assert_eq!((err.slot, err.action), (1, 3));
        assert_eq!(decode(&[-1], 3, &mut dst[..1]).unwrap_err().action, -1);
    }

    #[test]
    fn masked_actions_become_wait_and_are_flagged_only_for_live_agents() {
        let mut actions = [1u16, 1, 2];
        let masks = [true, true, false, true, false, false, true, true, true];
        let mut masked = [true; 3];
        apply_masks(&mut actions, &masks, &[true, true, false], &mut masked);
        assert_eq!(actions, [1, 0, 2]);
        assert_eq!(masked, [false, true, false]);
        let mut actions = [1u16];
        apply_masks(&mut actions, &[true, false], &[false], &mut masked[..1]);
        assert_eq!((actions[0], masked[0]), (0, false));
    }
}

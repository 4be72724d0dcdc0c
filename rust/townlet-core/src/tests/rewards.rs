//! Rewards that pay for doing the job: the punctuality bonus (paid once, on the tick of an on-time
//! arrival, never for a late one) against what a late start costs (`work_penalty`).

use super::fixture::*;
use crate::config::RewardsSection;
use crate::events::EventKind;
use crate::reward_parts::{N_REWARD_COMPONENTS, PUNCTUALITY, SOCIAL_CHAT, TOTAL, WORK_PENALTY};
use crate::world::World;
use serde_json::json;

/// A tile within reach of the work stall.
const SITE: [i32; 2] = [9, 5];

fn part(w: &World, i: usize, col: usize) -> f32 {
    w.reward_breakdown()[i * N_REWARD_COMPONENTS + col]
}

/// Alice waits at work from the start, bob walks in after grace; returns per agent the punctuality and
/// work-penalty sums and the total over the shift, and the ticks of alice's on-time arrival.
fn shift_day(bonus: Option<f32>) -> (World, [[f64; 3]; 2], Vec<u64>) {
    let mut v = base();
    set(&mut v, "/employment/enforce_job_loop", json!(false));
    if let Some(b) = bonus {
        set(&mut v, "/rewards/punctuality_bonus", json!(b));
    }
    let mut w = world(&v);
    let (a, b) = (agent(&w, "alice"), agent(&w, "bob"));
    w.state.agents[a].pos = SITE;
    w.set_record_events(true);
    let mut sums = [[0.0f64; 3]; 2];
    let mut on_time = vec![];
    while w.tick() < SHIFT_END {
        if w.tick() == SHIFT_START + 8 {
            w.state.agents[b].pos = SITE; // after the 5-tick grace, before the absence cutoff
        }
        step(&mut w, &[]);
        for (k, i) in [a, b].into_iter().enumerate() {
            sums[k][0] += f64::from(part(&w, i, PUNCTUALITY));
            sums[k][1] += f64::from(part(&w, i, WORK_PENALTY));
            sums[k][2] += f64::from(part(&w, i, TOTAL));
        }
        let arrived = drain_kind(&mut w, EventKind::ShiftOnTime)
            .iter()
            .any(|e| e.agent == a as i32);
        let paid = part(&w, a, PUNCTUALITY);
        if arrived {
            on_time.push(w.tick());
        }
        assert_eq!(
            paid != 0.0,
            arrived,
            "punctuality paid off the arrival tick {}",
            w.tick()
        );
    }
    (w, sums, on_time)
}

#[test]
fn punctuality_is_paid_once_on_the_on_time_arrival_and_never_for_a_late_one() {
    let (w, sums, on_time) = shift_day(Some(1.25));
    assert_eq!(on_time.len(), 1, "one on-time arrival in one shift");
    assert_close(sums[0][0], 1.25, 1e-6);
    assert_close(sums[0][1], 0.0, 0.0);
    assert_eq!(sums[1][0], 0.0, "a late arrival earns no punctuality bonus");
    assert!(sums[1][1] < 0.0, "a late start is charged");
    let b = agent(&w, "bob");
    assert!(w.state.agents[b].employment.late_charged);
}

#[test]
fn by_default_arriving_on_time_pays_more_than_the_bonus_over_a_late_start() {
    let d = RewardsSection::default();
    assert_eq!(d.punctuality_bonus, 4.0);
    assert!(
        d.clip_per_tick >= d.punctuality_bonus,
        "the clip holds the bonus"
    );
    let (_, sums, _) = shift_day(None);
    assert_close(sums[0][0], f64::from(d.punctuality_bonus), 1e-6);
    // The late start forgoes the bonus, pays the lateness and late-tick charges and eight ticks of wage.
    let gap = sums[0][2] - sums[1][2];
    assert!(
        gap > f64::from(d.punctuality_bonus) + f64::from(d.wage_weight) * 0.1,
        "on time earns {gap} more"
    );
}

/// Alice says `chat:0` every tick for 120 ticks, every need of hers held at `need` and everyone else's at 0.9
/// (`min_need`: `rewards.social.c1_min_need`, else the default); returns her successful chats and what she and
/// her partners were paid for them.
fn chats_paid(need: f32, min_need: Option<f32>) -> (usize, f64, f64) {
    let mut v = base();
    if let Some(m) = min_need {
        set(&mut v, "/rewards/social/c1_min_need", json!(m));
    }
    let mut w = world(&v);
    let a = agent(&w, "alice");
    let (mut ok, mut speaker, mut listeners) = (0, 0.0f64, 0.0f64);
    for _ in 0..120 {
        for (i, ag) in w.state.agents.iter_mut().enumerate() {
            ag.needs = if i == a { [need; 3] } else { [0.9; 3] };
        }
        step(&mut w, &[("alice", "chat:0")]);
        let f = &w.state.agents[a].flags;
        if f.chat_quality > 0.0 && f.chat_partner >= 0 {
            ok += 1;
            speaker += f64::from(part(&w, a, SOCIAL_CHAT));
            listeners += f64::from(part(&w, f.chat_partner as usize, SOCIAL_CHAT));
        }
    }
    (ok, speaker, listeners)
}

#[test]
fn a_chat_pays_only_while_every_need_is_at_least_c1_min_need() {
    assert_eq!(RewardsSection::default().social.c1_min_need, 0.15);
    let (ok, speaker, listeners) = chats_paid(0.1, None);
    assert!(ok >= 3, "some chats succeed ({ok})");
    assert_eq!(speaker, 0.0, "a hungry speaker is not paid");
    assert!(listeners > 0.0, "her fed partners are");
    let (ok, speaker, _) = chats_paid(0.2, None);
    assert!(
        ok >= 3 && speaker > 0.0,
        "above the line she is paid ({ok}, {speaker})"
    );
    let (ok, speaker, _) = chats_paid(0.2, Some(0.3));
    assert_eq!(
        (ok >= 3, speaker),
        (true, 0.0),
        "a line of 0.3 leaves her unpaid at 0.2"
    );
}

//! Employment: daily shifts (50..100 in a 200-tick day), arrival within grace, lateness and absence
//! penalties charged once, wages per present tick, coworker effects, early departure, attendance
//! and the exit queue.

use super::fixture::*;
use crate::events::{Event, EventKind};
use crate::state::ShiftState;
use crate::world::World;
use serde_json::{json, Value};

const SITE_A: [i32; 2] = [9, 5];
const SITE_B: [i32; 2] = [10, 6];

fn no_exits() -> Value {
    let mut v = base();
    set(&mut v, "/employment/enforce_job_loop", json!(false));
    v
}

fn put(w: &mut World, name: &str, pos: [i32; 2]) {
    let i = agent(w, name);
    w.state.agents[i].pos = pos;
}

fn home(w: &mut World, name: &str) {
    let i = agent(w, name);
    w.state.agents[i].pos = w.state.agents[i].home;
}

fn events_of(w: &mut World, kind: EventKind, who: usize) -> Vec<Event> {
    drain_kind(w, kind)
        .into_iter()
        .filter(|e| e.agent == who as i32)
        .collect()
}

#[test]
fn shifts_repeat_every_day_and_pay_only_present_ticks_in_the_window() {
    let mut w = world(&no_exits());
    let a = agent(&w, "alice");
    put(&mut w, "alice", SITE_A);
    w.set_record_events(true);
    for _ in 0..3 * TPD {
        let tod = w.tick() % TPD;
        step(&mut w, &[]);
        let expect = if (SHIFT_START..SHIFT_END).contains(&tod) {
            WAGE
        } else {
            0.0
        };
        assert_close(w.state.agents[a].flags.wage, expect, 0.0);
        let state = w.state.agents[a].employment.state;
        let want = match tod {
            t if t < SHIFT_START - 10 => ShiftState::Idle,
            t if t < SHIFT_START => ShiftState::PreShift,
            t if t < SHIFT_END => ShiftState::OnTime,
            _ => ShiftState::PostShift,
        };
        assert_eq!(state, want, "tick {}", w.tick() - 1);
    }
    let paid = 3.0 * (SHIFT_END - SHIFT_START) as f64 * WAGE;
    assert_close(w.state.agents[a].wallet, 5.0 + paid, 1e-9);
    assert_close(w.state.agents[a].employment.wages_earned, paid, 1e-9);
    assert_close(w.state.stats.wages_paid, paid, 1e-9);
    let ev = w.state.events.drain();
    let count = |k: EventKind| {
        ev.iter()
            .filter(|e| e.kind == k && e.agent == a as i32)
            .count()
    };
    assert_eq!(count(EventKind::ShiftStart), 3);
    assert_eq!(count(EventKind::ShiftOnTime), 3);
    assert_eq!(count(EventKind::ShiftEnd), 3);
    assert_eq!(count(EventKind::ShiftLateStart), 0);
    // Three workers, three days; only alice was ever on time.
    assert_eq!(w.state.stats.shifts_scheduled, 9);
    assert_eq!(w.state.stats.shifts_on_time, 3);
    assert_eq!(w.state.agents[a].employment.attendance_ratio, 1.0);
    assert_close(w.kpis().on_time_rate, 1.0 / 3.0, 1e-12);
}

#[test]
fn arriving_within_grace_is_on_time_and_free() {
    let mut w = world(&no_exits());
    let a = agent(&w, "alice");
    idle_until(&mut w, SHIFT_START + 4);
    assert_eq!(w.state.agents[a].employment.state, ShiftState::OnTime);
    assert_eq!(
        w.state.stats.penalties, 0.0,
        "nothing is charged during grace"
    );
    put(&mut w, "alice", SITE_A);
    step(&mut w, &[]);
    assert!(w.state.agents[a].flags.punctual);
    assert_eq!(total(&w, EventKind::ShiftOnTime), 1);
    idle_until(&mut w, SHIFT_END + 1);
    assert!(!w.state.agents[a].employment.late_charged);
    assert_eq!(w.state.agents[a].employment.lateness_counter, 0);
    assert_eq!(w.state.agents[a].counters.penalties, 0.0);
    assert_close(w.state.agents[a].wallet, 5.0 + 46.0 * WAGE, 1e-9);
    assert_eq!(w.state.stats.shifts_on_time, 1);
    assert_close(
        f64::from(w.state.agents[a].employment.attendance_ratio),
        46.0 / 50.0,
        1e-6,
    );
}

#[test]
fn lateness_is_charged_once_then_per_late_tick_until_arrival() {
    let mut w = world(&no_exits());
    let a = agent(&w, "alice");
    w.set_record_events(true);
    idle_until(&mut w, SHIFT_START + 10);
    // Charged at tick 55 (grace over): 0.1 once, then 0.005 per late tick for ticks 55..59.
    let late = events_of(&mut w, EventKind::ShiftLateStart, a);
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].tick, SHIFT_START + 5);
    assert_close(
        w.state.agents[a].counters.penalties,
        0.1 + 5.0 * 0.005,
        1e-9,
    );
    assert_eq!(w.state.agents[a].employment.state, ShiftState::Late);
    assert_eq!(w.state.agents[a].employment.lateness_counter, 1);
    put(&mut w, "alice", SITE_A);
    idle_until(&mut w, SHIFT_END + 1);
    assert_eq!(w.state.agents[a].employment.state, ShiftState::PostShift);
    assert_close(w.state.agents[a].counters.penalties, 0.125, 1e-9);
    assert_eq!(w.state.agents[a].employment.late_ticks_today, 5);
    assert_eq!(total(&w, EventKind::ShiftOnTime), 0);
    assert_close(w.state.agents[a].wallet, 5.0 - 0.125 + 40.0 * WAGE, 1e-9);
    assert_close(
        w.state.agents[a].employment.wages_withheld,
        10.0 * WAGE,
        1e-9,
    );
    assert_eq!(w.state.stats.shifts_on_time, 0);
}

#[test]
fn arriving_exactly_when_grace_ends_is_late_and_charged() {
    let mut w = world(&no_exits());
    let a = agent(&w, "alice");
    w.set_record_events(true);
    idle_until(&mut w, SHIFT_START + 5);
    put(&mut w, "alice", SITE_A);
    step(&mut w, &[]);
    assert_eq!(w.state.agents[a].employment.state, ShiftState::Late);
    assert_eq!(total(&w, EventKind::ShiftOnTime), 0);
    assert_eq!(events_of(&mut w, EventKind::ShiftLateStart, a).len(), 1);
    assert_eq!(w.state.agents[a].employment.lateness_counter, 1);
    assert_close(w.state.agents[a].counters.penalties, 0.1, 1e-9);
}

#[test]
fn absence_is_charged_once_after_the_cutoff() {
    let mut w = world(&no_exits());
    let a = agent(&w, "alice");
    w.set_record_events(true);
    idle_until(&mut w, SHIFT_END + 1);
    let absent = events_of(&mut w, EventKind::ShiftAbsent, a);
    assert_eq!(absent.len(), 1);
    assert_eq!(absent[0].tick, SHIFT_START + 20);
    // Lateness 0.1, late ticks 55..69 (15 x 0.005), absence 0.2; nothing after that.
    assert_close(
        w.state.agents[a].counters.penalties,
        0.1 + 15.0 * 0.005 + 0.2,
        1e-9,
    );
    assert_close(w.state.agents[a].wallet, 5.0 - 0.375, 1e-9);
    assert_eq!(w.state.agents[a].employment.absences, vec![0]);
    assert_close(
        w.state.agents[a].employment.wages_withheld,
        50.0 * WAGE,
        1e-9,
    );
    assert_eq!(w.state.agents[a].employment.attendance_ratio, 0.0);
    // Penalties never take a wallet below zero.
    let mut w = world(&no_exits());
    let a = agent(&w, "alice");
    w.state.agents[a].wallet = 0.15;
    idle_until(&mut w, SHIFT_END + 1);
    assert_eq!(w.state.agents[a].wallet, 0.0);
    assert_close(w.state.agents[a].counters.penalties, 0.15, 1e-12);
}

#[test]
fn coworkers_present_help_the_late_and_take_the_absent_shift() {
    let mut w = world(&no_exits());
    let (a, b, d) = (agent(&w, "alice"), agent(&w, "bob"), agent(&w, "dan"));
    put(&mut w, "alice", SITE_A);
    put(&mut w, "dan", SITE_B);
    w.set_record_events(true);
    idle_until(&mut w, SHIFT_START + 6);
    let helped = events_of(&mut w, EventKind::EmploymentHelpedWhenLate, b);
    let helpers: Vec<i32> = helped.iter().map(|e| e.other).collect();
    assert_eq!(helpers, vec![a as i32, d as i32]);
    assert!(w.state.agents[b].employment.helped);
    for (x, y) in [(a, b), (b, a), (d, b)] {
        assert_close(f64::from(w.tie(x, y).trust), 0.2, 1e-6);
        assert_close(f64::from(w.tie(x, y).familiarity), 0.1, 1e-6);
        assert_eq!(w.tie(x, y).rivalry, 0.0, "rivalry cannot go below zero");
    }
    idle_until(&mut w, SHIFT_END);
    let taken = events_of(&mut w, EventKind::EmploymentTookMyShift, b);
    assert_eq!(taken.len(), 2);
    assert!(w.state.agents[b].employment.taken);
    for (x, y) in [(a, b), (b, a)] {
        assert_close(f64::from(w.tie(x, y).trust), 0.1, 1e-6);
        assert_close(f64::from(w.tie(x, y).rivalry), 0.3, 1e-6);
    }
    assert_eq!(total(&w, EventKind::EmploymentHelpedWhenLate), 2);
    assert_eq!(total(&w, EventKind::EmploymentTookMyShift), 2);

    // Nobody at work: no one to help or take over.
    let mut w = world(&no_exits());
    idle_until(&mut w, SHIFT_END);
    assert_eq!(total(&w, EventKind::ShiftLateStart), 3);
    assert_eq!(total(&w, EventKind::EmploymentHelpedWhenLate), 0);
    assert_eq!(total(&w, EventKind::EmploymentTookMyShift), 0);
}

#[test]
fn leaving_early_is_reported_once_after_the_slack() {
    let mut w = world(&no_exits());
    let a = agent(&w, "alice");
    put(&mut w, "alice", SITE_A);
    w.set_record_events(true);
    idle_until(&mut w, SHIFT_START + 10);
    home(&mut w, "alice");
    // Last seen at tick 59; departed once more than absence_slack (10) ticks have passed.
    idle_until(&mut w, SHIFT_START + 20);
    assert_eq!(w.state.agents[a].employment.state, ShiftState::OnTime);
    step(&mut w, &[]);
    assert_eq!(w.state.agents[a].employment.state, ShiftState::Departed);
    let dep = events_of(&mut w, EventKind::ShiftDepartedEarly, a);
    assert_eq!(dep.len(), 1);
    assert_eq!(dep[0].tick, SHIFT_START + 20);
    assert_close(w.state.agents[a].employment.wages_earned, 10.0 * WAGE, 1e-9);
    // Coming back is allowed (and paid), but counts as late.
    idle_until(&mut w, SHIFT_START + 30);
    put(&mut w, "alice", SITE_A);
    step(&mut w, &[]);
    assert_eq!(w.state.agents[a].employment.state, ShiftState::Late);
    idle_until(&mut w, SHIFT_END + 1);
    assert_close(w.state.agents[a].employment.wages_earned, 30.0 * WAGE, 1e-9);
    assert_eq!(total(&w, EventKind::ShiftDepartedEarly), 1);
    assert_eq!(
        w.state.agents[a].counters.penalties, 0.0,
        "no lateness charge"
    );
    assert_close(
        f64::from(w.state.agents[a].employment.attendance_ratio),
        30.0 / 50.0,
        1e-6,
    );
}

#[test]
fn attendance_is_the_mean_over_the_last_window_of_shifts() {
    let mut w = world(&no_exits());
    let a = agent(&w, "alice");
    let mut ratios = vec![];
    // Day 0 full, day 1 half, day 2 absent, day 3 full.
    for (day, present) in [(0u64, 50u64), (1, 25), (2, 0), (3, 50)] {
        idle_until(&mut w, day * TPD + SHIFT_START);
        if present > 0 {
            put(&mut w, "alice", SITE_A);
        }
        idle_until(&mut w, day * TPD + SHIFT_START + present);
        home(&mut w, "alice");
        idle_until(&mut w, day * TPD + SHIFT_END + 1);
        ratios.push(w.state.agents[a].employment.attendance_ratio);
    }
    let want = [1.0, 0.75, 0.5, 0.5];
    for (got, want) in ratios.iter().zip(want) {
        assert_close(f64::from(*got), want, 1e-6);
    }
    assert_eq!(w.state.agents[a].employment.attendance.len(), 3);
}

#[test]
fn a_shift_ending_at_midnight_is_finalised() {
    let mut v = no_exits();
    set(&mut v, "/jobs/clerk/start", json!(150));
    set(&mut v, "/jobs/clerk/end", json!(TPD));
    let mut w = world(&v);
    let a = agent(&w, "alice");
    put(&mut w, "alice", SITE_A);
    idle_until(&mut w, TPD + 10);
    assert_eq!(total(&w, EventKind::ShiftEnd), 3, "one per worker");
    assert_eq!(w.state.stats.shifts_scheduled, 3);
    assert_eq!(w.state.stats.shifts_on_time, 1);
    assert_eq!(w.state.agents[a].employment.attendance, vec![1.0]);
    // The next day's shift starts afresh.
    idle_until(&mut w, 2 * TPD + 10);
    assert_eq!(w.state.stats.shifts_scheduled, 6);
    assert_eq!(w.state.agents[a].employment.attendance, vec![1.0, 1.0]);
}

#[test]
fn work_runs_while_the_shift_is_open_and_ends_with_it() {
    let mut w = world(&no_exits());
    let a = agent(&w, "alice");
    put(&mut w, "alice", SITE_A);
    idle_until(&mut w, SHIFT_START - 11);
    assert!(!valid(&w, a, "use:work_shift"), "before the arrival buffer");
    step(&mut w, &[]);
    assert!(valid(&w, a, "use:work_shift"));
    let stall = obj(&w, "stall_1");
    while w.tick() < SHIFT_END {
        step(&mut w, &[("alice", "use:work_shift")]);
        assert_eq!(w.state.agents[a].activity.object as usize, stall);
    }
    // Continuous: energy -0.001 per running tick (ticks 40..99).
    assert_close(
        f64::from(w.state.agents[a].needs[2]),
        0.5 - 0.001 * 60.0,
        1e-5,
    );
    step(&mut w, &[("alice", "use:work_shift")]);
    assert!(w.state.agents[a].activity.is_idle(), "the shift closed");
    assert_eq!(total(&w, EventKind::AffordanceFinish), 1);
    assert_close(w.state.agents[a].employment.wages_earned, 50.0 * WAGE, 1e-9);
    // cara has no job: never.
    assert!(!valid(&w, agent(&w, "cara"), "use:work_shift"));
}

// -- the exit queue -------------------------------------------------------------------------------

/// alice and dan always at work; bob stays home and is absent every day.
fn bob_absent(v: &Value) -> World {
    let mut w = world(v);
    put(&mut w, "alice", SITE_A);
    put(&mut w, "dan", SITE_B);
    w.set_record_events(true);
    w
}

#[test]
fn chronic_absence_queues_an_exit_that_happens_after_review() {
    let mut w = bob_absent(&base());
    let b = agent(&w, "bob");
    // Absent on day 0 (tick 70) and day 1 (tick 270): max_absent_shifts 2 reached.
    idle_until(&mut w, TPD + SHIFT_START + 20);
    assert!(w.state.exits.pending.is_empty());
    step(&mut w, &[]);
    assert_eq!(w.state.exits.pending, vec![(b as u32, TPD + 70)]);
    assert!(w.state.agents[b].employment.exit_pending);
    assert_eq!(
        events_of(&mut w, EventKind::EmploymentExitPending, b).len(),
        1
    );
    // The review window is 50 ticks.
    idle_until(&mut w, TPD + 70 + 50);
    assert!(w.state.agents[b].alive);
    step(&mut w, &[]);
    assert!(!w.state.agents[b].alive);
    assert!(w.state.exits.pending.is_empty());
    let ev = w.state.events.drain();
    let processed: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == EventKind::EmploymentExitProcessed)
        .collect();
    assert_eq!(processed.len(), 1);
    assert_eq!(processed[0].agent, b as i32);
    assert_eq!(processed[0].value, 0.0, "automatic, not manual");
    assert_eq!(w.state.stats.evictions, 1);
    assert_eq!(w.kpis().evictions, 1);
    // Respawned later as bob#2, with a clean employment record.
    idle(&mut w, 11);
    assert!(w.state.agents[b].alive);
    assert_eq!(w.state.agents[b].display_id(), "bob#2");
    assert!(w.state.agents[b].employment.absences.is_empty());
    assert!(!w.state.agents[b].employment.exit_pending);
}

#[test]
fn the_daily_cap_limits_exits_per_day() {
    // Everyone absent: all three workers are queued at tick 270; one exit per day.
    let mut w = world(&base());
    let evictions_after = |w: &mut World, tick: u64| {
        idle_until(w, tick + 1);
        w.state.stats.evictions
    };
    assert_eq!(evictions_after(&mut w, 270), 0);
    assert_eq!(w.state.exits.pending.len(), 3);
    assert_eq!(evictions_after(&mut w, 320), 1);
    assert_eq!(evictions_after(&mut w, 399), 1);
    assert_eq!(evictions_after(&mut w, 400), 2, "a new day");
    assert_eq!(evictions_after(&mut w, 599), 2);
    assert_eq!(evictions_after(&mut w, 600), 3);

    // A cap of 0 means no cap.
    let mut v = base();
    set(&mut v, "/employment/daily_exit_cap", json!(0));
    let mut w = world(&v);
    assert_eq!(evictions_after(&mut w, 320), 3);
}

#[test]
fn an_overfull_exit_queue_is_reported() {
    let mut v = base();
    set(&mut v, "/employment/exit_queue_limit", json!(1));
    let mut w = world(&v);
    idle_until(&mut w, 271);
    assert_eq!(total(&w, EventKind::EmploymentExitPending), 3);
    assert_eq!(total(&w, EventKind::EmploymentExitQueueOverflow), 2);
}

#[test]
fn a_manual_approval_exits_at_the_next_evaluation_regardless_of_the_cap() {
    let mut w = town();
    let (b, c) = (agent(&w, "bob"), agent(&w, "cara"));
    idle(&mut w, 10);
    w.state.exits.exits_today = 5; // well over the cap of 1
    assert!(w.employment_exit_approve(b));
    assert!(!w.employment_exit_approve(c), "cara has no job");
    assert_eq!(total(&w, EventKind::EmploymentExitManualRequest), 1);
    assert!(w.state.agents[b].alive);
    w.set_record_events(true);
    step(&mut w, &[]);
    assert!(!w.state.agents[b].alive);
    let processed = drain_kind(&mut w, EventKind::EmploymentExitProcessed);
    assert_eq!(processed.len(), 1);
    assert_eq!(processed[0].value, 1.0, "manual");
    assert!(w.state.exits.manual.is_empty());
    assert!(
        !w.employment_exit_approve(b),
        "a removed agent cannot be approved"
    );
}

#[test]
fn deferring_takes_an_agent_out_of_the_exit_queue() {
    let mut w = bob_absent(&base());
    let b = agent(&w, "bob");
    idle_until(&mut w, TPD + 71);
    assert_eq!(w.state.exits.pending.len(), 1);
    assert!(w.employment_exit_defer(b));
    assert!(w.state.exits.pending.is_empty());
    assert!(!w.state.agents[b].employment.exit_pending);
    assert!(w.state.agents[b].employment.absences.is_empty());
    assert_eq!(total(&w, EventKind::EmploymentExitDeferred), 1);
    assert!(!w.employment_exit_defer(b), "nothing left to defer");
    assert_eq!(total(&w, EventKind::EmploymentExitDeferred), 1);
    idle_until(&mut w, 2 * TPD);
    assert!(w.state.agents[b].alive);
    assert_eq!(w.state.stats.evictions, 0);
    // A manual request can be deferred too.
    assert!(w.employment_exit_approve(b));
    assert!(w.employment_exit_defer(b));
    step(&mut w, &[]);
    assert!(w.state.agents[b].alive);
}

#[test]
fn without_the_job_loop_nobody_is_queued() {
    let mut w = world(&no_exits());
    idle_until(&mut w, 3 * TPD);
    assert_eq!(total(&w, EventKind::ShiftAbsent), 9);
    assert_eq!(total(&w, EventKind::EmploymentExitPending), 0);
    assert_eq!(w.state.stats.evictions, 0);
}

#[test]
fn an_all_day_shift_is_finalised_when_the_next_one_starts() {
    let mut v = no_exits();
    set(&mut v, "/jobs/clerk/start", json!(0));
    set(&mut v, "/jobs/clerk/end", json!(TPD));
    let mut w = world(&v);
    let a = agent(&w, "alice");
    put(&mut w, "alice", SITE_A);
    idle_until(&mut w, 2 * TPD + 1);
    assert_eq!(w.state.stats.shifts_scheduled, 2 * 3);
    assert_eq!(w.state.agents[a].employment.attendance, vec![1.0, 1.0]);
}

#[test]
fn a_shift_cut_short_by_a_faint_counts_as_absent_once() {
    let mut w = world(&no_exits());
    let a = agent(&w, "alice");
    put(&mut w, "alice", SITE_A);
    idle_until(&mut w, SHIFT_START + 20);
    assert!(w.state.agents[a].employment.arrived_on_time);
    // Faint mid-shift: the shift counts, not on time; the successor (respawn delay 10 ticks,
    // back within the window) does not start that day's shift anew.
    w.terminate(a, crate::state::TermReason::Faint);
    step(&mut w, &[]);
    assert!(!w.state.agents[a].alive);
    assert_eq!(w.state.stats.shifts_scheduled, 1);
    assert_eq!(w.state.stats.shifts_on_time, 0);
    idle_until(&mut w, SHIFT_END + 5);
    assert!(w.state.agents[a].alive, "respawned within the window");
    // Alice's one shift, plus the other two workers' (absent) shifts.
    assert_eq!(w.state.stats.shifts_scheduled, 3);
    assert_eq!(w.state.stats.shifts_on_time, 0);
    assert_close(w.kpis().on_time_rate, 0.0, 0.0);
}

#[test]
fn an_empty_slot_misses_its_shift_and_it_still_counts() {
    let mut w = world(&no_exits());
    let a = agent(&w, "alice");
    let mut v = no_exits();
    set(&mut v, "/lifecycle/respawn_delay_ticks", json!(3 * TPD));
    let mut w2 = world(&v);
    for w in [&mut w, &mut w2] {
        idle_until(w, SHIFT_START - 20);
        w.terminate(a, crate::state::TermReason::Faint);
        idle_until(w, SHIFT_END + 5);
    }
    // w: alice is back 10 ticks later, before her shift; w2: her slot stays empty for days. Either
    // way her shift and the two others' count, once each.
    assert_eq!(w.state.stats.shifts_scheduled, 3);
    assert_eq!(w2.state.stats.shifts_scheduled, 3);
    assert!(!w2.state.agents[a].alive);
    idle_until(&mut w2, 2 * TPD + SHIFT_END + 5);
    assert_eq!(
        w2.state.stats.shifts_scheduled, 9,
        "every day's shift of the empty slot"
    );
}

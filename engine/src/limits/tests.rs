use super::*;
use crate::load::parse_tenants;
use crate::Reason;

const T: u64 = 1_795_000_000;

#[test]
fn a_window_counts_a_rolling_minute_and_forgets_what_slid_out() {
    let w = Window::<60>::new(1);
    for i in 0..3 {
        assert_eq!(w.add(T + i), i + 1);
    }
    // Seconds T..T+2 are in every window ending before T+60.
    assert_eq!(w.count(T + 59), 3);
    // At T+60 the first second has slid out, at T+62 all three.
    assert_eq!(w.count(T + 60), 2);
    assert_eq!(w.count(T + 62), 0);
    // A slot of an older turn of the ring is not counted, and starts again when reused.
    assert_eq!(w.add(T + 120), 1);
    assert_eq!(w.count(T + 120), 1);
}

#[test]
fn a_minute_counts_in_five_second_steps() {
    // T is the first second of a step: an admission at T counts until T + 60; one at T + 4,
    // in the same step, also only until T + 60 (55 to 60 seconds, by where in its step).
    let t = T - T % MINUTE_STEP;
    let m = Minute::minute();
    m.add(t);
    m.add(t + 4);
    assert_eq!(m.count(t + 59), 2);
    assert_eq!(m.count(t + 60), 0);
    assert_eq!(m.retry_after(t + 30, 2), 30);
}

#[test]
fn an_admission_a_whole_window_older_than_its_cell_is_not_counted() {
    let w = Window::<60>::new(1);
    w.add(T + 60);
    // T is the same cell, one turn before: restored late, it is out of every window T + 60 is in.
    w.add_n(T, 1);
    assert_eq!(w.count(T + 60), 1);
}

#[test]
fn retry_after_is_when_the_oldest_admissions_slide_out() {
    let w = Window::<60>::new(1);
    w.add(T);
    w.add(T + 10);
    w.add(T + 20);
    // Limit 3, full: one more fits when T's admission leaves, at T+60.
    assert_eq!(w.retry_after(T + 30, 3), 30);
    // Limit 2 and three held: two must leave, T's and T+10's.
    assert_eq!(w.retry_after(T + 30, 2), 40);
    // Never 0, even at the edge.
    assert_eq!(w.retry_after(T + 59, 3), 1);
}

#[test]
fn removing_takes_back_only_what_was_added_in_that_slot() {
    let w = Window::<60>::new(1);
    w.add(T);
    w.remove(T + 1); // another slot: nothing there to take
    assert_eq!(w.count(T + 1), 1);
    w.remove(T);
    w.remove(T); // not below zero
    assert_eq!(w.count(T), 0);
}

#[test]
fn an_hour_window_counts_in_minutes() {
    // Sixty slots of a minute: a call counts for 59 to 60 minutes, by where in its minute
    // it came.
    let w = Window::<60>::new(60);
    w.add(T);
    assert_eq!(w.count(T - T % 60 + 3599), 1);
    assert_eq!(w.count(T - T % 60 + 3600), 0);
}

#[test]
fn the_day_spend_counts_within_a_cap_and_starts_again_each_day() {
    let t = TenantUsage::new("t".into(), &[]);
    let day = day_of(T);
    let cap = Some(Money(10));
    assert!(t.spend(day, Money(6), cap));
    assert!(
        !t.spend(day, Money(5), cap),
        "past the cap: nothing counted"
    );
    assert_eq!(t.spent_on(day), Money(6));
    assert!(t.spend(day, Money(4), cap), "exactly the cap");
    t.unspend(day, Money(3));
    assert_eq!(t.spent_on(day), Money(7));
    // A new day starts at zero; giving back to the day before changes nothing.
    assert!(t.spend(day + 1, Money(10), cap));
    t.unspend(day, Money(5));
    assert_eq!(t.spent_on(day + 1), Money(10));
    assert_eq!(t.spent_on(day), Money::ZERO);
}

fn limits(toml: &str) -> (Limits, LoadErrors) {
    let mut e = LoadErrors::default();
    let recs = parse_tenants(&format!("[[tenant]]\nid = \"t\"\n{toml}"), &mut e);
    let r = &recs[0];
    let l = Limits::build(r.limits.as_ref(), &r.velocity, r.line, &mut e);
    (l, e)
}

#[test]
fn limits_default_to_generous_per_user_bounds_and_zero_means_none() {
    let (l, e) = limits("");
    assert!(e.is_empty(), "{e}");
    assert_eq!(l, Limits::default());
    assert_eq!(l.user_concurrent_calls, Some(DEFAULT_USER_CONCURRENT_CALLS));
    assert_eq!(l.user_calls_per_minute, Some(DEFAULT_USER_CALLS_PER_MINUTE));
    assert_eq!(l.high_risk, HighRisk::Block);
    let (l, e) = limits(
        "[tenant.limits]\nuser_concurrent_calls = 0\nuser_calls_per_minute = 0\n\
         concurrent_calls = 5\ndaily_spend = \"2.50\"\nhigh_risk = \"allow\"\n",
    );
    assert!(e.is_empty(), "{e}");
    assert_eq!(
        (l.user_concurrent_calls, l.user_calls_per_minute),
        (None, None)
    );
    assert_eq!(l.concurrent_calls, Some(5));
    assert_eq!(l.daily_spend, Money::parse("2.50"));
    assert_eq!(l.high_risk, HighRisk::Allow);
}

#[test]
fn bad_limits_name_the_tenant_line_and_field() {
    let (_, e) = limits(
        "[tenant.limits]\ndaily_spend = \"lots\"\nhigh_risk = \"maybe\"\n\
         [[tenant.velocity]]\ndestination = \"882\"\nblock = 3\n\
         [[tenant.velocity]]\ndestination = \"+882\"\nwindow_seconds = 90\nblock = 3\n\
         [[tenant.velocity]]\ndestination = \"CU\"\nwarn = 5\nblock = 5\n\
         [[tenant.velocity]]\ndestination = \"CU\"\n",
    );
    let text = e.to_string();
    for field in [
        "limits.daily_spend",
        "limits.high_risk",
        "velocity.destination",
        "velocity.window_seconds",
        "velocity.warn",
        "velocity.block",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
    assert!(
        e.0.iter()
            .all(|x| x.file == "tenants.toml" && x.line == Some(1)),
        "{text}"
    );
    let mut e = LoadErrors::default();
    parse_tenants(
        "[[tenant]]\nid = \"t\"\n[tenant.limits]\nconcurent_calls = 3\n",
        &mut e,
    );
    assert!(
        e.to_string().contains("concurent_calls"),
        "an unknown field is an error: {e}"
    );
}

#[test]
fn velocity_windows_survive_a_reload_that_keeps_their_rule() {
    let (l, e) = limits(
        "[[tenant.velocity]]\ndestination = \"+882\"\nblock = 3\n\
         [[tenant.velocity]]\ndestination = \"CU\"\nwindow_seconds = 600\nwarn = 2\n",
    );
    assert!(e.is_empty(), "{e}");
    let t = TenantUsage::new("t".into(), &l.velocity);
    for w in &t.velocity.load().windows {
        w.add(T);
    }
    // Same first rule, changed second one.
    let mut changed = l.velocity.clone();
    changed[1].warn = Some(3);
    t.set_velocity(&changed);
    let v = t.velocity.load();
    assert_eq!(v.windows[0].count(T), 1, "kept");
    assert_eq!(v.windows[1].count(T), 0, "a changed rule starts afresh");
}

#[test]
fn only_the_policy_and_abuse_reasons_can_be_shadowed() {
    let mut s = ReasonSet::EMPTY;
    assert!(s.is_empty());
    for r in ReasonSet::SHADOWABLE {
        s.insert(r);
    }
    for r in Reason::ALL {
        assert_eq!(s.contains(r), ReasonSet::SHADOWABLE.contains(&r), "{r}");
    }
    for never in [
        Reason::UntrustedPeer,
        Reason::PoolExhausted,
        Reason::UnknownCaller,
    ] {
        assert!(!s.contains(never));
    }
}

//! The simulator from the outside: a seed replays bit for bit, and every fault, alone and
//! all at once, leaves the invariants standing.

use sim::config::{Config, FaultSpec, Faults, Topology};

fn small(seed: u64, faults: Faults) -> Config {
    Config {
        nodes: 8,
        members: 8,
        minutes: 12,
        seed,
        topology: Topology::Random(3),
        relays: 4,
        faults: FaultSpec::Fixed(faults),
        ..Config::default()
    }
}

#[test]
fn a_seed_replays_bit_for_bit_and_another_seed_does_not() {
    let a = sim::run(small(5, Faults::ALL));
    let b = sim::run(small(5, Faults::ALL));
    assert_eq!(a.violation, None, "{:?}", a.failure());
    assert_eq!(a.hash, b.hash, "one seed, one trace");
    assert_eq!(a.figures.events, b.figures.events);
    let c = sim::run(small(6, Faults::ALL));
    assert_ne!(a.hash, c.hash, "another seed, another trace");
    assert!(a.command.contains("--seed 5"), "{}", a.command);
}

#[test]
fn every_fault_alone_leaves_the_invariants_standing() {
    let one = |f: fn(&mut Faults)| {
        let mut faults = Faults::default();
        f(&mut faults);
        faults
    };
    let each: [fn(&mut Faults); 10] = [
        |f| f.crash = true,
        |f| f.partition = true,
        |f| f.loss = true,
        |f| f.skew = true,
        |f| f.relay = true,
        |f| f.equivocate = true,
        |f| f.withhold = true,
        |f| f.rewrite = true,
        |f| f.spam = true,
        |f| f.liar = true,
    ];
    for (i, f) in each.into_iter().enumerate() {
        let faults = one(f);
        let out = sim::run(small(11 + i as u64, faults));
        assert_eq!(out.violation, None, "{faults}: {:?}", out.failure());
        // The network did its work: records were read and every one is final.
        assert!(out.figures.records_read > 0, "{faults}");
        assert!(out.figures.final_height > 0, "{faults}");
    }
}

/// With no fault, the figures are those of a quiet network: nothing stale after the
/// warm-up, every block final within a few seconds.
#[test]
fn a_quiet_network_finalises_every_block_within_seconds() {
    let out = sim::run(Config {
        minutes: 20,
        ..small(3, Faults::default())
    });
    assert_eq!(out.violation, None, "{:?}", out.failure());
    let f = &out.figures;
    assert_eq!(f.stale, 0, "{}", f.lines());
    assert_eq!(f.final_height, f.height, "{}", f.lines());
    let p99 = sim::report::percentile(&f.finality, 99).expect("final blocks");
    assert!(p99 < 5_000, "{}", f.lines());
}

/// A peer that claims a chain far ahead of its own and shows nothing is caught lying by
/// the core's pull rules and backed off (`core::health`): its neighbours ask it far less
/// than the share of their pulls a peer of theirs would get, and no honest peer is ever
/// taken for a liar.
#[test]
fn a_peer_that_lies_about_its_tip_is_caught_and_backed_off() {
    let cfg = Config {
        nodes: 16,
        members: 16,
        minutes: 30,
        seed: 3,
        topology: Topology::Random(4),
        faults: FaultSpec::Fixed(Faults {
            liar: true,
            ..Faults::default()
        }),
        ..Config::default()
    };
    let out = sim::run(cfg);
    assert_eq!(out.violation, None, "{:?}", out.failure());
    let f = &out.figures;
    let (pulls, of_liars) = f.pulls;
    let (by_liars, by_honest) = f.lies;
    assert!(by_liars > 0, "the liar is caught: {f:?}");
    assert!(
        by_liars <= of_liars,
        "a lie is caught only on a pull of the liar"
    );
    assert_eq!(by_honest, 0, "no honest peer is taken for a liar");
    // Unbacked, the liar's four neighbours would pick it in a quarter of their rounds:
    // 4 x 1/4 of about 200 rounds. Backed off (10 s, doubling to 600 s), a few dozen.
    let rounds = 33 * 60 / 10;
    assert!(
        of_liars * 4 < rounds,
        "the liar is asked {of_liars} times of {pulls} pulls"
    );
    // And the honest network runs as without it.
    assert!(f.final_height > 20, "{f:?}");
}

/// The seed that found the withholder going on after the faults healed (its block of the
/// settling minutes reached the others only by their pulls, and the run ended on two tips).
/// Another change may make this seed draw other faults; it still checks every invariant.
#[test]
fn every_fault_heals_before_the_end_seed_10() {
    let cfg = Config {
        nodes: 16,
        members: 16,
        minutes: 30,
        seed: 10,
        topology: Topology::Random(4),
        faults: FaultSpec::Fixed(Faults::ALL),
        ..Config::default()
    };
    let out = sim::run(cfg);
    assert_eq!(out.violation, None, "{:?}", out.failure());
    assert!(out.figures.final_height > 30, "{:?}", out.figures);
}

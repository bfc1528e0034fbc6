//! `main.rs` stays glue (issue 33): subcommands live in the library, where they are tested;
//! the binary parses flags and maps results to exit codes, in under 250 lines.

#[test]
fn main_rs_stays_glue() {
    let main = include_str!("../src/main.rs");
    let lines = main.lines().count();
    assert!(
        lines < 250,
        "node/src/main.rs has {lines} lines: move the subcommand's code into the library"
    );
}

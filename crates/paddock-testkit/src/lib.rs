//! Test support for Paddock. [`contract`] is the backend contract suite: every backend
//! available on a machine must pass it, isolation attacks included.

pub mod contract;
pub mod model_server;

/// Whether a test that needs `what` must fail instead of skipping (CI sets
/// `PADDOCK_REQUIRE_<WHAT>=1`). Prints the reason when it skips.
pub fn require_or_skip(what: &str, available: bool, why: &str) -> bool {
    if available {
        return true;
    }
    let var = format!("PADDOCK_REQUIRE_{}", what.to_uppercase());
    if std::env::var(&var).as_deref() == Ok("1") {
        panic!("{var}=1 but {what} is not available: {why}");
    }
    eprintln!("SKIPPED ({what} unavailable): {why}");
    false
}

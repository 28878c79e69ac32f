//! What the benches share: how a distribution is printed.

use std::time::Duration;

/// Prints n / min / median / p90 of `xs` in milliseconds; returns the median.
pub fn stats(name: &str, mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| xs[((xs.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name:<56} n={:<4} min {:>8.2} ms   median {:>8.2} ms   p90 {:>8.2} ms",
        xs.len(),
        ms(xs[0]),
        ms(pct(0.5)),
        ms(pct(0.9))
    );
    pct(0.5)
}

//! What a model call costs: a price table (USD per million tokens for input, output,
//! cache reads and cache writes), built-in list prices for a few well-known models,
//! overridable from config, and exact cost arithmetic.
//!
//! Costs are computed exactly in integer picodollars (10⁻¹² USD) and reported both as a
//! decimal string in minor units (cents, like the wire's `{amount, currency: "USD"}`)
//! and as an `f64` of dollars. A model the table does not know costs 0 and says so
//! (`priced: false`), so metering never fails a call.

use crate::provider::Usage;
use crate::ProviderError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, AddAssign};

/// USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    /// Writes to the prompt cache (Anthropic's 5-minute cache; OpenAI reports none).
    pub cache_write: f64,
}

impl Price {
    pub const fn new(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Self {
        Price {
            input,
            output,
            cache_read,
            cache_write,
        }
    }

    fn validate(&self, model: &str) -> Result<(), ProviderError> {
        for (what, v) in [
            ("input", self.input),
            ("output", self.output),
            ("cache_read", self.cache_read),
            ("cache_write", self.cache_write),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(ProviderError::Config(format!(
                    "price of {model:?}: {what} must be a non-negative number of USD per million tokens, not {v}"
                )));
            }
        }
        Ok(())
    }
}

/// A price as written in config: cache prices default to the input price.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
}

impl From<PriceOverride> for Price {
    fn from(o: PriceOverride) -> Self {
        Price::new(
            o.input,
            o.output,
            o.cache_read.unwrap_or(o.input),
            o.cache_write.unwrap_or(o.input),
        )
    }
}

/// Built-in defaults: the providers' public list prices (USD per million tokens) when
/// this table was written. They are defaults only: config overrides them, and a
/// deployment with negotiated prices should.
pub const BUILTIN_PRICES: &[(&str, Price)] = &[
    // Anthropic: cache reads at 0.1x input, 5-minute cache writes at 1.25x input.
    ("claude-opus-4-6", Price::new(5.0, 25.0, 0.50, 6.25)),
    ("claude-sonnet-4-6", Price::new(3.0, 15.0, 0.30, 3.75)),
    ("claude-haiku-4-5", Price::new(1.0, 5.0, 0.10, 1.25)),
    // OpenAI: cached input at half price; no cache-write charge.
    ("gpt-4o", Price::new(2.50, 10.0, 1.25, 2.50)),
    ("gpt-4o-mini", Price::new(0.15, 0.60, 0.075, 0.15)),
];

/// Where a price came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    Builtin,
    Config,
    /// The model is not in the table: priced at 0.
    Unknown,
}

/// An exact amount of US dollars, in picodollars (10⁻¹² USD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(u128);

impl Usd {
    pub const ZERO: Usd = Usd(0);
    const PICOS_PER_CENT: u128 = 10_000_000_000;

    pub fn from_picodollars(p: u128) -> Self {
        Usd(p)
    }

    pub fn picodollars(self) -> u128 {
        self.0
    }

    /// Dollars, as a float (for display and metrics).
    pub fn dollars(self) -> f64 {
        self.0 as f64 / 1e12
    }

    /// Parses cents written as a decimal string (`"300"`, `"0.45"`), the form of
    /// [`Usd::cents_string`] and of the API's `list_cost.amount`; digits past the
    /// picodollar are dropped. `None` for anything else.
    pub fn parse_cents(s: &str) -> Option<Usd> {
        let s = s.trim();
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        if !whole
            .chars()
            .chain(frac.chars())
            .all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut digits: String = frac.chars().take(10).collect();
        while digits.len() < 10 {
            digits.push('0');
        }
        let frac: u128 = digits.parse().ok()?;
        whole
            .checked_mul(Self::PICOS_PER_CENT)?
            .checked_add(frac)
            .map(Usd)
    }

    /// Cents as an exact decimal string without trailing zeros: `"300"`, `"0.45"`.
    pub fn cents_string(self) -> String {
        let whole = self.0 / Self::PICOS_PER_CENT;
        let frac = self.0 % Self::PICOS_PER_CENT;
        if frac == 0 {
            return whole.to_string();
        }
        let frac = format!("{frac:010}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, o: Usd) -> Usd {
        Usd(self.0.saturating_add(o.0))
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, o: Usd) {
        *self = *self + o;
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.6}", self.dollars())
    }
}

/// The wire's money object: `{"amount": "<cents as decimal string>", "currency": "USD"}`.
pub use paddock_core::common::Money as ListCost;

/// The cost of one model call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cost {
    /// The model as asked for.
    pub model: String,
    /// The table entry that priced it (`None` when unknown).
    pub priced_as: Option<String>,
    pub source: PriceSource,
    /// False when the model is unknown and the cost is 0 for that reason.
    pub priced: bool,
    /// Cents, exact, as a decimal string.
    pub amount: String,
    pub currency: &'static str,
    /// Dollars, as a float.
    pub usd: f64,
    #[serde(skip)]
    pub exact: Usd,
}

impl Cost {
    pub fn list_cost(&self) -> ListCost {
        ListCost {
            amount: self.amount.clone(),
            currency: self.currency.to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    price: Price,
    /// Picodollars per token for input, output, cache read, cache write.
    picos: [u128; 4],
    source: PriceSource,
}

impl Entry {
    fn new(price: Price, source: PriceSource) -> Self {
        // USD per million tokens = picodollars per token × 10⁻⁶: scale by 10⁶.
        let p = |usd_per_mtok: f64| (usd_per_mtok * 1e6).round().max(0.0) as u128;
        Entry {
            price,
            picos: [
                p(price.input),
                p(price.output),
                p(price.cache_read),
                p(price.cache_write),
            ],
            source,
        }
    }
}

/// Prices by model id.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceTable {
    entries: BTreeMap<String, Entry>,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl PriceTable {
    /// An empty table: every model unknown.
    pub fn empty() -> Self {
        PriceTable {
            entries: BTreeMap::new(),
        }
    }

    /// The built-in list prices ([`BUILTIN_PRICES`]).
    pub fn builtin() -> Self {
        PriceTable {
            entries: BUILTIN_PRICES
                .iter()
                .map(|(m, p)| (m.to_string(), Entry::new(*p, PriceSource::Builtin)))
                .collect(),
        }
    }

    /// Applies config prices, replacing or adding entries. Keys are model ids
    /// (`claude-sonnet-4-6`) or `provider/model` to price one provider's model apart.
    pub fn with_overrides<'a>(
        mut self,
        overrides: impl IntoIterator<Item = (&'a String, &'a PriceOverride)>,
    ) -> Result<Self, ProviderError> {
        for (model, o) in overrides {
            self.set(model, Price::from(*o), PriceSource::Config)?;
        }
        Ok(self)
    }

    /// Sets one model's price (as config would).
    pub fn set(
        &mut self,
        model: &str,
        price: Price,
        source: PriceSource,
    ) -> Result<(), ProviderError> {
        if model.trim().is_empty() {
            return Err(ProviderError::Config("a price needs a model name".into()));
        }
        price.validate(model)?;
        self.entries
            .insert(model.trim().to_string(), Entry::new(price, source));
        Ok(())
    }

    /// The price of `model` and the entry that priced it. Tries, in order: the name as
    /// given (`provider/model` or bare), the bare model id, then both without a date or
    /// `-latest` suffix (`gpt-4o-2024-08-06` → `gpt-4o`).
    pub fn lookup(&self, model: &str) -> Option<(&str, Price, PriceSource)> {
        let bare = model.split_once('/').map(|(_, m)| m);
        let candidates = [Some(model), bare]
            .into_iter()
            .flatten()
            .flat_map(|m| [m.to_string(), strip_version_suffix(m).to_string()]);
        for c in candidates {
            if let Some((k, e)) = self.entries.get_key_value(&c) {
                return Some((k.as_str(), e.price, e.source));
            }
        }
        None
    }

    /// The cost of one call of `model` that used `usage`.
    pub fn cost(&self, model: &str, usage: &Usage) -> Cost {
        let found = self
            .lookup(model)
            .and_then(|(k, _, _)| self.entries.get(k).map(|e| (k.to_string(), *e)));
        let (priced_as, exact, source) = match found {
            Some((k, e)) => {
                let t = [
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_read_input_tokens,
                    usage.cache_creation_input_tokens,
                ];
                let picos = t.iter().zip(e.picos.iter()).fold(0u128, |acc, (n, p)| {
                    acc.saturating_add((*n as u128).saturating_mul(*p))
                });
                (Some(k), Usd(picos), e.source)
            }
            None => (None, Usd::ZERO, PriceSource::Unknown),
        };
        Cost {
            model: model.to_string(),
            priced: priced_as.is_some(),
            priced_as,
            source,
            amount: exact.cents_string(),
            currency: "USD",
            usd: exact.dollars(),
            exact,
        }
    }
}

/// `gpt-4o-2024-08-06` → `gpt-4o`, `claude-haiku-4-5-20251001` → `claude-haiku-4-5`,
/// `claude-sonnet-4-6-latest` → `claude-sonnet-4-6`; anything else unchanged.
fn strip_version_suffix(model: &str) -> &str {
    if let Some(m) = model.strip_suffix("-latest") {
        return m;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((head, tail)) = model.rsplit_once('-') {
        if tail.len() == 8 && digits(tail) {
            return head;
        }
    }
    // -YYYY-MM-DD
    let parts: Vec<&str> = model.rsplitn(4, '-').collect();
    if let [d, m, y, head] = parts.as_slice() {
        if y.len() == 4 && m.len() == 2 && d.len() == 2 && digits(y) && digits(m) && digits(d) {
            return head;
        }
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(i: u64, o: u64, cr: u64, cw: u64) -> Usage {
        Usage {
            input_tokens: i,
            output_tokens: o,
            cache_read_input_tokens: cr,
            cache_creation_input_tokens: cw,
        }
    }

    #[test]
    fn builtin_prices_cost_calls_exactly() {
        let t = PriceTable::builtin();
        // 1M input + 1M output of Sonnet: $3 + $15 = 1800 cents.
        let c = t.cost("claude-sonnet-4-6", &usage(1_000_000, 1_000_000, 0, 0));
        assert_eq!(c.amount, "1800");
        assert_eq!(c.currency, "USD");
        assert!((c.usd - 18.0).abs() < 1e-9);
        assert!(c.priced);
        assert_eq!(c.source, PriceSource::Builtin);
        // 1000 input tokens at $3/M = $0.003 = 0.3 cents.
        assert_eq!(
            t.cost("claude-sonnet-4-6", &usage(1000, 0, 0, 0)).amount,
            "0.3"
        );
        // Cache-aware: 10k cache reads at $0.30/M + 2k cache writes at $3.75/M
        // = $0.003 + $0.0075 = 1.05 cents.
        let c = t.cost("claude-sonnet-4-6", &usage(0, 0, 10_000, 2_000));
        assert_eq!(c.amount, "1.05");
        // One token of gpt-4o-mini input: $0.15/M = 0.000015 cents, exactly.
        assert_eq!(t.cost("gpt-4o-mini", &usage(1, 0, 0, 0)).amount, "0.000015");
        assert_eq!(t.cost("gpt-4o", &usage(0, 0, 0, 0)).amount, "0");
        let opus = t.cost("claude-opus-4-6", &usage(100, 200, 300, 400));
        // 100×5 + 200×25 + 300×0.5 + 400×6.25 = 500+5000+150+2500 = 8150 µ$ = 0.815 cents.
        assert_eq!(opus.amount, "0.815");
        let haiku = t.cost("claude-haiku-4-5", &usage(1_000_000, 0, 0, 0));
        assert_eq!(haiku.amount, "100");
    }

    #[test]
    fn unknown_models_cost_zero_and_say_so() {
        let c = PriceTable::builtin().cost("mystery-1", &usage(5_000, 5_000, 0, 0));
        assert!(!c.priced);
        assert_eq!(c.source, PriceSource::Unknown);
        assert_eq!(c.priced_as, None);
        assert_eq!(c.amount, "0");
        assert_eq!(c.usd, 0.0);
        let v = serde_json::to_value(&c).expect("json");
        assert_eq!(v["priced"], serde_json::json!(false));
        assert_eq!(
            serde_json::to_value(c.list_cost()).expect("json"),
            serde_json::json!({"amount": "0", "currency": "USD"})
        );
    }

    #[test]
    fn provider_prefixes_and_dated_ids_find_their_price() {
        let t = PriceTable::builtin();
        for m in [
            "anthropic/claude-sonnet-4-6",
            "claude-sonnet-4-6-20260101",
            "claude-sonnet-4-6-latest",
            "openrouter/claude-sonnet-4-6",
        ] {
            assert_eq!(
                t.lookup(m).map(|(k, _, _)| k),
                Some("claude-sonnet-4-6"),
                "{m}"
            );
        }
        assert_eq!(
            t.lookup("gpt-4o-mini-2024-07-18").map(|(k, _, _)| k),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            t.lookup("gpt-4o-2024-08-06").map(|(k, _, _)| k),
            Some("gpt-4o")
        );
        assert_eq!(t.lookup("gpt-4o-audio-preview"), None);
    }

    #[test]
    fn config_overrides_builtins_and_adds_models() {
        let overrides: BTreeMap<String, PriceOverride> = serde_json::from_value(serde_json::json!({
            "claude-sonnet-4-6": {"input": 2.0, "output": 10.0, "cache_read": 0.2, "cache_write": 2.5},
            "local/llama-3": {"input": 0.1, "output": 0.2},
        }))
        .expect("parses");
        let t = PriceTable::builtin()
            .with_overrides(&overrides)
            .expect("valid");
        let c = t.cost("anthropic/claude-sonnet-4-6", &usage(1_000_000, 0, 0, 0));
        assert_eq!(c.amount, "200");
        assert_eq!(c.source, PriceSource::Config);
        // Cache prices default to the input price.
        let c = t.cost("local/llama-3", &usage(0, 0, 1_000_000, 0));
        assert_eq!(c.amount, "10");
        // Only that provider's llama-3 is priced.
        assert!(!t.cost("other/llama-3", &usage(1, 1, 1, 1)).priced);
        // Builtins not overridden stay.
        assert_eq!(t.cost("gpt-4o", &usage(1_000_000, 0, 0, 0)).amount, "250");

        let bad: BTreeMap<String, PriceOverride> =
            serde_json::from_value(serde_json::json!({"x": {"input": -1.0, "output": 1.0}}))
                .expect("parses");
        let err = PriceTable::builtin()
            .with_overrides(&bad)
            .expect_err("negative price");
        assert!(err.to_string().contains("input"), "{err}");
    }

    #[test]
    fn usd_sums_and_formats() {
        let mut total = Usd::ZERO;
        total += Usd::from_picodollars(5_000_000_000); // half a cent
        total += Usd::from_picodollars(10_000_000_000); // one cent
        assert_eq!(total.cents_string(), "1.5");
        assert_eq!(total.to_string(), "$0.015000");
        assert_eq!(Usd::from_picodollars(1).cents_string(), "0.0000000001");
    }

    #[test]
    fn cents_parse_back() {
        for v in [0u128, 1, 10_000_000_000, 4_500_000_000, 123_456_789_012_345] {
            let u = Usd::from_picodollars(v);
            assert_eq!(Usd::parse_cents(&u.cents_string()), Some(u));
        }
        assert_eq!(
            Usd::parse_cents(".5"),
            Some(Usd::from_picodollars(5_000_000_000))
        );
        for bad in ["", ".", "-1", "1e3", "a", "1.2.3"] {
            assert_eq!(Usd::parse_cents(bad), None, "{bad}");
        }
    }
}

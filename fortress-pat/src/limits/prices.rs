//! The price table: USD per million tokens by model, turned into micro-USD per call.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::api::Usage;

/// USD prices per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Cache writes.
    #[serde(default)]
    pub cache_write: f64,
    /// Cache reads.
    #[serde(default)]
    pub cache_read: f64,
}

impl Price {
    /// Input and output prices; cache writes at 1.25× and reads at 0.1× input.
    pub fn per_mtok(input: f64, output: f64) -> Self {
        Self {
            input,
            output,
            cache_write: input * 1.25,
            cache_read: input * 0.1,
        }
    }
}

/// Prices by model id (longest matching prefix wins), with a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    /// Model id prefix → price.
    #[serde(default)]
    pub models: HashMap<String, Price>,
    /// For models not listed.
    pub default: Price,
    /// What Message Batches requests cost relative to the listed prices (the API bills
    /// batches at half price).
    #[serde(default = "half")]
    pub batch_factor: f64,
}

fn half() -> f64 {
    0.5
}

impl Default for PriceTable {
    fn default() -> Self {
        Self {
            models: HashMap::new(),
            default: Price::per_mtok(3.0, 15.0),
            batch_factor: half(),
        }
    }
}

impl PriceTable {
    /// Adds a model price.
    #[must_use]
    pub fn with_model(mut self, prefix: &str, price: Price) -> Self {
        self.models.insert(prefix.to_owned(), price);
        self
    }

    /// The price of a model.
    pub fn price(&self, model: &str) -> Price {
        self.models
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.default, |(_, p)| *p)
    }

    /// Cost in micro-USD, rounded up.
    pub fn cost_micros(&self, model: &str, usage: &Usage) -> u64 {
        self.scaled_cost_micros(model, usage, 1.0)
    }

    /// Cost in micro-USD of a request made inside a Message Batch.
    pub fn batch_cost_micros(&self, model: &str, usage: &Usage) -> u64 {
        self.scaled_cost_micros(model, usage, self.batch_factor)
    }

    fn scaled_cost_micros(&self, model: &str, usage: &Usage, factor: f64) -> u64 {
        let p = self.price(model);
        // Prices are USD per million tokens, so tokens × price is micro-USD.
        let micros = usage.input_tokens as f64 * p.input
            + usage.output_tokens as f64 * p.output
            + usage.cache_creation_input_tokens as f64 * p.cache_write
            + usage.cache_read_input_tokens as f64 * p.cache_read;
        (micros * factor).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_and_batches_cost_half() {
        let table = PriceTable::default()
            .with_model("claude", Price::per_mtok(1.0, 2.0))
            .with_model("claude-opus", Price::per_mtok(15.0, 75.0));
        assert_eq!(table.price("claude-opus-4-1").input, 15.0);
        assert_eq!(table.price("claude-haiku").input, 1.0);
        assert_eq!(table.price("other").input, 3.0);
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 1_000,
            cache_read_input_tokens: 1_000,
            ..Usage::default()
        };
        // 1000 × 15 + 1000 × 75 + 1000 × 1.5 micro-USD.
        assert_eq!(table.cost_micros("claude-opus-4-1", &usage), 91_500);
        assert_eq!(table.batch_cost_micros("claude-opus-4-1", &usage), 45_750);
    }
}

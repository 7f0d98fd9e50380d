//! Message Batches in the ledger. Creating a batch reserves the worst case of all its
//! requests (as any message does), but the reservation outlives the call: it is held for
//! the batch, recorded with the batch's owner, and replaced by the real usage when the
//! batch's results are metered — once, at the batch price, against the creator's budgets.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fortress_core::call::Call;

use super::{
    BATCH_REQUESTS_ATTRIBUTE, BatchOwner, BudgetSettlement, COUNTER_GRACE, Consumption, Ledger,
    LedgerError, MeterKey, MeterRow, Principal, Settlement, Window, lock, run_soon,
};
use crate::api::Usage;

/// How long a batch's reservation holds in a shared store if its results are never read
/// through the gateway: the API keeps results for 29 days.
pub(super) const BATCH_LEASE: Duration = Duration::from_secs(30 * 86_400);

impl Ledger {
    /// The worst case of a batch being created: every request's `max_tokens`, plus the
    /// whole body's input estimate priced at the dearest model of the batch.
    pub(super) fn batch_reserve(&self, call: &Call) -> Option<Consumption> {
        let requests = call
            .attributes
            .extra
            .get(BATCH_REQUESTS_ATTRIBUTE)?
            .as_array()?;
        let prices = &self.config.prices;
        let input = self.input_estimate(call);
        let mut reserve = Consumption {
            tokens: input,
            micros: 0,
        };
        let mut input_micros = 0;
        for request in requests {
            let model = request["model"].as_str().unwrap_or_default();
            let max_tokens = request["max_tokens"].as_u64().unwrap_or(0);
            let output = Usage {
                output_tokens: max_tokens,
                ..Usage::default()
            };
            let all_input = Usage {
                input_tokens: input,
                ..Usage::default()
            };
            reserve.tokens += max_tokens;
            reserve.micros += prices.batch_cost_micros(model, &output);
            input_micros = input_micros.max(prices.batch_cost_micros(model, &all_input));
        }
        reserve.micros += input_micros;
        Some(reserve)
    }

    /// A batch was created: its reservation (made when the call was admitted) is kept for
    /// the batch instead of being settled, and recorded with its owner.
    pub async fn hold_for_batch(
        &self,
        request_id: &str,
        batch_id: &str,
        owner: &Principal,
    ) -> Result<(), LedgerError> {
        lock(&self.snapshots).remove(request_id);
        let budgets = lock(&self.inflight)
            .remove(request_id)
            .map(|r| r.budgets.into_iter().map(|b| b.key).collect())
            .unwrap_or_default();
        let hold = BatchOwner {
            principal: owner.clone(),
            request_id: request_id.to_owned(),
            budgets,
        };
        let name = format!("{}/{batch_id}", owner.workspace);
        Ok(self.metering.store().set_batch_owner(&name, &hold).await?)
    }

    /// Meters the results of a Message Batch once (later reads of the same results are
    /// not counted again) and replaces the batch's reservation by them, against the
    /// budgets of whoever created the batch (the `reader`'s current ones when it was not
    /// created through this gateway). `Ok(false)`: already metered.
    pub async fn meter_batch(
        &self,
        batch_id: &str,
        reader: &Principal,
        results: &[(String, Usage)],
    ) -> Result<bool, LedgerError> {
        let name = format!("{}/{batch_id}", reader.workspace);
        if !self.metering.store().claim_batch(&name).await? {
            return Ok(false);
        }
        let owner = self.metering.store().batch_owner(&name).await?;
        let principal = owner.as_ref().map_or(reader, |o| &o.principal);
        let now = Utc::now();
        let day = Window::Day.period(now);
        let mut total = Consumption::default();
        for (model, usage) in results {
            let micros = self.config.prices.batch_cost_micros(model, usage);
            let row = MeterRow::of(usage, micros);
            total.tokens += row.tokens();
            total.micros += micros;
            let key = MeterKey {
                day: day.clone(),
                workspace: principal.workspace.clone(),
                key: principal.key.clone(),
                user: principal.user.clone(),
                team: principal.team.clone(),
                model: model.clone(),
            };
            self.metering.record(key, row);
        }
        let (request_id, keys) = match owner {
            // The counters reserved at creation (in creation's periods), in the same
            // order, so the store releases exactly that reservation.
            Some(owner) => (owner.request_id, owner.budgets),
            None => (
                String::new(),
                self.budget_demands(principal, Consumption::default(), now)
                    .into_iter()
                    .map(|b| b.key)
                    .collect(),
            ),
        };
        let settlement = Settlement {
            request_id,
            rates: Vec::new(),
            budgets: keys
                .into_iter()
                .map(|key| BudgetSettlement {
                    ttl: key.window.until_reset(now) + COUNTER_GRACE,
                    key,
                    used: total,
                })
                .collect(),
        };
        if !settlement.budgets.is_empty() {
            self.store.settle(&settlement).await?;
        }
        Ok(true)
    }

    /// [`hold_for_batch`](Self::hold_for_batch) from synchronous code.
    pub fn hold_for_batch_soon(
        self: &Arc<Self>,
        request_id: String,
        batch_id: String,
        owner: Principal,
    ) {
        let ledger = self.clone();
        run_soon(
            async move {
                if let Err(error) = ledger.hold_for_batch(&request_id, &batch_id, &owner).await {
                    tracing::error!(%error, "batch owner not recorded; its results will be metered to their reader");
                    metrics::counter!("fortress_pat_batch_meter_failures_total").increment(1);
                }
            },
            "batch owner record",
        );
    }

    /// [`meter_batch`](Self::meter_batch) from synchronous code, like
    /// [`settle_soon`](Self::settle_soon); failures are logged and counted.
    pub fn meter_batch_soon(
        self: &Arc<Self>,
        batch_id: String,
        principal: Principal,
        results: Vec<(String, Usage)>,
    ) {
        let ledger = self.clone();
        run_soon(
            async move {
                if let Err(error) = ledger.meter_batch(&batch_id, &principal, &results).await {
                    tracing::error!(%error, "batch results could not be metered");
                    metrics::counter!("fortress_pat_batch_meter_failures_total").increment(1);
                }
            },
            "batch metering",
        );
    }
}

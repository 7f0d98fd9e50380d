//! Message Batches in the ledger: who created a batch, and its results metered once, at
//! the batch price, against its creator's budgets.

use std::sync::Arc;

use chrono::Utc;

use super::{
    BudgetSettlement, Consumption, Ledger, LedgerError, MeterKey, MeterRow, Principal, Settlement,
    Window, run_soon,
};
use crate::api::Usage;

impl Ledger {
    /// Remembers who created a Message Batch, so its usage is metered as theirs.
    pub async fn record_batch_owner(
        &self,
        batch_id: &str,
        owner: &Principal,
    ) -> Result<(), LedgerError> {
        let name = format!("{}/{batch_id}", owner.workspace);
        Ok(self.metering.store().set_batch_owner(&name, owner).await?)
    }

    /// Meters the results of a Message Batch once (later reads of the same results are
    /// not counted again) and adds them to the budgets of whoever created the batch (the
    /// `reader` when it was not created through this gateway). `Ok(false)`: already
    /// metered.
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
        let principal = owner.as_ref().unwrap_or(reader);
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
        let settlement = Settlement {
            request_id: String::new(),
            rates: Vec::new(),
            budgets: self
                .budget_demands(principal, Consumption::default(), now)
                .into_iter()
                .map(|b| BudgetSettlement {
                    key: b.key,
                    reserved: Consumption::default(),
                    used: total,
                    ttl: b.ttl,
                })
                .collect(),
        };
        if !settlement.budgets.is_empty() {
            self.store.settle(&settlement).await?;
        }
        Ok(true)
    }

    /// [`record_batch_owner`](Self::record_batch_owner) from synchronous code.
    pub fn record_batch_owner_soon(self: &Arc<Self>, batch_id: String, owner: Principal) {
        let ledger = self.clone();
        run_soon(
            async move {
                if let Err(error) = ledger.record_batch_owner(&batch_id, &owner).await {
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

//! Budgets after a restart: this month's usage rebuilt from the metering store.

use std::collections::HashMap;

use chrono::Utc;

use super::{BudgetKey, COUNTER_GRACE, Consumption, Ledger, LedgerError, Principal, Window};

impl Ledger {
    /// Rebuilds this month's budget usage from the metering store after a restart (each
    /// counter only if the limit store does not know it already, e.g. a shared Redis).
    pub async fn restore(&self) -> Result<(), LedgerError> {
        if self.config.budgets.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let month = Window::Month.period(now);
        let today = Window::Day.period(now);
        let rows = self.metering.rows(&format!("{month}-01"), &today).await?;
        let mut totals: HashMap<BudgetKey, Consumption> = HashMap::new();
        for rule in &self.config.budgets {
            let period = rule.window.period(now);
            for (key, row) in &rows {
                if !rule.window.contains(&period, &key.day) {
                    continue;
                }
                let principal = Principal {
                    workspace: key.workspace.clone(),
                    key: key.key.clone(),
                    user: key.user.clone(),
                    team: key.team.clone(),
                };
                let Some(id) = principal.id(rule.scope) else {
                    continue;
                };
                let counter = BudgetKey {
                    scope: rule.scope,
                    id: id.to_owned(),
                    window: rule.window,
                    period: period.clone(),
                };
                let total = totals.entry(counter).or_default();
                total.tokens += row.tokens();
                total.micros += row.cost_micros;
            }
        }
        for (key, used) in totals {
            let ttl = key.window.until_reset(now) + COUNTER_GRACE;
            self.store.seed(&key, used, ttl).await?;
        }
        Ok(())
    }
}

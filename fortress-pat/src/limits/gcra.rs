//! GCRA arithmetic shared by the stores (the Redis script mirrors it line for line).
//!
//! A bucket of capacity `C` per minute is a theoretical arrival time `tat`: each unit
//! pushes it `60 s / C` later, and a demand fits while `tat` stays within one minute of
//! now. Times are microseconds on the store's clock.

/// One minute in microseconds: the burst every bucket allows.
pub(crate) const WINDOW_US: f64 = 60_000_000.0;
/// The longest retry hint given.
const MAX_RETRY_US: f64 = 86_400_000_000.0;

/// Microseconds one unit occupies.
pub(crate) fn interval_us(per_minute: u64) -> f64 {
    WINDOW_US / per_minute.max(1) as f64
}

/// Taking `amount` now: `Ok(new tat)` or `Err(µs until it would fit)`.
pub(crate) fn take(tat: f64, now: f64, per_minute: u64, amount: u64) -> Result<f64, f64> {
    let new = tat.max(now) + amount as f64 * interval_us(per_minute);
    let over = new - now - WINDOW_US;
    if over > 0.0 {
        Err(over.min(MAX_RETRY_US))
    } else {
        Ok(new)
    }
}

/// Giving back `refund` units (negative: taking more).
pub(crate) fn refund(tat: f64, now: f64, per_minute: u64, refund: i64) -> f64 {
    (tat.max(now) - refund as f64 * interval_us(per_minute)).max(now)
}

/// `(units remaining, µs until full)`.
pub(crate) fn state(tat: f64, now: f64, per_minute: u64) -> (u64, f64) {
    let busy = (tat - now).max(0.0);
    let remaining = ((WINDOW_US - busy) / interval_us(per_minute))
        .floor()
        .max(0.0);
    (remaining as u64, busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_one_minute_and_refills_steadily() {
        // 2 per minute: one unit every 30 s.
        let t1 = take(0.0, 0.0, 2, 1).unwrap();
        assert_eq!(state(t1, 0.0, 2).0, 1);
        let t2 = take(t1, 0.0, 2, 1).unwrap();
        assert_eq!(state(t2, 0.0, 2), (0, WINDOW_US));
        let retry = take(t2, 0.0, 2, 1).unwrap_err();
        assert_eq!(retry, 30_000_000.0);
        // 30 s later one unit fits again.
        assert!(take(t2, 30_000_000.0, 2, 1).is_ok());
        // A refund frees room, never beyond a full bucket.
        assert_eq!(refund(t2, 0.0, 2, 1), t1);
        assert_eq!(refund(t2, 0.0, 2, 10), 0.0);
        // A demand larger than the bucket never fits; the hint is bounded.
        assert!(take(0.0, 0.0, 2, 1_000_000_000).unwrap_err() <= MAX_RETRY_US);
    }
}

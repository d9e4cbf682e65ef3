//! Windowed statistics with the semantics of Kafka's metrics library, as MM2 reports them:
//! a window of two samples of 30 s; min, max and average over the samples in the window, and
//! rates as the total over the window divided by its length.

use std::time::Duration;

/// Length of one sample (Kafka's `metrics.sample.window.ms` default).
pub const SAMPLE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    total: f64,
}

impl Sample {
    fn add(&mut self, value: f64) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.sum += value;
    }
}

/// Min, max, average and rate over the last one to two samples. Time is given by the caller
/// (milliseconds since any fixed point), so it is testable without a clock.
#[derive(Clone, Debug, Default)]
pub struct Window {
    current: Sample,
    previous: Sample,
    current_start_ms: u64,
    started: bool,
    last: Option<f64>,
}

impl Window {
    fn roll(&mut self, now_ms: u64) {
        if !self.started {
            self.started = true;
            self.current_start_ms = now_ms;
            return;
        }
        let sample_ms = u64::try_from(SAMPLE.as_millis()).unwrap_or(u64::MAX);
        let elapsed = now_ms.saturating_sub(self.current_start_ms);
        if elapsed >= 2 * sample_ms {
            self.previous = Sample::default();
            self.current = Sample::default();
            self.current_start_ms = now_ms;
        } else if elapsed >= sample_ms {
            self.previous = self.current;
            self.current = Sample::default();
            self.current_start_ms += sample_ms;
        }
    }

    /// Records a value (a latency, an age).
    pub fn record(&mut self, now_ms: u64, value: f64) {
        self.roll(now_ms);
        self.current.add(value);
        self.last = Some(value);
    }

    /// Adds to the rate's total (records, bytes) without affecting min/max/avg.
    pub fn add_total(&mut self, now_ms: u64, amount: f64) {
        self.roll(now_ms);
        self.current.total += amount;
    }

    /// Records a batch summarised as count, sum, min and max.
    pub fn record_summary(
        &mut self,
        now_ms: u64,
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
        last: f64,
    ) {
        if count == 0 {
            self.roll(now_ms);
            return;
        }
        self.roll(now_ms);
        let s = &mut self.current;
        if s.count == 0 {
            s.min = min;
            s.max = max;
        } else {
            s.min = s.min.min(min);
            s.max = s.max.max(max);
        }
        s.count += count;
        s.sum += sum;
        self.last = Some(last);
    }

    fn both(&self) -> [&Sample; 2] {
        [&self.previous, &self.current]
    }

    /// The last value recorded, if any.
    pub fn last(&self) -> Option<f64> {
        self.last
    }

    /// Minimum over the window (NaN when empty, as Kafka reports).
    pub fn min(&mut self, now_ms: u64) -> f64 {
        self.roll(now_ms);
        self.both()
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| s.min)
            .reduce(f64::min)
            .unwrap_or(f64::NAN)
    }

    /// Maximum over the window (NaN when empty).
    pub fn max(&mut self, now_ms: u64) -> f64 {
        self.roll(now_ms);
        self.both()
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| s.max)
            .reduce(f64::max)
            .unwrap_or(f64::NAN)
    }

    /// Average over the window (NaN when empty).
    pub fn avg(&mut self, now_ms: u64) -> f64 {
        self.roll(now_ms);
        let (count, sum) = self
            .both()
            .iter()
            .fold((0u64, 0.0), |(c, s), x| (c + x.count, s + x.sum));
        if count == 0 {
            f64::NAN
        } else {
            #[allow(clippy::cast_precision_loss)]
            let c = count as f64;
            sum / c
        }
    }

    /// Total per second over the window's elapsed length (at least one sample's worth of
    /// time once two samples exist, as Kafka's `Rate`).
    pub fn rate(&mut self, now_ms: u64) -> f64 {
        self.roll(now_ms);
        let total: f64 = self.both().iter().map(|s| s.total).sum();
        let sample_ms = u64::try_from(SAMPLE.as_millis()).unwrap_or(u64::MAX);
        let has_previous = self.previous.total > 0.0 || self.previous.count > 0;
        let mut elapsed_ms = now_ms.saturating_sub(self.current_start_ms);
        if has_previous {
            elapsed_ms += sample_ms;
        }
        #[allow(clippy::cast_precision_loss)]
        let secs = (elapsed_ms.max(1000)) as f64 / 1000.0;
        total / secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_avg_over_two_samples() {
        let mut w = Window::default();
        w.record(0, 10.0);
        w.record(1_000, 30.0);
        assert!((w.avg(2_000) - 20.0).abs() < 1e-9);
        w.record(31_000, 5.0); // second sample
        assert!((w.min(31_000) - 5.0).abs() < 1e-9);
        assert!((w.max(31_000) - 30.0).abs() < 1e-9);
        // Both old samples expire after two windows.
        assert!(w.min(95_000).is_nan());
        assert_eq!(w.last(), Some(5.0));
    }

    #[test]
    fn rates_divide_by_elapsed_time() {
        let mut w = Window::default();
        w.add_total(0, 0.0);
        w.add_total(10_000, 500.0);
        assert!((w.rate(10_000) - 50.0).abs() < 1e-9);
        w.record_summary(12_000, 2, 6.0, 1.0, 5.0, 5.0);
        assert!((w.avg(12_000) - 3.0).abs() < 1e-9);
    }
}

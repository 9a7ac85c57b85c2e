//! How the history cache holds a series: about 2 bytes a point instead of 8.
//!
//! A cached history is on a regular grid (a start, a step, a value or a gap per step), so no
//! timestamp is stored per point. Values are kept in blocks of [`BLOCK`] steps, each block an
//! offset and a scale (`f64`) and one `u16` code per step: `value = min + code * scale`, with
//! [`GAP`] for a missing point. The newest steps (at least the `open` ones the next fetch may
//! rewrite, see [`CompactSeries::seal`]) stay `f64` until their block is complete, so a block is
//! encoded once, from the values as fetched, and never requantised.
//!
//! What the encoding keeps (the tests of this file hold it to it):
//! - a gap is a gap (never a value, never zero), and a non-finite value is a gap;
//! - a constant block is exact, and so is a block of whole numbers within a range of 65,534
//!   (request counts per minute, say); the lowest value of every block is exact;
//! - any other value is within half a code of it, `(max - min) / 131,068` of its block's
//!   range: 0.00076% of the range, far below the noise a forecast sees;
//! - huge (up to `f64::MAX`), tiny and negative values round-trip within that bound, without
//!   overflow.
//!
//! Pure: no IO, no clock.

use crate::planner::series::Series;

/// Steps per encoded block: 2 h 8 min at 1 minute. Each block costs 16 bytes besides its codes
/// (0.125 bytes a point); an outlier coarsens only the other values of its own block.
pub const BLOCK: usize = 128;

/// The code of a gap.
const GAP: u16 = u16::MAX;
/// The highest code of a value: codes `0..=TOP` are values, `min + code * scale`.
const TOP: f64 = (u16::MAX - 1) as f64;
/// Steps the `f64` tail grows by at least: it is grown by what is needed, not by doubling.
const TAIL_GROWTH: usize = 16;
/// Whole numbers below this are exact in an `f64`.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// An encoded block: its values are `min + code * scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Block {
    min: f64,
    scale: f64,
}

impl Block {
    /// Encodes `values` (at most [`BLOCK`]) into `codes`, and returns the block's offset and
    /// scale.
    fn encode(values: &[f64], codes: &mut Vec<u16>) -> Block {
        let finite = || values.iter().copied().filter(|v| v.is_finite());
        let (min, max) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if min > max {
            // no value at all: every code a gap
            codes.extend(std::iter::repeat_n(GAP, values.len()));
            return Block {
                min: 0.0,
                scale: 0.0,
            };
        }
        let whole = finite().all(|v| v.fract() == 0.0 && v.abs() < EXACT_INTEGERS);
        let span = max - min;
        let scale = if whole && span <= TOP {
            // whole numbers in a small range: one code per unit, exact
            1.0
        } else if span.is_finite() {
            span / TOP
        } else {
            // min and max of opposite signs near f64::MAX: the range itself overflows
            max / TOP - min / TOP
        };
        let block = Block { min, scale };
        let huge = !span.is_finite();
        codes.extend(values.iter().map(|&v| block.code(v, huge)));
        block
    }

    /// The code of `v` (`huge`: the block's range overflows an `f64`, so halves are used).
    fn code(&self, v: f64, huge: bool) -> u16 {
        if !v.is_finite() {
            return GAP;
        }
        if self.scale == 0.0 {
            return 0;
        }
        let steps = if huge {
            (v * 0.5 - self.min * 0.5) / (self.scale * 0.5)
        } else {
            (v - self.min) / self.scale
        };
        steps.round().clamp(0.0, TOP) as u16
    }

    /// The values of `codes`, appended to `out`.
    fn decode(&self, codes: &[u16], out: &mut Vec<f64>) {
        let Block { min, scale } = *self;
        // the top of a block whose range overflows: computed in halves
        let huge = !(min + scale * TOP).is_finite();
        out.extend(codes.iter().map(|&c| match c {
            GAP => f64::NAN,
            c if huge => (min * 0.5 + f64::from(c) * scale * 0.5) * 2.0,
            c => min + f64::from(c) * scale,
        }));
    }
}

/// A regular series held compactly: whole blocks encoded, the newest steps as `f64`.
///
/// Slot `i` is at `origin + i * step`; `origin` is a block boundary (a multiple of
/// `BLOCK` steps on the series' grid), so trimming the oldest steps drops whole blocks and never
/// re-encodes. The first `skip` slots are before the series' start and are not part of it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactSeries {
    step: i64,
    origin: i64,
    skip: usize,
    /// The encoded blocks, oldest first; block `k` holds `codes[k * BLOCK..(k + 1) * BLOCK]`.
    blocks: Vec<Block>,
    codes: Vec<u16>,
    /// The slots after the encoded blocks.
    tail: Vec<f64>,
}

impl CompactSeries {
    /// An empty series whose first sample would be at `start`.
    pub fn empty(start: i64, step: i64) -> Self {
        assert!(step > 0, "series step must be positive");
        let skip = start.div_euclid(step).rem_euclid(BLOCK as i64) as usize;
        Self {
            step,
            origin: start - skip as i64 * step,
            skip,
            blocks: Vec::new(),
            codes: Vec::new(),
            tail: vec![f64::NAN; skip],
        }
    }

    /// `series`, with all but the newest `open` steps encoded.
    pub fn from_series(series: &Series, open: usize) -> Self {
        let mut s = Self::empty(series.start, series.step);
        s.tail.extend_from_slice(&series.values);
        s.codes
            .reserve_exact(s.tail.len().saturating_sub(open) / BLOCK * BLOCK);
        s.seal(open);
        s
    }

    pub fn step(&self) -> i64 {
        self.step
    }

    /// Slots from `origin` to the end, the skipped ones included.
    fn slots(&self) -> usize {
        self.codes.len() + self.tail.len()
    }

    /// Unix seconds of the first sample.
    pub fn start(&self) -> i64 {
        self.time_of(self.skip)
    }

    /// Unix seconds one step after the last sample.
    pub fn end(&self) -> i64 {
        self.time_of(self.slots())
    }

    fn time_of(&self, slot: usize) -> i64 {
        self.origin + slot as i64 * self.step
    }

    pub fn len(&self) -> usize {
        self.slots() - self.skip
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first slot at or after unix second `t` (within the series).
    fn slot_at_or_after(&self, t: i64) -> usize {
        let start = self.start();
        if t <= start {
            return self.skip;
        }
        let n = ((t - start) + self.step - 1) / self.step;
        self.skip + (n as usize).min(self.len())
    }

    /// Unix seconds of the first sample at or after `from` (the end, when there is none).
    pub fn start_from(&self, from: i64) -> i64 {
        self.time_of(self.slot_at_or_after(from))
    }

    /// Writes `(time, value)` samples, growing the series (with gaps) as needed; samples off
    /// the grid go to the nearest step, samples before the start are ignored (as
    /// [`Series::upsert`]). A sample in an encoded block decodes that block and the newer ones
    /// back to `f64` first (a clock that stepped back; normally only the open steps are written).
    pub fn upsert(&mut self, samples: &[(i64, f64)]) {
        let start = self.start();
        for &(t, v) in samples {
            let offset = t - start;
            if offset < 0 {
                continue;
            }
            let slot = self.skip + ((offset + self.step / 2) / self.step) as usize;
            if slot < self.codes.len() {
                self.unseal_from(slot / BLOCK);
            }
            let i = slot - self.codes.len();
            if i >= self.tail.len() {
                self.grow_tail(i + 1);
            }
            self.tail[i] = v;
        }
    }

    /// [`Self::upsert`] a block's worth of samples at a time, encoding after each all but the
    /// newest `open` steps ([`Self::seal`]): a first fetch of a whole history never holds more
    /// than two blocks as `f64`.
    pub fn write(&mut self, samples: &[(i64, f64)], open: usize) {
        for chunk in samples.chunks(BLOCK) {
            self.upsert(chunk);
            self.seal(open);
        }
    }

    /// Pads the tail with gaps to `len` slots, growing it by what is needed (at least
    /// [`TAIL_GROWTH`]), not by doubling.
    fn grow_tail(&mut self, len: usize) {
        let extra = len.saturating_sub(self.tail.len());
        if self.tail.capacity() < len {
            self.tail.reserve_exact(extra.max(TAIL_GROWTH));
        }
        self.tail.resize(len.max(self.tail.len()), f64::NAN);
    }

    /// Room for the codes of every whole block before unix second `end`, allocated at once (a
    /// first fetch knows its window).
    pub fn reserve_to(&mut self, end: i64) {
        if end <= self.origin {
            return;
        }
        let slots = ((end - self.origin) / self.step) as usize;
        let blocks = slots / BLOCK;
        self.codes
            .reserve_exact((blocks * BLOCK).saturating_sub(self.codes.len()));
        self.blocks
            .reserve_exact(blocks.saturating_sub(self.blocks.len()));
    }

    /// Decodes blocks `first..` back into the tail.
    fn unseal_from(&mut self, first: usize) {
        let mut values = Vec::with_capacity((self.blocks.len() - first) * BLOCK + self.tail.len());
        for k in first..self.blocks.len() {
            self.blocks[k].decode(&self.codes[k * BLOCK..(k + 1) * BLOCK], &mut values);
        }
        values.append(&mut self.tail);
        self.tail = values;
        self.blocks.truncate(first);
        self.codes.truncate(first * BLOCK);
    }

    /// Pads with gaps so the series reaches (but does not include) unix second `end`.
    pub fn extend_to(&mut self, end: i64) {
        if end > self.end() {
            let slots = ((end - self.origin) + self.step - 1) / self.step;
            self.grow_tail(slots as usize - self.codes.len());
        }
    }

    /// Keeps only samples at or after unix second `t`; whole blocks before it are freed.
    pub fn trim_before(&mut self, t: i64) {
        self.skip = self.slot_at_or_after(t);
        while self.skip >= BLOCK {
            if !self.blocks.is_empty() {
                self.blocks.remove(0);
                self.codes.drain(..BLOCK);
            } else if self.tail.len() >= BLOCK {
                self.tail.drain(..BLOCK);
            } else {
                break;
            }
            self.origin += BLOCK as i64 * self.step;
            self.skip -= BLOCK;
        }
    }

    /// Encodes every whole block of the tail but its newest `open` steps (the ones the next
    /// fetch may rewrite).
    pub fn seal(&mut self, open: usize) {
        let whole = self.tail.len().saturating_sub(open) / BLOCK;
        if whole == 0 {
            return;
        }
        // grow by what is needed, not by doubling: this is most of the cache's memory
        let needed = whole * BLOCK;
        if self.codes.capacity() - self.codes.len() < needed {
            self.codes.reserve_exact(needed);
        }
        self.blocks.reserve_exact(whole);
        for chunk in self.tail[..needed].chunks_exact(BLOCK) {
            let block = Block::encode(chunk, &mut self.codes);
            self.blocks.push(block);
        }
        self.tail.drain(..needed);
        // what the tail needs until its next block is whole
        if self.tail.capacity() > self.tail.len() + BLOCK {
            self.tail.shrink_to(self.tail.len() + TAIL_GROWTH);
        }
    }

    /// The samples from unix second `from` (at the earliest, the start) to the end, decoded.
    pub fn window(&self, from: i64) -> Series {
        let first = self.slot_at_or_after(from);
        let mut values = Vec::with_capacity(self.slots() - first);
        let sealed = self.codes.len();
        if first < sealed {
            let k0 = first / BLOCK;
            let mut block = Vec::with_capacity(BLOCK);
            for k in k0..self.blocks.len() {
                block.clear();
                self.blocks[k].decode(&self.codes[k * BLOCK..(k + 1) * BLOCK], &mut block);
                let from = if k == k0 { first - k0 * BLOCK } else { 0 };
                values.extend_from_slice(&block[from..]);
            }
        }
        values.extend_from_slice(&self.tail[first.saturating_sub(sealed)..]);
        Series::new(self.time_of(first), self.step, values)
    }

    /// Whether slot `i` holds a value (not a gap).
    fn is_value(&self, i: usize) -> bool {
        match i.checked_sub(self.codes.len()) {
            Some(j) => self.tail[j].is_finite(),
            None => self.codes[i] != GAP,
        }
    }

    /// The value of slot `i`, decoded.
    fn value(&self, i: usize) -> f64 {
        match i.checked_sub(self.codes.len()) {
            Some(j) => self.tail[j],
            None => {
                let mut one = Vec::with_capacity(1);
                self.blocks[i / BLOCK].decode(&self.codes[i..=i], &mut one);
                one[0]
            }
        }
    }

    /// The latest value at or after unix second `from`, as `(time, value)`.
    pub fn last_finite(&self, from: i64) -> Option<(i64, f64)> {
        let first = self.slot_at_or_after(from);
        (first..self.slots())
            .rev()
            .find(|&i| self.is_value(i))
            .map(|i| (self.time_of(i), self.value(i)))
    }

    /// How many values (not gaps) there are at or after unix second `from`.
    pub fn finite_count(&self, from: i64) -> usize {
        let first = self.slot_at_or_after(from);
        (first..self.slots()).filter(|&i| self.is_value(i)).count()
    }

    /// Bytes this series holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Block>()
            + self.codes.capacity() * std::mem::size_of::<u16>()
            + self.tail.capacity() * std::mem::size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest error the encoding allows for a value of a block whose range is `span`.
    fn bound(span: f64) -> f64 {
        span / (2.0 * TOP) * (1.0 + 1e-9) + f64::EPSILON * span.abs()
    }

    /// `values` encoded (none left open) and decoded.
    fn round_trip(start: i64, values: &[f64]) -> Series {
        let s = CompactSeries::from_series(&Series::new(start, 60, values.to_vec()), 0);
        s.window(i64::MIN)
    }

    fn same_gaps(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x.is_finite(), y.is_finite(), "slot {i}: {x} vs {y}");
        }
    }

    /// A deterministic noisy load with a daily cycle.
    fn load(n: usize, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                let noise = (h % 1000) as f64 / 1000.0;
                scale * (1.5 + (i as f64 / 1440.0 * std::f64::consts::TAU).sin() + 0.2 * noise)
            })
            .collect()
    }

    #[test]
    fn a_round_trip_is_within_half_a_code_of_each_block_range() {
        let values = load(3 * 1440 + 17, 3.7);
        let start = 1_767_225_600 + 13 * 60; // not on a block boundary
        let back = round_trip(start, &values);
        assert_eq!((back.start, back.step), (start, 60));
        same_gaps(&values, &back.values);
        let mut worst = 0.0f64;
        for (x, y) in values.iter().zip(&back.values) {
            worst = worst.max((x - y).abs());
        }
        let range = values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            - values.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(worst <= bound(range), "worst error {worst}");
        assert!(worst > 0.0, "fractional values are quantised");
        assert!(
            worst / range < 1e-5,
            "relative to the range: {}",
            worst / range
        );
    }

    #[test]
    fn gaps_stay_gaps_and_non_finite_values_are_gaps() {
        let mut values = load(300, 10.0);
        for i in (0..300).step_by(7) {
            values[i] = f64::NAN;
        }
        values[5] = f64::INFINITY;
        values[6] = f64::NEG_INFINITY;
        // a block with no value at all
        for v in &mut values[128..256] {
            *v = f64::NAN;
        }
        let back = round_trip(0, &values);
        for (i, (x, y)) in values.iter().zip(&back.values).enumerate() {
            if x.is_finite() {
                assert!((x - y).abs() < 1e-3, "slot {i}: {x} vs {y}");
            } else {
                assert!(y.is_nan(), "slot {i}: {x} came back as {y}");
            }
        }
        assert_eq!(
            back.finite_count(),
            values.iter().filter(|v| v.is_finite()).count()
        );
    }

    #[test]
    fn constant_blocks_whole_numbers_and_each_block_minimum_are_exact() {
        let mut values = vec![50.0; 2 * BLOCK];
        values[3] = f64::NAN;
        // whole numbers (requests a minute) within a range of 65,534
        values.extend((0..BLOCK).map(|i| (i * 511 % 60_000) as f64 + 1e9));
        // a fractional block: its minimum is exact, the rest within the bound
        values.extend((0..BLOCK).map(|i| 0.25 + i as f64 / 3.0));
        let back = round_trip(0, &values);
        same_gaps(&values, &back.values);
        for (x, y) in values[..3 * BLOCK]
            .iter()
            .zip(&back.values)
            .filter(|(x, _)| x.is_finite())
        {
            assert_eq!(x, y);
        }
        assert_eq!(back.values[3 * BLOCK], 0.25);
        // zero stays zero
        let zeros = round_trip(0, &[0.0, 0.0, 7.5, 0.0]);
        assert_eq!(zeros.values[0], 0.0);
        assert_eq!(zeros.values[3], 0.0);
    }

    #[test]
    fn huge_tiny_and_negative_values_round_trip_without_overflow() {
        for values in [
            vec![f64::MAX, -f64::MAX, 0.0, 1e308, -1e300, f64::NAN, 5.0],
            vec![1e-300, 3e-300, 2e-300, f64::MIN_POSITIVE, 5e-310, 0.0],
            vec![-5.5, -1e6, -0.001, -42.0, -1e6 + 0.5],
            vec![1e300, 1.0000001e300, 1.0000002e300],
        ] {
            let back = round_trip(0, &values);
            same_gaps(&values, &back.values);
            let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            // the range in halves, as it may overflow
            let span = (hi * 0.5 - lo * 0.5) * 2.0;
            for (x, y) in values
                .iter()
                .zip(&back.values)
                .filter(|(x, _)| x.is_finite())
            {
                assert!(y.is_finite(), "{x} came back as {y}");
                assert!(
                    (x * 0.5 - y * 0.5).abs() * 2.0 <= bound(span),
                    "{x} came back as {y} (range {span})"
                );
            }
        }
    }

    #[test]
    fn the_open_steps_stay_exact_until_their_block_is_whole() {
        let values = load(BLOCK + 10, 1.3);
        let s = CompactSeries::from_series(&Series::new(0, 60, values.clone()), 5);
        let back = s.window(i64::MIN);
        // block 0 encoded (10 steps past it, 5 open); the rest as fetched
        assert_eq!(back.values[BLOCK..], values[BLOCK..]);
        assert_ne!(back.values[..BLOCK], values[..BLOCK]);
        let s = CompactSeries::from_series(&Series::new(0, 60, values.clone()), 20);
        assert_eq!(
            s.window(i64::MIN).values,
            values,
            "not a whole block past the open 20"
        );
    }

    #[test]
    fn it_behaves_as_a_series_written_trimmed_and_read_in_windows() {
        let step = 60;
        let start = 100_020;
        let mut plain = Series::empty(start, step);
        let mut compact = CompactSeries::empty(start, step);
        let t = |i: i64| start + i * step;
        // a first fetch, then a minute at a time with the last five refetched, the oldest trimmed,
        // as the history cache updates it
        let first: Vec<(i64, f64)> = (0..1000).map(|i| (t(i), (i % 37) as f64)).collect();
        plain.upsert(&first);
        compact.reserve_to(t(1000));
        compact.write(&first, 5);
        assert!(compact.tail.len() < BLOCK + 5, "sealed while written");
        for m in 1000..1400 {
            let samples: Vec<(i64, f64)> = (m - 5..=m).map(|i| (t(i), (i % 37) as f64)).collect();
            plain.upsert(&samples);
            compact.upsert(&samples);
            plain.extend_to(t(m + 1));
            compact.extend_to(t(m + 1));
            plain.trim_before(t(m - 999));
            compact.trim_before(t(m - 999));
            compact.seal(5);
        }
        assert_eq!(compact.len(), plain.len());
        assert_eq!((compact.start(), compact.end()), (plain.start, plain.end()));
        let whole = compact.window(i64::MIN);
        same_gaps(&plain.values, &whole.values);
        for (x, y) in plain
            .values
            .iter()
            .zip(&whole.values)
            .filter(|(x, _)| x.is_finite())
        {
            assert_eq!(x, y, "whole numbers are exact");
        }
        // a window from inside the series, as a shorter lookback sees it
        let from = t(1200) + 1;
        let mut view = plain.clone();
        view.trim_before(from);
        assert_eq!(compact.window(from), view);
        assert_eq!(compact.last_finite(from), view.last_finite());
        assert_eq!(compact.finite_count(from), view.finite_count());
        assert!(compact.blocks.len() >= 6, "most of it encoded");
        assert!(compact.tail.len() < BLOCK + 5 + 2);
        assert!(
            compact.tail.capacity() <= compact.tail.len() + BLOCK + TAIL_GROWTH,
            "the tail grows by what it needs: {} for {}",
            compact.tail.capacity(),
            compact.tail.len()
        );
        // bytes: about 2 a point
        let bytes = compact.heap_bytes() as f64 / compact.len() as f64;
        assert!(bytes < 3.5, "{bytes} bytes a point");
    }

    #[test]
    fn a_sample_in_an_encoded_block_decodes_it_again() {
        let values: Vec<f64> = (0..3 * BLOCK).map(|i| i as f64).collect();
        let mut s = CompactSeries::from_series(&Series::new(0, 60, values), 0);
        assert_eq!(s.blocks.len(), 3);
        s.upsert(&[(60 * (BLOCK as i64 + 3), 0.5)]);
        assert_eq!(s.blocks.len(), 1, "blocks 1 and 2 back to f64");
        let back = s.window(i64::MIN);
        assert_eq!(back.values[BLOCK + 3], 0.5);
        assert_eq!(back.values[BLOCK + 4], (BLOCK + 4) as f64);
        assert_eq!(back.len(), 3 * BLOCK);
    }

    /// The controller's fit of 14 days of `series` ending at day `day`, with the calibrated margin
    /// for a target of a twenty-fifth of the peak.
    fn fit(series: &Series, day: usize) -> crate::planner::Forecast {
        use crate::planner::{ForecastSettings, ModelKind, Sizing, fit_forecast};
        let window = Series::new(
            series.time_of((day - 14) * 1440),
            60,
            series.values[(day - 14) * 1440..day * 1440].to_vec(),
        );
        let peak = window.values.iter().copied().fold(0.0, f64::max);
        let sizing = Sizing::new(
            std::time::Duration::from_secs(300),
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs(900),
            10,
            60,
            peak / 25.0,
            None,
        );
        let settings = ForecastSettings {
            sizing: Some(sizing),
            ..ForecastSettings::new(ModelKind::Mstl, vec![], 120, 0.9, 60)
        };
        fit_forecast(&window, &settings).expect("a forecast")
    }

    /// The largest difference of `a` and `b`, relative to the largest of `a`.
    fn relative(a: &[f64], b: &[f64]) -> f64 {
        let top = a.iter().copied().fold(0.0, f64::max);
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
            / top
    }

    /// The replicas `forecast` asks for at each of its steps, for a target of `target` after a
    /// last load of `last`: the upper band or the margin-sized load, whichever is higher.
    fn replicas(forecast: &crate::planner::Forecast, target: f64, last: f64) -> Vec<u32> {
        let m = forecast.margins.as_ref().expect("margins");
        (0..forecast.upper.len())
            .map(|j| {
                let margin = m.margin.get(j).or(m.margin.last()).copied().unwrap_or(1.0);
                let sized = margin * (last + m.floor);
                (sized.max(forecast.upper[j]) / target).ceil() as u32
            })
            .collect()
    }

    #[test]
    fn forecasts_of_the_bundled_trace_from_its_compact_history() {
        // the bundled trace (requests a minute: whole numbers, exact) and the same in requests
        // a second (fractions: quantised)
        let minute = crate::sim::synthetic::synthetic_trace(42, 21, 60);
        let second = Series::new(
            minute.start,
            60,
            minute.values.iter().map(|v| v / 60.0).collect(),
        );
        let compact = |s: &Series| CompactSeries::from_series(s, 5).window(i64::MIN);
        assert_eq!(compact(&minute), minute, "whole numbers round-trip exactly");
        let second_back = compact(&second);
        assert_ne!(second_back, second);
        assert!(relative(&second.values, &second_back.values) < 1e-5);
        for day in [14, 17, 21] {
            let (a, b) = (fit(&second, day), fit(&second_back, day));
            assert_eq!(a.model, b.model);
            let point = relative(&a.point, &b.point);
            // the band and the margins come from a search for the budget's quantile, which moves
            // as much for a change of 1e-7 of the history (measured: up to 0.6% of the peak)
            let upper = relative(&a.upper, &b.upper);
            let margins = (a.margins.as_ref(), b.margins.as_ref());
            let margin = relative(
                &margins.0.expect("margins").margin,
                &margins.1.expect("margins").margin,
            );
            assert!(
                point < 1e-4 && upper < 1e-2 && margin < 1e-2,
                "day {day}: point {point:e}, upper {upper:e}, margin {margin:e}"
            );
            // and the replicas over the horizon are the same
            let peak = second.values[(day - 14) * 1440..day * 1440]
                .iter()
                .copied()
                .fold(0.0, f64::max);
            let last = second.values[day * 1440 - 1];
            assert_eq!(
                replicas(&a, peak / 25.0, last),
                replicas(&b, peak / 25.0, last),
                "day {day}"
            );
        }
    }

    #[test]
    fn an_empty_series_and_windows_past_its_ends() {
        let s = CompactSeries::empty(1_000_020, 60);
        assert!(s.is_empty());
        assert_eq!((s.start(), s.end()), (1_000_020, 1_000_020));
        assert!(s.window(0).is_empty());
        assert_eq!(s.last_finite(0), None);
        let mut s = CompactSeries::from_series(&Series::new(0, 60, vec![1.0, 2.0, 3.0]), 0);
        assert!(s.window(10_000).is_empty());
        assert_eq!(s.window(61).values, vec![3.0]);
        s.trim_before(10_000);
        assert!(s.is_empty());
        assert_eq!(s.end(), 180);
    }
}

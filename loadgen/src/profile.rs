//! Load profiles and the open-loop schedule they give.
//!
//! A [`Profile`] is a target rate (records per second) as a function of the time since the
//! start; a [`Schedule`] turns it into the send times of requests of `batch` records each:
//! request `k + 1` is due `batch / rate(t_k)` after request `k`. The schedule is a pure function
//! of the profile, so the same command sends at the same moments every time, and it never
//! looks at how the system under test is doing (open loop: see `lane`).
//!
//! Profiles, as written on the command line (rates in records/s, times in seconds):
//! - `constant:RATE`
//! - `ramp:FROM:TO` — linear from `FROM` at the start to `TO` at the end of the run;
//! - `burst:BASE:PEAK:EVERY:LEN` — `BASE`, and `PEAK` for `LEN` seconds every `EVERY` seconds
//!   (the seed's "inconsistent traffic": spikes far above the mean);
//! - `diurnal:MIN:MAX:PERIOD` — a day compressed into `PERIOD` seconds: a cosine from `MIN`
//!   (at the start, "night") up to `MAX` (half a period later, "noon") and back.
//!
//! Bounds: a rate is at least [`RATE_MIN`] and at most [`RATE_MAX`] records/s, so a request is
//! never scheduled more than `batch / RATE_MIN` seconds after the previous one.

use std::time::Duration;

/// Lowest rate a profile may ask for (records/s).
pub const RATE_MIN: f64 = 1.0;
/// Highest rate a profile may ask for (records/s): far above what one machine sustains.
pub const RATE_MAX: f64 = 100_000_000.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Profile {
    Constant {
        rate: f64,
    },
    Ramp {
        from: f64,
        to: f64,
    },
    Burst {
        base: f64,
        peak: f64,
        every_s: f64,
        len_s: f64,
    },
    Diurnal {
        min: f64,
        max: f64,
        period_s: f64,
    },
}

impl Profile {
    /// Parse `kind:a:b:…` (see the module documentation).
    pub fn parse(text: &str) -> Result<Profile, String> {
        let mut parts = text.split(':');
        let kind = parts.next().unwrap_or_default();
        let nums: Vec<f64> = parts
            .map(|p| {
                p.parse::<f64>()
                    .map_err(|_| format!("profile {text:?}: {p:?} is not a number"))
            })
            .collect::<Result<_, _>>()?;
        let want = |n: usize, form: &str| {
            if nums.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "profile {text:?}: expected {form}, got {} number(s)",
                    nums.len()
                ))
            }
        };
        let p = match kind {
            "constant" => {
                want(1, "constant:RATE")?;
                Profile::Constant { rate: nums[0] }
            }
            "ramp" => {
                want(2, "ramp:FROM:TO")?;
                Profile::Ramp {
                    from: nums[0],
                    to: nums[1],
                }
            }
            "burst" => {
                want(4, "burst:BASE:PEAK:EVERY:LEN")?;
                Profile::Burst {
                    base: nums[0],
                    peak: nums[1],
                    every_s: nums[2],
                    len_s: nums[3],
                }
            }
            "diurnal" => {
                want(3, "diurnal:MIN:MAX:PERIOD")?;
                Profile::Diurnal {
                    min: nums[0],
                    max: nums[1],
                    period_s: nums[2],
                }
            }
            other => {
                return Err(format!(
                    "profile {text:?}: unknown kind {other:?} (constant, ramp, burst or diurnal)"
                ))
            }
        };
        p.check().map(|()| p).map_err(|e| format!("profile {text:?}: {e}"))
    }

    fn check(&self) -> Result<(), String> {
        let rates: Vec<f64> = match *self {
            Profile::Constant { rate } => vec![rate],
            Profile::Ramp { from, to } => vec![from, to],
            Profile::Burst {
                base,
                peak,
                every_s,
                len_s,
            } => {
                if !(every_s > 0.0 && len_s > 0.0 && len_s <= every_s) {
                    return Err(format!(
                        "burst length and period must be positive, length at most the period; got {len_s} every {every_s}"
                    ));
                }
                vec![base, peak]
            }
            Profile::Diurnal { min, max, period_s } => {
                if !(period_s > 0.0 && min <= max) {
                    return Err(format!(
                        "needs a positive period and MIN ≤ MAX; got {min}..{max} over {period_s}"
                    ));
                }
                vec![min, max]
            }
        };
        match rates.iter().find(|r| !(RATE_MIN..=RATE_MAX).contains(*r)) {
            Some(r) => Err(format!("rate {r} is outside {RATE_MIN}..={RATE_MAX} records/s")),
            None => Ok(()),
        }
    }

    /// Target records/s at `t` seconds into a run of `length` seconds.
    pub fn rate_at(&self, t: f64, length: f64) -> f64 {
        match *self {
            Profile::Constant { rate } => rate,
            Profile::Ramp { from, to } => from + (to - from) * (t / length.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0),
            Profile::Burst {
                base,
                peak,
                every_s,
                len_s,
            } => {
                if t.rem_euclid(every_s) < len_s {
                    peak
                } else {
                    base
                }
            }
            Profile::Diurnal { min, max, period_s } => {
                let phase = (t / period_s) * std::f64::consts::TAU;
                min + (max - min) * (1.0 - phase.cos()) / 2.0
            }
        }
    }

    /// The highest rate the profile asks for.
    pub fn peak(&self) -> f64 {
        match *self {
            Profile::Constant { rate } => rate,
            Profile::Ramp { from, to } => from.max(to),
            Profile::Burst { base, peak, .. } => base.max(peak),
            Profile::Diurnal { max, .. } => max,
        }
    }
}

/// The profile as written on the command line.
impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Profile::Constant { rate } => write!(f, "constant:{rate}"),
            Profile::Ramp { from, to } => write!(f, "ramp:{from}:{to}"),
            Profile::Burst {
                base,
                peak,
                every_s,
                len_s,
            } => write!(f, "burst:{base}:{peak}:{every_s}:{len_s}"),
            Profile::Diurnal { min, max, period_s } => write!(f, "diurnal:{min}:{max}:{period_s}"),
        }
    }
}

/// One request of the schedule: its number and when it is due, in nanoseconds from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub seq: u64,
    pub due_ns: u64,
}

/// The send times of a run: requests of `batch` records, due as the profile says, until
/// `length` has passed.
#[derive(Debug, Clone)]
pub struct Schedule {
    profile: Profile,
    length_s: f64,
    batch: f64,
    next: Slot,
}

impl Schedule {
    pub fn new(profile: Profile, length: Duration, batch: u32) -> Schedule {
        Schedule {
            profile,
            length_s: length.as_secs_f64(),
            batch: f64::from(batch.max(1)),
            next: Slot { seq: 0, due_ns: 0 },
        }
    }
}

impl Iterator for Schedule {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        let slot = self.next;
        let t = slot.due_ns as f64 / 1e9;
        if t >= self.length_s {
            return None;
        }
        let rate = self.profile.rate_at(t, self.length_s).clamp(RATE_MIN, RATE_MAX);
        self.next = Slot {
            seq: slot.seq + 1,
            due_ns: slot.due_ns + (self.batch / rate * 1e9).round().max(1.0) as u64,
        };
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the schedule sends in `[from, to)` seconds.
    fn sent(s: Schedule, batch: u32, from: f64, to: f64) -> f64 {
        s.filter(|x| (from * 1e9..to * 1e9).contains(&(x.due_ns as f64)))
            .count() as f64
            * batch as f64
    }

    #[test]
    fn every_profile_sends_its_integral_within_one_request() {
        let len = Duration::from_secs(60);
        let cases = [
            ("constant:50000", 50_000.0 * 60.0),
            ("ramp:1000:9000", 5_000.0 * 60.0),
            // 5 s at 40k, then 15 s at 10k, three times.
            ("burst:10000:40000:20:5", 3.0 * (5.0 * 40_000.0 + 15.0 * 10_000.0)),
            // A whole period's mean is the midpoint.
            ("diurnal:2000:10000:60", 6_000.0 * 60.0),
        ];
        for (text, want) in cases {
            let p = Profile::parse(text).unwrap();
            let got = sent(Schedule::new(p, len, 100), 100, 0.0, 60.0);
            // Step-wise integration of a changing rate: within 1% (and one batch).
            assert!((got - want).abs() <= want * 0.01 + 100.0, "{text}: {got} vs {want}");
        }
    }

    #[test]
    fn burst_rate_is_visible_in_the_schedule() {
        let p = Profile::parse("burst:1000:20000:10:2").unwrap();
        let s = Schedule::new(p, Duration::from_secs(30), 10);
        let in_burst = sent(s.clone(), 10, 10.0, 12.0) / 2.0;
        let between = sent(s, 10, 13.0, 19.0) / 6.0;
        assert!((in_burst - 20_000.0).abs() < 200.0, "{in_burst}");
        assert!((between - 1_000.0).abs() < 20.0, "{between}");
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let e = Profile::parse("constant:0").unwrap_err();
        assert!(e.contains("rate 0 is outside"), "{e}");
        let e = Profile::parse("ramp:10").unwrap_err();
        assert!(e.contains("expected ramp:FROM:TO, got 1"), "{e}");
        let e = Profile::parse("burst:1:2:5:10").unwrap_err();
        assert!(e.contains("length at most the period"), "{e}");
        let e = Profile::parse("square:1").unwrap_err();
        assert!(e.contains("unknown kind \"square\""), "{e}");
        assert_eq!(
            Profile::parse("burst:10:20:5:1").unwrap().to_string(),
            "burst:10:20:5:1"
        );
        let e = Profile::parse("constant:fast").unwrap_err();
        assert!(e.contains("\"fast\" is not a number"), "{e}");
    }
}

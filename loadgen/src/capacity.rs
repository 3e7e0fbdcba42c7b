//! `loadgen capacity`: the highest rate this machine sustains under a latency SLO, and what a
//! daily volume needs.
//!
//! **Search.** Constant-rate steps, each a full run (see `run`): start at `start` records/s
//! and multiply by `factor` while a step passes; then bisect between the last pass and the
//! first failure `refine` times. A step **passes** when
//! - end-to-end p99 (due → durable in the lake) is at most the SLO (default 2 s), and
//! - at least [`ACCEPT_SHARE_MIN`] of the offered records were accepted, and every accepted
//!   good record is in the lake.
//!
//! **Sizing** (every assumption is printed with the result): a request is one record; the
//! daily volume arrives with a peak `peak_factor` × its mean; an instance's usable cores are
//! its vCPUs less `reserve` (the I/O edge, the kernel's network work, the control plane), each
//! worth the measured per-core rate scaled by `utilization` (headroom, so a peak does not sit at
//! the SLO's edge); one instance more than the peak needs, so losing one keeps the fleet
//! within its SLO. Per-vCPU speed is assumed to carry over from this machine to the instance
//! (state the CPU models; measure on the instance type before ordering a fleet).

use std::fmt::Write;

/// Share of the offered records a passing step must have accepted.
pub const ACCEPT_SHARE_MIN: f64 = 0.999;
/// Steps a search makes at most (growth and bisection together).
pub const STEPS_MAX: u32 = 40;

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub rate: f64,
    pub p99_ms: f64,
    pub accepted_share: f64,
    pub landed_all: bool,
}

impl Step {
    pub fn passes(&self, slo_p99_ms: f64) -> bool {
        self.p99_ms <= slo_p99_ms && self.accepted_share >= ACCEPT_SHARE_MIN && self.landed_all
    }
}

/// Find the highest passing rate up to `max`; `measure(rate)` runs one step. Returns every
/// step in order and the best passing rate (None: even `start` failed).
pub fn search(
    start: f64,
    factor: f64,
    max: f64,
    refine: u32,
    slo_p99_ms: f64,
    mut measure: impl FnMut(f64) -> Result<Step, String>,
) -> Result<(Vec<Step>, Option<f64>), String> {
    let mut steps = Vec::new();
    let (mut pass, mut fail): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = start;
    while fail.is_none() && rate <= max && (steps.len() as u32) < STEPS_MAX {
        let s = measure(rate)?;
        steps.push(s);
        if s.passes(slo_p99_ms) {
            pass = Some(rate);
            rate = (rate * factor).round();
        } else {
            fail = Some(rate);
        }
    }
    if let (Some(mut lo), Some(mut hi)) = (pass, fail) {
        for _ in 0..refine {
            if steps.len() as u32 >= STEPS_MAX {
                break;
            }
            let mid = ((lo + hi) / 2.0).round();
            let s = measure(mid)?;
            steps.push(s);
            if s.passes(slo_p99_ms) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        pass = Some(lo);
    }
    Ok((steps, pass))
}

/// An EC2 instance type by its vCPUs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceType {
    pub name: &'static str,
    pub vcpus: u32,
    pub note: &'static str,
}

/// The instance types the plan is printed for (x86: the per-vCPU figure measured here does
/// not carry over to Graviton, which must be measured on its own).
pub const INSTANCE_TYPES: [InstanceType; 6] = [
    InstanceType {
        name: "c7i.2xlarge",
        vcpus: 8,
        note: "compute-optimized, EBS only",
    },
    InstanceType {
        name: "c7i.4xlarge",
        vcpus: 16,
        note: "compute-optimized, EBS only",
    },
    InstanceType {
        name: "c7i.8xlarge",
        vcpus: 32,
        note: "compute-optimized, EBS only",
    },
    InstanceType {
        name: "c6id.4xlarge",
        vcpus: 16,
        note: "local NVMe for spill and inbox",
    },
    InstanceType {
        name: "c6id.8xlarge",
        vcpus: 32,
        note: "local NVMe for spill and inbox",
    },
    InstanceType {
        name: "m7i.4xlarge",
        vcpus: 16,
        note: "more memory per vCPU for long store outages",
    },
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    /// Records/s one core sustained under the SLO.
    pub per_core: f64,
    pub daily: f64,
    pub peak_factor: f64,
    pub reserve: u32,
    pub utilization: f64,
}

impl Sizing {
    pub fn mean_rate(&self) -> f64 {
        self.daily / 86_400.0
    }

    pub fn peak_rate(&self) -> f64 {
        self.mean_rate() * self.peak_factor
    }

    /// Cores the peak needs at the planned utilization.
    pub fn cores(&self) -> u64 {
        (self.peak_rate() / (self.per_core * self.utilization)).ceil() as u64
    }

    /// Instances of `t` for the peak, plus one spare; `None` if `t` has no usable core.
    pub fn instances(&self, t: &InstanceType) -> Option<u64> {
        let usable = t.vcpus.checked_sub(self.reserve).filter(|&c| c > 0)?;
        let per_instance = self.per_core * f64::from(usable) * self.utilization;
        Some((self.peak_rate() / per_instance).ceil() as u64 + 1)
    }

    /// The plan as text, with every assumption.
    pub fn render(&self, measured: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "capacity plan");
        let _ = writeln!(s, "  measured: {measured}");
        let _ = writeln!(s, "  per-core throughput under the SLO: {:.0} records/s", self.per_core);
        let _ = writeln!(
            s,
            "  daily volume {:.3e} requests (1 request = 1 record): mean {:.0}/s, peak {:.1} x mean = {:.0}/s",
            self.daily,
            self.mean_rate(),
            self.peak_factor,
            self.peak_rate()
        );
        let _ = writeln!(
            s,
            "  assumptions: per-vCPU speed as measured here; {} vCPU(s) per instance reserved (I/O edge, NIC, control plane); cores run at most {:.0}% of the measured rate; one spare instance (N+1)",
            self.reserve,
            self.utilization * 100.0
        );
        let _ = writeln!(s, "  cores needed at peak: {}", self.cores());
        let _ = writeln!(s, "  {:<14} {:>6} {:>10}  note", "instance", "vCPUs", "instances");
        for t in INSTANCE_TYPES {
            let n = self.instances(&t).map_or_else(|| "-".to_string(), |n| n.to_string());
            let _ = writeln!(s, "  {:<14} {:>6} {:>10}  {}", t.name, t.vcpus, n, t.note);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_grows_then_bisects_to_the_knee() {
        // A system whose p99 jumps past the SLO above 70,000 records/s.
        let measure = |rate: f64| {
            Ok(Step {
                rate,
                p99_ms: if rate <= 70_000.0 { 900.0 } else { 30_000.0 },
                accepted_share: 1.0,
                landed_all: true,
            })
        };
        let (steps, best) = search(10_000.0, 2.0, 1e9, 4, 2_000.0, measure).unwrap();
        // 10k, 20k, 40k pass; 80k fails; then 60k, 70k pass, 75k, 72.5k fail.
        let rates: Vec<f64> = steps.iter().map(|s| s.rate).collect();
        assert_eq!(
            rates,
            [10_000.0, 20_000.0, 40_000.0, 80_000.0, 60_000.0, 70_000.0, 75_000.0, 72_500.0]
        );
        assert_eq!(best, Some(70_000.0));
        let none = search(10_000.0, 2.0, 1e9, 2, 2_000.0, |rate| {
            Ok(Step {
                rate,
                p99_ms: 5_000.0,
                accepted_share: 1.0,
                landed_all: true,
            })
        })
        .unwrap();
        assert_eq!(none.1, None, "even the first step failed");
        // A ceiling stops the growth: every step passed, the best is the last under it.
        let capped = search(1_000.0, 2.0, 5_000.0, 3, 2_000.0, measure).unwrap();
        assert_eq!(capped.0.len(), 3);
        assert_eq!(capped.1, Some(4_000.0));
    }

    #[test]
    fn a_step_fails_on_lost_or_refused_records_too() {
        let ok = Step {
            rate: 1.0,
            p99_ms: 10.0,
            accepted_share: 1.0,
            landed_all: true,
        };
        assert!(ok.passes(2_000.0));
        assert!(!Step {
            accepted_share: 0.99,
            ..ok
        }
        .passes(2_000.0));
        assert!(!Step {
            landed_all: false,
            ..ok
        }
        .passes(2_000.0));
        assert!(!Step { p99_ms: 2_001.0, ..ok }.passes(2_000.0));
    }

    #[test]
    fn sizing_follows_the_stated_assumptions() {
        let s = Sizing {
            per_core: 50_000.0,
            daily: 10e9,
            peak_factor: 3.0,
            reserve: 1,
            utilization: 0.7,
        };
        // 10e9 / 86,400 = 115,741/s mean; peak 347,222/s; 35,000/s per core -> 10 cores.
        assert_eq!(s.mean_rate().round(), 115_741.0);
        assert_eq!(s.cores(), 10);
        // c7i.2xlarge: 7 usable cores x 35,000 = 245,000/s -> 2 for the peak + 1 spare.
        assert_eq!(s.instances(&INSTANCE_TYPES[0]), Some(3));
        let tiny = InstanceType {
            name: "t",
            vcpus: 1,
            note: "",
        };
        assert_eq!(s.instances(&tiny), None);
        let text = s.render("machine");
        assert!(text.contains("1 request = 1 record") && text.contains("N+1"), "{text}");
    }
}

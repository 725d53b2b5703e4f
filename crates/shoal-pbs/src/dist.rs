//! Latency distributions and the WARS latency profiles `shoal bench` injects.
//!
//! The built-in profiles are the fits Bailis et al. published in PBS (VLDB 2012, Table 3) for
//! LinkedIn's Voldemort on SSDs and on spinning disks, and for Yammer's Riak: each leg is a
//! mixture of a Pareto body and an exponential tail, in milliseconds.

use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::legs::Leg;

/// A one-way latency distribution, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Dist {
    /// Nothing injected.
    Zero,
    Constant {
        ms: f64,
    },
    /// P(X > x) = (xm / x)^alpha for x ≥ xm.
    Pareto {
        xm: f64,
        alpha: f64,
    },
    /// Rate `lambda` per millisecond: mean 1 / lambda.
    Exponential {
        lambda: f64,
    },
    /// Each part drawn with probability weight / (sum of weights).
    Mixture {
        parts: Vec<Weighted>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weighted {
    pub weight: f64,
    pub dist: Dist,
}

fn mix(parts: &[(f64, Dist)]) -> Dist {
    Dist::Mixture {
        parts: parts
            .iter()
            .map(|(weight, dist)| Weighted {
                weight: *weight,
                dist: dist.clone(),
            })
            .collect(),
    }
}

impl Dist {
    /// Check the parameters: a profile file with `alpha = 0` must be refused, not sampled.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a positive number, got {v}"))
            }
        };
        match self {
            Dist::Zero => Ok(()),
            Dist::Constant { ms } if ms.is_finite() && *ms >= 0.0 => Ok(()),
            Dist::Constant { ms } => Err(format!("constant ms must be zero or more, got {ms}")),
            Dist::Pareto { xm, alpha } => positive("pareto xm", *xm).and(positive("pareto alpha", *alpha)),
            Dist::Exponential { lambda } => positive("exponential lambda", *lambda),
            Dist::Mixture { parts } => {
                if parts.is_empty() {
                    return Err("a mixture needs at least one part".into());
                }
                for p in parts {
                    positive("mixture weight", p.weight)?;
                    p.dist.validate()?;
                }
                Ok(())
            }
        }
    }

    pub fn is_zero(&self) -> bool {
        match self {
            Dist::Zero => true,
            Dist::Constant { ms } => *ms == 0.0,
            Dist::Mixture { parts } => parts.iter().all(|p| p.dist.is_zero()),
            _ => false,
        }
    }

    /// One draw, in milliseconds.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match self {
            Dist::Zero => 0.0,
            Dist::Constant { ms } => *ms,
            Dist::Pareto { xm, alpha } => {
                // Inverse transform; 1 - U is in (0, 1], so the power never divides by zero.
                let u: f64 = 1.0 - rng.gen::<f64>();
                xm / u.powf(1.0 / alpha)
            }
            Dist::Exponential { lambda } => {
                let u: f64 = 1.0 - rng.gen::<f64>();
                -u.ln() / lambda
            }
            Dist::Mixture { parts } => {
                let total: f64 = parts.iter().map(|p| p.weight).sum();
                let mut pick = rng.gen::<f64>() * total;
                for p in parts {
                    if pick < p.weight {
                        return p.dist.sample(rng);
                    }
                    pick -= p.weight;
                }
                parts.last().map_or(0.0, |p| p.dist.sample(rng))
            }
        }
    }

    /// The analytic mean (infinite for a Pareto with alpha ≤ 1).
    pub fn mean(&self) -> f64 {
        match self {
            Dist::Zero => 0.0,
            Dist::Constant { ms } => *ms,
            Dist::Pareto { xm, alpha } if *alpha > 1.0 => alpha * xm / (alpha - 1.0),
            Dist::Pareto { .. } => f64::INFINITY,
            Dist::Exponential { lambda } => 1.0 / lambda,
            Dist::Mixture { parts } => {
                let total: f64 = parts.iter().map(|p| p.weight).sum();
                parts.iter().map(|p| p.weight / total * p.dist.mean()).sum()
            }
        }
    }

    /// P(X ≤ x).
    pub fn cdf(&self, x: f64) -> f64 {
        match self {
            Dist::Zero => f64::from(x >= 0.0),
            Dist::Constant { ms } => f64::from(x >= *ms),
            Dist::Pareto { xm, alpha } => {
                if x < *xm {
                    0.0
                } else {
                    1.0 - (xm / x).powf(*alpha)
                }
            }
            Dist::Exponential { lambda } => {
                if x < 0.0 {
                    0.0
                } else {
                    1.0 - (-lambda * x).exp()
                }
            }
            Dist::Mixture { parts } => {
                let total: f64 = parts.iter().map(|p| p.weight).sum();
                parts.iter().map(|p| p.weight / total * p.dist.cdf(x)).sum()
            }
        }
    }

    /// The q-quantile (0 < q < 1): closed form for the pure distributions, bisection on the
    /// CDF for mixtures.
    pub fn quantile(&self, q: f64) -> f64 {
        let q = q.clamp(0.0, 1.0 - 1e-12);
        match self {
            Dist::Zero => 0.0,
            Dist::Constant { ms } => *ms,
            Dist::Pareto { xm, alpha } => xm / (1.0 - q).powf(1.0 / alpha),
            Dist::Exponential { lambda } => -(1.0 - q).ln() / lambda,
            Dist::Mixture { parts } => {
                let (mut lo, mut hi) = (0.0f64, 1.0f64);
                let hi_bound = parts.iter().map(|p| p.dist.quantile(q)).fold(0.0, f64::max);
                hi = hi.max(hi_bound);
                for _ in 0..200 {
                    let mid = (lo + hi) / 2.0;
                    if self.cdf(mid) < q {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                hi
            }
        }
    }
}

/// Per-leg latencies to inject: what a request meets on its way to and from each replica.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub w: Dist,
    pub a: Dist,
    pub r: Dist,
    pub s: Dist,
    /// Added to every leg to and from every replica but the coordinator's nearest (its own,
    /// or the first of the preference list when it holds none): a second data centre.
    pub far_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "unknown latency profile {0:?}: use one of lan, lnkd-ssd, lnkd-disk, ymmr, wan, or the path of a TOML file"
    )]
    Unknown(String),
    #[error("reading latency profile {path}: {reason}")]
    File { path: String, reason: String },
    #[error("latency profile {name}: leg {leg}: {reason}")]
    Invalid {
        name: String,
        leg: &'static str,
        reason: String,
    },
}

/// A profile file: `w` is required; `a`, `r` and `s` default to `w`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: Option<String>,
    description: Option<String>,
    w: Dist,
    a: Option<Dist>,
    r: Option<Dist>,
    s: Option<Dist>,
    #[serde(default)]
    far_ms: f64,
}

pub const BUILTIN: [&str; 5] = ["lan", "lnkd-ssd", "lnkd-disk", "ymmr", "wan"];

impl Profile {
    fn uniform(name: &str, description: &str, w: Dist, ars: Dist, far_ms: f64) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            w,
            a: ars.clone(),
            r: ars.clone(),
            s: ars,
            far_ms,
        }
    }

    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Option<Self> {
        let pareto = |xm, alpha| Dist::Pareto { xm, alpha };
        let exp = |lambda| Dist::Exponential { lambda };
        let lnkd_ssd = mix(&[(0.9122, pareto(0.235, 10.0)), (0.0878, exp(1.66))]);
        let lnkd_disk_w = mix(&[(0.38, pareto(1.05, 1.51)), (0.62, exp(0.183))]);
        Some(match name {
            "lan" => Self::uniform("lan", "nothing injected: loopback as it is", Dist::Zero, Dist::Zero, 0.0),
            "lnkd-ssd" => Self::uniform(
                "lnkd-ssd",
                "LinkedIn Voldemort on SSDs (PBS fit): every leg 91.22% Pareto(0.235, 10) + 8.78% Exp(1.66) ms",
                lnkd_ssd.clone(),
                lnkd_ssd,
                0.0,
            ),
            "lnkd-disk" => Self::uniform(
                "lnkd-disk",
                "LinkedIn Voldemort on disks (PBS fit): W 38% Pareto(1.05, 1.51) + 62% Exp(0.183) ms; A, R, S as lnkd-ssd",
                lnkd_disk_w,
                lnkd_ssd,
                0.0,
            ),
            "ymmr" => Self::uniform(
                "ymmr",
                "Yammer Riak (PBS fit): W 93.9% Pareto(3, 3.35) + 6.1% Exp(0.0028) ms; A, R, S 98.2% Pareto(1.5, 3.8) + 1.8% Exp(0.0217) ms",
                mix(&[(0.939, pareto(3.0, 3.35)), (0.061, exp(0.0028))]),
                mix(&[(0.982, pareto(1.5, 3.8)), (0.018, exp(0.0217))]),
                0.0,
            ),
            "wan" => Self::uniform(
                "wan",
                "lnkd-disk plus 75 ms each way to every replica but the coordinator's nearest",
                lnkd_disk_w,
                lnkd_ssd,
                75.0,
            ),
            _ => return None,
        })
    }

    /// A built-in name, or the path of a TOML profile file.
    pub fn resolve(spec: &str) -> Result<Self, ProfileError> {
        if let Some(p) = Self::builtin(spec) {
            return Ok(p);
        }
        let path = Path::new(spec);
        if !path.exists() {
            return Err(ProfileError::Unknown(spec.into()));
        }
        Self::load(path)
    }

    /// Read a profile file, for example:
    ///
    /// ```toml
    /// name = "two-racks"
    /// far_ms = 0.5
    /// [w]
    /// kind = "mixture"
    /// parts = [{ weight = 0.9, dist = { kind = "pareto", xm = 0.2, alpha = 8 } },
    ///          { weight = 0.1, dist = { kind = "exponential", lambda = 1.5 } }]
    /// ```
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let file_err = |reason: String| ProfileError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let f: ProfileFile = toml::from_str(&text).map_err(|e| file_err(e.to_string()))?;
        let name = f.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "custom".into())
        });
        let profile = Self {
            description: f.description.unwrap_or_else(|| format!("from {}", path.display())),
            a: f.a.unwrap_or_else(|| f.w.clone()),
            r: f.r.unwrap_or_else(|| f.w.clone()),
            s: f.s.unwrap_or_else(|| f.w.clone()),
            w: f.w,
            far_ms: f.far_ms,
            name,
        };
        profile.validate()?;
        Ok(profile)
    }

    pub fn validate(&self) -> Result<(), ProfileError> {
        let invalid = |leg, reason| ProfileError::Invalid {
            name: self.name.clone(),
            leg,
            reason,
        };
        for (leg, d) in [("w", &self.w), ("a", &self.a), ("r", &self.r), ("s", &self.s)] {
            d.validate().map_err(|e| invalid(leg, e))?;
        }
        if !(self.far_ms.is_finite() && self.far_ms >= 0.0) {
            return Err(invalid("far_ms", format!("must be zero or more, got {}", self.far_ms)));
        }
        Ok(())
    }

    /// Whether the profile injects nothing at all.
    pub fn is_lan(&self) -> bool {
        [&self.w, &self.a, &self.r, &self.s].iter().all(|d| d.is_zero()) && self.far_ms == 0.0
    }

    pub fn dist(&self, leg: Leg) -> &Dist {
        match leg {
            Leg::W => &self.w,
            Leg::A => &self.a,
            Leg::R => &self.r,
            Leg::S => &self.s,
        }
    }

    /// The delay to inject on `leg` of a message to (`nearest` = false: a far) replica.
    pub fn sample(&self, leg: Leg, nearest: bool, rng: &mut impl Rng) -> f64 {
        self.dist(leg).sample(rng) + if nearest { 0.0 } else { self.far_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn draws(d: &Dist, count: usize, seed: u64) -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut v: Vec<f64> = (0..count).map(|_| d.sample(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn empirical_quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
    }

    /// Each built-in mixture's sample quantiles match its analytic quantiles, and its sample
    /// mean matches the analytic mean where the variance is finite enough to converge.
    #[test]
    fn builtin_samplers_match_their_analytic_quantiles_and_means() {
        for name in BUILTIN {
            let p = Profile::builtin(name).expect("built-in profile");
            for leg in [Leg::W, Leg::A] {
                let d = p.dist(leg);
                let sorted = draws(d, 400_000, 7);
                for q in [0.1, 0.5, 0.9, 0.99] {
                    let want = d.quantile(q);
                    let got = empirical_quantile(&sorted, q);
                    let tol = 0.03 * want.max(0.05) + 0.01;
                    assert!(
                        (got - want).abs() <= tol,
                        "{name} {leg:?}: q{q} sampled {got:.4} ms, analytic {want:.4} ms"
                    );
                    // The analytic quantile inverts the analytic CDF.
                    if want > 0.0 {
                        assert!((d.cdf(want) - q).abs() < 1e-6, "{name} {leg:?}: cdf(quantile({q}))");
                    }
                }
                let mean = d.mean();
                let sample_mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
                // lnkd-disk's W Pareto has alpha 1.51: finite mean, infinite variance, so its
                // sample mean converges slowly; allow more room there.
                let tol = if name == "lnkd-disk" || name == "wan" {
                    0.08
                } else {
                    0.03
                };
                assert!(
                    (sample_mean - mean).abs() <= tol * mean.max(1e-9),
                    "{name} {leg:?}: sample mean {sample_mean:.4} ms, analytic {mean:.4} ms"
                );
            }
        }
    }

    #[test]
    fn pure_distributions_have_closed_form_moments() {
        let pareto = Dist::Pareto { xm: 0.235, alpha: 10.0 };
        assert!((pareto.mean() - 0.235 * 10.0 / 9.0).abs() < 1e-12);
        assert!((pareto.quantile(0.5) - 0.235 * 2f64.powf(0.1)).abs() < 1e-12);
        let exp = Dist::Exponential { lambda: 1.66 };
        assert!((exp.mean() - 1.0 / 1.66).abs() < 1e-12);
        assert!((exp.quantile(0.5) - 2f64.ln() / 1.66).abs() < 1e-12);
        assert!(Dist::Pareto { xm: 1.0, alpha: 1.0 }.mean().is_infinite());
    }

    #[test]
    fn lan_injects_nothing_and_wan_adds_the_far_leg_only_to_far_replicas() {
        let lan = Profile::builtin("lan").expect("lan");
        assert!(lan.is_lan());
        let wan = Profile::builtin("wan").expect("wan");
        assert!(!wan.is_lan());
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..1000 {
            assert!(wan.sample(Leg::R, false, &mut rng) >= 75.0);
            assert!(wan.sample(Leg::R, true, &mut rng) < 75.0 + 1e9);
        }
        let near: f64 = (0..10_000).map(|_| wan.sample(Leg::S, true, &mut rng)).sum::<f64>() / 10_000.0;
        assert!(near < 5.0, "the nearest replica gets no far leg: mean {near} ms");
    }

    #[test]
    fn profile_files_parse_default_and_refuse_bad_parameters() {
        let dir = std::env::temp_dir().join(format!("shoal-pbs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = dir.join("racks.toml");
        std::fs::write(
            &good,
            "far_ms = 0.5\n[w]\nkind = \"mixture\"\nparts = [{ weight = 0.9, dist = { kind = \"pareto\", xm = 0.2, alpha = 8 } }, { weight = 0.1, dist = { kind = \"exponential\", lambda = 1.5 } }]\n[s]\nkind = \"constant\"\nms = 2\n",
        )
        .expect("write profile");
        let p = Profile::resolve(good.to_str().expect("utf-8 path")).expect("valid profile");
        assert_eq!(p.name, "racks");
        assert_eq!(p.a, p.w, "a defaults to w");
        assert_eq!(p.s, Dist::Constant { ms: 2.0 });
        assert_eq!(p.far_ms, 0.5);

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[w]\nkind = \"pareto\"\nxm = 1\nalpha = 0\n").expect("write profile");
        let err = Profile::load(&bad).expect_err("alpha 0 is refused").to_string();
        assert!(err.contains("pareto alpha") && err.contains("leg w"), "{err}");

        let typo = dir.join("typo.toml");
        std::fs::write(&typo, "[w]\nkind = \"pareto\"\nxm = 1\nalpah = 2\n").expect("write profile");
        assert!(Profile::load(&typo).is_err(), "unknown fields are refused");

        let err = Profile::resolve("lnkd-sdd").expect_err("unknown").to_string();
        assert!(err.contains("lnkd-ssd"), "the error lists the built-in names: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

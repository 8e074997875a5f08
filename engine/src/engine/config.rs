//! Engine configuration.

use std::time::Duration;

use crate::ratelimit::Rate;
use crate::sources::ManySources;

/// What the engine does, beyond recording it, when it raises a leak signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakResponse {
    /// Record the signal (and the mandatory action, if any) and carry on.
    Flag,
    /// Also revoke the provisioning token involved, and with it all its registrations.
    RevokePt,
}

/// Per-kind responses to leak signals. Rotation reuse always revokes the registration
/// involved; the response here says whether to revoke its PT too. In a configuration file every
/// field is optional (`flag` by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeakPolicy {
    /// Several instances provisioning on one single-device PT (or one device id) at once.
    pub parallel_operations: LeakResponse,
    /// An old RT generation refreshed outside the grace window.
    pub rotation_reuse: LeakResponse,
    /// Too many wrong verification codes.
    pub code_guessing: LeakResponse,
    /// One registration refreshed from more addresses than [`ManySources`] allows.
    pub many_sources: LeakResponse,
}

impl Default for LeakPolicy {
    fn default() -> Self {
        Self {
            parallel_operations: LeakResponse::Flag,
            rotation_reuse: LeakResponse::Flag,
            code_guessing: LeakResponse::Flag,
            many_sources: LeakResponse::Flag,
        }
    }
}

/// Engine settings. Construct with [`EngineConfig::default`] and adjust with the setters.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub(crate) max_rt_lifetime: Duration,
    pub(crate) refresh_grace: Duration,
    pub(crate) clock_skew_leeway: Duration,
    pub(crate) feed_max_lag: Duration,
    pub(crate) operation_ttl: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) max_code_attempts: u32,
    pub(crate) max_pending_single: usize,
    pub(crate) max_pending_fleet: usize,
    pub(crate) pt_rate_single: Rate,
    pub(crate) pt_rate_fleet: Rate,
    pub(crate) source_rate: Rate,
    pub(crate) leak_policy: LeakPolicy,
    pub(crate) many_sources: ManySources,
    pub(crate) refresh_rate: Rate,
    pub(crate) validator_keys_file: Option<std::path::PathBuf>,
    pub(crate) retention: Retention,
}

/// How long the store keeps what only grows: the audit log, leak signals and refresh events.
/// `None` keeps them for ever. Housekeeping ([`Engine::prune`](crate::Engine::prune)) deletes
/// what is older, in small steps, at most once a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Audit events other than refreshes. Defaults to 400 days (a year and a review's
    /// margin). Revocation events are kept at least as long as a revoked registration's RT
    /// could still be presented (the longest RT lifetime and the clock-skew leeway), since RT
    /// validators read revocations from them.
    pub audit: Option<Duration>,
    /// Leak signals. Defaults to 400 days.
    pub leak_signals: Option<Duration>,
    /// Refresh events: one per refresh, by far the most numerous. Defaults to 31 days.
    pub refresh_events: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            audit: Some(Duration::from_secs(400 * DAY)),
            leak_signals: Some(Duration::from_secs(400 * DAY)),
            refresh_events: Some(Duration::from_secs(31 * DAY)),
        }
    }
}

impl Retention {
    /// Keep everything for ever.
    pub const FOREVER: Retention = Retention {
        audit: None,
        leak_signals: None,
        refresh_events: None,
    };
}

/// The largest clock-skew leeway the engine accepts.
pub const MAX_CLOCK_SKEW_LEEWAY: Duration = Duration::from_secs(300);

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_rt_lifetime: Duration::from_secs(365 * 86_400),
            refresh_grace: Duration::from_secs(300),
            clock_skew_leeway: Duration::from_secs(60),
            feed_max_lag: Duration::from_secs(5),
            operation_ttl: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_secs(5),
            max_code_attempts: 5,
            max_pending_single: 4,
            max_pending_fleet: 1000,
            pt_rate_single: Rate::new(10, 10),
            pt_rate_fleet: Rate::new(2000, 6000),
            source_rate: Rate::new(30, 120),
            leak_policy: LeakPolicy::default(),
            many_sources: ManySources::default(),
            refresh_rate: Rate::new(20, 60),
            validator_keys_file: None,
            retention: Retention::default(),
        }
    }
}

impl EngineConfig {
    /// With several nodes on one store: how long ago this node may last have read the change
    /// feed to its head and still validate RTs from memory. Past it (the database is
    /// unreachable, or the node cannot keep up) validations and introspections fail closed
    /// with [`Error::Unavailable`](crate::Error::Unavailable) until the node has caught up.
    /// The follower reads the feed at least every quarter of it (at most every second).
    /// Defaults to 5 seconds; at least 100 ms.
    pub fn feed_max_lag(&mut self, d: Duration) -> &mut Self {
        self.feed_max_lag = d.max(Duration::from_millis(100));
        self
    }

    /// Longest RT lifetime any PT may ask for. Defaults to 365 days.
    pub fn max_rt_lifetime(&mut self, d: Duration) -> &mut Self {
        self.max_rt_lifetime = d.max(Duration::from_secs(60));
        self
    }

    /// How long after a refresh the device may retry with the previous generation and get the
    /// same successor back. Defaults to 5 minutes.
    pub fn refresh_grace(&mut self, d: Duration) -> &mut Self {
        self.refresh_grace = d;
        self
    }

    /// How far past its expiry an RT is still accepted, for clock skew. Capped at
    /// [`MAX_CLOCK_SKEW_LEEWAY`]. Defaults to 60 seconds.
    pub fn clock_skew_leeway(&mut self, d: Duration) -> &mut Self {
        self.clock_skew_leeway = d.min(MAX_CLOCK_SKEW_LEEWAY);
        self
    }

    /// How long an operation stays pending before it expires. Defaults to 15 minutes.
    pub fn operation_ttl(&mut self, d: Duration) -> &mut Self {
        self.operation_ttl = d.max(Duration::from_secs(1));
        self
    }

    /// Poll interval suggested to devices. Defaults to 5 seconds.
    pub fn poll_interval(&mut self, d: Duration) -> &mut Self {
        self.poll_interval = d;
        self
    }

    /// Wrong verification codes allowed per operation before it is rejected. Defaults to 5.
    pub fn max_code_attempts(&mut self, n: u32) -> &mut Self {
        self.max_code_attempts = n.max(1);
        self
    }

    /// Pending operations allowed at once on a single-device PT (defaults to 4) and on a fleet
    /// PT (defaults to 1000).
    pub fn max_pending(&mut self, single: usize, fleet: usize) -> &mut Self {
        self.max_pending_single = single.max(1);
        self.max_pending_fleet = fleet.max(1);
        self
    }

    /// Rate of new operations per PT: single-device PTs default to a burst of 10 and 10 per
    /// minute, fleet PTs to a burst of 2000 and 6000 per minute.
    pub fn pt_rates(&mut self, single: Rate, fleet: Rate) -> &mut Self {
        self.pt_rate_single = single;
        self.pt_rate_fleet = fleet;
        self
    }

    /// Rate of new operations per source address. Defaults to a burst of 30 and 120 per
    /// minute.
    pub fn source_rate(&mut self, r: Rate) -> &mut Self {
        self.source_rate = r;
        self
    }

    /// Rate of refreshes per registration, valid or not: a burst of 20 and 60 per minute by
    /// default (a device refreshes at about half its RT's life). Over it a refresh is refused
    /// with [`Error::RateLimited`](crate::Error::RateLimited) and changes nothing.
    pub fn refresh_rate(&mut self, r: Rate) -> &mut Self {
        self.refresh_rate = r;
        self
    }

    /// Where to keep the validator key file: the RT keys of the live epochs, and nothing else,
    /// for RT validators beside the server ([`LocalValidator`](crate::LocalValidator)). The
    /// engine writes it at open and whenever the live RT keys change. [`Engine::open_dir`]
    /// sets it to `validator.keys` in the data directory.
    ///
    /// [`Engine::open_dir`]: crate::Engine::open_dir
    pub fn validator_keys_file(&mut self, path: impl Into<std::path::PathBuf>) -> &mut Self {
        self.validator_keys_file = Some(path.into());
        self
    }

    /// How long the store keeps audit events, leak signals and refresh events. Defaults to
    /// [`Retention::default`].
    pub fn retention(&mut self, r: Retention) -> &mut Self {
        self.retention = r;
        self
    }

    /// Responses to leak signals. Defaults to [`LeakPolicy::default`] (flag only).
    pub fn leak_policy(&mut self, p: LeakPolicy) -> &mut Self {
        self.leak_policy = p;
        self
    }

    /// When one registration counts as used from too many addresses (the `many_sources` leak
    /// signal). Defaults to [`ManySources::default`]: more than 4 addresses within an hour.
    pub fn many_sources(&mut self, rule: ManySources) -> &mut Self {
        self.many_sources = ManySources {
            threshold: rule.threshold.max(1),
            window: rule.window.max(std::time::Duration::from_secs(1)),
        };
        self
    }

    /// The configured poll interval.
    pub fn get_poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The configured clock-skew leeway.
    pub fn get_clock_skew_leeway(&self) -> Duration {
        self.clock_skew_leeway
    }
}

//! The engine: the provisioning state machine, refresh and revocation, over a durable store.

mod admin;
mod config;
mod feed;
pub(crate) mod keys;
mod operations;
mod pts;
mod registrations;
mod retention;

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use ring::rand::{SecureRandom, SystemRandom};

pub use admin::{PairingStep, ADMIN_TOKEN_PREFIX};
pub use config::{EngineConfig, LeakPolicy, LeakResponse, Retention, MAX_CLOCK_SKEW_LEEWAY};
pub use feed::FeedStatus;
pub use keys::KeyEpochInfo;
pub use operations::{Approval, BeginOutcome, BeginRequest, OperationStatus, Provisioned};
pub use pts::{PtBatch, BATCH_CHUNK, MAX_BATCH};
pub use registrations::{Introspection, Refreshed, ValidatedRt};

use crate::error::Error;
use crate::family::{FamilyState, FamilyTable};
use crate::keys::{KeyKeeper, Keyring, RtKeyTable, SoftwareKeeper};
use crate::model::{
    Actor, AuditEvent, LeakSignal, OperationId, OperationState, PtId, RegistrationId,
};
use crate::ratelimit::RateLimiter;
use crate::store::{
    JobOutcome, NewAuditEvent, NewLeakSignal, SqliteOptions, SqliteStore, Store, StoreRead,
    StoreTxn,
};
use crate::time::Timestamp;

/// Told about changes after they are durable, in commit order, on the store's writer thread.
/// Implementations must be quick and must not call back into the engine's write methods.
pub trait EngineObserver: Send + Sync {
    /// An operation began, or changed state (approved, completed, rejected, cancelled,
    /// expired).
    fn operation_changed(&self, _id: OperationId, _state: OperationState) {}
    /// A registration was revoked; connections using its RTs should be closed.
    fn registration_revoked(&self, _id: RegistrationId) {}
    /// A commit wrote audit events or leak signals (refreshes, which journal theirs, do not
    /// count).
    fn logged(&self) {}
}

/// The Tessera engine. Cheap to clone (an `Arc`); share one per data directory.
///
/// All time-dependent methods take `now`: the engine never reads a clock.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.inner.store)
            .field("keeper", &self.inner.keeper)
            .field("families", &self.inner.families)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) store: Box<dyn Store>,
    pub(crate) keeper: Box<dyn KeyKeeper>,
    pub(crate) keys: ArcSwap<Keyring>,
    pub(crate) rt_keys: RtKeyTable,
    /// Checked against when an RT names an unknown or retired epoch, so that costs the same as a
    /// forged MAC.
    pub(crate) dummy_rt_key: ring::hmac::Key,
    pub(crate) families: FamilyTable,
    pub(crate) config: EngineConfig,
    pub(crate) pt_limits_single: RateLimiter<PtId>,
    pub(crate) pt_limits_fleet: RateLimiter<PtId>,
    pub(crate) source_limits: RateLimiter<String>,
    /// REFRESH per registration (checked on the writer thread, so never contended).
    pub(crate) refresh_limits: RateLimiter<RegistrationId>,
    /// Throttles repeated leak signals (see [`Tx::leak`]).
    pub(crate) signal_limits: RateLimiter<String>,
    /// Leak signals not recorded because of that throttle.
    pub(crate) suppressed_signals: std::sync::atomic::AtomicU64,
    /// BEGINs refused with a nonce that matched no pending operation of a full PT.
    pub(crate) failed_resumes: std::sync::atomic::AtomicU64,
    /// Addresses each registration is refreshed from (the `many_sources` signal).
    pub(crate) sources: crate::sources::SourceTracker,
    pub(crate) observer: RwLock<Option<Arc<dyn EngineObserver>>>,
    pub(crate) rng: SystemRandom,
    /// Serialises key rotations (rare; never on a request path).
    pub(crate) rotation: Mutex<()>,
    /// The store's root check value (hex), written into the validator key file.
    pub(crate) root_check: String,
    /// With several nodes on one store: how far this node has followed the others' changes.
    pub(crate) feed: std::sync::OnceLock<Arc<crate::store::FeedHealth>>,
    /// Where retention stands (see `retention.rs`).
    pub(crate) retention: retention::RetentionState,
}

/// How long opening an engine on a shared store waits for its first catch-up with the
/// other nodes' changes.
const FIRST_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(10);

/// How often one leak signal (same kind, PT, registration and operation) is recorded: a burst
/// of 3, then one a minute.
pub(crate) const SIGNAL_RATE: crate::Rate = crate::Rate::new(3, 1);

/// What a write job that may refuse after writing decided. Its writes are committed either
/// way: a refusal that must leave a trace (a leak signal, a wrong code counted, a revocation on
/// reuse) is still a refusal to the caller. A job that returns `Err` instead rolls back.
#[derive(Debug)]
pub(crate) enum Committed<T> {
    /// The answer.
    Answer(T),
    /// The refusal the caller gets once the job's writes are durable.
    Refusal(Error),
}

impl<T> Committed<T> {
    /// The caller's result.
    pub(crate) fn into_result(self) -> Result<T, Error> {
        match self {
            Committed::Answer(v) => Ok(v),
            Committed::Refusal(e) => Err(e),
        }
    }
}

/// A change to in-memory state, applied after the batch that made it is durable.
pub(crate) enum Effect {
    /// A family's state and the expiry of its current generation, Unix seconds.
    SetFamily(RegistrationId, FamilyState, u64),
    Revoked(RegistrationId),
    OperationChanged(OperationId, OperationState),
    SwapKeyring(Arc<Keyring>),
    InstallRtKey(u32, ring::hmac::Key),
    RetireRtKey(u32),
    /// The transaction wrote an audit event or a leak signal.
    Logged,
    /// An audit event, logged once it is committed: its action, subject and actor (never its
    /// detail).
    Event {
        action: String,
        subject: String,
        actor: String,
        source: Option<String>,
    },
    /// A leak signal, logged once it is committed (at `warn`).
    Signal(Box<NewLeakSignal>),
}

/// The context of a write job: the store transaction and the effects to apply on commit.
pub(crate) struct Tx<'a> {
    pub(crate) db: &'a mut dyn StoreTxn,
    pub(crate) inner: &'a Inner,
    pub(crate) now: Timestamp,
    effects: Vec<Effect>,
}

impl Tx<'_> {
    /// Note (once per transaction) that it wrote to the audit log or the leak signals.
    fn logged(&mut self) {
        if !self.effects.iter().any(|e| matches!(e, Effect::Logged)) {
            self.effects.push(Effect::Logged);
        }
    }

    pub(crate) fn effect(&mut self, e: Effect) {
        self.effects.push(e);
    }

    pub(crate) fn audit(
        &mut self,
        actor: &Actor,
        action: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<(), Error> {
        self.db.append_audit(&NewAuditEvent {
            at: self.now,
            actor: &actor.name,
            source: actor.source.as_deref(),
            action,
            subject,
            detail,
        })?;
        self.logged();
        self.effects.push(Effect::Event {
            action: action.to_owned(),
            subject: subject.to_owned(),
            actor: actor.name.clone(),
            source: actor.source.clone(),
        });
        Ok(())
    }

    /// Record a leak signal, unless the same signal (kind, PT, registration, operation) was
    /// recorded [`SIGNAL_RATE`] times in the last minutes: repeated attempts with one leaked
    /// token must not grow the store without bound or bury other signals. Suppressed signals
    /// are counted (`EngineStatus::suppressed_signals`).
    pub(crate) fn leak(&mut self, sig: NewLeakSignal) -> Result<(), Error> {
        let key = format!(
            "{}|{:?}|{:?}|{:?}",
            sig.kind.as_str(),
            sig.pt_id,
            sig.registration_id,
            sig.operation_id
        );
        if self.inner.signal_limits.check(&key, self.now).is_err() {
            self.inner
                .suppressed_signals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        self.db.insert_leak(&sig)?;
        self.logged();
        self.effects.push(Effect::Signal(Box::new(sig)));
        Ok(())
    }
}

pub use tessera_proto::admin::records::EngineStatus;

/// What [`Engine::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Families whose every RT has expired, dropped from memory.
    pub families: usize,
    /// Pending operations marked expired.
    pub operations_expired: usize,
    /// Key epochs whose RT key was dropped because all their RTs have expired.
    pub rt_keys_dropped: usize,
    /// PTs of abandoned batches deleted.
    pub abandoned_pts_deleted: usize,
    /// Audit events (refresh events included) deleted by retention.
    pub events_deleted: usize,
    /// Leak signals deleted by retention.
    pub leak_signals_deleted: usize,
}

impl Engine {
    /// Open an engine over `store` with the root held by `keeper`.
    ///
    /// On first open this records a check value of the root and starts key epoch 1; later opens
    /// refuse a keeper with a different root. The family table is rebuilt from the store before
    /// this returns, so the engine is ready for validation at once.
    pub fn open(
        store: impl Store + 'static,
        keeper: impl KeyKeeper + 'static,
        config: EngineConfig,
        now: Timestamp,
    ) -> Result<Self, Error> {
        let keeper: Box<dyn KeyKeeper> = Box::new(keeper);
        let check = keeper.derive(crate::keys::ROOT_CHECK_CONTEXT)?;
        let check_hex = data_encoding::HEXLOWER.encode(&check.expose()[..16]);
        let rng = SystemRandom::new();
        let mut dummy = [0u8; 32];
        rng.fill(&mut dummy)
            .map_err(|_| Error::Keys("system random generator failed".into()))?;
        let dummy_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &dummy);
        zeroize::Zeroize::zeroize(&mut dummy);
        let inner = Arc::new(Inner {
            store: Box::new(store),
            keeper,
            // Replaced below, once the epochs are known.
            keys: ArcSwap::from_pointee(Keyring::new(0, Vec::new(), dummy_key.clone())),
            rt_keys: RtKeyTable::new(),
            dummy_rt_key: dummy_key.clone(),
            families: FamilyTable::new(),
            pt_limits_single: RateLimiter::new(config.pt_rate_single),
            pt_limits_fleet: RateLimiter::new(config.pt_rate_fleet),
            source_limits: RateLimiter::new(config.source_rate),
            sources: crate::sources::SourceTracker::new(config.many_sources),
            failed_resumes: Default::default(),
            retention: Default::default(),
            signal_limits: RateLimiter::new(SIGNAL_RATE),
            refresh_limits: RateLimiter::new(config.refresh_rate),
            suppressed_signals: Default::default(),
            config,
            observer: RwLock::new(None),
            rng,
            rotation: Mutex::new(()),
            root_check: check_hex.clone(),
            feed: std::sync::OnceLock::new(),
        });
        let engine = Engine { inner };
        let epochs = engine.write(now, move |tx| keys::init_epochs(tx, &check_hex))?;
        // A PT batch still staged was cut off by a stop: it can never complete.
        engine.write(now, |tx| tx.db.abandon_pt_batches(None))?;
        let ring = keys::load_keys(&engine.inner, &epochs, dummy_key, now)?;
        engine.inner.keys.store(Arc::new(ring));
        engine.inner.write_validator_keys(&[])?;
        engine.rebuild_families(now)?;
        // With other nodes on the store: follow their changes (from before the rebuild, so
        // none is missed).
        let sink = Arc::new(feed::Sink(Arc::downgrade(&engine.inner)));
        let poll = feed::poll_interval(engine.inner.config.feed_max_lag);
        if let Some(health) = engine.inner.store.follow(sink, poll)? {
            // Ready when it has caught up; until then (and whenever it falls behind later)
            // validations fail closed.
            health.wait_caught_up(FIRST_CATCH_UP);
            let _ = engine.inner.feed.set(health);
        }
        Ok(engine)
    }

    /// Open the default setup in `dir`: the SQLite store `dir/tessera.db` and the software
    /// keeper `dir/root.key` (created on first use).
    pub fn open_dir(dir: &Path, config: EngineConfig, now: Timestamp) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::store(format!("cannot create {}: {e}", dir.display())))?;
        let keeper = SoftwareKeeper::open_or_create(dir)?;
        Self::open_dir_with(dir, keeper, config, now)
    }

    /// Open the SQLite store in `dir` with the root held by `keeper` (for example a
    /// [`Pkcs11Keeper`](crate::keys::Pkcs11Keeper)).
    pub fn open_dir_with(
        dir: &Path,
        keeper: impl KeyKeeper + 'static,
        mut config: EngineConfig,
        now: Timestamp,
    ) -> Result<Self, Error> {
        let store = SqliteStore::open(dir, &SqliteOptions::default())?;
        crate::store::mark_postgres(dir, None)?;
        if config.validator_keys_file.is_none() {
            config.validator_keys_file(dir.join(crate::keys::VALIDATOR_KEYS_FILE));
        }
        Self::open(store, keeper, config, now)
    }

    /// With several nodes on one store: where this node is in the change feed (no store
    /// access; `None` for a store no other node writes to).
    pub fn feed_status(&self) -> Option<FeedStatus> {
        self.inner.feed_status()
    }

    /// Whether the store answers a read (one cheap query: the newest audit sequence number), for
    /// readiness probes.
    pub fn check_store(&self) -> Result<(), Error> {
        self.read(|db| db.audit_head()).map(|_| ())
    }

    /// What and where the store is (never a password).
    pub fn store_description(&self) -> String {
        self.inner.store.describe()
    }

    /// Open the PostgreSQL store at `url` (which several nodes may share; `options`: its
    /// writers and pool) with the root held by `keeper`; `dir` keeps what stays on this node (the validator key file). Every node of one
    /// database needs the same root: a keeper whose root does not match the database's check
    /// value is refused.
    pub fn open_postgres(
        url: &str,
        options: &crate::store::PostgresOptions,
        dir: &Path,
        keeper: impl KeyKeeper + 'static,
        mut config: EngineConfig,
        now: Timestamp,
    ) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::store(format!("cannot create {}: {e}", dir.display())))?;
        let store = crate::store::PostgresStore::open(url, options)?;
        crate::store::mark_postgres(dir, Some(&store.describe()))?;
        if config.validator_keys_file.is_none() {
            config.validator_keys_file(dir.join(crate::keys::VALIDATOR_KEYS_FILE));
        }
        Self::open(store, keeper, config, now)
    }

    fn rebuild_families(&self, now: Timestamp) -> Result<(), Error> {
        let cutoff = now
            .unix_secs()
            .saturating_sub(self.inner.config.clock_skew_leeway.as_secs());
        let fam = &self.inner.families;
        let mut overflow = false;
        self.inner.store.read(&mut |db: &dyn StoreRead| {
            db.for_each_live_registration(cutoff, &mut |id, generation, binding, exp| {
                let st = FamilyState {
                    generation,
                    binding,
                };
                overflow |= !fam.set(id, st, exp);
            })
        })?;
        if overflow {
            return Err(Error::store(
                "registration id beyond the family table's range".into(),
            ));
        }
        Ok(())
    }

    /// Install the observer told about durable changes (replacing any earlier one).
    pub fn set_observer(&self, observer: Arc<dyn EngineObserver>) {
        if let Ok(mut o) = self.inner.observer.write() {
            *o = Some(observer);
        }
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Run a write job on the store's writer and wait until its batch is durable.
    ///
    /// `f` returning `Err` rolls back everything it wrote. To commit and still refuse (for
    /// example a leak signal recorded on a refused request), return [`Committed::Refusal`] and
    /// flatten with [`Committed::into_result`].
    pub(crate) fn write<T: Send + 'static>(
        &self,
        now: Timestamp,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (reply, rx) = mpsc::sync_channel::<Result<T, Error>>(1);
        self.write_then(now, f, move |r| {
            let _ = reply.send(r);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(Error::store("the store's writer failed".into())))
    }

    /// Like [`Engine::write`], but instead of blocking, `done` is called on the writer thread
    /// once the batch is durable (after the in-memory effects are applied). If the writer has
    /// stopped, `done` is dropped without being called.
    pub(crate) fn write_then<T: Send + 'static>(
        &self,
        now: Timestamp,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, Error> + Send + 'static,
        done: impl FnOnce(Result<T, Error>) + Send + 'static,
    ) {
        self.inner
            .store
            .submit(job(self.inner.clone(), now, f, done));
    }

    /// Run `f` against committed data.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&dyn StoreRead) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut f = Some(f);
        let mut out = None;
        self.inner.store.read(&mut |db| {
            if let Some(f) = f.take() {
                out = Some(f(db)?);
            }
            Ok(())
        })?;
        out.ok_or_else(|| Error::store("read did not run".into()))
    }

    pub(crate) fn random<const N: usize>(&self) -> Result<[u8; N], Error> {
        self.inner.random()
    }

    /// Audit events with sequence number above `after`, oldest first (at most `limit`, 0 means
    /// 100).
    pub fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, Error> {
        self.inner.store.settle_numbers()?;
        self.read(|db| db.audit(after, limit, false))
    }

    /// The newest audit events with sequence number above `after` (at most `limit`, 0 means
    /// 100), oldest first: the end of the log, as `tail` shows a file's.
    pub fn audit_newest(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, Error> {
        self.inner.store.settle_numbers()?;
        self.read(|db| db.audit(after, limit, true))
    }

    /// Leak signals with id above `after`, oldest first.
    pub fn leak_signals(&self, after: u64, limit: usize) -> Result<Vec<LeakSignal>, Error> {
        self.inner.store.settle_numbers()?;
        self.read(|db| db.leak_signals(after, limit))
    }

    /// Record a leak signal raised outside the engine (for example by the server when one RT is
    /// seen from many addresses).
    pub fn raise_leak_signal(&self, signal: NewLeakSignal, now: Timestamp) -> Result<(), Error> {
        self.write(now, move |tx| tx.leak(signal))
    }

    /// Counters for status pages and metrics.
    pub fn status(&self) -> Result<EngineStatus, Error> {
        self.inner.store.settle_numbers()?;
        let counts = self.read(|db| db.counts())?;
        Ok(EngineStatus {
            live_families: self.inner.families.len(),
            family_table_bytes: self.inner.families.memory_bytes(),
            current_key_epoch: self.inner.keys.load().current,
            counts,
            commits: self.inner.store.commit_stats(),
            failed_resumes: self
                .inner
                .failed_resumes
                .load(std::sync::atomic::Ordering::Relaxed),
            suppressed_signals: self
                .inner
                .suppressed_signals
                .load(std::sync::atomic::Ordering::Relaxed),
            feed: self.inner.feed_status(),
        })
    }

    /// Housekeeping: expire pending operations past their expiry, drop families whose every RT
    /// has expired, drop RT keys of epochs all of whose RTs have expired, delete the PTs of
    /// abandoned batches, and (at most once a minute) delete audit events, leak signals and
    /// refresh events older than their [`Retention`]. Call it periodically (the server does,
    /// every few seconds).
    pub fn prune(&self, now: Timestamp) -> Result<PruneReport, Error> {
        let operations_expired = self.expire_operations(now)?;
        let cutoff = now
            .unix_secs()
            .saturating_sub(self.inner.config.clock_skew_leeway.as_secs());
        let families = self.inner.families.prune(cutoff);
        let rt_keys_dropped = self.drop_expired_rt_keys(now)?;
        // In small jobs, so that deleting a large abandoned batch never stalls the writer.
        const CHUNK: usize = 4096;
        let mut abandoned_pts_deleted = 0;
        loop {
            let n = self.write(now, |tx| tx.db.delete_abandoned_pts(CHUNK))?;
            abandoned_pts_deleted += n;
            if n == 0 {
                break;
            }
        }
        let deleted = self.enforce_retention(now)?;
        Ok(PruneReport {
            families,
            operations_expired,
            rt_keys_dropped,
            abandoned_pts_deleted,
            events_deleted: deleted.events,
            leak_signals_deleted: deleted.leak_signals,
        })
    }
}

/// The store job that runs `f` in a [`Tx`], and once the batch is durable applies its effects
/// and calls `done` (what [`Engine::write_then`] submits).
fn job<T: Send + 'static>(
    inner: Arc<Inner>,
    now: Timestamp,
    f: impl FnOnce(&mut Tx<'_>) -> Result<T, Error> + Send + 'static,
    done: impl FnOnce(Result<T, Error>) + Send + 'static,
) -> crate::store::WriteJob {
    Box::new(move |db: &mut dyn StoreTxn| {
        let mut tx = Tx {
            db,
            inner: &inner,
            now,
            effects: Vec::new(),
        };
        let mut result = f(&mut tx);
        let effects = std::mem::take(&mut tx.effects);
        // With several nodes on one store, the others learn of these effects from the change
        // feed, written in this same transaction.
        if result.is_ok() && !effects.is_empty() && tx.db.publishes() {
            if let Err(e) = tx.db.publish(&changes_of(&effects)) {
                result = Err(e);
            }
        }
        match result {
            Ok(v) => {
                let inner = inner.clone();
                JobOutcome {
                    keep: true,
                    on_commit: Box::new(move |committed| {
                        if committed.is_ok() {
                            inner.apply(effects);
                        }
                        done(committed.map(|()| v));
                    }),
                }
            }
            Err(e) => JobOutcome {
                keep: false,
                on_commit: Box::new(move |_| done(Err(e))),
            },
        }
    })
}

/// What the other nodes must learn of a transaction's effects: each family, revocation and
/// operation change, then one `Keys` and one `Logged` at most.
fn changes_of(effects: &[Effect]) -> Vec<crate::store::Change> {
    use crate::store::Change;
    let (mut keys, mut logged) = (false, false);
    let mut out: Vec<Change> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::SetFamily(id, st, expires_at) => Some(Change::Family {
                id: *id,
                generation: st.generation,
                binding: st.binding,
                expires_at: *expires_at,
            }),
            Effect::Revoked(id) => Some(Change::Revoked { id: *id }),
            Effect::OperationChanged(id, state) => Some(Change::Operation {
                id: *id,
                state: *state,
            }),
            Effect::SwapKeyring(_) | Effect::InstallRtKey(..) | Effect::RetireRtKey(_) => {
                keys = true;
                None
            }
            Effect::Logged => {
                logged = true;
                None
            }
            Effect::Event { .. } | Effect::Signal(_) => None,
        })
        .collect();
    out.extend(keys.then_some(Change::Keys));
    out.extend(logged.then_some(Change::Logged));
    out
}

impl Inner {
    /// Rewrite the validator key file (if one is configured) with the live RT keys and those
    /// of `coming` epochs (a rotation's, before its first RT is minted).
    pub(crate) fn write_validator_keys(&self, coming: &[u32]) -> Result<(), Error> {
        let Some(path) = &self.config.validator_keys_file else {
            return Ok(());
        };
        let mut epochs = self.rt_keys.live_epochs();
        epochs.extend_from_slice(coming);
        crate::keys::validator_keys::write(path, &*self.keeper, &self.root_check, &epochs)
    }

    pub(crate) fn random<const N: usize>(&self) -> Result<[u8; N], Error> {
        let mut b = [0u8; N];
        self.rng
            .fill(&mut b)
            .map_err(|_| Error::Keys("system random generator failed".into()))?;
        Ok(b)
    }

    fn apply(&self, effects: Vec<Effect>) {
        let observer = self.observer.read().ok().and_then(|o| o.clone());
        for e in effects {
            match e {
                Effect::SetFamily(id, st, expires_at) => {
                    // Ids are range-checked before the registration is written.
                    let _ = self.families.set(id, st, expires_at);
                }
                Effect::Revoked(id) => {
                    self.families.revoke(id);
                    if let Some(o) = &observer {
                        o.registration_revoked(id);
                    }
                }
                Effect::OperationChanged(id, st) => {
                    if let Some(o) = &observer {
                        o.operation_changed(id, st);
                    }
                }
                Effect::SwapKeyring(k) => self.keys.store(k),
                Effect::InstallRtKey(epoch, key) => self.rt_keys.install(epoch, key),
                Effect::RetireRtKey(epoch) => self.rt_keys.retire(epoch),
                Effect::Logged => {
                    if let Some(o) = &observer {
                        o.logged();
                    }
                }
                // Every committed state change, one line each (the audit log holds the
                // detail); never a secret: ids, names and addresses only.
                Effect::Event {
                    action,
                    subject,
                    actor,
                    source,
                } => tracing::info!(
                    action = %action,
                    subject = %subject,
                    actor = %actor,
                    source = source.as_deref().unwrap_or("-"),
                    "state change"
                ),
                Effect::Signal(sig) => {
                    metrics::counter!("tessera_leak_signals_total", "kind" => sig.kind.as_str())
                        .increment(1);
                    tracing::warn!(
                    signal = sig.kind.as_str(),
                    pt = sig.pt_id.map(|p| p.to_string()).unwrap_or_default(),
                    registration = sig.registration_id.map_or(0, |r| r.get()),
                    operation = sig.operation_id.map(|o| o.to_string()).unwrap_or_default(),
                    source = sig.source.as_deref().unwrap_or("-"),
                    action = %sig.action,
                    "leak signal"
                    )
                }
            }
        }
    }
}

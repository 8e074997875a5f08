//! TLS session tickets sealed with a key derived from the root.
//!
//! After a regional outage every device reconnects at once, and a full TLS handshake (a
//! signature by the server, key exchange) is what bounds how many connections a node takes
//! per second. A device that still holds a session ticket resumes instead (PSK with (EC)DHE
//! key exchange, no signature). rustls' own ticketer seals tickets with random keys that live in
//! one process, so a ticket would not survive a restart or work on another node. This one seals
//! them (AES-256-GCM) with a key derived from the root for the current key epoch and the
//! endpoint's ALPN: every node of a store, and a restarted node, opens every other's tickets.
//! Tickets of the current and the previous epoch are accepted, so a key rotation retires
//! tickets too; an emergency retirement of the previous epoch (`keys retire`) ends its tickets
//! at once, with its RTs. 0-RTT stays off (no early data is accepted, see `tls.rs`).
//!
//! A ticket is `epoch (4 bytes, big-endian) || nonce (12) || AES-256-GCM(state) || tag (16)`,
//! the epoch and the ALPN bound in as associated data.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use tessera_engine::Engine;

/// How long a ticket may be used: the TLS 1.3 maximum, 7 days (a device that was away longer
/// pays one full handshake).
const LIFETIME_SECS: u32 = 7 * 24 * 3600;

/// Seals and opens session tickets of one endpoint.
pub(crate) struct RootTicketer {
    engine: Engine,
    alpn: Vec<u8>,
    keys: RwLock<BTreeMap<u32, Arc<LessSafeKey>>>,
    rng: SystemRandom,
    /// Tickets opened (each one a resumed handshake).
    pub(crate) resumed: AtomicU64,
}

impl std::fmt::Debug for RootTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootTicketer").finish_non_exhaustive()
    }
}

impl RootTicketer {
    pub(crate) fn new(engine: Engine, alpn: &[u8]) -> Self {
        Self {
            engine,
            alpn: alpn.to_vec(),
            keys: RwLock::new(BTreeMap::new()),
            rng: SystemRandom::new(),
            resumed: AtomicU64::new(0),
        }
    }

    /// The key of `epoch`, derived once (one keeper call per epoch), if it may be used now:
    /// the current epoch, or the one before while its RTs still validate (a retired epoch's
    /// tickets stop at once, as its RTs do).
    fn key(&self, epoch: u32) -> Option<Arc<LessSafeKey>> {
        let current = self.engine.current_key_epoch();
        if epoch != current
            && (epoch.checked_add(1) != Some(current) || !self.engine.key_epoch_in_use(epoch))
        {
            return None;
        }
        if let Some(k) = self.keys.read().ok()?.get(&epoch) {
            return Some(k.clone());
        }
        let bytes = self.engine.tls_ticket_key(&self.alpn, epoch).ok()?;
        let key = Arc::new(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, bytes.expose()).ok()?,
        ));
        let mut keys = self.keys.write().ok()?;
        // Keys of epochs that can no longer be used are dropped.
        keys.retain(|e, _| e.saturating_add(1) >= current);
        keys.insert(epoch, key.clone());
        Some(key)
    }

    fn aad(&self, epoch: u32) -> Vec<u8> {
        let mut aad = epoch.to_be_bytes().to_vec();
        aad.extend_from_slice(&self.alpn);
        aad
    }
}

impl rustls::server::ProducesTickets for RootTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let epoch = self.engine.current_key_epoch();
        let key = self.key(epoch)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(4 + NONCE_LEN + plain.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(self.aad(epoch)),
            &mut sealed,
        )
        .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let (epoch, rest) = cipher.split_first_chunk::<4>()?;
        let epoch = u32::from_be_bytes(*epoch);
        let (nonce, sealed) = rest.split_first_chunk::<NONCE_LEN>()?;
        let key = self.key(epoch)?;
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(self.aad(epoch)),
                &mut buf,
            )
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        self.resumed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tessera_tls_resumed_total").increment(1);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    fn engine(dir: &std::path::Path) -> Engine {
        Engine::open_dir(
            dir,
            tessera_engine::EngineConfig::default(),
            tessera_engine::Timestamp::from_unix_secs(1_800_000_000),
        )
        .unwrap()
    }

    /// Two ticketers over the same root (two nodes, or a node before and after a restart) open
    /// each other's tickets; another endpoint's, a changed ticket and another root's do not.
    #[test]
    fn tickets_open_wherever_the_root_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let a = RootTicketer::new(e.clone(), b"tessera/1");
        let b = RootTicketer::new(e.clone(), b"tessera/1");
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session state");
        assert_ne!(
            a.encrypt(b"session state").unwrap(),
            t,
            "a fresh nonce each time"
        );
        let admin = RootTicketer::new(e.clone(), b"tessera-admin/1");
        assert!(admin.decrypt(&t).is_none());
        let mut bad = t.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(b.decrypt(&bad).is_none());
        assert!(b.decrypt(&t[..10]).is_none());
        let other_dir = tempfile::tempdir().unwrap();
        let other = RootTicketer::new(engine(other_dir.path()), b"tessera/1");
        assert!(other.decrypt(&t).is_none());
        assert_eq!(b.resumed.load(Ordering::Relaxed), 1);

        // A rotation: the previous epoch's tickets still open, those from two epochs back not.
        let now = tessera_engine::Timestamp::from_unix_secs(1_800_000_000);
        let tech = tessera_engine::Actor::operator("t");
        e.rotate_keys(&tech, now).unwrap();
        assert!(b.decrypt(&t).is_some());
        let t2 = a.encrypt(b"later").unwrap();
        assert_eq!(&t2[..4], &2u32.to_be_bytes());
        e.rotate_keys(&tech, now).unwrap();
        assert!(b.decrypt(&t).is_none());
        assert!(b.decrypt(&t2).is_some());

        // An emergency retirement of the previous epoch ends its tickets at once; the current
        // epoch's still open.
        let t3 = a.encrypt(b"current").unwrap();
        e.retire_key_epoch(2, &tech, now).unwrap();
        assert!(b.decrypt(&t2).is_none());
        assert!(b.decrypt(&t3).is_some());
    }
}

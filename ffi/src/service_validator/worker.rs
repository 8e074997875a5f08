//! The service validator's thread: one connection to the server's admin endpoint, on which it
//! follows the revocation feed (a long poll, always outstanding) and asks about the RTs the
//! broker has not seen, several at a time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tessera_client::{AdminClient, ClientError, Trust};
use tessera_proto::wire::code;
use tessera_proto::AdminToken;
use tokio::sync::{mpsc, Semaphore};
use zeroize::Zeroizing;

use super::cache::Verdict;
use super::Shared;
use crate::result::tessera_result;
use crate::validator::identity;

/// An RT to ask the server about.
pub(crate) struct Ask {
    pub(crate) key: [u8; 32],
    pub(crate) rt: Zeroizing<String>,
    /// The RT's binding (from its claims), which the cache keeps with a valid answer.
    pub(crate) binding: u32,
}

/// How long one request may take, connecting included (a long poll's wait comes on top).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one revocation long poll waits on the server.
const FEED_WAIT: Duration = Duration::from_secs(25);
/// The feed's retry delays after a failure: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Introspections in flight at once.
const CONCURRENCY: usize = 64;

/// The running thread and the way to reach it.
pub(crate) struct Worker {
    asks: mpsc::Sender<Ask>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    pub(crate) fn start(
        addr: SocketAddr,
        name: &str,
        trust: &Trust,
        token: AdminToken,
        shared: Arc<Shared>,
        queue: usize,
    ) -> Result<Self, tessera_result> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|_| tessera_result::TESSERA_CONFIG)?;
        let client = {
            let _g = rt.enter();
            AdminClient::with_timeout(addr, name, trust, token, REQUEST_TIMEOUT)
                .map_err(|e| tessera_result::from(&e))?
        };
        let (asks, rx) = mpsc::channel(queue);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("tessera-service-validator".into())
            .spawn(move || {
                rt.block_on(async move {
                    let client = Arc::new(client);
                    tokio::select! {
                        () = follow(&*client, &shared) => {}
                        () = answer(&client, &shared, rx) => {}
                        _ = stopped => {}
                    }
                    client.close_now().await;
                });
            })
            .map_err(|_| tessera_result::TESSERA_CONFIG)?;
        Ok(Self {
            asks,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Queue an RT for the server; false when the queue is full.
    pub(crate) fn ask(&self, ask: Ask) -> bool {
        self.asks.try_send(ask).is_ok()
    }

    /// Stop the thread and wait for it (its requests are abandoned).
    pub(crate) fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Revocations a page of the feed asks for: a page this long may have more behind it.
const FEED_PAGE: usize = 1_000;

/// Where the follower reads revocations: the server, or a script in tests.
pub(crate) trait Feed {
    /// Up to [`FEED_PAGE`] revocations after `after`, waiting up to `wait` for one; and the
    /// cursor to ask from next.
    fn page(
        &self,
        after: Option<u64>,
        wait: Duration,
    ) -> impl std::future::Future<Output = Result<(Vec<u64>, u64), ClientError>> + Send;
}

impl Feed for AdminClient {
    async fn page(
        &self,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<(Vec<u64>, u64), ClientError> {
        self.revocation_page(after, Some(FEED_PAGE), wait).await
    }
}

/// Follow the revocation feed for as long as the validator lives: each revoked registration
/// ends its cache entries and is queued for the broker. After a failure the status says why and
/// the feed is asked again from the same cursor, so nothing revoked meanwhile is missed; the
/// status turns back to OK only once the feed has caught up: a full page means more may wait
/// behind it, and the status says `TESSERA_PENDING` until a page comes back short.
pub(crate) async fn follow(feed: &impl Feed, shared: &Shared) {
    let mut cursor = None;
    let mut retry = RETRY_FIRST;
    // Whether the last page was the end of the feed: only then does the next request wait on
    // the server (until then, pages are asked for back to back).
    let mut caught_up = false;
    loop {
        let wait = if caught_up { FEED_WAIT } else { Duration::ZERO };
        match feed.page(cursor, wait).await {
            Ok((ids, next)) => {
                caught_up = ids.len() < FEED_PAGE;
                let Ok(mut s) = shared.lock() else { return };
                for id in ids {
                    s.revoked(id);
                }
                s.following = true;
                s.feed = if caught_up {
                    tessera_result::TESSERA_OK
                } else {
                    tessera_result::TESSERA_PENDING
                };
                cursor = Some(next);
                retry = RETRY_FIRST;
            }
            Err(e) => {
                if let Ok(mut s) = shared.lock() {
                    s.feed = tessera_result::from(&e);
                }
                caught_up = false;
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Ask the server about each queued RT and keep its answer.
async fn answer(client: &Arc<AdminClient>, shared: &Arc<Shared>, mut rx: mpsc::Receiver<Ask>) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    while let Some(ask) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (client, shared) = (client.clone(), shared.clone());
        tokio::spawn(async move {
            // Where the feed stood before the question. A valid answer is kept only if the
            // feed already had a cursor (every later revocation reaches the cache) and reported
            // no revocation of the registration meanwhile (the server may have answered just
            // before committing one).
            let before = shared
                .lock()
                .ok()
                .filter(|s| s.following)
                .map(|s| s.revocations_seen);
            let r = client.introspect(&ask.rt).await;
            drop(permit);
            let Ok(mut s) = shared.lock() else { return };
            s.pending.remove(&ask.key);
            match &r {
                Ok(_) => s.stats.answered_valid += 1,
                Err(ClientError::Server(b)) if b.code == code::RATE_LIMITED => {
                    s.stats.over_quota += 1;
                }
                Err(ClientError::Server(b))
                    if matches!(
                        b.code,
                        code::UNAUTHENTICATED | code::EXPIRED | code::REVOKED | code::SUPERSEDED
                    ) =>
                {
                    s.stats.answered_refused += 1;
                }
                Err(_) => s.stats.failed += 1,
            }
            let verdict = match r {
                Ok(i) => match before.and_then(|n| s.revoked_since(i.registration_id, n)) {
                    Some(false) => Verdict::Valid(identity(
                        i.registration_id,
                        i.generation,
                        i.expires_at,
                        &i.device_id,
                    )),
                    Some(true) => Verdict::Refused(tessera_result::TESSERA_REVOKED),
                    None => return,
                },
                // Lasting refusals are kept; anything else (a rate limit, a broken
                // connection) is asked again on the next attempt.
                Err(ref e @ ClientError::Server(ref b))
                    if matches!(
                        b.code,
                        code::UNAUTHENTICATED | code::EXPIRED | code::REVOKED | code::SUPERSEDED
                    ) =>
                {
                    Verdict::Refused(tessera_result::from(e))
                }
                Err(_) => return,
            };
            s.cache.insert(ask.key, verdict, ask.binding);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Mutex as AsyncMutex;

    /// One page of the feed, or why there is none.
    type Page = Result<(Vec<u64>, u64), ClientError>;

    /// A feed whose pages the test hands out one at a time.
    struct Script {
        pages: AsyncMutex<mpsc::Receiver<Page>>,
        asked: AtomicUsize,
        asking: tokio::sync::Notify,
    }

    impl Feed for Script {
        async fn page(&self, _after: Option<u64>, _wait: Duration) -> Page {
            self.asked.fetch_add(1, Ordering::SeqCst);
            self.asking.notify_one();
            match self.pages.lock().await.recv().await {
                Some(p) => p,
                None => std::future::pending().await,
            }
        }
    }

    /// Hand out `page`, then wait until the follower has dealt with it and asks again.
    async fn step(tx: &mpsc::Sender<Page>, feed: &Script, page: Page) {
        let before = feed.asked.load(Ordering::SeqCst);
        tx.send(page).await.unwrap();
        while feed.asked.load(Ordering::SeqCst) == before {
            feed.asking.notified().await;
        }
    }

    fn status(shared: &Shared) -> tessera_result {
        shared.lock().unwrap().feed
    }

    #[tokio::test(start_paused = true)]
    async fn the_status_says_following_only_once_the_feed_has_caught_up() {
        let (tx, rx) = mpsc::channel(1);
        let feed = Script {
            pages: AsyncMutex::new(rx),
            asked: AtomicUsize::new(0),
            asking: tokio::sync::Notify::new(),
        };
        let shared = Shared::new();
        let run = async {
            tokio::select! {
                () = follow(&feed, &shared) => {}
                () = async {
                    step(&tx, &feed, Ok((vec![], 10))).await;
                    assert_eq!(status(&shared), tessera_result::TESSERA_OK);
                    // An outage.
                    step(&tx, &feed, Err(ClientError::Timeout)).await;
                    assert_eq!(status(&shared), tessera_result::TESSERA_TIMEOUT);
                    // Back, with a full page: more may wait behind it.
                    let full: Vec<u64> = (0..FEED_PAGE as u64).collect();
                    step(&tx, &feed, Ok((full.clone(), 1_010))).await;
                    assert_eq!(status(&shared), tessera_result::TESSERA_PENDING);
                    step(&tx, &feed, Ok((full, 2_010))).await;
                    assert_eq!(status(&shared), tessera_result::TESSERA_PENDING);
                    // A short page: caught up.
                    step(&tx, &feed, Ok((vec![5_000], 2_011))).await;
                    assert_eq!(status(&shared), tessera_result::TESSERA_OK);
                    assert_eq!(shared.lock().unwrap().revocations_seen, 2 * FEED_PAGE as u64 + 1);
                } => {}
            }
        };
        run.await;
    }
}

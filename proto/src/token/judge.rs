//! The judgement of an RT: the one set of rules every validator applies.
//!
//! Three validators check RTs: the engine (from its in-memory family table), the local
//! validator (from the server's store, read from the side) and the C service validator (from
//! the answers the server gave it, cached). They differ in where the registration's state
//! comes from and in how authenticity is established, and in nothing else: each of them calls
//! [`judge`] (or [`judge_rt`], which checks the MAC first) with the state it holds.
//!
//! The order is fixed, so that nothing but "not accepted" is said about an RT whose MAC has not
//! verified:
//!
//! 1. not authentic (a wrong MAC, or a key epoch that is not live) → [`RtRefusal::Unauthenticated`];
//! 2. expired, after the clock-skew leeway → [`RtRefusal::Expired`];
//! 3. the registration has no live state (revoked, pruned, never existed) → [`RtRefusal::Revoked`];
//! 4. the registration's binding differs (another registration that got the same id after a
//!    restore) → [`RtRefusal::Revoked`];
//! 5. a generation below the current one → [`RtRefusal::Superseded`];
//! 6. the current generation → [`Standing::Current`];
//! 7. a generation above the current one → [`Standing::Ahead`]: the state judged against is
//!    behind the authority that minted the RT (a node that has not yet seen another node's
//!    refresh). A validator whose state may lag asks the authority and judges again with
//!    [`settle`]; a validator that reads the authority itself settles at once. Against the
//!    authority, an RT ahead of its registration is refused as revoked: only a store that lost
//!    a refresh (restored from an older backup) holds a generation below one it issued.

#[cfg(feature = "mac")]
use ring::hmac;

use super::rt::RtClaims;
#[cfg(feature = "mac")]
use super::rt::UntrustedRt;
use crate::ids::RegistrationId;

/// The live state of a registration: what an RT is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyState {
    /// The current generation: the lowest one accepted.
    pub generation: u32,
    /// The registration's binding, which every RT of it carries.
    pub binding: u32,
}

/// Why an RT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtRefusal {
    /// Not authentic, or its key epoch is not live. Says nothing more on purpose.
    Unauthenticated,
    /// Authentic, and past its expiry plus the leeway.
    Expired,
    /// Authentic, and its registration is revoked or gone (or is another registration now).
    Revoked,
    /// Authentic, and a newer generation of its registration has been issued.
    Superseded,
}

/// What an accepted RT is, against the state it was judged with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Of the registration's current generation: valid.
    Current,
    /// Of a generation above the state's: valid only if the authority says so ([`settle`]).
    Ahead,
}

/// Judge an RT's claims. `authentic` says whether its MAC verified under a live key of its
/// epoch (or, for a validator without keys, whether the server vouched for this very RT).
/// `family` is asked for the registration's state only once the RT is authentic and not
/// expired, so an RT that is not accepted costs no lookup; its error passes through.
#[inline]
pub fn judge<E: From<RtRefusal>>(
    authentic: bool,
    claims: &RtClaims,
    now_secs: u64,
    leeway_secs: u64,
    family: impl FnOnce(RegistrationId) -> Result<Option<FamilyState>, E>,
) -> Result<Standing, E> {
    admit(authentic, claims, now_secs, leeway_secs)?;
    match family(claims.registration_id)? {
        Some(f) if f.binding != claims.binding => Err(RtRefusal::Revoked.into()),
        Some(f) if claims.generation < f.generation => Err(RtRefusal::Superseded.into()),
        Some(f) if claims.generation == f.generation => Ok(Standing::Current),
        Some(_) => Ok(Standing::Ahead),
        None => Err(RtRefusal::Revoked.into()),
    }
}

/// Rules 1 and 2 alone: authentic and not expired. What a refresh checks before it reads the
/// registration (a refresh has its own rules for older generations: reuse detection).
#[inline]
pub fn admit(
    authentic: bool,
    claims: &RtClaims,
    now_secs: u64,
    leeway_secs: u64,
) -> Result<(), RtRefusal> {
    if !authentic {
        return Err(RtRefusal::Unauthenticated);
    }
    if now_secs >= claims.expires_at.saturating_add(leeway_secs) {
        return Err(RtRefusal::Expired);
    }
    Ok(())
}

/// Judge an RT again against the authority's own state (after [`Standing::Ahead`], or by a
/// validator that reads the authority): the RT must be of the current generation.
#[inline]
pub fn settle(claims: &RtClaims, authority: Option<FamilyState>) -> Result<(), RtRefusal> {
    match authority {
        Some(f) if f.binding != claims.binding => Err(RtRefusal::Revoked),
        Some(f) if claims.generation < f.generation => Err(RtRefusal::Superseded),
        Some(f) if claims.generation == f.generation => Ok(()),
        _ => Err(RtRefusal::Revoked),
    }
}

/// Whether an RT's MAC verifies under `key`, the RT key of its epoch if that epoch is live.
/// When it is not (`None`), the MAC is checked under `dummy` all the same and the answer is
/// false: a live and a dead epoch take the same time.
#[cfg(feature = "mac")]
#[inline]
pub fn authenticate(rt: &UntrustedRt, key: Option<&hmac::Key>, dummy: &hmac::Key) -> bool {
    let (key, live) = match key {
        Some(k) => (k, true),
        None => (dummy, false),
    };
    rt.verify_mac(key) & live
}

/// [`authenticate`] and then [`judge`]: what a validator holding the RT keys calls. Returns
/// the RT's claims, authenticated, with its standing.
#[cfg(feature = "mac")]
#[inline]
pub fn judge_rt<E: From<RtRefusal>>(
    rt: &UntrustedRt,
    key: Option<&hmac::Key>,
    dummy: &hmac::Key,
    now_secs: u64,
    leeway_secs: u64,
    family: impl FnOnce(RegistrationId) -> Result<Option<FamilyState>, E>,
) -> Result<(RtClaims, Standing), E> {
    let claims = rt.untrusted_claims();
    let standing = judge(
        authenticate(rt, key, dummy),
        &claims,
        now_secs,
        leeway_secs,
        family,
    )?;
    Ok((claims, standing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(generation: u32, expires_at: u64) -> RtClaims {
        RtClaims {
            key_id: 1,
            registration_id: RegistrationId::new(9),
            binding: 77,
            generation,
            issued_at: 0,
            expires_at,
        }
    }

    fn run(
        authentic: bool,
        c: &RtClaims,
        now: u64,
        family: Option<FamilyState>,
    ) -> Result<Standing, RtRefusal> {
        let mut asked = false;
        let r = judge(authentic, c, now, 60, |id| {
            assert_eq!(id, c.registration_id);
            asked = true;
            Ok::<_, RtRefusal>(family)
        });
        // The state is looked up only for an authentic RT that has not expired.
        assert_eq!(
            asked,
            authentic && now < c.expires_at + 60,
            "lookup for {c:?} at {now}"
        );
        r
    }

    #[test]
    fn every_rule_in_its_order() {
        let live = |generation| {
            Some(FamilyState {
                generation,
                binding: 77,
            })
        };
        use RtRefusal::*;
        type Case = (
            bool,
            u32,
            u64,
            Option<FamilyState>,
            Result<Standing, RtRefusal>,
        );
        let cases: &[Case] = &[
            (true, 3, 1_000, live(3), Ok(Standing::Current)),
            (true, 3, 1_059, live(3), Ok(Standing::Current)),
            (true, 3, 1_060, live(3), Err(Expired)),
            (false, 3, 1_000, live(3), Err(Unauthenticated)),
            (false, 3, 5_000, None, Err(Unauthenticated)),
            (true, 3, 5_000, None, Err(Expired)),
            (true, 3, 1_000, None, Err(Revoked)),
            (
                true,
                3,
                1_000,
                Some(FamilyState {
                    generation: 3,
                    binding: 78,
                }),
                Err(Revoked),
            ),
            (true, 2, 1_000, live(3), Err(Superseded)),
            (true, 4, 1_000, live(3), Ok(Standing::Ahead)),
        ];
        for (authentic, generation, now, family, want) in cases {
            let c = claims(*generation, 1_000);
            assert_eq!(run(*authentic, &c, *now, *family), *want, "{c:?} at {now}");
        }
    }

    #[test]
    fn settling_against_the_authority_takes_only_the_current_generation() {
        let at = |generation, binding| {
            Some(FamilyState {
                generation,
                binding,
            })
        };
        assert_eq!(settle(&claims(4, 9), at(4, 77)), Ok(()));
        assert_eq!(settle(&claims(4, 9), at(5, 77)), Err(RtRefusal::Superseded));
        assert_eq!(settle(&claims(4, 9), at(3, 77)), Err(RtRefusal::Revoked));
        assert_eq!(settle(&claims(4, 9), at(4, 1)), Err(RtRefusal::Revoked));
        assert_eq!(settle(&claims(4, 9), None), Err(RtRefusal::Revoked));
    }
}

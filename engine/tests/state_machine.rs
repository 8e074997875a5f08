//! Property-based state-machine test: random sequences of operations, approvals, polls,
//! refreshes, validations, revocations, time steps, pruning and restarts, run against the
//! engine and against a small reference model; every outcome must match.

mod common;

use std::time::Duration;

use common::{spec, Harness};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use tessera_engine::{
    Approval, ApprovalPolicy, EngineConfig, Error, OperationId, OperationSecret, OperationStatus,
    ProvisioningToken, PtKind, Rate, RegistrationId, RegistrationToken,
};

const LIFETIME: u64 = 3600;
const GRACE: u64 = 300;
const LEEWAY: u64 = 60;
const TTL_MS: u64 = 900_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Pending,
    Approved,
    Completed,
    Rejected,
    Expired,
    Cancelled,
}

impl St {
    fn name(self) -> &'static str {
        match self {
            St::Pending => "pending",
            St::Approved => "approved",
            St::Completed => "completed",
            St::Rejected => "rejected",
            St::Expired => "expired",
            St::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug)]
struct RefPt {
    single: bool,
    auto: bool,
    revoked: bool,
}

#[derive(Clone, Debug)]
struct RefOp {
    pt: usize,
    nonce: u8,
    device: String,
    state: St,
    expires_at_ms: u64,
    reg: Option<usize>,
}

#[derive(Clone, Debug)]
struct RefReg {
    pt: usize,
    device: String,
    generation: u32,
    issued_at: u64,
    expires_at: u64,
    revoked: bool,
    /// Tokens the device holds: (generation, expires_at).
    tokens: Vec<(u32, u64)>,
}

#[derive(Clone, Debug)]
struct Model {
    now_ms: u64,
    pts: Vec<RefPt>,
    ops: Vec<RefOp>,
    regs: Vec<RefReg>,
    last: String,
}

#[derive(Clone, Debug)]
enum T {
    CreatePt { single: bool, auto: bool },
    Begin { pt: usize, nonce: u8 },
    Approve { op: usize },
    Reject { op: usize },
    Poll { op: usize },
    Refresh { reg: usize, which: u8 },
    Validate { reg: usize, which: u8 },
    RevokeReg { reg: usize },
    RevokePt { pt: usize },
    Advance { secs: u64 },
    Prune,
    Reopen,
}

fn pick(tokens_len: usize, which: u8) -> usize {
    match which {
        0 => tokens_len - 1,
        1 => tokens_len.saturating_sub(2),
        _ => 0,
    }
}

impl Model {
    fn now_secs(&self) -> u64 {
        self.now_ms / 1000
    }

    fn effective(&self, op: &RefOp) -> St {
        if op.state == St::Pending && self.now_ms >= op.expires_at_ms {
            St::Expired
        } else {
            op.state
        }
    }

    fn approve(&mut self, op_idx: usize) -> usize {
        let op = self.ops[op_idx].clone();
        let single = self.pts[op.pt].single;
        for r in &mut self.regs {
            if !r.revoked && (r.device == op.device || (single && r.pt == op.pt)) {
                r.revoked = true;
            }
        }
        let now = self.now_secs();
        self.regs.push(RefReg {
            pt: op.pt,
            device: op.device.clone(),
            generation: 1,
            issued_at: now,
            expires_at: now + LIFETIME,
            revoked: false,
            tokens: Vec::new(),
        });
        let reg = self.regs.len() - 1;
        self.ops[op_idx].state = St::Approved;
        self.ops[op_idx].reg = Some(reg);
        for i in 0..self.ops.len() {
            let o = &self.ops[i];
            if i != op_idx
                && o.pt == op.pt
                && self.effective(o) == St::Pending
                && (single || o.device == op.device)
            {
                self.ops[i].state = St::Cancelled;
            }
        }
        reg
    }

    fn deliver(&mut self, reg: usize) -> String {
        let r = &mut self.regs[reg];
        if r.revoked {
            return "revoked".into();
        }
        if r.generation != 1 {
            return "closed:completed".into();
        }
        if r.tokens.is_empty() {
            r.tokens.push((1, r.expires_at));
        }
        format!("provisioned:{reg}")
    }
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = T;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            now_ms: 1_800_000_000_000,
            pts: vec![],
            ops: vec![],
            regs: vec![],
            last: String::new(),
        })
        .boxed()
    }

    fn transitions(s: &Model) -> BoxedStrategy<T> {
        let np = s.pts.len().max(1);
        let no = s.ops.len().max(1);
        let nr = s.regs.len().max(1);
        prop_oneof![
            2 => (any::<bool>(), any::<bool>()).prop_map(|(single, auto)| T::CreatePt { single, auto }),
            6 => (0..np, 0u8..4).prop_map(|(pt, nonce)| T::Begin { pt, nonce }),
            4 => (0..no).prop_map(|op| T::Approve { op }),
            1 => (0..no).prop_map(|op| T::Reject { op }),
            4 => (0..no).prop_map(|op| T::Poll { op }),
            5 => (0..nr, 0u8..3).prop_map(|(reg, which)| T::Refresh { reg, which }),
            4 => (0..nr, 0u8..3).prop_map(|(reg, which)| T::Validate { reg, which }),
            1 => (0..nr).prop_map(|reg| T::RevokeReg { reg }),
            1 => (0..np).prop_map(|pt| T::RevokePt { pt }),
            4 => prop_oneof![1u64..120, 250u64..400, 850u64..1000, 3500u64..3800].prop_map(|secs| T::Advance { secs }),
            1 => Just(T::Prune),
            1 => Just(T::Reopen),
        ]
        .boxed()
    }

    fn preconditions(s: &Model, t: &T) -> bool {
        match t {
            T::Begin { pt, .. } | T::RevokePt { pt } => *pt < s.pts.len(),
            T::Approve { op } | T::Reject { op } | T::Poll { op } => *op < s.ops.len(),
            T::RevokeReg { reg } => *reg < s.regs.len(),
            T::Refresh { reg, .. } | T::Validate { reg, .. } => {
                *reg < s.regs.len() && !s.regs[*reg].tokens.is_empty()
            }
            _ => true,
        }
    }

    fn apply(mut s: Model, t: &T) -> Model {
        let now = s.now_secs();
        s.last = match *t {
            T::CreatePt { single, auto } => {
                s.pts.push(RefPt {
                    single,
                    auto,
                    revoked: false,
                });
                "ok".into()
            }
            T::Begin { pt, nonce } => {
                let device = format!("d{pt}-{}", nonce % 2);
                if s.pts[pt].revoked {
                    "revoked".into()
                } else {
                    let pending: Vec<usize> = (0..s.ops.len())
                        .filter(|&i| s.ops[i].pt == pt && s.effective(&s.ops[i]) == St::Pending)
                        .collect();
                    if let Some(&i) = pending.iter().find(|&&i| s.ops[i].nonce == nonce) {
                        format!("resumed:{i}")
                    } else if pending.len() >= if s.pts[pt].single { 4 } else { 1000 } {
                        "too_many_pending".into()
                    } else {
                        s.ops.push(RefOp {
                            pt,
                            nonce,
                            device,
                            state: St::Pending,
                            expires_at_ms: s.now_ms + TTL_MS,
                            reg: None,
                        });
                        let idx = s.ops.len() - 1;
                        // An operation that would replace an active registration of its
                        // device id waits for a technician, whatever the PT's policy.
                        let replaces = s
                            .regs
                            .iter()
                            .any(|r| !r.revoked && r.device == s.ops[idx].device);
                        if s.pts[pt].auto && !replaces {
                            let reg = s.approve(idx);
                            format!("begun:{idx}:approved:{reg}")
                        } else {
                            format!("begun:{idx}:pending")
                        }
                    }
                }
            }
            T::Approve { op } => {
                let st = s.effective(&s.ops[op]);
                if st != St::Pending {
                    format!("closed:{}", st.name())
                } else if s.pts[s.ops[op].pt].revoked {
                    "revoked".into()
                } else {
                    format!("approved:{}", s.approve(op))
                }
            }
            T::Reject { op } => {
                let st = s.effective(&s.ops[op]);
                if st == St::Pending {
                    s.ops[op].state = St::Rejected;
                    "ok".into()
                } else {
                    format!("closed:{}", st.name())
                }
            }
            T::Poll { op } => match s.effective(&s.ops[op]) {
                St::Approved => {
                    s.ops[op].state = St::Completed;
                    let reg = s.ops[op].reg.expect("approved op has a registration");
                    s.deliver(reg)
                }
                St::Completed => {
                    let reg = s.ops[op].reg.expect("completed op has a registration");
                    s.deliver(reg)
                }
                st => st.name().into(),
            },
            T::Refresh { reg, which } => {
                let r = &mut s.regs[reg];
                let (g, exp) = r.tokens[pick(r.tokens.len(), which)];
                if now >= exp + LEEWAY {
                    "expired".into()
                } else if r.revoked {
                    "revoked".into()
                } else if g == r.generation {
                    r.generation += 1;
                    r.issued_at = now;
                    r.expires_at = now + LIFETIME;
                    r.tokens.push((r.generation, r.expires_at));
                    format!("refreshed:{}", r.generation)
                } else if g + 1 == r.generation && now < r.issued_at + GRACE {
                    format!("retried:{}", r.generation)
                } else {
                    r.revoked = true;
                    "reuse".into()
                }
            }
            T::Validate { reg, which } => {
                let r = &s.regs[reg];
                let (g, exp) = r.tokens[pick(r.tokens.len(), which)];
                if now >= exp + LEEWAY {
                    "expired".into()
                } else if r.revoked {
                    "revoked".into()
                } else if g < r.generation {
                    "superseded".into()
                } else {
                    "ok".into()
                }
            }
            T::RevokeReg { reg } => {
                s.regs[reg].revoked = true;
                "ok".into()
            }
            T::RevokePt { pt } => {
                s.pts[pt].revoked = true;
                for r in &mut s.regs {
                    if r.pt == pt {
                        r.revoked = true;
                    }
                }
                for i in 0..s.ops.len() {
                    if s.ops[i].pt == pt && s.effective(&s.ops[i]) == St::Pending {
                        s.ops[i].state = St::Cancelled;
                    }
                }
                "ok".into()
            }
            T::Advance { secs } => {
                s.now_ms += secs * 1000;
                "ok".into()
            }
            T::Prune => {
                for i in 0..s.ops.len() {
                    if s.effective(&s.ops[i]) == St::Expired {
                        s.ops[i].state = St::Expired;
                    }
                }
                "ok".into()
            }
            T::Reopen => "ok".into(),
        };
        s
    }
}

struct Sut {
    h: Harness,
    pts: Vec<ProvisioningToken>,
    ops: Vec<(OperationId, OperationSecret)>,
    regs: Vec<(RegistrationId, Vec<(u32, RegistrationToken)>)>,
}

fn class(e: &Error) -> String {
    match e {
        Error::Revoked => "revoked".into(),
        Error::Expired => "expired".into(),
        Error::Superseded => "superseded".into(),
        Error::RotationReuse => "reuse".into(),
        Error::TooManyPendingOperations => "too_many_pending".into(),
        Error::OperationClosed(s) => format!("closed:{s}"),
        other => format!("unexpected {other:?}"),
    }
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = Reference;

    fn init_test(_: &Model) -> Sut {
        let mut cfg = EngineConfig::default();
        cfg.pt_rates(Rate::new(100_000, 100_000), Rate::new(100_000, 100_000))
            .source_rate(Rate::new(100_000, 100_000))
            .max_pending(4, 1000);
        Sut {
            h: Harness::with_config(cfg),
            pts: vec![],
            ops: vec![],
            regs: vec![],
        }
    }

    fn apply(mut sut: Sut, m: &Model, t: T) -> Sut {
        let h = &mut sut.h;
        let now = h.now();
        let tech = Harness::tech();
        let got: String = match t {
            T::CreatePt { single, auto } => {
                let kind = if single {
                    PtKind::SingleDevice
                } else {
                    PtKind::Fleet {
                        max_registrations: 1_000_000,
                    }
                };
                let policy = if auto {
                    ApprovalPolicy::Automatic
                } else {
                    ApprovalPolicy::Manual
                };
                sut.pts.push(h.pt(spec(kind, policy)));
                "ok".into()
            }
            T::Begin { pt, nonce } => {
                let device = format!("d{pt}-{}", nonce % 2);
                match h.begin(&sut.pts[pt], Some(&device), &[nonce]) {
                    Ok(o) if o.resumed => {
                        let i = sut
                            .ops
                            .iter()
                            .position(|(id, _)| *id == o.operation_id)
                            .expect("resumed a known op");
                        assert_eq!(
                            sut.ops[i].1, o.secret,
                            "resumed operation has the same secret"
                        );
                        format!("resumed:{i}")
                    }
                    Ok(o) => {
                        sut.ops.push((o.operation_id, o.secret.clone()));
                        let idx = sut.ops.len() - 1;
                        match o.state {
                            tessera_engine::OperationState::Approved => {
                                let rec = h.engine.operation(&o.operation_id).unwrap();
                                sut.regs.push((rec.registration_id.unwrap(), vec![]));
                                format!("begun:{idx}:approved:{}", sut.regs.len() - 1)
                            }
                            s => format!("begun:{idx}:{s}"),
                        }
                    }
                    Err(e) => class(&e),
                }
            }
            T::Approve { op } => {
                match h
                    .engine
                    .approve_operation(&sut.ops[op].0, Approval::default(), &tech, now)
                {
                    Ok(reg) => {
                        sut.regs.push((reg.id, vec![]));
                        format!("approved:{}", sut.regs.len() - 1)
                    }
                    Err(e) => class(&e),
                }
            }
            T::Reject { op } => match h.engine.reject_operation(&sut.ops[op].0, "no", &tech, now) {
                Ok(()) => "ok".into(),
                Err(e) => class(&e),
            },
            T::Poll { op } => {
                let (id, secret) = &sut.ops[op];
                match h.engine.poll_operation(
                    id,
                    secret.expose(),
                    &tessera_engine::Actor::device(None),
                    now,
                ) {
                    Ok(OperationStatus::Provisioned(p)) => {
                        let i = sut
                            .regs
                            .iter()
                            .position(|(r, _)| *r == p.registration_id)
                            .expect("known registration");
                        let toks = &mut sut.regs[i].1;
                        if toks.is_empty() {
                            toks.push((1, p.rt));
                        } else {
                            assert_eq!(toks[0].1, p.rt, "re-collect returns the same RT");
                        }
                        format!("provisioned:{i}")
                    }
                    Ok(OperationStatus::Pending { .. }) => "pending".into(),
                    Ok(OperationStatus::Rejected { .. }) => "rejected".into(),
                    Ok(OperationStatus::Expired) => "expired".into(),
                    Ok(OperationStatus::Cancelled { .. }) => "cancelled".into(),
                    Err(e) => class(&e),
                }
            }
            T::Refresh { reg, which } => {
                let toks = &sut.regs[reg].1;
                let (_, tok) = &toks[pick(toks.len(), which)];
                match h.engine.refresh(tok.expose(), &Harness::device(), now) {
                    Ok(r) if r.retried => {
                        let held = sut.regs[reg]
                            .1
                            .iter()
                            .find(|(g, _)| *g == r.claims.generation)
                            .expect("held");
                        assert_eq!(held.1, r.rt, "retry returns the same successor");
                        format!("retried:{}", r.claims.generation)
                    }
                    Ok(r) => {
                        sut.regs[reg].1.push((r.claims.generation, r.rt));
                        format!("refreshed:{}", r.claims.generation)
                    }
                    Err(e) => class(&e),
                }
            }
            T::Validate { reg, which } => {
                let toks = &sut.regs[reg].1;
                let (_, tok) = &toks[pick(toks.len(), which)];
                match h.engine.validate_rt(tok.expose().as_bytes(), now) {
                    Ok(_) => "ok".into(),
                    Err(e) => class(&e),
                }
            }
            T::RevokeReg { reg } => {
                h.engine
                    .revoke_registration(sut.regs[reg].0, "test", &tech, now)
                    .unwrap();
                "ok".into()
            }
            T::RevokePt { pt } => {
                let id = tessera_engine::token::ParsedPt::parse(sut.pts[pt].expose().as_bytes())
                    .unwrap()
                    .untrusted_id();
                h.engine.revoke_pt(&id, "test", &tech, now).unwrap();
                "ok".into()
            }
            T::Advance { secs } => {
                h.clock.advance(Duration::from_secs(secs));
                "ok".into()
            }
            T::Prune => {
                h.engine.prune(now).unwrap();
                "ok".into()
            }
            T::Reopen => {
                h.reopen();
                "ok".into()
            }
        };
        assert_eq!(got, m.last, "outcome differs from the model");
        sut
    }

    fn check_invariants(sut: &Sut, m: &Model) {
        assert_eq!(sut.ops.len(), m.ops.len());
        assert_eq!(sut.regs.len(), m.regs.len());
        for (i, (id, _)) in sut.regs.iter().enumerate() {
            let rec = sut.h.engine.registration(*id).unwrap();
            assert_eq!(
                rec.status == tessera_engine::model::RegistrationStatus::Revoked,
                m.regs[i].revoked,
                "registration {i}"
            );
            assert_eq!(rec.generation, m.regs[i].generation);
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2000, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_reference_model(sequential 1..60 => Sut);
}

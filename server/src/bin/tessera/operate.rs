//! The operator commands: each opens one admin connection, makes its request(s) and prints the
//! answer for people (`output`) or as JSON.

use std::time::Duration;

use serde::Serialize;
use tessera_client::{AdminClient, Trust};
use tessera_engine::AdminToken;
use tessera_proto::admin::requests::*;
use tessera_proto::admin::{AdminRequest, AuditPage};

use super::output::{self, Col};
use super::serve::wait_for_signal;
use super::{done, Cmd, Conn, DeviceCmd, KeysCmd, OpCmd, PtCmd, TokenCmd};

fn admin_client(c: &Conn) -> Result<AdminClient, String> {
    let ca =
        c.ca.clone()
            .unwrap_or_else(|| c.data_dir.join("tls/ca.pem"));
    let token = match std::env::var("TESSERA_ADMIN_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => {
            let f = c
                .token_file
                .clone()
                .unwrap_or_else(|| c.data_dir.join("admin.token"));
            std::fs::read_to_string(&f)
                .map_err(|e| format!("admin token {}: {e}", f.display()))?
                .trim()
                .to_owned()
        }
    };
    let trust = Trust::ca_file(&ca).map_err(|e| e.to_string())?;
    let mut client = AdminClient::new(
        c.admin_addr,
        &server_name(c),
        &trust,
        AdminToken::new(token),
    )
    .map_err(|e| e.to_string())?;
    client.set_connect_timeout(CONNECT_WITHIN);
    Ok(client)
}

/// A progress bar on standard error for `total` `what`, when standard error is a terminal.
pub(super) fn progress(total: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{bar:40}} {{human_pos}}/{{human_len}} {what} ({{elapsed}}, {{eta}} left)"
    ))
    .ok()?;
    bar.set_style(style);
    Some(bar)
}

/// How long an operator command waits for the server to answer its connection.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);

/// The name the server's certificate must carry: `given` (`--server-name`), else the first
/// name the certificate in `data_dir` was made for, else `localhost`.
pub(super) fn server_name_or_default(given: Option<&str>, data_dir: &std::path::Path) -> String {
    given
        .map(str::to_owned)
        .or_else(|| {
            tessera_server::server::tls::certificate_names(data_dir)
                .and_then(|n| n.into_iter().next())
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

fn server_name(c: &Conn) -> String {
    server_name_or_default(c.server_name.as_deref(), &c.data_dir)
}

/// A client error in words an operator can act on.
fn explain(c: &Conn, e: tessera_client::ClientError) -> String {
    use tessera_client::ClientError;
    match e {
        ClientError::Connection(m) => format!(
            "cannot reach the admin endpoint at {}: {m}. Is `tessera serve` running there? Check \
             --admin-addr (TESSERA_ADMIN_ADDR) and that UDP reaches that address",
            c.admin_addr
        ),
        ClientError::Certificate(m) => format!(
            "the server's certificate was not accepted for the name {:?} ({m}): give \
             --server-name with one of the names `tessera serve` printed (`tessera tls show`), \
             and --ca with the deployment's CA",
            server_name(c)
        ),
        e => e.to_string(),
    }
}

/// The admin connection of one operator command, opened on first use and closed when the
/// command is done, so that the server does not keep it until its idle timeout.
#[derive(Default)]
struct Session {
    client: Option<AdminClient>,
}

impl Session {
    fn client(&mut self, conn: &Conn) -> Result<&AdminClient, String> {
        let client = match self.client.take() {
            Some(c) => c,
            None => admin_client(conn)?,
        };
        Ok(self.client.insert(client))
    }

    /// One request on the command's connection.
    async fn send<R: AdminRequest>(&mut self, conn: &Conn, req: R) -> Result<R::Answer, String> {
        let c = self.client(conn)?;
        c.send(&req).await.map_err(|e| explain(conn, e))
    }

    async fn close(self) {
        if let Some(c) = self.client {
            // A connection that never got going is not worth waiting for.
            let _ = tokio::time::timeout(Duration::from_millis(500), c.close()).await;
        }
    }
}

pub(super) async fn operate(cmd: Cmd) -> std::process::ExitCode {
    let mut session = Session::default();
    let r = run(cmd, &mut session).await;
    session.close().await;
    done(r)
}

async fn run(cmd: Cmd, session: &mut Session) -> Result<(), String> {
    match cmd {
        Cmd::Pt(PtCmd::Create { conn, spec }) => {
            let a = session.send(&conn, PtCreate(spec.to_args())).await?;
            let text = format!(
                "PT id:    {}\nPT token: {}\n(the token is shown once; put it in the device's firmware image)",
                a.pt.id, a.token
            );
            print_done(&conn, &a, text);
        }
        Cmd::Pt(PtCmd::Batch {
            conn,
            spec,
            count,
            out,
        }) => {
            use std::io::Write;
            let c = session.client(&conn)?;
            let mut f = tessera_server::server::identity::create_private(&out)
                .map_err(|x| format!("{}: {x}", out.display()))?;
            let mut werr = None;
            let req = PtBatch(PtArgs {
                count: Some(count),
                ..spec.to_args()
            });
            // A progress bar on a terminal (each line of the answer is one PT); nothing
            // extra otherwise.
            let bar = progress(count, "PTs");
            let r = c
                .create_pt_batch(&req, |chunk| {
                    if werr.is_none() {
                        werr = f.write_all(chunk).err();
                    }
                    if let Some(b) = &bar {
                        b.inc(chunk.iter().filter(|&&c| c == b'\n').count() as u64);
                    }
                })
                .await;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            match (r, werr) {
                (Ok(b), None) => {
                    f.sync_all().map_err(|x| x.to_string())?;
                    let text = format!(
                        "created {} PTs in batch {}; tokens in {}",
                        b.count,
                        b.batch_id,
                        out.display()
                    );
                    print_done(&conn, &b, text);
                }
                (r, w) => {
                    drop(f);
                    let _ = std::fs::remove_file(&out);
                    return Err(match (r, w) {
                        (Err(x), _) => format!("batch failed, nothing stored: {x}"),
                        (_, Some(x)) => format!("writing {}: {x}", out.display()),
                        _ => "batch failed".into(),
                    });
                }
            }
        }
        Cmd::Pt(PtCmd::List {
            conn,
            all,
            limit,
            before,
        }) => {
            let req = PtList {
                limit,
                include_revoked: all,
                before,
            };
            let page = session.send(&conn, req).await?;
            print_list(&conn, &page, &page.pts, output::PT_LIST);
        }
        Cmd::Pt(PtCmd::Show { conn, id }) => {
            let a = session.send(&conn, PtShow { id }).await?;
            print_record(&conn, &a, &a.pt, output::PT_SHOW);
        }
        Cmd::Pt(PtCmd::Revoke { conn, id, reason }) => {
            let req = PtRevoke {
                id: id.clone(),
                reason: Some(reason),
            };
            let a = session.send(&conn, req).await?;
            let text = format!(
                "revoked {id}; registrations revoked with it: {}",
                a.registrations_revoked
            );
            print_done(&conn, &a, text);
        }
        Cmd::Op(OpCmd::List {
            conn,
            state,
            limit,
            before,
        }) => {
            let req = OpList {
                limit,
                state: (state != "all").then_some(state),
                before,
                ..OpList::default()
            };
            let page = session.send(&conn, req).await?;
            print_list(&conn, &page, &page.operations, output::OP_LIST);
        }
        Cmd::Op(OpCmd::Show { conn, id }) => {
            let a = session.send(&conn, OpShow { id }).await?;
            print_record(&conn, &a, &a.operation, output::OP_SHOW);
        }
        Cmd::Op(OpCmd::Approve {
            conn,
            id,
            code,
            device_id,
            reassign,
        }) => {
            let req = OpApprove {
                id,
                code,
                device_id,
                rt_lifetime_secs: None,
                reassign,
            };
            let a = session.send(&conn, req).await?;
            let text = format!(
                "approved: device {} registration {}",
                a.registration.device_id, a.registration.id
            );
            print_done(&conn, &a, text);
        }
        Cmd::Op(OpCmd::Reject { conn, id, reason }) => {
            let req = OpReject {
                id: id.clone(),
                reason: Some(reason),
            };
            let a = session.send(&conn, req).await?;
            print_done(&conn, &a, format!("rejected {id}"));
        }
        Cmd::Device(DeviceCmd::List {
            conn,
            active,
            limit,
            before,
        }) => {
            let req = DeviceList {
                limit,
                active_only: active,
                before,
                ..DeviceList::default()
            };
            let page = session.send(&conn, req).await?;
            print_list(&conn, &page, &page.registrations, output::REGISTRATIONS);
        }
        Cmd::Device(DeviceCmd::Show { conn, device_id }) => {
            let req = DeviceShow {
                device_id: Some(device_id.clone()),
            };
            let a = session.send(&conn, req).await?;
            if conn.json {
                print_json(&a);
            } else {
                match &a.blocked {
                    None => println!("device {device_id}: not blocked"),
                    Some(b) => print!(
                        "device {device_id}: BLOCKED\n{}",
                        output::record(b, output::BLOCK)
                    ),
                }
                if a.registrations.is_empty() {
                    println!("no registrations");
                } else {
                    print!(
                        "{}",
                        output::table(&a.registrations, output::REGISTRATION_DETAIL)
                    );
                }
            }
        }
        Cmd::Device(DeviceCmd::Revoke {
            conn,
            device_id,
            registration,
            reason,
        }) => {
            let req = DeviceRevoke {
                device_id,
                registration_id: registration,
                reason: Some(reason),
            };
            let a = session.send(&conn, req).await?;
            let text = format!("registrations revoked: {}", a.registrations_revoked);
            print_done(&conn, &a, text);
        }
        Cmd::Device(DeviceCmd::Block {
            conn,
            device_id,
            reason,
        }) => {
            let req = DeviceBlock {
                device_id: Some(device_id.clone()),
                reason: Some(reason),
            };
            let a = session.send(&conn, req).await?;
            let text = format!(
                "blocked {device_id}; registrations revoked: {}",
                a.registrations_revoked
            );
            print_done(&conn, &a, text);
        }
        Cmd::Device(DeviceCmd::Unblock { conn, device_id }) => {
            let req = DeviceUnblock {
                device_id: Some(device_id.clone()),
            };
            let a = session.send(&conn, req).await?;
            let text = if a.was_blocked {
                format!("unblocked {device_id}")
            } else {
                format!("{device_id} was not blocked")
            };
            print_done(&conn, &a, text);
        }
        Cmd::Keys(KeysCmd::Rotate { conn }) => {
            let a = session.send(&conn, KeysRotate {}).await?;
            let text = format!("current key epoch is now {}", a.epoch);
            print_done(&conn, &a, text);
        }
        Cmd::Keys(KeysCmd::List { conn }) => {
            let a = session.send(&conn, KeysList {}).await?;
            print_list(&conn, &a, &a.epochs, output::KEY_EPOCHS);
        }
        Cmd::Keys(KeysCmd::Retire { conn, epoch }) => {
            let a = session.send(&conn, KeysRetire { epoch }).await?;
            let text = format!("retired key epoch {epoch}; its RTs no longer validate");
            print_done(&conn, &a, text);
        }
        Cmd::Token(TokenCmd::Create { conn, name, role }) => {
            let req = TokenCreate {
                name: name.clone(),
                role: role.clone(),
            };
            let a = session.send(&conn, req).await?;
            let text = format!("admin token for {name} ({role}), shown once: {}", a.token);
            print_done(&conn, &a, text);
        }
        Cmd::Token(TokenCmd::List { conn }) => {
            let a = session.send(&conn, TokenList {}).await?;
            print_list(&conn, &a, &a.admin_tokens, output::ADMIN_TOKENS);
        }
        Cmd::Token(TokenCmd::Revoke { conn, id }) => {
            let a = session.send(&conn, TokenRevoke { id: id.clone() }).await?;
            let text = if a.revoked {
                format!("revoked admin token {id}")
            } else {
                format!("admin token {id} was already revoked")
            };
            print_done(&conn, &a, text);
        }
        Cmd::Audit {
            conn,
            after,
            limit,
            follow,
            interval_ms,
        } => {
            // Without --after: the end of the log.
            let start = after.unwrap_or(0);
            let first = Audit {
                after: start,
                limit,
                newest: after.is_none(),
            };
            let page = session.send(&conn, first).await?;
            if follow {
                let c = session.client(&conn)?;
                let interval = Duration::from_millis(interval_ms);
                follow_audit(c, conn.json, start, page, interval).await?;
            } else {
                print_list(&conn, &page, &page.events, output::AUDIT);
            }
        }
        Cmd::Leaks { conn, after, limit } => {
            let page = session.send(&conn, Leaks { after, limit }).await?;
            print_list(&conn, &page, &page.signals, output::LEAKS);
        }
        Cmd::Status { conn, metrics_addr } => {
            // Both at once, each within the bound: the admin endpoint's answer, and the
            // readiness probe, which says which part is down when the other cannot answer.
            let (status, ready) = tokio::join!(
                tokio::time::timeout(CONNECT_WITHIN, session.send(&conn, Status {})),
                async {
                    match metrics_addr.parse() {
                        Ok(a) => super::probe::readyz(a, CONNECT_WITHIN).await,
                        Err(_) => Err(format!("no metrics listener ({metrics_addr})")),
                    }
                },
            );
            match status {
                Ok(Ok(a)) => {
                    if conn.json {
                        print_json(&a);
                    } else {
                        print!("{}", output::status(&a));
                    }
                    if let Ok((_, r)) = &ready {
                        if let Some(bad) = super::probe::failing(r) {
                            eprintln!("not ready: {}", bad.join("; "));
                        }
                    }
                }
                failed => {
                    let admin = match failed {
                        Ok(Err(e)) => e,
                        _ => format!(
                            "the admin endpoint at {} did not answer within {} s",
                            conn.admin_addr,
                            CONNECT_WITHIN.as_secs()
                        ),
                    };
                    let why = match ready {
                        Ok((_, r)) => match super::probe::failing(&r) {
                            Some(bad) => format!(
                                "the server at {metrics_addr} says it is not ready: {}",
                                bad.join("; ")
                            ),
                            None => format!(
                                "the server at {metrics_addr} says it is ready: check the \
                                 admin address, the CA and the token"
                            ),
                        },
                        Err(e) => format!(
                            "its readiness probe at http://{metrics_addr}/readyz did not answer \
                             either ({e}): is `tessera serve` running? (--metrics-addr if it \
                             serves metrics elsewhere)"
                        ),
                    };
                    return Err(format!("{admin}\n{why}"));
                }
            }
        }
        Cmd::Serve(_)
        | Cmd::Simulate(_)
        | Cmd::Backup { .. }
        | Cmd::Restore { .. }
        | Cmd::Tls(_)
        | Cmd::Completions { .. }
        | Cmd::Config(_)
        | Cmd::Man
        | Cmd::Keys(KeysCmd::InitHsm { .. }) => unreachable!("handled in main"),
    }
    Ok(())
}

/// `tessera audit --follow`: print `first`'s events (all after `after`), then every later one as
/// it is recorded, until Ctrl-C or SIGTERM. A line per event with `--json`; for people, the first batch with
/// headings and each later batch as rows.
async fn follow_audit(
    c: &AdminClient,
    json: bool,
    mut after: u64,
    first: AuditPage,
    interval: Duration,
) -> Result<(), String> {
    use std::io::Write;
    const PAGE: usize = 1000;
    let stop = wait_for_signal();
    tokio::pin!(stop);
    let mut answer = first;
    let mut headings = !json;
    let mut layout = output::Layout::default();
    loop {
        let events = &answer.events;
        if let Some(ev) = events.last() {
            after = after.max(ev.seq);
        }
        let mut out = std::io::stdout().lock();
        let written = if json {
            events.iter().try_for_each(|ev| {
                writeln!(out, "{}", serde_json::to_string(ev).unwrap_or_default())
            })
        } else if headings || !events.is_empty() {
            let text = layout.render(events, output::AUDIT, headings);
            headings = false;
            out.write_all(text.as_bytes())
        } else {
            Ok(())
        };
        // A closed pipe (`tessera audit -f | head`) ends the command quietly.
        if written.and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        drop(out);
        if events.len() < PAGE {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
            }
        }
        let next = Audit {
            after,
            limit: PAGE,
            newest: false,
        };
        answer = tokio::select! {
            _ = &mut stop => return Ok(()),
            r = c.send(&next) => r.map_err(|x| x.to_string())?,
        };
    }
}

/// A value as one line of JSON, as the admin endpoint sent it.
fn print_json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

/// A list: the whole answer with `--json` (the records and, for a page, its `next`), else a
/// table of the records.
fn print_list<A: Serialize, T>(conn: &Conn, answer: &A, rows: &[T], cols: &[Col<T>]) {
    if conn.json {
        print_json(answer);
    } else {
        print!("{}", output::table(rows, cols));
    }
}

/// A single record: the whole answer with `--json`, else the record's fields.
fn print_record<A: Serialize, T>(conn: &Conn, answer: &A, rec: &T, cols: &[Col<T>]) {
    if conn.json {
        print_json(answer);
    } else {
        print!("{}", output::record(rec, cols));
    }
}

/// The outcome of a change: the answer with `--json`, else one sentence.
fn print_done<A: Serialize>(conn: &Conn, answer: &A, text: String) {
    if conn.json {
        print_json(answer);
    } else {
        println!("{text}");
    }
}

//! The operator commands: each opens one admin connection, makes its request(s) and prints the
//! answer for people (`output`) or as JSON.

use std::time::Duration;

use serde_json::{json, Value};
use tessera_client::{AdminClient, Trust};
use tessera_engine::AdminToken;
use tessera_proto::wire::kind;

use super::output::{self, Col};
use super::{done, wait_for_signal, Cmd, Conn, DeviceCmd, KeysCmd, OpCmd, PtCmd, TokenCmd};

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
    AdminClient::new(c.admin_addr, "localhost", &trust, AdminToken::new(token))
        .map_err(|e| e.to_string())
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
    async fn call(&mut self, conn: &Conn, kind: u8, args: Value) -> Result<Value, String> {
        let c = self.client(conn)?;
        c.call(kind, args).await.map_err(|e| e.to_string())
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
            let v = session.call(&conn, kind::PT_CREATE, spec.to_json()).await?;
            let text = format!(
                "PT id:    {}\nPT token: {}\n(the token is shown once; put it in the device's firmware image)",
                v["pt"]["id"].as_str().unwrap_or(""),
                v["token"].as_str().unwrap_or("")
            );
            print_done(&conn, &v, text);
        }
        Cmd::Pt(PtCmd::Batch {
            conn,
            spec,
            count,
            out,
        }) => {
            use std::io::Write;
            let c = session.client(&conn)?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts
                .open(&out)
                .map_err(|x| format!("{}: {x}", out.display()))?;
            let mut werr = None;
            let mut args = spec.to_json();
            args["count"] = json!(count);
            let r = c
                .create_pt_batch(args, |chunk| {
                    if werr.is_none() {
                        werr = f.write_all(chunk).err();
                    }
                })
                .await;
            match (r, werr) {
                (Ok(v), None) => {
                    f.sync_all().map_err(|x| x.to_string())?;
                    if conn.json {
                        println!("{v}");
                    } else {
                        println!(
                            "created {} PTs in batch {}; tokens in {}",
                            v["count"],
                            v["batch_id"].as_str().unwrap_or(""),
                            out.display()
                        );
                    }
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
        Cmd::Pt(PtCmd::List { conn, all, limit }) => {
            let v = session
                .call(
                    &conn,
                    kind::PT_LIST,
                    json!({ "limit": limit, "include_revoked": all }),
                )
                .await?;
            print_list(&conn, &v["pts"], output::PT_LIST);
        }
        Cmd::Pt(PtCmd::Show { conn, id }) => {
            let v = session
                .call(&conn, kind::PT_SHOW, json!({ "id": id }))
                .await?;
            print_record(&conn, &v, &v["pt"], output::PT_SHOW);
        }
        Cmd::Pt(PtCmd::Revoke { conn, id, reason }) => {
            let v = session
                .call(
                    &conn,
                    kind::PT_REVOKE,
                    json!({ "id": id, "reason": reason }),
                )
                .await?;
            print_done(
                &conn,
                &v,
                format!(
                    "revoked {id}; registrations revoked with it: {}",
                    v["registrations_revoked"]
                ),
            );
        }
        Cmd::Op(OpCmd::List { conn, state, limit }) => {
            let st = if state == "all" {
                Value::Null
            } else {
                json!(state)
            };
            let v = session
                .call(&conn, kind::OP_LIST, json!({ "state": st, "limit": limit }))
                .await?;
            print_list(&conn, &v["operations"], output::OP_LIST);
        }
        Cmd::Op(OpCmd::Show { conn, id }) => {
            let v = session
                .call(&conn, kind::OP_SHOW, json!({ "id": id }))
                .await?;
            print_record(&conn, &v, &v["operation"], output::OP_SHOW);
        }
        Cmd::Op(OpCmd::Approve {
            conn,
            id,
            code,
            device_id,
            reassign,
        }) => {
            let mut args = json!({ "id": id, "code": code, "device_id": device_id });
            if reassign {
                args["reassign"] = json!(true);
            }
            let v = session.call(&conn, kind::OP_APPROVE, args).await?;
            let text = format!(
                "approved: device {} registration {}",
                v["registration"]["device_id"].as_str().unwrap_or(""),
                v["registration"]["id"]
            );
            print_done(&conn, &v, text);
        }
        Cmd::Op(OpCmd::Reject { conn, id, reason }) => {
            let v = session
                .call(
                    &conn,
                    kind::OP_REJECT,
                    json!({ "id": id, "reason": reason }),
                )
                .await?;
            print_done(&conn, &v, format!("rejected {id}"));
        }
        Cmd::Device(DeviceCmd::List {
            conn,
            active,
            limit,
        }) => {
            let v = session
                .call(
                    &conn,
                    kind::DEVICE_LIST,
                    json!({ "active_only": active, "limit": limit }),
                )
                .await?;
            print_list(&conn, &v["registrations"], output::REGISTRATIONS);
        }
        Cmd::Device(DeviceCmd::Show { conn, device_id }) => {
            let v = session
                .call(&conn, kind::DEVICE_SHOW, json!({ "device_id": device_id }))
                .await?;
            if conn.json {
                println!("{v}");
            } else {
                match &v["blocked"] {
                    Value::Null => println!("device {device_id}: not blocked"),
                    b => print!(
                        "device {device_id}: BLOCKED\n{}",
                        output::record(b, output::BLOCK)
                    ),
                }
                let regs = v["registrations"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                if regs.is_empty() {
                    println!("no registrations");
                } else {
                    print!("{}", output::table(regs, output::REGISTRATION_DETAIL));
                }
            }
        }
        Cmd::Device(DeviceCmd::Revoke {
            conn,
            device_id,
            registration,
            reason,
        }) => {
            let v = session.call(&conn, kind::DEVICE_REVOKE, json!({ "device_id": device_id, "registration_id": registration, "reason": reason })).await?;
            print_done(
                &conn,
                &v,
                format!("registrations revoked: {}", v["registrations_revoked"]),
            );
        }
        Cmd::Device(DeviceCmd::Block {
            conn,
            device_id,
            reason,
        }) => {
            let v = session
                .call(
                    &conn,
                    kind::DEVICE_BLOCK,
                    json!({ "device_id": device_id, "reason": reason }),
                )
                .await?;
            print_done(
                &conn,
                &v,
                format!(
                    "blocked {device_id}; registrations revoked: {}",
                    v["registrations_revoked"]
                ),
            );
        }
        Cmd::Device(DeviceCmd::Unblock { conn, device_id }) => {
            let v = session
                .call(
                    &conn,
                    kind::DEVICE_UNBLOCK,
                    json!({ "device_id": device_id }),
                )
                .await?;
            let text = if v["was_blocked"] == Value::Bool(true) {
                format!("unblocked {device_id}")
            } else {
                format!("{device_id} was not blocked")
            };
            print_done(&conn, &v, text);
        }
        Cmd::Keys(KeysCmd::Rotate { conn }) => {
            let v = session.call(&conn, kind::KEYS_ROTATE, json!({})).await?;
            print_done(
                &conn,
                &v,
                format!("current key epoch is now {}", v["epoch"]),
            );
        }
        Cmd::Keys(KeysCmd::List { conn }) => {
            let v = session.call(&conn, kind::KEYS_LIST, json!({})).await?;
            print_list(&conn, &v["epochs"], output::KEY_EPOCHS);
        }
        Cmd::Keys(KeysCmd::Retire { conn, epoch }) => {
            let v = session
                .call(&conn, kind::KEYS_RETIRE, json!({ "epoch": epoch }))
                .await?;
            print_done(
                &conn,
                &v,
                format!("retired key epoch {epoch}; its RTs no longer validate"),
            );
        }
        Cmd::Token(TokenCmd::Create { conn, name, role }) => {
            let v = session
                .call(
                    &conn,
                    kind::TOKEN_CREATE,
                    json!({ "name": name, "role": role }),
                )
                .await?;
            let text = format!(
                "admin token for {name} ({role}), shown once: {}",
                v["token"].as_str().unwrap_or("")
            );
            print_done(&conn, &v, text);
        }
        Cmd::Token(TokenCmd::List { conn }) => {
            let v = session.call(&conn, kind::TOKEN_LIST, json!({})).await?;
            print_list(&conn, &v["admin_tokens"], output::ADMIN_TOKENS);
        }
        Cmd::Token(TokenCmd::Revoke { conn, id }) => {
            let v = session
                .call(&conn, kind::TOKEN_REVOKE, json!({ "id": id }))
                .await?;
            let text = if v["revoked"] == Value::Bool(true) {
                format!("revoked admin token {id}")
            } else {
                format!("admin token {id} was already revoked")
            };
            print_done(&conn, &v, text);
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
            let first = json!({ "after": start, "limit": limit, "newest": after.is_none() });
            let v = session.call(&conn, kind::AUDIT, first).await?;
            if follow {
                let c = session.client(&conn)?;
                let interval = Duration::from_millis(interval_ms);
                follow_audit(c, conn.json, start, v, interval).await?;
            } else {
                print_list(&conn, &v["events"], output::AUDIT);
            }
        }
        Cmd::Leaks { conn, after, limit } => {
            let v = session
                .call(
                    &conn,
                    kind::LEAKS,
                    json!({ "after": after, "limit": limit }),
                )
                .await?;
            print_list(&conn, &v["signals"], output::LEAKS);
        }
        Cmd::Status { conn } => {
            let v = session.call(&conn, kind::STATUS, json!({})).await?;
            if conn.json {
                println!("{v}");
            } else {
                print!("{}", output::flattened(&v));
            }
        }
        Cmd::Serve(_)
        | Cmd::Simulate(_)
        | Cmd::Backup { .. }
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
    first: Value,
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
        let events = answer["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if let Some(seq) = events.last().and_then(|ev| ev["seq"].as_u64()) {
            after = after.max(seq);
        }
        let mut out = std::io::stdout().lock();
        let written = if json {
            events.iter().try_for_each(|ev| writeln!(out, "{ev}"))
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
        let next = json!({ "after": after, "limit": PAGE });
        answer = tokio::select! {
            _ = &mut stop => return Ok(()),
            r = c.call(kind::AUDIT, next) => r.map_err(|x| x.to_string())?,
        };
    }
}

fn print_list(conn: &Conn, rows: &Value, cols: &[Col]) {
    if conn.json {
        println!("{rows}");
    } else {
        print!(
            "{}",
            output::table(rows.as_array().map(Vec::as_slice).unwrap_or(&[]), cols)
        );
    }
}

/// A single record: the whole answer with `--json`, else the record's fields.
fn print_record(conn: &Conn, answer: &Value, rec: &Value, cols: &[Col]) {
    if conn.json {
        println!("{answer}");
    } else {
        print!("{}", output::record(rec, cols));
    }
}

/// The outcome of a change: the answer with `--json`, else one sentence.
fn print_done(conn: &Conn, answer: &Value, text: String) {
    if conn.json {
        println!("{answer}");
    } else {
        println!("{text}");
    }
}

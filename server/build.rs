//! Build information for `tessera --version` and the `tessera_build_info` metric: the commit
//! (`git rev-parse`, `unknown` outside a checkout) and its date (`SOURCE_DATE_EPOCH`'s, when
//! set, for reproducible builds), as `TESSERA_COMMIT` and `TESSERA_BUILD_DATE`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => git(&["log", "-1", "--format=%cs", &format!("--before=@{epoch}")])
            .unwrap_or_else(|| format!("@{epoch}")),
        Err(_) => git(&["log", "-1", "--format=%cs"]).unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo:rustc-env=TESSERA_COMMIT={commit}");
    println!("cargo:rustc-env=TESSERA_BUILD_DATE={date}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // A new commit or checkout changes HEAD or the branch it names.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        // (A file that does not exist would rerun this on every build: a packed ref lives in
        // `packed-refs`.)
        let branch = git(&["symbolic-ref", "-q", "HEAD"]).map(|r| format!("{dir}/{r}"));
        match branch.filter(|f| std::path::Path::new(f).exists()) {
            Some(f) => println!("cargo:rerun-if-changed={f}"),
            None if std::path::Path::new(&format!("{dir}/packed-refs")).exists() => {
                println!("cargo:rerun-if-changed={dir}/packed-refs")
            }
            None => {}
        }
    }
}

//! A TCP proxy in front of a database that a test can cut off and restore: the database is
//! "down" for whoever connects through it (open connections are shut, new ones dropped), while
//! other tests keep using the database directly.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A TCP proxy in front of the database that can be cut off and restored.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forward connections to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::Acquire) {
                    continue; // dropped: refused
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut list = o.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Self { addr, cut, open }
    }

    /// Shut every open connection and drop new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Forward new connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// `url` (`postgres://user@host:port/…`) with its host and port replaced by `addr`, and the
/// address it named.
pub fn via(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let at = url.find('@').unwrap() + 1;
    let end = at + url[at..].find('/').unwrap();
    let target: SocketAddr = url[at..end].parse().unwrap();
    (format!("{}{addr}{}", &url[..at], &url[end..]), target)
}

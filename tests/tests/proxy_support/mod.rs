//! Helpers of the proxy tests: HTTP servers that answer their name, a plain HTTP
//! client, and counting which server answered.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Starts an HTTP server on `ip:port` answering `name` to every request.
pub fn backend(ip: &str, port: u16, name: &'static str) -> Result<()> {
    let listener = TcpListener::bind((ip, port)).with_context(|| format!("binding {ip}:{port}"))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let reply = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    Ok(())
}

/// GET / through `addr`: the body (the answering backend's name).
pub fn get(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    match text.split_once("\r\n\r\n") {
        Some((_, body)) => Ok(body.to_string()),
        None => bail!("no HTTP answer through {addr}: {text:?}"),
    }
}

/// `n` requests through `addr`: how many each backend answered.
pub fn spread(addr: SocketAddr, n: usize) -> Result<BTreeMap<String, usize>> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        *seen.entry(get(addr)?).or_default() += 1;
    }
    Ok(seen)
}

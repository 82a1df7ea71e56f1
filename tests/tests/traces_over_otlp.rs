//! With OTEL_EXPORTER_OTLP_ENDPOINT set, the kernel exports its spans over OTLP/HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;
use kubernel_e2e::{kernel_section, plugin_entry, Kernel};

/// (path, body) of one OTLP/HTTP post.
type Post = (String, Vec<u8>);

/// Accepts OTLP/HTTP posts on loopback and forwards (path, body) of each.
fn collector() -> Result<(String, mpsc::Receiver<Post>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16).flatten() {
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
            let _ = tx.send((path, body));
        }
    });
    Ok((endpoint, rx))
}

#[test]
fn kernel_spans_should_be_exported_over_otlp() -> Result<()> {
    let (endpoint, received) = collector()?;
    let config = kernel_section() + &plugin_entry("counter", "counter");
    let mut k = Kernel::start(&config, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)])?;
    let status = k.terminate(Duration::from_secs(20))?;
    assert!(status.success(), "{}", k.logs());
    let (path, body) = received.recv_timeout(Duration::from_secs(10))?;
    assert_eq!(path, "/v1/traces");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("load_plugin") && text.contains("drain_plugins"),
        "span names in the export"
    );
    assert!(text.contains("kubernel"), "service name in the resource");
    Ok(())
}

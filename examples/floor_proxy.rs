//! The least work any pooler must do for a client that connects, runs one
//! simple query and leaves (pgbench -C), to measure the CPU floor of the
//! S4 scenario (`benches/floor.sh`). Not a pooler: blocking sockets (no
//! epoll), a fixed set of threads each with one server connection logged
//! in at start and one client at a time, no TCP_NODELAY, trust only, no
//! checks.
//!
//! Per client: accept, read the startup packet (answering an SSLRequest
//! with 'N'), one write of a canned login answer (the server's own
//! ParameterStatus), then per request one read from the client, one write
//! to the server, reads from the server until ReadyForQuery and one write
//! to the client; the Terminate is read and the socket closed.
//!
//! Usage: floor_proxy LISTEN_PORT SERVER_PORT USER DATABASE

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

fn startup(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// Read from `s` into `buf` until it holds whole messages ending with
/// ReadyForQuery; returns how many bytes that is.
fn until_ready(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut at = 0;
    loop {
        while buf.len() >= at + 5 {
            let len = u32::from_be_bytes(buf[at + 1..at + 5].try_into().unwrap()) as usize;
            if buf.len() < at + 1 + len {
                break;
            }
            let tag = buf[at];
            at += 1 + len;
            if tag == b'Z' {
                return Ok(at);
            }
        }
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn serve(client: &mut TcpStream, server: &mut TcpStream, welcome: &[u8]) -> io::Result<()> {
    let mut buf = [0u8; 16384];
    // Startup packet (after an SSLRequest, refused).
    loop {
        let n = client.read(&mut buf)?;
        if n < 8 {
            return Ok(());
        }
        if u32::from_be_bytes(buf[4..8].try_into().unwrap()) == 80877103 {
            client.write_all(b"N")?;
            continue;
        }
        break;
    }
    client.write_all(welcome)?;
    let mut reply = Vec::with_capacity(16384);
    loop {
        let n = client.read(&mut buf)?;
        if n == 0 || buf[0] == b'X' {
            return Ok(());
        }
        server.write_all(&buf[..n])?;
        reply.clear();
        let len = until_ready(server, &mut reply)?;
        client.write_all(&reply[..len])?;
    }
}

/// Threads, each with its own server connection, taking clients from the
/// shared listener in turn (a blocking accept wakes one waiter). More than
/// pgbench's 20 clients: pgbench connects synchronously, so a thread must
/// never wait for a client whose pgbench thread is busy connecting another.
const THREADS: usize = 32;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen_port, server_port, user, database] = &args[..] else {
        eprintln!("usage: floor_proxy LISTEN_PORT SERVER_PORT USER DATABASE");
        std::process::exit(2);
    };
    let server_port = server_port.parse::<u16>().unwrap();
    let listener = TcpListener::bind(("127.0.0.1", listen_port.parse::<u16>().unwrap()))?;
    let mut threads = Vec::new();
    for _ in 0..THREADS {
        let listener = listener.try_clone()?;
        let mut server = TcpStream::connect(("127.0.0.1", server_port))?;
        server.write_all(&startup(user, database))?;
        let mut login = Vec::new();
        let len = until_ready(&mut server, &mut login)?;
        // The clients' login answer: the server's, as it came (trust:
        // AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery).
        let welcome = login[..len].to_vec();
        threads.push(std::thread::spawn(move || {
            loop {
                let (mut client, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("accept: {e}");
                        continue;
                    }
                };
                if let Err(e) = serve(&mut client, &mut server, &welcome) {
                    eprintln!("client: {e}");
                }
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

//! The RTP port range: one UDP socket per call, bound on a port of the range that no call of
//! this switch holds, given back when the call's `RtpPort` is dropped (at hangup).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use crate::config::sip::PortRange;

/// The ports of the range, shared by every SIP session.
#[derive(Clone)]
pub struct PortPool {
    ip: IpAddr,
    range: PortRange,
    state: Arc<Mutex<Pool>>,
}

struct Pool {
    held: HashSet<u16>,
    /// Where the next search starts: ports are used in turn, so a port just freed is not
    /// reused at once (late packets of the old call would reach the new one).
    cursor: u16,
}

/// A call's RTP socket and its hold on its port.
pub struct RtpPort {
    pub socket: UdpSocket,
    pub port: u16,
    pool: Arc<Mutex<Pool>>,
}

impl Drop for RtpPort {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.held.remove(&self.port);
        }
    }
}

impl PortPool {
    pub fn new(ip: IpAddr, range: PortRange) -> Self {
        PortPool {
            ip,
            range,
            state: Arc::new(Mutex::new(Pool {
                held: HashSet::new(),
                cursor: range.first,
            })),
        }
    }

    /// A socket on a free port of the range; `None` when every port is held (or cannot be
    /// bound: another program uses it).
    pub fn take(&self) -> Option<RtpPort> {
        let mut pool = self.state.lock().ok()?;
        for _ in 0..self.range.len() {
            let port = pool.cursor;
            pool.cursor = if port >= self.range.last {
                self.range.first
            } else {
                port + 1
            };
            if pool.held.contains(&port) {
                continue;
            }
            let Ok(socket) = UdpSocket::bind(SocketAddr::new(self.ip, port)) else {
                continue;
            };
            if socket.set_nonblocking(true).is_err() {
                continue;
            }
            pool.held.insert(port);
            return Some(RtpPort {
                socket,
                port,
                pool: self.state.clone(),
            });
        }
        None
    }

    /// Ports held now.
    pub fn held(&self) -> usize {
        self.state.lock().map_or(0, |p| p.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_range_gives_nothing_until_a_port_comes_back() {
        // Two ports of a high range; skip if the machine uses them.
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        let pool = PortPool::new(
            "127.0.0.1".parse().unwrap(),
            PortRange {
                first: base,
                last: base.saturating_add(1),
            },
        );
        let a = pool.take();
        let b = pool.take();
        if a.is_none() || b.is_none() {
            return;
        }
        assert!(pool.take().is_none());
        assert_eq!(pool.held(), 2);
        drop(a);
        assert!(pool.take().is_some());
    }
}

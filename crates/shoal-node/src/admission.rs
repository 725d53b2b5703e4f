//! Per-client limits on the client APIs: open connections and requests in flight, counted by
//! source IP address. Past a limit a request is answered `429 too_many_requests` naming it.
//!
//! A client's counters exist only while it holds a connection or a request, so the table is as
//! large as the set of clients active right now; it is also capped at [`MAX_TRACKED_CLIENTS`],
//! past which new clients are refused rather than the table growing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use shoal_net::client_api::ApiError;

/// The most distinct client addresses counted at once (each entry is a few dozen bytes).
pub const MAX_TRACKED_CLIENTS: usize = 65_536;

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    connections: u32,
    inflight: u32,
}

/// The counters of one API (HTTP or QUIC); each API counts its own connections and requests.
pub struct Admission {
    api: &'static str,
    max_connections: u32,
    max_inflight: u32,
    clients: Mutex<HashMap<IpAddr, Counts>>,
}

/// A held connection or request slot; released when dropped.
pub struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
    connection: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut clients = self.admission.clients.lock();
        if let Some(c) = clients.get_mut(&self.ip) {
            if self.connection {
                c.connections = c.connections.saturating_sub(1);
            } else {
                c.inflight = c.inflight.saturating_sub(1);
            }
            // Forget idle clients at once, so the table holds only active ones.
            if c.connections == 0 && c.inflight == 0 {
                clients.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    /// `api` labels the refusal metric (`http` or `quic`).
    pub fn new(api: &'static str, max_connections: u32, max_inflight: u32) -> Arc<Admission> {
        Arc::new(Admission {
            api,
            max_connections,
            max_inflight,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// Requests in flight over every client: shutdown waits for this to reach zero.
    pub fn inflight(&self) -> u64 {
        self.clients.lock().values().map(|c| u64::from(c.inflight)).sum()
    }

    /// Count a new connection from `ip`, or refuse it past `max_connections_per_client`.
    pub fn connection(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, ApiError> {
        self.acquire(ip, true)
    }

    /// Count a new request from `ip`, or refuse it past `max_inflight_per_client`.
    pub fn request(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, ApiError> {
        self.acquire(ip, false)
    }

    fn acquire(self: &Arc<Self>, ip: IpAddr, connection: bool) -> Result<Slot, ApiError> {
        let refused = {
            let mut clients = self.clients.lock();
            if !clients.contains_key(&ip) && clients.len() >= MAX_TRACKED_CLIENTS {
                Some(("max_tracked_clients", MAX_TRACKED_CLIENTS as u64))
            } else {
                let c = clients.entry(ip).or_default();
                let (count, limit, name) = if connection {
                    (&mut c.connections, self.max_connections, "max_connections_per_client")
                } else {
                    (&mut c.inflight, self.max_inflight, "max_inflight_per_client")
                };
                if *count >= limit {
                    Some((name, u64::from(limit)))
                } else {
                    *count += 1;
                    None
                }
            }
        };
        match refused {
            None => Ok(Slot {
                admission: self.clone(),
                ip,
                connection,
            }),
            Some((name, limit)) => {
                metrics::counter!("shoal_client_refused_total", "api" => self.api, "limit" => name).increment(1);
                // A refused newcomer may have left a zero entry behind; drop it.
                let mut clients = self.clients.lock();
                if clients.get(&ip).is_some_and(|c| c.connections == 0 && c.inflight == 0) {
                    clients.remove(&ip);
                }
                let what = if connection {
                    "connections open"
                } else {
                    "requests in flight"
                };
                Err(ApiError::new(
                    429,
                    "too_many_requests",
                    format!("too many {what} from {ip}: {name} = {limit}"),
                )
                .with_limit(name, limit))
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.clients.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_per_client_and_released_on_drop() {
        let a = Admission::new("http", 2, 1);
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let c1 = a.connection(x).unwrap();
        let _c2 = a.connection(x).unwrap();
        let e = a.connection(x).err().unwrap();
        assert_eq!(
            (e.status, e.param.as_deref(), e.limit),
            (429, Some("max_connections_per_client"), Some(2))
        );
        assert!(e.message.contains("max_connections_per_client = 2"), "{}", e.message);
        let _other = a.connection(y).expect("another client has its own count");
        let r = a.request(x).unwrap();
        let e = a.request(x).err().unwrap();
        assert!(e.message.contains("max_inflight_per_client = 1"), "{}", e.message);
        drop(r);
        let _r = a.request(x).expect("released on drop");
        drop(c1);
        let _c3 = a.connection(x).expect("released on drop");
    }

    #[test]
    fn idle_clients_are_forgotten() {
        let a = Admission::new("quic", 1, 1);
        for i in 0..1000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            let _c = a.connection(ip).unwrap();
            let _r = a.request(ip).unwrap();
        }
        assert_eq!(a.tracked(), 0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let _c = a.connection(ip).unwrap();
        let _ = a.connection(ip).err().unwrap();
        assert_eq!(a.tracked(), 1, "a refusal leaves the holder's entry alone");
    }
}

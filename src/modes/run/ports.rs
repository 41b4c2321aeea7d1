//! Host ports for allocations: static ones as written, dynamic ones from Nomad's default
//! range 20000-32000, never two allocations on the same port and never a port that is
//! already bound on this host.

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};

use rand::Rng;
use serde::Serialize;

use super::model::PortSpec;

pub const DYNAMIC_RANGE: std::ops::RangeInclusive<u16> = 20000..=32000;

/// One group port as allocated: `value` on the host, `to` inside the task's netns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllocatedPort {
    pub label: String,
    pub value: u16,
    pub to: u16,
    pub host_ip: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("port {label:?}: static port {port} is already taken by another allocation of this job (a local run places every allocation on this one host)")]
    StaticTwice { label: String, port: u16 },
    #[error("port {label:?}: static port {port} is already in use on {host_ip}")]
    InUse {
        label: String,
        port: u16,
        host_ip: String,
    },
    #[error("port {label:?}: no free dynamic port left in 20000-32000")]
    Exhausted { label: String },
}

/// Hands out ports for one runner invocation.
#[derive(Debug, Default)]
pub struct PortAllocator {
    taken: BTreeSet<u16>,
}

impl PortAllocator {
    pub fn allocate(
        &mut self,
        specs: &[PortSpec],
        host_ip: &str,
    ) -> Result<Vec<AllocatedPort>, PortError> {
        // Static ports first so a dynamic pick can never steal one.
        for spec in specs {
            if let Some(port) = spec.static_port {
                if self.taken.contains(&port) {
                    return Err(PortError::StaticTwice {
                        label: spec.label.clone(),
                        port,
                    });
                }
                if !is_free(host_ip, port) {
                    return Err(PortError::InUse {
                        label: spec.label.clone(),
                        port,
                        host_ip: host_ip.to_string(),
                    });
                }
            }
        }
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            let value = match spec.static_port {
                Some(port) => port,
                None => self
                    .pick_dynamic(host_ip, specs)
                    .ok_or_else(|| PortError::Exhausted {
                        label: spec.label.clone(),
                    })?,
            };
            self.taken.insert(value);
            out.push(AllocatedPort {
                label: spec.label.clone(),
                value,
                to: spec.to.unwrap_or(value),
                host_ip: host_ip.to_string(),
            });
        }
        Ok(out)
    }

    fn pick_dynamic(&self, host_ip: &str, specs: &[PortSpec]) -> Option<u16> {
        let reserved =
            |p: u16| self.taken.contains(&p) || specs.iter().any(|s| s.static_port == Some(p));
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let candidate = rng.gen_range(DYNAMIC_RANGE);
            if !reserved(candidate) && is_free(host_ip, candidate) {
                return Some(candidate);
            }
        }
        DYNAMIC_RANGE
            .into_iter()
            .find(|p| !reserved(*p) && is_free(host_ip, *p))
    }
}

/// Whether both TCP and UDP `port` can be bound on `host_ip` (ports are published for both).
fn is_free(host_ip: &str, port: u16) -> bool {
    let addr = (host_ip, port);
    TcpListener::bind(addr).is_ok() && UdpSocket::bind(addr).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::run::jobspec::source::Location;

    fn spec(label: &str, static_port: Option<u16>, to: Option<u16>) -> PortSpec {
        PortSpec {
            label: label.into(),
            static_port,
            to,
            host_network: None,
            location: Location {
                file: "j".into(),
                line: 1,
                column: 1,
            },
        }
    }

    #[test]
    fn dynamic_ports_come_from_the_range_and_never_collide() {
        let mut allocator = PortAllocator::default();
        let specs: Vec<PortSpec> = (0..20)
            .map(|i| spec(&format!("p{i}"), None, None))
            .collect();
        let first = allocator.allocate(&specs, "127.0.0.1").unwrap();
        let second = allocator.allocate(&specs, "127.0.0.1").unwrap();
        let mut all: Vec<u16> = first.iter().chain(&second).map(|p| p.value).collect();
        assert!(all.iter().all(|p| DYNAMIC_RANGE.contains(p)));
        assert!(first
            .iter()
            .all(|p| p.to == p.value && p.host_ip == "127.0.0.1"));
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 40);
    }

    #[test]
    fn static_ports_keep_their_value_and_map_to() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let free = {
            let probe = TcpListener::bind(("127.0.0.1", 0)).unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut allocator = PortAllocator::default();
        let ports = allocator
            .allocate(&[spec("http", Some(free), Some(80))], "127.0.0.1")
            .unwrap();
        assert_eq!(ports[0].value, free);
        assert_eq!(ports[0].to, 80);
        assert_eq!(
            allocator.allocate(&[spec("http", Some(free), None)], "127.0.0.1"),
            Err(PortError::StaticTwice {
                label: "http".into(),
                port: free
            })
        );
        let busy = listener.local_addr().unwrap().port();
        assert_eq!(
            allocator.allocate(&[spec("db", Some(busy), None)], "127.0.0.1"),
            Err(PortError::InUse {
                label: "db".into(),
                port: busy,
                host_ip: "127.0.0.1".into()
            })
        );
    }
}

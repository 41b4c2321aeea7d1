//! Driver state written by the Go nomad-driver-podman (handle version 1), so that an
//! operator can swap the Go binary for this one on a live node and keep its containers.
//!
//! The Go plugin stores `TaskState{TaskConfig, ContainerID, StartedAt, Net, LogStreamer}`
//! encoded by Nomad's go-msgpack handle: structs are maps keyed
//! by Go field names (or `codec` tags: the podman task config uses its HCL names), raw
//! strings, and `time.Time` as the 15/16-byte `MarshalBinary` form inside a str because
//! time is not a builtin type for that handle. A JSON rendering of the same struct (as
//! state-inspection tools print it) is accepted too.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::driver::model::DriverNetwork;

use super::msgpack::{self, Msgpack};

/// Seconds between 0001-01-01 (Go's internal epoch) and 1970-01-01.
const GO_EPOCH_TO_UNIX: i64 = 62_135_596_800;

/// The facts the Go plugin persisted about one task.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GoTaskState {
    pub container_id: String,
    /// The podman socket name from the task config (`"default"` when unset).
    pub socket: String,
    pub started_at: SystemTime,
    pub network: Option<DriverNetwork>,
    /// Journald mode: the Go plugin streamed logs itself.
    pub log_streamer: bool,
}

/// Reads the Go plugin's state bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<GoTaskState, String> {
    let value = match bytes.first() {
        Some(b'{') => json_to_msgpack(
            &serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON state: {e}"))?,
        ),
        Some(_) => msgpack::read(bytes).map_err(|e| e.to_string())?,
        None => return Err("the driver state is empty".to_string()),
    };
    let fields = Fields::of(&value, "TaskState")?;
    let container_id = fields
        .text("ContainerID")
        .filter(|id| !id.is_empty())
        .ok_or("TaskState.ContainerID is missing")?
        .to_string();
    let socket = match fields.get("TaskConfig") {
        Some(config @ Msgpack::Map(_)) => Fields::of(config, "TaskState.TaskConfig")?
            .text("socket")
            .or_else(|| Fields::of(config, "").ok()?.text("Socket"))
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string(),
        _ => "default".to_string(),
    };
    let started_at = match fields.get("StartedAt") {
        Some(value) => go_time(value).ok_or("TaskState.StartedAt is not a time value")?,
        None => UNIX_EPOCH,
    };
    let network = match fields.get("Net") {
        Some(net @ Msgpack::Map(_)) => Some(network(&Fields::of(net, "TaskState.Net")?)?),
        _ => None,
    };
    let log_streamer = matches!(fields.get("LogStreamer"), Some(Msgpack::Bool(true)));
    Ok(GoTaskState {
        container_id,
        socket,
        started_at,
        network,
        log_streamer,
    })
}

/// The entries of a msgpack map keyed by strings.
struct Fields<'a> {
    entries: &'a [(Msgpack, Msgpack)],
}

impl<'a> Fields<'a> {
    fn of(value: &'a Msgpack, what: &str) -> Result<Self, String> {
        match value {
            Msgpack::Map(entries) => Ok(Fields { entries }),
            other => Err(format!(
                "{what} is a msgpack {}, expected a map",
                other.kind()
            )),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Msgpack> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, Msgpack::Nil))
    }

    fn text(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Msgpack::as_text)
    }
}

fn network(net: &Fields<'_>) -> Result<DriverNetwork, String> {
    let mut port_map = BTreeMap::new();
    if let Some(ports) = net.get("PortMap") {
        for (label, port) in Fields::of(ports, "TaskState.Net.PortMap")?.entries {
            let label = label
                .as_text()
                .ok_or("TaskState.Net.PortMap has a non-string key")?;
            let port = match port {
                Msgpack::Int(p) => u16::try_from(*p).ok(),
                _ => None,
            }
            .ok_or_else(|| format!("TaskState.Net.PortMap.{label} is not a port number"))?;
            port_map.insert(label.to_string(), port);
        }
    }
    Ok(DriverNetwork {
        port_map,
        ip: net.text("IP").unwrap_or_default().to_string(),
        auto_advertise: matches!(net.get("AutoAdvertise"), Some(Msgpack::Bool(true))),
    })
}

/// A Go `time.Time` as any encoding may have carried it: `MarshalBinary` bytes, a msgpack
/// timestamp extension, or RFC 3339 text.
fn go_time(value: &Msgpack) -> Option<SystemTime> {
    match value {
        Msgpack::Str(bytes) | Msgpack::Bin(bytes) => {
            go_binary_time(bytes).or_else(|| rfc3339(std::str::from_utf8(bytes).ok()?))
        }
        Msgpack::Ext(-1, payload) => msgpack_timestamp(payload),
        _ => None,
    }
}

/// `time.Time.MarshalBinary`: version (1, or 2 with a seconds offset), seconds since
/// year 1 (i64), nanoseconds (i32), zone offset in minutes (i16) [, offset seconds].
fn go_binary_time(bytes: &[u8]) -> Option<SystemTime> {
    let expected_len = match bytes.first()? {
        1 => 15,
        2 => 16,
        _ => return None,
    };
    if bytes.len() != expected_len {
        return None;
    }
    let seconds = i64::from_be_bytes(bytes[1..9].try_into().ok()?);
    let nanos = u32::from_be_bytes(bytes[9..13].try_into().ok()?);
    unix_time(seconds.checked_sub(GO_EPOCH_TO_UNIX)?, nanos)
}

/// The msgpack timestamp extension (type -1) in its 32, 64 and 96-bit forms.
fn msgpack_timestamp(payload: &[u8]) -> Option<SystemTime> {
    match payload.len() {
        4 => unix_time(i64::from(u32::from_be_bytes(payload.try_into().ok()?)), 0),
        8 => {
            let packed = u64::from_be_bytes(payload.try_into().ok()?);
            let nanos = u32::try_from(packed >> 34).ok()?;
            let seconds = i64::try_from(packed & 0x3_ffff_ffff).ok()?;
            unix_time(seconds, nanos)
        }
        12 => {
            let nanos = u32::from_be_bytes(payload[..4].try_into().ok()?);
            let seconds = i64::from_be_bytes(payload[4..].try_into().ok()?);
            unix_time(seconds, nanos)
        }
        _ => None,
    }
}

fn rfc3339(text: &str) -> Option<SystemTime> {
    let parsed =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    unix_time(parsed.unix_timestamp(), parsed.nanosecond())
}

fn unix_time(seconds: i64, nanos: u32) -> Option<SystemTime> {
    if nanos >= 1_000_000_000 {
        return None;
    }
    let offset = Duration::new(seconds.unsigned_abs(), 0);
    let whole = if seconds >= 0 {
        UNIX_EPOCH.checked_add(offset)?
    } else {
        UNIX_EPOCH.checked_sub(offset)?
    };
    whole.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// JSON state as the same tree msgpack would give, so one reader serves both.
fn json_to_msgpack(value: &Value) -> Msgpack {
    match value {
        Value::Null => Msgpack::Nil,
        Value::Bool(b) => Msgpack::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Msgpack::Int(i128::from(i)),
            None => n
                .as_u64()
                .map(|u| Msgpack::Int(i128::from(u)))
                .unwrap_or_else(|| Msgpack::F64(n.as_f64().unwrap_or_default())),
        },
        Value::String(s) => Msgpack::Str(s.as_bytes().to_vec()),
        Value::Array(items) => Msgpack::Array(items.iter().map(json_to_msgpack).collect()),
        Value::Object(map) => Msgpack::Map(
            map.iter()
                .map(|(k, v)| (Msgpack::Str(k.as_bytes().to_vec()), json_to_msgpack(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// msgpack writer for test fixtures shaped like go-msgpack output.
    pub(crate) fn encode(value: &Msgpack, out: &mut Vec<u8>) {
        match value {
            Msgpack::Nil => out.push(0xc0),
            Msgpack::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
            Msgpack::Int(i) => {
                if (0..=127).contains(i) {
                    out.push(u8::try_from(*i).unwrap());
                } else if let Ok(v) = i64::try_from(*i) {
                    out.push(0xd3);
                    out.extend_from_slice(&v.to_be_bytes());
                } else {
                    out.push(0xcf);
                    out.extend_from_slice(&u64::try_from(*i).unwrap().to_be_bytes());
                }
            }
            Msgpack::F32(_) | Msgpack::F64(_) => unimplemented!("not used by go state"),
            Msgpack::Str(bytes) => {
                // go-msgpack's raw strings: fixstr, else str16/str32 (no str8).
                if bytes.len() < 32 {
                    out.push(0xa0 + u8::try_from(bytes.len()).unwrap());
                } else {
                    out.push(0xda);
                    out.extend_from_slice(&u16::try_from(bytes.len()).unwrap().to_be_bytes());
                }
                out.extend_from_slice(bytes);
            }
            Msgpack::Bin(bytes) => {
                out.push(0xc4);
                out.push(u8::try_from(bytes.len()).unwrap());
                out.extend_from_slice(bytes);
            }
            Msgpack::Array(items) => {
                header(items.len(), 0x90, 0xdc, out);
                items.iter().for_each(|item| encode(item, out));
            }
            Msgpack::Map(entries) => {
                header(entries.len(), 0x80, 0xde, out);
                for (k, v) in entries {
                    encode(k, out);
                    encode(v, out);
                }
            }
            Msgpack::Ext(tag, payload) => {
                out.push(0xc7);
                out.push(u8::try_from(payload.len()).unwrap());
                out.push(tag.to_be_bytes()[0]);
                out.extend_from_slice(payload);
            }
        }
    }

    fn header(len: usize, fix: u8, sixteen: u8, out: &mut Vec<u8>) {
        if len < 16 {
            out.push(fix + u8::try_from(len).unwrap());
        } else {
            out.push(sixteen);
            out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        }
    }

    pub(crate) fn text(s: &str) -> Msgpack {
        Msgpack::Str(s.as_bytes().to_vec())
    }

    /// `time.Time.MarshalBinary` of a UTC instant.
    pub(crate) fn go_time_bytes(unix_seconds: i64, nanos: u32) -> Vec<u8> {
        let mut out = vec![1];
        out.extend_from_slice(&(unix_seconds + GO_EPOCH_TO_UNIX).to_be_bytes());
        out.extend_from_slice(&nanos.to_be_bytes());
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    /// What the Go plugin writes for a task with a port map on socket `socket`.
    pub(crate) fn go_state_bytes(
        container_id: &str,
        socket: Option<&str>,
        started: i64,
    ) -> Vec<u8> {
        let mut config = vec![
            (text("image"), text("docker.io/library/busybox:latest")),
            (
                text("args"),
                Msgpack::Array(vec![text("sleep"), text("1000")]),
            ),
        ];
        if let Some(socket) = socket {
            config.push((text("socket"), text(socket)));
        }
        let state = Msgpack::Map(vec![
            (text("TaskConfig"), Msgpack::Map(config)),
            (text("ContainerID"), text(container_id)),
            (
                text("StartedAt"),
                Msgpack::Str(go_time_bytes(started, 123_456_789)),
            ),
            (
                text("Net"),
                Msgpack::Map(vec![
                    (
                        text("PortMap"),
                        Msgpack::Map(vec![(text("http"), Msgpack::Int(8080))]),
                    ),
                    (text("IP"), text("10.88.0.7")),
                    (text("AutoAdvertise"), Msgpack::Bool(true)),
                ]),
            ),
            (text("LogStreamer"), Msgpack::Bool(false)),
        ]);
        let mut out = Vec::new();
        encode(&state, &mut out);
        out
    }

    #[test]
    fn reads_go_msgpack_state() {
        let bytes = go_state_bytes("abc123", Some("fast"), 1_700_000_000);
        let state = decode(&bytes).unwrap();
        assert_eq!(state.container_id, "abc123");
        assert_eq!(state.socket, "fast");
        assert_eq!(
            state.started_at,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)
        );
        let net = state.network.unwrap();
        assert_eq!(net.port_map["http"], 8080);
        assert_eq!(net.ip, "10.88.0.7");
        assert!(net.auto_advertise);
        assert!(!state.log_streamer);
    }

    #[test]
    fn socket_defaults_and_nil_network() {
        let state = Msgpack::Map(vec![
            (
                text("TaskConfig"),
                Msgpack::Map(vec![(text("socket"), text(""))]),
            ),
            (text("ContainerID"), text("c1")),
            (
                text("StartedAt"),
                Msgpack::Ext(-1, 1_600_000_000u32.to_be_bytes().to_vec()),
            ),
            (text("Net"), Msgpack::Nil),
            (text("LogStreamer"), Msgpack::Bool(true)),
        ]);
        let mut bytes = Vec::new();
        encode(&state, &mut bytes);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.socket, "default");
        assert_eq!(decoded.network, None);
        assert!(decoded.log_streamer);
        assert_eq!(
            decoded.started_at,
            UNIX_EPOCH + Duration::from_secs(1_600_000_000)
        );
    }

    #[test]
    fn reads_json_state() {
        let json = br#"{"TaskConfig":{"image":"x","socket":"default"},"ContainerID":"c2",
            "StartedAt":"2024-05-01T10:11:12.5Z","Net":{"PortMap":{"db":5432},"IP":"","AutoAdvertise":true},
            "LogStreamer":false}"#;
        let state = decode(json).unwrap();
        assert_eq!(state.container_id, "c2");
        assert_eq!(state.network.unwrap().port_map["db"], 5432);
        assert_eq!(
            state.started_at,
            UNIX_EPOCH + Duration::new(1_714_558_272, 500_000_000)
        );
    }

    #[test]
    fn timestamps_in_every_form() {
        let eight = ((5u64) << 34) | 1_000;
        assert_eq!(
            msgpack_timestamp(&eight.to_be_bytes()),
            Some(UNIX_EPOCH + Duration::new(1_000, 5))
        );
        let mut twelve = 7u32.to_be_bytes().to_vec();
        twelve.extend_from_slice(&(-10i64).to_be_bytes());
        assert_eq!(
            msgpack_timestamp(&twelve),
            Some(UNIX_EPOCH - Duration::from_secs(10) + Duration::from_nanos(7))
        );
        let mut v2 = go_time_bytes(100, 0);
        v2[0] = 2;
        v2.push(0);
        assert_eq!(
            go_binary_time(&v2),
            Some(UNIX_EPOCH + Duration::from_secs(100))
        );
        assert_eq!(go_binary_time(&[1, 2, 3]), None);
        assert_eq!(go_binary_time(&[9; 15]), None);
    }

    #[test]
    fn broken_state_is_an_error() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[0xc1]).is_err());
        assert!(decode(b"{not json").is_err());
        let mut no_id = Vec::new();
        encode(
            &Msgpack::Map(vec![(text("ContainerID"), text(""))]),
            &mut no_id,
        );
        assert_eq!(
            decode(&no_id).unwrap_err(),
            "TaskState.ContainerID is missing"
        );
        let mut bad_port = Vec::new();
        encode(
            &Msgpack::Map(vec![
                (text("ContainerID"), text("c")),
                (
                    text("Net"),
                    Msgpack::Map(vec![(
                        text("PortMap"),
                        Msgpack::Map(vec![(text("x"), Msgpack::Int(70_000))]),
                    )]),
                ),
            ]),
            &mut bad_port,
        );
        assert_eq!(
            decode(&bad_port).unwrap_err(),
            "TaskState.Net.PortMap.x is not a port number"
        );
        let mut array = Vec::new();
        encode(&Msgpack::Array(vec![]), &mut array);
        assert_eq!(
            decode(&array).unwrap_err(),
            "TaskState is a msgpack array, expected a map"
        );
    }
}

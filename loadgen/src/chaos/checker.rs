//! The exactly-once checker, after Jepsen's queue checker: from what the senders attempted
//! and had acknowledged, and what each device received in order, it counts per device
//! kind what was lost, duplicated, reordered or unexpected. It is a pure function of the
//! history, so its verdicts are unit-tested here without a server.
//!
//! A message is known by `(sender, client_msg_id)`, not by its id: a retry that the
//! server stored a second time (two ids for one send) is then a duplicate, as it should be.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One stored message, as an `ack` (the 201) or a delivery carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub id: i64,
    pub channel: i64,
    pub seq: i64,
    pub sender: i64,
    pub client_msg_id: String,
}

impl Msg {
    /// Reads a `Message` of the API (ids as decimal strings, `seq` a number).
    pub fn parse(v: &serde_json::Value) -> Option<Self> {
        let id = |v: &serde_json::Value| v.as_str()?.parse().ok();
        Some(Self {
            id: id(&v["id"])?,
            channel: id(&v["channel_id"])?,
            seq: v["seq"].as_i64()?,
            sender: id(&v["sender"]["id"])?,
            client_msg_id: v["client_msg_id"].as_str()?.to_string(),
        })
    }

    fn key(&self) -> (i64, &str) {
        (self.sender, &self.client_msg_id)
    }
}

/// How a device receives: the two paths the API offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A WebSocket through the balancer, reconnecting and syncing from its cursor.
    WebSocket,
    /// `GET /v1/chat/sync` through the balancer, a different node each time.
    LongPoll,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::WebSocket => "WebSocket",
            Kind::LongPoll => "long-poll",
        }
    }
}

/// What one device received, in order of arrival.
#[derive(Debug, Clone)]
pub struct DeviceLog {
    pub kind: Kind,
    /// Its user: it should get every acknowledged message of that user's channels.
    pub user: i64,
    pub name: String,
    pub received: Vec<Msg>,
    /// For sockets: how many messages had arrived when each connection after the first
    /// opened, so a finding can say whether a reconnect came between.
    pub reconnects: Vec<usize>,
}

impl DeviceLog {
    /// Which connection (1, 2, …) the `i`-th message arrived on.
    fn connection_of(&self, i: usize) -> usize {
        1 + self.reconnects.iter().filter(|&&at| at <= i).count()
    }
}

/// The send side of the history.
#[derive(Debug, Default)]
pub struct Sends {
    /// Every `(sender, client_msg_id)` sent at least once, acknowledged or not.
    pub attempted: HashSet<(i64, String)>,
    /// Messages acknowledged with a 201, with the run time (ms) of the acknowledgement.
    pub acknowledged: Vec<(Msg, u64)>,
}

/// One anomaly, for the report: which device, which message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub device: String,
    pub channel: i64,
    pub seq: i64,
    pub id: i64,
    /// When it was acknowledged (ms into the run), if it was.
    pub acked_at_ms: Option<u64>,
    /// What the device knew: for a delivery, the connection it came on and the channel's
    /// highest seq before it; for a lost message, the channel's highest seq the device got
    /// (above the lost one: a client checking `seq` would have seen the hole).
    pub context: Context,
}

/// Where on a device a finding sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Delivered {
        connection: usize,
        highest_before: i64,
    },
    Lost {
        highest_seen: i64,
    },
}

/// The counts of one device kind (or of all), in deliveries: a message acknowledged in a
/// channel of three members' devices is three expected deliveries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub devices: usize,
    /// Deliveries of acknowledged messages the devices should have received.
    pub acknowledged: u64,
    /// Distinct messages received (acknowledged or not).
    pub delivered: u64,
    /// Acknowledged, never received by a member's device.
    pub lost: u64,
    /// Received more than once by one device.
    pub duplicated: u64,
    /// Received with a `seq` not above the last one of its channel on that device.
    pub reordered: u64,
    /// Received, attempted but never acknowledged: the send's fate was unknown to its
    /// client (a timeout, a node dying mid-request); Jepsen calls these recovered.
    pub recovered: u64,
    /// Received but never even attempted: made up, or someone else's.
    pub unexpected: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.devices += other.devices;
        self.acknowledged += other.acknowledged;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.recovered += other.recovered;
        self.unexpected += other.unexpected;
    }

    /// Whether the history is exactly-once and in order.
    pub fn valid(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.reordered == 0 && self.unexpected == 0
    }
}

/// The verdict: counts per kind and in total, and the anomalies themselves.
#[derive(Debug, Default)]
pub struct Verdict {
    pub by_kind: BTreeMap<Kind, Counts>,
    pub total: Counts,
    pub lost: Vec<Finding>,
    pub duplicated: Vec<Finding>,
    pub reordered: Vec<Finding>,
    pub unexpected: Vec<Finding>,
}

/// Checks every device against the sends; `members` maps each channel to its users.
pub fn check(members: &HashMap<i64, Vec<i64>>, sends: &Sends, devices: &[DeviceLog]) -> Verdict {
    let acked_at: HashMap<(i64, &str), u64> = sends
        .acknowledged
        .iter()
        .map(|(m, at)| (m.key(), *at))
        .collect();
    let mut verdict = Verdict::default();
    for device in devices {
        let counts = check_device(members, sends, &acked_at, device, &mut verdict);
        verdict.by_kind.entry(device.kind).or_default().add(&counts);
        verdict.total.add(&counts);
    }
    verdict
}

fn check_device(
    members: &HashMap<i64, Vec<i64>>,
    sends: &Sends,
    acked_at: &HashMap<(i64, &str), u64>,
    device: &DeviceLog,
    verdict: &mut Verdict,
) -> Counts {
    let finding = |m: &Msg, context: Context| Finding {
        device: device.name.clone(),
        channel: m.channel,
        seq: m.seq,
        id: m.id,
        acked_at_ms: acked_at.get(&m.key()).copied(),
        context,
    };
    let mut counts = Counts {
        devices: 1,
        ..Counts::default()
    };
    let mut seen: HashSet<(i64, &str)> = HashSet::new();
    let mut last_seq: HashMap<i64, i64> = HashMap::new();
    for (i, m) in device.received.iter().enumerate() {
        let last = last_seq.entry(m.channel).or_insert(0);
        let context = Context::Delivered {
            connection: device.connection_of(i),
            highest_before: *last,
        };
        if !seen.insert(m.key()) {
            counts.duplicated += 1;
            verdict.duplicated.push(finding(m, context));
            continue;
        }
        counts.delivered += 1;
        if m.seq <= *last {
            counts.reordered += 1;
            verdict.reordered.push(finding(m, context));
        }
        *last = (*last).max(m.seq);
        if !acked_at.contains_key(&m.key()) {
            let attempted = sends
                .attempted
                .contains(&(m.sender, m.client_msg_id.clone()));
            if attempted {
                counts.recovered += 1;
            } else {
                counts.unexpected += 1;
                verdict.unexpected.push(finding(m, context));
            }
        }
    }
    let member_of = |channel: i64| {
        members
            .get(&channel)
            .is_some_and(|users| users.contains(&device.user))
    };
    for (m, _) in sends
        .acknowledged
        .iter()
        .filter(|(m, _)| member_of(m.channel))
    {
        counts.acknowledged += 1;
        if !seen.contains(&m.key()) {
            counts.lost += 1;
            let highest_seen = last_seq.get(&m.channel).copied().unwrap_or(0);
            verdict
                .lost
                .push(finding(m, Context::Lost { highest_seen }));
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: i64, channel: i64, seq: i64, sender: i64, cmid: &str) -> Msg {
        Msg {
            id,
            channel,
            seq,
            sender,
            client_msg_id: cmid.into(),
        }
    }

    fn device(kind: Kind, user: i64, received: Vec<Msg>) -> DeviceLog {
        DeviceLog {
            kind,
            user,
            name: format!("{}-{user}", kind.name()),
            received,
            reconnects: vec![],
        }
    }

    /// Channel 10: users 1 and 2; channel 20: users 1 and 3. User 1 sent a, b, c into 10
    /// (all acknowledged) and d into 20 (attempted only).
    fn history() -> (HashMap<i64, Vec<i64>>, Sends) {
        let members = HashMap::from([(10, vec![1, 2]), (20, vec![1, 3])]);
        let acked = [
            msg(100, 10, 1, 1, "a"),
            msg(101, 10, 2, 1, "b"),
            msg(102, 10, 3, 1, "c"),
        ];
        let sends = Sends {
            attempted: ["a", "b", "c", "d"]
                .iter()
                .map(|c| (1, c.to_string()))
                .collect(),
            acknowledged: acked
                .into_iter()
                .enumerate()
                .map(|(i, m)| (m, i as u64))
                .collect(),
        };
        (members, sends)
    }

    #[test]
    fn a_clean_history_is_valid() {
        let (members, sends) = history();
        let all: Vec<Msg> = sends.acknowledged.iter().map(|(m, _)| m.clone()).collect();
        let devices = [
            device(Kind::WebSocket, 2, all.clone()),
            device(Kind::LongPoll, 2, all),
            // User 3 is in channel 20 only, where nothing was acknowledged.
            device(Kind::LongPoll, 3, vec![]),
        ];
        let v = check(&members, &sends, &devices);
        assert!(v.total.valid(), "{v:?}");
        assert_eq!(v.total.acknowledged, 6);
        assert_eq!(v.total.delivered, 6);
        assert_eq!(v.by_kind[&Kind::LongPoll].devices, 2);
        assert_eq!(v.by_kind[&Kind::WebSocket].acknowledged, 3);
    }

    #[test]
    fn every_anomaly_is_counted_where_it_happened() {
        let (members, sends) = history();
        let received = vec![
            msg(100, 10, 1, 1, "a"),
            msg(102, 10, 3, 1, "c"),
            // b after c: reordered; c again: duplicated.
            msg(101, 10, 2, 1, "b"),
            msg(102, 10, 3, 1, "c"),
            // d was attempted but not acknowledged: recovered, not unexpected.
            msg(103, 20, 1, 1, "d"),
            // Nobody sent e.
            msg(104, 20, 2, 1, "e"),
        ];
        let v = check(
            &members,
            &sends,
            &[
                device(Kind::WebSocket, 1, received),
                device(Kind::LongPoll, 2, vec![msg(100, 10, 1, 1, "a")]),
            ],
        );
        let ws = &v.by_kind[&Kind::WebSocket];
        assert_eq!(
            (
                ws.lost,
                ws.duplicated,
                ws.reordered,
                ws.recovered,
                ws.unexpected
            ),
            (0, 1, 1, 1, 1)
        );
        let lp = &v.by_kind[&Kind::LongPoll];
        assert_eq!((lp.acknowledged, lp.delivered, lp.lost), (3, 1, 2));
        assert_eq!(v.lost.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(v.lost[0].acked_at_ms, Some(1));
        assert_eq!(v.lost[0].context, Context::Lost { highest_seen: 1 });
        assert_eq!(
            v.reordered[0].context,
            Context::Delivered {
                connection: 1,
                highest_before: 3
            }
        );
        assert_eq!(v.unexpected[0].acked_at_ms, None);
        assert!(!v.total.valid());
    }

    #[test]
    fn a_send_stored_twice_is_a_duplicate_even_under_two_ids() {
        let (members, sends) = history();
        let mut received: Vec<Msg> = sends.acknowledged.iter().map(|(m, _)| m.clone()).collect();
        received.push(msg(105, 10, 4, 1, "c"));
        let mut socket = device(Kind::WebSocket, 2, received);
        // The duplicate came on a second socket, opened after three messages.
        socket.reconnects = vec![3];
        let v = check(&members, &sends, &[socket]);
        assert_eq!(v.total.duplicated, 1);
        assert_eq!(
            v.duplicated[0].context,
            Context::Delivered {
                connection: 2,
                highest_before: 3
            }
        );
        assert_eq!(v.duplicated[0].id, 105);
    }

    #[test]
    fn messages_are_read_from_the_api_shape() {
        let v = serde_json::json!({
            "id": "7263512873491456", "channel_id": "42", "seq": 7,
            "sender": {"id": "9", "username": "x"}, "client_msg_id": "s0-7",
            "content": "hi", "created_at": "2026-12-06T14:00:00Z"
        });
        assert_eq!(
            Msg::parse(&v),
            Some(msg(7_263_512_873_491_456, 42, 7, 9, "s0-7"))
        );
        assert_eq!(Msg::parse(&serde_json::json!({"id": 1})), None);
    }
}

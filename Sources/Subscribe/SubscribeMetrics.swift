import CoreMetrics
import LabelledMetrics

/// The subscribe side's metrics (PROTOCOL §10.3, plus reads by source, filtered events, cursor
/// requests and refusals), created once per server and updated once per batch, not per event.
final class SubscribeMetrics: Sendable {
  private let subscribers: [Meter]  // index: compressed ? 1 : 0
  private let wires: [String: Meter]  // by wire: "v1", "v2"
  private let eventsSent: [Counter]
  private let bytesSent: [Counter]
  private let diskReads: Counter
  private let memoryReads: Counter
  private let bytesSaved: Counter
  private let replaying: Meter
  let filtered: Counter
  let oversize: Counter
  let heartbeats: Counter
  private let labelled: LabelledCounters

  init(factory: any MetricsFactory) {
    labelled = LabelledCounters(factory: factory)
    let modes = ["none", "zstd"]
    subscribers = modes.map {
      Meter(label: "contrail_subscribers", dimensions: [("compression", $0)], factory: factory)
    }
    wires = Dictionary(
      uniqueKeysWithValues: ["v1", "v2", "replica"].map {
        (
          $0,
          Meter(label: "contrail_subscribers_wire", dimensions: [("wire", $0)], factory: factory)
        )
      })
    eventsSent = modes.map {
      Counter(
        label: "contrail_events_sent_total", dimensions: [("compression", $0)], factory: factory)
    }
    bytesSent = modes.map {
      Counter(
        label: "contrail_bytes_sent_total", dimensions: [("compression", $0)], factory: factory)
    }
    diskReads = Counter(
      label: "contrail_subscriber_reads_total", dimensions: [("source", "disk")], factory: factory)
    memoryReads = Counter(
      label: "contrail_subscriber_reads_total", dimensions: [("source", "memory")],
      factory: factory)
    bytesSaved = Counter(label: "contrail_bytes_saved_total", factory: factory)
    replaying = Meter(label: "contrail_subscribers_replaying", factory: factory)
    filtered = Counter(label: "contrail_events_filtered_total", factory: factory)
    oversize = Counter(label: "contrail_events_oversize_total", factory: factory)
    heartbeats = Counter(label: "contrail_heartbeats_sent_total", factory: factory)
  }

  func opened(compressed: Bool, wire: String) {
    subscribers[compressed ? 1 : 0].increment()
    wires[wire]?.increment()
  }

  func ended(compressed: Bool, wire: String) {
    subscribers[compressed ? 1 : 0].decrement()
    wires[wire]?.decrement()
  }

  /// `events` payloads of `bytes` went out; `saved` is what zstd saved on them (their JSON
  /// length minus their compressed length).
  func sent(events: Int, bytes: Int, saved: Int, compressed: Bool) {
    guard events > 0 else { return }
    eventsSent[compressed ? 1 : 0].increment(by: events)
    bytesSent[compressed ? 1 : 0].increment(by: bytes)
    if saved > 0 { bytesSaved.increment(by: saved) }
  }

  /// A subscriber started (true) or stopped (false) reading from disk rather than memory.
  func replaying(_ started: Bool) {
    if started { replaying.increment() } else { replaying.decrement() }
  }

  func read(disk: Int, memory: Int) {
    if disk > 0 { diskReads.increment(by: disk) }
    if memory > 0 { memoryReads.increment(by: memory) }
  }

  /// `contrail_subscribe_rejected_total{reason}`: 400 replies.
  func rejected(_ reason: String) { count("contrail_subscribe_rejected_total", "reason", reason) }
  /// `contrail_subscribe_refused_total{reason}`: 429/503 replies, and connections closed at
  /// accept (`max_pending`).
  func refused(_ reason: String) { count("contrail_subscribe_refused_total", "reason", reason) }
  /// `contrail_subscriber_closes_total{reason}`: server-initiated closes.
  func closed(_ reason: String) { count("contrail_subscriber_closes_total", "reason", reason) }
  /// `contrail_options_updates_total{outcome}`: client messages.
  func update(_ outcome: String) { count("contrail_options_updates_total", "outcome", outcome) }
  /// `contrail_http_timeouts_total{phase}`: connections closed by the header or idle timeout.
  func httpTimeout(_ phase: String) { count("contrail_http_timeouts_total", "phase", phase) }
  /// `contrail_subscriptions_total{start}`: subscriptions by how they start (live or cursor).
  func started(_ start: String) { count("contrail_subscriptions_total", "start", start) }

  private func count(_ label: String, _ dimension: String, _ value: String) {
    labelled.counter(label, [(dimension, value)]).increment()
  }
}

import Broadcast
import EventLog
import Events
import Foundation
import Ingest
import Prometheus
import Subscribe
import Synchronization

/// What the status page (`/status`, `/status.json`) shows, gathered once a second: the live
/// ring's new events (rates by kind and by collection, the per-second history), the Prometheus
/// registry's `contrail_*` series (upstream, subscribers, bytes sent) and the log's stats. Memory
/// is bounded: `historySeconds` samples and at most `maxCollections` collections. Requests only
/// read the last tick's results (plus a few atomics), so a busy page costs the server little.
public final class StatusCollector: Sendable {
  /// How the server was configured: what the page names and shows as limits.
  public struct Context: Sendable {
    /// The upstream as shown (no query string: it may carry credentials).
    public var relay: String
    public var offline: Bool
    public var retentionMicroseconds: Int64
    public var maxDiskBytes: Int?

    public init(relay: String, offline: Bool, retentionMicroseconds: Int64, maxDiskBytes: Int?) {
      self.relay = relay
      self.offline = offline
      self.retentionMicroseconds = retentionMicroseconds
      self.maxDiskBytes = maxDiskBytes
    }

    /// `scheme://host:port/path` of an endpoint; a query string is replaced by `?…`.
    public static func display(_ endpoint: RelayEndpoint) -> String {
      let text = endpoint.description
      guard let query = text.firstIndex(of: "?") else { return text }
      return text[..<query] + "?…"
    }
  }

  /// Samples of the events/s chart (one per tick, about a second each).
  public static let historySeconds = 600
  /// Collections tracked at most; beyond it the slowest are forgotten (down to 3/4).
  public static let maxCollections = 512
  /// Collections listed on the page.
  public static let shownCollections = 15
  /// Ticks the "now" rates average over.
  static let rateWindow = 5

  private let ring: LiveRing
  private let log: EventLog
  private let ingest: any Upstream
  private let registry: PrometheusCollectorRegistry?
  private let context: Context
  private let server = Mutex<SubscribeServer?>(nil)
  private let startedUS: Int64
  private let state: Mutex<State>

  struct Collection {
    var total = 0
    var lastSeenUS: Int64 = 0
    /// Events/s, exponentially averaged over about a minute (shown) and ten minutes (ranked by,
    /// so a collection that stops flowing stays listed, with its age growing).
    var recent = 0.0
    var long = 0.0
  }

  /// One tick's deltas.
  struct Sample {
    var seconds = 0.0
    var kinds = [Int](repeating: 0, count: EventKind.allCases.count)
    var metrics: [String: Double] = [:]
  }

  struct State {
    var position: Int64
    var lastTickUS: Int64
    var ticks = 0
    /// Events/s per tick, a ring of `historySeconds`.
    var history: [Double] = Array(repeating: 0, count: StatusCollector.historySeconds)
    var historyNext = 0
    var historyCount = 0
    var window: [Sample] = []
    var totals = [Int](repeating: 0, count: EventKind.allCases.count)
    var collections: [String: Collection] = [:]
    var jsonBytes = 0
    var zstdBytes = 0
    var newestEventUS: Int64?
    var overruns = 0
    var metrics: [String: Double] = [:]
    var logStats: EventLog.Stats?
  }

  public init(
    ring: LiveRing, log: EventLog, ingest: any Upstream, registry: PrometheusCollectorRegistry?,
    context: Context
  ) {
    self.ring = ring
    self.log = log
    self.ingest = ingest
    self.registry = registry
    self.context = context
    let now = Self.nowUS()
    startedUS = now
    state = Mutex(State(position: ring.newestTimeUS, lastTickUS: now))
  }

  /// The subscribe server, once it is listening (for the subscriber count).
  public func attach(_ server: SubscribeServer) {
    self.server.withLock { $0 = server }
  }

  /// Ticks once a second until cancelled.
  public func run() async {
    while !Task.isCancelled {
      tick()
      try? await Task.sleep(for: .seconds(1))
    }
  }

  /// Wall-clock microseconds.
  public static func nowUS() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }

  /// Reads what is new in the ring, the metrics and the log stats, and folds them in.
  func tick(now: Int64 = StatusCollector.nowUS()) {
    var position = state.withLock { $0.position }
    var kinds = [Int](repeating: 0, count: EventKind.allCases.count)
    var seen: [String: (count: Int, last: Int64)] = [:]
    var jsonBytes = 0
    var zstdBytes = 0
    var newest: Int64?
    var overrun = false
    // At most 64 × 4096 events a tick; more than that is an overrun (the ring holds fewer).
    reading: for _ in 0..<64 {
      switch ring.read(after: position, limit: 4096, filter: .all) {
      case .behind:
        overrun = true
        position = ring.newestTimeUS
        break reading
      case .events(let events, let through, let scanned):
        for event in events {
          kinds[Int(event.kind.rawValue)] += 1
          if !event.collection.isEmpty {
            let previous = seen[event.collection]?.count ?? 0
            seen[event.collection] = (previous + 1, event.timeUS)
          }
          if event.json != nil && event.compressed.readableBytes > 0 {
            jsonBytes += event.jsonLength
            zstdBytes += event.compressed.readableBytes
          }
          newest = event.timeUS
        }
        if scanned == 0 { break reading }
        position = through
      }
    }
    let metrics = registry.map { Self.parse($0.emitToBuffer()) } ?? [:]
    let stats = log.stats
    state.withLock { state in
      let seconds = max(Double(now - state.lastTickUS) / 1e6, 0.001)
      state.lastTickUS = now
      state.position = position
      state.ticks += 1
      let previousMetrics = state.metrics
      state.metrics = metrics
      state.logStats = stats
      // The first tick only sets the baselines (it covers the start-up, not a second).
      guard state.ticks > 1 else { return }
      if overrun { state.overruns += 1 }
      if let newest { state.newestEventUS = newest }
      state.jsonBytes += jsonBytes
      state.zstdBytes += zstdBytes
      for kind in kinds.indices { state.totals[kind] += kinds[kind] }
      state.history[state.historyNext] = Double(kinds.reduce(0, +)) / seconds
      state.historyNext = (state.historyNext + 1) % Self.historySeconds
      state.historyCount = min(state.historyCount + 1, Self.historySeconds)
      var sample = Sample(seconds: seconds, kinds: kinds)
      for (key, value) in metrics where Self.counters.contains(key) {
        sample.metrics[key] = max(value - (previousMetrics[key] ?? value), 0)
      }
      state.window.append(sample)
      if state.window.count > Self.rateWindow { state.window.removeFirst() }
      Self.fold(seen, into: &state.collections, seconds: seconds)
    }
  }

  /// Updates every collection's averages with this tick's counts, then caps the table.
  static func fold(
    _ seen: [String: (count: Int, last: Int64)], into table: inout [String: Collection],
    seconds: Double
  ) {
    let recentKeep = exp(-seconds / 60)
    let longKeep = exp(-seconds / 600)
    for key in table.keys {
      table[key]!.recent *= recentKeep
      table[key]!.long *= longKeep
    }
    for (name, tick) in seen {
      var entry = table[name] ?? Collection()
      let rate = Double(tick.count) / seconds
      entry.total += tick.count
      entry.lastSeenUS = tick.last
      entry.recent += (1 - recentKeep) * rate
      entry.long += (1 - longKeep) * rate
      table[name] = entry
    }
    if table.count > maxCollections {
      let keep = table.sorted {
        ($0.value.long, $0.value.lastSeenUS) > ($1.value.long, $1.value.lastSeenUS)
      }
      .prefix(maxCollections * 3 / 4)
      table = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
    }
  }

  /// Series whose per-tick deltas make rates.
  static let counters: Set<String> = [
    #"contrail_bytes_sent_total{compression="none"}"#,
    #"contrail_bytes_sent_total{compression="zstd"}"#,
    "contrail_relay_bytes_total",
    #"contrail_subscriber_reads_total{source="disk"}"#,
    #"contrail_subscriber_reads_total{source="memory"}"#,
    #"contrail_events_sent_total{compression="none"}"#,
    #"contrail_events_sent_total{compression="zstd"}"#,
  ]

  /// The `contrail_*` samples of a Prometheus text exposition, keyed by series
  /// (`name{label="value"}`).
  static func parse(_ text: [UInt8]) -> [String: Double] {
    var values: [String: Double] = [:]
    for line in text.split(separator: UInt8(ascii: "\n")) {
      guard line.starts(with: "contrail_".utf8),
        let space = line.lastIndex(of: UInt8(ascii: " ")),
        let value = Double(String(decoding: line[(space + 1)...], as: UTF8.self))
      else { continue }
      values[String(decoding: line[..<space], as: UTF8.self)] = value
    }
    return values
  }

  /// Everything the page shows, as the JSON tree `/status.json` serves (and the HTML renders).
  public func snapshot(now: Int64 = StatusCollector.nowUS()) -> StatusValue {
    let connected = ingest.isConnected
    let connections = ingest.connections
    let subscribers = server.withLock { $0?.subscriberCount }
    return state.withLock { state in
      Self.tree(
        state, context: context, now: now, startedUS: startedUS, connected: connected,
        connections: connections, subscribers: subscribers, hasMetrics: registry != nil)
    }
  }

  private static func tree(
    _ state: State, context: Context, now: Int64, startedUS: Int64, connected: Bool,
    connections: Int, subscribers: Int?, hasMetrics: Bool
  ) -> StatusValue {
    let m = state.metrics
    func value(_ number: Double?) -> StatusValue {
      guard let number else { return .null }
      return .number(number)
    }
    func value(_ number: Int?) -> StatusValue {
      guard let number else { return .null }
      return .int(Int64(number))
    }
    func metric(_ key: String) -> StatusValue { value(m[key]) }
    /// Labelled counters appear at their first increment: absent is zero.
    func counter(_ key: String) -> StatusValue { hasMetrics ? .number(m[key] ?? 0) : .null }
    func age(_ timeUS: Int64?) -> StatusValue {
      guard let timeUS, timeUS > 0 else { return .null }
      return .number(max(Double(now - timeUS) / 1e6, 0))
    }
    let windowSeconds = state.window.reduce(0) { $0 + $1.seconds }
    func rate(_ value: (Sample) -> Double) -> StatusValue {
      guard windowSeconds > 0 else { return .null }
      let rate = state.window.reduce(0) { $0 + value($1) } / windowSeconds
      return .number((rate * 100).rounded() / 100)
    }
    func metricRate(_ key: String) -> StatusValue {
      hasMetrics ? rate { $0.metrics[key] ?? 0 } : .null
    }

    // Upstream.
    let lastFrame = m["contrail_relay_last_frame_time_seconds"].flatMap {
      $0 > 0 ? Int64($0 * 1e6) : nil
    }
    let reconnects = m["contrail_relay_reconnects_total"].map { Int($0) } ?? max(connections - 1, 0)
    let upstream: StatusValue = .object([
      ("relay", .string(context.relay)),
      ("offline", .bool(context.offline)),
      ("connected", .bool(connected)),
      ("last_frame_age_seconds", age(lastFrame ?? state.newestEventUS)),
      ("newest_event_age_seconds", age(state.newestEventUS)),
      ("reconnects", .int(Int64(reconnects))),
      ("relay_seq", metric("contrail_relay_seq")),
      ("bytes_per_second", metricRate("contrail_relay_bytes_total")),
    ])

    // Ingest.
    let labels = EventKind.allCases.map(\.label)
    var rates: [(String, StatusValue)] = []
    var totals: [(String, StatusValue)] = []
    var allTotal = 0.0
    for (index, label) in labels.enumerated() {
      rates.append((label, rate { Double($0.kinds[index]) }))
      let total = m[#"contrail_events_total{kind="\#(label)"}"#] ?? Double(state.totals[index])
      allTotal += total
      totals.append((label, .number(total)))
    }
    rates.append(("total", rate { Double($0.kinds.reduce(0, +)) }))
    totals.append(("total", .number(allTotal)))
    var history: [StatusValue] = []
    history.reserveCapacity(state.historyCount)
    for offset in 0..<state.historyCount {
      let index =
        (state.historyNext - state.historyCount + offset + historySeconds) % historySeconds
      history.append(.number((state.history[index] * 10).rounded() / 10))
    }
    let ingest: StatusValue = .object([
      ("rates", .object(rates)),
      ("totals", .object(totals)),
      ("totals_source", .string(hasMetrics ? "contrail_events_total" : "since status start")),
      ("ring_overruns", .int(Int64(state.overruns))),
    ])

    // Collections.
    // The averages start from zero at start-up: divide by the weight they have had so far.
    let uptime = max(Double(now - startedUS) / 1e6, 1)
    let recentWeight = 1 - exp(-uptime / 60)
    let longWeight = 1 - exp(-uptime / 600)
    let ranked = state.collections.sorted {
      ($0.value.long, $0.value.lastSeenUS, $0.key) > ($1.value.long, $1.value.lastSeenUS, $1.key)
    }.prefix(shownCollections)
    let collections: StatusValue = .object([
      ("tracked", .int(Int64(state.collections.count))),
      ("cap", .int(Int64(maxCollections))),
      (
        "top",
        .array(
          ranked.map { item -> StatusValue in
            let entry = item.value
            return .object([
              ("name", .string(item.key)),
              ("rate", .number((entry.recent / recentWeight * 100).rounded() / 100)),
              ("rate_10m", .number((entry.long / longWeight * 100).rounded() / 100)),
              ("last_seen_age_seconds", age(entry.lastSeenUS)),
              ("total", .int(Int64(entry.total))),
            ])
          })
      ),
    ])

    // Subscribers and bytes.
    let none = m[#"contrail_subscribers{compression="none"}"#]
    let zstd = m[#"contrail_subscribers{compression="zstd"}"#]
    let subscribersTotal = subscribers.map(Double.init) ?? ((none ?? 0) + (zstd ?? 0))
    let subscriberTree: StatusValue = .object([
      ("total", .number(subscribersTotal)),
      ("none", value(none)),
      ("zstd", value(zstd)),
      ("v1", value(m[#"contrail_subscribers_wire{wire="v1"}"#])),
      ("v2", value(m[#"contrail_subscribers_wire{wire="v2"}"#])),
      ("replaying", value(m["contrail_subscribers_replaying"])),
      ("disk_reads_per_second", metricRate(#"contrail_subscriber_reads_total{source="disk"}"#)),
      ("memory_reads_per_second", metricRate(#"contrail_subscriber_reads_total{source="memory"}"#)),
      ("cursor_subscriptions_total", counter(#"contrail_subscriptions_total{start="cursor"}"#)),
      ("live_subscriptions_total", counter(#"contrail_subscriptions_total{start="live"}"#)),
    ])
    let sentNone = m[#"contrail_bytes_sent_total{compression="none"}"#]
    let sentZstd = m[#"contrail_bytes_sent_total{compression="zstd"}"#]
    let ratio = state.zstdBytes > 0 ? Double(state.jsonBytes) / Double(state.zstdBytes) : nil
    let bytes: StatusValue = .object([
      ("sent_total", hasMetrics ? .number((sentNone ?? 0) + (sentZstd ?? 0)) : .null),
      ("sent_none", value(sentNone)),
      ("sent_zstd", value(sentZstd)),
      (
        "sent_per_second",
        hasMetrics
          ? rate {
            ($0.metrics[#"contrail_bytes_sent_total{compression="none"}"#] ?? 0)
              + ($0.metrics[#"contrail_bytes_sent_total{compression="zstd"}"#] ?? 0)
          } : .null
      ),
      ("compression_ratio", value(ratio.map { ($0 * 100).rounded() / 100 })),
      ("saved", value(m["contrail_bytes_saved_total"])),
    ])

    // Log.
    let stats = state.logStats
    let log: StatusValue = .object([
      ("bytes", value(stats?.bytes)),
      ("events", value(stats?.events)),
      ("segments", value(stats?.segments)),
      ("oldest_time_seconds", value(stats?.oldestTimeUS.map { Double($0 / 1000) / 1000 })),
      ("oldest_age_seconds", age(stats?.oldestTimeUS)),
      ("retention_seconds", .number(Double(context.retentionMicroseconds) / 1e6)),
      ("max_disk_bytes", value(context.maxDiskBytes)),
    ])

    return .object([
      ("version", .string(ContrailVersion.string)),
      ("now_seconds", .number(Double(now / 1000) / 1000)),
      ("uptime_seconds", .number(Double(now - startedUS) / 1e6)),
      ("upstream", upstream),
      ("ingest", ingest),
      (
        "history",
        .object([
          ("step_seconds", .int(1)), ("capacity", .int(Int64(historySeconds))),
          ("rates", .array(history)),
        ])
      ),
      ("collections", collections),
      ("subscribers", subscriberTree),
      ("bytes", bytes),
      ("log", log),
    ])
  }
}

import Compression
import Events
import Foundation
import Ingest
import Logging
import NIOCore
import Subscribe
import URLQuery

/// Every `contrail serve` option in one table: its flag, its `CONTRAIL_*` variable, its help (the
/// default shown there is read from `ServeSettings`), and how its text sets the settings. `resolve`
/// applies them: a flag beats its variable, which beats the default.
public enum ServeOption: String, CaseIterable, Sendable {
  case relay
  case relayCursor = "relay-cursor"
  case offline
  case offlineRate = "offline-rate"
  case host
  case port
  case dataDir = "data-dir"
  case retention
  case maxDisk = "max-disk"
  case dictionary
  case compressionLevel = "compression-level"
  case fsyncInterval = "fsync-interval"
  case liveWindow = "live-window"
  case maxLag = "max-lag"
  case maxLagGrace = "max-lag-grace"
  case maxSubscribers = "max-subscribers"
  case maxConnectionsPerIP = "max-connections-per-ip"
  case maxEventsPerSecondPerIP = "max-events-per-second-per-ip"
  case maxPendingConnections = "max-pending-connections"
  case trustedProxies = "trusted-proxies"
  case headerTimeout = "header-timeout"
  case idleTimeout = "idle-timeout"
  case staleAfter = "stale-after"
  case maxFrameSize = "max-frame-size"
  case relayCA = "relay-ca"
  case upstream
  case replicationAllow = "replication-allow"
  case collections
  case dids
  case metrics
  case logLevel = "log-level"
  case logFormat = "log-format"

  public var flag: String { "--" + rawValue }
  public var variable: String {
    "CONTRAIL_" + rawValue.uppercased().replacingOccurrences(of: "-", with: "_")
  }

  /// The help line: what it does, the default, the variable.
  public var help: String {
    let (text, shown) = description
    return "\(text)\(shown.map { " (default \($0))" } ?? ""). [\(variable)]"
  }

  /// What the option does, and its default as the help shows it (nil: no default to show).
  private var description: (String, String?) {
    let d = ServeSettings.defaults
    switch self {
    case .relay:
      return ("Relay: wss://host, https://host or a full ws(s):// URL", "wss://bsky.network")
    case .relayCursor: return ("First connection only: resume after this relay seq, or `live`", nil)
    case .offline: return ("Serve the bundled fixture relay's synthetic traffic, no network", nil)
    case .offlineRate: return ("Frames per second of the offline relay", "\(d.offlineRate)")
    case .host: return ("Address to listen on", d.host)
    case .port: return ("Port to listen on; 0 picks one", "\(d.port)")
    case .dataDir: return ("Where the event log lives; created if missing", "./\(d.dataDirectory)")
    case .retention:
      return ("How long events are kept, e.g. 24h, 90m", Self.show(d.retentionMicroseconds))
    case .maxDisk: return ("Keep the log under this size, e.g. 20GB", "no cap")
    case .dictionary:
      return ("zstd dictionary file", "Contrail's own, ID 20261122, built in")
    case .compressionLevel: return ("zstd level 1–19", "\(d.compressionLevel)")
    case .fsyncInterval:
      return ("fsync the log at most this far apart, e.g. 100ms", "\(d.fsyncMilliseconds)ms")
    case .liveWindow: return ("Events held in memory for live subscribers", "\(d.liveWindowEvents)")
    case .maxLag: return ("Close subscribers lagging more than this, e.g. 10m", "never")
    case .maxLagGrace:
      return ("...for longer than this", Self.show(d.slowConsumer.grace.nanoseconds / 1000))
    case .maxSubscribers: return ("Refuse subscribers beyond this many, HTTP 503", "no limit")
    case .maxConnectionsPerIP: return ("Refuse more connections per IP, HTTP 429", "no limit")
    case .maxEventsPerSecondPerIP: return ("Pace each IP to this many events/s", "no limit")
    case .maxPendingConnections:
      return (
        "Close connections that have not upgraded beyond this many, all addresses together",
        d.limits.maxPendingConnections.map(String.init)
      )
    case .trustedProxies:
      return ("Reverse proxies (CIDR,…) whose X-Forwarded-For / X-Real-IP name the client", "none")
    case .headerTimeout:
      return (
        "A connection must send a whole request within this, else 408",
        Self.show(d.headerTimeout.nanoseconds / 1000)
      )
    case .idleTimeout:
      return (
        "Close keep-alive HTTP connections idle this long",
        Self.show(d.idleTimeout.nanoseconds / 1000)
      )
    case .staleAfter:
      return (
        "Reconnect after this long without a relay frame; 0 never",
        d.staleAfter.map { Self.show($0.nanoseconds / 1000) } ?? "0"
      )
    case .maxFrameSize:
      return (
        "Drop relay frames longer than this, counted as type=oversize", "\(d.maxFrameSize >> 20)MiB"
      )
    case .relayCA:
      return ("PEM certificates to trust for a wss:// relay instead of the system's", nil)
    case .upstream:
      return (
        "Run as an edge instead of reading a relay: follow this Contrail primary's /replicate "
          + "stream (ws://host:port), or a Jetstream v1 host's zstd stream (wss://host/subscribe; "
          + "its dictionary from --dictionary or its /dictionary), storing its frames as they "
          + "are", nil
      )
    case .replicationAllow:
      return ("Only these CIDRs may follow this server's /replicate stream", "any address")
    case .collections:
      return (
        "Store only commits of these collections (NSID or prefix.*, comma-separated); identity, "
          + "account and sync events still flow", "all"
      )
    case .dids:
      return ("Store only events of these DIDs (comma-separated), every kind", "all")
    case .metrics: return ("Serve /metrics: true or false", "true")
    case .logLevel: return ("trace, debug, info, notice, warning, error or critical", "info")
    case .logFormat: return ("text or json", "text")
    }
  }

  /// A duration in µs as the flags take it: `24h`, `60s`, `500ms`.
  private static func show(_ microseconds: Int64) -> String {
    for (unit, scale) in [("h", Int64(3_600_000_000)), ("m", 60_000_000)]
    where microseconds % scale == 0 && microseconds >= scale {
      return "\(microseconds / scale)\(unit)"
    }
    return microseconds % 1_000_000 == 0
      ? "\(microseconds / 1_000_000)s" : "\(microseconds / 1000)ms"
  }

  /// Sets what this option controls from `text`; false when the text does not parse.
  fileprivate func apply(_ text: String, to r: inout ServeConfiguration) -> Bool {
    let p = ServeValue.self
    switch self {
    case .relay: return set(&r.settings.relay, try? RelayEndpoint(text))
    case .relayCursor:
      let start: Ingest.StartCursor? =
        text == "live" ? .live : Int64(text).flatMap { $0 >= 0 ? .seq($0) : nil }
      return set(&r.settings.relayStart, start)
    case .offline: return set(&r.settings.offline, p.bool(text))
    case .offlineRate: return set(&r.settings.offlineRate, p.positive(text))
    case .host: return set(&r.settings.host, text)
    case .port:
      return set(&r.settings.port, Int(text).flatMap { (0...65535).contains($0) ? $0 : nil })
    case .dataDir: return set(&r.settings.dataDirectory, text)
    case .retention:
      return set(&r.settings.retentionMicroseconds, p.duration(text).map { $0.nanoseconds / 1000 })
    case .maxDisk: return set(&r.settings.maxDiskBytes, p.bytes(text).map(Optional.some))
    case .dictionary: return set(&r.settings.dictionaryPath, Optional.some(text))
    case .compressionLevel:
      return set(
        &r.settings.compressionLevel, Int32(text).flatMap { (1...19).contains($0) ? $0 : nil })
    case .fsyncInterval:
      return set(
        &r.settings.fsyncMilliseconds, p.duration(text).map { Int($0.nanoseconds / 1_000_000) })
    case .liveWindow: return set(&r.settings.liveWindowEvents, p.positive(text))
    case .maxLag: return set(&r.settings.slowConsumer.maxLag, p.duration(text).map(Optional.some))
    case .maxLagGrace: return set(&r.settings.slowConsumer.grace, p.duration(text))
    case .maxSubscribers: return set(&r.settings.limits.maxSubscribers, p.optionalPositive(text))
    case .maxConnectionsPerIP:
      return set(&r.settings.limits.maxConnectionsPerIP, p.optionalPositive(text))
    case .maxEventsPerSecondPerIP:
      return set(&r.settings.limits.maxEventsPerSecondPerIP, p.optionalPositive(text))
    case .maxPendingConnections:
      return set(&r.settings.limits.maxPendingConnections, p.optionalPositive(text))
    case .trustedProxies: return set(&r.settings.trustedProxies, TrustedProxies(text))
    case .headerTimeout: return set(&r.settings.headerTimeout, p.positiveDuration(text))
    case .idleTimeout: return set(&r.settings.idleTimeout, p.positiveDuration(text))
    case .staleAfter:
      return set(&r.settings.staleAfter, p.duration(text).map { $0 == .zero ? nil : $0 })
    case .maxFrameSize:
      return set(
        &r.settings.maxFrameSize,
        p.bytes(text).flatMap { (1024...(1 << 30)).contains($0) ? $0 : nil })
    case .relayCA: return set(&r.settings.relayCertificates, Optional.some(text))
    case .upstream:
      return set(&r.settings.upstream, (try? RelayEndpoint(text)).map(Optional.some))
    case .replicationAllow:
      return set(&r.settings.replicationAllowed, TrustedProxies(text).map(Optional.some))
    case .collections:
      let values = ServeValue.list(text)
      let filter = try? EventFilter(
        ingestCollections: values, dids: Array(r.settings.ingestFilter.dids))
      return set(&r.settings.ingestFilter, values.isEmpty ? nil : filter)
    case .dids:
      let values = ServeValue.list(text)
      let filter = try? EventFilter(
        ingestCollections: r.settings.ingestFilter.collectionPatterns, dids: values)
      return set(&r.settings.ingestFilter, values.isEmpty ? nil : filter)
    case .metrics: return set(&r.metrics, p.bool(text))
    case .logLevel: return set(&r.logLevel, Logger.Level(rawValue: text.lowercased()))
    case .logFormat: return set(&r.jsonLogs, ["text": false, "json": true][text.lowercased()])
    }
  }

  /// Why `text` does not parse, when there is more to say than "cannot use".
  fileprivate func problem(_ text: String) -> String? {
    let values = ServeValue.list(text)
    do {
      switch self {
      case .collections: _ = try EventFilter(ingestCollections: values, dids: [])
      case .dids: _ = try EventFilter(ingestCollections: [], dids: values)
      default: return nil
      }
    } catch {
      return error.description
    }
    return values.isEmpty ? "no values given" : nil
  }

  private func set<T>(_ target: inout T, _ value: T?) -> Bool {
    guard let value else { return false }
    target = value
    return true
  }
}

/// `serve`'s resolved configuration: the server's settings plus what the command itself uses.
public struct ServeConfiguration: Sendable {
  public var settings = ServeSettings.defaults
  public var logLevel = Logger.Level.info
  public var jsonLogs = false
  public var metrics = true

  /// Applies every option: the flag's text if given, else the variable's if set and not empty,
  /// else the default. A text that does not parse is an error naming the flag, the variable and
  /// the text.
  public static func resolve(flags: [ServeOption: String], environment: [String: String]) throws
    -> ServeConfiguration
  {
    var resolved = ServeConfiguration()
    for option in ServeOption.allCases {
      guard let text = flags[option] ?? environment[option.variable], !text.isEmpty else {
        continue
      }
      guard option.apply(text, to: &resolved) else {
        let why = option.problem(text).map { ": " + $0 } ?? ""
        throw ServeError("\(option.flag) / \(option.variable): cannot use \"\(text)\"\(why)")
      }
    }
    let given = { (option: ServeOption) in
      !(flags[option] ?? environment[option.variable] ?? "").isEmpty
    }
    if given(.upstream) && (given(.relay) || given(.relayCursor) || resolved.settings.offline) {
      throw ServeError(
        "--upstream follows another Contrail or a Jetstream instead of a relay: it cannot be "
          + "combined with "
          + "--relay, --relay-cursor or --offline")
    }
    if let upstream = resolved.settings.upstream, upstream.isJetstream {
      try Self.checkJetstreamUpstream(upstream, filter: resolved.settings.ingestFilter)
    }
    return resolved
  }

  /// A Jetstream host's URL leaves out what the edge sets itself, and the filter stays within
  /// what a Jetstream accepts (100 collections, 10,000 DIDs), which would otherwise refuse
  /// every connection.
  static func checkJetstreamUpstream(_ upstream: RelayEndpoint, filter: EventFilter) throws {
    var inURL = (collections: 0, dids: 0)
    // Decoded as the host decodes them, so no spelling slips a reserved name past.
    for (name, _) in QueryString.parse(upstream.jetstreamTarget.query) {
      if RelayEndpoint.jetstreamReservedParameters.contains(name) {
        throw ServeError(
          "--upstream \(upstream): leave \(name) out of a Jetstream host's URL (the edge sets "
            + "cursor, compress and requireHello itself)")
      }
      if name == "wantedCollections" { inURL.collections += 1 }
      if name == "wantedDids" { inURL.dids += 1 }
    }
    let collections = filter.collectionPatterns.count + inURL.collections
    let dids = filter.dids.count + inURL.dids
    if collections > EventFilter.maxCollections || dids > EventFilter.maxDIDs {
      throw ServeError(
        "a Jetstream host takes at most 100 collections and 10,000 DIDs; --upstream and "
          + "--collections ask for \(collections), --upstream and --dids for \(dids)")
    }
  }
}

/// The value syntaxes options share.
public enum ServeValue {
  public static func bool(_ text: String) -> Bool? {
    switch text.lowercased() {
    case "1", "true", "yes", "on": true
    case "0", "false", "no", "off": false
    default: nil
    }
  }

  /// A comma-separated list; spaces around items are dropped, and so are empty items.
  static func list(_ text: String) -> [String] {
    text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
      !$0.isEmpty
    }
  }

  static func positive(_ text: String) -> Int? { Int(text).flatMap { $0 > 0 ? $0 : nil } }

  /// A positive count for a setting whose default is "none" (nil: does not parse).
  static func optionalPositive(_ text: String) -> Int?? { positive(text).map(Optional.some) }

  static func positiveDuration(_ text: String) -> TimeAmount? {
    duration(text).flatMap { $0 > .zero ? $0 : nil }
  }

  /// `90s`, `10m`, `24h`, `500ms`, `2d`; a bare number is seconds.
  public static func duration(_ text: String) -> TimeAmount? {
    let units: [(String, Int64)] = [
      ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
      ("d", 86_400_000_000_000),
    ]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
      guard let number = Double(text.dropLast(suffix.count)) else { return nil }
      return checked(number * Double(scale)).map { .nanoseconds($0) }
    }
    return Double(text).flatMap { checked($0 * 1e9) }.map { .nanoseconds($0) }
  }

  /// A non-negative finite amount that fits in 63 bits (roughly ≤ 292 years of nanoseconds).
  private static func checked(_ value: Double) -> Int64? {
    value >= 0 && value < 0x1p62 ? Int64(value) : nil
  }

  /// `500MB`, `20GB`, `1GiB`, `1048576`.
  public static func bytes(_ text: String) -> Int? {
    let units: [(String, Double)] = [
      ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("TiB", 1_099_511_627_776),
      ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1),
    ]
    for (suffix, scale) in units where text.uppercased().hasSuffix(suffix.uppercased()) {
      guard let number = Double(text.dropLast(suffix.count)), number > 0 else { return nil }
      return checked(number * scale).map { Int($0) }
    }
    return positive(text)
  }
}

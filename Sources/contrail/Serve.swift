import ArgumentParser
import Compression
import Foundation
import Ingest
import Logging
import NIOCore
import Prometheus
import Serve
import Server
import ServiceLifecycle

/// `contrail serve`: the main job. Every flag can also be given as the `CONTRAIL_*` environment
/// variable named in its help; a flag wins over the variable.
struct ServeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "serve",
    abstract: "Consume a relay's firehose and serve Jetstream-compatible /subscribe.",
    discussion: """
      Connects to the relay (default wss://bsky.network), translates, compresses every event \
      once, keeps a 24-hour log in --data-dir and serves /subscribe, /dictionary, /metrics, \
      /healthz and /readyz. With --offline it serves the bundled fixture relay's synthetic \
      traffic instead, with no network. SIGTERM or SIGINT stop it gracefully.
      """)

  @Option(help: "Relay: wss://host, https://host or a full ws(s):// URL. [CONTRAIL_RELAY]")
  var relay: String?
  @Option(
    help: "First connection only: resume after this relay seq, or `live`. [CONTRAIL_RELAY_CURSOR]")
  var relayCursor: String?
  @Flag(help: "Serve the bundled fixture relay's synthetic traffic, no network. [CONTRAIL_OFFLINE]")
  var offline = false
  @Option(help: "Frames per second of the offline relay (default 200). [CONTRAIL_OFFLINE_RATE]")
  var offlineRate: String?
  @Option(help: "Address to listen on (default 0.0.0.0). [CONTRAIL_HOST]")
  var host: String?
  @Option(help: "Port to listen on (default 6008; 0 picks one). [CONTRAIL_PORT]")
  var port: String?
  @Option(
    help: "Where the event log lives; created if missing (default ./data). [CONTRAIL_DATA_DIR]")
  var dataDir: String?
  @Option(help: "How long events are kept, e.g. 24h, 90m (default 24h). [CONTRAIL_RETENTION]")
  var retention: String?
  @Option(help: "Keep the log under this size, e.g. 20GB (default: no cap). [CONTRAIL_MAX_DISK]")
  var maxDisk: String?
  @Option(
    help: ArgumentHelp(
      "zstd dictionary file (default: Contrail's own, ID 20261122, built in). [CONTRAIL_DICTIONARY]",
      discussion: ServeSettings.dictionaryNote))
  var dictionary: String?
  @Option(help: "zstd level 1–19 (default 1). [CONTRAIL_COMPRESSION_LEVEL]")
  var compressionLevel: String?
  @Option(
    help: "fsync the log at most this far apart, e.g. 100ms (default). [CONTRAIL_FSYNC_INTERVAL]")
  var fsyncInterval: String?
  @Option(
    help: "Events held in memory for live subscribers (default 16384). [CONTRAIL_LIVE_WINDOW]")
  var liveWindow: String?
  @Option(
    help: "Close subscribers lagging more than this, e.g. 10m (default: never). [CONTRAIL_MAX_LAG]")
  var maxLag: String?
  @Option(help: "...for longer than this (default 1m). [CONTRAIL_MAX_LAG_GRACE]")
  var maxLagGrace: String?
  @Option(
    help:
      "Refuse subscribers beyond this many, HTTP 503 (default: no limit). [CONTRAIL_MAX_SUBSCRIBERS]"
  )
  var maxSubscribers: String?
  @Option(
    help:
      "Refuse more connections per IP, HTTP 429 (default: no limit). [CONTRAIL_MAX_CONNECTIONS_PER_IP]"
  )
  var maxConnectionsPerIp: String?
  @Option(
    help:
      "Pace each IP to this many events/s (default: no limit). [CONTRAIL_MAX_EVENTS_PER_SECOND_PER_IP]"
  )
  var maxEventsPerSecondPerIp: String?
  @Option(
    help:
      "Close connections that have not upgraded beyond this many, all addresses together (default 1024). [CONTRAIL_MAX_PENDING_CONNECTIONS]"
  )
  var maxPendingConnections: String?
  @Option(
    help:
      "Reverse proxies (CIDR,…) whose X-Forwarded-For / X-Real-IP name the client (default: none). [CONTRAIL_TRUSTED_PROXIES]"
  )
  var trustedProxies: String?
  @Option(
    help:
      "A connection must send a whole request within this, else 408 (default 10s). [CONTRAIL_HEADER_TIMEOUT]"
  )
  var headerTimeout: String?
  @Option(
    help:
      "Close keep-alive HTTP connections idle this long (default 60s). [CONTRAIL_IDLE_TIMEOUT]")
  var idleTimeout: String?
  @Option(
    help:
      "Reconnect after this long without a relay frame; 0 never (default 60s). [CONTRAIL_STALE_AFTER]"
  )
  var staleAfter: String?
  @Option(
    help:
      "Drop relay frames longer than this, counted as type=oversize (default 5MiB). [CONTRAIL_MAX_FRAME_SIZE]"
  )
  var maxFrameSize: String?
  @Option(
    help:
      "PEM certificates to trust for a wss:// relay instead of the system's. [CONTRAIL_RELAY_CA]")
  var relayCa: String?
  @Option(help: "Serve /metrics: true or false (default true). [CONTRAIL_METRICS]")
  var metrics: String?
  @Option(
    help:
      "trace, debug, info, notice, warning, error or critical (default info). [CONTRAIL_LOG_LEVEL]")
  var logLevel: String?
  @Option(help: "text or json (default text). [CONTRAIL_LOG_FORMAT]")
  var logFormat: String?

  func run() async throws {
    let env = Settings(ProcessInfo.processInfo.environment)
    let level = try env.value(logLevel, "CONTRAIL_LOG_LEVEL", default: Logger.Level.info) {
      Logger.Level(rawValue: $0.lowercased())
    }
    let json = try env.value(logFormat, "CONTRAIL_LOG_FORMAT", default: false) {
      ["text": false, "json": true][$0.lowercased()]
    }
    LoggingSystem.bootstrap { label in
      var handler: any LogHandler =
        json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
      handler.logLevel = level
      return handler
    }
    let logger = Logger(label: "contrail")

    let isOffline = try offline || env.value(nil, "CONTRAIL_OFFLINE", default: false, Settings.bool)
    let endpoint = try env.value(
      relay, "CONTRAIL_RELAY", default: try RelayEndpoint("wss://bsky.network")
    ) { try? RelayEndpoint($0) }
    var settings = ServeSettings(
      relay: endpoint,
      dictionaryPath: try env.value(dictionary, "CONTRAIL_DICTIONARY", default: nil) { $0 })
    settings.offline = isOffline
    settings.relayStart = try env.value(relayCursor, "CONTRAIL_RELAY_CURSOR", default: .resume) {
      $0 == "live" ? .live : Int64($0).flatMap { $0 >= 0 ? .seq($0) : nil }
    }
    settings.offlineRate = try env.value(offlineRate, "CONTRAIL_OFFLINE_RATE", default: 200) {
      Int($0).flatMap { $0 > 0 ? $0 : nil }
    }
    settings.host = try env.value(host, "CONTRAIL_HOST", default: "0.0.0.0") { $0 }
    settings.port = try env.value(port, "CONTRAIL_PORT", default: 6008) {
      Int($0).flatMap { (0...65535).contains($0) ? $0 : nil }
    }
    settings.dataDirectory = try env.value(dataDir, "CONTRAIL_DATA_DIR", default: "data") { $0 }
    settings.retentionMicroseconds = try env.value(
      retention, "CONTRAIL_RETENTION", default: 24 * 3_600_000_000
    ) { Settings.duration($0).map { $0.nanoseconds / 1000 } }
    settings.maxDiskBytes = try env.value(maxDisk, "CONTRAIL_MAX_DISK", default: nil) {
      Settings.bytes($0).map(Optional.some)
    }
    settings.compressionLevel = try env.value(
      compressionLevel, "CONTRAIL_COMPRESSION_LEVEL", default: EventCompressor.defaultLevel
    ) { Int32($0).flatMap { (1...19).contains($0) ? $0 : nil } }
    settings.fsyncMilliseconds = try env.value(
      fsyncInterval, "CONTRAIL_FSYNC_INTERVAL", default: 100
    ) { Settings.duration($0).map { Int($0.nanoseconds / 1_000_000) } }
    settings.liveWindowEvents = try env.value(liveWindow, "CONTRAIL_LIVE_WINDOW", default: 16_384) {
      Int($0).flatMap { $0 > 0 ? $0 : nil }
    }
    settings.slowConsumer.maxLag = try env.value(maxLag, "CONTRAIL_MAX_LAG", default: nil) {
      Settings.duration($0).map(Optional.some)
    }
    settings.slowConsumer.grace = try env.value(
      maxLagGrace, "CONTRAIL_MAX_LAG_GRACE", default: .seconds(60), Settings.duration)
    settings.limits.maxSubscribers = try env.value(
      maxSubscribers, "CONTRAIL_MAX_SUBSCRIBERS", default: nil, Settings.optionalPositive)
    settings.limits.maxConnectionsPerIP = try env.value(
      maxConnectionsPerIp, "CONTRAIL_MAX_CONNECTIONS_PER_IP", default: nil,
      Settings.optionalPositive)
    settings.limits.maxEventsPerSecondPerIP = try env.value(
      maxEventsPerSecondPerIp, "CONTRAIL_MAX_EVENTS_PER_SECOND_PER_IP", default: nil,
      Settings.optionalPositive)
    settings.limits.maxPendingConnections = try env.value(
      maxPendingConnections, "CONTRAIL_MAX_PENDING_CONNECTIONS", default: 1024,
      Settings.optionalPositive)
    settings.trustedProxies = try env.value(
      trustedProxies, "CONTRAIL_TRUSTED_PROXIES", default: .none, TrustedProxies.init)
    settings.headerTimeout = try env.value(
      headerTimeout, "CONTRAIL_HEADER_TIMEOUT", default: .seconds(10)
    ) { Settings.duration($0).flatMap { $0 > .zero ? $0 : nil } }
    settings.idleTimeout = try env.value(
      idleTimeout, "CONTRAIL_IDLE_TIMEOUT", default: .seconds(60)
    ) {
      Settings.duration($0).flatMap { $0 > .zero ? $0 : nil }
    }
    settings.staleAfter = try env.value(staleAfter, "CONTRAIL_STALE_AFTER", default: .seconds(60)) {
      Settings.duration($0).map(Optional.some)
    }
    if settings.staleAfter == .zero { settings.staleAfter = nil }
    settings.maxFrameSize = try env.value(maxFrameSize, "CONTRAIL_MAX_FRAME_SIZE", default: 5 << 20)
    {
      Settings.bytes($0).flatMap { (1024...(1 << 30)).contains($0) ? $0 : nil }
    }
    settings.relayCertificates = try env.value(relayCa, "CONTRAIL_RELAY_CA", default: nil) {
      Optional.some($0)
    }
    let metricsOn = try env.value(metrics, "CONTRAIL_METRICS", default: true, Settings.bool)

    let registry = metricsOn ? PrometheusCollectorRegistry() : nil
    let contrail: ContrailServer
    do {
      contrail = try await ContrailServer.start(settings, registry: registry, logger: logger)
    } catch {
      logger.critical("cannot start", metadata: ["error": "\(error)"])
      throw ExitCode.failure
    }
    let group = ServiceGroup(
      configuration: .init(
        services: [.init(service: ServeService(contrail: contrail))],
        gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await group.run()
  }
}

/// `serve` under swift-service-lifecycle: runs until SIGTERM/SIGINT, then stops ingest first
/// and shuts down in order (`ContrailServer.shutdown`).
struct ServeService: Service {
  let contrail: ContrailServer

  func run() async throws {
    let ingest = contrail.ingest
    await withGracefulShutdownHandler {
      await contrail.run()
    } onGracefulShutdown: {
      ingest.stop()
    }
    await contrail.shutdown()
  }
}

/// Resolves a setting: the flag, else the environment variable, else the default; a value that
/// does not parse is a clear error naming both.
struct Settings {
  let environment: [String: String]
  init(_ environment: [String: String]) { self.environment = environment }

  func value<T>(
    _ flag: String?, _ variable: String, default fallback: T, _ parse: (String) -> T?
  ) throws -> T {
    guard let text = flag ?? environment[variable], !text.isEmpty else { return fallback }
    guard let value = parse(text) else {
      let name =
        "--"
        + variable.dropFirst("CONTRAIL_".count).lowercased().replacingOccurrences(
          of: "_", with: "-")
      throw ValidationError("\(name) / \(variable): cannot use \"\(text)\"")
    }
    return value
  }

  static func bool(_ text: String) -> Bool? {
    switch text.lowercased() {
    case "1", "true", "yes", "on": true
    case "0", "false", "no", "off": false
    default: nil
    }
  }

  /// A positive count for a setting whose default is "none" (nil: does not parse).
  static func optionalPositive(_ text: String) -> Int?? {
    Int(text).flatMap { $0 > 0 ? .some($0) : nil }
  }

  /// `90s`, `10m`, `24h`, `500ms`, `2d`; a bare number is seconds.
  static func duration(_ text: String) -> TimeAmount? {
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
  static func bytes(_ text: String) -> Int? {
    let units: [(String, Double)] = [
      ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("TiB", 1_099_511_627_776),
      ("KB", 1e3),
      ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1),
    ]
    for (suffix, scale) in units where text.uppercased().hasSuffix(suffix.uppercased()) {
      guard let number = Double(text.dropLast(suffix.count)), number > 0 else { return nil }
      return checked(number * scale).map { Int($0) }
    }
    return Int(text).flatMap { $0 > 0 ? $0 : nil }
  }
}

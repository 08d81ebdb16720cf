import Broadcast
import Compression
import EventLog
import Logging
import Prometheus
import Subscribe

/// A subscribe server for end-to-end tests, on 127.0.0.1 and a free port, over a ring and a log
/// the test fills.
public struct TestServer: Sendable {
  public let server: SubscribeServer
  public let ring: LiveRing
  public let log: EventLog

  /// The port it listens on.
  public var port: Int { server.port }
  /// Open subscriptions.
  public var subscriberCount: Int { server.subscriberCount }

  /// Starts a server over `ring` and `log`, serving `dictionary`. Its metrics go to `registry`
  /// and its connection lines to `logger` when given; `configure` sets anything else.
  public static func start(
    ring: LiveRing = LiveRing(), log: EventLog, dictionary: ZstdDictionary,
    metrics registry: PrometheusCollectorRegistry? = nil, logger: Logger? = nil,
    _ configure: (inout SubscribeServer.Configuration) -> Void = { _ in }
  ) async throws -> TestServer {
    var configuration = SubscribeServer.Configuration()
    configuration.host = "127.0.0.1"
    configuration.port = 0
    if let registry { configuration.metrics = PrometheusMetricsFactory(registry: registry) }
    if let logger { configuration.logger = logger }
    configure(&configuration)
    let server = try await SubscribeServer.start(
      sources: .init(ring: ring, log: log, dictionary: dictionary), configuration: configuration)
    return TestServer(server: server, ring: ring, log: log)
  }

  /// Starts a server over `log` and a new ring of `ringCapacity` events, both holding the first
  /// `stored` of `stream`'s events (all by default; stored as ingest stores them), serving the
  /// stream's dictionary.
  public static func start(
    _ stream: SyntheticStream, stored: Int? = nil, log: EventLog, ringCapacity: Int = 100_000,
    metrics registry: PrometheusCollectorRegistry? = nil, logger: Logger? = nil,
    _ configure: (inout SubscribeServer.Configuration) -> Void = { _ in }
  ) async throws -> TestServer {
    let ring = LiveRing(capacity: ringCapacity, startAfter: 0)
    try stream.ingest(0..<(stored ?? stream.events.count), log: log, ring: ring)
    return try await start(
      ring: ring, log: log, dictionary: stream.dictionary, metrics: registry, logger: logger,
      configure)
  }

  /// Closes every connection and stops listening.
  public func stop() async throws { try await server.stop() }
}

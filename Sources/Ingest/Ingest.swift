import EventLog
import Foundation
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// The relay side of `serve` (PROTOCOL §5.1): connects, resumes after the last stored relay seq,
/// feeds the pipeline, and after any close or error reconnects with full-jitter exponential
/// backoff (reset once a frame arrives). A relay silent for `staleAfter` is reconnected; ingest
/// never exits on its own.
public final class Ingest: Sendable {
  public enum StartCursor: Sendable, Equatable {
    /// After the last relay seq in the log (the relay's live tip when the log is empty).
    case resume
    /// After this seq, until a frame has been stored (then the log decides).
    case seq(Int64)
    /// At the relay's live tip, until a frame has been stored (then the log decides).
    case live
  }

  public struct Configuration: Sendable {
    public var relay: RelayEndpoint
    public var start: StartCursor = .resume
    /// Reconnect after this long without a frame; nil never does (quiet single-PDS upstreams).
    public var staleAfter: TimeAmount? = .seconds(60)
    public var backoffBase: Duration = .seconds(1)
    public var backoffCap: Duration = .seconds(30)
    public var connectTimeout: TimeAmount = .seconds(10)
    /// Relay frames longer than this are skipped unread and counted as `oversize`.
    public var maxFrameSize = RelayConnection.defaultMaxFrameSize
    /// PEM certificates to trust instead of the system's (a relay with a private CA; tests);
    /// nil: `$SSL_CERT_FILE` when set, else the system's.
    public var trustedCertificates: String?

    public init(relay: RelayEndpoint) { self.relay = relay }
  }

  private let configuration: Configuration
  private let pipeline: IngestPipeline
  private let logger: Logger
  private let tls: NIOSSLContext?
  private let connection = ConnectionState()
  private let metrics: IngestMetrics

  public init(
    configuration: Configuration, pipeline: IngestPipeline, logger: Logger
  ) throws {
    self.configuration = configuration
    self.pipeline = pipeline
    self.logger = logger
    self.metrics = pipeline.metrics
    tls =
      configuration.relay.tls
      ? try TLSTrust.clientContext(caFile: configuration.trustedCertificates) : nil
  }

  /// Whether a relay connection is up now.
  public var isConnected: Bool { connection.isConnected }

  /// Connected now, or connected before and down for less than `grace` (a reconnect in
  /// progress): what `/readyz` reports, so a load balancer does not drop every instance at each
  /// relay reconnect.
  public func isRecentlyConnected(grace: Duration) -> Bool {
    connection.isRecentlyConnected(grace: grace)
  }
  /// Connections made so far (the first one included).
  public var connections: Int { connection.connections }

  /// Connects and reconnects until `stop()`; returns once the pipeline has stored everything
  /// received.
  public func run() async {
    var attempt = 0
    var resume = await pipeline.settle()
    while !connection.isStopped {
      let cursor = startCursor(resume)
      let stats = ConnectionStats()
      let pipeline = self.pipeline
      let staleAfter = configuration.staleAfter
      do {
        logger.info(
          "connecting to relay",
          metadata: [
            "relay": "\(configuration.relay)", "cursor": "\(cursor.map(String.init) ?? "live")",
          ])
        let channel = try await RelayConnection.open(
          configuration.relay, cursor: cursor, tls: tls,
          connectTimeout: configuration.connectTimeout, maxFrameSize: configuration.maxFrameSize
        ) { RelayFrameHandler(pipeline: pipeline, staleAfter: staleAfter, stats: stats) }
        connection.opened(channel)
        metrics.connected.record(1)
        logger.info("connected to relay", metadata: ["relay": "\(configuration.relay)"])
        try? await channel.closeFuture.get()
        connection.closed()
        metrics.connected.record(0)
        if connection.isStopped {
          logger.info(
            "relay connection closed for shutdown", metadata: ["frames": "\(stats.frames)"])
        } else {
          logger.warning(
            "relay connection ended",
            metadata: [
              "reason": "\(stats.closeReason ?? "closed by the relay")",
              "frames": "\(stats.frames)",
            ])
        }
      } catch {
        logger.warning("cannot connect to relay", metadata: ["error": "\(error)"])
      }
      guard !connection.isStopped else { break }
      metrics.reconnects.increment()
      // Only a connection that stored something resets the backoff: one that ends with an
      // error frame at once (or delivers only frames we drop) must not be retried in a loop.
      let after = await pipeline.settle()
      if after.seq != resume.seq || after.storedSinceStart != resume.storedSinceStart {
        attempt = 0
      }
      resume = after
      let delay = backoff(attempt)
      attempt += 1
      logger.info(
        "reconnecting",
        metadata: [
          "after_ms":
            "\(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)"
        ])
      try? await sleepUnlessStopped(delay)
    }
    _ = await pipeline.settle()
  }

  /// Stops reconnecting and closes the current connection; `run()` then returns.
  public func stop() { connection.stop() }

  /// The relay seq to connect after, or nil for the relay's live tip. A `--relay-cursor`
  /// holds until this process has stored a frame (a failed first connection keeps it); from
  /// then on the log decides. After `FutureCursor` the relay does not know our seq space: its
  /// live tip, as a new epoch.
  func startCursor(_ resume: IngestPipeline.Resume) -> Int64? {
    if resume.futureCursor { return nil }
    guard !resume.storedSinceStart else { return resume.seq }
    switch configuration.start {
    case .resume: return resume.seq
    case .seq(let seq): return seq
    case .live: return nil
    }
  }

  /// The delay before reconnect attempt `attempt` (`Backoff`).
  func backoff(_ attempt: Int) -> Duration {
    Backoff.delay(attempt, base: configuration.backoffBase, cap: configuration.backoffCap)
  }

  private func sleepUnlessStopped(_ delay: Duration) async throws {
    let deadline = ContinuousClock.now + delay
    while ContinuousClock.now < deadline && !connection.isStopped {
      try await Task.sleep(for: min(.milliseconds(50), deadline - ContinuousClock.now))
    }
  }
}

/// What one connection's handler reports to the reconnect loop.
final class ConnectionStats: Sendable {
  private let state = Mutex<(frames: Int, closeReason: String?)>((0, nil))

  var frames: Int { state.withLock { $0.frames } }
  var closeReason: String? { state.withLock { $0.closeReason } }

  func received(_ count: Int) { state.withLock { $0.frames += count } }

  /// Records why the connection is being closed (the first reason given wins).
  func closing(_ reason: String) {
    state.withLock { state in
      if state.closeReason == nil { state.closeReason = reason }
    }
  }
}
